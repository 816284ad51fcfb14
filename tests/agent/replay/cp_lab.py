"""4CP lab: what a better forecast of the peaks could be worth, on the full replay (not a test).

Run: `.venv/bin/python -m tests.agent.replay.cp_lab [--json FILE]` (or `make cp-lab`; about two
minutes on two cores).

The agent pays for not knowing the 4CP intervals in hashing: it lowers load on every afternoon
that might hold its month's peak. How much of that a better forecast could save is measured here
by giving the same agent, on the same default replay (2024, HB_WEST, the grid programs), 4CP
forecasts that know more than any forecast could, and reading its capture, its 4CP charge and
the hours it lowered load for 4CP:

- `agent's forecast`: the shipped forecaster (`agent.peaks`), learned from 2019-2023.
- `today's peak known, spread S`: told, from each day's midnight, that day's final hourly peak
  (a perfect forecast of today's weather and load); the 15-minute peak the charge is set by is
  lognormal around it with log spread S (the forecaster's floor is 0.002). The days after today
  are forecast as the agent's forecaster does (it knows nothing more of them).
- `month's peaks known, spread S`: told every day's final hourly peak, the days to come
  included (a perfect forecast of weeks of weather): a day holds its month's peak with the
  chance that its 15-minute peak, lognormal around its hourly one with log spread S, beats every
  other day's. It bounds any forecast made from hourly load.
- `perfect alert`: the official intervals (what `gridpilot replay --perfect-cp-alert` runs).

Capture is against the same always-on and hindsight runs as the replay's. No row is a strategy
anyone could run; they bound the forecast's share of the gap to hindsight.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from functools import partial
from pathlib import Path

import numpy as np

from gridpilot.adapters.grid import SystemLoad
from gridpilot.adapters.recorded import CENTRAL
from gridpilot.agent.bundled import REFERENCE_SITE
from gridpilot.agent.peaks import HourlyLoad, PeakForecaster, PeakModel, _Days
from gridpilot.agent.replay.period import ReplayResult
from gridpilot.agent.replay.programs import peak_forecaster
from gridpilot.agent.replay.simulation import replay
from gridpilot.agent.study.data import year_data
from gridpilot.agent.study.run import site_template
from gridpilot.optimizer.problem import FloatArray

YEAR = 2024
HUB = "HB_WEST"
SPREADS = (0.002, 0.004, 0.008)


class _TodayKnown(_Days):
    """The load's days, each day's peak forecast as its final hourly peak whatever has
    settled."""

    def forecast(self, day: int, known: int, weight: float = 1.0) -> float:
        return float(self.peaks[day])


def today_known(spread: float, load: SystemLoad, year: int) -> PeakForecaster:
    """The agent's forecaster for `year`, told each day's own peak from its start."""
    learned = peak_forecaster(load, year)
    model = replace(learned.model, sigma_by_hours_known=np.full(25, spread), scale=1.0)
    forecaster = PeakForecaster(model, learned.days.load)
    forecaster.days = _TodayKnown(learned.days.load)
    return _rescaled(forecaster, year)


def _rescaled(forecaster: PeakForecaster, year: int) -> PeakForecaster:
    """`forecaster` scaled, as the agent's is (`peaks._recalibrated`), so that its chances over
    the summers before `year`, asked hourly, add up to the peaks those summers had."""
    total, months = 0.0, 0
    for past in range(forecaster.days.dates[0].year, year):
        moment = datetime.combine(date(past, 6, 1), time(0), CENTRAL)
        end = datetime.combine(date(past, 10, 1), time(0), CENTRAL)
        while moment < end:
            total += float(forecaster.cp_chance(now=moment, intervals=4, interval_s=900.0).sum())
            moment += timedelta(hours=1)
        months += 4
    forecaster.model = replace(forecaster.model, scale=months / total)
    return forecaster


class MonthKnown(PeakForecaster):
    """Chances from every hourly peak of the day's month, those to come included."""

    def __init__(self, spread: float, model: PeakModel, load: HourlyLoad) -> None:
        super().__init__(model, load)
        self.spread = spread
        self._months: dict[tuple[int, int], dict[date, float]] = {}

    def _day_chances(self, days: list[date], *, today: int, known: int) -> list[float]:
        return [self._day_chance(day, today=today, known=known) for day in days]

    def _day_chance(self, day: date, *, today: int, known: int) -> float:
        month = self._months.get((day.year, day.month))
        if month is None:
            month = self._months[(day.year, day.month)] = self.month_chances(day)
        return month[day]

    def month_chances(self, day: date) -> dict[date, float]:
        """Each day of `day`'s month and the chance that it holds the month's peak."""
        days = self.days
        indices = [
            i for i, d in enumerate(days.dates) if (d.year, d.month) == (day.year, day.month)
        ]
        logs = np.log(days.peaks[indices])
        # P(day d's 15-minute peak is the highest) = E over its noise x of the chance that each
        # other day's stays below: the product of normal CDFs, integrated on a grid.
        x = np.linspace(-6.0, 6.0, 241)
        density = np.exp(-0.5 * x**2) / np.sqrt(2.0 * np.pi)
        gaps = (logs[:, None] - logs[None, :]) / self.spread  # (d, j)
        below = 0.5 * (1.0 + _erf((gaps[:, :, None] + x[None, None, :]) / np.sqrt(2.0)))
        for d in range(len(indices)):
            below[d, d, :] = 1.0
        chance = np.trapezoid(density * below.prod(axis=1), x, axis=1)
        return {days.dates[i]: float(c) for i, c in zip(indices, chance, strict=True)}


