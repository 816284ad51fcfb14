"""The plant as commanded: what each group was last told, and what that draws.

The daemon's planner and guard read the plant from here (the optimizer's `PlantState` is built
from it), the ledger restores it after a restart, and the metrics report it. Draws are at the
meter and at nominal power: what the commands ask for, not a measurement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from gridpilot.adapters.actuation import AsicCommand, Command, GpuCommand
from gridpilot.adapters.payloads import Override
from gridpilot.optimizer.lockout import SleepRecord
from gridpilot.optimizer.problem import AsicGroup, GpuGroup

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class GroupPower:
    """One group's commanded draw and the draw its command holds off."""

    name: str
    load: str  # "asic" or "gpu"
    watts: float
    held_watts: float  # below full power, because of `reason`
    reason: str


@dataclass(slots=True)
class Setpoints:
    """Per group: miners awake; GPU cap level, capped and paused nodes; the last command."""

    asic: tuple[AsicGroup, ...]
    gpu: tuple[GpuGroup, ...]
    asic_index: dict[str, int] = field(init=False)
    gpu_index: dict[str, int] = field(init=False)
    units_on: IntArray = field(init=False)
    gpu_level: IntArray = field(init=False)
    gpu_capped: IntArray = field(init=False)
    gpu_paused: IntArray = field(init=False)
    commanded: dict[tuple[str, str], Command] = field(init=False)
    # When the sleeping miners went to sleep, for their minimum off time across plans.
    sleeps: SleepRecord = field(init=False)

    def __post_init__(self) -> None:
        self.asic_index = {g.name: i for i, g in enumerate(self.asic)}
        self.gpu_index = {g.name: i for i, g in enumerate(self.gpu)}
        # Until told otherwise, everything runs: what a site does without an agent.
        self.units_on = np.array([g.units for g in self.asic], dtype=np.int64)
        self.gpu_level = np.zeros(len(self.gpu), dtype=np.int64)
        self.gpu_capped = np.zeros(len(self.gpu), dtype=np.int64)
        self.gpu_paused = np.zeros(len(self.gpu), dtype=np.int64)
        self.commanded = {}
        self.sleeps = SleepRecord([g.units for g in self.asic], [g.min_off_s for g in self.asic])

    def knows(self, group: str) -> bool:
        return group in self.asic_index or group in self.gpu_index

    def remember(self, command: Command, at_s: float | None = None) -> None:
        """Take `command` as the group's setpoint; a miner command sent at `at_s` (epoch
        seconds) also records the miners it puts to sleep (none for a command restored from
        the ledger: when it was sent is not known here)."""
        if isinstance(command, AsicCommand):
            i = self.asic_index[command.group]
            if at_s is not None:
                wanted = self.units_on.copy()
                wanted[i] = command.units_on
                # Forced: the planner keeps the locks; an operator's override may wake them.
                self.sleeps.change(self.units_on, wanted, at_s, force=True)
            self.units_on[i] = command.units_on
            self.commanded["asic", command.group] = command
        else:
            i = self.gpu_index[command.group]
            self.gpu_level[i] = level_of(self.gpu[i], command.power_cap_watts)
            self.gpu_capped[i] = command.capped_nodes
            self.gpu_paused[i] = command.paused_nodes
            self.commanded["gpu", command.group] = command

    def differs(self, command: Command) -> bool:
        """Whether `command` asks for something other than the group's last command."""
        key = ("asic" if isinstance(command, AsicCommand) else "gpu", command.group)
        known = self.commanded.get(key)
        if isinstance(command, AsicCommand) and isinstance(known, AsicCommand):
            return (known.units_on, known.watts_per_unit) != (
                command.units_on,
                command.watts_per_unit,
            )
        if isinstance(command, GpuCommand) and isinstance(known, GpuCommand):
            return (known.power_cap_watts, known.capped_nodes, known.paused_nodes) != (
                command.power_cap_watts,
                command.capped_nodes,
                command.paused_nodes,
            )
        return True

    def curtailed_nodes(self, i: int) -> int:
        return int(self.gpu_capped[i] + self.gpu_paused[i])

    def asic_watts_per_unit(self, i: int) -> float:
        """The per-miner power target last commanded (nominal until one was)."""
        known = self.commanded.get(("asic", self.asic[i].name))
        if isinstance(known, AsicCommand):
            return known.watts_per_unit
        return self.asic[i].watts_per_unit

    def override_command(self, override: Override) -> Command:
        """The command that holds a group as an operator's override says."""
        reason = f"override by {override.by or 'operator'} until {override.until.isoformat()}"
        if override.group in self.asic_index:
            group = self.asic[self.asic_index[override.group]]
            units = {"awake": group.units, "asleep": 0}.get(override.mode, override.units_on or 0)
            return AsicCommand(group.name, units, group.watts_per_unit, reason, "override")
        gpu = self.gpu[self.gpu_index[override.group]]
        full = gpu.cap_levels[0].watts_per_gpu
        if override.mode == "asleep":
            return GpuCommand(gpu.name, full, 0, gpu.nodes, reason, "override")
        if override.mode == "awake":
            return GpuCommand(gpu.name, full, 0, 0, reason, "override")
        level = level_of(gpu, override.power_cap_watts or 0.0)
        capped = 0 if level == 0 else gpu.nodes
        return GpuCommand(
            gpu.name, gpu.cap_levels[level].watts_per_gpu, capped, 0, reason, "override"
        )

    def command_watts(self, command: Command) -> float:
        """What a group draws at the meter under `command`, at nominal power."""
        if isinstance(command, AsicCommand):
            asic = self.asic[self.asic_index[command.group]]
            return command.units_on * command.watts_per_unit * asic.overhead_factor
        gpu = self.gpu[self.gpu_index[command.group]]
        return _gpu_watts(
            gpu,
            level_of(gpu, command.power_cap_watts),
            command.capped_nodes,
            command.paused_nodes,
        )

    def power(self) -> list[GroupPower]:
        """Each group's commanded draw and what its command holds off, with the reason."""
        return [self.asic_power(i) for i in range(len(self.asic))] + [
            self.gpu_power(i) for i in range(len(self.gpu))
        ]

    def asic_power(self, i: int) -> GroupPower:
        group = self.asic[i]
        unit_watts = group.watts_per_unit * group.overhead_factor
        on = float(self.units_on[i])
        command = self.commanded.get(("asic", group.name))
        return GroupPower(
            group.name,
            "asic",
            on * unit_watts,
            (group.units - on) * unit_watts if command is not None else 0.0,
            command.reason if command is not None else "",
        )

    def gpu_power(self, i: int) -> GroupPower:
        gpu = self.gpu[i]
        watts = _gpu_watts(
            gpu, int(self.gpu_level[i]), int(self.gpu_capped[i]), int(self.gpu_paused[i])
        )
        command = self.commanded.get(("gpu", gpu.name))
        full = gpu.nodes * gpu.full_node_watts * gpu.overhead_factor
        return GroupPower(
            gpu.name,
            "gpu",
            watts,
            full - watts if command is not None and self.curtailed_nodes(i) else 0.0,
            command.reason if command is not None else "",
        )


