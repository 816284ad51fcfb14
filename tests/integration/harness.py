"""Running the agent in-process against a real broker, and watching what it publishes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
from prometheus_client import CollectorRegistry

from gridpilot.adapters.actuation import Actuator
from gridpilot.adapters.broker import LocalBroker
from gridpilot.adapters.mqtt import publish_acked
from gridpilot.agent.daemon.clock import Clock, ScaledClock
from gridpilot.agent.daemon.daemon import Daemon
from gridpilot.agent.daemon.ledger import Ledger
from gridpilot.agent.daemon.metrics import Metrics
from gridpilot.agent.daemon.programs import bundled_peak_model
from gridpilot.agent.peaks import PeakModel
from gridpilot.agent.settings import Settings, load_settings
from tests.instants import MID_JUNE_AFTERNOON

SITE = "testsite"
PREFIX = f"gridpilot/{SITE}"

# A small site: two miner models in containers, one GPU group on an interruptible contract.
# All of it awake draws 1.05 * (4 * 10 * 3000 + 2 * 10 * 3500) + 1.25 * 10 * 6100 = 275.3 kW;
# the limit less margin is 250 kW, so some load must always stay off.
SITE_TOML = f"""
[site]
name = "{SITE}"
settlement_point = "HB_WEST"
interconnect_watts = 260e3
margin_watts = 10e3
pool_fee = 0.02
asic_overhead_factor = 1.05
gpu_overhead_factor = 1.25

[[asic_groups]]
name = "old"
model = "Antminer S19j Pro"
count = 40
watts_per_unit = 3000
ths_per_unit = 100
units_per_group = 10
wake_loss_s = 600

[[asic_groups]]
name = "new"
model = "Antminer S21"
count = 20
watts_per_unit = 3500
ths_per_unit = 200
units_per_group = 10
wake_loss_s = 600

[[contracts]]
name = "batch"
tier = "interruptible"
usd_per_gpu_hour = 1.4
allowance_hours_per_month = 40
max_event_s = 14400
notice_s = 900
penalty_usd_per_gpu_hour = 10

[[gpu_groups]]
name = "h100"
nodes = 10
gpus_per_node = 8
cap_levels = [
    {{ watts_per_gpu = 700, throughput = 1.0 }},
    {{ watts_per_gpu = 400, throughput = 0.9 }},
]
idle_watts_per_gpu = 100
host_watts_per_node = 500
contract = "batch"
"""

# The same site with the old miners (4 groups of 10, 3.15 kW each at the meter: 126 kW in all)
# qualified as a Load Resource for Responsive and Contingency Reserve.
RESERVE_SITE_TOML = SITE_TOML.replace(
    "ths_per_unit = 100\nunits_per_group = 10\n",
    'ths_per_unit = 100\nunits_per_group = 10\nreserve_products = ["RRS", "ECRS"]\n',
    1,
)
assert RESERVE_SITE_TOML != SITE_TOML


def site_settings(
    tmp_path: Path, broker: LocalBroker, *, site_toml: str = SITE_TOML, **agent: Any
) -> Settings:
    """The small site (or `site_toml`) on `broker`, its ledger in `tmp_path`, metrics on a
    free port; `agent` overrides `[agent]` settings."""
    options = {
        "ledger_path": str(tmp_path / "ledger.sqlite3"),
        "metrics_port": 0,
        "replan_min_gap_s": 0.0,
        **agent,
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in options.items()]
    text = site_toml + f"\n[mqtt]\nport = {broker.port}\nreconnect_max_s = 1.0\n"
    text += "\n[agent]\n" + "\n".join(lines) + "\n"
    path = tmp_path / "site.toml"
    path.write_text(text)
    return load_settings(path)


class Observer:
    """A second client that records everything published under the site's prefix."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.messages: list[tuple[str, bytes]] = []
        self._arrived = asyncio.Event()

    async def collect(self) -> None:
        async for message in self.client.messages:
            payload = message.payload
            data = payload if isinstance(payload, bytes) else str(payload or "").encode()
            self.messages.append((message.topic.value, data))
            self._arrived.set()

    def on(self, topic: str) -> list[bytes]:
        return [payload for t, payload in self.messages if t == topic]

    def json_on(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.on(topic) if p]

    def commands(self) -> dict[str, dict[str, Any]]:
        """The latest command per group topic."""
        latest: dict[str, dict[str, Any]] = {}
        for topic, payload in self.messages:
            if "/cmd/" in topic and payload:
                latest[topic] = json.loads(payload)
        return latest

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._arrived.wait()

    async def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        # Cancellation-safe, unlike aiomqtt's own wait on Python 3.11 (see adapters.mqtt).
        await publish_acked(self.client, topic, payload, retain=retain, timeout_s=10.0)


@contextlib.asynccontextmanager
async def observing(broker: LocalBroker, *, prefix: str = PREFIX) -> AsyncIterator[Observer]:
    """An `Observer` of everything under `prefix` (the test site's, by default)."""
    async with aiomqtt.Client(broker.host, broker.port, identifier="observer") as client:
        await client.subscribe(f"{prefix}/#", qos=1)
        observer = Observer(client)
        task = asyncio.create_task(observer.collect())
        try:
            yield observer
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def at(instant: datetime) -> Clock:
    """A clock that starts at `instant` and runs at the wall's pace."""
    return ScaledClock(1.0, origin=instant)


@functools.cache
def shared_peak_model() -> PeakModel:
    """The 4CP model an agent learns at start from the bundled load (a few seconds), learned
    once for the whole run of the tests."""
    return bundled_peak_model(MID_JUNE_AFTERNOON)


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    *,
    actuator: Actuator | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[Daemon]:
    """The agent serving in a task of this loop until the block ends, on `clock`: by default
    one that starts at a named instant and runs at the wall's pace, so that nothing a test
    sees depends on the day it runs. What a test publishes with a time in it takes the time
    from `daemon.clock`. Its 4CP model is the one learned once for all tests."""
    with Ledger.open(settings.agent.ledger_path) as ledger:
        daemon = Daemon(
            settings,
            ledger=ledger,
            clock=clock or at(MID_JUNE_AFTERNOON),
            metrics=Metrics(CollectorRegistry()),
            actuator=actuator,
            peak_model=shared_peak_model(),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop), name="daemon")
        async with asyncio.timeout(10):
            while not daemon.link.connected:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        try:
            yield daemon
        finally:
            stop.set()
            async with asyncio.timeout(10):
                await task


async def feed_market(observer: Observer, *, price: float = 30.0, hashprice: float = 0.05) -> None:
    """A price and a hashprice, as a market gateway would publish them."""
    await observer.publish(f"{PREFIX}/hashprice", json.dumps({"usd_per_th_day": hashprice}))
    await observer.publish(f"{PREFIX}/price/realtime", json.dumps({"usd_per_mwh": price}))
