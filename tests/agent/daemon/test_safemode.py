"""Safe mode alone: entered on stale feeds, the miners held to their share, left on fresh ones."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from gridpilot.adapters.actuation import AsicCommand, RecordingActuator
from gridpilot.agent.daemon.ledger import Ledger
from gridpilot.agent.daemon.mode import Mode
from gridpilot.agent.daemon.publisher import Publisher
from gridpilot.agent.daemon.safemode import SafeMode
from gridpilot.agent.daemon.topics import Topics
from tests.agent.daemon.parts import FakeLink, commands, plant, site_settings
from tests.agent.daemon.test_daemon_units import SetClock

NOON = datetime(2024, 8, 20, 12, 0, tzinfo=UTC)
MODE_TOPIC = "gridpilot/testsite/mode"


def test_stale_feeds_hold_the_miners_to_their_share_until_fresh(
    tmp_path: Path, ledger: Ledger
) -> None:
    """A stale meter puts the agent in safe mode: announced, the gauge set, the miners held
    to half of 250 kW, most efficient first (the S21s whole, then the S19j Pros that fit);
    another stale feed is announced without new commands; fresh feeds leave it and ask for a
    plan on a fresh horizon."""
    p = plant(site_settings(tmp_path), SetClock(NOON), ledger)
    actuator, link, mode = RecordingActuator(), FakeLink(), Mode()
    publisher = Publisher(
        link.publish,
        topics=Topics.of(p.settings),
        site=p.site,
        setpoints=p.setpoints,
        mode=mode,
        clock=p.clock,
        shadow=False,
    )
    afresh: list[str] = []
    safe = SafeMode(
        p.settings,
        mode=mode,
        state=p.state,
        setpoints=p.setpoints,
        commands=commands(p, actuator),
        announce=publisher.mode,
        replan_afresh=afresh.append,
        metrics=p.metrics,
    )
    assert p.sample("gridpilot_mode", mode="normal") == 1

    async def scenario() -> None:
        await safe.update(("meter",), {"meter": 40.0})
        await safe.update(("meter",), {"meter": 41.0})
        await safe.update(("meter", "price"), {"meter": 42.0, "price": 2_000.0})
        assert afresh == []
        await safe.update((), {})

    asyncio.run(scenario())
    held = {c.group: c.units_on for c in actuator.applied if isinstance(c, AsicCommand)}
    assert held == {"old-03": 6, "old-02": 0, "old-01": 0}
    assert all(c.plan == "safe" for c in actuator.applied)
    modes = [json.loads(m) for m in link.on(MODE_TOPIC)]
    assert [(m["mode"], m["stale"]) for m in modes] == [
        ("safe", ["meter"]),
        ("safe", ["meter", "price"]),
        ("normal", []),
    ]
    assert afresh == ["fresh data after safe mode"]
    assert mode == Mode()
    assert p.sample("gridpilot_mode", mode="safe") == 0
    assert p.sample("gridpilot_mode", mode="normal") == 1


def test_the_miners_safe_budget_leaves_room_for_the_gpus(tmp_path: Path, ledger: Ledger) -> None:
    """With the whole limit less margin (250 kW) the miners' share, the ten H100 nodes at full
    power (76.25 kW at the meter) leave 173.75 kW: the S21s keep their 73.5 kW and 31 of the
    S19j Pros (3.15 kW each) run. (Before, the budget was 250 kW and nothing was held.)"""
    p = plant(site_settings(tmp_path, safe_asic_share=1.0), SetClock(NOON), ledger)
    actuator, link, mode = RecordingActuator(), FakeLink(), Mode()
    publisher = Publisher(
        link.publish,
        topics=Topics.of(p.settings),
        site=p.site,
        setpoints=p.setpoints,
        mode=mode,
        clock=p.clock,
        shadow=False,
    )
    safe = SafeMode(
        p.settings,
        mode=mode,
        state=p.state,
        setpoints=p.setpoints,
        commands=commands(p, actuator),
        announce=publisher.mode,
        replan_afresh=lambda reason: None,
        metrics=p.metrics,
    )
    asyncio.run(safe.update(("meter",), {"meter": 40.0}))
    held = {c.group: c.units_on for c in actuator.applied if isinstance(c, AsicCommand)}
    assert held == {"old-01": 1}  # the S19j Pro groups are shed in the order the guard sheds
    assert sum(p.setpoints.units_on) == 20 + 31
