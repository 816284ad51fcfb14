"""The reserves part alone: deployments carried out through a recording actuator on a set
clock, held asleep against the plans, judged at their response time, recalled, and the
obligation and availability reported."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from gridpilot.adapters.actuation import AsicCommand, Command, Outcome, RecordingActuator
from gridpilot.adapters.payloads import Rejected
from gridpilot.agent.daemon.commands import Commands
from gridpilot.agent.daemon.cycle import held_asleep
from gridpilot.agent.daemon.ledger import Ledger
from gridpilot.agent.daemon.reserves import Reserves
from gridpilot.agent.daemon.state import Signal
from gridpilot.agent.daemon.topics import Topics
from tests.agent.daemon.parts import FakeLink, Plant, commands, plant, site_settings
from tests.agent.daemon.test_daemon_units import SetClock
from tests.integration.harness import RESERVE_SITE_TOML

NOON = datetime(2026, 6, 16, 17, 0, tzinfo=UTC)  # 12:00 Central
PREFIX = "gridpilot/testsite"
UNIT_W = 3000 * 1.05  # an S19j Pro, the qualified model, at the meter


class Setup:
    """A reserve-qualified site's reserves part over a recording actuator and a fake link."""

    def __init__(self, tmp_path: Path, ledger: Ledger) -> None:
        settings = site_settings(tmp_path, site_toml=RESERVE_SITE_TOML)
        self.p: Plant = plant(settings, SetClock(NOON), ledger)
        self.actuator = RecordingActuator()
        self.link = FakeLink()
        self.commands: Commands = commands(self.p, self.actuator)
        self.reserves = self.build()

    def build(self) -> Reserves:
        p = self.p
        return Reserves(
            p.settings,
            site=p.site,
            state=p.state,
            setpoints=p.setpoints,
            commands=self.commands,
            triggers=p.triggers,
            recorder=p.recorder,
            metrics=p.metrics,
            clock=p.clock,
            topics=Topics.of(p.settings),
            publish=self.link.publish,
        )

    def award(self, product: str, mw: float, hours: int = 2) -> None:
        first = NOON.replace(minute=0)
        span = [first + timedelta(hours=k) for k in range(hours)]
        programs = self.p.state.programs
        programs.awards = programs.awards.with_day(
            product, dict.fromkeys(span, mw), dict.fromkeys(span, 5.0)
        )

    def meter(self, watts: float) -> None:
        now = self.p.clock.now()
        self.p.state.meters["main"] = Signal(watts, now, now)

    def deploy(self, mw: float, product: str = "RRS", ident: str = "d-1", **extra: object) -> None:
        payload = json.dumps({"id": ident, "product": product, "mw": mw, **extra}).encode()
        asyncio.run(self.reserves.on_deploy(payload, self.p.clock.now()))

    def later(self, seconds: float) -> None:
        self.p.clock.moment += timedelta(seconds=seconds)
        asyncio.run(self.reserves.once(self.p.clock.now()))

    def units_on(self, group: str) -> int:
        setpoints = self.p.setpoints
        return int(setpoints.units_on[setpoints.asic_index[group]])

    def failures(self, reason: str, product: str = "RRS") -> float:
        return self.p.sample("gridpilot_reserve_failures_total", product=product, reason=reason)


def test_a_deployment_sleeps_the_least_efficient_qualified_miners_that_cover_it_at_once(
    tmp_path: Path, ledger: Ledger
) -> None:
    """50 kW of RRS puts 16 S19j Pros to sleep (all of old-01, six of old-02) in one batch,
    none of the S21s (not qualified); the hold, its ledger record, the count and a plan
    request follow."""
    s = Setup(tmp_path, ledger)
    s.award("RRS", 0.05)
    s.deploy(0.05)
    sent = [(c.group, c.units_on) for c in s.actuator.applied if isinstance(c, AsicCommand)]
    assert sent == [("old-01", 0), ("old-02", 4)]
    assert all(c.reason.startswith("reserve RRS deployed (d-1)") for c in s.actuator.applied)
    hold = s.p.state.programs.holds["d-1"]
    assert dict(hold.units) == {"old-01": 10, "old-02": 6}
    assert hold.dropped_watts == pytest.approx(16 * UNIT_W)
    assert s.p.sample("gridpilot_reserve_deployments_total", product="RRS") == 1
    assert s.p.triggers.reason == "reserve RRS deployed"
    s.p.recorder.flush()
    [record] = ledger.deployments(NOON)
    assert (record.id, record.recalled, dict(record.units)) == ("d-1", None, dict(hold.units))


