"""The hindsight bound: the same model over the whole period with the true prices."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np

from gridpilot.optimizer.hindsight import hindsight, hindsight_schedule
from gridpilot.optimizer.merit import always_on, threshold
from gridpilot.optimizer.plan import PlanStatus
from gridpilot.optimizer.problem import AllowanceBudget, Problem
from gridpilot.optimizer.synthetic import synthetic_problem


def _three_days() -> Problem:
    return synthetic_problem(12, 3 * 96, step_s=900.0, seed=3)


def test_hindsight_beats_every_baseline_on_the_same_prices() -> None:
    """Knowing the prices, the bound earns at least what always-on and the threshold rule earn."""
    problem = _three_days()
    bound = hindsight(problem, chunk_s=86_400.0)
    known = np.concatenate(([problem.price_usd_per_mwh[0]], problem.price_usd_per_mwh[:-1]))
    assert bound.status is PlanStatus.OPTIMAL
    assert bound.outcome.over_limit_mwh == 0
    assert bound.outcome.profit_usd >= always_on(problem).outcome.profit_usd
    assert bound.outcome.profit_usd >= threshold(problem, known).outcome.profit_usd


def test_chunks_lose_little_against_one_solve() -> None:
    """Daily chunks chained by their end state come within 0.5 % of one solve over three days,
    and never above it (a cut only removes foresight)."""
    problem = _three_days()
    whole = hindsight(problem, chunk_s=10 * 86_400.0)
    chunked = hindsight(problem, chunk_s=86_400.0)
    assert chunked.schedule.asic_units_on.shape == whole.schedule.asic_units_on.shape
    assert chunked.outcome.profit_usd <= whole.outcome.profit_usd + 1e-6 * abs(
        whole.outcome.profit_usd
    )
    assert chunked.outcome.profit_usd >= whole.outcome.profit_usd * 0.995


def test_the_bounds_setpoints_alone_are_its_plans() -> None:
    """A replay takes the bound's setpoints without its score: the same, chunked or not."""
    problem = _three_days()
    for chunk_s in (86_400.0, 10 * 86_400.0):
        plan = hindsight(problem, chunk_s=chunk_s)
        alone = hindsight_schedule(problem, chunk_s=chunk_s)
        for name in ("asic_units_on", "gpu_capped_nodes", "gpu_paused_nodes", "gpu_level"):
            assert np.array_equal(getattr(alone, name), getattr(plan.schedule, name)), name


def test_hindsight_ignores_reservation_values_and_blocking() -> None:
    """The bound sees the whole period: it spends allowance without a reservation price and
    decides every step on its own."""
    problem = replace(_three_days(), allowance_value_usd_per_node_hour={"flex": 1e6})
    bound = hindsight(problem)
    assert bound.problem.allowance_value_usd_per_node_hour == {}
    assert bound.problem.options.blocking == ()


def test_each_billing_period_keeps_its_own_allowance() -> None:
    """Cut at the budgets' periods, each day spends at most what is left in it."""
    problem = _three_days()
    day = timedelta(days=1)
    budgets = tuple(
        AllowanceBudget("flex", problem.start + k * day, problem.start + (k + 1) * day, 5.0)
        for k in range(3)
    )
    bound = hindsight(replace(problem, budgets=budgets, events=()))
    hours = np.asarray(bound.problem.step_s) / 3600.0
    used = np.zeros(problem.steps)
    for index, gpu in enumerate(problem.gpu_groups):
        if gpu.contract == "flex":
            curtailed = (
                bound.schedule.gpu_capped_nodes[index] + bound.schedule.gpu_paused_nodes[index]
            )
            used += curtailed * hours
    per_day = used.reshape(3, 96).sum(axis=1)
    assert (per_day <= 5.0 + 1e-9).all()
    assert per_day.sum() > 0
