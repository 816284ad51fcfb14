"""The ledger-disk trial of `gridpilot bench reliability`: the agent's ledger on a small tmpfs
of its own, filled to its last block under the running agent, and then read-only under a new
one.

The agent runs as its own process on the guard bench's synthetic site with its ledger on a
2 MiB tmpfs mounted for the trial (so it needs root, or it is skipped and says why). The
filesystem is filled (a file written until ENOSPC); then a meter reading over the site's cap
must still be shed (the time from the reading to the guard's command on the broker), a new
forecast's plan must not be carried out (`plan.not_recorded` in the agent's log), each failed
write must be said (`ledger.write_failed`, `ledger.failed`) and the agent must stay up and
online. Then the file is removed and the next forecast's plan must be recorded and carried out
(`plan.made`): the time from the mend to it. Last, the filesystem is remounted read-only (Linux
refuses that while a process has a file on it open for writing, so the agent is stopped first;
a ledger going read-only under a running agent is tested in tests/integration, on SQLite's
own read-only mode) and an agent started with its ledger there must exit with 73 (EX_CANTCREAT)
naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gridpilot.adapters.broker import LocalBroker
from gridpilot.agent.bench.agent_process import (
    GROUPS,
    PREFIX,
    AgentLog,
    Watcher,
    connect,
    feed,
    forecast,
    start_agent,
)

TMPFS_SIZE = "2m"  # small enough that SQLite's log never reaches its checkpoint (4 MiB)
EX_CANTCREAT = 73


@dataclass(frozen=True, slots=True)
class DiskBench:
    """What the agent did with its ledger's disk full, and started on it read-only; all zero
    and `skipped` saying why where the trial could not run."""

    skipped: str = ""  # why the trial did not run (no root, no tmpfs)
    shed_ms: float = 0.0  # a reading over the cap to the guard's command on the broker
    plan_refused: bool = False  # the plan made meanwhile was not carried out
    failures_logged: int = 0  # ledger failures the agent said
    alive: bool = False  # up and online throughout
    recovered: bool = False  # a plan recorded and carried out once the disk had room again
    recovered_s: float = 0.0  # from the room made to that plan
    ledger_intact: bool = False  # SQLite's integrity check, after
    start_read_only_exit: int | None = None  # an agent started on the read-only disk


def disk_trial(broker: LocalBroker, site: str, folder: Path) -> DiskBench:
    """The trial, on `site` (the bench site's text), in a tmpfs under `folder`."""
    disk = folder / "disk"
    disk.mkdir()
    mounted = _mount(disk)
    if mounted:
        return DiskBench(skipped=mounted)
    try:
        ledger = disk / "ledger.sqlite3"
        config = folder / "disk.toml"
        config.write_text(_on_ledger(site, ledger))
        full = asyncio.run(_full_disk(broker, config, folder, ledger, disk))
        _checked("mount", "-o", "remount,ro", str(disk))
        return replace(full, start_read_only_exit=_start_on(folder, site, disk / "new.sqlite3"))
    finally:
        _run("umount", "-l", str(disk))


def _mount(disk: Path) -> str:
    """Mount the trial's tmpfs on `disk`; why not, or "" once mounted."""
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs for the ledger"
    result = _run("mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(disk))
    if result.returncode:
        return f"cannot mount a tmpfs: {result.stderr.strip() or result.returncode}"
    return ""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)  # noqa: S603


def _on_ledger(site: str, ledger: Path) -> str:
    text, count = re.subn(r'^ledger_path = ".*"$', f'ledger_path = "{ledger}"', site, flags=re.M)
    if count != 1:
        raise RuntimeError("the bench site names no ledger_path")
    return text


def _limit_watts(site: str) -> float:
    match = re.search(r"^interconnect_watts = (\S+)$", site, flags=re.M)
    if match is None:
        raise RuntimeError("the bench site has no interconnect_watts")
    return float(match.group(1))


async def _full_disk(
    broker: LocalBroker, config: Path, folder: Path, ledger: Path, disk: Path
) -> DiskBench:
    limit = _limit_watts(config.read_text())
    agent = start_agent(config, folder)
    log = AgentLog(folder / "agent.log")
    try:
        client = await connect(broker, "gridpilot-rel-disk")
        try:
            async with Watcher(client) as watcher:
                await watcher.until(watcher.online, 60)
                await feed(client)
                await watcher.until(lambda: len(watcher.commands) >= GROUPS, 120)
                with _full(disk):
                    since = log.mark()
                    shed_ms = await _shed(client, watcher, limit)
                    await client.publish(
                        f"{PREFIX}/price/forecast", forecast(datetime.now(UTC), 30.0), qos=1
                    )
                    refused = await log.until("plan.not_recorded", since, 30)
                    failures = log.count(("ledger.write_failed", "ledger.failed"), since)
                    alive = agent.poll() is None and watcher.online()
                    mended_at = log.mark()
                mended = time.monotonic()
                await feed(client)  # back under the cap
                await client.publish(
                    f"{PREFIX}/price/forecast", forecast(datetime.now(UTC), 30.0), qos=1
                )
                recovered = await log.until("plan.made", mended_at, 60)
                return DiskBench(
                    shed_ms=shed_ms,
                    plan_refused=refused,
                    failures_logged=failures,
                    alive=alive and agent.poll() is None,
                    recovered=recovered,
                    recovered_s=time.monotonic() - mended,
                    ledger_intact=_intact(ledger),
                )
        finally:
            await client.__aexit__(None, None, None)
    finally:
        agent.terminate()
        agent.wait(timeout=30)


@contextlib.contextmanager
def _full(disk: Path) -> Iterator[None]:
    """The disk full (a file written to its last block) until the block ends."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(descriptor, b"\0" * 65_536)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
    finally:
        os.close(descriptor)
    try:
        yield
    finally:
        filler.unlink()


def _checked(*args: str) -> None:
    result = _run(*args)
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")


async def _shed(client: Any, watcher: Watcher, limit_watts: float) -> float:
    """A reading 5 % over the cap; milliseconds until a guard command is on the broker."""
    before = dict(watcher.commands)

    def guard_command() -> bool:
        return any(
            payload != before.get(topic) and json.loads(payload)["reason"].startswith("guard")
            for topic, payload in watcher.commands.items()
        )

    started = time.perf_counter()
    await feed(client, watts=1.05 * limit_watts)
    await watcher.until(guard_command, 30)
    return (time.perf_counter() - started) * 1e3


def _intact(ledger: Path) -> bool:
    with contextlib.closing(sqlite3.connect(ledger)) as connection:
        return bool(connection.execute("PRAGMA integrity_check").fetchone() == ("ok",))


def _start_on(folder: Path, site: str, ledger: Path) -> int | None:
    """The exit code of an agent started with `ledger` on the read-only disk (None: it ran)."""
    config = folder / "read-only.toml"
    config.write_text(_on_ledger(site, ledger))
    try:
        done = subprocess.run(  # noqa: S603  # this interpreter, our own module
            [sys.executable, "-m", "gridpilot", "run", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("GRIDPILOT_")},
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode == EX_CANTCREAT and str(ledger) not in done.stderr:
        raise RuntimeError(f"exit 73 without naming the ledger: {done.stderr.strip()}")
    return done.returncode
