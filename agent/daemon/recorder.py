"""The SLA ledger as the asyncio daemon uses it: off the event loop, one call at a time, and
with writes that can be handed over without waiting.

SQLite commits fsync (a few milliseconds), so every ledger call runs in a worker thread. The
guard must not wait for one before it sheds again: it hands its command records to `write`,
an ordered queue that the `run` task drains. Everything else (`call`) first waits for the queue,
so what was written is what is read; `durable` waits for the queue alone (a plan is published
only once its commands are on disk).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from gridpilot.agent.daemon.ledger import Ledger, LedgerError

T = TypeVar("T")
_log = structlog.get_logger("gridpilot.ledger")


class Recorder:
    """`on_failure(action)` is told of each write that failed (for the metrics)."""

    def __init__(self, ledger: Ledger, *, on_failure: Callable[[str], None] | None = None) -> None:
        self.ledger = ledger
        self.on_failure = on_failure or (lambda action: None)
        self._lock = asyncio.Lock()
        self._queue: asyncio.Queue[tuple[Callable[..., object], tuple[Any, ...]]] = asyncio.Queue()
        self._running = False

    async def call(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` in a worker thread, after every queued write."""
        await self.durable()
        async with self._lock:
            return await asyncio.to_thread(call, *args)

    def failed(
        self, action: str, error: LedgerError, *, event: str = "ledger.failed", **context: object
    ) -> None:
        """Say and count that the ledger refused `action` (a full disk, a read-only file): the
        daemon goes on without that record, and the failure is loud."""
        _log.error(event, action=action, error=str(error), **context)
        self.on_failure(action)

    def write(self, call: Callable[..., object], *args: Any) -> None:
        """Queue `call(*args)`; it runs after the writes queued before it."""
        self._queue.put_nowait((call, args))

    async def durable(self) -> None:
        """Return once every queued write is in the ledger."""
        if self._running:
            await self._queue.join()
        else:
            self.flush()  # before `run` or after it: nobody else will

    async def run(self) -> None:
        """Drain the queue until cancelled (a task of the daemon's task group)."""
        self._running = True
        try:
            while True:
                call, args = await self._queue.get()
                write = asyncio.ensure_future(self._write(call, args))
                try:
                    await asyncio.shield(write)
                except asyncio.CancelledError:
                    # Stopping: the write in hand is finished first, never dropped.
                    await write
                    raise
        finally:
            self._running = False

    async def _write(self, call: Callable[..., object], args: tuple[Any, ...]) -> None:
        try:
            async with self._lock:
                await asyncio.to_thread(call, *args)
        except LedgerError:
            # The site is kept safe without its record; the failure is loud.
            _log.exception("ledger.write_failed", call=getattr(call, "__name__", "?"))
            self.on_failure("write")
        finally:
            self._queue.task_done()

    def flush(self) -> None:
        """Outside the task group: what is still queued goes in now."""
        while not self._queue.empty():
            call, args = self._queue.get_nowait()
            try:
                call(*args)
            except LedgerError:
                _log.exception("ledger.write_failed", call=getattr(call, "__name__", "?"))
                self.on_failure("write")
            finally:
                self._queue.task_done()
