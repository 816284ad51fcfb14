"""The study on a real Dask cluster: a scheduler and two workers started as processes on
loopback, as `dask scheduler` and `dask worker` run on a cluster's machines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from gridpilot.agent.study.executors import DaskCluster, ExecutorUnavailableError
from gridpilot.agent.study.results import read_table
from gridpilot.agent.study.run import StudyOutcome, run_study
from gridpilot.agent.study.spec import load_spec
from tests.agent.study.conftest import PoolRun, write_spec
from tests.agent.study.faults import WaitsToBeKilled, wait_for_pid

pytest.importorskip("distributed", reason="the dask extra is not installed")

ROOT = Path(__file__).resolve().parents[3]
DASK = Path(sys.executable).with_name("dask")
READY_S = 60.0


@dataclass(frozen=True, slots=True)
class Cluster:
    address: str


def _wait_for_file(path: Path, process: subprocess.Popen[bytes]) -> dict[str, object]:
    """The scheduler file's contents once the scheduler has written it whole."""
    ready = threading.Event()
    for _ in range(int(READY_S / 0.05)):
        if process.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with {process.returncode}")
        try:
            found: dict[str, object] = json.loads(path.read_text())
            return found
        except (FileNotFoundError, json.JSONDecodeError):
            ready.wait(0.05)
    raise TimeoutError(f"no scheduler file at {path} after {READY_S:g} s")


def _start(arguments: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """`dask ARGUMENTS` from this checkout, its output to `log`."""
    return subprocess.Popen(  # noqa: S603  # the venv's dask, our own arguments
        [str(DASK), *arguments],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A scheduler on a free loopback port and two one-thread workers, ready; stopped after.
    The workers run from this checkout, so they import gridpilot and the tests' faults."""
    from distributed import Client  # noqa: PLC0415 - skipped above without the extra

    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    common = ["--no-dashboard", "--scheduler-file", str(scheduler_file)]
    logs = [(folder / f"{name}.log").open("wb") for name in ("scheduler", "w1", "w2")]
    processes = [_start(["scheduler", "--host", "127.0.0.1", "--port", "0", *common], logs[0])]
    try:
        address = str(_wait_for_file(scheduler_file, processes[0])["address"])
        processes += [
            _start(["worker", "--nthreads", "1", "--name", f"w{index}", *common], logs[index])
            for index in (1, 2)
        ]
        with Client(address, timeout=READY_S, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=READY_S)
        yield Cluster(address)
    finally:
        for process in reversed(processes):
            _stop(process)
        for log in logs:
            log.close()


def _figures(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """The rows without what differs between runs: the wall time."""
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]


def test_a_dask_cluster_gives_the_figures_of_the_pool(
    cluster: Cluster, pool_run: PoolRun, tmp_path: Path
) -> None:
    """The same study on two Dask workers gives the same rows, figure for figure, as on the
    local pool."""
    with DaskCluster(cluster.address) as dask:
        assert dask.slots() == 2
        outcome = run_study(pool_run.spec, tmp_path / "out", dask, progress=False)
    assert (outcome.ok, outcome.failed) == (4, 0)
    ours = read_table(tmp_path / "out" / "results.parquet")
    assert _figures(ours) == _figures(read_table(pool_run.out / "results.parquet"))


def test_a_killed_dask_worker_s_task_runs_again(cluster: Cluster, tmp_path: Path) -> None:
    """Killing the worker process in the middle of a scenario: the scheduler gives its task
    to a worker that lives, and every scenario gets figures."""
    spec = load_spec(write_spec(tmp_path))
    fault = tmp_path / "fault"
    fault.mkdir()
    outcomes: list[StudyOutcome] = []
    with DaskCluster(cluster.address) as dask:
        thread = threading.Thread(
            target=lambda: outcomes.append(
                run_study(
                    spec,
                    tmp_path / "out",
                    dask,
                    progress=False,
                    evaluate=WaitsToBeKilled(str(fault)),
                )
            ),
            name="study",
        )
        thread.start()
        pid = wait_for_pid(fault)
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout=120)
    assert not thread.is_alive()
    (outcome,) = outcomes
    assert (outcome.ok, outcome.failed) == (4, 0)
    assert {row["status"] for row in read_table(tmp_path / "out" / "results.parquet")} == {"ok"}
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # it is gone: the figures came from elsewhere


def test_no_scheduler_is_unavailable(tmp_path: Path) -> None:
    """A scheduler address with nothing listening is an `ExecutorUnavailableError` saying
    where, once the connect timeout has passed (the command line exits 69 on it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(ExecutorUnavailableError, match=f"no Dask scheduler at {address}"):
        DaskCluster(address, timeout_s=1.0)