def test_plans_cannot_wake_the_held_miners_nor_fill_what_they_freed(
    tmp_path: Path, ledger: Ledger
) -> None:
    """A plan's command to wake every held miner is cut to what is not held (and, already
    there, not sent); the planner's problem has them locked asleep beyond its horizon, and
    the site capped at its draw after the deployment."""
    s = Setup(tmp_path, ledger)
    draw_before = sum(g.watts for g in s.p.setpoints.power())
    s.deploy(0.05)
    s.actuator.applied.clear()
    wake = [AsicCommand(g, 10, 3000.0, "run", "plan-9") for g in ("old-01", "old-02", "old-03")]
    sent = asyncio.run(s.commands.send(wake, plan="plan-9", planned=True))
    assert sent == [wake[2]]  # old-01 held asleep, old-02 already at the 4 not held
    assert s.units_on("old-01") == 0
    groups = held_asleep(
        s.p.site.asic_groups[:2], [0, 4], s.p.state.programs.held_units(), until_s=86_401.0
    )
    assert [(g.units_locked_off, g.locked_off_until_s) for g in groups] == [
        (10, 86_401.0),
        (6, 86_401.0),
    ]
    event = s.p.state.programs.deployment_event()
    assert event is not None
    assert event.max_site_watts == pytest.approx(draw_before - 16 * UNIT_W)


class GatedActuator(RecordingActuator):
    """Carries out nothing until `gate` is set: devices slow to answer."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        self.started.set()
        await self.gate.wait()
        return await super().apply(commands)


def test_a_plan_sent_while_the_deployments_commands_wait_on_the_devices_cannot_wake_them(
    tmp_path: Path, ledger: Ledger
) -> None:
    """With the devices' task running and the devices slow, a plan that wakes every old miner
    is sent while the deployment's commands are still being carried out: it is cut to the
    hold, the held miners stay asleep, and the deployment keeps the 16 miners it dropped (it
    was judged short, with nothing dropped, before the hold came first)."""
    s = Setup(tmp_path, ledger)
    gated = GatedActuator()
    s.commands = commands(s.p, gated)
    s.reserves = s.build()
    wake = [AsicCommand(g, 10, 3000.0, "run", "plan-9") for g in ("old-01", "old-02", "old-03")]

    async def race() -> list[Command]:
        devices = asyncio.create_task(s.commands.run())
        payload = json.dumps({"id": "d-1", "product": "RRS", "mw": 0.05}).encode()
        deploying = asyncio.create_task(s.reserves.on_deploy(payload, s.p.clock.now()))
        await gated.started.wait()
        sent = await s.commands.send(wake, plan="plan-9", planned=True, wait=False)
        gated.gate.set()
        await asyncio.wait_for(deploying, 5)
        devices.cancel()
        return sent

    sent = asyncio.run(race())
    assert sent == [wake[2]]  # old-01 held asleep, old-02 already at the 4 not held
    assert (s.units_on("old-01"), s.units_on("old-02")) == (0, 4)
    hold = s.p.state.programs.holds["d-1"]
    assert dict(hold.units) == {"old-01": 10, "old-02": 6}
    assert hold.dropped_watts == pytest.approx(16 * UNIT_W)
    s.later(0.5)
    assert s.failures("short") == 0


def test_a_deployment_the_meter_shows_in_time_is_met(tmp_path: Path, ledger: Ledger) -> None:
    """With the site at 200 kW before, a reading of 150 kW after the commands and before
    RRS's half second is up makes the deployment met: no failure, `reserve.met` logged."""
    s = Setup(tmp_path, ledger)
    s.meter(200e3)
    s.deploy(0.05)
    s.p.clock.moment += timedelta(seconds=0.2)
    s.meter(150e3)
    with structlog.testing.capture_logs() as logs:
        s.later(0.3)
    assert [e["event"] for e in logs if e["event"].startswith("reserve.")] == ["reserve.met"]
    assert sum(s.failures(r) for r in ("short", "late", "meter")) == 0