def _gpu_watts(gpu: GpuGroup, level: int, capped: int, paused: int) -> float:
    running = gpu.nodes - capped - paused
    watts = (
        running * gpu.full_node_watts
        + capped * gpu.node_watts(level)
        + paused * gpu.paused_node_watts
    )
    return watts * gpu.overhead_factor


def level_of(group: GpuGroup, watts_per_gpu: float) -> int:
    """The highest cap level not above `watts_per_gpu` (the deepest, when all are above)."""
    for level, cap in enumerate(group.cap_levels):
        if cap.watts_per_gpu <= watts_per_gpu + 1e-9:
            return level
    return len(group.cap_levels) - 1


def command_from_payload(kind: str, group: str, payload: Mapping[str, Any]) -> Command | None:
    """A command as the ledger stored it, or None if it no longer reads as one."""
    try:
        if kind == "asic":
            return AsicCommand(
                group,
                int(payload["units_on"]),
                float(payload["watts_per_unit"]),
                str(payload.get("reason", "")),
                str(payload.get("plan", "restored")),
            )
        return GpuCommand(
            group,
            float(payload["power_cap_watts"]),
            int(payload["capped_nodes"]),
            int(payload["paused_nodes"]),
            str(payload.get("reason", "")),
            str(payload.get("plan", "restored")),
        )
    except (KeyError, TypeError, ValueError):
        return None
