"""Price forecasts from what is known at the moment of deciding, and nothing after it.

The forecast of each interval ahead is a base level plus the market's current drift from it:

- **The base** is the daily shape of real-time prices (the median of the same time of day over
  the past week), moved toward the day-ahead price where one was published before the decision
  (ERCOT publishes operating day D's around 13:30 Central on D-1). How far it moves is learned
  from the recent past, not assumed: the least-squares slope of the real-time prices' departures
  from the daily shape on the day-ahead prices' departures from it, over the settled intervals
  of the last `CALIBRATION_DAYS` days, clipped to [0, 1]. At ERCOT hubs an hour the day-ahead
  market prices high mostly settles far lower in real time (its mean is pulled up by the few
  spikes that happen), so taking the day-ahead price at face value makes the planner sleep
  miners ahead of spikes that mostly never come; the slope says how much of the day-ahead
  departure the real-time market has recently delivered. Without enough past pairs to judge
  (less than a day of them), the day-ahead price is taken as published.
- **The drift** is the mean departure of the last `DRIFT_INTERVALS` settled prices from their
  base: one settled excursion is weak evidence (after a single interval above a miner's
  breakeven the next is about as likely to fall back below it), a sustained one strong. The
  interval being decided keeps all of it; later intervals see it fade with a one-hour time
  constant (real-time excursions at ERCOT hubs rarely outlive a few intervals).

Both are deliberately plain: no parameter is fitted to a particular year or hub; the one learned
quantity is re-estimated from the trailing history at every decision.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta

import numpy as np

from gridpilot.optimizer.problem import FloatArray

DRIFT_TIME_CONSTANT_S = 3_600.0
DRIFT_INTERVALS = 2
HISTORY_DAYS = 7
CALIBRATION_DAYS = 30

# `window(start_utc, count, interval_s)`: forecast prices for `count` intervals from `start_utc`,
# NaN where none is known at the moment of deciding.
DayAheadWindow = Callable[[datetime, int, float], FloatArray]

# Day-ahead weights computed today, by the prices they were computed from (a few days' worth).
_WEIGHTS: dict[tuple[datetime, float, bytes, bytes], float] = {}
_WEIGHTS_KEPT = 8


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


def past_profiles(
    history: FloatArray, interval_s: float, days: int, profile_days: int = HISTORY_DAYS
) -> FloatArray:
    """The daily profile as it was known before each of the last `days` whole days of
    `history`: shape (days * intervals per day,), aligned with `history[-days * per_day:]`, each
    value the median of the same time of day over the `profile_days` days before its own day.
    Days without `profile_days` days before them are left out (the result is shorter)."""
    per_day = round(86_400.0 / interval_s)
    whole = history.size // per_day
    days = min(days, whole - profile_days)
    if days <= 0:
        return np.empty(0)
    by_day = history[history.size - whole * per_day :].reshape(whole, per_day)
    windows = np.lib.stride_tricks.sliding_window_view(by_day, profile_days, axis=0)
    # windows[i] covers days i .. i + profile_days - 1; day j's profile is windows[j - days].
    medians = np.median(windows[whole - profile_days - days : whole - profile_days], axis=-1)
    return np.asarray(medians.reshape(-1), dtype=np.float64)


def day_ahead_weight(
    *, now: datetime, history: FloatArray, interval_s: float, day_ahead: DayAheadWindow
) -> float:
    """How much of the day-ahead price's departure from the daily shape the real-time market
    delivered over the last `CALIBRATION_DAYS` whole UTC days before `now`: the least-squares
    slope (through the origin) of real-time departures on day-ahead departures, clipped to
    [0, 1]; 1 where fewer than a day of pairs is known. It changes once a day, so it is kept for
    the day (keyed on the very prices it was computed from)."""
    per_day = round(86_400.0 / interval_s)
    since_midnight = now - datetime.combine(now.astimezone(UTC).date(), time(0), UTC)
    today = min(round(since_midnight.total_seconds() / interval_s), history.size)
    settled = history[: history.size - today]
    span = min(CALIBRATION_DAYS * per_day, max(settled.size - HISTORY_DAYS * per_day, 0))
    end = now - timedelta(seconds=today * interval_s)
    past_day_ahead = day_ahead(end - timedelta(seconds=span * interval_s), span, interval_s)
    # The key is what the weight is computed from: the settled prices and the day-ahead ones.
    key = (
        end,
        interval_s,
        settled[settled.size - span - HISTORY_DAYS * per_day :].tobytes(),
        past_day_ahead.tobytes(),
    )
    cached = _WEIGHTS.get(key)
    if cached is not None:
        return cached
    profiles = past_profiles(settled, interval_s, CALIBRATION_DAYS)
    count = profiles.size
    weight = 1.0
    if count >= per_day:
        x = past_day_ahead[past_day_ahead.size - count :] - profiles
        y = settled[settled.size - count :] - profiles
        known = np.isfinite(x) & np.isfinite(y)
        xx = float(np.sum(x[known] ** 2))
        if known.sum() >= per_day and xx > 0.0:
            weight = float(np.clip(np.sum(x[known] * y[known]) / xx, 0.0, 1.0))
    if len(_WEIGHTS) >= _WEIGHTS_KEPT:
        _WEIGHTS.pop(next(iter(_WEIGHTS)))
    _WEIGHTS[key] = weight
    return weight


def base_levels(
    *,
    now: datetime,
    intervals: int,
    history: FloatArray,
    interval_s: float,
    day_ahead: DayAheadWindow | None,
) -> FloatArray:
    """The base level (the daily shape moved toward the day-ahead price) of the last
    `DRIFT_INTERVALS` settled intervals (fewer if history is shorter) followed by the next
    `intervals` from `now`."""
    profile = daily_profile(history, interval_s)
    per_day = profile.size
    settled = min(DRIFT_INTERVALS, history.size)
    offsets = np.arange(-settled, intervals)
    base = profile[offsets % per_day]
    if day_ahead is not None:
        weight = day_ahead_weight(
            now=now, history=history, interval_s=interval_s, day_ahead=day_ahead
        )
        known = day_ahead(now - timedelta(seconds=settled * interval_s), offsets.size, interval_s)
        base = np.where(np.isfinite(known), base + weight * (known - base), base)
    return np.asarray(base, dtype=np.float64)


def drift(history: FloatArray, base_settled: FloatArray) -> float:
    """The mean departure of the last settled prices from their base levels (aligned ends)."""
    count = min(base_settled.size, history.size)
    if count == 0:
        return 0.0
    return float(
        np.mean(history[history.size - count :] - base_settled[base_settled.size - count :])
    )


def step_means(
    base: FloatArray, drift_usd_per_mwh: float, step_s: tuple[float, ...], interval_s: float
) -> FloatArray:
    """Per step, the mean over the intervals it spans of the base plus the drift, which is
    whole for the first interval and fades with `DRIFT_TIME_CONSTANT_S` after it."""
    age_s = np.arange(base.size) * interval_s
    per_interval = base + drift_usd_per_mwh * np.exp(-age_s / DRIFT_TIME_CONSTANT_S)
    edges = np.concatenate(([0], np.round(np.cumsum(step_s) / interval_s).astype(np.int64)))
    sums = np.concatenate(([0.0], np.cumsum(per_interval)))
    spans = np.maximum(np.diff(edges), 1)
    ends = np.minimum(edges[1:], per_interval.size)
    return np.asarray((sums[ends] - sums[edges[:-1]]) / spans, dtype=np.float64)


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
    intervals = round(sum(step_s) / interval_s)
    levels = base_levels(
        now=now, intervals=intervals, history=history, interval_s=interval_s, day_ahead=day_ahead
    )
    settled = levels.size - intervals
    return step_means(levels[settled:], drift(history, levels[:settled]), step_s, interval_s)
