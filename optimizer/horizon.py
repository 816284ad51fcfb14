"""Steps that lengthen further out (move blocking).

Only the first step of a plan is applied before the next re-plan, so decisions far ahead only need
to be roughly right. Holding each decision constant over a block of steps is a restriction of the
problem, not an approximation of its physics: with power constant over a block, its energy cost is
the power times the block's time-weighted mean price, its hash revenue the same with the mean
hashprice, and it respects the site cap in every step if it respects the lowest cap of the block.
So a blocked problem is an ordinary, smaller `Problem`, solved exactly, and its schedule is
stretched back over the original steps and scored there.

Block boundaries are forced wherever the rules change: grid events, contract notice periods,
units' lock-out ends, billing periods, and reserve awards or offer limits. Within a block a
reserve's price and the expected 4CP charge are time-weighted like the energy price; what may
be held is the block's least and what must be held its most, so a held decision fits every step.

"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt

from gridpilot.optimizer.problem import Problem
from gridpilot.optimizer.schedule import Schedule

IntArray = npt.NDArray[np.int64]


def _forced_boundaries_s(problem: Problem) -> list[float]:
    cuts: list[float] = []
    cuts += [c.notice_s for c in problem.contracts if c.notice_s > 0]
    cuts += [g.locked_off_until_s for g in problem.asic_groups if g.units_locked_off]
    for budget in problem.budgets:
        cuts += [
            (budget.period_start - problem.start).total_seconds(),
            (budget.period_end - problem.start).total_seconds(),
        ]
    return cuts


def block_index(problem: Problem, tiers: tuple[tuple[float, float], ...]) -> IntArray:
    """Block number of each step. `tiers` are `(from_s, block_s)`: from `from_s` on, steps are
    merged into blocks of about `block_s` (never splitting a step); before the first tier,
    every step is its own block."""
    offsets = problem.step_offsets_s()
    cuts = np.array(sorted(_forced_boundaries_s(problem)))
    cap = problem.cap_watts()
    event = problem.event_active()
    # A step starts a new block where a rule changes at or just before it ...
    passed = np.searchsorted(cuts, offsets + 1e-9, side="right")
    forced = np.zeros(problem.steps, dtype=bool)
    forced[1:] = (passed[1:] > passed[:-1]) | (cap[1:] != cap[:-1]) | (event[1:] != event[:-1])
    for reserve in problem.programs.reserves:
        for limits in (np.asarray(reserve.awarded_mw), np.asarray(reserve.max_mw)):
            forced[1:] |= limits[1:] != limits[:-1]
    # ... or where the block it would join has reached its tier's length.
    length = np.zeros(problem.steps)
    for from_s, block_s in tiers:
        length[offsets >= from_s] = block_s
    starts = offsets.tolist()
    lengths = (length - 1e-9).tolist()
    cut = forced.tolist()
    block = [0] * problem.steps
    current, block_start = 0, 0.0
    for t in range(1, problem.steps):
        if cut[t] or starts[t] - block_start >= lengths[t]:
            current += 1
            block_start = starts[t]
        block[t] = current
    return np.array(block, dtype=np.int64)


def coarsen(problem: Problem, block: IntArray) -> Problem:
    """The same problem with one step per block: durations summed, prices time-weighted, and
    the site cap of a block its lowest (folded into the limit through a synthetic event where it
    is lower than the plain limit)."""
    blocks = int(block[-1]) + 1
    dt = np.asarray(problem.step_s)
    duration = np.bincount(block, weights=dt, minlength=blocks)
    price = np.bincount(block, weights=dt * np.asarray(problem.price_usd_per_mwh), minlength=blocks)
    hashprice = np.bincount(
        block, weights=dt * np.asarray(problem.hashprice_usd_per_th_day), minlength=blocks
    )

    def mean(values: tuple[float, ...]) -> tuple[float, ...]:
        weighted = np.bincount(block, weights=dt * np.asarray(values), minlength=blocks)
        return tuple((weighted / duration).tolist())

    def extreme(values: tuple[float, ...], ufunc: np.ufunc) -> tuple[float, ...]:
        out = np.full(blocks, np.inf if ufunc is np.minimum else -np.inf)
        ufunc.at(out, block, np.asarray(values, dtype=np.float64))
        return tuple(out.tolist())

    programs = problem.programs
    if programs.reserves or programs.transmission_usd_per_mwh:
        programs = replace(
            programs,
            reserves=tuple(
                replace(
                    r,
                    usd_per_mw_h=mean(r.usd_per_mw_h),
                    max_mw=extreme(r.max_mw, np.minimum),
                    awarded_mw=extreme(r.awarded_mw, np.maximum),
                )
                for r in programs.reserves
            ),
            transmission_usd_per_mwh=(
                mean(programs.transmission_usd_per_mwh) if programs.transmission_usd_per_mwh else ()
            ),
        )
    return replace(
        problem,
        step_s=tuple(duration.tolist()),
        price_usd_per_mwh=tuple((price / duration).tolist()),
        hashprice_usd_per_th_day=tuple((hashprice / duration).tolist()),
        programs=programs,
    )


def stretch(schedule: Schedule, block: IntArray) -> Schedule:
    """A blocked schedule repeated over the original steps."""
    return Schedule(
        asic_units_on=schedule.asic_units_on[:, block],
        asic_watts_per_unit=schedule.asic_watts_per_unit[:, block],
        gpu_level=schedule.gpu_level[:, block],
        gpu_capped_nodes=schedule.gpu_capped_nodes[:, block],
        gpu_paused_nodes=schedule.gpu_paused_nodes[:, block],
        reserve_watts=None if schedule.reserve_watts is None else schedule.reserve_watts[:, block],
    )
