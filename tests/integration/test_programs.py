"""The grid programs against a real Mosquitto: reserve awards, deployments carried out without
the solver within their response time, recalls, the under-frequency relay, rejects on the new
topics, the obligation every second and the awards across a restart."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiomqtt

from gridpilot.adapters.broker import LocalBroker
from gridpilot.agent.daemon.daemon import Daemon
from gridpilot.agent.programs import RESPONSE_S
from tests.integration.harness import (
    PREFIX,
    RESERVE_SITE_TOML,
    Observer,
    feed_market,
    observing,
    running,
    site_settings,
)

OLD_GROUPS = ("old-01", "old-02", "old-03", "old-04")  # the miners qualified for RRS and ECRS


def _award(daemon: Daemon, product: str, mw: float, *, hours: int = 3) -> bytes:
    hour = daemon.clock.now().replace(minute=0, second=0, microsecond=0)
    award = {
        "product": product,
        "start": hour.isoformat(),
        "end": (hour + timedelta(hours=hours)).isoformat(),
        "mw": mw,
        "usd_per_mw_h": 6.0,
    }
    return json.dumps(award).encode()


def _old_awake(observer: Observer) -> dict[str, int]:
    commands = observer.commands()
    return {
        g: commands[f"{PREFIX}/cmd/asic/{g}"]["units_on"]
        for g in OLD_GROUPS
        if f"{PREFIX}/cmd/asic/{g}" in commands
    }


async def _planned_with_award(observer: Observer, daemon: Daemon, product: str, mw: float) -> None:
    """The site planned, then given an award and planned on it."""
    await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 200e3}))
    await feed_market(observer, price=25.0)
    await observer.wait_for(lambda: len(observer.commands()) == 7, 20)
    plans = daemon.cycle.plans_made
    await observer.publish(f"{PREFIX}/as/award", _award(daemon, product, mw))
    await observer.wait_for(lambda: daemon.cycle.plans_made > plans, 20)


def _sample(daemon: Daemon, name: str, **labels: str) -> float:
    return daemon.metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_deployment_sheds_qualified_miners_in_time_and_the_recall_wakes_them(
    tmp_path: Path, broker: LocalBroker
) -> None:
    """After an RRS award, a deployment of 50 kW puts 16 of the old miners (the only qualified
    ones) to sleep, least efficient first, within RRS's half second of the instruction; the
    plans that follow keep them asleep and the deployment is met; on the recall the planner
    wakes them again."""

    async def scenario() -> None:
        settings = site_settings(tmp_path, broker, site_toml=RESERVE_SITE_TOML)
        async with observing(broker) as observer, running(settings) as daemon:
            await _planned_with_award(observer, daemon, "RRS", 0.05)
            before = _old_awake(observer)
            deploy = {"id": "qse-7", "product": "RRS", "mw": 0.05}
            sent = time.monotonic()
            await observer.publish(f"{PREFIX}/as/deploy", json.dumps(deploy))

            def shed() -> bool:
                now = _old_awake(observer)
                return sum(before[g] - now.get(g, 0) for g in before) >= 16

            await observer.wait_for(shed, 5)
            took_s = time.monotonic() - sent
            assert took_s < RESPONSE_S["RRS"], took_s
            reasons = {c["reason"] for c in observer.commands().values() if "units_on" in c}
            assert any(r.startswith("reserve RRS deployed (qse-7)") for r in reasons)
            # The meter shows the drop before the response time is up.
            await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 150e3}))
            await asyncio.sleep(RESPONSE_S["RRS"] + 0.3)
            assert _sample(daemon, "gridpilot_reserve_deployments_total", product="RRS") == 1
            failed = "gridpilot_reserve_failures_total"
            assert (
                sum(
                    _sample(daemon, failed, product="RRS", reason=r)
                    for r in ("short", "late", "meter")
                )
                == 0
            )
            # The plan asked for by the deployment, made on it, did not wake them.
            await observer.wait_for(
                lambda: observer.json_on(f"{PREFIX}/plan")[-1]["reason"] == "reserve RRS deployed",
                20,
            )
            held = _old_awake(observer)
            assert sum(before.values()) - sum(held.values()) >= 16  # the plan did not wake them
            await observer.publish(f"{PREFIX}/as/recall", json.dumps({"id": "qse-7"}))
            await observer.wait_for(
                lambda: sum(_old_awake(observer).values()) > sum(held.values()), 20
            )
            assert daemon.state.programs.holds == {}

    asyncio.run(scenario())


def test_a_frequency_of_59_6_hz_deploys_the_rrs_award(tmp_path: Path, broker: LocalBroker) -> None:
    """At 60.0 Hz nothing happens; at 59.6 Hz the agent drops its hour's RRS award (30 kW: ten
    old miners) by itself, as an under-frequency relay would, and says so on as/obligation;
    `{"id": "ufr"}` recalls it."""

    async def scenario() -> None:
        settings = site_settings(tmp_path, broker, site_toml=RESERVE_SITE_TOML)
        async with observing(broker) as observer, running(settings) as daemon:
            await _planned_with_award(observer, daemon, "RRS", 0.03)
            before = _old_awake(observer)
            await observer.publish(f"{PREFIX}/grid/frequency", json.dumps({"hz": 60.0}))
            await observer.publish(f"{PREFIX}/grid/frequency", b"59.6")

            def deployed() -> list[dict[str, Any]]:
                owed = observer.json_on(f"{PREFIX}/as/obligation")
                return owed[-1]["deployments"] if owed else []

            await observer.wait_for(lambda: bool(deployed()), 5)
            [hold] = deployed()
            assert (hold["product"], hold["mw"], hold["source"]) == ("RRS", 0.03, "frequency")
            assert hold["id"].startswith("ufr-")
            now = _old_awake(observer)
            assert sum(before[g] - now[g] for g in before) == 10
            assert _sample(daemon, "gridpilot_grid_frequency_hertz") == 59.6
            await observer.publish(f"{PREFIX}/as/recall", json.dumps({"id": "ufr"}))
            await observer.wait_for(lambda: not daemon.state.programs.holds, 5)

    asyncio.run(scenario())


def test_bad_payloads_on_each_program_topic_are_counted_by_reason(
    tmp_path: Path, broker: LocalBroker
) -> None:
    """A bad payload on each of the programs' topics is dropped and counted under its topic
    and reason; the agent keeps serving."""
    bad = {
        ("grid/load", "system_load"): [(b'{"mw": 12}', "out_of_range"), (b"{", "not_json")],
        ("grid/frequency", "frequency"): [(b'{"hz": "60"}', "wrong_type")],
        ("grid/cp_alert", "cp_alert"): [(b'{"start": 1782000000}', "missing_field")],
        ("as/award", "award"): [
            (
                b'{"product": "REGUP", "start": 1782000000, "end": 1782003600, "mw": 1,'
                b' "usd_per_mw_h": 1}',
                "out_of_range",
            ),
            (
                b'{"product": "NSPIN", "start": 1782000000, "end": 1782003600, "mw": 1,'
                b' "usd_per_mw_h": 1}',
                "unknown_name",
            ),
        ],
        ("as/deploy", "deploy"): [(b'{"id": "x", "product": "RRS", "mw": -1}', "out_of_range")],
        ("as/recall", "recall"): [(b'{"id": "never-deployed"}', "unknown_name")],
        ("as/prices", "ancillary_prices"): [
            (
                b'{"start": 1782000000, "step_s": 900, "product": "RRS", "usd_per_mw_h": [1]}',
                "out_of_range",
            ),
        ],
    }

    async def scenario() -> None:
        settings = site_settings(tmp_path, broker, site_toml=RESERVE_SITE_TOML)
        async with observing(broker) as observer, running(settings) as daemon:
            for (topic, _), cases in bad.items():
                for payload, _ in cases:
                    await observer.publish(f"{PREFIX}/{topic}", payload)
            expected: dict[tuple[str, str], int] = {}
            for (_, kind), cases in bad.items():
                for _, reason in cases:
                    expected[kind, reason] = expected.get((kind, reason), 0) + 1

            def counted() -> dict[tuple[str, str], int]:
                return {
                    key: int(
                        _sample(
                            daemon, "gridpilot_rejected_inputs_total", topic=key[0], reason=key[1]
                        )
                    )
                    for key in expected
                }

            await observer.wait_for(lambda: counted() == expected, 10)
            assert daemon.link.connected

    asyncio.run(scenario())


def test_obligation_and_availability_go_out_every_second_not_retained(
    tmp_path: Path, broker: LocalBroker
) -> None:
    """as/obligation and as/available arrive about once a second, at QoS 0 and not retained,
    with the award of the hour and the qualified miners' draw."""

    async def scenario() -> None:
        settings = site_settings(tmp_path, broker, site_toml=RESERVE_SITE_TOML)
        async with observing(broker) as observer, running(settings) as daemon:
            await _planned_with_award(observer, daemon, "ECRS", 0.04)
            async with aiomqtt.Client(broker.host, broker.port, identifier="reader") as reader:
                await reader.subscribe(f"{PREFIX}/as/+", qos=1)
                seen: dict[str, list[aiomqtt.Message]] = {}
                started = time.monotonic()
                async with asyncio.timeout(10):
                    async for message in reader.messages:
                        seen.setdefault(message.topic.value.rsplit("/", 1)[1], []).append(message)
                        if time.monotonic() - started > 3.2:
                            break
            for topic in ("obligation", "available"):
                messages = seen[topic]
                assert 2 <= len(messages) <= 5, (topic, len(messages))
                assert all(not m.retain and m.qos == 0 for m in messages)
            owed = json.loads(seen["obligation"][-1].payload)
            assert owed["mw"] == {"RRS": 0.0, "ECRS": 0.04}
            available = json.loads(seen["available"][-1].payload)
            awake = sum(_old_awake(observer).values())
            assert abs(available["mw"]["ECRS"] - awake * 3.15e-3) < 1e-6
            headroom = _sample(daemon, "gridpilot_reserve_headroom_watts", product="ECRS")
            assert abs(headroom - (awake * 3150.0 - 40e3)) < 1e-3

    asyncio.run(scenario())


