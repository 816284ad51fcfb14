"""Identical groups merged into classes before the solver sees them, and split back after.

Forty containers of the same miner model in the same state are one decision (how many units of
that model run), not forty; merging them keeps the model small. Splitting back fills the groups in
a fixed order, groups that are awake now first, so that whole containers switch rather than a few
units in each.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from optimizer.problem import AsicGroup, GpuGroup

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class AsicClass:
    """Merged groups: `group` carries the summed units and state; `members` index the problem's
    `asic_groups` in fill order."""

    group: AsicGroup
    members: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class GpuClass:
    group: GpuGroup
    members: tuple[int, ...]


def _asic_key(group: AsicGroup) -> tuple[object, ...]:
    return (
        group.model,
        group.watts_per_unit,
        group.ths_per_unit,
        group.overhead_factor,
        group.wake_loss_s,
        group.min_off_s,
        group.power_target,
        group.locked_off_until_s if group.units_locked_off else 0.0,
    )


def _gpu_key(group: GpuGroup) -> tuple[object, ...]:
    return (
        group.contract,
        group.gpus_per_node,
        group.cap_levels,
        group.idle_watts_per_gpu,
        group.host_watts_per_node,
        group.overhead_factor,
        group.curtailed_for_s if group.curtailed_nodes_now else 0.0,
    )


def asic_classes(groups: tuple[AsicGroup, ...]) -> tuple[AsicClass, ...]:
    buckets: dict[tuple[object, ...], list[int]] = {}
    for index, group in enumerate(groups):
        buckets.setdefault(_asic_key(group), []).append(index)
    classes = []
    for members in buckets.values():
        # Awake groups first: filling in this order keeps running containers running.
        ordered = sorted(members, key=lambda i: -groups[i].on_now / max(groups[i].units, 1))
        first = groups[ordered[0]]
        merged = replace(
            first,
            name=first.name if len(ordered) == 1 else f"{first.model} x{len(ordered)}",
            units=sum(groups[i].units for i in ordered),
            units_on_now=sum(groups[i].on_now for i in ordered),
            units_locked_off=sum(groups[i].units_locked_off for i in ordered),
        )
        classes.append(AsicClass(merged, tuple(ordered)))
    return tuple(classes)


def gpu_classes(groups: tuple[GpuGroup, ...]) -> tuple[GpuClass, ...]:
    buckets: dict[tuple[object, ...], list[int]] = {}
    for index, group in enumerate(groups):
        buckets.setdefault(_gpu_key(group), []).append(index)
    classes = []
    for members in buckets.values():
        ordered = sorted(members, key=lambda i: -groups[i].curtailed_nodes_now)
        first = groups[ordered[0]]
        merged = replace(
            first,
            name=first.name if len(ordered) == 1 else f"{first.contract} x{len(ordered)}",
            nodes=sum(groups[i].nodes for i in ordered),
            curtailed_nodes_now=sum(groups[i].curtailed_nodes_now for i in ordered),
        )
        classes.append(GpuClass(merged, tuple(ordered)))
    return tuple(classes)


def split_counts(totals: IntArray, sizes: IntArray) -> IntArray:
    """Share each step's class total (shape `(T,)`) over member groups of `sizes` (shape `(M,)`),
    filling them in order; returns shape `(M, T)`."""
    before = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    return np.clip(totals[None, :] - before[:, None], 0, sizes[:, None]).astype(np.int64)
