"""The guard: keeps the site under its cap at once, without the solver.

On a meter reading over the cap (the interconnect limit less its margin, or an active grid
event's cap), it puts miners to sleep along the merit order, least efficient first, until the
reading less what they drew is under the cap. GPUs are never touched here: their contracts are
the planner's business, and miners answer within seconds.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gridpilot.optimizer.problem import AsicGroup

IntArray = npt.NDArray[np.int64]


def shed_order(groups: tuple[AsicGroup, ...]) -> list[int]:
    """Group indices, least efficient (highest J/TH at the meter) first."""
    return sorted(
        range(len(groups)), key=lambda i: (-groups[i].joules_per_th * groups[i].overhead_factor, i)
    )


def shed(
    groups: tuple[AsicGroup, ...],
    units_on: IntArray,
    *,
    reading_watts: float,
    cap_watts: float,
    order: list[int] | None = None,
) -> IntArray:
    """Units on per group after shedding enough to bring `reading_watts` to at most `cap_watts`
    (or every miner, if that is not enough). Returns a new array; `units_on` is left as it was."""
    result = units_on.copy()
    excess = reading_watts - cap_watts
    for index in order if order is not None else shed_order(groups):
        if excess <= 0:
            break
        group = groups[index]
        unit_watts = group.watts_per_unit * group.overhead_factor
        units = min(int(result[index]), int(np.ceil(excess / unit_watts)))
        result[index] -= units
        excess -= units * unit_watts
    return result
