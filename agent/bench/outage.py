"""The broker outage trial: what the agent decides while its broker is down, and its guard after.

The agent runs on the guard bench's 8-group site with a meter that goes stale after 3 s, fed
as usual, every miner awake. Then Mosquitto is stopped for `down_s` (longer than the meter's
age): with no readings the agent goes to safe mode while disconnected, and the commands that
hold the miners to the safe share cannot be published; they stand. Mosquitto is started
again (without persistence: it forgot every retained message). Measured: from its start to a
fresh subscriber having every group's command, each at or under what the agent had decided
before, with the mode `safe` and the miners' draw within the safe share; then, the meter fed
again, back to `normal`; then one reading over the cap, and the time to the guard's shed on
the broker. It runs in a folder of its own under `folder`, on `broker` restarted first.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiomqtt

from gridpilot.adapters.broker import LocalBroker
from gridpilot.adapters.mqtt import publish_acked
from gridpilot.agent.bench.agent_process import (
    GROUPS,
    PREFIX,
    AgentLog,
    Watcher,
    connect,
    start_agent,
)
from gridpilot.agent.bench.guard import OVERHEAD, bench_site
from gridpilot.agent.settings import load_settings
from gridpilot.agent.site import asic_groups
from gridpilot.optimizer.problem import AsicGroup

METER_STALE_S = 3.0


@dataclass(frozen=True, slots=True)
class OutageBench:
    down_s: float
    safe_while_down: bool  # the agent went to safe mode (its log says) before the restart
    commands_back_s: float  # broker start -> every group's command on it, mode safe
    safe_share_kept: bool  # their miners' draw within the safe share of the cap
    draw_watts: float  # that draw, at full power per miner awake, with the site's overhead
    safe_watts: float  # the safe share of the cap
    normal_after_s: float  # meter fed again -> mode normal
    guard_after_ms: float  # a reading over the cap after the outage -> the shed on the broker

    def as_json(self) -> str:
        return json.dumps(asdict(self))

    def as_text(self) -> str:
        return (
            f"broker down {self.down_s:g} s (the meter stale after {METER_STALE_S:g} s):"
            f" {'safe mode decided while down' if self.safe_while_down else 'NO SAFE MODE'},"
            f" its commands on the restarted broker {self.commands_back_s:.2f} s after its start,"
            f" {self.draw_watts / 1e6:.3f} MW {'within' if self.safe_share_kept else 'OVER'}"
            f" the safe share of {self.safe_watts / 1e6:.3f} MW; normal"
            f" {self.normal_after_s:.2f} s after the meter returned; guard shed"
            f" {self.guard_after_ms:.1f} ms after a reading over the cap"
        )


async def outage_trial(broker: LocalBroker, folder: Path, *, down_s: float = 6.0) -> OutageBench:
    # A ledger and a broker of its own: the status and commands another trial's agent left
    # retained would otherwise pass for this agent's (online, every miner awake) before it
    # has said a word, and its ledger's setpoints would be this agent's to start from.
    folder = folder / "outage"
    folder.mkdir(parents=True, exist_ok=True)
    broker.stop()
    broker.start()
    config = bench_site(GROUPS, broker.port, broker.host, folder)
    text = config.read_text().replace(
        "metrics_port = 0\n", f"metrics_port = 0\nmeter_stale_after_s = {METER_STALE_S}\n"
    )
    config = folder / "outage.toml"
    config.write_text(text)
    settings = load_settings(config)
    groups = {group.name: group for group in asic_groups(settings)}
    cap = settings.site.interconnect_watts - settings.site.margin_watts
    safe_watts = settings.agent.safe_asic_share * cap
    agent = start_agent(config, folder)
    try:
        client = await connect(broker, "gridpilot-rel-outage")
        async with Watcher(client) as watcher:
            await watcher.until(watcher.online, 60)
            meter = asyncio.create_task(_meter(client))
            await _market(client)
            await watcher.until(lambda: _all_awake(watcher, groups), 120)
            meter.cancel()
            await asyncio.gather(meter, return_exceptions=True)
        await client.__aexit__(None, None, None)
        log = AgentLog(folder / "agent.log")
        since = log.mark()
        broker.stop()
        await asyncio.sleep(down_s)
        # Said in its log while no broker was there to hear it.
        safe_while_down = "mode.safe" in log.events(since)
        broker.start()
        started = time.monotonic()
        client = await connect(broker, "gridpilot-rel-outage")
        async with Watcher(client) as watcher:
            await watcher.until(lambda: _safe_commands(watcher), 60)
            commands_back_s = time.monotonic() - started
            draw = sum(
                _units(watcher, topic) * groups[topic.rsplit("/", 1)[1]].watts_per_unit * OVERHEAD
                for topic in watcher.commands
                if "/cmd/asic/" in topic
            )
            returned = time.monotonic()
            meter = asyncio.create_task(_meter(client))
            await watcher.until(lambda: _mode(watcher) == "normal", 60)
            normal_after_s = time.monotonic() - returned
            await watcher.until(lambda: _all_awake(watcher, groups), 120)
            meter.cancel()
            await asyncio.gather(meter, return_exceptions=True)
            guard_after_ms = await _guard(client, watcher, cap)
        await client.__aexit__(None, None, None)
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    return OutageBench(
        down_s=down_s,
        safe_while_down=safe_while_down,
        commands_back_s=commands_back_s,
        safe_share_kept=draw <= safe_watts,
        draw_watts=draw,
        safe_watts=safe_watts,
        normal_after_s=normal_after_s,
        guard_after_ms=guard_after_ms,
    )


async def _meter(client: aiomqtt.Client, watts: float = 0.0) -> None:
    """Readings four times a second until cancelled (cancellation-safe publishes)."""
    payload = json.dumps({"watts": watts}).encode()
    while True:
        await publish_acked(client, f"{PREFIX}/meter/main", payload)
        await asyncio.sleep(0.25)


async def _market(client: aiomqtt.Client) -> None:
    await publish_acked(client, f"{PREFIX}/hashprice", b'{"usd_per_th_day": 0.06}')
    await publish_acked(client, f"{PREFIX}/price/realtime", b'{"usd_per_mwh": 10}')


def _units(watcher: Watcher, topic: str) -> int:
    return int(json.loads(watcher.commands[topic])["units_on"])


def _asic_topics(watcher: Watcher) -> list[str]:
    return [topic for topic in watcher.commands if "/cmd/asic/" in topic]


def _all_awake(watcher: Watcher, groups: dict[str, AsicGroup]) -> bool:
    """Every group commanded with every miner awake."""
    topics = _asic_topics(watcher)
    return len(topics) == len(groups) and all(
        _units(watcher, topic) == groups[topic.rsplit("/", 1)[1]].units for topic in topics
    )


def _mode(watcher: Watcher) -> str:
    return str(watcher.modes[-1][1]["mode"]) if watcher.modes else ""


def _safe_commands(watcher: Watcher) -> bool:
    """Every group's command is back, some of them safe mode's, and the mode is safe."""
    topics = _asic_topics(watcher)
    reasons = [json.loads(watcher.commands[topic])["reason"] for topic in topics]
    return (
        len(topics) == GROUPS
        and watcher.online()
        and _mode(watcher) == "safe"
        and any(reason.startswith("safe mode") for reason in reasons)
    )


async def _guard(client: aiomqtt.Client, watcher: Watcher, cap: float) -> float:
    """Milliseconds from a reading over the cap to the first guard command on the broker."""
    before = {topic: watcher.commands[topic] for topic in _asic_topics(watcher)}

    def shed() -> bool:
        return any(
            payload != before.get(topic) and json.loads(payload)["reason"].startswith("guard")
            for topic, payload in watcher.commands.items()
            if "/cmd/asic/" in topic
        )

    started = time.monotonic()
    await publish_acked(
        client, f"{PREFIX}/meter/main", json.dumps({"watts": cap + 50_000.0}).encode()
    )
    await watcher.until(shed, 30)
    elapsed = (time.monotonic() - started) * 1e3
    await publish_acked(client, f"{PREFIX}/meter/main", b'{"watts": 0}')
    return elapsed
