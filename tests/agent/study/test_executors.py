"""`ProcessPool` on a pool that broke between two tasks, deterministically: a stand-in pool
whose `submit` raises as a `ProcessPoolExecutor` does once it has seen a worker die. (The real
kill is `test_study.test_a_killed_worker_s_scenarios_are_retried`; there, whether the pool
notices before or after the next submit is a race.)"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any, cast

from gridpilot.agent.study.batches import Task
from gridpilot.agent.study.executors import ProcessPool


class _StandInPool(Executor):
    """Hands back a future per task: done with `rows`, or lost once `break_now` is called (as
    a broken pool fails every task it still runs); after that, `submit` raises."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.pending: list[Future[Any]] = []
        self.broken = False
        self.shut_down = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self.broken:
            raise BrokenProcessPool("A child process terminated abruptly")
        future: Future[Any] = Future()
        self.pending.append(future)
        return future

    def finish_one(self) -> None:
        self.pending.pop(0).set_result(self.rows)

    def break_now(self) -> None:
        self.broken = True
        for future in self.pending:
            future.set_exception(BrokenProcessPool("A child process terminated abruptly"))
        self.pending.clear()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.shut_down = True


def _task(batch: int) -> Task:
    # The stand-in pool never runs the task, so only its identity matters here.
    return cast(Task, f"task-{batch}")


def test_a_submit_to_a_pool_that_broke_since_the_last_wait_starts_a_new_pool() -> None:
    """One task finished just before a worker died; the next submit finds the pool broken:
    it goes to a new pool, and the task that was running in the old one comes back lost."""
    pools: list[_StandInPool] = []

    def new_pool(workers: int) -> _StandInPool:
        pools.append(_StandInPool([{"batch": len(pools)}]))
        return pools[-1]

    executor = ProcessPool(2, new_pool=new_pool)
    executor.submit(_task(0))
    executor.submit(_task(1))
    pools[0].finish_one()
    assert executor.wait().rows == [{"batch": 0}]
    pools[0].break_now()  # task 1's worker dies before the driver's next submit
    executor.submit(_task(2))
    assert len(pools) == 2 and pools[0].shut_down and not pools[1].shut_down
    lost = executor.wait()
    assert (lost.task, lost.rows) == (_task(1), None)
    assert "a worker process died" in lost.lost
    assert not pools[1].shut_down  # the old pool's lost task does not shut the new one
    pools[1].finish_one()
    done = executor.wait()
    assert (done.task, done.rows) == (_task(2), [{"batch": 1}])


def test_a_pool_that_breaks_under_a_running_task_is_replaced_at_the_next_submit() -> None:
    """The other order: the lost task is handed back first, then the next task starts a new
    pool."""
    pools: list[_StandInPool] = []

    def new_pool(workers: int) -> _StandInPool:
        pools.append(_StandInPool([]))
        return pools[-1]

    executor = ProcessPool(1, new_pool=new_pool)
    executor.submit(_task(0))
    pools[0].break_now()
    assert executor.wait().lost
    assert pools[0].shut_down
    executor.submit(_task(0))
    assert len(pools) == 2
