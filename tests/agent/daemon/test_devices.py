"""A device actuator that cannot start: down, refused, retried with a backoff, then up and
sent its groups' latest setpoints; the rest of the agent unaffected."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from prometheus_client import CollectorRegistry

from gridpilot.adapters.actuation import (
    AsicCommand,
    Command,
    DeviceUnavailableError,
    GpuCommand,
    Outcome,
    RecordingActuator,
    RoutingActuator,
)
from gridpilot.adapters.broker import LocalBroker, free_port
from gridpilot.agent.daemon.clock import ScaledClock
from gridpilot.agent.daemon.daemon import Daemon
from gridpilot.agent.daemon.devices import SupervisedActuator, retry_down
from gridpilot.agent.daemon.ledger import Ledger
from gridpilot.agent.daemon.metrics import Metrics
from gridpilot.agent.settings import Settings, load_settings
from tests.adapters.test_gpus import FakeNvml
from tests.agent.daemon.test_daemon_units import SetClock
from tests.integration.harness import PREFIX, SITE_TOML, observing, running, site_settings

GROUPS = ("gpu-a", "gpu-b")
LOCAL_GPUS = """
[[gpu_groups]]
name = "local"
nodes = 1
gpus_per_node = 2
cap_levels = [{ watts_per_gpu = 700, throughput = 1.0 }, { watts_per_gpu = 400, throughput = 0.9 }]
idle_watts_per_gpu = 100
host_watts_per_node = 500
contract = "batch"
actuator = "nvml"
gpus = [0, 1]
"""


class FlakyDevice(RecordingActuator):
    """A device actuator whose first `failures` starts raise `DeviceUnavailableError` (or
    `error`, when given)."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        super().__init__()
        self.failures = failures
        self.error = error
        self.starts = 0
        self.closed = 0

    async def start(self) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise self.error or DeviceUnavailableError("nvml", "no driver", "install it")

    async def close(self) -> None:
        self.closed += 1


class Recorder:
    """Remembers what the supervisor asks to be resent, and when (the clock's time)."""

    def __init__(self, clock: SetClock) -> None:
        self.clock = clock
        self.calls: list[tuple[tuple[str, ...], datetime]] = []

    async def __call__(self, groups: tuple[str, ...]) -> None:
        self.calls.append((groups, self.clock.now()))


class SleepLog(SetClock):
    def __init__(self, now: datetime) -> None:
        super().__init__(now)
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await super().sleep(seconds)


START = datetime(2024, 8, 20, 12, 0, tzinfo=UTC)


def _supervised(
    device: FlakyDevice, clock: SetClock, **options: float
) -> tuple[SupervisedActuator, Metrics, Recorder]:
    metrics = Metrics(CollectorRegistry())
    resend = Recorder(clock)
    supervised = SupervisedActuator(
        device,
        kind="nvml",
        groups=GROUPS,
        clock=clock,
        metrics=metrics,
        resend=resend,
        first_retry_s=options.get("first_retry_s", 5.0),
        max_retry_s=options.get("max_retry_s", 30.0),
        start_timeout_s=options.get("start_timeout_s", 30.0),
    )
    return supervised, metrics, resend


def _up(metrics: Metrics, group: str, kind: str = "nvml") -> float | None:
    return metrics.registry.get_sample_value(
        "gridpilot_device_up", {"group": group, "actuator": kind}
    )


def _cap(group: str, watts: float) -> GpuCommand:
    return GpuCommand(group, watts, 1, 0, "price", "plan-1")


def test_a_device_that_cannot_start_is_down_and_refuses_commands() -> None:
    """A failed start is no error: its groups read 0 in gridpilot_device_up, and a command for
    them is answered as not carried out, with the reason, without reaching the device."""
    device = FlakyDevice(failures=1)
    supervised, metrics, _ = _supervised(device, SetClock(START))

    async def scenario() -> list[Outcome]:
        await supervised.start()
        return await supervised.apply([_cap("gpu-a", 400.0)])

    [outcome] = asyncio.run(scenario())
    assert not supervised.up
    assert [_up(metrics, g) for g in GROUPS] == [0.0, 0.0]
    assert not outcome.ok
    assert outcome.detail == (
        "nvml is down (no driver); the latest setpoint is sent when it comes up"
    )
    assert device.applied == []


