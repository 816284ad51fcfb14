"""The chance that an interval ahead is one of the year's four coincident peaks (4CP).

A load's transmission charge for the next year is its average demand in the 15-minute intervals
of ERCOT's system peak in each of June, July, August and September (docs/domain.md, "4CP"), so
the expected charge of a MW drawn in an interval is the chance that the interval is its month's
peak times a quarter of the yearly rate. The intervals are known only afterwards; this module
estimates the chance from the hourly system load settled by the moment of deciding, and nothing
after it:

- **Today's peak.** Yesterday's peak scaled by how today's load compares with yesterday's at
  the latest settled hour (a heat wave shows by mid-morning), never below today's highest load
  so far; once the evening has come (`PEAK_PASSED_HOUR`), today's highest load. Its error, by
  how many of today's hours have settled, is learned from past summers. A later day's peak is
  today's forecast with the spread of a day's change per day ahead.
- **Whether it is the month's.** A day holds the month's peak if its peak beats the month's
  highest so far and every day left in the month. How high the rest of a month's days reach,
  relative to the mean of the two weeks' peaks before, is read off past summers, by how many
  days are left: the share of past days from which the rest of their month stayed below each
  level. The days left are not independent (a hot spell's days crowd under one ceiling, and a
  month cools towards its end), so they are judged together, as they came. The chance is
  integrated numerically over today's forecast.
- **When in the day.** The quarter hours in which past summers' daily peaks fell (Central
  time, from the hourly load: each peak hour shared evenly by its four quarters).

`calibrate` learns from the summers of the load it is given: the years before the one decided.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import numpy as np
import numpy.typing as npt

from gridpilot.adapters.recorded import CENTRAL
from gridpilot.optimizer.problem import FloatArray

CP_MONTHS = (6, 7, 8, 9)
QUARTERS_PER_DAY = 96
TRAILING_DAYS = 14
# The local hour from which a summer day's peak has passed: in 2019-2024 none peaked in an hour
# starting after 18:00 Central.
PEAK_PASSED_HOUR = 20
_GRID_POINTS = 161  # for the integral over today's peak, +-5 standard deviations
# Days left in a month, bucketed (1, 2-3, 4-7, 8-14, 15-21, 22+), and the levels at which past
# summers' rest-of-month peaks are read.
DAYS_LEFT_EDGES = np.array([1, 2, 4, 8, 15, 22])
LOG_LEVELS = np.linspace(-0.2, 0.2, 81)


@dataclass(frozen=True, slots=True, eq=False)
class HourlyLoad:
    """Hourly system load, MW, from `start_utc` on, one value per hour (hour beginning)."""

    start_utc: datetime
    mw: FloatArray


@dataclass(frozen=True, slots=True, eq=False)
class PeakModel:
    """What past summers say about forecasting a day's peak load and when it falls."""

    # Log error of today's peak forecast, by how many of today's hours have settled (0..24).
    sigma_by_hours_known: FloatArray
    # How far the day's peak follows its load ratio to the day before at the latest settled
    # hour, by hours settled: least squares over past summers (a morning's ratio is noisy).
    ratio_weight: FloatArray
    sigma_next_day: float  # log change of the peak from one day to the next
    # The share of past summer days from which the rest of the month stayed below a level,
    # by days left (rows: `DAYS_LEFT_EDGES` buckets) and level (columns: `LOG_LEVELS`, log of
    # the level over the mean of the two weeks' peaks before the day).
    rest_below: FloatArray
    peak_quarter: FloatArray  # (96,) chance that a day's peak falls in each Central quarter hour
    # What the chances are multiplied by so that, over past summers, they add up to the four
    # peaks there were (the parts above, each fair alone, together see too many: 3 to 4 times).
    scale: float = 1.0

    def beaten_by_none(
        self, level_mw: FloatArray, trailing_mw: float | FloatArray, days: int
    ) -> FloatArray:
        """The chance that no day of the `days` left in the month peaks above each of
        `level_mw`, the last two weeks' peaks averaging `trailing_mw` (or, per row of
        `level_mw`, each of its rows')."""
        if days <= 0:
            return np.ones(np.shape(level_mw))
        bucket = int(np.searchsorted(DAYS_LEFT_EDGES, days, side="right")) - 1
        ratios = np.log(np.asarray(level_mw) / trailing_mw)
        return np.asarray(np.interp(ratios, LOG_LEVELS, self.rest_below[bucket]), dtype=np.float64)


