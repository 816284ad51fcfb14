"""The agent against a real Mosquitto: inputs in, plans and commands out, and what it does when
inputs, the broker or the process misbehave."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gridpilot.adapters.actuation import AsicCommand, RecordingActuator
from gridpilot.adapters.broker import LocalBroker
from gridpilot.agent.daemon.ledger import Ledger
from tests.instants import DATE_SENSITIVE
from tests.integration.harness import PREFIX, at, feed_market, observing, running, site_settings

CMD = f"{PREFIX}/cmd"


def test_readings_and_prices_in_plan_and_commands_out(tmp_path: Path, broker: LocalBroker) -> None:
    """With a meter, a price and a hashprice the agent plans, commands every group (retained,
    so a gateway that subscribes later gets them) and publishes the plan and its status."""

    async def scenario() -> None:
        settings = site_settings(tmp_path, broker)
        async with observing(broker) as observer, running(settings) as daemon:
            await observer.wait_for(lambda: observer.on(f"{PREFIX}/status") == [b"online"])
            await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 200e3}))
            await feed_market(observer, price=25.0)
            await observer.wait_for(lambda: len(observer.commands()) == 7)
            await observer.wait_for(lambda: bool(observer.on(f"{PREFIX}/plan")))
            plan = observer.json_on(f"{PREFIX}/plan")[-1]
            assert plan["status"] in {"optimal", "feasible"}
            commands = observer.commands()
            # Cheap power: every miner that fits under 250 kW runs; what does not is the least
            # efficient (the old S19j Pro), and the GPU contract is not curtailed for price.
            on = {t.rsplit("/", 1)[1]: c["units_on"] for t, c in commands.items() if "/asic/" in t}
            new = sum(v for k, v in on.items() if k.startswith("new"))
            assert new == 20
            gpu = commands[f"{CMD}/gpu/h100"]
            assert gpu["paused_nodes"] == 0
            assert gpu["capped_nodes"] == 0
            assert daemon.cycle.plans_made >= 1
        # A late subscriber still gets the last word: the commands were retained.
        async with observing(broker) as late:
            await late.wait_for(lambda: len(late.commands()) == 7)
            assert late.on(f"{PREFIX}/status") == [b"offline"]

    asyncio.run(scenario())


def test_bad_payloads_on_every_input_topic_are_counted_and_survived(
    tmp_path: Path, broker: LocalBroker
) -> None:
    """Malformed, oversized and wrongly typed payloads on every input are rejected with a
    counted reason, and the agent still plans on the good inputs that follow."""
    bad = {
        "meter/main": [b"{not json", b'{"watts": "lots"}', b"x" * 70_000],
        "price/realtime": [b'{"usd_per_mwh": NaN}', b'{"price": 3}', b"\xff\xfe"],
        "price/forecast": [b'{"issued": 1, "start": 2}', b"[]"],
        "hashprice": [b'{"usd_per_th_day": true}'],
        "grid/event": [b'{"id": "e", "start": "yesterday"}'],
        "override/old-01": [b'{"mode": "sideways", "until": 4102444800}'],
        "override/nosuchgroup": [b'{"mode": "awake", "until": 4102444800}'],
        "meter/unlisted": [b'{"watts": 1}'],
    }

    async def scenario() -> None:
        settings = site_settings(tmp_path, broker)
        async with observing(broker) as observer, running(settings) as daemon:
            for topic, payloads in bad.items():
                for payload in payloads:
                    await observer.publish(f"{PREFIX}/{topic}", payload)
            sent = sum(len(p) for p in bad.values())

            def rejected() -> float:
                return sum(
                    sample.value
                    for metric in daemon.metrics.rejected.collect()
                    for sample in metric.samples
                    if sample.name.endswith("_total")
                )

            await observer.wait_for(lambda: rejected() == sent)
            reasons = {
                (s.labels["topic"], s.labels["reason"])
                for m in daemon.metrics.rejected.collect()
                for s in m.samples
                if s.name.endswith("_total")
            }
            assert ("meter", "too_large") in reasons
            assert ("meter", "wrong_type") in reasons
            assert ("price", "out_of_range") in reasons
            assert ("override", "unknown_name") in reasons
            assert ("meter", "unknown_name") in reasons
            await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 200e3}))
            await feed_market(observer)
            await observer.wait_for(lambda: daemon.cycle.plans_made >= 1)

    asyncio.run(scenario())


def test_broker_restart_reconnects_resubscribes_and_republishes(
    tmp_path: Path, broker: LocalBroker
) -> None:
    """With the broker stopped and started again (forgetting everything), the agent is back
    within 5 s: status online, every command republished, inputs heard again."""

    async def scenario() -> None:
        settings = site_settings(tmp_path, broker)
        async with running(settings) as daemon:
            async with observing(broker) as observer:
                await feed_market(observer)
                await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 200e3}))
                await observer.wait_for(lambda: len(observer.commands()) == 7)
            broker.stop()
            await asyncio.sleep(1.0)
            broker.start()
            restarted = asyncio.get_running_loop().time()
            async with observing(broker) as observer:
                await observer.wait_for(lambda: len(observer.commands()) == 7, timeout_s=5.0)
                assert observer.on(f"{PREFIX}/status")[-1] == b"online"
                assert asyncio.get_running_loop().time() - restarted < 5.0
                assert daemon.link.connects == 2
                # Subscriptions are back: an over-limit reading makes the guard shed.
                await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 300e3}))
                await observer.wait_for(lambda: daemon.guard.actions >= 1, timeout_s=5.0)

    asyncio.run(scenario())


def test_guard_sheds_least_efficient_first_within_the_reading(
    tmp_path: Path, broker: LocalBroker
) -> None:
    """A reading over the limit less margin puts just enough miners to sleep at once, least
    efficient first, without waiting for the planner."""

    async def scenario() -> None:
        settings = site_settings(tmp_path, broker, replan_after_guard=False)
        actuator = RecordingActuator()
        async with observing(broker) as observer, running(settings, actuator=actuator) as daemon:
            # 10 kW over the 250 kW cap: four S19j Pro at 3.15 kW each at the meter.
            await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 260e3}))
            await observer.wait_for(lambda: bool(actuator.applied))
            assert daemon.guard.actions == 1
            shed = [c for c in actuator.applied if isinstance(c, AsicCommand)]
            assert [(c.group, c.units_on) for c in shed] == [("old-01", 6)]
            assert shed[0].reason.startswith("guard:")

    asyncio.run(scenario())


def test_event_cap_applies_from_its_start(tmp_path: Path, broker: LocalBroker) -> None:
    """A grid event announced ahead changes nothing before it starts; from its start the guard
    holds the site under the event's cap."""

    async def scenario() -> None:
        settings = site_settings(tmp_path, broker, replan_after_guard=False)
        actuator = RecordingActuator()
        async with observing(broker) as observer, running(settings, actuator=actuator) as daemon:
            start = daemon.clock.now() + timedelta(seconds=2)
            event = {
                "id": "ercot-eea-1",
                "start": start.isoformat(),
                "end": (start + timedelta(hours=1)).isoformat(),
                "max_site_watts": 150e3,
            }
            await observer.publish(f"{PREFIX}/grid/event", json.dumps(event))
            await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 200e3}))
            await observer.wait_for(lambda: "ercot-eea-1" in daemon.state.events)
            await asyncio.sleep(0.5)
            assert daemon.guard.actions == 0

            def shed_watts() -> float:
                return sum(
                    (10 - c.units_on) * 3000 * 1.05
                    for c in actuator.applied
                    if isinstance(c, AsicCommand) and c.reason.startswith("guard")
                )

            await observer.wait_for(lambda: shed_watts() >= 50e3, timeout_s=5.0)
            assert daemon.guard.actions >= 1

    asyncio.run(scenario())


