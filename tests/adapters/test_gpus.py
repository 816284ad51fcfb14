"""GPU actuators: NVML power caps on a fake NVML, job pauses through real commands."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from gridpilot.adapters.actuation import AsicCommand, GpuCommand
from gridpilot.adapters.gpus import CommandActuator, JobCommands, NvmlActuator, run_command


class NoPermissionError(Exception):
    value = 4  # NVML_ERROR_NO_PERMISSION


class FakeNvml:
    """Devices with a 200-700 W range and a 700 W default; the enforced limit follows the set
    one unless `stuck` (a device that ignores it) or `root` is False."""

    def __init__(
        self, count: int = 2, *, root: bool = True, stuck: frozenset[int] = frozenset()
    ) -> None:
        self.limits = dict.fromkeys(range(count), 700_000)
        self.root = root
        self.stuck = stuck
        self.initialised = False

    def nvmlInit(self) -> None:  # noqa: N802  # NVML's names
        self.initialised = True

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.initialised = False

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:  # noqa: N802
        return index

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: Any) -> tuple[int, int]:  # noqa: N802
        return 200_000, 700_000

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: Any) -> int:  # noqa: N802
        return 700_000

    def nvmlDeviceSetPowerManagementLimit(self, handle: Any, milliwatts: int) -> None:  # noqa: N802
        if not self.root:
            raise NoPermissionError("Insufficient Permissions")
        if handle not in self.stuck:
            self.limits[handle] = milliwatts

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:  # noqa: N802
        return self.limits[handle]


def _cap(watts: float, capped: int = 1, paused: int = 0) -> GpuCommand:
    return GpuCommand("h100", watts, capped, paused, "price", "plan-1")


def test_nvml_caps_confirms_and_restores() -> None:
    """A cap is set on every GPU of the group and confirmed; no curtailment means the default
    limit; closing restores the defaults."""
    nvml = FakeNvml()
    actuator = NvmlActuator(nvml, {"h100": [0, 1]})

    async def scenario() -> None:
        await actuator.start()
        [outcome] = await actuator.apply([_cap(420.0)])
        assert outcome.ok, outcome.detail
        assert nvml.limits == {0: 420_000, 1: 420_000}
        [outcome] = await actuator.apply([_cap(700.0, capped=0)])
        assert outcome.ok
        assert nvml.limits == {0: 700_000, 1: 700_000}
        await actuator.apply([_cap(300.0)])
        await actuator.close()

    asyncio.run(scenario())
    assert nvml.limits == {0: 700_000, 1: 700_000}
    assert not nvml.initialised


def test_nvml_clamps_into_the_device_range_and_says_so() -> None:
    """A cap below what the device allows is set at its minimum, noted, and still a success."""
    nvml = FakeNvml(1)
    [outcome] = asyncio.run(NvmlActuator(nvml, {"h100": [0]}).apply([_cap(100.0)]))
    assert outcome.ok
    assert nvml.limits[0] == 200_000
    assert "outside the device's 200-700 W" in outcome.detail


def test_nvml_without_root_fails_with_the_reason() -> None:
    """Without permission the outcome fails and says that NVML needs root for this."""
    [outcome] = asyncio.run(NvmlActuator(FakeNvml(1, root=False), {"h100": [0]}).apply([_cap(400)]))
    assert not outcome.ok
    assert "needs root" in outcome.detail


def test_nvml_flags_a_device_that_does_not_enforce_the_cap() -> None:
    """A device whose enforced limit stays where it was fails the group, naming the GPU."""
    nvml = FakeNvml(2, stuck=frozenset({1}))
    [outcome] = asyncio.run(NvmlActuator(nvml, {"h100": [0, 1]}).apply([_cap(400)]))
    assert not outcome.ok
    assert "GPU 1: set 400 W but 700 W is enforced" in outcome.detail


def test_nvml_refuses_groups_it_does_not_hold() -> None:
    """Miners and groups on other hosts are reported, not touched."""
    actuator = NvmlActuator(FakeNvml(1), {"h100": [0]})
    miners = AsicCommand("s21-01", 0, 3500.0, "price", "plan-1")
    outcomes = asyncio.run(actuator.apply([miners, GpuCommand("other", 400, 1, 0, "", "p")]))
    assert [o.ok for o in outcomes] == [False, False]


def _script(tmp_path: Path, body: str) -> tuple[str, ...]:
    path = tmp_path / "job.py"
    path.write_text(body)
    return (sys.executable, str(path))


def test_commands_pause_and_resume_once_each(tmp_path: Path) -> None:
    """Pausing nodes runs the pause command with the group and node count; pausing again does
    not repeat it; no paused nodes runs the resume command."""
    log = tmp_path / "log.txt"
    script = _script(
        tmp_path,
        f"import sys\nopen({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n",
    )
    jobs = JobCommands((*script, "suspend", "{group}", "{nodes}"), (*script, "resume", "{group}"))
    actuator = CommandActuator({"h100": jobs})

    async def scenario() -> None:
        assert [o.ok for o in await actuator.apply([_cap(700, 0, 5)])] == [True]
        assert [o.detail for o in await actuator.apply([_cap(700, 0, 5)])] == ["already paused"]
        assert [o.ok for o in await actuator.apply([_cap(700, 0, 0)])] == [True]

    asyncio.run(scenario())
    assert log.read_text().splitlines() == ["suspend h100 5", "resume h100"]


def test_command_failures_and_timeouts_are_reported(tmp_path: Path) -> None:
    """A command that fails says its exit code and error; one that hangs is killed at its
    timeout; one that does not exist is named; the group is then not taken as paused."""
    failing = _script(tmp_path, "import sys\nsys.stderr.write('job 42 not found')\nsys.exit(1)\n")

    async def scenario() -> None:
        ok, detail = await run_command([*failing], 10)
        assert not ok
        assert "exited with 1: job 42 not found" in detail
        ok, detail = await run_command([sys.executable, "-c", "import time; time.sleep(30)"], 0.5)
        assert not ok
        assert "did not finish in 0.5 s" in detail
        ok, detail = await run_command(["/nonexistent/scontrol", "suspend"], 5)
        assert not ok
        assert "cannot run /nonexistent/scontrol" in detail
        actuator = CommandActuator({"h100": JobCommands(failing, failing)})
        [outcome] = await actuator.apply([_cap(700, 0, 2)])
        assert not outcome.ok
        [outcome] = await actuator.apply([AsicCommand("s21", 0, 1.0, "", "")])
        assert not outcome.ok

    asyncio.run(scenario())