class _Days:
    """The load cut into Central days: where each day's hours start and end in the array."""

    def __init__(self, load: HourlyLoad) -> None:
        self.load = load
        starts: list[int] = []
        dates: list[date] = []
        hours: list[int] = []
        moment = load.start_utc
        for index in range(load.mw.size):
            local = moment.astimezone(CENTRAL)
            if not dates or dates[-1] != local.date():
                dates.append(local.date())
                starts.append(index)
            hours.append(local.hour)
            moment += timedelta(hours=1)
        self.dates = dates
        self.first = np.array(starts, dtype=np.int64)
        self.end = np.append(self.first[1:], load.mw.size)
        self.local_hour = np.array(hours, dtype=np.int64)
        self.peaks = np.maximum.reduceat(load.mw, self.first) if starts else np.zeros(0)
        self.index = {d: i for i, d in enumerate(dates)}

    def ratio(self, day: int, known: int) -> float:
        """Day `day`'s load over the day before's, at the latest of its first `known` hours
        (1 when none is known)."""
        if known == 0:
            return 1.0
        hours = self.load.mw[self.first[day] : self.first[day] + known]
        yesterday = self.load.mw[self.first[day - 1] : self.end[day - 1]]
        last = min(hours.size, yesterday.size) - 1
        return float(hours[last] / yesterday[last])

    def forecast(self, day: int, known: int, weight: float = 1.0) -> float:
        """Day `day`'s peak forecast from its first `known` hours and the day before: the
        day before's peak times their load ratio to the power `weight`, at least today's
        highest so far; its highest once the evening has come."""
        hours = self.load.mw[self.first[day] : self.first[day] + known]
        yesterday_peak = float(self.peaks[day - 1])
        if not hours.size:
            return yesterday_peak
        if self.local_hour[self.first[day] + known - 1] >= PEAK_PASSED_HOUR:
            return float(hours.max())
        return float(max(hours.max(), yesterday_peak * self.ratio(day, known) ** weight))


def calibrate(load: HourlyLoad) -> PeakModel:
    """Learn the model from the summers (June to September) of `load`."""
    days = _Days(load)
    summer = [
        i
        for i in range(TRAILING_DAYS, len(days.dates))
        if days.dates[i].month in CP_MONTHS and days.end[i] - days.first[i] == 24
    ]
    weights = np.ones(25)
    for known in range(1, 25):
        x = np.array([np.log(days.ratio(i, known)) for i in summer])
        y = np.array([np.log(days.peaks[i] / days.peaks[i - 1]) for i in summer])
        if float(x @ x) > 0:
            weights[known] = float(np.clip((x @ y) / (x @ x), 0.0, 1.5))
    errors: list[list[float]] = [[] for _ in range(25)]
    changes: list[float] = []
    below: list[list[FloatArray]] = [[] for _ in DAYS_LEFT_EDGES]
    counts = np.zeros(QUARTERS_PER_DAY)
    for i in range(TRAILING_DAYS, len(days.dates)):
        if days.dates[i].month not in CP_MONTHS or days.end[i] - days.first[i] != 24:
            continue
        peak = float(days.peaks[i])
        for known in range(25):
            errors[known].append(float(np.log(peak / days.forecast(i, known, weights[known]))))
        changes.append(float(np.log(peak / days.peaks[i - 1])))
        left = calendar.monthrange(days.dates[i].year, days.dates[i].month)[1] - days.dates[i].day
        if left and i + left < len(days.dates):
            trailing = days.peaks[i - TRAILING_DAYS : i].mean()
            rest = float(np.log(days.peaks[i + 1 : i + 1 + left].max() / trailing))
            bucket = int(np.searchsorted(DAYS_LEFT_EDGES, left, side="right")) - 1
            below[bucket].append((rest <= LOG_LEVELS).astype(np.float64))
        hour = int(
            days.local_hour[days.first[i] + int(np.argmax(load.mw[days.first[i] : days.end[i]]))]
        )
        counts[4 * hour : 4 * hour + 4] += 0.25
    if not changes:
        raise ValueError("the load holds no summer day with two weeks before it to learn from")
    rms = np.array([np.sqrt(np.mean(np.square(e))) for e in errors])
    model = PeakModel(
        # A floor: a forecast tied with the month's highest is never a certainty either way.
        sigma_by_hours_known=np.maximum(rms, 0.002),
        ratio_weight=weights,
        sigma_next_day=float(np.sqrt(np.mean(np.square(changes)))),
        rest_below=np.array(
            [np.mean(rows, axis=0) if rows else np.ones(LOG_LEVELS.size) for rows in below]
        ),
        peak_quarter=counts / counts.sum(),
    )
    return _recalibrated(model, load, days)


