"""GPU actuators on the host the agent runs on: power caps through NVML, pauses through commands.

`NvmlActuator` caps the GPUs of a group (indices on this host) through nvidia-ml-py: the cap is
clamped into what each device allows (`nvmlDeviceGetPowerManagementLimitConstraints`) and
confirmed by reading the enforced limit back. Setting a limit needs root (or CAP_SYS_ADMIN);
without it NVML says NO_PERMISSION and the outcome says so. On close it can restore each
device's default limit. Its `start` loads and initialises NVML and checks that every group's
GPUs exist here; when any of that fails it raises `DeviceUnavailableError` with the fix
(`check_nvml` is the same check for `check-config`, changing nothing).

`CommandActuator` pauses and resumes a group's jobs by running configured commands (Slurm's
`scontrol suspend`/`resume`, `kubectl patch job ... suspend`), without a shell, each under a
timeout.

Both report per group and never raise for a device's or a command's failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import shlex
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from gridpilot.adapters.actuation import (
    INSTALL_DEVICES,
    AsicCommand,
    Command,
    DeviceUnavailableError,
    GpuCommand,
    Outcome,
)

_log = structlog.get_logger("gridpilot.gpus")

# NVML reports power in milliwatts.
MILLIWATTS_PER_WATT = 1_000
# The enforced limit may differ from the one set by the device's granularity.
CONFIRM_TOLERANCE_W = 1.0
# nvml.h's return codes, as NVMLError.value.
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
# What hides a working driver from a service: the shipped unit's PrivateDevices=yes.
NVIDIA_DROP_IN = (
    "under systemd, PrivateDevices=yes hides /dev/nvidia*: install deploy/systemd/nvidia.conf as"
    " /etc/systemd/system/gridpilot.service.d/nvidia.conf (see the README)"
)


class Nvml(Protocol):
    """The part of `pynvml` (nvidia-ml-py) this actuator uses; tests pass a fake."""

    def nvmlInit(self) -> None: ...  # noqa: N802  # NVML's own names
    def nvmlShutdown(self) -> None: ...  # noqa: N802
    def nvmlDeviceGetCount(self) -> int: ...  # noqa: N802
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...  # noqa: N802
    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: Any) -> tuple[int, int]: ...  # noqa: N802
    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: Any) -> int: ...  # noqa: N802
    def nvmlDeviceSetPowerManagementLimit(self, handle: Any, milliwatts: int) -> None: ...  # noqa: N802
    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int: ...  # noqa: N802


def load_nvml() -> Nvml:
    """The real NVML binding (the `devices` extra installs nvidia-ml-py)."""
    module: Any = importlib.import_module("pynvml")  # only hosts with GPUs need it
    nvml: Nvml = module
    return nvml


def open_nvml(load: Callable[[], Nvml], groups: Mapping[str, Sequence[int]]) -> Nvml:
    """NVML from `load`, initialised, with every GPU `groups` lists present on this host.
    Blocking. Raises `DeviceUnavailableError` saying what is missing, leaving NVML shut."""
    try:
        nvml = load()
    except ImportError as error:
        raise DeviceUnavailableError(
            "nvml", f"nvidia-ml-py (pynvml) cannot be imported: {error}", INSTALL_DEVICES
        ) from error
    try:
        nvml.nvmlInit()
    except Exception as error:  # NVMLError and its many subclasses
        raise _init_failure(error) from error
    try:
        count = nvml.nvmlDeviceGetCount()
    except Exception as error:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
        raise DeviceUnavailableError(
            "nvml",
            f"NVML cannot count this host's GPUs ({type(error).__name__}: {error})",
            NVIDIA_DROP_IN,
        ) from error
    absent = {name: [i for i in indices if not 0 <= i < count] for name, indices in groups.items()}
    absent = {name: indices for name, indices in absent.items() if indices}
    if absent:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
        has = f"GPUs 0-{count - 1}" if count > 1 else ("GPU 0" if count else "no GPU")
        listed = "; ".join(
            f"{name} lists GPU {', '.join(str(i) for i in indices)}"
            for name, indices in absent.items()
        )
        raise DeviceUnavailableError(
            "nvml",
            f"this host has {has}: {listed}",
            "correct `gpus` in the site file, or run the agent on the host with these GPUs",
        )
    return nvml


def check_nvml(groups: Mapping[str, Sequence[int]], load: Callable[[], Nvml] = load_nvml) -> None:
    """Whether NVML could drive `groups` here: raises `DeviceUnavailableError` as `start` would.
    Initialises NVML, counts the GPUs and shuts it again; sets nothing."""
    nvml = open_nvml(load, groups)
    with contextlib.suppress(Exception):
        nvml.nvmlShutdown()


def _init_failure(error: Exception) -> DeviceUnavailableError:
    code = getattr(error, "value", None)
    said = f"{type(error).__name__}: {error}"
    if code == NVML_ERROR_LIBRARY_NOT_FOUND:
        reason = f"NVML cannot initialise: no NVIDIA driver library (libnvidia-ml.so.1) ({said})"
        fix = "install the NVIDIA driver (`nvidia-smi` lists the GPUs once it works)"
    elif code == NVML_ERROR_DRIVER_NOT_LOADED:
        reason = f"NVML cannot initialise: the NVIDIA driver is not loaded or hidden ({said})"
        fix = f"load the NVIDIA driver (`nvidia-smi` lists the GPUs); {NVIDIA_DROP_IN}"
    elif code == NVML_ERROR_NO_PERMISSION:
        reason = f"NVML cannot initialise: it may not open /dev/nvidia* ({said})"
        fix = NVIDIA_DROP_IN
    else:
        reason = f"NVML cannot initialise ({said})"
        fix = f"check the driver with `nvidia-smi`; {NVIDIA_DROP_IN}"
    return DeviceUnavailableError("nvml", reason, fix)


class NvmlActuator:
    """Caps the local GPUs of each group: `groups` maps a group to its GPU indices here. NVML
    comes from `nvml` (the real binding by default; tests pass a fake) when it starts."""

    def __init__(
        self,
        groups: Mapping[str, Sequence[int]],
        *,
        nvml: Callable[[], Nvml] = load_nvml,
        restore_defaults_on_close: bool = True,
    ) -> None:
        self._load = nvml
        self._groups = {name: tuple(indices) for name, indices in groups.items()}
        self._restore = restore_defaults_on_close
        self._nvml: Nvml | None = None

    async def start(self) -> None:
        """Load and initialise NVML and check that the groups' GPUs are here; raises
        `DeviceUnavailableError` if not."""
        if self._nvml is None:
            self._nvml = await asyncio.to_thread(open_nvml, self._load, self._groups)

    async def close(self) -> None:
        nvml, self._nvml = self._nvml, None
        if nvml is None:
            return
        if self._restore:
            await asyncio.to_thread(self._restore_defaults, nvml)
        await asyncio.to_thread(nvml.nvmlShutdown)

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        outcomes = []
        nvml = self._nvml
        for command in commands:
            if not isinstance(command, GpuCommand) or command.group not in self._groups:
                outcomes.append(Outcome(command.group, False, "not a GPU group of this host"))
            elif nvml is None:
                outcomes.append(Outcome(command.group, False, "NVML is not started"))
            else:
                outcomes.append(await asyncio.to_thread(self._cap_group, nvml, command))
        return outcomes

    def _cap_group(self, nvml: Nvml, command: GpuCommand) -> Outcome:
        failures: list[str] = []
        notes: list[str] = []
        for index in self._groups[command.group]:
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                low, high = nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
                if command.capped_nodes or command.paused_nodes:
                    wanted = round(command.power_cap_watts * MILLIWATTS_PER_WATT)
                else:
                    wanted = nvml.nvmlDeviceGetPowerManagementDefaultLimit(handle)
                target = min(max(wanted, low), high)
                nvml.nvmlDeviceSetPowerManagementLimit(handle, target)
                enforced = nvml.nvmlDeviceGetEnforcedPowerLimit(handle)
            except Exception as error:  # NVMLError and its many subclasses
                failures.append(f"GPU {index}: {_nvml_message(error)}")
                continue
            if abs(enforced - target) > CONFIRM_TOLERANCE_W * MILLIWATTS_PER_WATT:
                failures.append(
                    f"GPU {index}: set {target / 1e3:.0f} W but {enforced / 1e3:.0f} W is enforced"
                )
            elif target != wanted:
                notes.append(
                    f"GPU {index}: {wanted / 1e3:.0f} W is outside the device's"
                    f" {low / 1e3:.0f}-{high / 1e3:.0f} W; set {target / 1e3:.0f} W"
                )
        if command.paused_nodes:
            notes.append("pausing is the job actuator's work, not NVML's")
        return Outcome(command.group, not failures, "; ".join(failures + notes))

    def _restore_defaults(self, nvml: Nvml) -> None:
        for indices in self._groups.values():
            for index in indices:
                try:
                    handle = nvml.nvmlDeviceGetHandleByIndex(index)
                    default = nvml.nvmlDeviceGetPowerManagementDefaultLimit(handle)
                    nvml.nvmlDeviceSetPowerManagementLimit(handle, default)
                except Exception as error:  # best effort on the way out: log, go on
                    _log.warning(
                        "gpu.default_not_restored", index=index, error=_nvml_message(error)
                    )


def _nvml_message(error: Exception) -> str:
    if getattr(error, "value", None) == NVML_ERROR_NO_PERMISSION:
        return (
            "no permission to set the power limit: NVML needs root (or CAP_SYS_ADMIN) for"
            " that; deploy/systemd/nvidia.conf gives the service the capability, or leave"
            " this group to a gateway"
        )
    return f"{type(error).__name__}: {error}"


@dataclass(frozen=True, slots=True)
class JobCommands:
    """How to pause and resume one group's jobs. Arguments may use `{group}` and `{nodes}`."""

    pause: tuple[str, ...]
    resume: tuple[str, ...]
    timeout_s: float = 30.0


