"""The planner: the ledger's allowance becomes budgets and reservation prices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from gridpilot.agent.bundled import REFERENCE_SITE
from gridpilot.agent.planner import (
    MarketView,
    Planner,
    PlantState,
    RecedingPlanner,
    month_end,
    month_start,
)
from gridpilot.agent.settings import load_settings
from gridpilot.agent.site import site_problem
from gridpilot.optimizer.economics import breakeven_usd_per_mwh

NOW = datetime(2024, 8, 31, 12, tzinfo=UTC)  # the horizon reaches into September


def _planner() -> Planner:
    settings = load_settings(REFERENCE_SITE)
    site = site_problem(
        settings, start=NOW, step_s=[900.0], price_usd_per_mwh=[0.0], hashprice_usd_per_th_day=0.05
    )
    return Planner(site)


def _state(planner: Planner) -> PlantState:
    return PlantState(
        asic_units_on=tuple(g.units for g in planner.site.asic_groups),
        gpu_curtailed_nodes=(0,) * len(planner.site.gpu_groups),
        gpu_curtailed_for_s=(0.0,) * len(planner.site.gpu_groups),
    )


def _market() -> MarketView:
    history = np.random.default_rng(0).lognormal(3.2, 0.8, 30 * 96)
    return MarketView(
        now=NOW, history_usd_per_mwh=history, interval_s=900.0, hashprice_usd_per_th_day=0.05
    )


def test_budgets_are_this_month_less_used_and_next_month_whole() -> None:
    """August's budget is the allowance less what the ledger says is used; September, which
    the 24 h horizon reaches, starts whole."""
    planner = _planner()
    problem = planner.problem(_state(planner), _market(), {"flex": 69_000.0})
    flex = {b.period_start: b.node_hours_left for b in problem.budgets if b.contract == "flex"}
    assert flex == {month_start(NOW): 1_000.0, month_end(NOW): 70_000.0}
    assert month_end(NOW) == datetime(2024, 9, 1, tzinfo=UTC)
    assert month_end(datetime(2024, 12, 5, tzinfo=UTC)) == datetime(2025, 1, 1, tzinfo=UTC)


def test_reservation_follows_what_is_left() -> None:
    """With the month's flex allowance nearly spent its reservation price is higher than with
    plenty left, and with none left curtailing is priced out."""
    planner = _planner()
    plenty = planner.problem(_state(planner), _market(), {"flex": 0.0})
    scarce = planner.problem(_state(planner), _market(), {"flex": 69_900.0})
    spent = planner.problem(_state(planner), _market(), {"flex": 70_000.0})
    value = "allowance_value_usd_per_node_hour"
    assert getattr(plenty, value)["flex"] < getattr(scarce, value)["flex"]
    assert getattr(spent, value)["flex"] >= 1e9


def test_a_forecast_crossing_a_breakeven_solves_again() -> None:
    """A settled price within the price tolerance of the plan's expectation leaves the plan
    standing, unless the forecast it brings puts the interval being decided on the other side
    of a miner model's breakeven than the plan did."""
    planner = _planner()
    worst = max(planner.site.asic_groups, key=lambda g: g.joules_per_th * g.overhead_factor)
    # The hashprice at which the least efficient model breaks even at 58 $/MWh.
    hashprice = breakeven_usd_per_mwh(
        1.0, worst.joules_per_th, pool_fee=planner.site.pool_fee, overhead_factor=1.0
    )
    hashprice = 58.0 * worst.overhead_factor / hashprice
    flat = np.full(30 * 96, 55.0)
    receding = RecedingPlanner(planner)

    def decide(settled: float | None) -> str:
        history = flat if settled is None else np.append(flat[1:], settled)
        now = NOW if settled is None else NOW + timedelta(seconds=900)
        market = MarketView(
            now=now,
            history_usd_per_mwh=history,
            interval_s=900.0,
            hashprice_usd_per_th_day=hashprice,
        )
        plan = receding._plan
        state = _state(planner)
        if plan is not None:
            schedule = plan.schedule
            state = PlantState(
                asic_units_on=tuple(int(u) for u in schedule.asic_units_on[:, 0]),
                gpu_curtailed_nodes=tuple(
                    int(c)
                    for c in schedule.gpu_capped_nodes[:, 0] + schedule.gpu_paused_nodes[:, 0]
                ),
                gpu_curtailed_for_s=(0.0,) * len(planner.site.gpu_groups),
            )
        return receding.decide(state, market, {}).reason

    assert decide(None) == "first plan"
    # 7 $/MWh over the expected 55: within the tolerance, but the forecast (55 plus half the
    # drift of the last two settled prices) now sits above the 58 breakeven.
    assert "breakeven" in decide(62.0)
    receding = RecedingPlanner(planner)
    decide(None)
    assert decide(56.0) == "plan stands"


def test_miners_locked_asleep_stay_asleep_in_the_plan() -> None:
    """A group of a model that the plan would run whole at a cheap price, with 30 of its
    miners asleep and locked for another 40 minutes (`SleepRecord`): the plan keeps those 30
    asleep for the 40 minutes and wakes them after."""
    planner = _planner()
    cheap = MarketView(
        now=NOW,
        history_usd_per_mwh=np.full(30 * 96, 5.0),
        interval_s=900.0,
        hashprice_usd_per_th_day=0.05,
    )
    free = planner.plan(_state(planner), cheap, {}).schedule.asic_units_on
    groups = planner.site.asic_groups
    # A group whose whole model runs whole (merged groups of a model share out a lock).
    whole = {
        group.model
        for group in groups
        if all(
            np.all(free[i] == other.units)
            for i, other in enumerate(groups)
            if other.model == group.model
        )
    }
    g = next(i for i, group in enumerate(groups) if group.model in whole)
    on = [group.units for group in groups]
    on[g] -= 30
    locked = [0] * len(on)
    locked[g] = 30
    for_s = [0.0] * len(on)
    for_s[g] = 2_400.0
    state = PlantState(
        asic_units_on=tuple(on),
        gpu_curtailed_nodes=(0,) * len(planner.site.gpu_groups),
        gpu_curtailed_for_s=(0.0,) * len(planner.site.gpu_groups),
        asic_locked_off=tuple(locked),
        asic_locked_for_s=tuple(for_s),
    )
    plan = planner.plan(state, cheap, {})
    awake = plan.schedule.asic_units_on[g]
    offsets = plan.problem.step_offsets_s()
    assert np.all(awake[offsets < 2_400.0] == groups[g].units - 30)
    assert awake[np.flatnonzero(offsets >= 2_400.0)[0]] == groups[g].units
