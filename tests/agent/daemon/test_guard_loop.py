"""The guard loop alone, shedding through the commands part to a recording actuator; what
must not wait on a device (the guard, an override) does not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gridpilot.adapters.actuation import AsicCommand, Command, Outcome, RecordingActuator
from gridpilot.adapters.payloads import Override, OverrideMode
from gridpilot.agent.daemon.guard_loop import GuardLoop
from gridpilot.agent.daemon.ledger import Ledger
from gridpilot.agent.daemon.mode import Mode
from gridpilot.agent.daemon.overrides import Overrides
from gridpilot.agent.daemon.publisher import Publisher
from gridpilot.agent.daemon.state import Signal
from gridpilot.agent.daemon.topics import Topics
from gridpilot.optimizer.problem import GridEvent
from tests.agent.daemon.parts import FakeLink, Plant, commands, plant, site_settings
from tests.agent.daemon.test_daemon_units import SetClock

NOON = datetime(2024, 8, 20, 12, 0, tzinfo=UTC)
UNIT_W = 3000 * 1.05  # an S19j Pro at the meter


class Wall:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.s = 1_000.0

    def __call__(self) -> float:
        return self.s


def _guard(
    tmp_path: Path, ledger: Ledger, **agent: Any
) -> tuple[GuardLoop, Plant, RecordingActuator, Wall]:
    p = plant(site_settings(tmp_path, **agent), SetClock(NOON), ledger)
    actuator, wall = RecordingActuator(), Wall()
    guard = GuardLoop(
        p.settings,
        state=p.state,
        setpoints=p.setpoints,
        commands=commands(p, actuator),
        triggers=p.triggers,
        metrics=p.metrics,
        clock=p.clock,
        monotonic=wall,
    )
    return guard, p, actuator, wall


def _read(p: Plant, watts: float) -> None:
    p.state.meters["main"] = Signal(watts, p.clock.now(), p.clock.now())


def test_under_the_cap_nothing_is_shed_and_over_it_just_enough(
    tmp_path: Path, ledger: Ledger
) -> None:
    """At the cap (limit less margin, 250 kW) the guard sends nothing; 10 kW over it, four of
    the least efficient miners are put to sleep in one command, and a plan is asked for."""
    guard, p, actuator, _ = _guard(tmp_path, ledger)
    _read(p, 250e3)
    asyncio.run(guard.once())
    assert actuator.applied == []
    assert guard.actions == 0
    _read(p, 260e3)
    asyncio.run(guard.once())
    assert [(c.group, c.units_on) for c in actuator.applied if isinstance(c, AsicCommand)] == [
        ("old-01", 6)
    ]
    assert actuator.applied[0].reason.startswith("guard: site at 0.260 MW")
    assert guard.actions == 1
    assert p.triggers.reason == "guard shed"
    assert p.sample("gridpilot_guard_shed_units_total") == 4
    assert p.sample("gridpilot_site_limit_watts") == 250e3


def test_a_shed_is_credited_until_it_settles(tmp_path: Path, ledger: Ledger) -> None:
    """Within `guard_settle_s` of wall time a reading that does not show the shed yet is not
    shed again; once it has settled, the same reading is."""
    guard, p, actuator, wall = _guard(tmp_path, ledger, guard_settle_s=5.0)
    _read(p, 260e3)
    asyncio.run(guard.once())
    wall.s += 4.0
    asyncio.run(guard.once())
    assert len(actuator.applied) == 1
    wall.s += 1.5
    asyncio.run(guard.once())
    assert len(actuator.applied) == 2
    assert guard.actions == 2


def test_an_active_grid_events_cap_is_held_from_its_start(tmp_path: Path, ledger: Ledger) -> None:
    """A grid event's lower cap is the guard's only from the event's start: before it the
    reading is within the limit, after it the site is shed to the event's cap."""
    guard, p, actuator, _ = _guard(tmp_path, ledger, replan_after_guard=False)
    start = NOON + timedelta(minutes=10)
    event = GridEvent("eea-1", start, start + timedelta(hours=1), max_site_watts=200e3)
    p.state.events[event.id] = event
    _read(p, 240e3)
    asyncio.run(guard.once())
    assert actuator.applied == []
    p.clock.moment = start
    asyncio.run(guard.once())
    shed = sum(10 - c.units_on for c in actuator.applied if isinstance(c, AsicCommand))
    assert shed == 13  # ceil(40 kW / 3.15 kW)
    assert not p.triggers.replan.is_set()
    assert p.sample("gridpilot_site_limit_watts") == 200e3


