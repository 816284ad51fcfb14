"""The daemon's bookkeeping on its own, with a clock the test sets and a recording actuator."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog.testing
from prometheus_client import CollectorRegistry

from gridpilot.adapters.actuation import AsicCommand, GpuCommand, RecordingActuator
from gridpilot.adapters.broker import free_port
from gridpilot.adapters.payloads import Override, OverrideClear, OverrideMode, Rejected
from gridpilot.agent.daemon.daemon import Daemon
from gridpilot.agent.daemon.ledger import Ledger
from gridpilot.agent.daemon.metrics import Metrics
from gridpilot.agent.daemon.state import Signal
from gridpilot.agent.settings import load_settings
from tests.integration.harness import SITE_TOML


class SetClock:
    speed = 1.0

    def __init__(self, now: datetime) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment

    async def sleep(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)
        await asyncio.sleep(0)


def _daemon(tmp_path: Path, clock: SetClock, ledger: Ledger) -> Daemon:
    path = tmp_path / "site.toml"
    path.write_text(SITE_TOML + f"\n[mqtt]\nport = {free_port()}\n")
    return Daemon(
        load_settings(path),
        ledger=ledger,
        clock=clock,
        metrics=Metrics(CollectorRegistry()),
        actuator=RecordingActuator(),
    )


def test_allowance_is_charged_to_each_month_the_curtailment_spans(tmp_path: Path) -> None:
    """Nodes paused from 23:00 on the last day of a month to 01:00 the next are charged one
    hour to each month, and the interruption is in the ledger from its start."""
    clock = SetClock(datetime(2024, 11, 30, 23, 0, tzinfo=UTC))
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        daemon = _daemon(tmp_path, clock, ledger)

        async def scenario() -> None:
            await daemon.allowance.account(clock.now())  # the first accounting sets the mark
            await daemon.commands.send(
                [GpuCommand("h100", 700.0, 0, 4, "price spike", "plan-1")], plan="p"
            )
            clock.moment = datetime(2024, 12, 1, 1, 0, tzinfo=UTC)
            await daemon.allowance.account(clock.now())
            await daemon.commands.send(
                [GpuCommand("h100", 700.0, 0, 0, "spike over", "plan-2")], plan="p"
            )

        asyncio.run(scenario())
        daemon.recorder.flush()  # as `run` does on its way out
        november = ledger.used_node_hours(datetime(2024, 11, 15, tzinfo=UTC))
        december = ledger.used_node_hours(datetime(2024, 12, 15, tzinfo=UTC))
        assert november == {"batch": 4.0}
        assert december == {"batch": 4.0}
        assert ledger.open_interruptions() == []
        assert ledger.current_setpoints()[("gpu", "h100")]["paused_nodes"] == 0


def test_a_clock_stepping_back_charges_no_span_twice(tmp_path: Path) -> None:
    """Four nodes paused from 10:00; accountings at 11:00, at 10:30 (the wall clock stepped
    back) and at 11:30 charge the 90 minutes once: 6 node-hours."""
    clock = SetClock(datetime(2024, 8, 20, 10, 0, tzinfo=UTC))
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        daemon = _daemon(tmp_path, clock, ledger)

        async def scenario() -> None:
            await daemon.allowance.account(clock.now())
            await daemon.commands.send(
                [GpuCommand("h100", 700.0, 0, 4, "price spike", "plan-1")], plan="p"
            )
            for minutes in (60, 30, 90):
                clock.moment = datetime(2024, 8, 20, 10, 0, tzinfo=UTC) + timedelta(minutes=minutes)
                await daemon.allowance.account(clock.now())

        asyncio.run(scenario())
        daemon.recorder.flush()
        assert ledger.used_node_hours(clock.now()) == {"batch": 6.0}


def test_curtailment_length_survives_a_restart(tmp_path: Path) -> None:
    """A daemon started on a ledger with a running interruption counts it from its real start,
    and takes the last commands as the plant's state."""
    clock = SetClock(datetime(2024, 8, 20, 12, 0, tzinfo=UTC))
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        first = _daemon(tmp_path, clock, ledger)
        asyncio.run(
            first.commands.send([GpuCommand("h100", 700.0, 0, 3, "spike", "plan-1")], plan="p")
        )
        first.recorder.flush()
        clock.moment += timedelta(minutes=40)
        second = _daemon(tmp_path, clock, ledger)
        asyncio.run(second.commands.restore())
        assert second.allowance.curtailed_for_s("h100", clock.now()) == 2_400.0
        assert int(second.setpoints.gpu_paused[0]) == 3


