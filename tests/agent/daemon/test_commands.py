"""The commands part alone: what it remembers, records and reads back from an actuator."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gridpilot.adapters.actuation import (
    AsicCommand,
    Command,
    GpuCommand,
    Outcome,
    RecordingActuator,
)
from gridpilot.adapters.payloads import Override, OverrideMode
from gridpilot.agent.daemon.ledger import Ledger
from gridpilot.agent.daemon.mode import Mode
from tests.agent.daemon.parts import allowance, commands, plant, site_settings
from tests.agent.daemon.test_daemon_units import SetClock
from tests.integration.harness import SITE_TOML

NOON = datetime(2024, 8, 20, 12, 0, tzinfo=UTC)


class Lagging:
    """An actuator whose miners do not all follow: each ASIC command leaves `stuck` more
    units awake than asked, with a fault per stuck unit."""

    def __init__(self, stuck: int) -> None:
        self.stuck = stuck

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        return [
            Outcome(c.group, False, "did not sleep", c.units_on + self.stuck, ("not_asleep",))
            if isinstance(c, AsicCommand)
            else Outcome(c.group, True)
            for c in commands
        ]


def test_outcomes_set_the_plant_where_it_is_and_observers_see_it(
    tmp_path: Path, ledger: Ledger
) -> None:
    """A miner group that stays more awake than told is taken as it is, counted as failed
    with its faults, and a plan is asked for; observers are told once the outcomes are in,
    and the ledger has the command as sent."""
    p = plant(site_settings(tmp_path), SetClock(NOON), ledger)
    part = commands(p, Lagging(stuck=2))
    seen: list[tuple[list[str], int]] = []
    part.observers.append(
        lambda sent: seen.append(([c.group for c in sent], int(p.setpoints.units_on.sum())))
    )
    sent = asyncio.run(part.send([AsicCommand("old-01", 0, 3000.0, "price", "p")], plan="p"))
    p.recorder.flush()
    assert [c.group for c in sent] == ["old-01"]
    assert int(p.setpoints.units_on[p.setpoints.asic_index["old-01"]]) == 2
    assert seen == [(["old-01"], 60 - 10 + 2)]
    assert p.triggers.reason == "old-01 did not follow its command"
    failed = {"load": "asic", "group": "old-01"}
    assert p.sample("gridpilot_command_failures_total", **failed) == 1
    assert p.sample("gridpilot_device_faults_total", group="old-01", fault="not_asleep") == 1
    assert ledger.current_setpoints()[("asic", "old-01")]["units_on"] == 0


def test_a_plans_commands_leave_out_groups_under_an_override(
    tmp_path: Path, ledger: Ledger
) -> None:
    """A plan's command for a group an operator holds is dropped at sending, and observers
    hear nothing when nothing is left to send."""
    p = plant(site_settings(tmp_path), SetClock(NOON), ledger)
    part = commands(p, Lagging(stuck=0))
    seen: list[Sequence[Command]] = []
    part.observers.append(seen.append)
    hold = Override("new-01", OverrideMode.AWAKE, datetime(2024, 8, 20, 13, 0, tzinfo=UTC))
    p.state.overrides["new-01"] = hold
    planned = [AsicCommand("new-01", 0, 3500.0, "price", "plan-1")]
    assert asyncio.run(part.send(planned, plan="plan-1", planned=True)) == []
    assert seen == []
    assert int(p.setpoints.units_on[p.setpoints.asic_index["new-01"]]) == 10


def test_a_plan_made_as_safe_mode_began_is_not_sent_and_its_holds_stand(
    tmp_path: Path, ledger: Ledger
) -> None:
    """Safe mode that begins while a plan is being solved wins: the plan's commands, sent
    after it began, are dropped, so they cannot wake the miners safe mode just put to sleep;
    safe mode's own commands (not a plan's) still go out. (Found by the broker outage trial:
    the plan solved before the meter went stale was sent after the holds.)"""
    p = plant(site_settings(tmp_path), SetClock(NOON), ledger)
    mode = Mode()
    part = commands(p, Lagging(stuck=0), mode=mode)
    hold = [AsicCommand("new-01", 0, 0.0, "safe_mode", "safe")]
    mode.name, mode.stale = "safe", ("meter",)
    assert [c.group for c in asyncio.run(part.send(hold, plan="safe"))] == ["new-01"]
    planned = [AsicCommand("new-01", 10, 3500.0, "price", "plan-1")]
    assert asyncio.run(part.send(planned, plan="plan-1", planned=True)) == []
    p.recorder.flush()
    assert int(p.setpoints.units_on[p.setpoints.asic_index["new-01"]]) == 0
    assert ledger.current_setpoints()[("asic", "new-01")]["units_on"] == 0
    mode.name, mode.stale = "normal", ()
    sent = asyncio.run(part.send(planned, plan="plan-1", planned=True))
    assert [c.group for c in sent] == ["new-01"]


def test_a_restart_restores_setpoints_and_running_interruptions(
    tmp_path: Path, ledger: Ledger
) -> None:
    """What a first part sent is what a second one, on the same ledger, restores: the
    setpoints, their gauges, and the interruption with its start."""
    first = plant(site_settings(tmp_path), SetClock(NOON), ledger)
    gpu = GpuCommand("h100", 400.0, 4, 0, "price", "plan-1")
    asyncio.run(commands(first, Lagging(stuck=0)).send([gpu], plan="plan-1"))
    first.recorder.flush()
    second = plant(site_settings(tmp_path), SetClock(NOON + timedelta(minutes=10)), ledger)
    kept = allowance(second)
    asyncio.run(commands(second, Lagging(stuck=0), kept).restore())
    assert kept.curtailed_for_s("h100", second.clock.now()) == 600.0
    assert int(second.setpoints.gpu_capped[0]) == 4
    assert second.sample("gridpilot_gpu_curtailed_nodes", group="h100") == 4
    assert second.sample("gridpilot_gpu_power_cap_watts", group="h100") == 400.0
    assert [i.group for i in ledger.open_interruptions()] == ["h100"]


def test_miners_put_to_sleep_are_locked_for_their_minimum_off_time(
    tmp_path: Path, ledger: Ledger
) -> None:
    """On a site whose old miners have a 30-minute minimum off time, a command that sleeps 6
    of old-01's 10 at noon leaves them locked (what the next plan is told) until 12:30; one
    that wakes them earlier, as an operator's override may, is carried out and unlocks them."""
    site_toml = SITE_TOML.replace("wake_loss_s = 600\n", "wake_loss_s = 600\nmin_off_s = 1800\n", 1)
    p = plant(site_settings(tmp_path, site_toml=site_toml), SetClock(NOON), ledger)
    part = commands(p, RecordingActuator())
    asyncio.run(part.send([AsicCommand("old-01", 4, 3000.0, "price", "p")], plan="p"))
    i = p.setpoints.asic_index["old-01"]
    locked, for_s = p.setpoints.sleeps.locked((NOON + timedelta(minutes=10)).timestamp())
    assert (int(locked[i]), float(for_s[i])) == (6, 1_200.0)
    assert int(p.setpoints.sleeps.locked((NOON + timedelta(minutes=30)).timestamp())[0][i]) == 0
    asyncio.run(part.send([AsicCommand("old-01", 10, 3000.0, "override", "p")], plan="p"))
    assert int(p.setpoints.sleeps.locked(NOON.timestamp() + 60)[0][i]) == 0
