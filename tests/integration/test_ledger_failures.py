"""The agent with a ledger it cannot write, against a real Mosquitto: the guard still sheds,
no plan is carried out that is not on disk, every failure is said and counted, and the agent
goes on; once the ledger takes writes again, plans are recorded and carried out.

The failure is SQLite's own: the ledger's connection is set read-only (`query_only`), and
every write fails as on a file whose filesystem went read-only. A real full disk (a small
tmpfs) is `gridpilot bench reliability`'s (agent.bench.disk)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

from gridpilot.adapters.actuation import AsicCommand, GpuCommand, RecordingActuator
from gridpilot.adapters.broker import LocalBroker
from gridpilot.agent.daemon.daemon import Daemon
from tests.integration.harness import PREFIX, feed_market, observing, running, site_settings


def _failures(daemon: Daemon, action: str) -> float:
    value = daemon.metrics.registry.get_sample_value(
        "gridpilot_ledger_failures_total", {"action": action}
    )
    return value or 0.0


def _forecast(daemon: Daemon, price: float) -> str:
    now = daemon.clock.now()
    return json.dumps(
        {
            "issued": now.isoformat(),
            "start": now.replace(minute=0, second=0, microsecond=0).isoformat(),
            "step_s": 3600,
            "usd_per_mwh": [price] * 24,
        }
    )


async def _pragma(daemon: Daemon, statement: str) -> None:
    """`statement` on the ledger's own connection, in turn with the agent's ledger calls."""
    ledger = daemon.ledger

    def run() -> None:
        ledger._conn.execute(statement)  # the agent's own connection: only it is broken

    await daemon.recorder.call(run)


def test_a_read_only_ledger_keeps_the_guard_on_and_no_unrecorded_plan_is_carried_out(
    tmp_path: Path, broker: LocalBroker
) -> None:
    """Planned first; then the ledger fails: a reading over the cap is shed at once (its
    record's write failing, counted), a new forecast's plan is not carried out
    (`plan.not_recorded`, counted), and the agent keeps serving; with the ledger back, the
    next forecast's plan is recorded and its commands go out."""

    async def scenario() -> None:
        settings = site_settings(tmp_path, broker, replan_after_guard=False)
        actuator = RecordingActuator()
        async with observing(broker) as observer, running(settings, actuator=actuator) as daemon:
            await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 200e3}))
            await feed_market(observer, price=25.0)
            # The first plan published: it is in the ledger and its commands are out, so the
            # failures below are the ledger's, not a race with it.
            await observer.wait_for(lambda: bool(observer.on(f"{PREFIX}/plan")), 30)
            await daemon.recorder.durable()
            start = daemon.clock.now() - timedelta(hours=1)
            recorded = len(daemon.ledger.plans(start, start + timedelta(days=1)))
            assert recorded >= 1

            await _pragma(daemon, "PRAGMA query_only = ON")
            applied = len(actuator.applied)
            await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 265e3}))

            def shed() -> list[AsicCommand]:
                new = actuator.applied[applied:]
                return [c for c in new if isinstance(c, AsicCommand)]

            await observer.wait_for(lambda: bool(shed()))
            assert daemon.guard.actions == 1
            assert all(c.reason.startswith("guard:") for c in shed())
            await observer.wait_for(lambda: _failures(daemon, "write") >= 1)

            applied = len(actuator.applied)
            made = daemon.cycle.plans_made
            await observer.publish(f"{PREFIX}/price/forecast", _forecast(daemon, 900.0))
            await observer.wait_for(lambda: _failures(daemon, "plan") >= 1, 30)
            assert daemon.cycle.plans_made > made  # solved, then not carried out
            assert not any(c.plan.startswith("plan-") for c in actuator.applied[applied:])
            assert len(daemon.ledger.plans(start, start + timedelta(days=1))) == recorded

            # A GPU command accounts the allowance first and opens an interruption: both fail,
            # both are counted, and the command is carried out all the same.
            accounts, interruptions = (
                _failures(daemon, "account"),
                _failures(daemon, "interruption"),
            )
            await daemon.commands.send(
                [GpuCommand("h100", 700.0, 0, 2, "operator test", "test")], plan="test"
            )
            assert _failures(daemon, "account") == accounts + 1
            assert _failures(daemon, "interruption") == interruptions + 1
            assert actuator.applied[-1] == GpuCommand("h100", 700.0, 0, 2, "operator test", "test")

            await _pragma(daemon, "PRAGMA query_only = OFF")
            await observer.publish(f"{PREFIX}/price/forecast", _forecast(daemon, 20.0))
            await observer.wait_for(
                lambda: any(c.plan.startswith("plan-") for c in actuator.applied[applied:]), 30
            )
            await daemon.recorder.durable()
            assert len(daemon.ledger.plans(start, start + timedelta(days=1))) > recorded

    asyncio.run(scenario())
