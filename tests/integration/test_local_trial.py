"""The README's recipe for trying the agent on a workstation: the reference site in shadow mode,
run by a user who is not root, against a local Mosquitto."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridpilot.adapters.broker import LocalBroker
from gridpilot.agent.bundled import REFERENCE_SITE
from tests.integration.harness import observing

NOBODY = 65_534
TOPICS = "gridpilot/west-texas"


@pytest.fixture
def home() -> Iterator[Path]:
    """A home folder for the user who tries it (nobody, when the tests run as root)."""
    folder = Path(tempfile.mkdtemp(prefix="gridpilot-home-"))
    if os.geteuid() == 0:
        os.chown(folder, NOBODY, NOBODY)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _as_a_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) drops root for this test"
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]


def test_the_reference_site_runs_in_shadow_mode_without_root(
    broker: LocalBroker, home: Path
) -> None:
    """`gridpilot run --config deploy/examples/reference-site.toml --shadow` as a user: the
    ledger goes to the user's state directory, plans are published, nothing is commanded,
    and SIGTERM stops it with exit 0."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GRIDPILOT_", "XDG_", "STATE_DIRECTORY"))
    }
    environ |= {
        "HOME": str(home),
        "GRIDPILOT_MQTT__PORT": str(broker.port),
        "GRIDPILOT_AGENT__METRICS_PORT": "0",
    }
    command = [sys.executable, "-m", "gridpilot", "run", "--config", str(REFERENCE_SITE)]
    agent = subprocess.Popen(  # noqa: S603  # our own interpreter and module
        _as_a_user([*command, "--shadow"]),
        env=environ,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    async def trial() -> None:
        async with observing(broker, prefix=TOPICS) as observer:
            await observer.wait_for(lambda: b"online" in observer.on(f"{TOPICS}/status"), 30)
            await observer.publish(f"{TOPICS}/hashprice", json.dumps({"usd_per_th_day": 0.05}))
            await observer.publish(f"{TOPICS}/price/realtime", json.dumps({"usd_per_mwh": 30}))
            await observer.publish(f"{TOPICS}/meter/main", json.dumps({"watts": 70e6}))
            await observer.wait_for(lambda: bool(observer.on(f"{TOPICS}/plan")), 60)
            assert observer.json_on(f"{TOPICS}/plan")[-1]["shadow"] is True
            assert observer.commands() == {}
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(agent.wait, 30) == 0
            await observer.wait_for(lambda: observer.on(f"{TOPICS}/status")[-1] == b"offline")

    try:
        asyncio.run(trial())
    finally:
        if agent.poll() is None:
            agent.kill()
        errors = agent.communicate(timeout=10)[1].decode(errors="replace")
    assert (home / ".local/state/gridpilot/ledger.sqlite3").is_file(), errors[-2000:]
