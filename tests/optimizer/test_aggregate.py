"""Merged groups split back: whole containers switch and no unit wakes for nothing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gridpilot.optimizer.aggregate import split_nodes, split_units
from gridpilot.optimizer.problem import AsicGroup, CapLevel, GpuGroup

CONTAINER = AsicGroup("c", "S19j Pro", 200, 3_050.0, 100.0, wake_loss_s=600.0)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 300), min_size=2, max_size=6),
    awake_share=st.floats(0, 1),
    shares=st.lists(st.floats(0, 1), min_size=1, max_size=12),
)
def test_in_order_split_keeps_totals_and_wakes_only_what_the_class_wakes(
    sizes: list[int], awake_share: float, shares: list[float]
) -> None:
    """From groups awake in fill order, every step's split sums to the class total, stays within
    each group, and wakes exactly as many units as the class total rises by."""
    total = sum(sizes)
    awake = round(awake_share * total)
    groups = []
    left = awake
    for index, size in enumerate(sizes):
        on = min(size, left)
        left -= on
        groups.append(replace(CONTAINER, name=f"c{index}", units=size, units_on_now=on))
    totals = np.array([round(s * total) for s in shares], dtype=np.int64)
    split = split_units(totals, groups, np.arange(totals.size, dtype=np.float64) * 900.0)
    assert (split.sum(axis=0) == totals).all()
    assert (split >= 0).all()
    assert (split <= np.array(sizes)[:, None]).all()
    previous = np.array([g.on_now for g in groups])
    woken = np.maximum(0, np.diff(split, axis=1, prepend=previous[:, None])).sum(axis=0)
    rises = np.maximum(0, np.diff(totals, prepend=awake))
    assert (woken == rises).all()


def test_nodes_take_turns_when_the_longest_event_needs_it() -> None:
    """Two one-node groups, a 20-minute longest event, 5-minute steps, class totals 2, 2, 1, 1, 2
    (found by `test_every_plan_obeys_every_rule`): the totals keep within the longest event only
    if the node still curtailed at step 3 is swapped for the other one, so that each node's
    event lasts at most 4 steps. Released-then-curtailed-again in one step would be 5."""
    node = GpuGroup("gpu-0", "spot", 1, 8, (CapLevel(700.0, 1.0),), 100.0, 1_500.0)
    groups = [node, replace(node, name="gpu-1")]
    ends = np.arange(1, 6, dtype=np.float64) * 300.0
    totals = np.array([2, 2, 1, 1, 2])
    capped, paused = split_nodes(np.zeros(5, dtype=np.int64), totals, groups, ends, 1_200.0)
    assert capped.sum() == 0
    assert paused.sum(axis=0).tolist() == totals.tolist()
    for row in paused.tolist():
        longest_run = max(len(run) for run in "".join(map(str, row)).split("0"))
        assert longest_run <= 4, row


def test_nodes_are_not_swapped_for_nothing() -> None:
    """Without a longest event, the same totals move only the change: the node that stays
    curtailed through steps 2 and 3 is the one curtailed since step 0."""
    node = GpuGroup("gpu-0", "spot", 1, 8, (CapLevel(700.0, 1.0),), 100.0, 1_500.0)
    groups = [node, replace(node, name="gpu-1")]
    ends = np.arange(1, 6, dtype=np.float64) * 300.0
    totals = np.array([2, 2, 1, 1, 2])
    _, paused = split_nodes(np.zeros(5, dtype=np.int64), totals, groups, ends, None)
    assert paused.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 1]]
