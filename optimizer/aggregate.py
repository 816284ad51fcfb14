"""Identical groups merged into classes before the solver sees them, and split back after.

Forty containers of the same miner model in the same state are one decision (how many units of
that model run), not forty; merging them keeps the model small. Splitting back starts from what
each group runs now and moves only the change, filling the groups in a fixed order (groups that
are awake now first), so that whole containers switch rather than a few units in each, and no
unit is put to sleep in one group while another wakes in the next.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from gridpilot.optimizer.problem import AsicGroup, FloatArray, GpuGroup

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
        group.reserve_products,
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
        group.reserve_products,
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


def _fill_in_order(totals: IntArray, sizes: IntArray) -> IntArray:
    """Each step's total (shape `(T,)`) over groups of `sizes` (shape `(M,)`), filling them in
    order; shape `(M, T)`."""
    before = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    return np.clip(totals[None, :] - before[:, None], 0, sizes[:, None]).astype(np.int64)


def split_units(totals: IntArray, groups: Sequence[AsicGroup], offsets_s: FloatArray) -> IntArray:
    """Share each step's class total of units awake (shape `(T,)`) over the member `groups`, in
    fill order, starting from the units each group has awake now; returns shape `(M, T)`.

    Only the change from one step to the next moves: units wake in fill order among those free
    to (asleep since before the horizon, or for `min_off_s` since they were put to sleep, and
    not locked) and go to sleep in reverse fill order. So no group wakes a unit while another
    puts one to sleep (a waking loss for nothing), and no group wakes a unit that its lock or
    minimum off time still holds, as long as the class total respects them.
    """
    count = len(groups)
    if count == 1:
        return totals.reshape(1, -1).astype(np.int64)
    sizes = np.array([g.units for g in groups], dtype=np.int64)
    on_now = np.array([g.on_now for g in groups], dtype=np.int64)
    free = all(g.units_locked_off == 0 and g.min_off_s == 0 for g in groups)
    if free and np.array_equal(on_now, _fill_in_order(np.array([on_now.sum()]), sizes)[:, 0]):
        # Awake units fill the groups in order now, and nothing holds any asleep: waking in
        # fill order and sleeping in reverse keeps them so, which is the plain in-order fill.
        return _fill_in_order(totals.astype(np.int64), sizes)
    if count == 1:
        return totals[None, :].astype(np.int64)
    on = np.array([g.on_now for g in groups], dtype=np.int64)
    # Per group, its asleep units as [time they may wake, how many], earliest first.
    asleep: list[list[list[float]]] = [
        [
            cohort
            for cohort in (
                [-np.inf, float(g.units - g.on_now - g.units_locked_off)],
                [g.locked_off_until_s, float(g.units_locked_off)],
            )
            if cohort[1] > 0
        ]
        for g in groups
    ]
    split = np.zeros((count, totals.size), dtype=np.int64)
    for t in range(totals.size):
        change = int(totals[t]) - int(on.sum())
        # Waking: units free to wake first; any others only if the total itself broke a rule.
        for only_free in (True, False):
            for m in range(count):
                cohorts = asleep[m]
                while change > 0 and cohorts:
                    if only_free and cohorts[0][0] > offsets_s[t] + 1e-9:
                        break
                    take = int(min(cohorts[0][1], change))
                    cohorts[0][1] -= take
                    if cohorts[0][1] == 0:
                        cohorts.pop(0)
                    on[m] += take
                    change -= take
        for m in reversed(range(count)):
            if change >= 0:
                break
            take = int(min(on[m], -change))
            if take:
                on[m] -= take
                change += take
                insort(asleep[m], [float(offsets_s[t]) + groups[m].min_off_s, float(take)])
        split[:, t] = on
    return split


def split_nodes(
    capped: IntArray,
    paused: IntArray,
    groups: Sequence[GpuGroup],
    ends_s: FloatArray,
    max_event_s: float | None,
) -> tuple[IntArray, IntArray]:
    """Share each step's class totals of capped and paused nodes (shape `(T,)`) over the member
    `groups`, in fill order, starting from the nodes each group has curtailed now; returns
    (capped, paused), each of shape `(M, T)`.

    Nodes are released oldest first (the last groups in fill order first among equals), and new
    curtailments go to nodes that ran in the step before, in fill order. So no group curtails a
    node while another releases one for nothing, which would break notice. Where the longest
    event needs it, a curtailed node is swapped for a running one (`_fewest_starts`): the class
    totals keep within the longest event only if some nodes take turns, and without the swap
    a node would be released and curtailed again in one step, which is no release at all.
    Within a group, paused nodes are counted first.
    """
    if len(groups) == 1:
        return capped[None, :].astype(np.int64), paused[None, :].astype(np.int64)
    longest = np.inf if max_event_s is None else max_event_s
    count = len(groups)
    total = (capped + paused).astype(np.int64)
    starts = _fewest_starts(total, groups, ends_s, longest)
    # Per group, its curtailed nodes as [time their curtailment began, how many], oldest first.
    runs: list[list[list[float]]] = [
        [[-g.curtailed_for_s, float(g.curtailed_nodes_now)]] if g.curtailed_nodes_now else []
        for g in groups
    ]
    curtailed = np.zeros((count, ends_s.size), dtype=np.int64)
    for t in range(ends_s.size):
        before = [int(sum(n for _, n in r)) for r in runs]
        runs = [
            [r for r in group_runs if ends_s[t] - r[0] <= longest + 1e-9] for group_runs in runs
        ]
        held = int(sum(n for r in runs for _, n in r))
        release = max(held + int(starts[t]) - int(total[t]), 0)
        oldest = sorted(
            ((r[0], -m, r) for m, group_runs in enumerate(runs) for r in group_runs),
            key=lambda item: (item[0], item[1]),
        )
        for _, _, run in oldest:
            released = min(int(run[1]), release)
            run[1] -= released
            release -= released
        runs = [[r for r in group_runs if r[1] > 0] for group_runs in runs]
        change = int(total[t]) - int(sum(n for r in runs for _, n in r))
        # New curtailments: on nodes that ran before, then (only if the totals broke a rule) any.
        for free in (
            [g.nodes - before[m] for m, g in enumerate(groups)],
            [g.nodes - int(sum(n for _, n in runs[m])) for m, g in enumerate(groups)],
        ):
            for m in range(count):
                held_m = int(sum(n for _, n in runs[m]))
                take = min(change, free[m], groups[m].nodes - held_m)
                if take > 0:
                    start = ends_s[t - 1] if t else 0.0
                    runs[m].append([float(start), float(take)])
                    change -= take
        curtailed[:, t] = [int(sum(n for _, n in r)) for r in runs]
    split_paused = np.zeros_like(curtailed)
    for t in range(ends_s.size):
        left = int(paused[t])
        for m in range(count):
            split_paused[m, t] = min(left, int(curtailed[m, t]))
            left -= int(split_paused[m, t])
    return curtailed - split_paused, split_paused


def _fewest_starts(
    total: IntArray, groups: Sequence[GpuGroup], ends_s: FloatArray, longest: float
) -> IntArray:
    """The fewest curtailments to begin in each step so that, released oldest first, every node
    curtailed at a step began within `longest` of its end, for the class totals `total`.

    A step must start what its total adds; where a window still holds too few starts, the
    missing ones are swaps placed as late as they can be (a later start lies in every later
    window an earlier one does). A start needs a node that ran in the step before, and is not
    more than the step curtails. If the totals cannot keep the rule at all, what is missing
    stays missing and the split falls back to curtailing a released node again."""
    steps = total.size
    offsets = np.concatenate(([0.0], ends_s[:-1]))
    nodes = sum(g.nodes for g in groups)
    previous = np.concatenate(([sum(g.curtailed_nodes_now for g in groups)], total[:-1]))
    upper = np.minimum(total, nodes - previous)
    starts = np.maximum(total - previous, 0)
    first = np.searchsorted(offsets, ends_s - longest - 1e-9, side="left")
    for t in range(steps):
        carried = sum(
            g.curtailed_nodes_now for g in groups if g.curtailed_for_s + ends_s[t] <= longest + 1e-9
        )
        missing = int(total[t]) - carried - int(starts[first[t] : t + 1].sum())
        for j in range(t, int(first[t]) - 1, -1):
            if missing <= 0:
                break
            added = min(int(upper[j] - starts[j]), missing)
            if added > 0:
                starts[j] += added
                missing -= added
    return starts.astype(np.int64)