def test_guard_spares_overridden_groups_until_nothing_else_is_left(tmp_path: Path) -> None:
    """A group an operator holds awake is shed by the guard only after every other miner."""
    clock = SetClock(datetime(2024, 8, 20, 12, 0, tzinfo=UTC))
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        daemon = _daemon(tmp_path, clock, ledger)
        actuator = daemon.actuator
        assert isinstance(actuator, RecordingActuator)
        hold = Override("old-01", OverrideMode.AWAKE, clock.now() + timedelta(hours=1))
        daemon.state.overrides["old-01"] = hold
        daemon.state.meters["main"] = Signal(265e3, clock.now(), clock.now())
        asyncio.run(daemon.guard.once())
        shed = [c.group for c in actuator.applied]
        assert "old-01" not in shed
        assert shed[0] == "old-02"  # the next least efficient
        # Far over the cap: everything else goes first, then the held group too.
        daemon.guard.shed_credit.clear()
        daemon.state.meters["main"] = Signal(10e6, clock.now(), clock.now())
        asyncio.run(daemon.guard.once())
        assert int(daemon.setpoints.units_on[daemon.setpoints.asic_index["old-01"]]) == 0
        assert int(daemon.setpoints.units_on.sum()) == 0


def test_an_operator_clears_an_override_with_an_empty_message(tmp_path: Path) -> None:
    """An empty retained override message lifts the hold and asks for a new plan; one for a
    group the site does not have is rejected."""
    clock = SetClock(datetime(2024, 8, 20, 12, 0, tzinfo=UTC))
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        daemon = _daemon(tmp_path, clock, ledger)

        async def scenario() -> None:
            hold = Override("new-01", OverrideMode.ASLEEP, clock.now() + timedelta(hours=1))
            await daemon.overrides.apply(hold)
            assert int(daemon.setpoints.units_on[daemon.setpoints.asic_index["new-01"]]) == 0
            daemon.triggers.replan.clear()
            await daemon.overrides.apply(OverrideClear("new-01"))
            assert "new-01" not in daemon.state.overrides
            assert daemon.triggers.replan.is_set()
            with pytest.raises(Rejected, match="not a group"):
                await daemon.overrides.apply(OverrideClear("nope"))

        asyncio.run(scenario())


def test_power_metrics_follow_the_commands_by_class_and_reason(tmp_path: Path) -> None:
    """What a command holds off is reported under its load class and reason, and given back
    when the group runs again; the class totals stay the sum of the groups."""
    clock = SetClock(datetime(2024, 8, 20, 12, 0, tzinfo=UTC))
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        daemon = _daemon(tmp_path, clock, ledger)
        m = daemon.metrics

        def held(load: str, reason: str) -> float:
            labels = {"load": load, "reason": reason}
            return m.registry.get_sample_value("gridpilot_curtailed_power_watts", labels) or 0.0

        def load(kind: str) -> float:
            return m.registry.get_sample_value("gridpilot_load_power_watts", {"load": kind}) or 0.0

        full_asic = load("asic")
        assert full_asic == (40 * 3000 + 20 * 3500) * 1.05
        asyncio.run(
            daemon.commands.send(
                [
                    AsicCommand("old-01", 4, 3000.0, "price 90 $/MWh > breakeven", "p"),
                    AsicCommand("old-02", 0, 3000.0, "site limit 0.3 MW", "p"),
                    GpuCommand("h100", 700.0, 0, 10, "price spike", "p"),
                ],
                plan="p",
            )
        )
        assert held("asic", "price") == 6 * 3000 * 1.05
        assert held("asic", "site_limit") == 10 * 3000 * 1.05
        assert load("asic") == full_asic - 16 * 3000 * 1.05
        paused = 10 * (8 * 100 + 500) * 1.25
        assert held("gpu", "price") == 10 * (8 * 700 + 500) * 1.25 - paused
        assert load("gpu") == paused
        asyncio.run(daemon.commands.send([AsicCommand("old-01", 10, 3000.0, "", "p")], plan="p"))
        assert held("asic", "price") == 0
        assert load("asic") == full_asic - 10 * 3000 * 1.05


