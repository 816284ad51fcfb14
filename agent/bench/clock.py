"""The wall-clock trial of `gridpilot bench reliability`: the agent's wall clock jumped an hour
forward across a billing month's end, an hour back, and forward again, under libfaketime.

The agent runs as its own process on the guard bench's synthetic site with the GPU hall on a
flexible contract, its wall clock set by a libfaketime timestamp file (`@2026-11-30 23:20:00`
at its start) that the trial rewrites; its monotonic clock is left alone, as a real clock step
leaves it. At 900 $/MWh its plan caps the hall, so every accounting charges the contract's
allowance. Each jump is followed by a plan (a new forecast; each plan accounts first) and the
ledger is read: the node-hours charged to November and to December must be exactly the hall's
curtailed nodes times the wall-clock spans between the accounting marks, split at midnight on
the 1st (UTC); the hour back must charge nothing and leave the mark where it was (no span
counted twice), and the hour forward again charges only past the mark. Needs libfaketime
(Debian: faketime); skipped, saying why, without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt

from gridpilot.adapters.broker import LocalBroker
from gridpilot.agent.bench.agent_process import (
    PREFIX,
    AgentLog,
    Watcher,
    connect,
    feed,
    forecast,
    forget_commands,
    start_agent,
)

START = datetime(2026, 11, 30, 23, 20, tzinfo=UTC)
MONTH_END = datetime(2026, 12, 1, tzinfo=UTC)
JUMP = timedelta(hours=1)
LIBFAKETIME = "*/faketime/libfaketime.so.1"  # under /usr/lib, by architecture
ACCOUNTED_UNTIL = "allowance_accounted_until"  # the ledger's mark (agent.daemon.ledger)
TOLERANCE_H = 1e-6


@dataclass(frozen=True, slots=True)
class ClockBench:
    """Node-hours charged and expected from the marks; all zero and `skipped` saying why
    where the trial could not run."""

    skipped: str = ""
    nodes: int = 0  # the hall's curtailed nodes
    november_h: float = 0.0
    november_expected_h: float = 0.0
    december_h: float = 0.0
    december_expected_h: float = 0.0
    back_charged_h: float = 0.0  # what the hour back charged (must be 0)
    mark_moved_back: bool = False  # the mark went back with the clock (must not)
    months: list[str] = field(default_factory=list)  # the ledger's billing months, after

    @property
    def right(self) -> bool:
        return (
            not self.skipped
            and self.nodes > 0
            and abs(self.november_h - self.november_expected_h) < TOLERANCE_H
            and abs(self.december_h - self.december_expected_h) < TOLERANCE_H
            and self.back_charged_h == 0
            and not self.mark_moved_back
            and self.months == ["2026-11-01", "2026-12-01"]
        )


def clock_trial(broker: LocalBroker, site: str, folder: Path) -> ClockBench:
    """The trial on `site` (the bench site with the GPU hall, as text), in `folder`."""
    found = sorted(Path("/usr/lib").glob(LIBFAKETIME))
    if not found:
        return ClockBench(skipped="needs libfaketime (Debian: apt-get install faketime)")
    ledger = folder / "clock.sqlite3"
    own = site.replace(str(folder / "ledger.sqlite3"), str(ledger))
    if own == site:
        raise RuntimeError("the bench site names no ledger in its folder")
    config = folder / "clock.toml"
    config.write_text(own + "replan_min_gap_s = 0\n")
    return asyncio.run(_jumps(broker, config, folder, ledger, found[0]))


class _FakedWall:
    """The agent's wall clock through a libfaketime timestamp file: `@instant`, from which
    libfaketime runs the clock on from the process's start; a new instant is a jump."""

    def __init__(self, path: Path, library: Path) -> None:
        self.path = path
        self.library = library
        self.instant = START
        self.started = time.time()
        self._write()

    def env(self) -> dict[str, str | None]:
        return {
            "LD_PRELOAD": str(self.library),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",  # read at every call: a jump is seen at once
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # a clock step leaves the monotonic clock
            "FAKETIME": None,  # an outer faketime's (make test-dates) would win over the file
        }

    def jump(self, by: timedelta) -> None:
        self.instant += by
        self._write()

    def now(self) -> datetime:
        """The agent's wall clock, near enough (its process started just after `started`)."""
        return self.instant + timedelta(seconds=time.time() - self.started)

    def _write(self) -> None:
        self.path.write_text(self.instant.strftime("@%Y-%m-%d %H:%M:%S") + "\n")


async def _jumps(
    broker: LocalBroker, config: Path, folder: Path, ledger: Path, library: Path
) -> ClockBench:
    hall = f"{PREFIX}/cmd/gpu/hall"
    # The hall's command an earlier trial left retained would look like this agent's.
    await forget_commands(broker, [hall])
    wall = _FakedWall(folder / "faketime.txt", library)
    agent = start_agent(config, folder, env=wall.env())
    log = AgentLog(folder / "agent.log")
    try:
        client = await connect(broker, "gridpilot-rel-clock")
        try:
            async with Watcher(client) as watcher:
                await watcher.until(watcher.online, 60)
                await feed(client, price=900.0)

                def curtailed() -> int:
                    payload = watcher.commands.get(hall)
                    command = json.loads(payload) if payload else {}
                    return int(command.get("capped_nodes", 0) + command.get("paused_nodes", 0))

                await watcher.until(lambda: curtailed() > 0, 120)
                nodes = curtailed()
                # The plan that capped the hall accounted first: from its mark on, the hall
                # is curtailed (and what was charged before is the base).
                first, base = _read(ledger)
                await asyncio.sleep(1.0)
                wall.jump(JUMP)  # across the month's end
                await _plan(client, log, wall)
                forward, charged = _read(ledger)
                wall.jump(-JUMP)
                await _plan(client, log, wall)
                back, after_back = _read(ledger)
                await asyncio.sleep(1.0)
                wall.jump(JUMP)
                await _plan(client, log, wall)
                last, final = _read(ledger)
        finally:
            await client.__aexit__(None, None, None)
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    hours = final
    return ClockBench(
        nodes=nodes,
        november_h=hours.get("2026-11-01", 0.0),
        november_expected_h=base.get("2026-11-01", 0.0)
        + nodes * (MONTH_END - first).total_seconds() / 3_600.0,
        december_h=hours.get("2026-12-01", 0.0),
        december_expected_h=nodes * (last - MONTH_END).total_seconds() / 3_600.0,
        back_charged_h=sum(after_back.values()) - sum(charged.values()),
        mark_moved_back=back < forward,
        months=sorted(final),
    )


async def _plan(client: aiomqtt.Client, log: AgentLog, wall: _FakedWall) -> None:
    """A new forecast, stamped by the agent's clock, and the plan it makes (which accounts)."""
    since = log.mark()
    payload = forecast(wall.now(), 900.0)
    await client.publish(f"{PREFIX}/price/forecast", payload, qos=1)
    if not await log.until("plan.made", since, 60):
        raise RuntimeError("the agent made no plan on a new forecast")


def _read(ledger: Path) -> tuple[datetime, dict[str, float]]:
    """The accounting mark and the node-hours charged per billing month."""
    with contextlib.closing(sqlite3.connect(ledger)) as connection:
        row = connection.execute(
            "SELECT value FROM meta WHERE key = ?", (ACCOUNTED_UNTIL,)
        ).fetchone()
        months = dict(connection.execute("SELECT month, node_hours FROM allowance").fetchall())
    if row is None:
        raise RuntimeError("the ledger has no accounting mark")
    return datetime.fromisoformat(str(row[0])), {str(k): float(v) for k, v in months.items()}