def test_in_shadow_mode_the_guard_sheds_nothing_for_real(tmp_path: Path, ledger: Ledger) -> None:
    """In shadow mode the guard decides its shed and remembers it, and the actuator is told
    nothing."""
    guard, p, actuator, _ = _guard(tmp_path, ledger, shadow=True)
    _read(p, 260e3)
    asyncio.run(guard.once())
    assert guard.actions == 1
    assert actuator.applied == []
    assert int(p.setpoints.units_on[p.setpoints.asic_index["old-01"]]) == 6


def test_the_loop_looks_each_time_it_is_woken(tmp_path: Path, ledger: Ledger) -> None:
    """`run` sheds when the guard's wake-up is set, and waits for the next one."""
    guard, p, actuator, _ = _guard(tmp_path, ledger)

    async def scenario() -> None:
        task = asyncio.create_task(guard.run())
        _read(p, 260e3)
        p.triggers.check_guard()
        for _ in range(100):
            await asyncio.sleep(0)
            if actuator.applied:
                break
        assert not p.triggers.guard_check.is_set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert len(actuator.applied) == 1


class _StuckDevice(RecordingActuator):
    """A device that takes until `release` is set to answer each command."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        await self.release.wait()
        return await super().apply(commands)


def test_the_guard_never_waits_on_a_device(tmp_path: Path, ledger: Ledger) -> None:
    """With the devices' task running and a device that does not answer, two readings over
    the cap are each judged at once: the first shed is remembered and handed over, and the
    second, once its settle credit is spent, sheds again without waiting for the first; when
    the device answers, both are carried out in order. (Before, `once` waited for the
    device.)"""
    p = plant(site_settings(tmp_path), SetClock(NOON), ledger)
    device, wall = _StuckDevice(), Wall()
    part = commands(p, device)
    guard = GuardLoop(
        p.settings,
        state=p.state,
        setpoints=p.setpoints,
        commands=part,
        triggers=p.triggers,
        metrics=p.metrics,
        clock=p.clock,
        monotonic=wall,
    )

    async def scenario() -> None:
        devices = asyncio.create_task(part.run())
        await asyncio.sleep(0)  # the devices' task is up
        _read(p, 260e3)
        await asyncio.wait_for(guard.once(), timeout=5.0)
        wall.s += 60.0  # past the settle time
        _read(p, 260e3)
        await asyncio.wait_for(guard.once(), timeout=5.0)
        assert guard.actions == 2
        assert device.applied == []
        assert int(p.setpoints.units_on[p.setpoints.asic_index["old-01"]]) == 2
        device.release.set()
        while len(device.applied) < 2:
            await asyncio.sleep(0)
        devices.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await devices

    asyncio.run(scenario())
    shed = [(c.group, c.units_on) for c in device.applied if isinstance(c, AsicCommand)]
    assert shed == [("old-01", 6), ("old-01", 2)]


def test_an_override_does_not_hold_up_the_message_loop(tmp_path: Path, ledger: Ledger) -> None:
    """An operator's override arrives in the broker's message loop, which meter readings
    share: with a device that does not answer, it is taken and handed over at once, and
    carried out when the device answers."""
    p = plant(site_settings(tmp_path), SetClock(NOON), ledger)
    device = _StuckDevice()
    part = commands(p, device)
    holds = Overrides(
        state=p.state,
        setpoints=p.setpoints,
        commands=part,
        publisher=Publisher(
            FakeLink().publish,
            topics=Topics.of(p.settings),
            site=p.site,
            setpoints=p.setpoints,
            mode=Mode(),
            clock=p.clock,
            shadow=False,
        ),
        triggers=p.triggers,
    )
    override = Override(
        "old-02", OverrideMode.CAP, NOON + timedelta(hours=1), units_on=3, by="operator"
    )

    async def scenario() -> None:
        devices = asyncio.create_task(part.run())
        await asyncio.sleep(0)
        await asyncio.wait_for(holds.apply(override), timeout=5.0)
        assert "old-02" in p.state.overrides and device.applied == []
        device.release.set()
        while not device.applied:
            await asyncio.sleep(0)
        devices.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await devices

    asyncio.run(scenario())
    assert [(c.group, c.units_on) for c in device.applied if isinstance(c, AsicCommand)] == [
        ("old-02", 3)
    ]
