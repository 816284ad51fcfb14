"""A real study through the local process pool: its results and report, a re-run that skips
what is done, a scenario that raises, a worker killed mid-task."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gridpilot.agent.cli import main
from gridpilot.agent.study.executors import ProcessPool
from gridpilot.agent.study.results import JOURNAL, read_table
from gridpilot.agent.study.run import StudyOutcome, run_study
from gridpilot.agent.study.spec import load_spec
from tests.agent.study.conftest import SMALL_STUDY, PoolRun, write_spec
from tests.agent.study.faults import RaisesAt, WaitsToBeKilled, wait_for_pid


def test_a_study_writes_one_row_per_scenario_and_its_report(pool_run: PoolRun) -> None:
    """Four scenarios give four rows with figures in results.parquet and results.csv, in the
    grid's order, and a report whose answer table has a line per AI share and whose plots
    exist."""
    outcome, out = pool_run.outcome, pool_run.out
    assert (outcome.scenarios, outcome.skipped, outcome.ok, outcome.failed) == (4, 0, 4, 0)
    keys = [s.key() for s in pool_run.spec.scenarios]
    table = read_table(out / "results.parquet")
    assert [row["key"] for row in table] == keys
    assert all(row["status"] == "ok" and row["attempts"] == 1 for row in table)
    with (out / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [row["key"] for row in rows] == keys
    assert [float(row["operating_profit_usd"]) for row in rows] == pytest.approx(
        [row["operating_profit_usd"] for row in table]
    )
    assert len((out / JOURNAL).read_text().splitlines()) == 4
    # AI share 0 has no hall, whatever the business model: pure mining.
    mining = [row for row in table if row["ai_share"] == 0.0]
    assert {row["ai_it_mw"] for row in mining} == {0.0}
    assert mining[0]["operating_profit_usd"] == mining[1]["operating_profit_usd"]
    report = outcome.report.read_text()
    assert report.startswith("# Study report\n")
    assert "| 0% | pure mining (threshold) |" in report
    assert "| 50% | " in report
    for plot in ("frontier.png", "co2.png", "axes.png"):
        assert f"]({plot})" in report
        assert (out / plot).stat().st_size > 10_000


def test_the_report_answer_is_the_results_means(pool_run: PoolRun) -> None:
    """The answer's profit for AI share 50 % is the best business model's operating profit in
    results.csv, in M$ to two places, and the gain on pure mining its difference."""
    with (pool_run.out / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    half = max(
        (row for row in rows if float(row["ai_share"]) == 0.5),
        key=lambda row: float(row["operating_profit_usd"]),
    )
    mining = next(row for row in rows if float(row["ai_share"]) == 0.0)
    profit = float(half["operating_profit_usd"])
    gain = profit - float(mining["operating_profit_usd"])
    line = f"| 50% | {half['business_model']}/threshold | {profit / 1e6:,.2f} | {gain / 1e6:,.2f} |"
    assert line in pool_run.outcome.report.read_text()


def test_a_re_run_skips_every_scenario_it_has(pool_run: PoolRun, tmp_path: Path) -> None:
    """Run again into the same folder, the study runs nothing, keeps its rows and says so."""
    out = tmp_path / "out"
    shutil.copytree(pool_run.out, out)
    journal = (out / JOURNAL).read_text()
    with ProcessPool(2) as pool:
        outcome = run_study(pool_run.spec, out, pool, progress=False)
    assert (outcome.scenarios, outcome.skipped, outcome.ok, outcome.failed) == (4, 4, 0, 0)
    assert (out / JOURNAL).read_text() == journal
    assert len(read_table(out / "results.parquet")) == 4


def test_a_half_written_line_is_run_again(pool_run: PoolRun, tmp_path: Path) -> None:
    """A journal whose last line a crash cut short loses only that scenario: the re-run runs
    it alone and the journal reads whole again."""
    out = tmp_path / "out"
    shutil.copytree(pool_run.out, out)
    lines = (out / JOURNAL).read_text().splitlines(keepends=True)
    (out / JOURNAL).write_text("".join(lines[:3]) + lines[3][:40])
    with ProcessPool(1) as pool:
        outcome = run_study(pool_run.spec, out, pool, progress=False)
    assert (outcome.skipped, outcome.ok) == (3, 1)
    assert len((out / JOURNAL).read_text().splitlines()) == 4
    assert [row["key"] for row in read_table(out / "results.parquet")] == [
        s.key() for s in pool_run.spec.scenarios
    ]


def test_a_scenario_that_raises_is_failed_and_the_rest_complete(tmp_path: Path) -> None:
    """The scenarios at AI share 0.5 raise: they are recorded as failed with their error,
    the two at 0 have figures, and the report lists the failures."""
    spec = load_spec(write_spec(tmp_path))
    with ProcessPool(2) as pool:
        outcome = run_study(spec, tmp_path / "out", pool, progress=False, evaluate=RaisesAt(0.5))
    assert (outcome.ok, outcome.failed) == (2, 2)
    table = read_table(tmp_path / "out" / "results.parquet")
    assert {(row["ai_share"], row["status"]) for row in table} == {(0.0, "ok"), (0.5, "failed")}
    errors = [str(row["error"]) for row in table if row["status"] == "failed"]
    assert all(error.startswith("RuntimeError: injected fault at AI share 0.5") for error in errors)
    assert all(row["operating_profit_usd"] is None for row in table if row["status"] == "failed")
    report = outcome.report.read_text()
    assert "## Failed scenarios" in report
    assert "injected fault" in report


def _run_in_thread(
    run: Callable[[], StudyOutcome],
) -> tuple[threading.Thread, list[StudyOutcome | BaseException]]:
    """The study in a thread; its outcome, or what it raised, in the list."""
    outcomes: list[StudyOutcome | BaseException] = []

    def target() -> None:
        try:
            outcomes.append(run())
        except BaseException as error:  # handed to the test, which raises it
            outcomes.append(error)

    thread = threading.Thread(target=target, name="study")
    thread.start()
    return thread, outcomes


def test_a_killed_worker_s_scenarios_are_retried(tmp_path: Path) -> None:
    """Killing a worker process in the middle of a scenario breaks the pool; its tasks run
    again on a new one and every scenario gets figures."""
    spec = load_spec(write_spec(tmp_path))
    fault = tmp_path / "fault"
    fault.mkdir()
    with ProcessPool(2) as pool:
        thread, outcomes = _run_in_thread(
            lambda: run_study(
                spec, tmp_path / "out", pool, progress=False, evaluate=WaitsToBeKilled(str(fault))
            )
        )
        pid = wait_for_pid(fault)
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout=120)
    assert not thread.is_alive()
    (outcome,) = outcomes
    if isinstance(outcome, BaseException):
        raise outcome
    assert (outcome.ok, outcome.failed) == (4, 0)
    assert outcome.retried >= 1
    table = read_table(tmp_path / "out" / "results.parquet")
    assert len(table) == 4
    assert {row["attempts"] for row in table} >= {2}  # the killed task's, run twice


def test_the_command_line_runs_what_a_folder_lacks(
    tmp_path: Path, pool_run: PoolRun, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gridpilot study SPEC --out DIR --workers 1` with one AI share more than the folder
    has results for runs its two scenarios alone, exits 0, and draws its progress on
    stderr."""
    out = tmp_path / "out"
    shutil.copytree(pool_run.out, out)
    spec = write_spec(tmp_path, SMALL_STUDY.replace("[0.0, 0.5]", "[0.0, 0.25, 0.5]"))
    assert main(["study", str(spec), "--out", str(out), "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert f"6 scenarios: 4 already in {out}, 2 run (2 with figures, 0 failed)" in captured.out
    assert f"report: {out / 'report.md'}" in captured.out
    assert "study [" + "." * 30 + "] 0 done, 0 failed, 2 left, " in captured.err
    assert captured.err.splitlines()[-1] == "study [" + "#" * 30 + "] 2 done, 0 failed, 0 left"
    assert len(read_table(out / "results.parquet")) == 6