def _recalibrated(model: PeakModel, load: HourlyLoad, days: _Days) -> PeakModel:
    """`model` scaled so that its chances, asked each hour of the past summers as a replay
    would, add up to the number of monthly peaks those summers had. The hours' chances are
    worked out together (`PeakForecaster.chances_today`), each as `cp_chance` would."""
    forecaster = PeakForecaster(model, load, days)
    asked: list[tuple[int, int, int]] = []  # (day, hours of it settled, the hour's first quarter)
    months = 0
    hour = timedelta(hours=1)
    for year in sorted({d.year for d in days.dates}):
        first = datetime.combine(date(year, CP_MONTHS[0], 1), datetime.min.time(), CENTRAL)
        last = datetime.combine(date(year, CP_MONTHS[-1] + 1, 1), datetime.min.time(), CENTRAL)
        if first < load.start_utc + timedelta(days=TRAILING_DAYS + 1):
            continue
        if last > load.start_utc + hour * load.mw.size:
            continue
        moment = first  # Central: no clock change from June to September
        while moment < last:
            settled = forecaster.settled(moment)
            if settled is not None:
                asked.append((*settled, 4 * moment.hour))
            moment += hour
        months += len(CP_MONTHS)
    chances = forecaster.chances_today(
        np.array([a[0] for a in asked], dtype=np.int64),
        np.array([a[1] for a in asked], dtype=np.int64),
    )
    total = 0.0
    for (_, _, quarter), chance in zip(asked, chances.tolist(), strict=True):
        total += float((model.scale * chance * model.peak_quarter[quarter : quarter + 4]).sum())
    if months == 0 or total <= 0:
        return model
    return replace(model, scale=months / total)


