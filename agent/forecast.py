"""Price forecasts from what is known at the moment of deciding, and nothing after it.

Two sources, in order of trust:

- **Day-ahead prices**, where published before the decision (ERCOT publishes operating day D's
  around 13:30 Central on D-1): the market's own forecast of each hour. The last real-time price
  tells how far today's market has drifted from it. The interval being decided keeps all of that
  drift (its price is not settled yet, and the last settled one is its best single guess); later
  intervals see it fade with a one-hour time constant (real-time excursions at ERCOT hubs
  rarely outlive a few intervals).
- **History alone**, where no day-ahead price is known: the median of the same time of day over
  the past week (the daily shape), with the same fading drift from the last real-time price.

Both are deliberately plain: no parameter is fitted to a particular year or hub.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np

from optimizer.problem import FloatArray

DRIFT_TIME_CONSTANT_S = 3_600.0
HISTORY_DAYS = 7

# `window(start_utc, count, interval_s)`: forecast prices for `count` intervals from `start_utc`,
# NaN where none is known at the moment of deciding.
DayAheadWindow = Callable[[datetime, int, float], FloatArray]


def daily_profile(history: FloatArray, interval_s: float, days: int = HISTORY_DAYS) -> FloatArray:
    """Median price of each interval of the day over the last `days` whole days of `history`
    (which ends just before now); shape (intervals per day,), aligned so that index 0 is the
    interval that starts exactly one day before now. NaN-free when history has any data."""
    per_day = round(86_400.0 / interval_s)
    usable = min(days, history.size // per_day)
    if usable == 0:
        fill = float(np.nanmedian(history)) if history.size else 0.0
        return np.full(per_day, fill)
    recent = history[history.size - usable * per_day :].reshape(usable, per_day)
    return np.asarray(np.median(recent, axis=0), dtype=np.float64)


def forecast_prices(
    *,
    now: datetime,
    step_s: tuple[float, ...],
    history: FloatArray,
    interval_s: float,
    day_ahead: DayAheadWindow | None,
) -> FloatArray:
    """Expected price of each planning step starting at `now`.

    `history` holds the settled real-time prices of the intervals before `now`, the last one
    being the interval just ended. Steps longer than an interval take the mean of the intervals
    they span.
    """
    intervals_needed = round(sum(step_s) / interval_s)
    last = float(history[-1]) if history.size else 0.0
    # Base expectation per interval ahead: the day-ahead price where known, else the daily shape.
    profile = daily_profile(history, interval_s)
    per_day = profile.size
    ahead = np.arange(intervals_needed)
    base = profile[ahead % per_day]
    base_now = float(profile[-1])  # the shape's value for the interval just ended
    if day_ahead is not None:
        known = day_ahead(now - timedelta(seconds=interval_s), intervals_needed + 1, interval_s)
        if np.isfinite(known[0]):
            base_now = float(known[0])
        future = known[1:]
        base = np.where(np.isfinite(future), future, base)
    # The drift of the last settled price from its expectation: whole for the interval being
    # decided, fading for the ones after it.
    age_s = ahead * interval_s
    drift = (last - base_now) * np.exp(-age_s / DRIFT_TIME_CONSTANT_S)
    per_interval = base + drift
    # Mean over the intervals each step spans.
    edges = np.concatenate(([0], np.round(np.cumsum(step_s) / interval_s).astype(np.int64)))
    sums = np.concatenate(([0.0], np.cumsum(per_interval)))
    spans = np.maximum(np.diff(edges), 1)
    ends = np.minimum(edges[1:], per_interval.size)
    return np.asarray((sums[ends] - sums[edges[:-1]]) / spans, dtype=np.float64)
