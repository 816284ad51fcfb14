"""A study from its spec to its folder: the scenarios not yet in the results cut into tasks,
run on an executor, each task's rows written as it finishes, the tables and the report at the
end.

A task whose worker died is run again, up to `ATTEMPTS` times in all, then its scenarios are
failed with why; a scenario that raises is failed with its error (in the worker, see
`batches.run_batch`) and the others go on. Ctrl-C stops the study with what has finished kept:
the same command carries on from there.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gridpilot.agent import site
from gridpilot.agent.replay.programs import ProgramTerms
from gridpilot.agent.settings import RESERVE_PRODUCTS, load_settings
from gridpilot.agent.study import report
from gridpilot.agent.study.batches import Evaluate, Row, Task, estimate_s, failed_row, plan_batches
from gridpilot.agent.study.executors import Executor, Finished
from gridpilot.agent.study.progress import Progress
from gridpilot.agent.study.results import ResultsStore
from gridpilot.agent.study.scenario import evaluate
from gridpilot.agent.study.spec import SpecError, StudySpec
from gridpilot.optimizer.problem import Problem

ATTEMPTS = 3  # runs of a task whose worker keeps dying, before its scenarios are failed
SPEC_COPY = "study.toml"  # the spec beside its results, for whoever reads them later


@dataclass(frozen=True, slots=True)
class StudyOutcome:
    """What a run did: scenarios in the grid, skipped as already in the results, run to
    figures, failed; tasks retried after losing their worker; where the report is."""

    scenarios: int
    skipped: int
    ok: int
    failed: int
    retried: int
    wall_s: float
    report: Path


def site_template(path: Path) -> tuple[Problem, ProgramTerms]:
    """The base site of a study as a problem template and its grid-program terms. Raises
    `settings.ConfigError` for a bad site file, `SpecError` for one a study cannot use."""
    settings = load_settings(path)
    base = site.site_problem(
        settings,
        start=datetime(2024, 1, 1, tzinfo=UTC),  # a template: each replay sets its own steps
        step_s=[900.0],
        price_usd_per_mwh=[0.0],
        hashprice_usd_per_th_day=0.05,
    )
    if not base.gpu_groups:
        why = "a study builds its AI hall from the site's first GPU group; add one"
        raise SpecError(path, [("gpu_groups", why)])
    programs = settings.programs
    terms = ProgramTerms(
        failure_usd_per_mw_h=programs.failure_usd_per_mw_h,
        deploy_chance_per_hour={p: programs.deploy_chance(p) for p in RESERVE_PRODUCTS},
        transmission_usd_per_kw_year=programs.transmission_usd_per_kw_year,
    )
    return base, terms


def run_study(
    spec: StudySpec,
    out: Path,
    executor: Executor,
    *,
    progress: bool = True,
    evaluate: Evaluate = evaluate,
) -> StudyOutcome:
    """Run the spec's scenarios that `out` has no figures for and write the results and the
    report there (module docstring)."""
    started = time.perf_counter()
    keys = [scenario.key() for scenario in spec.scenarios]
    try:
        base, terms = site_template(spec.site)
        store = ResultsStore(out)
        (out / SPEC_COPY).write_text(spec.source.read_text())
        have = store.ok_keys()
        todo = [s for s, key in zip(spec.scenarios, keys, strict=True) if key not in have]
        tasks = [
            Task(batch=number, scenarios=batch, base=base, terms=terms, evaluate=evaluate)
            for number, batch in enumerate(plan_batches(todo, executor.slots()))
        ]
        bar = None
        if progress and todo:
            bar = Progress(len(todo), sum(map(estimate_s, todo)), executor.slots())
            bar.show()
        ok, failed, retried = _run(tasks, executor, store, keys, bar)
    finally:
        executor.close()
    store.write_tables(keys)
    written = report.write_report(store.table_rows(keys), out, axes=spec.axes)
    return StudyOutcome(
        scenarios=len(keys),
        skipped=len(keys) - len(todo),
        ok=ok,
        failed=failed,
        retried=retried,
        wall_s=time.perf_counter() - started,
        report=written,
    )


def _run(
    tasks: list[Task],
    executor: Executor,
    store: ResultsStore,
    keys: list[str],
    bar: Progress | None,
) -> tuple[int, int, int]:
    """Run the tasks, at most `slots()` at a time, each one's rows stored as it finishes;
    (scenarios with figures, failed, tasks retried)."""
    queue = deque(tasks)
    attempts: dict[int, int] = {}
    ok = failed = retried = running = 0
    while queue or running:
        while queue and running < executor.slots():
            task = queue.popleft()
            attempts[task.batch] = attempts.get(task.batch, 0) + 1
            executor.submit(task)
            running += 1
        finished = executor.wait()
        running -= 1
        task = finished.task
        if finished.lost and attempts[task.batch] < ATTEMPTS:
            retried += 1
            queue.appendleft(task)  # first again: the longest go first
            continue
        rows = _rows(finished, attempts[task.batch])
        store.append(rows)
        store.write_tables(keys)
        good = sum(row["status"] == "ok" for row in rows)
        ok, failed = ok + good, failed + len(rows) - good
        if bar is not None:
            work = sum(map(estimate_s, task.scenarios))
            bar.advance(done=good, failed=len(rows) - good, work_s=work)
    return ok, failed, retried


def _rows(finished: Finished, attempts: int) -> list[Row]:
    """The task's rows, each with the attempts it took; failed ones for a task that never
    ran to its end."""
    if finished.rows is not None:
        rows = finished.rows
    else:
        why = finished.error or f"lost its worker {attempts} times: {finished.lost}"
        rows = [failed_row(scenario, why) for scenario in finished.task.scenarios]
    return [{**row, "attempts": attempts} for row in rows]