class PeakForecaster:
    """`cp_chance` over one load series, its days indexed once. It reads only what has
    settled by the moment asked about: whole hours ended by then."""

    def __init__(self, model: PeakModel, load: HourlyLoad, days: _Days | None = None) -> None:
        self.model = model
        self.days = days if days is not None and days.load is load else _Days(load)

    def settled(self, now: datetime) -> tuple[int, int] | None:
        """The day `now` falls in (its index) and how many of its hours have settled by then;
        None where the load does not reach `now` or has not two weeks before it."""
        days = self.days
        settled = int((now - days.load.start_utc).total_seconds() // 3_600.0)
        if settled < 24 * (TRAILING_DAYS + 1) or settled > days.load.mw.size:
            return None
        today = int(np.searchsorted(days.first, settled, side="right")) - 1
        if days.dates[today] != now.astimezone(CENTRAL).date():  # past the load's end
            return None
        return today, settled - int(days.first[today])

    def cp_chance(self, *, now: datetime, intervals: int, interval_s: float) -> FloatArray:
        """Per interval from `now`, the chance that it is its month's coincident peak."""
        chance = np.zeros(intervals)
        at = self.settled(now)
        if at is None:
            return chance
        today, known = at
        start_local = now.astimezone(CENTRAL)
        last = (now + timedelta(seconds=(intervals - 1) * interval_s)).astimezone(CENTRAL)
        months = range(start_local.year * 12 + start_local.month - 1, last.year * 12 + last.month)
        if not any(m % 12 + 1 in CP_MONTHS for m in months):
            return chance  # no 4CP month in the span (most of the year)
        if start_local.utcoffset() == last.utcoffset():
            self._chance_by_clock(chance, start_local, interval_s, today=today, known=known)
        else:
            self._chance_by_conversion(chance, now, interval_s, today=today, known=known)
        return chance

    def _chance_by_clock(
        self,
        chance: FloatArray,
        start_local: datetime,
        interval_s: float,
        *,
        today: int,
        known: int,
    ) -> None:
        """Fill in `chance` where no clock change falls in its span (none does in June to
        September): the local clock runs evenly from the start, so each interval's day and
        quarter follow by arithmetic rather than a time-zone conversion each (this runs hourly
        in a replay)."""
        midnight = start_local.replace(hour=0, minute=0, second=0, microsecond=0)
        since_s = (start_local - midnight).total_seconds() + np.arange(chance.size) * interval_s
        day_offsets = (since_s // 86_400.0).astype(np.int64)
        quarters = ((since_s % 86_400.0) // 900.0).astype(np.int64)
        offsets = [
            offset
            for offset in np.unique(day_offsets).tolist()
            if (start_local.date() + timedelta(days=offset)).month in CP_MONTHS
        ]
        days = [start_local.date() + timedelta(days=offset) for offset in offsets]
        for offset, day_chance in zip(
            offsets, self._day_chances(days, today=today, known=known), strict=True
        ):
            on_day = day_offsets == offset
            chance[on_day] = (
                self.model.scale * day_chance * self.model.peak_quarter[quarters[on_day]]
            )

    def _chance_by_conversion(
        self, chance: FloatArray, now: datetime, interval_s: float, *, today: int, known: int
    ) -> None:
        """Fill in `chance` interval by interval, each converted to Central time: for a span
        across a clock change."""
        by_day: dict[date, float] = {}
        for k in range(chance.size):
            local = (now + timedelta(seconds=k * interval_s)).astimezone(CENTRAL)
            if local.month not in CP_MONTHS:
                continue
            day = local.date()
            if day not in by_day:
                by_day[day] = self._day_chance(day, today=today, known=known)
            quarter = 4 * local.hour + local.minute // 15
            chance[k] = self.model.scale * by_day[day] * self.model.peak_quarter[quarter]

    def _day_chance(self, day: date, *, today: int, known: int) -> float:
        """The chance that `day` (today or later) holds its month's peak, with `known` of
        today's hours settled."""
        forecast, sigma, bar, days_left, trailing = self._day_inputs(day, today=today, known=known)
        return month_peak_chance(
            self.model, forecast, sigma, bar_mw=bar, days_left=days_left, trailing_mw=trailing
        )

    def _day_chances(self, days: list[date], *, today: int, known: int) -> list[float]:
        """`_day_chance` of each of `days`, worked out together (the same figures): an hour's
        span of two days ahead holds two or three."""
        if len(days) < 2:
            return [self._day_chance(day, today=today, known=known) for day in days]
        inputs = [self._day_inputs(day, today=today, known=known) for day in days]
        return [float(c) for c in month_peak_chances(self.model, inputs)]

    def _day_inputs(
        self, day: date, *, today: int, known: int
    ) -> tuple[float, float, float, int, float]:
        """What `month_peak_chance` takes for `day`: today's peak forecast and its spread
        out to `day`, the bar `day` must beat, the days left after it and the trailing mean."""
        days, model = self.days, self.model
        forecast = days.forecast(today, known, float(model.ratio_weight[known]))
        sigma = float(model.sigma_by_hours_known[min(known, 24)])
        ahead = (day - days.dates[today]).days
        bar = self._bar(day, today)
        if ahead > 0:
            if days.dates[today].month == day.month:
                bar = max(bar, forecast)
            sigma = float(np.hypot(sigma, model.sigma_next_day * np.sqrt(ahead)))
        trailing = float(days.peaks[today - TRAILING_DAYS : today].mean())
        days_left = calendar.monthrange(day.year, day.month)[1] - day.day
        return forecast, sigma, bar, days_left, trailing

    def _bar(self, day: date, today: int) -> float:
        """The month's highest peak on the days before `day` (today's own hours are in its
        forecast, not in its bar; a later day adds today's forecast to it)."""
        days = self.days
        month_first = days.index.get(day.replace(day=1), 0)
        before = days.peaks[max(month_first, 0) : today]
        if before.size and days.dates[max(month_first, 0)].month == day.month:
            return float(before.max())
        return 0.0

    def chances_today(
        self, todays: npt.NDArray[np.int64], known: npt.NDArray[np.int64]
    ) -> FloatArray:
        """`_day_chance` of each day `todays[i]` for itself with `known[i]` of its hours
        settled, worked out together: the same figures, for a calibration's thousands."""
        dates = self.days.dates
        inputs = [
            self._day_inputs(dates[today], today=today, known=hours)
            for today, hours in zip(todays.tolist(), known.tolist(), strict=True)
        ]
        return month_peak_chances(self.model, inputs)


def month_peak_chance(
    model: PeakModel,
    forecast_mw: float,
    sigma: float,
    *,
    bar_mw: float,
    days_left: int,
    trailing_mw: float,
) -> float:
    """The chance that a day whose peak is lognormal around `forecast_mw` (log spread `sigma`)
    beats `bar_mw` and each of `days_left` later days spread around `trailing_mw`."""
    grid = np.log(forecast_mw) + sigma * np.linspace(-5.0, 5.0, _GRID_POINTS)
    # the normal density of the log peak
    weights = np.exp(-0.5 * ((grid - np.log(forecast_mw)) / sigma) ** 2) / (
        sigma * np.sqrt(2 * np.pi)
    )
    level = np.exp(grid)
    beats = np.where(level > bar_mw, model.beaten_by_none(level, trailing_mw, days_left), 0.0)
    return float(np.clip(np.trapezoid(weights * beats, grid), 0.0, 1.0))


def month_peak_chances(
    model: PeakModel, inputs: list[tuple[float, float, float, int, float]]
) -> FloatArray:
    """`month_peak_chance` of many days at once, from each one's (forecast MW, sigma, bar MW,
    days left, trailing MW), a row of the grid each, in the same operations (so the same
    figures)."""
    columns = zip(*inputs, strict=True)
    forecast, sigma, bar, days_left, trailing = (np.array(column) for column in columns)
    log_forecast = np.log(forecast)[:, None]
    spread = sigma[:, None]
    grid = log_forecast + spread * np.linspace(-5.0, 5.0, _GRID_POINTS)[None, :]
    weights = np.exp(-0.5 * ((grid - log_forecast) / spread) ** 2) / (spread * np.sqrt(2 * np.pi))
    level = np.exp(grid)
    beaten = np.ones_like(level)
    for days in np.unique(days_left[days_left > 0]).tolist():
        rows = days_left == days
        beaten[rows] = model.beaten_by_none(level[rows], trailing[rows, None], int(days))
    beats = np.where(level > bar[:, None], beaten, 0.0)
    return np.asarray(np.clip(np.trapezoid(weights * beats, grid), 0.0, 1.0), dtype=np.float64)


def as_load(start_utc: datetime, mw: npt.ArrayLike) -> HourlyLoad:
    """An `HourlyLoad` from a first hour start and its values."""
    return HourlyLoad(start_utc, np.asarray(mw, dtype=np.float64))
