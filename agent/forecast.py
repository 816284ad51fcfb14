"""Price forecasts from what is known at the moment of deciding, and nothing after it.

The forecast of each interval ahead is a base level plus the market's current drift from it:

- **The base** is the daily shape of real-time prices (the median of the same time of day over
  the past week, by the market's clock: Central for ERCOT, whose demand keeps to local time
  across daylight-saving changes), moved toward the day-ahead price where one was published
  before the decision (ERCOT publishes operating day D's around 13:30 Central on D-1). How far
  it moves is learned from the recent past, not assumed: the least-squares slope of the
  real-time prices' departures from the daily shape on the day-ahead prices' departures from it,
  over the settled intervals of the last `CALIBRATION_DAYS` days, clipped to [0, 1]. At ERCOT
  hubs an hour the day-ahead market prices high mostly settles far lower in real time (its mean
  is pulled up by the few spikes that happen), so taking the day-ahead price at face value makes
  the planner sleep miners ahead of spikes that mostly never come; the slope says how much of
  the day-ahead departure the real-time market has recently delivered. Without enough past pairs
  to judge (less than a day of them), the day-ahead price is taken as published.
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
from datetime import UTC, datetime, time, timedelta, tzinfo
from functools import cache

import numpy as np
import numpy.typing as npt

from gridpilot.adapters.recorded import CENTRAL
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


def daily_profile(
    history: FloatArray,
    interval_s: float,
    *,
    now: datetime,
    offsets: npt.NDArray[np.int64] | None = None,
    days: int = HISTORY_DAYS,
    zone: tzinfo = CENTRAL,
) -> FloatArray:
    """The daily shape as known at `now`: for each interval `offsets` (counted in intervals
    from `now`; default the next day's, 0 to intervals per day - 1), the median of `history`
    at the same clock time in `zone` on the `days` latest days it has a settled price for.
    `history` holds the settled prices of the intervals before `now`, the last one being the
    interval just ended. Less than a day of history gives a flat shape at its median (zero
    without any); NaN-free when history has any data.

    The market's clock, not UTC, is what repeats from day to day: on the day after a
    daylight-saving change the same Central hour was 23 or 25 hours earlier, not 24."""
    per_day = round(86_400.0 / interval_s)
    ahead = np.arange(per_day) if offsets is None else np.asarray(offsets, dtype=np.int64)
    if history.size < per_day:
        fill = float(np.nanmedian(history)) if history.size else 0.0
        return np.full(ahead.size, fill)
    end_s = now.timestamp()
    return _same_clock_medians(
        history,
        interval_s,
        end_s=end_s,
        positions=history.size + ahead,
        known=np.full(ahead.size, history.size),
        days=days,
        zone=zone,
    )


def past_profiles(
    history: FloatArray,
    interval_s: float,
    days: int,
    profile_days: int = HISTORY_DAYS,
    *,
    now: datetime,
    zone: tzinfo = CENTRAL,
) -> FloatArray:
    """The daily profile as it was known before each of the last `days` whole days of
    `history` (which ends at `now`): shape (days * intervals per day,), aligned with
    `history[-days * per_day:]`, each value the median of the same clock time in `zone` over
    the `profile_days` days before its own day (see `daily_profile`). Days without
    `profile_days` days before them are left out (the result is shorter)."""
    per_day = round(86_400.0 / interval_s)
    days = min(days, history.size // per_day - profile_days)
    if days <= 0:
        return np.empty(0)
    first = history.size - days * per_day
    within = np.arange(days * per_day)
    return _same_clock_medians(
        history,
        interval_s,
        end_s=now.timestamp(),
        positions=first + within,
        known=first + within // per_day * per_day,  # each day sees only the days before it
        days=profile_days,
        zone=zone,
    )


def _same_clock_medians(
    history: FloatArray,
    interval_s: float,
    *,
    end_s: float,
    positions: npt.NDArray[np.int64],
    known: npt.NDArray[np.int64],
    days: int,
    zone: tzinfo,
) -> FloatArray:
    """For each interval `positions[i]` (an index on `history`'s grid, which ends at `end_s`;
    past its end for the intervals ahead), the median of `history[:known[i]]` at the same
    clock time in `zone` on the `days` latest days that have it, NaN-free.

    The same clock time m days before an instant t is t - m days + (offset at t - offset at
    t - m days): an hour less or more than m days across a daylight-saving change."""
    per_day = round(86_400.0 / interval_s)
    # The latest day before `known` by elapsed time, and the `days` before it.
    latest = (positions - known) // per_day + 1
    lags = latest + np.arange(days)[:, None]  # (days, K)
    moments_s = end_s - (history.size - positions) * interval_s
    earliest_s = float((moments_s - lags[-1] * 86_400.0).min()) - 86_400.0
    changes_s, offsets_s = _offset_changes(
        zone,
        datetime.fromtimestamp(earliest_s, UTC).year,
        datetime.fromtimestamp(float(moments_s.max()), UTC).year,
    )
    changes_before = np.searchsorted(changes_s, [earliest_s, moments_s.max()], side="right")
    if changes_before[0] == changes_before[1]:
        # No change of offset in the span (most of the year): whole days back.
        chosen = positions - lags * per_day
    else:
        # Across a change the latest day with the clock time may be one later or earlier than
        # by elapsed time: take the latest `days` that are known of the lags around them.
        lags = latest - 1 + np.arange(days + 2)[:, None]
        offset_now = offsets_s[np.searchsorted(changes_s, moments_s, side="right")]
        offset_then = offsets_s[
            np.searchsorted(changes_s, moments_s - lags * 86_400.0, side="right")
        ]
        shift = np.rint((offset_now - offset_then) / interval_s).astype(np.int64)
        index = positions - lags * per_day + shift
        # Only the first two can lie at or past `known` (a shift is less than a day).
        skip = (index[0] >= known).astype(np.int64) + (index[1] >= known)
        chosen = np.take_along_axis(index, skip + np.arange(days)[:, None], axis=0)
    values = history[np.clip(chosen, 0, history.size - 1)]
    if chosen.min() >= 0:
        return np.asarray(np.median(values, axis=0), dtype=np.float64)
    # Days before the history began: the median of the days there are.
    present = chosen >= 0
    result = np.full(positions.size, float(np.nanmedian(history)))
    some = present.any(axis=0)
    result[some] = np.nanmedian(np.where(present, values, np.nan)[:, some], axis=0)
    return result


@cache
def _offset_changes(zone: tzinfo, first_year: int, last_year: int) -> tuple[FloatArray, FloatArray]:
    """The instants (UTC epoch seconds) in UTC years `first_year` to `last_year` at which
    `zone`'s UTC offset changes, and the offsets in seconds before the first of them and after
    each: found hour by hour, then to the second (a few milliseconds a year, once)."""

    def offset_s(moment_s: float) -> float:
        delta = datetime.fromtimestamp(moment_s, zone).utcoffset()
        return delta.total_seconds() if delta is not None else 0.0

    start_s = datetime(first_year, 1, 1, tzinfo=UTC).timestamp()
    end_s = datetime(last_year + 1, 1, 1, tzinfo=UTC).timestamp()
    hours = np.arange(start_s, end_s + 1.0, 3_600.0)
    offsets = np.array([offset_s(float(h)) for h in hours])
    changed = np.flatnonzero(np.diff(offsets))
    instants = []
    for i in changed.tolist():
        before, after = float(hours[i]), float(hours[i + 1])
        while after - before > 1.0:
            middle = (before + after) // 2
            if offset_s(middle) == offsets[i]:
                before = middle
            else:
                after = middle
        instants.append(after)
    changes_s = np.array(instants, dtype=np.float64)
    offsets_s = np.concatenate((offsets[:1], offsets[changed + 1]))
    changes_s.flags.writeable = False
    offsets_s.flags.writeable = False
    return changes_s, offsets_s


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
    profiles = past_profiles(settled, interval_s, CALIBRATION_DAYS, now=end)
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
    settled = min(DRIFT_INTERVALS, history.size)
    offsets = np.arange(-settled, intervals)
    base = daily_profile(history, interval_s, now=now, offsets=offsets)
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
    if len(step_s) == base.size and all(s == interval_s for s in step_s):
        # A step per interval (the re-plan test's hour ahead): the mean is the value.
        return np.asarray(per_interval, dtype=np.float64)
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
