"""The solver against exhaustive search: on problems small enough to list every integer schedule,
`solve` finds the best one.

Every schedule (units on per ASIC group and step; capped and paused nodes and cap level per GPU
group and step) is checked by the independent rules of `tests.optimizer.feasibility` and scored
by `optimizer.schedule.evaluate` through `plan.model_value` (profit, less the reservation value of
allowance spent and the price of energy over the site's cap).

Scoring every combination of the groups' schedules with `evaluate` would take minutes, so the
search ranks them first and scores them in that order. The rules bind each group on its own (each
GPU group serves its own contract here), and the profit and the site's draw in every step add up
over groups. So each group's feasible schedules are listed and scored on their own (the other
groups asleep or at full power), and a combination's score follows from its parts: the sum of
their profits less the empty site's, counted once per extra part, less the price of the summed
draw over the cap. Combinations are scored by `evaluate` in that order until the ranking falls
below the best found; on every combination scored, `evaluate` is asserted to agree with it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from hypothesis import example, given, settings

from gridpilot.optimizer.economics import WATT_SECONDS_PER_MWH
from gridpilot.optimizer.plan import Plan, PlanStatus, model_value
from gridpilot.optimizer.problem import Problem
from gridpilot.optimizer.schedule import SOFT_LIMIT_USD_PER_MWH, Outcome, Schedule, evaluate
from gridpilot.optimizer.solve import solve
from tests.optimizer import regressions
from tests.optimizer.feasibility import group_violations, lowest_sure_watts, violations
from tests.optimizer.strategies import PROPERTY_SETTINGS, PROVEN, TINY_SIZES, problems


@dataclass(frozen=True, slots=True)
class Part:
    """One group's feasible schedules: which row they fill, and for each the site's profit (before
    the price of energy over the cap) and draw per step with only this group's schedule applied."""

    kind: str  # "asic" or "gpu"
    row: int
    choices: list[tuple[tuple[int, ...], ...]]  # per choice, per step: the group's setpoint
    values: npt.NDArray[np.float64]  # (choices,)
    watts: npt.NDArray[np.float64]  # (choices, T)


def _empty(problem: Problem) -> Schedule:
    """Every ASIC asleep, every GPU at full power."""
    steps = problem.steps
    asics = len(problem.asic_groups)
    gpus = len(problem.gpu_groups)
    return Schedule(
        asic_units_on=np.zeros((asics, steps), dtype=np.int64),
        asic_watts_per_unit=np.array(
            [[g.watts_per_unit] * steps for g in problem.asic_groups], dtype=np.float64
        ).reshape(asics, steps),
        gpu_level=np.zeros((gpus, steps), dtype=np.int64),
        gpu_capped_nodes=np.zeros((gpus, steps), dtype=np.int64),
        gpu_paused_nodes=np.zeros((gpus, steps), dtype=np.int64),
    )


def _apply(schedule: Schedule, kind: str, row: int, choice: tuple[tuple[int, ...], ...]) -> None:
    for t, setpoint in enumerate(choice):
        if kind == "asic":
            schedule.asic_units_on[row, t] = setpoint[0]
        else:
            level, capped, paused = setpoint
            schedule.gpu_level[row, t] = level
            schedule.gpu_capped_nodes[row, t] = capped
            schedule.gpu_paused_nodes[row, t] = paused


def _without_limit(problem: Problem, outcome: Outcome) -> float:
    """The score before the price of energy over the cap."""
    return model_value(problem, outcome) + SOFT_LIMIT_USD_PER_MWH * outcome.over_limit_mwh


def _parts(problem: Problem) -> list[Part]:
    parts: list[Part] = []
    for row, group in enumerate(problem.asic_groups):
        units: list[tuple[int, ...]] = [(n,) for n in range(group.units + 1)]
        parts.append(_part(problem, "asic", row, units))
    for row, gpu in enumerate(problem.gpu_groups):
        # (cap level, capped nodes, paused nodes); the level only matters with nodes capped.
        setpoints: list[tuple[int, ...]] = [(0, 0, p) for p in range(gpu.nodes + 1)]
        setpoints += [
            (level, capped, paused)
            for level in range(1, len(gpu.cap_levels))
            for capped in range(1, gpu.nodes + 1)
            for paused in range(gpu.nodes + 1 - capped)
        ]
        parts.append(_part(problem, "gpu", row, setpoints))
    return parts