def test_retries_double_to_the_cap_then_the_device_is_up_and_resent() -> None:
    """A device failing six starts is tried again after 5, 10, 20, 30, 30 and 30 s of the
    agent's clock; on the seventh it is up, its groups read 1, they are resent once, and
    commands reach it."""
    clock = SleepLog(START)
    device = FlakyDevice(failures=6)
    supervised, metrics, resend = _supervised(device, clock)
    started = time.monotonic()

    async def scenario() -> list[Outcome]:
        await supervised.start()
        await supervised.run()
        return await supervised.apply([_cap("gpu-b", 400.0)])

    [outcome] = asyncio.run(scenario())
    assert time.monotonic() - started < 0.5  # the clock's time, not the wall's
    assert clock.slept == [5.0, 10.0, 20.0, 30.0, 30.0, 30.0]
    assert device.starts == 7
    assert supervised.up
    assert [_up(metrics, g) for g in GROUPS] == [1.0, 1.0]
    assert resend.calls == [(GROUPS, START + timedelta(seconds=125))]
    assert outcome.ok
    assert [c.group for c in device.applied] == ["gpu-b"]


def test_a_device_up_at_once_needs_no_retry_and_closes() -> None:
    """A device that starts is up at once: `run` returns without waiting or resending, and
    closing closes it (one that never started is not closed)."""
    clock = SleepLog(START)
    device = FlakyDevice(failures=0)
    supervised, metrics, resend = _supervised(device, clock)
    never = FlakyDevice(failures=99)
    down, _, _ = _supervised(never, clock)

    async def scenario() -> None:
        await supervised.start()
        await supervised.run()
        await supervised.close()
        await down.start()
        await down.close()

    asyncio.run(scenario())
    assert clock.slept == []
    assert resend.calls == []
    assert _up(metrics, "gpu-a") == 1.0
    assert (device.closed, never.closed) == (1, 0)


def test_an_unexpected_failure_or_a_hung_start_is_down_too() -> None:
    """A start raising a library's own error, or one that does not finish within its time,
    leaves the device down with that reason instead of ending the agent."""
    broken = FlakyDevice(failures=1, error=RuntimeError("libnvidia-ml.so: bad ELF"))
    supervised, _, _ = _supervised(broken, SetClock(START))
    asyncio.run(supervised.start())
    assert supervised.reason == "RuntimeError: libnvidia-ml.so: bad ELF"

    class Hanging(FlakyDevice):
        async def start(self) -> None:
            await asyncio.sleep(30)

    hung, _, _ = _supervised(Hanging(0), SetClock(START), start_timeout_s=0.05)
    started = time.monotonic()
    asyncio.run(hung.start())
    assert time.monotonic() - started < 1.0
    assert not hung.up
    assert hung.reason == "did not start within 0.05 s; still trying"


def test_down_and_up_are_logged_as_events_with_reason_and_fix() -> None:
    """Each failed start logs `device.down` with the groups, the reason, the fix and the next
    wait; the start that works logs `device.up` with how long it was down."""
    device = FlakyDevice(failures=2)
    supervised, _, _ = _supervised(device, SetClock(START))

    async def scenario() -> None:
        await supervised.start()
        await supervised.run()

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    events = [(e["event"], e.get("attempt"), e.get("retry_in_s")) for e in logs]
    assert events == [("device.down", 1, 5.0), ("device.down", 2, 10.0), ("device.up", None, None)]
    down = logs[0]
    assert down["log_level"] == "warning"
    assert (down["actuator"], down["groups"]) == ("nvml", "gpu-a, gpu-b")
    assert (down["reason"], down["fix"]) == ("no driver", "install it")
    assert (logs[-1]["attempts"], logs[-1]["down_s"]) == (3, 15.0)  # 5 s + 10 s


def test_retry_down_runs_only_the_supervised_actuators_behind_a_router() -> None:
    """Behind a router, every supervised device that is down is retried until up; other
    actuators are left alone, and a router without any returns at once."""
    clock = SetClock(START)
    first, _, _ = _supervised(FlakyDevice(failures=1), clock)
    second, _, _ = _supervised(FlakyDevice(failures=3), clock)
    router = RoutingActuator({"gpu-a": first, "gpu-b": second}, RecordingActuator())

    async def scenario() -> None:
        await router.start()
        await retry_down(router)
        await retry_down(RecordingActuator())

    asyncio.run(scenario())
    assert first.up
    assert second.up


def _nvml_site(tmp_path: Path) -> Settings:
    path = tmp_path / "site.toml"
    path.write_text(SITE_TOML + LOCAL_GPUS + f"\n[mqtt]\nport = {free_port()}\n")
    return load_settings(path)