def month_known(spread: float, load: SystemLoad, year: int) -> MonthKnown:
    """The agent's forecaster for `year`, told every day's peak in advance."""
    # Its chances are a month's whole: each month's add up to one, no scale to learn.
    learned = peak_forecaster(load, year)
    return MonthKnown(spread, replace(learned.model, scale=1.0), learned.days.load)


def _erf(values: FloatArray) -> FloatArray:
    return np.asarray(np.vectorize(math.erf)(values), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    profit_usd: float
    transmission_usd: float
    cp_hours_curtailed: float
    cp_mw_at_intervals: tuple[float, ...]


def _run(
    forecast: Callable[[SystemLoad, int], PeakForecaster] | None,
    perfect: bool,
    only: tuple[str, ...],
) -> ReplayResult:
    base, terms = site_template(REFERENCE_SITE)
    data = year_data(YEAR, HUB).replay
    assert data.grid is not None
    data = replace(data, grid=replace(data.grid, forecast_peaks=forecast, perfect_cp_alert=perfect))
    prices = data.prices
    start = prices.start_utc[0]
    end = prices.start_utc[-1] + timedelta(seconds=prices.interval_s)
    return replay(base, data, start=start, end=end, parallel=False, terms=terms, only=only)


def _row(name: str, result: ReplayResult, strategy: str = "agent") -> Row:
    totals = result.totals[strategy]
    return Row(
        name,
        totals.profit_usd,
        totals.transmission_usd,
        totals.cp_hours_curtailed,
        totals.cp_mw_at_intervals,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    variants: list[tuple[str, Callable[[SystemLoad, int], PeakForecaster] | None, bool]] = [
        ("agent's forecast", None, False),
        *((f"today's peak known, spread {s}", partial(today_known, s), False) for s in SPREADS),
        *((f"month's peaks known, spread {s}", partial(month_known, s), False) for s in SPREADS),
        ("perfect alert", None, True),
    ]
    with ProcessPoolExecutor(max_workers=2) as pool:
        references = pool.submit(_run, None, False, ("always_on", "hindsight", "threshold_4cp"))
        agents = [pool.submit(_run, f, p, ("agent",)) for _, f, p in variants]
        bounds = references.result()
        rows = [_row(name, a.result()) for (name, _, _), a in zip(variants, agents, strict=True)]
    base = bounds.totals["always_on"].profit_usd
    best = bounds.totals["hindsight"].profit_usd - base
    rows += [_row("threshold_4cp", bounds, "threshold_4cp"), _row("hindsight", bounds, "hindsight")]
    print(
        f"{'4CP forecast given to the agent':<36} {'capture':>8} {'4CP $':>11} {'4CP hours':>10}"
        "  MW at the 4CP intervals"
    )
    for row in rows:
        mw = " ".join(f"{m:.1f}" for m in row.cp_mw_at_intervals)
        print(
            f"{row.name:<36} {(row.profit_usd - base) / best:8.3f} {row.transmission_usd:11,.0f}"
            f" {row.cp_hours_curtailed:10.2f}  {mw}"
        )
    if args.json is not None:
        document = {
            row.name: {
                "capture": round((row.profit_usd - base) / best, 4),
                "profit_usd": round(row.profit_usd, 2),
                "transmission_usd": round(row.transmission_usd, 2),
                "cp_hours_curtailed": row.cp_hours_curtailed,
                "cp_mw_at_intervals": list(row.cp_mw_at_intervals),
            }
            for row in rows
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