def _part(problem: Problem, kind: str, row: int, setpoints: list[tuple[int, ...]]) -> Part:
    choices = []
    values = []
    watts = []
    for choice in itertools.product(setpoints, repeat=problem.steps):
        schedule = _empty(problem)
        _apply(schedule, kind, row, choice)
        if group_violations(problem, schedule):
            continue
        outcome = evaluate(problem, schedule)
        choices.append(choice)
        values.append(_without_limit(problem, outcome))
        watts.append(outcome.site_watts)
    return Part(kind, row, choices, np.array(values), np.array(watts).reshape(-1, problem.steps))


def best_schedule(problem: Problem) -> tuple[float, Schedule, int]:
    """The best feasible schedule by exhaustive search: (its score, it, combinations scored)."""
    parts = _parts(problem)
    empty = evaluate(problem, _empty(problem))
    value = np.zeros(1)
    watts = np.zeros((1, problem.steps))
    for part in parts:
        value = np.add.outer(value, part.values - _without_limit(problem, empty)).ravel()
        watts = (watts[:, None, :] + (part.watts - empty.site_watts)[None, :, :]).reshape(
            -1, problem.steps
        )
    over_watts = np.maximum(0.0, watts + empty.site_watts - problem.cap_watts())
    over_mwh = over_watts @ np.asarray(problem.step_s) / WATT_SECONDS_PER_MWH
    ranking = value + _without_limit(problem, empty) - SOFT_LIMIT_USD_PER_MWH * over_mwh
    # Over a cap that the site could surely get under: not allowed.
    binding = np.array(lowest_sure_watts(problem)) <= problem.cap_watts()
    ranking[(over_watts[:, binding] > 1e-6).any(axis=1)] = -np.inf
    shape = tuple(len(part.choices) for part in parts)
    best_value = -np.inf
    best: Schedule | None = None
    scored = 0
    for flat in np.argsort(-ranking, kind="stable"):
        if ranking[flat] == -np.inf or ranking[flat] < best_value - 1e-7 * max(
            1.0, abs(best_value)
        ):
            break
        schedule = _empty(problem)
        for part, pick in zip(parts, np.unravel_index(flat, shape), strict=True):
            _apply(schedule, part.kind, part.row, part.choices[int(pick)])
        assert violations(problem, schedule) == []
        score = model_value(problem, evaluate(problem, schedule))
        scored += 1
        assert abs(score - ranking[flat]) <= 1e-7 * max(1.0, abs(score)), "parts do not add up"
        if score > best_value:
            best_value, best = score, schedule
    assert best is not None
    return best_value, best, scored


def _absolute_gap(plan: Plan, value: float) -> float:
    """What the plan's relative gap allows in dollars (it is relative to the solver's bound,
    which is at most value / (1 - gap) away)."""
    return plan.gap * max(1.0, abs(value)) / max(1e-12, 1.0 - plan.gap)


def _describe(schedule: Schedule) -> str:
    return (
        f"ASICs {schedule.asic_units_on.tolist()}, GPUs capped "
        f"{schedule.gpu_capped_nodes.tolist()} at {schedule.gpu_level.tolist()}, paused "
        f"{schedule.gpu_paused_nodes.tolist()}"
    )


def _regressions(test: Callable[[Problem], None]) -> Callable[[Problem], None]:
    for case in regressions.ALL:
        test = example(case())(test)
    return test


@settings(PROPERTY_SETTINGS, max_examples=40)
@given(problems(TINY_SIZES, options=PROVEN))
@_regressions
def test_solver_matches_exhaustive_search(problem: Problem) -> None:
    """On tiny problems the plan obeys every rule and scores what the best schedule scores."""
    plan = solve(problem)
    assert violations(problem, plan.schedule) == []
    assert plan.status is PlanStatus.OPTIMAL
    if problem.options.relative_gap == 0:
        # Every count is an integer and no gap is allowed: nothing is lost to rounding, splitting
        # or enforcing the cap after the solve.
        assert plan.gap <= 1e-5
    best, best_schedule_found, _ = best_schedule(problem)
    value = model_value(problem, plan.outcome)
    slack = 1e-6 * max(1.0, abs(best))
    assert value <= best + slack, "a feasible plan cannot beat the best schedule"
    assert value >= best - slack - _absolute_gap(plan, value), (
        f"plan {value:.6f} < best {best:.6f}: best {_describe(best_schedule_found)}; "
        f"plan {_describe(plan.schedule)}"
    )