def test_shadow_mode_plans_but_sends_no_commands(tmp_path: Path, broker: LocalBroker) -> None:
    """In shadow mode plans are made and published, and no command reaches the broker, not
    even from the guard."""

    async def scenario() -> None:
        settings = site_settings(tmp_path, broker, shadow=True)
        async with observing(broker) as observer, running(settings) as daemon:
            await feed_market(observer)
            await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 300e3}))
            await observer.wait_for(lambda: bool(observer.on(f"{PREFIX}/plan")))
            await observer.wait_for(lambda: daemon.guard.actions >= 1)
            await asyncio.sleep(0.3)
            assert observer.commands() == {}
            assert observer.json_on(f"{PREFIX}/plan")[-1]["shadow"] is True
            assert observer.json_on(f"{PREFIX}/mode")[-1]["mode"] == "shadow"

    asyncio.run(scenario())


def test_stale_meter_enters_safe_mode_and_fresh_data_leaves_it(
    tmp_path: Path, broker: LocalBroker
) -> None:
    """When the meter stops, the agent announces safe mode and holds the miners to the safe
    share of the limit; when readings return it goes back to normal and plans again."""

    async def scenario() -> None:
        settings = site_settings(tmp_path, broker, meter_stale_after_s=1.5, safe_asic_share=0.3)
        async with observing(broker) as observer, running(settings) as daemon:
            await feed_market(observer)
            await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 200e3}))
            await observer.wait_for(lambda: daemon.cycle.plans_made >= 1)
            await observer.wait_for(lambda: daemon.mode.name == "safe", timeout_s=5.0)
            await observer.wait_for(
                lambda: observer.json_on(f"{PREFIX}/mode")[-1]["mode"] == "safe"
            )
            assert "meter" in observer.json_on(f"{PREFIX}/mode")[-1]["stale"]

            def awake_watts() -> float:
                return sum(
                    float(c["units_on"] * c["watts_per_unit"]) * 1.05
                    for t, c in observer.commands().items()
                    if "/asic/" in t
                )

            await observer.wait_for(lambda: awake_watts() <= 0.3 * 250e3)
            assert all(
                c["plan"] == "safe"
                for t, c in observer.commands().items()
                if "/asic/" in t and c["units_on"] < 10
            )
            plans = daemon.cycle.plans_made
            await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 100e3}))
            await observer.wait_for(lambda: daemon.mode.name == "normal", timeout_s=5.0)
            await observer.wait_for(lambda: daemon.cycle.plans_made > plans, timeout_s=5.0)
            assert observer.json_on(f"{PREFIX}/mode")[-1]["mode"] == "normal"

    asyncio.run(scenario())


