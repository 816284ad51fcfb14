"""The inputs part alone: messages in, the site state out, rejects counted by reason."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gridpilot.adapters.payloads import Override, OverrideClear, Rejected
from gridpilot.agent.daemon.inputs import Inputs
from gridpilot.agent.daemon.ledger import Ledger
from gridpilot.agent.daemon.topics import Topics
from tests.agent.daemon.parts import Plant, gauges, plant, site_settings
from tests.agent.daemon.test_daemon_units import SetClock

PREFIX = "gridpilot/testsite"
NOON = datetime(2024, 8, 20, 12, 0, tzinfo=UTC)


class Holds:
    """The overrides part's `apply`, recording; raises what it is told to."""

    def __init__(self) -> None:
        self.given: list[Override | OverrideClear] = []
        self.error: Exception | None = None

    async def apply(self, override: Override | OverrideClear) -> None:
        if self.error is not None:
            raise self.error
        self.given.append(override)


def _inputs(p: Plant, holds: Holds) -> Inputs:
    return Inputs(
        p.settings,
        topics=Topics.of(p.settings),
        state=p.state,
        clock=p.clock,
        metrics=p.metrics,
        triggers=p.triggers,
        gauges=gauges(p),
        on_override=holds.apply,
    )


def _rejected(p: Plant, topic: str, reason: str) -> float:
    return p.sample("gridpilot_rejected_inputs_total", topic=topic, reason=reason)


def test_a_meter_reading_is_stamped_by_the_clock_and_wakes_the_guard(
    tmp_path: Path, ledger: Ledger
) -> None:
    """A meter reading without a timestamp is kept with the clock's time as both its stamp and
    its arrival, and sets the guard's wake-up; the planner is not asked."""
    clock = SetClock(NOON)
    p = plant(site_settings(tmp_path), clock, ledger)
    inputs = _inputs(p, Holds())
    asyncio.run(inputs.on_message(f"{PREFIX}/meter/main", b'{"watts": 123000}'))
    reading = p.state.meters["main"]
    assert (reading.value, reading.ts, reading.received) == (123e3, NOON, NOON)
    assert p.triggers.guard_check.is_set()
    assert not p.triggers.replan.is_set()
    clock.moment += timedelta(seconds=20)
    assert p.state.meter_age_s(("main",), clock.now()) == 20.0


def test_a_retained_reading_is_as_old_as_its_stamp(tmp_path: Path, ledger: Ledger) -> None:
    """A meter reading and a price stamped ten minutes ago, handed over again now (as a broker
    does with retained messages after a reconnect), are ten minutes old, not fresh: the meter
    is stale at once (30 s), the price not yet (30 min). A stamp ahead of the daemon's clock
    counts from the arrival. (Before, each was as fresh as its arrival.)"""
    p = plant(site_settings(tmp_path), SetClock(NOON), ledger)
    inputs = _inputs(p, Holds())
    stamp = (NOON - timedelta(minutes=10)).isoformat()
    ahead = (NOON + timedelta(seconds=5)).isoformat()

    async def scenario() -> None:
        await inputs.on_message(f"{PREFIX}/meter/main", f'{{"watts": 1, "ts": "{stamp}"}}'.encode())
        await inputs.on_message(
            f"{PREFIX}/price/realtime", f'{{"usd_per_mwh": 30, "ts": "{ahead}"}}'.encode()
        )

    asyncio.run(scenario())
    assert p.state.meter_age_s(("main",), NOON) == 600.0
    assert p.state.age_s(p.state.price, NOON) == 0.0


def test_bad_payloads_are_counted_by_topic_kind_and_reason_and_change_nothing(
    tmp_path: Path, ledger: Ledger
) -> None:
    """Each bad payload adds one to its (topic kind, reason) count and leaves the state as it
    was: malformed JSON, a negative meter, a meter the site does not list, a hashprice of the
    wrong type and a topic that is no input at all."""
    p = plant(site_settings(tmp_path), SetClock(NOON), ledger)
    inputs = _inputs(p, Holds())
    bad = [
        ("meter/main", b"{not json"),
        ("meter/main", b'{"watts": -5}'),
        ("meter/main", b'{"watts": -6}'),
        ("meter/elsewhere", b'{"watts": 5}'),
        ("hashprice", b'{"usd_per_th_day": "cheap"}'),
        ("nonsense", b"1"),
    ]

    async def scenario() -> None:
        for topic, payload in bad:
            await inputs.on_message(f"{PREFIX}/{topic}", payload)

    asyncio.run(scenario())
    assert _rejected(p, "meter", "not_json") == 1
    assert _rejected(p, "meter", "out_of_range") == 2
    assert _rejected(p, "meter", "unknown_name") == 1
    assert _rejected(p, "hashprice", "wrong_type") == 1
    assert p.state.meters == {}
    assert p.state.hashprice is None
    assert not p.triggers.guard_check.is_set()


