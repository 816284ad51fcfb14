"""`gridpilot run` as a process: its exit codes, a clean stop, and a SIGKILL survived."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from gridpilot.adapters.broker import LocalBroker
from gridpilot.agent.daemon.ledger import Ledger
from tests.integration.harness import PREFIX, SITE_TOML, feed_market, observing, site_settings

EX_CONFIG = 78


def _start(config: Path, tmp_path: Path) -> subprocess.Popen[bytes]:
    log = (tmp_path / "agent.log").open("ab")
    try:
        return subprocess.Popen(  # noqa: S603  # our own interpreter and module
            [sys.executable, "-m", "gridpilot", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("GRIDPILOT_")},
        )
    finally:
        log.close()


def test_invalid_config_exits_78_without_starting(tmp_path: Path) -> None:
    """An invalid site file is reported and exits with EX_CONFIG, which systemd is told not to
    restart on."""
    config = tmp_path / "site.toml"
    config.write_text('[site]\nname = "x"\n')
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "gridpilot", "run", "--config", str(config)],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == EX_CONFIG
    assert b"site.interconnect_watts" in result.stderr


def test_sigkill_then_restart_keeps_the_ledger_and_republishes(
    tmp_path: Path, broker: LocalBroker
) -> None:
    """Killed outright, the agent leaves its last will (`offline`) and an intact ledger; run
    again, it republishes the setpoints the devices were last given; SIGTERM stops it cleanly."""
    settings = site_settings(tmp_path, broker)
    config = tmp_path / "site.toml"

    async def first_run() -> dict[str, dict[str, object]]:
        agent = _start(config, tmp_path)
        try:
            async with observing(broker) as observer:
                await observer.wait_for(lambda: b"online" in observer.on(f"{PREFIX}/status"), 30)
                await feed_market(observer)
                await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 200e3}))
                await observer.wait_for(lambda: len(observer.commands()) == 7, 30)
                await observer.wait_for(lambda: bool(observer.on(f"{PREFIX}/plan")), 30)
                commands = observer.commands()
                agent.send_signal(signal.SIGKILL)
                agent.wait(timeout=10)
                # The broker notices the dead connection and publishes the last will.
                await observer.wait_for(
                    lambda: observer.on(f"{PREFIX}/status")[-1] == b"offline", 30
                )
                # Forget the retained commands, as a broker restarted without persistence would.
                for topic in commands:
                    await observer.publish(topic, b"", retain=True)
                return commands
        finally:
            if agent.poll() is None:
                agent.kill()

    commands = asyncio.run(first_run())
    ledger_path = settings.agent.ledger_path
    connection = sqlite3.connect(ledger_path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        connection.close()
    with Ledger.open(ledger_path) as ledger:
        assert len(ledger.current_setpoints()) == 7

    async def second_run() -> None:
        agent = _start(config, tmp_path)
        try:
            async with observing(broker) as observer:
                await observer.wait_for(lambda: len(observer.commands()) == 7, 30)
                assert {
                    t: c["units_on"] for t, c in observer.commands().items() if "asic" in t
                } == {t: c["units_on"] for t, c in commands.items() if "asic" in t}
                started = time.monotonic()
                agent.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(agent.wait, 15) == 0
                assert time.monotonic() - started < 10
                await observer.wait_for(lambda: observer.on(f"{PREFIX}/status")[-1] == b"offline")
        finally:
            if agent.poll() is None:
                agent.kill()

    asyncio.run(second_run())


def test_a_ledger_that_cannot_be_opened_exits_73(tmp_path: Path) -> None:
    """A ledger path that cannot be created is reported and exits with EX_CANTCREAT, before
    the agent connects to anything."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the ledger's folder should be")
    config = tmp_path / "site.toml"
    config.write_text(SITE_TOML + f'\n[agent]\nledger_path = "{blocker / "ledger.sqlite3"}"\n')
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "gridpilot", "run", "--config", str(config)],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 73
    assert b"ledger" in result.stderr