def test_override_is_honoured_and_expires(tmp_path: Path, broker: LocalBroker) -> None:
    """An operator's hold on a group is commanded at once, kept by later plans and by the
    guard, and lifted (its retained message cleared) when it expires."""

    async def scenario() -> None:
        settings = site_settings(tmp_path, broker)
        async with observing(broker) as observer, running(settings) as daemon:
            await feed_market(observer)
            await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 200e3}))
            await observer.wait_for(lambda: daemon.cycle.plans_made >= 1)
            until = daemon.clock.now() + timedelta(seconds=6)
            hold = {"mode": "asleep", "until": until.isoformat(), "by": "night shift"}
            await observer.publish(f"{PREFIX}/override/new-01", json.dumps(hold), retain=True)
            topic = f"{CMD}/asic/new-01"

            def units() -> object:
                return observer.commands().get(topic, {}).get("units_on")

            await observer.wait_for(lambda: units() == 0)
            assert "night shift" in observer.commands()[topic]["reason"]
            # The planner plans around it: another plan leaves new-01 asleep.
            plans = daemon.cycle.plans_made
            await observer.publish(f"{PREFIX}/price/realtime", json.dumps({"usd_per_mwh": 5}))
            daemon.triggers.request_plan("test")
            await observer.wait_for(lambda: daemon.cycle.plans_made > plans)
            assert observer.commands()[topic]["units_on"] == 0
            # Expired: cleared on the broker and planned again.
            await observer.wait_for(lambda: b"" in observer.on(f"{PREFIX}/override/new-01"), 10)
            await observer.wait_for(lambda: units() == 10, 10)

    asyncio.run(scenario())


def test_restart_continues_from_the_ledger(tmp_path: Path, broker: LocalBroker) -> None:
    """A second run on the same ledger republishes the setpoints the first left, and keeps
    the allowance it had used."""

    async def scenario() -> None:
        settings = site_settings(tmp_path, broker)
        async with observing(broker) as observer, running(settings) as daemon:
            await feed_market(observer)
            await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 200e3}))
            await observer.wait_for(lambda: len(observer.commands()) == 7)
            first = observer.commands()
            del daemon
        with Ledger.open(settings.agent.ledger_path) as ledger:
            assert len(ledger.current_setpoints()) == 7
        broker.stop()
        broker.start()  # forgets the retained commands
        async with observing(broker) as observer, running(settings):
            await observer.wait_for(lambda: len(observer.commands()) == 7)
            again = observer.commands()
            assert {t: c["units_on"] for t, c in again.items() if "asic" in t} == {
                t: c["units_on"] for t, c in first.items() if "asic" in t
            }

    asyncio.run(scenario())


@pytest.mark.parametrize("instant", DATE_SENSITIVE.values(), ids=DATE_SENSITIVE.keys())
def test_a_planned_pause_is_announced_to_its_contract(
    tmp_path: Path, broker: LocalBroker, instant: datetime
) -> None:
    """When the plan pauses an interruptible contract's nodes ahead (a forecast price spike),
    the contract's notice topic says from when and how many, at least its notice ahead: on
    any day of a billing month (its first hour, its last minutes, where the spike falls in the
    next month and year) and on the days daylight saving starts and ends in Central time."""

    async def scenario() -> None:
        settings = site_settings(tmp_path, broker)
        async with observing(broker) as observer, running(settings, clock=at(instant)) as daemon:
            now = daemon.clock.now()
            hour = now.replace(minute=0, second=0, microsecond=0)
            forecast = {
                "issued": now.isoformat(),
                "start": hour.isoformat(),
                "step_s": 3600,
                "usd_per_mwh": [30.0] * 2 + [9000.0] * 3 + [30.0] * 20,
            }
            await observer.publish(f"{PREFIX}/price/forecast", json.dumps(forecast))
            await feed_market(observer)
            await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 200e3}))
            topic = f"{PREFIX}/notice/batch"
            await observer.wait_for(lambda: any(n["start"] for n in observer.json_on(topic)), 20)
            notice = next(n for n in observer.json_on(topic) if n["start"])
            start = datetime.fromisoformat(notice["start"])
            assert notice["paused_nodes"] > 0
            assert notice["notice_s"] == 900
            assert start >= now + timedelta(seconds=900) - timedelta(minutes=5)
            # Within the spike (its first block may start a quarter-hour early).
            assert hour + timedelta(hours=2, minutes=-15) <= start < hour + timedelta(hours=5)
            assert daemon.cycle.plans_made >= 1

    asyncio.run(scenario())
