"""Scenarios in batches: what one task of an executor runs, and how the grid is cut into them.

A task should run for seconds to tens of seconds: long enough that sending it and reading the
year's data (`year_data`, about a second, once per worker) are small beside it, short enough
that a lost worker loses little and the last tasks do not leave the other workers idle. So the
grid is grouped by year and hub (a worker's cached year then serves its whole batch) and packed
up to `TASK_S` of estimated work, fewer when the study is too small to give every worker a few
tasks. The longest batches go first, so that the study does not end waiting on one of them.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gridpilot.agent.replay.programs import ProgramTerms
from gridpilot.agent.study.data import year_data
from gridpilot.agent.study.scenario import Scenario, YearData, evaluate, year_span
from gridpilot.optimizer.problem import Problem

Row = dict[str, object]  # one scenario's line of results: its inputs, figures and status
# What a task runs for each scenario: `scenario.evaluate`, or a stand-in (the tests' faults).
Evaluate = Callable[[Scenario, Problem, YearData, ProgramTerms], Row]

# Seconds of one replayed year on one core of this project's 2-core machine: the threshold
# rule about 10 s, the agent about 75 s (it solves the optimizer; commit 2d5c410's figure, the
# default replay's year); plus what any scenario costs however short (the period's set-up).
YEAR_S = {"threshold": 10.0, "agent": 75.0}
SCENARIO_OVERHEAD_S = 1.0
TASK_S = 30.0  # estimated work a task is packed up to
TASKS_PER_WORKER = 3  # at least this many tasks per worker where the study allows


@dataclass(frozen=True, slots=True)
class Task:
    """One batch: scenarios of one year and hub, and what evaluating them needs (sent by
    value, so a worker on another machine needs gridpilot installed but no files)."""

    batch: int  # its number in the study
    scenarios: tuple[Scenario, ...]
    base: Problem
    terms: ProgramTerms
    evaluate: Evaluate = evaluate


def estimate_s(scenario: Scenario) -> float:
    """The seconds a scenario is expected to take on one core (module docstring)."""
    start, end = scenario.span()
    first, after = year_span(scenario.year)
    share = (end - start) / (after - first)
    return SCENARIO_OVERHEAD_S + YEAR_S[scenario.strategy] * share


def plan_batches(scenarios: Sequence[Scenario], workers: int) -> list[tuple[Scenario, ...]]:
    """The scenarios cut into batches of one year and hub each, longest first."""
    total = sum(estimate_s(s) for s in scenarios)
    target = min(TASK_S, total / (max(1, workers) * TASKS_PER_WORKER))
    groups: dict[tuple[int, str], list[Scenario]] = {}
    for scenario in scenarios:
        groups.setdefault((scenario.year, scenario.hub), []).append(scenario)
    batches: list[tuple[Scenario, ...]] = []
    for members in groups.values():
        batch: list[Scenario] = []
        work = 0.0
        for scenario in sorted(members, key=estimate_s, reverse=True):
            cost = estimate_s(scenario)
            if batch and work + cost > target:
                batches.append(tuple(batch))
                batch, work = [], 0.0
            batch.append(scenario)
            work += cost
        if batch:
            batches.append(tuple(batch))
    return sorted(batches, key=lambda b: sum(estimate_s(s) for s in b), reverse=True)


def run_batch(task: Task) -> list[Row]:
    """Evaluate every scenario of the task, in the worker. A scenario that raises gives a
    failed row with its error; the others go on."""
    rows: list[Row] = []
    for scenario in task.scenarios:
        started = time.perf_counter()
        try:
            year = year_data(scenario.year, scenario.hub)
            row = task.evaluate(scenario, task.base, year, task.terms)
            row = {**row, "status": "ok", "error": ""}
        except Exception as error:  # any error of one scenario is its result
            row = failed_row(scenario, _describe(error))
        row["wall_s"] = time.perf_counter() - started
        rows.append(row)
    return rows


def failed_row(scenario: Scenario, error: str) -> Row:
    """The row of a scenario that has no figures, with why."""
    return {"key": scenario.key(), **scenario.inputs(), "status": "failed", "error": error}


def _describe(error: BaseException) -> str:
    """The error and where it was raised, on one line."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"