def test_an_override_the_site_cannot_honour_is_counted_and_a_failing_handler_survived(
    tmp_path: Path, ledger: Ledger
) -> None:
    """An override is decoded and handed on; one its handler rejects is counted under its
    reason, and one whose handling fails with a bug is counted as an internal error, not
    raised."""
    p = plant(site_settings(tmp_path), SetClock(NOON), ledger)
    holds = Holds()
    inputs = _inputs(p, holds)
    until = json.dumps({"mode": "asleep", "until": (NOON + timedelta(hours=1)).isoformat()})

    async def scenario() -> None:
        await inputs.on_message(f"{PREFIX}/override/new-01", until.encode())
        holds.error = Rejected("unknown_name", "no such group")
        await inputs.on_message(f"{PREFIX}/override/nope", until.encode())
        holds.error = RuntimeError("a bug")
        await inputs.on_message(f"{PREFIX}/override/new-01", until.encode())

    asyncio.run(scenario())
    assert [o.group for o in holds.given] == ["new-01"]
    assert _rejected(p, "override", "unknown_name") == 1
    assert _rejected(p, "override", "internal_error") == 1


def test_prices_ask_for_the_first_plan_only(tmp_path: Path, ledger: Ledger) -> None:
    """A real-time price or hashprice asks for a plan while none has been made, and not once
    one has; each is kept with its gauge, the hashprice with each model's breakeven."""
    p = plant(site_settings(tmp_path), SetClock(NOON), ledger)
    inputs = _inputs(p, Holds())

    async def scenario() -> None:
        await inputs.on_message(f"{PREFIX}/price/realtime", b'{"usd_per_mwh": 42.5}')
        assert p.triggers.replan.is_set()
        assert p.triggers.reason == "first plan"
        p.triggers.replan.clear()
        p.triggers.plan_made()
        await inputs.on_message(f"{PREFIX}/hashprice", b"0.05")
        assert not p.triggers.replan.is_set()

    asyncio.run(scenario())
    assert p.state.price is not None
    assert p.state.price.value == 42.5
    assert p.sample("gridpilot_price_usd_per_mwh") == 42.5
    assert p.sample("gridpilot_hashprice_usd_per_th_day") == 0.05
    assert p.sample("gridpilot_breakeven_usd_per_mwh", model="Antminer S21") > 0


def test_a_grid_event_wakes_both_loops_and_its_cancellation_the_planner(
    tmp_path: Path, ledger: Ledger
) -> None:
    """A grid event is kept and wakes the guard and the planner; its cancellation forgets it
    and asks for a plan, and a second cancellation of it asks for nothing."""
    p = plant(site_settings(tmp_path), SetClock(NOON), ledger)
    inputs = _inputs(p, Holds())
    event = {
        "id": "eea-1",
        "kind": "shed",
        "start": NOON.isoformat(),
        "end": (NOON + timedelta(hours=1)).isoformat(),
        "max_site_watts": 100e3,
    }
    topic = f"{PREFIX}/grid/event"

    async def scenario() -> None:
        await inputs.on_message(topic, json.dumps(event).encode())
        assert "eea-1" in p.state.events
        assert p.triggers.guard_check.is_set()
        assert p.triggers.reason == "grid event eea-1"
        await inputs.on_message(topic, b'{"id": "eea-1", "cancel": true}')
        assert p.state.events == {}
        assert p.triggers.reason == "grid event eea-1 cancelled"
        p.triggers.replan.clear()
        await inputs.on_message(topic, b'{"id": "eea-1", "cancel": true}')
        assert not p.triggers.replan.is_set()

    asyncio.run(scenario())
