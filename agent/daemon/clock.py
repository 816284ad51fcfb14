"""Time, injected: the daemon reads the wall clock and sleeps only through a `Clock`.

`SystemClock` is the real one. `ScaledClock` runs faster than the wall by a factor, so that an
hour of simulated site traffic passes in minutes (the soak test and demos); every age, every
loop period and every timestamp the daemon writes follow it alike.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the daemon asks of time. `speed`: this clock's seconds per wall second (loops that
    wait on the wall, such as a solve's or the broker's, divide by it)."""

    speed: float

    def now(self) -> datetime:
        """The current moment, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...


class SystemClock:
    speed = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ScaledClock:
    """Starts at `origin` (now, by default) and runs `speed` times faster than the wall."""

    def __init__(self, speed: float, origin: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = speed
        self._origin = origin or datetime.now(UTC)
        self._started = time.monotonic()

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._started) * self.speed
        return self._origin + timedelta(seconds=elapsed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)