def test_awards_survive_a_restart_and_the_days_offer_is_made_once(
    tmp_path: Path, broker: LocalBroker
) -> None:
    """An award heard before a restart is still owed after it (the ledger keeps it); the
    offer for tomorrow, due at 14:00 Central, is published once, per product and hour, and
    not made again by the restarted agent."""

    async def scenario() -> None:
        settings = site_settings(tmp_path, broker, site_toml=RESERVE_SITE_TOML)
        async with observing(broker) as observer:
            async with running(settings) as daemon:
                # Yesterday's day-ahead prices: what tomorrow's hours are expected to clear at.
                hour = daemon.clock.now().replace(minute=0, second=0, microsecond=0)
                for product in ("RRS", "ECRS"):
                    prices = {
                        "start": (hour - timedelta(days=1)).isoformat(),
                        "step_s": 3600,
                        "product": product,
                        "usd_per_mw_h": [8.0] * 24,
                    }
                    await observer.publish(f"{PREFIX}/as/prices", json.dumps(prices))
                await _planned_with_award(observer, daemon, "RRS", 0.02)
                await observer.wait_for(lambda: bool(observer.on(f"{PREFIX}/as/offer")), 30)
            async with running(settings) as daemon:
                mark = len(observer.messages)
                await observer.wait_for(
                    lambda: any(
                        t == f"{PREFIX}/as/obligation" and json.loads(p)["mw"]["RRS"] == 0.02
                        for t, p in observer.messages[mark:]
                    ),
                    10,
                )
                await feed_market(observer, price=25.0)
                await observer.wait_for(lambda: daemon.cycle.plans_made >= 1, 20)
            [offer] = observer.json_on(f"{PREFIX}/as/offer")
            assert offer["day"] == "2026-06-17"
            assert set(offer["mw"]) == {"RRS", "ECRS"}
            assert all(len(hours) == 24 for hours in offer["mw"].values())
            # In tenths of a MW, of which the old miners' 126 kW hold at most one.
            assert {mw for hours in offer["mw"].values() for mw in hours} <= {0.0, 0.1}

    asyncio.run(scenario())
