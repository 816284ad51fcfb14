"""Where a study's tasks run, behind one small interface (an extension point, like httpx's
transport): `Executor`. Two ship: `ProcessPool`, the local default, and `DaskCluster`, a client
of an existing Dask `distributed` scheduler (the `dask` extra).

The study driver (`run.run_study`) keeps at most `slots()` tasks submitted, so a task that is
submitted is a task that runs, and takes each as it finishes with `wait()`. A task ends in one
of three ways (`Finished`): its rows (each scenario's own error, if any, is in its row); lost,
its worker having died under it, which the driver retries; or an error of the task itself (it
could not be sent, say), which fails its scenarios.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import Executor as FuturesExecutor
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from gridpilot.agent.study.batches import Row, Task, run_batch

if TYPE_CHECKING:
    from distributed import Client
    from distributed import Future as DaskFuture


class ExecutorUnavailableError(Exception):
    """The executor cannot start: no Dask installed, no scheduler at the address, no
    workers."""


@dataclass(frozen=True, slots=True)
class Finished:
    """How one task ended: `rows`, or `lost` (why: its worker died; retry it), or `error`
    (why it cannot run anywhere)."""

    task: Task
    rows: list[Row] | None = None
    lost: str = ""
    error: str = ""


class Executor(Protocol):
    """Runs tasks (`batches.run_batch` of a `Task`) and hands back each as it finishes."""

    def slots(self) -> int:
        """How many tasks run at once now (the workers)."""
        ...

    def submit(self, task: Task) -> None:
        """Start the task."""
        ...

    def wait(self) -> Finished:
        """Block until a submitted task ends and return how; only with one submitted."""
        ...

    def close(self) -> None:
        """Stop what still runs and let go of the workers."""
        ...


class ProcessPool:
    """Local worker processes, one task each at a time. A worker that dies breaks the pool
    (every task running in it is lost and retried), and the next task starts a new one.

    `new_pool` makes the pool of `workers` processes; a unit test passes its own."""

    def __init__(
        self, workers: int, *, new_pool: Callable[[int], FuturesExecutor] | None = None
    ) -> None:
        if workers < 1:
            raise ValueError(f"a pool needs at least one worker, not {workers}")
        self._workers = workers
        self._new_pool = new_pool or self._process_pool
        self._pool: FuturesExecutor | None = None
        self._running: dict[Future[list[Row]], tuple[Task, FuturesExecutor]] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def slots(self) -> int:
        return self._workers

    def submit(self, task: Task) -> None:
        if self._pool is not None:
            try:
                self._running[self._pool.submit(run_batch, task)] = (task, self._pool)
            except BrokenProcessPool:
                # A worker died since the last `wait`, which has not yet handed back the lost
                # tasks: they come back lost from the old pool; this one starts a new pool.
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
            else:
                return
        self._pool = self._new_pool(self._workers)
        self._running[self._pool.submit(run_batch, task)] = (task, self._pool)

    def wait(self) -> Finished:
        done, _ = wait_futures(self._running, return_when=FIRST_COMPLETED)
        future = next(iter(done))
        task, pool = self._running.pop(future)
        try:
            return Finished(task, rows=future.result())
        except BrokenProcessPool as error:
            if pool is self._pool:  # the first of its tasks to say so: start a new pool
                pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
            return Finished(task, lost=f"a worker process died ({error})")
        except Exception as error:  # the task's own failure, whatever it is
            return Finished(task, error=f"{type(error).__name__}: {error}")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._running.clear()

    @staticmethod
    def _process_pool(workers: int) -> ProcessPoolExecutor:
        # A fork server, not a fork of this process (which may hold threads and a lock);
        # the study's imports loaded once in it, so a pool started after a crash is quick.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["gridpilot.agent.study.batches"])
        return ProcessPoolExecutor(workers, mp_context=context)


class DaskCluster:
    """A client of a running Dask scheduler (`tcp://HOST:8786`). The workers must have
    gridpilot installed, at this version; run them one thread each (`dask worker ADDRESS
    --nthreads 1 --nworkers N`): a replay is Python-bound and holds the GIL. The scheduler
    itself reschedules the task of a worker that dies (`distributed.scheduler.allowed-failures`,
    3 by default); a task that killed that many is failed."""

    def __init__(self, address: str, *, timeout_s: float = 30.0) -> None:
        try:
            from distributed import Client, as_completed  # noqa: PLC0415 - the optional extra
        except ImportError as error:
            raise ExecutorUnavailableError(
                "a Dask scheduler needs the dask extra: pip install 'gridpilot[dask]'"
            ) from error
        try:
            self._client: Client = Client(address, timeout=timeout_s, set_as_default=False)
        except (OSError, TimeoutError) as error:
            raise ExecutorUnavailableError(f"no Dask scheduler at {address}: {error}") from error
        try:
            self._client.wait_for_workers(1, timeout=timeout_s)
        except TimeoutError as error:
            self._client.close()
            raise ExecutorUnavailableError(
                f"the Dask scheduler at {address} has no workers after {timeout_s:g} s"
            ) from error
        self._finished = as_completed(loop=self._client.loop)
        self._running: dict[str, Task] = {}
        self._futures: dict[str, DaskFuture[list[Row]]] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def slots(self) -> int:
        threads: dict[str, int] = self._client.nthreads()
        return max(1, sum(threads.values()))

    def submit(self, task: Task) -> None:
        key = f"gridpilot-study-{task.batch}-{uuid.uuid4().hex[:8]}"
        future = self._client.submit(run_batch, task, key=key, pure=False)
        self._running[key] = task
        self._futures[key] = future
        self._finished.add(future)

    def wait(self) -> Finished:
        from distributed import KilledWorker  # noqa: PLC0415 - the optional extra

        future = next(self._finished)
        task = self._running.pop(future.key)
        del self._futures[future.key]
        if future.status == "finished":
            return Finished(task, rows=future.result())
        if future.status == "cancelled":  # the scheduler restarted or forgot it
            return Finished(task, lost="the Dask scheduler cancelled it")
        error = future.exception()
        if isinstance(error, KilledWorker):
            return Finished(task, error=f"it killed its Dask workers: {error}")
        return Finished(task, error=f"{type(error).__name__}: {error}")

    def close(self) -> None:
        if self._futures:
            self._client.cancel(list(self._futures.values()))
        self._futures.clear()
        self._running.clear()
        self._client.close()
