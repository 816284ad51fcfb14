"""The planner: the ledger's allowance becomes budgets and reservation prices."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from agent.cli import REFERENCE_SITE
from agent.planner import MarketView, Planner, PlantState, month_end, month_start
from agent.settings import load_settings
from agent.site import site_problem

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