def test_a_deployment_the_meter_does_not_show_fails_on_the_meter(
    tmp_path: Path, ledger: Ledger
) -> None:
    """The commands dropped 50 kW, but the site's meter reads 195 kW after them: failed,
    counted under "meter"; the miners stay held."""
    s = Setup(tmp_path, ledger)
    s.meter(200e3)
    s.deploy(0.05)
    s.meter(195e3)
    with structlog.testing.capture_logs() as logs:
        s.later(0.5)
    [failed] = [e for e in logs if e["event"] == "reserve.failed"]
    assert (failed["why"], failed["metered_drop_mw"]) == ("meter", 0.005)
    assert s.failures("meter") == 1
    assert "d-1" in s.p.state.programs.holds


def test_a_deployment_without_enough_qualified_miners_fails_short(
    tmp_path: Path, ledger: Ledger
) -> None:
    """200 kW asked of 126 kW of qualified miners: all forty go to sleep and the deployment
    is failed as short at its response time, not before."""
    s = Setup(tmp_path, ledger)
    s.deploy(0.2)
    assert sum(s.units_on(g) for g in ("old-01", "old-02", "old-03", "old-04")) == 0
    s.later(0.4)
    assert s.failures("short") == 0
    s.later(0.1)
    assert s.failures("short") == 1


def test_an_instruction_past_its_response_time_fails_late(tmp_path: Path, ledger: Ledger) -> None:
    """An RRS instruction that started two seconds before it arrived is carried out, and
    failed as late."""
    s = Setup(tmp_path, ledger)
    s.deploy(0.02, start=(NOON - timedelta(seconds=2)).isoformat())
    assert s.actuator.applied
    s.later(0.0)
    assert s.failures("late") == 1


def test_an_instruction_for_later_is_carried_out_at_its_start(
    tmp_path: Path, ledger: Ledger
) -> None:
    """An ECRS deployment from a minute ahead waits for its start, then drops its MW; sent
    again, it is not carried out twice."""
    s = Setup(tmp_path, ledger)
    s.deploy(0.01, product="ECRS", start=(NOON + timedelta(minutes=1)).isoformat())
    assert s.actuator.applied == []
    s.later(59.0)
    assert s.actuator.applied == []
    s.later(1.0)
    assert s.units_on("old-01") == 6
    s.deploy(0.01, product="ECRS")
    assert len(s.actuator.applied) == 1


def test_the_recall_releases_the_miners_to_the_planner(tmp_path: Path, ledger: Ledger) -> None:
    """A recall commands nothing itself: the hold and the site's cap go, the ledger records
    the recall, and a plan is asked for, which may then wake them."""
    s = Setup(tmp_path, ledger)
    s.deploy(0.05)
    s.actuator.applied.clear()
    s.p.triggers.replan.clear()
    asyncio.run(s.reserves.on_recall(b'{"id": "d-1"}', NOON + timedelta(minutes=5)))
    assert s.actuator.applied == []
    assert s.p.state.programs.holds == {}
    assert s.p.state.programs.deployment_event() is None
    assert s.p.triggers.reason == "reserve RRS recalled"
    s.p.recorder.flush()
    [record] = ledger.deployments(NOON)
    assert record.recalled == NOON + timedelta(minutes=5)


def test_unknown_recalls_and_unqualified_products_are_rejected_by_name(
    tmp_path: Path, ledger: Ledger
) -> None:
    """A recall of no deployment holding, and a deployment of a product no group carries
    (NSPIN), are `unknown_name` rejects and change nothing."""
    s = Setup(tmp_path, ledger)
    with pytest.raises(Rejected) as recall:
        asyncio.run(s.reserves.on_recall(b'{"id": "nope"}', NOON))
    with pytest.raises(Rejected) as deploy:
        s.deploy(0.01, product="NSPIN")
    assert (recall.value.reason, deploy.value.reason) == ("unknown_name", "unknown_name")
    assert s.actuator.applied == []


