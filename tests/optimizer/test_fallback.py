"""The merit-order fallback and the two baselines miners run today."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import assume, given
from hypothesis import strategies as st

from gridpilot.optimizer.merit import always_on, fallback_plan, threshold
from gridpilot.optimizer.plan import PlanStatus
from gridpilot.optimizer.problem import (
    AsicGroup,
    Contract,
    GpuGroup,
    GridEvent,
    Problem,
    SolveOptions,
    Tier,
)
from gridpilot.optimizer.solve import solve
from gridpilot.optimizer.synthetic import H100_CAP_LEVELS, synthetic_problem
from tests.optimizer.feasibility import lowest_sure_watts, site_caps
from tests.optimizer.strategies import PROPERTY_SETTINGS, START, Sizes, problems


def test_a_timed_out_solver_falls_back_to_the_merit_order() -> None:
    """Given 1 ms for a 600-group day, the solver has no answer: the plan is the fallback's, says
    why, keeps the site under every cap and has setpoints for every group."""
    problem = synthetic_problem(600, 288, options=SolveOptions(time_limit_s=0.001, blocking=()))
    plan = solve(problem)
    assert plan.status is PlanStatus.FALLBACK
    assert plan.note
    assert plan.outcome.over_limit_mwh == 0
    assert plan.schedule.asic_units_on.shape == (len(problem.asic_groups), problem.steps)
    assert plan.schedule.gpu_paused_nodes.shape == (len(problem.gpu_groups), problem.steps)
    assert [s.group for s in plan.asic_setpoints(0)] == [g.name for g in problem.asic_groups]
    assert [s.group for s in plan.gpu_setpoints(0)] == [g.name for g in problem.gpu_groups]


def test_an_unknown_solver_falls_back_with_the_error() -> None:
    """A solver OR-Tools does not ship is an error the plan reports in its note, not a raise."""
    plan = solve(synthetic_problem(10, 12, options=SolveOptions(solver="cplex")))
    assert plan.status is PlanStatus.FALLBACK
    assert "solver error" in plan.note
    assert "cplex" in plan.note


@PROPERTY_SETTINGS
@given(problems())
def test_the_fallback_stays_within_every_cap_it_can_meet(problem: Problem) -> None:
    """Whenever the site can surely get under its limit and every event's cap, so does the
    fallback's plan."""
    assume(
        all(
            low <= cap
            for low, cap in zip(lowest_sure_watts(problem), site_caps(problem), strict=True)
        )
    )
    assert fallback_plan(problem, "test").outcome.over_limit_mwh <= 1e-12


def test_the_fallback_pauses_gpus_when_capping_falls_short() -> None:
    """When capping every node to its deepest level still leaves the site over an event's cap,
    the fallback pauses nodes instead."""
    gpu = GpuGroup("gpu-0", "spot", 4, 8, H100_CAP_LEVELS, 100.0, 1_500.0, overhead_factor=1.25)
    problem = Problem(
        start=START,
        step_s=(300.0, 300.0),
        price_usd_per_mwh=(50.0, 50.0),
        hashprice_usd_per_th_day=(0.05, 0.05),
        site_limit_watts=1e6,
        site_margin_watts=0.0,
        asic_groups=(AsicGroup("asic-0", "S21", 4, 3_500.0, 200.0),),
        gpu_groups=(gpu,),
        contracts=(Contract("spot", Tier.INTERRUPTIBLE, 1.5),),
        events=(GridEvent("shed-1", START, START + timedelta(hours=1), 15_241.0),),
    )
    plan = fallback_plan(problem, "test")
    assert plan.outcome.over_limit_mwh == 0
    assert plan.schedule.gpu_paused_nodes.all()


@PROPERTY_SETTINGS
@given(problems())
def test_always_on_sleeps_only_what_the_limit_forces(problem: Problem) -> None:
    """Always-on leaves the GPUs alone and keeps every ASIC awake that fits under the cap and is
    not locked asleep: a group with such units asleep could not wake one more without going over."""
    plan = always_on(problem)
    assert plan.status is PlanStatus.BASELINE
    assert not plan.schedule.gpu_capped_nodes.any()
    assert not plan.schedule.gpu_paused_nodes.any()
    caps = site_caps(problem)
    gpu_watts = sum(g.overhead_factor * g.nodes * g.full_node_watts for g in problem.gpu_groups)
    offsets = problem.step_offsets_s()
    for t in range(problem.steps):
        draw = float(plan.outcome.site_watts[t])
        assert draw <= max(caps[t], gpu_watts) + 1e-6
        for g, group in enumerate(problem.asic_groups):
            locked = group.units_locked_off if offsets[t] < group.locked_off_until_s else 0
            assert plan.schedule.asic_units_on[g, t] <= group.units - locked
            if plan.schedule.asic_units_on[g, t] < group.units - locked:
                assert draw + group.watts_per_unit * group.overhead_factor > caps[t] - 1e-6


@PROPERTY_SETTINGS
@given(problems(Sizes(gpu_groups=(0, 0)), events=False), st.floats(-50.0, 300.0))
def test_threshold_sleeps_the_models_that_lose_money_at_the_last_price(
    problem: Problem, last_price: float
) -> None:
    """With room for every miner, the threshold rule sleeps exactly the models whose breakeven at
    the meter (after pool fee and overhead) is below the last known price, and runs the rest."""
    roomy = replace(problem, site_limit_watts=1e9, site_margin_watts=0.0)
    plan = threshold(roomy, last_price)
    for g, group in enumerate(roomy.asic_groups):
        joules_per_th = group.watts_per_unit / group.ths_per_unit
        for t in range(roomy.steps):
            hashprice = roomy.hashprice_usd_per_th_day[t] * (1 - roomy.pool_fee)
            breakeven = hashprice * 1e6 / (24 * joules_per_th * group.overhead_factor)
            expected = 0 if breakeven < last_price else group.units
            assert plan.schedule.asic_units_on[g, t] == expected