def test_the_latest_setpoint_reaches_the_gpus_when_nvml_comes_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon whose NVML fails its first three starts serves anyway: caps decided meanwhile
    are refused and counted, then the latest one (500 W, not the 400 W before it) is what
    the GPUs get once NVML starts; the miners' gateway commands are unaffected."""
    nvml = FakeNvml(2, failing_inits=3)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)  # what `import pynvml` gives the daemon
    clock = SetClock(START)
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        daemon = Daemon(
            _nvml_site(tmp_path),
            ledger=ledger,
            clock=clock,
            metrics=Metrics(CollectorRegistry()),
        )
        m = daemon.metrics.registry
        router = daemon.actuator
        assert isinstance(router, RoutingActuator)

        async def scenario() -> None:
            await router.start()  # as `run` does before it serves
            assert _up(daemon.metrics, "local") == 0.0
            assert _up(daemon.metrics, "old-01", "mqtt") == 1.0
            commands: list[Command] = [
                GpuCommand("local", 400.0, 1, 0, "price", "plan-1"),
                AsicCommand("old-01", 0, 3000.0, "price", "plan-1"),
            ]
            await daemon.commands.send(commands, plan="plan-1")
            await daemon.commands.send(
                [GpuCommand("local", 500.0, 1, 0, "price", "plan-2")], plan="p2"
            )
            assert nvml.limits == {0: 700_000, 1: 700_000}
            await retry_down(router)

        with structlog.testing.capture_logs() as logs:
            asyncio.run(scenario())
        daemon.recorder.flush()
        said = {e["group"]: e["detail"] for e in logs if e["event"] == "command.failed"}
        assert said["local"].startswith("nvml is down (NVML cannot initialise")
        assert said["old-01"] == "broker not connected; resent on reconnect"  # the gateway's
        assert nvml.inits == 4
        assert nvml.limits == {0: 500_000, 1: 500_000}
        assert _up(daemon.metrics, "local") == 1.0
        failed = {"load": "gpu", "group": "local"}
        assert m.get_sample_value("gridpilot_command_failures_total", failed) == 2.0
        assert ledger.current_setpoints()[("gpu", "local")]["power_cap_watts"] == 500.0


class GatedNvml(FakeNvml):
    """NVML that fails to initialise while `broken` is set (a driver not yet loaded)."""

    def __init__(self) -> None:
        super().__init__(2)
        self.broken = True

    def nvmlInit(self) -> None:  # noqa: N802  # NVML's names
        self.inits += 1
        if self.broken:
            raise RuntimeError("Driver Not Loaded")
        self.initialised = True


def test_agent_serves_with_nvml_down_and_caps_once_it_is_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a real Mosquitto: with NVML failing, the agent comes online, its guard still
    sheds miners over MQTT, and an operator's cap for the NVML group is held; once the driver
    is there the retry starts NVML and the GPUs get that cap, restored on the agent's exit."""
    nvml = GatedNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)

    async def scenario() -> None:
        with LocalBroker() as broker:
            site_settings(tmp_path, broker)  # writes the small site for this broker
            path = tmp_path / "site.toml"
            path.write_text(path.read_text().replace("\n[mqtt]\n", LOCAL_GPUS + "\n[mqtt]\n"))
            settings = load_settings(path)
            # 50 times the wall: the retries after 5, 10, 20 s come within 0.1, 0.2, 0.4 s.
            clock = ScaledClock(50.0)
            async with observing(broker) as site, running(settings, clock=clock) as daemon:
                m = daemon.metrics.registry
                labels = {"group": "local", "actuator": "nvml"}
                await site.wait_for(lambda: site.on(f"{PREFIX}/status") == [b"online"])
                assert m.get_sample_value("gridpilot_device_up", labels) == 0.0
                await site.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 300e3}))
                await site.wait_for(lambda: daemon.guard.actions >= 1)
                await site.wait_for(lambda: any("/cmd/asic/" in t for t in site.commands()))
                until = (clock.now() + timedelta(days=1)).isoformat()
                cap = {"mode": "cap", "power_cap_watts": 400, "until": until, "by": "test"}
                await site.publish(f"{PREFIX}/override/local", json.dumps(cap))
                failed = {"load": "gpu", "group": "local"}
                await site.wait_for(
                    lambda: (
                        (m.get_sample_value("gridpilot_command_failures_total", failed) or 0) >= 1
                    )
                )
                assert nvml.limits == {0: 700_000, 1: 700_000}
                nvml.broken = False
                await site.wait_for(lambda: nvml.limits == {0: 400_000, 1: 400_000})
                assert m.get_sample_value("gridpilot_device_up", labels) == 1.0
        assert nvml.limits == {0: 700_000, 1: 700_000}  # restore_gpu_defaults_on_exit

    asyncio.run(scenario())


def test_every_group_has_a_device_up_series_from_the_start(tmp_path: Path) -> None:
    """Each group of the site file has its gridpilot_device_up series, labelled with its
    actuator kind, before anything starts (1: nothing has failed)."""
    clock = SetClock(START)
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        daemon = Daemon(
            _nvml_site(tmp_path),
            ledger=ledger,
            clock=clock,
            metrics=Metrics(CollectorRegistry()),
            actuator=RecordingActuator(),
        )
        samples = {
            (s.labels["group"], s.labels["actuator"]): s.value
            for metric in daemon.metrics.device_up.collect()
            for s in metric.samples
        }
    assert samples[("h100", "mqtt")] == 1.0
    assert samples[("local", "nvml")] == 1.0
    assert len(samples) == 8  # six miner containers and two GPU groups