def check_commands(jobs: JobCommands) -> None:
    """Whether the programs `jobs` runs are on this host's PATH (or are executable paths):
    raises `DeviceUnavailableError` naming the first that is not. For `check-config`; the
    actuator itself reports a missing program per command."""
    for argv in (jobs.pause, jobs.resume):
        if argv and shutil.which(argv[0]) is None:
            raise DeviceUnavailableError(
                "command",
                f"{argv[0]} is not an executable on this host's PATH",
                "install it here, or give its full path in pause_command/resume_command",
            )


class CommandActuator:
    """Pauses a GPU group's jobs when its command pauses nodes, resumes them when it pauses
    none; a cap alone is not its business (reported as such)."""

    def __init__(self, groups: Mapping[str, JobCommands]) -> None:
        self._groups = dict(groups)
        self._paused: dict[str, bool] = {}

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._one(c) for c in commands)))

    async def _one(self, command: Command) -> Outcome:
        if isinstance(command, AsicCommand) or command.group not in self._groups:
            return Outcome(command.group, False, "no job commands configured for this group")
        jobs = self._groups[command.group]
        pause = command.paused_nodes > 0
        if self._paused.get(command.group) == pause:
            return Outcome(command.group, True, "already " + ("paused" if pause else "running"))
        argv = [
            part.format(group=command.group, nodes=command.paused_nodes)
            for part in (jobs.pause if pause else jobs.resume)
        ]
        ok, detail = await run_command(argv, jobs.timeout_s)
        if ok:
            self._paused[command.group] = pause
        return Outcome(command.group, ok, detail)


async def run_command(argv: Sequence[str], timeout_s: float) -> tuple[bool, str]:
    """Run `argv` without a shell; (succeeded, what to tell the operator)."""
    shown = shlex.join(argv)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as error:
        return False, f"cannot run {shown}: {error.strerror or error}"
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        return False, f"{shown} did not finish in {timeout_s:g} s and was killed"
    if process.returncode != 0:
        said = (err or out).decode(errors="replace").strip()[-300:]
        return False, f"{shown} exited with {process.returncode}: {said}"
    return True, ""