class _ClosingActuator(RecordingActuator):
    """Records that it was closed, as a device actuator restores its defaults there."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def test_a_crashing_part_still_closes_the_devices_and_writes_the_ledger(tmp_path: Path) -> None:
    """A part of the daemon that fails with an unexpected error ends `run` with that error,
    but only after the devices are closed (GPU defaults restored there, where the site asks)
    and the ledger writes still queued are written. (Before, both were skipped.)"""
    path = tmp_path / "site.toml"
    path.write_text(SITE_TOML + f"\n[mqtt]\nport = {free_port()}\n\n[agent]\nmetrics_port = 0\n")
    actuator = _ClosingActuator()
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        daemon = Daemon(
            load_settings(path),
            ledger=ledger,
            clock=SetClock(datetime(2024, 8, 20, 12, 0, tzinfo=UTC)),
            metrics=Metrics(CollectorRegistry()),
            actuator=actuator,
        )

        async def fails() -> None:
            # A write queued at the moment of the crash.
            daemon.recorder.write(ledger.set_meta, "queued_before_the_crash", "yes")
            raise RuntimeError("a bug in housekeeping")

        daemon.housekeeping.run = fails  # type: ignore[method-assign]
        with pytest.raises(ExceptionGroup) as raised:
            asyncio.run(daemon.run(asyncio.Event()))
        assert raised.group_contains(RuntimeError, match="a bug in housekeeping")
        assert actuator.closed
        assert ledger.get_meta("queued_before_the_crash") == "yes"


def test_a_stale_forecast_is_said_and_exported_but_is_no_safe_mode(tmp_path: Path) -> None:
    """With the meter, price and hashprice fresh, a forecast issued 37 h ago (past the 36 h
    default) leaves the agent in normal mode: its age and limit are exported for the alert,
    `forecast.stale` is logged once, and `forecast.fresh` when a new one comes."""
    clock = SetClock(datetime(2024, 8, 20, 12, 0, tzinfo=UTC))
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        daemon = _daemon(tmp_path, clock, ledger)
        state, now = daemon.state, clock.now()
        state.meters["main"] = Signal(100e3, now, now)
        state.price = Signal(30.0, now, now)
        state.hashprice = Signal(0.05, now, now)
        state.forecast_received = now - timedelta(hours=37)

        async def scenario() -> None:
            await daemon.housekeeping.once()
            await daemon.housekeeping.once()  # still stale: said once
            state.forecast_received = clock.now()
            await daemon.housekeeping.once()

        with structlog.testing.capture_logs() as logs:
            asyncio.run(scenario())
        said = [e["event"] for e in logs if e["event"].startswith("forecast.")]
        assert said == ["forecast.stale", "forecast.fresh"]
        assert not daemon.safe_mode.mode.safe
        registry = daemon.metrics.registry
        age = registry.get_sample_value("gridpilot_signal_age_seconds", {"signal": "forecast"})
        limit = registry.get_sample_value(
            "gridpilot_signal_stale_after_seconds", {"signal": "forecast"}
        )
        assert (age, limit) == (0.0, 36 * 3_600.0)
        assert registry.get_sample_value("gridpilot_mode", {"mode": "normal"}) == 1
