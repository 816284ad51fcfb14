"""GPU actuators: NVML power caps on a fake NVML, job pauses through real commands."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from gridpilot.adapters.actuation import (
    AsicCommand,
    Command,
    DeviceUnavailableError,
    GpuCommand,
    Outcome,
)
from gridpilot.adapters.gpus import (
    CommandActuator,
    JobCommands,
    Nvml,
    NvmlActuator,
    check_commands,
    check_nvml,
    run_command,
)


class NoPermissionError(Exception):
    value = 4  # NVML_ERROR_NO_PERMISSION


class DriverNotLoadedError(Exception):
    value = 9  # NVML_ERROR_DRIVER_NOT_LOADED


class FakeNvml:
    """Devices with a 200-700 W range and a 700 W default; the enforced limit follows the set
    one unless `stuck` (a device that ignores it) or `root` is False. The first
    `failing_inits` initialisations fail as NVML does without a loaded driver."""

    def __init__(
        self,
        count: int = 2,
        *,
        root: bool = True,
        stuck: frozenset[int] = frozenset(),
        failing_inits: int = 0,
    ) -> None:
        self.limits = dict.fromkeys(range(count), 700_000)
        self.root = root
        self.stuck = stuck
        self.failing_inits = failing_inits
        self.inits = 0
        self.initialised = False

    def nvmlInit(self) -> None:  # noqa: N802  # NVML's names
        self.inits += 1
        if self.inits <= self.failing_inits:
            raise DriverNotLoadedError("Driver Not Loaded")
        self.initialised = True

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.limits)

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


def _loader(nvml: FakeNvml) -> Callable[[], Nvml]:
    def load() -> Nvml:
        return nvml

    return load


def _apply(
    nvml: FakeNvml, groups: Mapping[str, Sequence[int]], commands: list[Command]
) -> list[Outcome]:
    """Start an NVML actuator on `nvml` and apply `commands`."""
    actuator = NvmlActuator(groups, nvml=_loader(nvml))

    async def scenario() -> list[Outcome]:
        await actuator.start()
        return await actuator.apply(commands)

    return asyncio.run(scenario())


def test_nvml_caps_confirms_and_restores() -> None:
    """A cap is set on every GPU of the group and confirmed; no curtailment means the default
    limit; closing restores the defaults."""
    nvml = FakeNvml()
    actuator = NvmlActuator({"h100": [0, 1]}, nvml=_loader(nvml))

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
    [outcome] = _apply(nvml, {"h100": [0]}, [_cap(100.0)])
    assert outcome.ok
    assert nvml.limits[0] == 200_000
    assert "outside the device's 200-700 W" in outcome.detail


def test_nvml_without_root_fails_with_the_reason() -> None:
    """Without permission the outcome fails and says that NVML needs root for this."""
    [outcome] = _apply(FakeNvml(1, root=False), {"h100": [0]}, [_cap(400)])
    assert not outcome.ok
    assert "needs root" in outcome.detail


def test_nvml_flags_a_device_that_does_not_enforce_the_cap() -> None:
    """A device whose enforced limit stays where it was fails the group, naming the GPU."""
    nvml = FakeNvml(2, stuck=frozenset({1}))
    [outcome] = _apply(nvml, {"h100": [0, 1]}, [_cap(400)])
    assert not outcome.ok
    assert "GPU 1: set 400 W but 700 W is enforced" in outcome.detail


def test_nvml_refuses_groups_it_does_not_hold() -> None:
    """Miners and groups on other hosts are reported, not touched."""
    miners = AsicCommand("s21-01", 0, 3500.0, "price", "plan-1")
    outcomes = _apply(FakeNvml(1), {"h100": [0]}, [miners, GpuCommand("other", 400, 1, 0, "", "p")])
    assert [o.ok for o in outcomes] == [False, False]


def test_nvml_commands_before_start_are_refused_untouched() -> None:
    """Until NVML has started, a cap is reported as not carried out and no device is set."""
    nvml = FakeNvml(1)
    [outcome] = asyncio.run(NvmlActuator({"h100": [0]}, nvml=_loader(nvml)).apply([_cap(400)]))
    assert not outcome.ok
    assert outcome.detail == "NVML is not started"
    assert nvml.limits == {0: 700_000}


def test_nvml_start_names_gpus_this_host_lacks_and_shuts_nvml() -> None:
    """A group listing a GPU index the host does not have fails the start, naming the group,
    the index and what the host has; NVML is left shut."""
    nvml = FakeNvml(2)
    with pytest.raises(DeviceUnavailableError) as raised:
        asyncio.run(NvmlActuator({"h100": [0, 3]}, nvml=_loader(nvml)).start())
    assert raised.value.reason == "this host has GPUs 0-1: h100 lists GPU 3"
    assert "correct `gpus`" in raised.value.fix
    assert nvml.inits == 1
    assert not nvml.initialised


def test_nvml_start_without_a_driver_points_at_the_driver_and_the_drop_in() -> None:
    """NVML that cannot initialise fails the start with the driver and the systemd drop-in as
    the fix; the same NVML starts once the driver is there."""
    nvml = FakeNvml(1, failing_inits=1)
    actuator = NvmlActuator({"h100": [0]}, nvml=_loader(nvml))
    with pytest.raises(DeviceUnavailableError) as raised:
        asyncio.run(actuator.start())
    assert raised.value.actuator == "nvml"
    assert "driver is not loaded" in raised.value.reason
    assert "DriverNotLoadedError" in raised.value.reason
    assert "deploy/systemd/nvidia.conf" in raised.value.fix
    asyncio.run(actuator.start())
    assert nvml.initialised


def test_nvml_check_without_the_binding_says_how_to_install_it() -> None:
    """A host without nvidia-ml-py is told to install the devices extra."""

    def missing() -> Nvml:
        raise ModuleNotFoundError("No module named 'pynvml'")

    with pytest.raises(DeviceUnavailableError) as raised:
        check_nvml({"h100": [0]}, missing)
    assert "pynvml" in raised.value.reason
    assert "pip install 'gridpilot[devices]'" in raised.value.fix


def test_nvml_check_changes_nothing() -> None:
    """check_nvml on a working host initialises, counts and shuts NVML, setting no limit."""
    nvml = FakeNvml(2)
    check_nvml({"h100": [0, 1]}, _loader(nvml))
    assert nvml.inits == 1
    assert not nvml.initialised
    assert nvml.limits == {0: 700_000, 1: 700_000}


def test_command_check_names_a_program_not_on_path() -> None:
    """A job command whose program is not installed is named; an installed one passes."""
    check_commands(JobCommands((sys.executable, "-c", "0"), (sys.executable, "-c", "0")))
    with pytest.raises(DeviceUnavailableError, match="no-such-scontrol is not an executable"):
        check_commands(JobCommands(("no-such-scontrol", "suspend"), (sys.executable,)))


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
