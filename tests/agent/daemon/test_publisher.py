"""The publisher alone, on a fake link: status, mode, the plan summary, notices, clearing."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import structlog

from gridpilot.adapters.actuation import GpuCommand
from gridpilot.agent.daemon.ledger import Ledger
from gridpilot.agent.daemon.mode import Mode
from gridpilot.agent.daemon.publisher import PlanMade, Publisher
from gridpilot.agent.daemon.topics import Topics
from gridpilot.agent.site import site_problem
from gridpilot.optimizer.plan import Plan
from gridpilot.optimizer.solve import solve
from tests.agent.daemon.parts import FakeLink, Plant, plant, site_settings
from tests.agent.daemon.test_daemon_units import SetClock

PREFIX = "gridpilot/testsite"
NOON = datetime(2024, 8, 20, 12, 0, tzinfo=UTC)


def _publisher(p: Plant, link: FakeLink, mode: Mode) -> Publisher:
    return Publisher(
        link.publish,
        topics=Topics.of(p.settings),
        site=p.site,
        setpoints=p.setpoints,
        mode=mode,
        clock=p.clock,
        shadow=p.settings.agent.shadow,
    )


def _spike_plan(p: Plant) -> Plan:
    """A plan that pauses the GPU nodes for a price spike an hour ahead."""
    prices = [30.0] * 4 + [9000.0] * 3 + [30.0] * 5
    problem = site_problem(
        p.settings,
        start=NOON,
        step_s=(900.0,) * 12,
        price_usd_per_mwh=prices,
        hashprice_usd_per_th_day=0.05,
    )
    return solve(problem)


def _made(plan: Plan, label: str) -> PlanMade:
    return PlanMade(
        plan=plan,
        label=label,
        at=NOON,
        reason="interval",
        decision="plan is 2 h old",
        fresh=True,
        step=0,
        price_usd_per_mwh=30.0,
        changed=1,
        gpu_rows=(0,),
    )


def test_on_connect_it_says_online_and_the_mode_safe_with_its_stale_feeds(
    tmp_path: Path, ledger: Ledger
) -> None:
    """On connect the status is `online` and the mode is published; in safe mode the mode
    names the stale feeds; on a clean stop the status is `offline`."""
    p = plant(site_settings(tmp_path), SetClock(NOON), ledger)
    link, mode = FakeLink(), Mode()
    publisher = _publisher(p, link, mode)

    async def scenario() -> None:
        await publisher.connected()
        mode.name, mode.stale = "safe", ("meter",)
        await publisher.mode()
        await publisher.offline()

    asyncio.run(scenario())
    assert link.on(f"{PREFIX}/status") == [b"online", b"offline"]
    modes = [json.loads(m) for m in link.on(f"{PREFIX}/mode")]
    assert modes == [
        {"mode": "normal", "stale": [], "at": NOON.isoformat()},
        {"mode": "safe", "stale": ["meter"], "at": NOON.isoformat()},
    ]


def test_shadow_mode_is_the_mode_published_unless_safe(tmp_path: Path, ledger: Ledger) -> None:
    """An agent in shadow mode says `shadow` as its mode, and `safe` while safe."""
    p = plant(site_settings(tmp_path, shadow=True), SetClock(NOON), ledger)
    link, mode = FakeLink(), Mode()
    publisher = _publisher(p, link, mode)
    asyncio.run(publisher.mode())
    mode.name = "safe"
    asyncio.run(publisher.mode())
    assert [json.loads(m)["mode"] for m in link.on(f"{PREFIX}/mode")] == ["shadow", "safe"]


def test_a_plan_is_summarised_its_notice_sent_once_and_logged(
    tmp_path: Path, ledger: Ledger
) -> None:
    """A plan's summary carries its label, status and the setpoints' totals; the contract's
    notice says when its nodes are next paused and is not sent again for the same pause; one
    `plan.made` line says why groups are curtailed."""
    p = plant(site_settings(tmp_path), SetClock(NOON), ledger)
    p.setpoints.remember(GpuCommand("h100", 700.0, 0, 3, "price", "plan-1"))
    link = FakeLink()
    publisher = _publisher(p, link, Mode())
    plan = _spike_plan(p)

    async def scenario() -> None:
        await publisher.plan_made(_made(plan, "plan-1"))
        await publisher.plan_made(_made(plan, "plan-2"))

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    summaries = [json.loads(s) for s in link.on(f"{PREFIX}/plan")]
    assert [s["plan"] for s in summaries] == ["plan-1", "plan-2"]
    assert summaries[0]["asic_units_on"] == 60
    assert summaries[0]["gpu_paused_nodes"] == 3
    assert summaries[0]["shadow"] is False
    notices = [json.loads(n) for n in link.on(f"{PREFIX}/notice/batch")]
    assert notices == [
        {
            "plan": "plan-1",
            "start": datetime(2024, 8, 20, 13, 0, tzinfo=UTC).isoformat(),
            "paused_nodes": 10,
            "notice_s": 900,
        }
    ]
    made = [e for e in logs if e["event"] == "plan.made"]
    assert [e["plan"] for e in made] == ["plan-1", "plan-2"]
    assert made[0]["changed"] == 1


def test_a_notice_the_broker_did_not_take_is_sent_with_the_next_plan(
    tmp_path: Path, ledger: Ledger
) -> None:
    """A notice published while the broker is away is published again with the next plan."""
    p = plant(site_settings(tmp_path), SetClock(NOON), ledger)
    link = FakeLink()
    publisher = _publisher(p, link, Mode())
    plan = _spike_plan(p)
    link.refusing.add(f"{PREFIX}/notice/batch")
    asyncio.run(publisher.plan_made(_made(plan, "plan-1")))
    link.refusing.clear()
    asyncio.run(publisher.plan_made(_made(plan, "plan-2")))
    assert [json.loads(n)["plan"] for n in link.on(f"{PREFIX}/notice/batch")] == ["plan-2"]


def test_an_expired_override_is_cleared_with_an_empty_retained_message(
    tmp_path: Path, ledger: Ledger
) -> None:
    """Clearing an override publishes an empty payload on the group's override topic."""
    p = plant(site_settings(tmp_path), SetClock(NOON), ledger)
    link = FakeLink()
    asyncio.run(_publisher(p, link, Mode()).clear_override("new-01"))
    assert link.published == [(f"{PREFIX}/override/new-01", b"")]
