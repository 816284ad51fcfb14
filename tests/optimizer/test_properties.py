"""Invariants of `solve` on small random problems, solved exactly (see `strategies.EXACT`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from gridpilot.optimizer.economics import (
    SECONDS_PER_DAY,
    WATT_SECONDS_PER_MWH,
    breakeven_usd_per_mwh,
)
from gridpilot.optimizer.plan import Plan, model_value
from gridpilot.optimizer.problem import AsicGroup, Contract, GpuGroup, Problem, Tier
from gridpilot.optimizer.schedule import allowance_periods
from gridpilot.optimizer.solve import solve
from tests.optimizer.feasibility import lowest_sure_watts, site_caps, step_events, violations
from tests.optimizer.strategies import (
    EXACT,
    PROPERTY_SETTINGS,
    PROVEN,
    START,
    THREE_LEVELS,
    Sizes,
    problems,
)


@PROPERTY_SETTINGS
@given(problems())
def test_plan_stays_within_every_cap_it_can_meet(problem: Problem) -> None:
    """Whenever the site can surely get under its limit and every event's cap (every ASIC asleep,
    GPUs paused in events where no longest-event limit could stop it), the plan stays under."""
    assume(
        all(
            low <= cap
            for low, cap in zip(lowest_sure_watts(problem), site_caps(problem), strict=True)
        )
    )
    plan = solve(problem)
    assert plan.outcome.over_limit_mwh <= 1e-12
    assert np.all(plan.outcome.site_watts <= np.array(site_caps(problem)) + 1e-6)


@PROPERTY_SETTINGS
@given(problems())
def test_every_plan_obeys_every_rule(problem: Problem) -> None:
    """Plans keep the units' lock-outs and minimum off times and the contracts' tiers, notice,
    longest event and allowance, as the independent checker reads them."""
    assert violations(problem, solve(problem).schedule) == []


def test_identical_gpu_groups_keep_their_own_curtailed_nodes() -> None:
    """Two groups of one contract, each with a node paused, merge into one class; the plan keeps
    each group's paused node rather than pausing two in one group (without notice) and none in
    the other."""
    contract = Contract(
        "spot", Tier.INTERRUPTIBLE, 1.5, allowance_node_hours=10.0, notice_s=900.0,
        billed_when_curtailed=False,
    )  # fmt: skip
    first = GpuGroup("gpu-a", "spot", 2, 8, THREE_LEVELS, 100.0, 1_500.0, curtailed_nodes_now=1)
    problem = Problem(
        start=START,
        step_s=(300.0,) * 3,
        price_usd_per_mwh=(5_000.0,) * 3,
        hashprice_usd_per_th_day=(0.05,) * 3,
        site_limit_watts=1e6,
        site_margin_watts=0.0,
        asic_groups=(AsicGroup("asic-0", "S21", 1, 3_500.0, 200.0),),
        gpu_groups=(first, replace(first, name="gpu-b")),
        contracts=(contract,),
        options=EXACT,
    )
    plan = solve(problem)
    assert plan.schedule.gpu_paused_nodes.tolist() == [[1, 1, 1], [1, 1, 1]]
    assert violations(problem, plan.schedule) == []


@PROPERTY_SETTINGS
@given(problems())
def test_allowance_is_never_overspent_outside_events(problem: Problem) -> None:
    """In a billing period without a grid event, a contract's curtailment stays within what is
    left of its allowance."""
    plan = solve(problem)
    offsets = problem.step_offsets_s()
    event = step_events(problem)
    for contract in problem.contracts:
        rows = [i for i, g in enumerate(problem.gpu_groups) if g.contract == contract.name]
        for start_s, end_s, left in allowance_periods(problem, contract.name):
            inside = [t for t in range(problem.steps) if start_s <= offsets[t] < end_s]
            if any(event[t] for t in inside):
                continue
            used = sum(
                float(plan.schedule.gpu_capped_nodes[i, t] + plan.schedule.gpu_paused_nodes[i, t])
                * problem.step_s[t]
                / 3_600.0
                for i in rows
                for t in inside
            )
            assert used <= left + 1e-6


@PROPERTY_SETTINGS
@given(problems(Sizes(gpu_groups=(1, 2)), events=False))
def test_firm_gpus_are_never_curtailed_without_an_event(problem: Problem) -> None:
    """Without a grid event, firm GPUs run at full power whatever the prices and the limit."""
    firm = replace(problem, contracts=tuple(replace(c, tier=Tier.FIRM) for c in problem.contracts))
    plan = solve(firm)
    assert not plan.schedule.gpu_capped_nodes.any()
    assert not plan.schedule.gpu_paused_nodes.any()


def _absolute_gap_usd(plan: Plan) -> float:
    """How far below the solver's bound the plan may be, in dollars: `gap` is relative to the
    bound, which lies at most value / (1 - gap) away."""
    value = model_value(plan.problem, plan.outcome)
    return plan.gap * max(1.0, abs(value)) / (1.0 - plan.gap)


@PROPERTY_SETTINGS
@given(problems(options=PROVEN), st.data())
def test_raising_a_price_never_raises_that_steps_energy(
    problem: Problem, data: st.DataObject
) -> None:
    """Raising the price of one step never raises the energy planned in that step.

    The exchange argument, for ε-optimal plans: the objective is f_p(x) = g(x) - Σ p_t e_t(x),
    so with p' = p + Δ in step k, f_p'(x) = f_p(x) - Δ e_k(x). Plan x is within ε of the best
    at p and x' within ε' at p' (same feasible set), so f_p(x) >= f_p(x') - ε and
    f_p'(x') >= f_p'(x) - ε'. Adding them, Δ (e_k(x') - e_k(x)) <= ε + ε': the energy can rise
    by at most (ε + ε') / Δ MWh, with ε, ε' the plans' reported gaps in dollars. Solved to a
    zero relative gap, that is about 2e-6 $ / Δ: far less than any unit's energy in a step.
    """
    step = data.draw(st.integers(0, problem.steps - 1), label="step")
    rise = data.draw(st.floats(1.0, 2_000.0), label="rise $/MWh")
    prices = list(problem.price_usd_per_mwh)
    prices[step] += rise
    dearer = replace(problem, price_usd_per_mwh=tuple(prices))
    plan, dearer_plan = solve(problem), solve(dearer)

    def energy_mwh(p: Plan) -> float:
        return float(p.outcome.site_watts[step]) * problem.step_s[step] / WATT_SECONDS_PER_MWH

    tolerance = (_absolute_gap_usd(plan) + _absolute_gap_usd(dearer_plan)) / rise
    assert energy_mwh(dearer_plan) <= energy_mwh(plan) + tolerance + 1e-12


@st.composite
def cheap_wakes(draw: st.DrawFn) -> Problem:
    """One ASIC group, asleep, with a waking loss, and power far below its breakeven."""
    units = draw(st.integers(1, 6))
    group = AsicGroup(
        name="asic-0",
        model="model-0",
        units=units,
        watts_per_unit=draw(st.floats(2_500.0, 3_600.0)),
        ths_per_unit=draw(st.floats(80.0, 220.0)),
        overhead_factor=draw(st.sampled_from([1.0, 1.05])),
        wake_loss_s=draw(st.sampled_from([60.0, 300.0, 600.0])),
        units_on_now=0,
    )
    steps = draw(st.integers(3, 6))
    hashprice = tuple(draw(st.lists(st.floats(0.03, 0.08), min_size=steps, max_size=steps)))
    pool_fee = draw(st.sampled_from([0.0, 0.02]))
    lowest = breakeven_usd_per_mwh(
        min(hashprice),
        group.joules_per_th,
        pool_fee=pool_fee,
        overhead_factor=group.overhead_factor,
    )
    return Problem(
        start=START,
        step_s=(900.0,) * steps,
        price_usd_per_mwh=tuple(
            draw(st.lists(st.floats(-50.0, 0.1 * lowest), min_size=steps, max_size=steps))
        ),
        hashprice_usd_per_th_day=hashprice,
        site_limit_watts=2 * units * group.watts_per_unit * group.overhead_factor,
        site_margin_watts=0.0,
        asic_groups=(group,),
        pool_fee=pool_fee,
        options=EXACT,
    )


@PROPERTY_SETTINGS
@given(cheap_wakes())
def test_waking_losses_are_charged_per_unit_woken(problem: Problem) -> None:
    """Where waking pays, every unit wakes at once, and the outcome charges each unit woken the
    hashing it loses: TH/s x hashprice after the pool fee x wake_loss_s / 86,400."""
    group = problem.asic_groups[0]
    plan = solve(problem)
    on = plan.schedule.asic_units_on[0]
    assert on.tolist() == [group.units] * problem.steps
    woken = np.maximum(0, np.diff(on, prepend=0))
    expected = sum(
        int(woken[t])
        * group.ths_per_unit
        * problem.hashprice_usd_per_th_day[t]
        * (1 - problem.pool_fee)
        * group.wake_loss_s
        / SECONDS_PER_DAY
        for t in range(problem.steps)
    )
    assert expected > 0
    assert np.isclose(plan.outcome.wake_loss_usd, expected, rtol=1e-9, atol=0.0)


def test_a_costly_wake_sleeps_through_a_short_dip() -> None:
    """Miners that lose a day of hashing on waking stay asleep through a five-minute dip that
    miners waking for free use."""
    group = AsicGroup("asic-0", "S21", 4, 3_500.0, 200.0, units_on_now=0, wake_loss_s=86_400.0)
    dip = Problem(
        start=START,
        step_s=(300.0,) * 5,
        price_usd_per_mwh=(400.0, 400.0, -20.0, 400.0, 400.0),
        hashprice_usd_per_th_day=(0.05,) * 5,
        site_limit_watts=1e6,
        site_margin_watts=0.0,
        asic_groups=(group,),
        options=EXACT,
    )
    assert not solve(dip).schedule.asic_units_on.any()
    free = replace(dip, asic_groups=(replace(group, wake_loss_s=0.0),))
    assert solve(free).schedule.asic_units_on[0].tolist() == [0, 0, 4, 0, 0]
