"""GPU actuators on the host the agent runs on: power caps through NVML, pauses through commands.

`NvmlActuator` caps the GPUs of a group (indices on this host) through nvidia-ml-py: the cap is
clamped into what each device allows (`nvmlDeviceGetPowerManagementLimitConstraints`) and
confirmed by reading the enforced limit back. Setting a limit needs root (or CAP_SYS_ADMIN);
without it NVML says NO_PERMISSION and the outcome says so. On close it can restore each
device's default limit.

`CommandActuator` pauses and resumes a group's jobs by running configured commands (Slurm's
`scontrol suspend`/`resume`, `kubectl patch job ... suspend`), without a shell, each under a
timeout.

Both report per group and never raise for a device's or a command's failure.
"""

from __future__ import annotations

import asyncio
import importlib
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gridpilot.adapters.actuation import AsicCommand, Command, GpuCommand, Outcome

# NVML reports power in milliwatts.
MILLIWATTS_PER_WATT = 1_000
# The enforced limit may differ from the one set by the device's granularity.
CONFIRM_TOLERANCE_W = 1.0
NVML_ERROR_NO_PERMISSION = 4  # nvml.h: NVML_ERROR_NO_PERMISSION


class Nvml(Protocol):
    """The part of `pynvml` (nvidia-ml-py) this actuator uses; tests pass a fake."""

    def nvmlInit(self) -> None: ...  # noqa: N802  # NVML's own names
    def nvmlShutdown(self) -> None: ...  # noqa: N802
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


class NvmlActuator:
    """Caps the local GPUs of each group: `groups` maps a group to its GPU indices here."""

    def __init__(
        self,
        nvml: Nvml,
        groups: Mapping[str, Sequence[int]],
        *,
        restore_defaults_on_close: bool = True,
    ) -> None:
        self._nvml = nvml
        self._groups = {name: tuple(indices) for name, indices in groups.items()}
        self._restore = restore_defaults_on_close
        self._started = False

    async def start(self) -> None:
        await asyncio.to_thread(self._nvml.nvmlInit)
        self._started = True

    async def close(self) -> None:
        if not self._started:
            return
        if self._restore:
            await asyncio.to_thread(self._restore_defaults)
        await asyncio.to_thread(self._nvml.nvmlShutdown)
        self._started = False

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        outcomes = []
        for command in commands:
            if not isinstance(command, GpuCommand) or command.group not in self._groups:
                outcomes.append(Outcome(command.group, False, "not a GPU group of this host"))
                continue
            outcomes.append(await asyncio.to_thread(self._cap_group, command))
        return outcomes

    def _cap_group(self, command: GpuCommand) -> Outcome:
        nvml = self._nvml
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

    def _restore_defaults(self) -> None:
        for indices in self._groups.values():
            for index in indices:
                try:
                    handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
                    default = self._nvml.nvmlDeviceGetPowerManagementDefaultLimit(handle)
                    self._nvml.nvmlDeviceSetPowerManagementLimit(handle, default)
                except Exception:  # noqa: S112  # best effort on the way out
                    continue


def _nvml_message(error: Exception) -> str:
    if getattr(error, "value", None) == NVML_ERROR_NO_PERMISSION:
        return (
            "no permission to set the power limit: NVML needs root (or CAP_SYS_ADMIN) for"
            " that; run the agent with that capability or leave this group to a gateway"
        )
    return f"{type(error).__name__}: {error}"


@dataclass(frozen=True, slots=True)
class JobCommands:
    """How to pause and resume one group's jobs. Arguments may use `{group}` and `{nodes}`."""

    pause: tuple[str, ...]
    resume: tuple[str, ...]
    timeout_s: float = 30.0


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
