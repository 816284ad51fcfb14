"""Merged groups split back: whole containers switch and no unit wakes for nothing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gridpilot.optimizer.aggregate import split_units
from gridpilot.optimizer.problem import AsicGroup

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
