"""The references' commitments with the grid programs: the hindsight bound's whole-period
problem and awards, `threshold_4cp`'s hours and `fixed_reserve`'s constant offer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date

import numpy as np

from gridpilot.agent.guard import shed_order
from gridpilot.agent.planner import (
    month_end,
    month_start,
)
from gridpilot.agent.programs import (
    RESPONSE_S,
)
from gridpilot.agent.replay.period import (
    Period,
    Strategy,
)
from gridpilot.agent.replay.programs import (
    FIXED_RESERVE_SHARE,
    PeriodPrograms,
)
from gridpilot.optimizer import hindsight
from gridpilot.optimizer.economics import SECONDS_PER_HOUR
from gridpilot.optimizer.problem import (
    AllowanceBudget,
    FloatArray,
    Problem,
    Programs,
    ReserveProduct,
    uniform_steps,
)
from gridpilot.optimizer.schedule import Schedule


def hindsight_commitments(
    site: Problem, period: Period, schedule: Schedule
) -> Callable[[Strategy], None] | None:
    """Hindsight is awarded what it held, and lowers its draw at the intervals it knows."""
    programs = period.programs
    if programs is None:
        return None
    held = schedule.held_watts(len(programs.products)) / 1e6
    on = schedule.asic_units_on.sum(axis=0)
    full = sum(g.units for g in site.asic_groups)
    intervals = np.zeros(len(period.moments), dtype=bool)
    intervals[[k for _, k in programs.cp_intervals]] = True

    def prepare(strategy: Strategy) -> None:
        for r, product in enumerate(programs.products):
            strategy.awards[product] = np.where(
                programs.clearing[product] > 0, np.floor(10.0 * held[r]) / 10.0, 0.0
            )
        strategy.lowered_for_cp = intervals & (on < full)

    return prepare


def lowered(hours: np.ndarray) -> Callable[[Strategy], None]:
    def prepare(strategy: Strategy) -> None:
        strategy.lowered_for_cp = hours.copy()

    return prepare


def awarded(product: str, mw: FloatArray) -> Callable[[Strategy], None]:
    """A constant award of `product`, where the window offers it at all."""

    def prepare(strategy: Strategy) -> None:
        if product in strategy.awards:
            strategy.awards[product] = mw.copy()

    return prepare


def asleep_where(schedule: Schedule, asleep: np.ndarray) -> Schedule:
    """`schedule` with every miner asleep in the intervals marked."""
    units = schedule.asic_units_on.copy()
    units[:, asleep] = 0
    return replace(schedule, asic_units_on=units)


def fixed_reserve(
    site: Problem, programs: PeriodPrograms, schedule: Schedule
) -> tuple[Schedule, FloatArray]:
    """The threshold rule with a constant Responsive Reserve offer: `FIXED_RESERVE_SHARE` of
    the RRS-qualified MW in every hour with a clearing price, its miners (most efficient
    first) kept awake to cover it."""
    count = schedule.asic_units_on.shape[1]
    if "RRS" not in programs.products:
        return schedule, np.zeros(count)
    award = np.where(
        programs.clearing["RRS"] > 0,
        np.floor(10.0 * FIXED_RESERVE_SHARE * programs.qualified_mw["RRS"]) / 10.0,
        0.0,
    )
    units = schedule.asic_units_on.copy()
    needed = award * 1e6
    for i in reversed(shed_order(site.asic_groups)):
        group = site.asic_groups[i]
        if "RRS" not in group.reserve_products:
            continue
        unit_watts = group.watts_per_unit * group.overhead_factor
        want = np.minimum(group.units, np.ceil(np.maximum(needed, 0.0) / unit_watts))
        units[i] = np.maximum(units[i], want.astype(np.int64))
        needed = needed - units[i] * unit_watts
    return replace(schedule, asic_units_on=units), award


def whole_period(site: Problem, period: Period, hashprice: dict[date, float]) -> Problem:
    """The site over the whole period at the true prices and the given daily hashprice."""
    return replace(
        site,
        start=period.start,
        step_s=uniform_steps(len(period.moments), period.interval_s),
        price_usd_per_mwh=tuple(period.true_price.tolist()),
        hashprice_usd_per_th_day=tuple(hashprice[m.date()] for m in period.moments),
    )


def hindsight_schedule(site: Problem, period: Period) -> Schedule:
    """The bound over the period: true prices and hashprice, each month's whole allowance,
    and, with the programs, the true 4CP intervals and the reserves' true clearing prices."""
    months = sorted({month_start(m) for m in period.moments})
    budgets = tuple(
        AllowanceBudget(c.name, start, month_end(start), c.allowance_node_hours)
        for c in site.contracts
        for start in months
    )
    problem = replace(whole_period(site, period, period.day_hashprice), budgets=budgets)
    if period.programs is not None:
        problem = replace(problem, programs=known_programs(period))
    return hindsight.hindsight_schedule(problem)


def known_programs(period: Period) -> Programs:
    """The programs as hindsight knows them: each official 4CP interval certain, every
    product's clearing price, up to the qualified MW held in any hour with a price."""
    programs = period.programs
    assert programs is not None
    count = len(period.moments)
    hours = period.interval_s / SECONDS_PER_HOUR
    charge = np.zeros(count)
    for year, k in programs.cp_intervals:
        rate = programs.rate_for_peaks_of.get(year, 0.0)
        charge[k] = rate * 1_000.0 / 4.0 / hours
    reserves = tuple(
        ReserveProduct(
            name=p,
            response_s=RESPONSE_S[p],
            usd_per_mw_h=tuple(programs.clearing[p].tolist()),
            max_mw=tuple(
                np.where(programs.clearing[p] > 0, programs.qualified_mw[p], 0.0).tolist()
            ),
            awarded_mw=(0.0,) * count,
        )
        for p in programs.products
    )
    return Programs(reserves=reserves, transmission_usd_per_mwh=tuple(charge.tolist()))
