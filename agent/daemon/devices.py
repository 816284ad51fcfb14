"""Device actuators that must be started (pyasic, NVML), kept from taking the agent down.

A device library that cannot start (not installed, no driver, not one miner answering) would
end `gridpilot run`, and systemd would restart it into the same failure, the guard and the
planner with it. `SupervisedActuator` wraps one such actuator instead. When its start fails,
its groups are down: `device.down` in the log with the reason and the fix,
`gridpilot_device_up{group,actuator}` 0, and their commands answered as not carried out while
the agent goes on remembering them as its setpoints. `run` tries the start again after 5 s,
then 10 s, 20 s ..., at most 5 minutes apart, on the agent's clock. Once it starts the groups
are up (`device.up`, 1) and `resend` sends each group its current setpoint: the latest command
decided for it, also while it was down.

The first attempt is made before the agent serves and is given `START_TIMEOUT_S` of wall time
(detecting thousands of unreachable miners takes many minutes, and systemd waits 90 s for the
agent to say it is ready); the retries run beside the guard and the planner and may take as
long as they take.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import structlog

from gridpilot.adapters.actuation import (
    Actuator,
    Command,
    DeviceUnavailableError,
    ManagedActuator,
    Outcome,
    RoutingActuator,
)
from gridpilot.agent.daemon.actuators import Supervise
from gridpilot.agent.daemon.clock import Clock
from gridpilot.agent.daemon.metrics import Metrics

_log = structlog.get_logger("gridpilot.devices")

FIRST_RETRY_S = 5.0
MAX_RETRY_S = 300.0
# Wall seconds for the first start, well inside systemd's default TimeoutStartSec (90 s).
START_TIMEOUT_S = 30.0

# Sends the named groups their current setpoints (the daemon's `Commands.resend`).
Resend = Callable[[tuple[str, ...]], Awaitable[None]]


class SupervisedActuator:
    """One device actuator (`kind`: "pyasic", "nvml") driving `groups`, kept up or reported
    down, and retried with a doubling backoff from `first_retry_s` to `max_retry_s`."""

    def __init__(
        self,
        actuator: ManagedActuator,
        *,
        kind: str,
        groups: Sequence[str],
        clock: Clock,
        metrics: Metrics,
        resend: Resend,
        first_retry_s: float = FIRST_RETRY_S,
        max_retry_s: float = MAX_RETRY_S,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self.actuator = actuator
        self.kind = kind
        self.groups = tuple(groups)
        self._clock = clock
        self._metrics = metrics
        self._resend = resend
        self._first_retry_s = first_retry_s
        self._max_retry_s = max_retry_s
        self._start_timeout_s = start_timeout_s
        self.up = False
        self.reason = "not started yet"
        self.attempts = 0
        self._down_since: datetime | None = None

    async def start(self) -> None:
        """The first attempt, within `start_timeout_s`. Never raises for the device's failure:
        the groups are then down, and `run` retries."""
        await self._attempt(self._first_retry_s, timeout_s=self._start_timeout_s)

    async def run(self) -> None:
        """Until the device is up: wait, try again, wait twice as long (capped). When it comes
        up, its groups are sent their current setpoints. Returns once it is up."""
        delay = self._first_retry_s
        while not self.up:
            await self._clock.sleep(delay)
            delay = min(2 * delay, self._max_retry_s)
            if await self._attempt(delay):
                await self._resend(self.groups)

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        if self.up:
            return await self.actuator.apply(commands)
        detail = (
            f"{self.kind} is down ({self.reason}); the latest setpoint is sent when it comes up"
        )
        return [Outcome(c.group, False, detail) for c in commands]

    async def close(self) -> None:
        if self.up:
            self.up = False
            await self.actuator.close()

    async def _attempt(self, retry_in_s: float, timeout_s: float | None = None) -> bool:
        """One start; whether the device is up now."""
        self.attempts += 1
        fix = ""
        unexpected: dict[str, Exception] = {}
        try:
            async with asyncio.timeout(timeout_s) as deadline:
                await self.actuator.start()
        except DeviceUnavailableError as error:
            self.reason, fix = error.reason, error.fix
        except Exception as error:  # a device library's own failure, of any type
            if isinstance(error, TimeoutError) and deadline.expired():
                self.reason = f"did not start within {timeout_s:g} s; still trying"
            else:
                self.reason = f"{type(error).__name__}: {error}"
                unexpected["exc_info"] = error  # its traceback, for a bug report
        else:
            self._mark(up=True)
            down_s = None
            if self._down_since is not None:
                down_s = round((self._clock.now() - self._down_since).total_seconds(), 1)
            _log.info(
                "device.up",
                actuator=self.kind,
                groups=_shown(self.groups),
                attempts=self.attempts,
                down_s=down_s,
            )
            self._down_since = None
            return True
        self._mark(up=False)
        if self._down_since is None:
            self._down_since = self._clock.now()
        _log.warning(
            "device.down",
            actuator=self.kind,
            groups=_shown(self.groups),
            reason=self.reason,
            fix=fix,
            attempt=self.attempts,
            retry_in_s=retry_in_s,
            **unexpected,
        )
        return False

    def _mark(self, *, up: bool) -> None:
        self.up = up
        for group in self.groups:
            self._metrics.device_up.labels(group, self.kind).set(1 if up else 0)


def supervisor(*, clock: Clock, metrics: Metrics, resend: Resend) -> Supervise:
    """What `build_actuator` wraps each device actuator with, for the daemon."""

    def supervise(actuator: ManagedActuator, kind: str, groups: tuple[str, ...]) -> Actuator:
        return SupervisedActuator(
            actuator, kind=kind, groups=groups, clock=clock, metrics=metrics, resend=resend
        )

    return supervise


async def retry_down(actuator: Actuator) -> None:
    """Retry every supervised device actuator behind `actuator` (a `RoutingActuator`, or one
    actuator) that is down, each in its own task, until all are up."""
    behind = actuator.actuators() if isinstance(actuator, RoutingActuator) else [actuator]
    supervised = [a for a in behind if isinstance(a, SupervisedActuator)]
    async with asyncio.TaskGroup() as tasks:
        for device in supervised:
            tasks.create_task(device.run(), name=f"device-{device.kind}")


def _shown(groups: tuple[str, ...], most: int = 6) -> str:
    """The groups for a log line: all of a few, the first and last of many."""
    if len(groups) <= most:
        return ", ".join(groups)
    return f"{groups[0]} .. {groups[-1]} ({len(groups)} groups)"