def test_at_59_6_hz_the_hours_rrs_award_is_dropped_and_at_59_8_nothing(
    tmp_path: Path, ledger: Ledger
) -> None:
    """59.8 Hz changes nothing; 59.6 Hz drops the hour's 30 kW RRS award at once (ten miners),
    once: a second low reading does not drop more; `{"id": "ufr"}` recalls it."""
    s = Setup(tmp_path, ledger)
    s.award("RRS", 0.03)
    asyncio.run(s.reserves.on_frequency(b'{"hz": 59.8}', NOON))
    assert s.actuator.applied == []
    asyncio.run(s.reserves.on_frequency(b"59.6", NOON))
    asyncio.run(s.reserves.on_frequency(b"59.5", NOON))
    [hold] = s.p.state.programs.holds.values()
    assert (hold.source, hold.mw, sum(hold.units.values())) == ("frequency", 0.03, 10)
    assert hold.id.startswith("ufr-")
    assert s.p.sample("gridpilot_grid_frequency_hertz") == 59.5
    asyncio.run(s.reserves.on_recall(b'{"id": "ufr"}', NOON))
    assert s.p.state.programs.holds == {}


def test_without_an_rrs_award_a_low_frequency_drops_nothing(tmp_path: Path, ledger: Ledger) -> None:
    """A relay trips only for what the site was awarded: no award, no deployment."""
    s = Setup(tmp_path, ledger)
    asyncio.run(s.reserves.on_frequency(b"59.6", NOON))
    assert s.actuator.applied == []


def test_the_obligation_and_availability_are_reported_once_a_second(
    tmp_path: Path, ledger: Ledger
) -> None:
    """Each second: the hour's award and what is deployed on as/obligation, the qualified
    awake miners' draw on as/available, and the metrics in watts; not twice within a
    second. A deployed MW counts towards the headroom."""
    s = Setup(tmp_path, ledger)
    s.award("ECRS", 0.04)
    asyncio.run(s.reserves.once(NOON))
    s.later(0.5)
    assert len(s.link.on(f"{PREFIX}/as/obligation")) == 1
    owed = json.loads(s.link.on(f"{PREFIX}/as/obligation")[0])
    assert (owed["mw"], owed["deployed_mw"], owed["deployments"]) == (
        {"RRS": 0.0, "ECRS": 0.04},
        {"RRS": 0.0, "ECRS": 0.0},
        [],
    )
    available = json.loads(s.link.on(f"{PREFIX}/as/available")[0])
    assert available["mw"]["ECRS"] == pytest.approx(40 * UNIT_W / 1e6)
    s.deploy(0.04, product="ECRS")
    s.later(0.5)
    assert len(s.link.on(f"{PREFIX}/as/obligation")) == 2
    headroom = s.p.sample("gridpilot_reserve_headroom_watts", product="ECRS")
    assert headroom == pytest.approx((40 - 13) * UNIT_W + 40e3 - 40e3)
    assert s.p.sample("gridpilot_reserve_obligation_watts", product="ECRS") == 40e3
    assert s.p.sample("gridpilot_reserve_deployed_watts", product="ECRS") == 40e3


def test_a_restart_keeps_holding_what_was_not_recalled(tmp_path: Path, ledger: Ledger) -> None:
    """A new reserves part on the same ledger holds the deployment still open (and its cap),
    forgets the recalled one, and does not carry out a repeated instruction again."""
    s = Setup(tmp_path, ledger)
    s.deploy(0.01, ident="open")
    s.deploy(0.01, ident="done")
    asyncio.run(s.reserves.on_recall(b'{"id": "done"}', NOON))
    s.p.recorder.flush()
    s.p.state.programs.holds.clear()
    again = s.build()
    asyncio.run(again.restore())
    assert sorted(s.p.state.programs.holds) == ["open"]
    assert s.p.state.programs.deployment_event() is not None
    applied = len(s.actuator.applied)
    asyncio.run(again.on_deploy(b'{"id": "done", "product": "RRS", "mw": 0.01}', NOON))
    assert len(s.actuator.applied) == applied
