"""The agent as its own process under the reliability bench, and a subscriber that watches
what it says on the broker: its status, its mode and every group's command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt

from gridpilot.adapters.broker import LocalBroker
from gridpilot.adapters.mqtt import NO_DELAY
from gridpilot.agent.bench.guard import SITE

PREFIX = f"gridpilot/{SITE}"
GROUPS = 8
COMMANDED = GROUPS + 1  # the miner groups and the GPU hall


def resident_mb(pid: int) -> tuple[float, float]:
    """A process's resident memory now and at its peak (VmRSS, VmHWM in /proc), in MB."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = float(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def start_agent(
    config: Path, folder: Path, *, env: dict[str, str | None] | None = None
) -> subprocess.Popen[bytes]:
    """`gridpilot run --config config` as a process of its own, logging to `agent.log` in
    `folder`, in this environment less any GRIDPILOT_ setting, with `env` over it (None:
    unset)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPILOT_")}
    for key, value in (env or {}).items():
        environment.pop(key, None)
        if value is not None:
            environment[key] = value
    # The child keeps its own copy of the log's descriptor; ours is closed at once.
    with (folder / "agent.log").open("ab") as log:
        return subprocess.Popen(  # noqa: S603  # this interpreter, our own module
            [sys.executable, "-m", "gridpilot", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
        )


class Watcher:
    """A subscriber to the agent's status, mode, plan summaries and commands on one broker
    connection; each mode published is kept with when it arrived (`time.monotonic`)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.commands: dict[str, bytes] = {}
        self.status: list[bytes] = []
        self.modes: list[tuple[float, dict[str, Any]]] = []
        self.plans = 0  # plan summaries published since the watch began
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watcher:
        await self.client.subscribe(f"{PREFIX}/cmd/#", qos=1)
        await self.client.subscribe(f"{PREFIX}/status", qos=1)
        await self.client.subscribe(f"{PREFIX}/mode", qos=1)
        await self.client.subscribe(f"{PREFIX}/plan", qos=1)
        self._task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _collect(self) -> None:
        async for message in self.client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            topic = message.topic.value
            if topic.endswith("/status"):
                self.status.append(payload)
            elif topic.endswith("/mode"):
                self.modes.append((time.monotonic(), json.loads(payload)))
            elif topic.endswith("/plan"):
                self.plans += 1
            elif payload:
                self.commands[topic] = payload
            self._arrived.set()

    async def until(self, condition: Callable[[], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._arrived.clear()
                try:
                    async with asyncio.timeout(0.02):
                        await self._arrived.wait()
                except TimeoutError:
                    pass

    def online(self) -> bool:
        return bool(self.status) and self.status[-1] == b"online"

    def all_commanded(self) -> bool:
        return (
            len(self.commands) >= COMMANDED and bool(self.status) and self.status[-1] == b"online"
        )


async def feed(client: aiomqtt.Client, watts: float = 0.0, price: float = 10.0) -> None:
    for topic, payload in (
        ("meter/main", json.dumps({"watts": watts}).encode()),
        ("hashprice", b'{"usd_per_th_day": 0.06}'),
        ("price/realtime", json.dumps({"usd_per_mwh": price}).encode()),
    ):
        await client.publish(f"{PREFIX}/{topic}", payload, qos=1)


def forecast(now: datetime, usd_per_mwh: float) -> bytes:
    """A day-ahead forecast issued `now`: 24 hours at `usd_per_mwh` from the hour it is in."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    payload = {
        "issued": now.isoformat(),
        "start": hour.isoformat(),
        "step_s": 3600,
        "usd_per_mwh": [usd_per_mwh] * 24,
    }
    return json.dumps(payload).encode()


async def connect(broker: LocalBroker, name: str) -> aiomqtt.Client:
    # No Nagle, as the agent's own link: a reading held back for a delayed ACK would add
    # its ~40 ms to what the trials time.
    client = aiomqtt.Client(broker.host, broker.port, identifier=name, socket_options=(NO_DELAY,))
    async with asyncio.timeout(10):
        while True:
            try:
                await client.__aenter__()
                return client
            except aiomqtt.MqttError:
                await asyncio.sleep(0.01)


async def forget_commands(broker: LocalBroker, topics: list[str]) -> None:
    client = await connect(broker, "gridpilot-rel-clear")
    try:
        for topic in topics:
            await client.publish(topic, b"", qos=1, retain=True)
    finally:
        await client.__aexit__(None, None, None)


class AgentLog:
    """The agent's JSON log lines (`agent.log` in the bench's folder), read from an offset."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def events(self, since: int) -> list[str]:
        with self.path.open("rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace").splitlines()
        events = []
        for line in lines:
            with contextlib.suppress(ValueError):
                events.append(str(json.loads(line).get("event", "")))
        return events

    def count(self, names: tuple[str, ...], since: int) -> int:
        return sum(event in names for event in self.events(since))

    async def until(self, name: str, since: int, timeout_s: float) -> bool:
        """Whether `name` was logged after `since` within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if name in self.events(since):
                return True
            await asyncio.sleep(0.1)
        return False
