"""Readers for recorded files (see deploy/data/SOURCES.md for their shapes and provenance).

`read_*` functions take a path and return typed series; every problem with a file is a
`RecordedDataError` that names the file, and where it applies the line and the column.

Missing data is never bridged silently. Each reader's policy, and every place it applied, is
reported as a `Gap` on the series it returns:

- Real-time prices: a gap of up to `max_gap_s` (default one hour) is bridged by carrying the
  last price before it forward (policy `CARRIED_FORWARD`); a longer gap is an error, as are
  duplicated or out-of-order intervals. With `max_gap_s=math.inf` every gap is bridged and
  listed, for a caller that judges them against the part of the file it uses (the replay
  judges its window and the history before it). A row whose cell for the settlement point is
  empty is a missing interval like a missing row. The interval is the most common step in the
  file.
- Day-ahead prices: hours without a price stay NaN (policy `NO_FORECAST`): there is no forecast
  for them and the agent forecasts from history alone.
- Bitcoin fee share: a day with an empty cell has no value (`FeeShareSeries.on` gives None).

Times are timezone-aware UTC. ERCOT's operating day and its hour-ending labels are Central
prevailing time (America/Chicago), with daylight saving.

The grid programs' files (system load, 4CP, transmission rates, grid events, ancillary prices)
have their readers in `gridpilot.adapters.grid`, built on the helpers here: the hour-ending
conversion (`hour_ending_columns`), the day-ahead publication rule (`day_ahead_known_until`)
and the hourly window (`hourly_window`).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from gridpilot.optimizer.problem import FloatArray

CENTRAL = ZoneInfo("America/Chicago")

CARRIED_FORWARD = "carried forward: the last price before the gap"
NO_FORECAST = "no forecast: the agent forecasts from history alone"

# ERCOT Nodal Protocols section 4.1.1 (Day-Ahead timeline): DAM offers close at 10:00 and ERCOT
# publishes DAM results by 13:30 Central on the day before the operating day (NPRR903 lets a
# delayed DAM publish as late as 19:00). The replay takes 13:30 as the moment they are known.
DAY_AHEAD_PUBLISHED_LOCAL = time(13, 30)

_HOUR_S = 3_600.0


class RecordedDataError(ValueError):
    """A recorded data file that cannot be used as it is."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class NotRecordedError(KeyError):
    """A moment or day the recorded data does not cover. A KeyError, so lookups can be tried,
    but its message prints as written (a plain KeyError's str() is its quoted repr)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, slots=True)
class Gap:
    """`missing_intervals` intervals from `start_utc` up to `end_utc` (exclusive) that the file
    has no value for, and what the reader did about them (`policy`)."""

    start_utc: datetime
    end_utc: datetime
    missing_intervals: int
    policy: str


@dataclass(frozen=True, slots=True, eq=False)
class PriceSeries:
    """Prices at a settlement point: `start_utc[i]` begins an interval of `interval_s`.
    Intervals the reader bridged are listed in `gaps`."""

    settlement_point: str
    start_utc: tuple[datetime, ...]
    usd_per_mwh: FloatArray
    interval_s: float
    gaps: tuple[Gap, ...] = ()

    def index_of(self, moment: datetime) -> int:
        """Index of the interval containing `moment` (timezone-aware)."""
        offset = (moment - self.start_utc[0]).total_seconds()
        index = math.floor(offset / self.interval_s)
        if not 0 <= index < len(self.start_utc):
            raise NotRecordedError(
                f"{moment.isoformat()} is outside the recorded prices ({self.span()})"
            )
        return index

    def span(self) -> str:
        """The time the prices cover, for messages."""
        end = self.start_utc[-1] + timedelta(seconds=self.interval_s)
        return f"{self.start_utc[0].isoformat()} to {end.isoformat()}"


@dataclass(frozen=True, slots=True, eq=False)
class DayAheadSeries:
    """Hourly day-ahead prices at a settlement point, $/MWh, NaN where there is none:
    `start_utc[i]` begins the hour `usd_per_mwh[i]` is for. Runs of NaN are listed in `gaps`."""

    settlement_point: str
    start_utc: tuple[datetime, ...]
    usd_per_mwh: FloatArray
    gaps: tuple[Gap, ...]
    interval_s: float = _HOUR_S

    def window(self, start_utc: datetime, count: int, interval_s: float) -> FloatArray:
        """The forecast for `count` intervals of `interval_s` from `start_utc`: the
        time-weighted mean of the hourly prices each interval covers (so a quarter hour repeats
        its hour's price), NaN where any part of it has no price or lies outside the file."""
        return hourly_window(
            self.usd_per_mwh,
            self.start_utc[0],
            start_utc,
            count,
            interval_s,
            values_interval_s=self.interval_s,
        )

    def published_at(self, delivery_start_utc: datetime) -> datetime:
        """When the price for the hour starting at `delivery_start_utc` becomes known (see
        `day_ahead_published_at`)."""
        return day_ahead_published_at(delivery_start_utc)

    def known_until(self, as_of_utc: datetime) -> datetime:
        """End (exclusive, UTC) of the prices published by `as_of_utc` (see
        `day_ahead_known_until`)."""
        return day_ahead_known_until(as_of_utc)


def day_ahead_published_at(delivery_start_utc: datetime) -> datetime:
    """When a day-ahead result for the hour starting at `delivery_start_utc` becomes known:
    13:30 Central on the day before its operating day (ERCOT DAM timeline, see module notes).
    Energy and ancillary service prices clear in the same market and publish together."""
    operating_day = delivery_start_utc.astimezone(CENTRAL).date()
    published = datetime.combine(
        operating_day - timedelta(days=1), DAY_AHEAD_PUBLISHED_LOCAL, CENTRAL
    )
    return published.astimezone(UTC)


def day_ahead_known_until(as_of_utc: datetime) -> datetime:
    """End (exclusive, UTC) of the last operating day whose day-ahead results are published by
    `as_of_utc`: tomorrow's end from 13:30 Central on, today's end before."""
    local = as_of_utc.astimezone(CENTRAL)
    days_ahead = 2 if local.time() >= DAY_AHEAD_PUBLISHED_LOCAL else 1
    end = datetime.combine(local.date() + timedelta(days=days_ahead), time(0), CENTRAL)
    return end.astimezone(UTC)


def hourly_window(
    values: FloatArray,
    first_utc: datetime,
    start_utc: datetime,
    count: int,
    interval_s: float,
    *,
    values_interval_s: float = _HOUR_S,
) -> FloatArray:
    """`count` intervals of `interval_s` from `start_utc` over a piecewise-constant series
    whose `values[i]` holds from `first_utc + i * values_interval_s`: each interval is the
    time-weighted mean of the values it covers (an interval inside one of them takes that
    value), NaN where any part of it has no value or lies outside the series."""
    if start_utc.tzinfo is None:
        raise ValueError("start_utc: must be timezone-aware")
    if count < 0 or interval_s <= 0:
        raise ValueError("count must be >= 0 and interval_s > 0")
    step = values_interval_s
    offset = (start_utc - first_utc).total_seconds()
    begin = offset + interval_s * np.arange(count, dtype=np.float64)
    end = begin + interval_s
    span = step * len(values)
    inside = (begin >= 0) & (end <= span)
    first = np.clip(np.floor(begin / step).astype(np.int64), 0, None)
    last = np.clip(np.ceil(end / step).astype(np.int64) - 1, 0, None)
    single = inside & (first == last)
    result = np.full(count, np.nan)
    result[single] = values[first[single]]
    spread = inside & ~single
    if spread.any():
        # Piecewise-constant values integrate exactly by interpolating their running sum.
        missing = np.isnan(values)
        edges = step * np.arange(len(values) + 1, dtype=np.float64)
        energy = np.concatenate(([0.0], np.cumsum(np.where(missing, 0.0, values))))
        holes = np.concatenate(([0.0], np.cumsum(missing)))
        lo, hi = begin[spread], end[spread]
        total = np.interp(hi, edges, energy) - np.interp(lo, edges, energy)
        unpriced = np.interp(hi, edges, holes) - np.interp(lo, edges, holes)
        mean = total * step / interval_s
        result[spread] = np.where(unpriced > 1e-9, np.nan, mean)
    return result


@dataclass(frozen=True, slots=True, eq=False)
class HashpriceSeries:
    """Daily hashprice, $/TH/s/day, by UTC calendar day."""

    days: tuple[date, ...]
    usd_per_th_day: FloatArray

    def on(self, day: date) -> float:
        index = (day - self.days[0]).days
        if not 0 <= index < len(self.days):
            raise NotRecordedError(
                f"no hashprice recorded for {day.isoformat()} (the Bitcoin data covers"
                f" {self.days[0].isoformat()} to {self.days[-1].isoformat()})"
            )
        return float(self.usd_per_th_day[index])


@dataclass(frozen=True, slots=True, eq=False)
class FeeShareSeries:
    """Transaction fees' share of miner revenue (0 to 1) by UTC calendar day, NaN where the
    file has no value."""

    days: tuple[date, ...]
    fee_share: FloatArray

    def on(self, day: date) -> float | None:
        """The day's fee share, or None if the file has no value for it."""
        index = (day - self.days[0]).days
        if not 0 <= index < len(self.days) or math.isnan(self.fee_share[index]):
            return None
        return float(self.fee_share[index])


@dataclass(frozen=True, slots=True, eq=False)
class GpuTrace:
    """Per-GPU power of one node at a fixed step: `gpu_watts[i, k]` is GPU k's draw in watts
    `i * interval_s` seconds after the recording began. Shape (samples, gpus)."""

    interval_s: float
    gpu_watts: FloatArray

    @property
    def samples(self) -> int:
        return int(self.gpu_watts.shape[0])

    @property
    def gpus(self) -> int:
        return int(self.gpu_watts.shape[1])

    @property
    def duration_s(self) -> float:
        return self.samples * self.interval_s

    def node_watts(self) -> FloatArray:
        """The node's GPU draw (sum over its GPUs), watts per sample."""
        return np.asarray(self.gpu_watts.sum(axis=1), dtype=np.float64)


def _rows(path: Path) -> Iterator[dict[str, str]]:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise RecordedDataError(path, f"cannot read: {error.strerror or error}") from error
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise RecordedDataError(path, f"not a valid gzip file: {error}") from error
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RecordedDataError(path, f"not UTF-8 text: {error}") from error
    yield from csv.DictReader(io.StringIO(text))


def _first_row(path: Path, rows: Iterator[dict[str, str]], needed: list[str]) -> dict[str, str]:
    first = next(rows, None)
    if first is None:
        raise RecordedDataError(path, "no rows")
    _require_columns(path, list(first.keys()), needed)
    return first


def _require_columns(path: Path, header: list[str] | None, needed: list[str]) -> None:
    missing = [column for column in needed if column not in (header or [])]
    if missing:
        raise RecordedDataError(
            path, f"missing column(s) {', '.join(missing)}; found: {', '.join(header or [])}"
        )


def _complete(path: Path, line: int, row: dict[str, str], columns: Iterable[str]) -> None:
    """A row cut short has no cell (None) for its last columns: an error, not a crash later."""
    for column in columns:
        if row.get(column) is None:
            raise RecordedDataError(path, f"line {line}, {column}: missing cell (short row)")


def _number(path: Path, line: int, column: str, text: str | None) -> float:
    if text is None:
        raise RecordedDataError(path, f"line {line}, {column}: missing cell")
    try:
        value = float(text)
    except ValueError:
        raise RecordedDataError(path, f"line {line}, {column}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise RecordedDataError(path, f"line {line}, {column}: not a finite number: {text!r}")
    return value


def _optional_number(path: Path, line: int, column: str, text: str | None) -> float:
    """A number, or NaN for an empty cell."""
    if text is not None and not text.strip():
        return math.nan
    return _number(path, line, column, text)


def _day(path: Path, line: int, column: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise RecordedDataError(path, f"line {line}, {column}: not a date: {text!r}") from None


def _daily_days(path: Path, line: int, day: date, days: list[date]) -> None:
    if days and day != days[-1] + timedelta(days=1):
        raise RecordedDataError(
            path, f"line {line}: {day.isoformat()} does not follow {days[-1].isoformat()}"
        )


def _order_error(path: Path, line: int, what: str, same: bool) -> RecordedDataError:
    return RecordedDataError(
        path, f"line {line}: {what} is {'duplicated' if same else 'out of order'}"
    )


def read_realtime_prices(
    path: Path, settlement_point: str, *, max_gap_s: float = 3_600.0
) -> PriceSeries:
    """Real-time prices in the wide shape: `interval_start_utc` plus one column per settlement
    point. Gaps of up to `max_gap_s` are bridged with the last price and reported in
    `PriceSeries.gaps`; longer gaps, duplicated or out-of-order intervals are errors.
    `max_gap_s=math.inf` bridges (and reports) every gap, leaving the judgement to the caller."""
    if not max_gap_s >= 0:  # NaN too
        raise ValueError("max_gap_s: must be >= 0 (math.inf bridges every gap)")
    rows = _rows(path)
    first = _first_row(path, rows, ["interval_start_utc"])
    header = list(first.keys())
    if settlement_point not in header:
        points = [c for c in header if c.startswith(("HB_", "LZ_")) or c.isupper()]
        raise RecordedDataError(
            path,
            f"unknown settlement point {settlement_point!r}; this file has: {', '.join(points)}",
        )
    starts: list[datetime] = []
    prices: list[float] = []
    lines: list[int] = []  # the file's line of each priced interval, for messages
    for line, row in enumerate([first, *rows], start=2):
        text = row["interval_start_utc"]
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise RecordedDataError(
                path, f"line {line}, interval_start_utc: not a timestamp: {text!r}"
            ) from None
        if moment.tzinfo is None:
            raise RecordedDataError(path, f"line {line}, interval_start_utc: no UTC offset")
        cell = row[settlement_point]
        if cell is not None and not cell.strip():
            continue  # no price for this interval: a gap, bridged or refused below
        starts.append(moment.astimezone(UTC))
        prices.append(_number(path, line, settlement_point, cell))
        lines.append(line)
    if len(starts) < 2:
        raise RecordedDataError(path, f"fewer than two intervals priced at {settlement_point}")
    steps = np.diff(np.array([s.timestamp() for s in starts]))
    if (steps <= 0).any():
        bad = int(np.flatnonzero(steps <= 0)[0])
        raise _order_error(
            path, lines[bad + 1], f"interval {starts[bad + 1].isoformat()}", bool(steps[bad] == 0)
        )
    # The most common step is the interval: one stray timestamp must not redefine the grid.
    distinct, counts = np.unique(steps, return_counts=True)
    interval_s = float(distinct[np.argmax(counts)])
    span = np.rint(steps / interval_s).astype(np.int64)
    off_grid = (span == 0) | (np.abs(steps - span * interval_s) > 1e-6)
    if off_grid.any():
        bad = int(np.flatnonzero(off_grid)[0])
        raise RecordedDataError(
            path,
            f"line {lines[bad + 1]}: interval {starts[bad + 1].isoformat()} is not on the"
            f" {interval_s / 60:g}-minute grid of the rest of the file",
        )
    step = timedelta(seconds=interval_s)
    gaps: list[Gap] = []
    for bad in np.flatnonzero(span > 1).tolist():
        missing = int(span[bad]) - 1
        if missing * interval_s > max_gap_s:
            raise RecordedDataError(
                path,
                f"gap after {starts[bad].isoformat()}: next interval starts"
                f" {steps[bad] / 60:.0f} min later instead of {interval_s / 60:.0f}"
                f" ({missing} missing; gaps of up to {max_gap_s / 60:g} min are bridged)",
            )
        gaps.append(Gap(starts[bad] + step, starts[bad + 1], missing, CARRIED_FORWARD))
    count = int(span.sum()) + 1
    grid = tuple(starts[0] + i * step for i in range(count))
    filled = np.repeat(np.array(prices), np.append(span, 1))
    return PriceSeries(settlement_point, grid, filled, interval_s, tuple(gaps))


def _hour_ending_start_utc(day: date, hour_ending: int) -> datetime | None:
    """UTC start of ERCOT hour ending `hour_ending` (1-24) on Central operating day `day`: local
    wall time (hour_ending - 1):00, its first occurrence on the fall-back day (fold=0). None on
    the spring-forward day for the hour that does not exist."""
    local = datetime.combine(day, time(hour_ending - 1), CENTRAL)
    utc = local.astimezone(UTC)
    if utc.astimezone(CENTRAL).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None
    return utc


def _nan_gaps(
    values: FloatArray, first_utc: datetime, interval_s: float, policy: str
) -> tuple[Gap, ...]:
    missing = np.isnan(values).astype(np.int8)
    edges = np.diff(np.concatenate(([0], missing, [0])))
    begins = np.flatnonzero(edges == 1).tolist()
    ends = np.flatnonzero(edges == -1).tolist()
    step = timedelta(seconds=interval_s)
    return tuple(
        Gap(first_utc + b * step, first_utc + e * step, e - b, policy)
        for b, e in zip(begins, ends, strict=True)
    )


def read_day_ahead_prices(path: Path, settlement_point: str) -> DayAheadSeries:
    """Hourly day-ahead prices (`delivery_date`, `hour_ending`, `<POINT>_DA`) as a gap-free
    hourly UTC series over the span the file covers, NaN where it has no price.

    Hour ending h starts at local wall time (h - 1):00 on the Central delivery date. On the
    spring-forward day hour ending 3 (02:00-03:00) does not exist: a row for it is skipped if
    its price is empty and is an error if it carries one. On the fall-back day the file has
    24 rows, so hour ending 2 is the first 01:00-02:00 (CDT) and the repeated hour (CST) has no
    price. Missing rows and empty cells are NaN, reported as gaps (policy `NO_FORECAST`).
    """
    rows = _rows(path)
    first = _first_row(path, rows, ["delivery_date", "hour_ending"])
    header = list(first.keys())
    column = f"{settlement_point}_DA"
    if column not in header:
        points = [
            c.removesuffix("_DA") for c in header if c.endswith("_DA") and not c.startswith("AS_")
        ]
        raise RecordedDataError(
            path,
            f"unknown settlement point {settlement_point!r} (no column {column});"
            f" this file has: {', '.join(points)}",
        )
    grid, (values,) = hour_ending_columns(path, [first, *rows], [column])
    gaps = _nan_gaps(values, grid[0], _HOUR_S, NO_FORECAST)
    return DayAheadSeries(settlement_point, grid, values, gaps)


def hour_ending_columns(
    path: Path, rows: Iterable[dict[str, str]], columns: Sequence[str]
) -> tuple[tuple[datetime, ...], tuple[FloatArray, ...]]:
    """The hourly UTC grid of ERCOT hour-ending rows (`delivery_date`, `hour_ending`, from
    line 2 of `path` on) and each of `columns` on it, NaN for empty cells and missing rows.
    The conversion and its daylight-saving rules are `read_day_ahead_prices`'s; a row for the
    hour that does not exist (spring forward) is skipped if all its `columns` are empty."""
    stamps: list[float] = []
    table: list[list[float]] = []
    previous: tuple[date, int] | None = None
    for line, row in enumerate(rows, start=2):
        _complete(path, line, row, ("delivery_date", "hour_ending", *columns))
        day = _day(path, line, "delivery_date", row["delivery_date"])
        text = row["hour_ending"]
        if not (text.strip().isdigit() and 1 <= int(text) <= 24):
            raise RecordedDataError(
                path, f"line {line}, hour_ending: not an hour from 1 to 24: {text!r}"
            )
        key = (day, int(text))
        if previous is not None and key <= previous:
            raise _order_error(
                path, line, f"{day.isoformat()} hour ending {key[1]}", key == previous
            )
        previous = key
        cells = [_optional_number(path, line, column, row[column]) for column in columns]
        start = _hour_ending_start_utc(*key)
        if start is None:
            for column, value in zip(columns, cells, strict=True):
                if not math.isnan(value):
                    raise RecordedDataError(
                        path,
                        f"line {line}, {column}: a price for hour ending {key[1]} on"
                        f" {day.isoformat()}, an hour that does not exist (clocks spring"
                        " forward)",
                    )
            continue
        stamps.append(start.timestamp())
        table.append(cells)
    if not stamps:
        raise RecordedDataError(path, "no hour that exists")
    origin = datetime.fromtimestamp(stamps[0], UTC)
    index = np.rint((np.array(stamps) - stamps[0]) / _HOUR_S).astype(np.int64)
    recorded = np.array(table, dtype=np.float64).reshape(len(stamps), len(columns))
    series = []
    for k in range(len(columns)):
        values = np.full(int(index[-1]) + 1, np.nan)
        values[index] = recorded[:, k]
        series.append(values)
    step = timedelta(hours=1)
    grid = tuple(origin + i * step for i in range(int(index[-1]) + 1))
    return grid, tuple(series)


def read_bitcoin_daily(path: Path) -> HashpriceSeries:
    """Daily subsidy-only hashprice from the network file (`date`,
    `hashprice_usd_per_th_day_subsidy_only`), one row per day without gaps."""
    column = "hashprice_usd_per_th_day_subsidy_only"
    rows = _rows(path)
    first = _first_row(path, rows, ["date", column])
    days: list[date] = []
    values: list[float] = []
    for line, row in enumerate([first, *rows], start=2):
        day = _day(path, line, "date", row["date"])
        _daily_days(path, line, day, days)
        days.append(day)
        values.append(_number(path, line, column, row[column]))
    return HashpriceSeries(tuple(days), np.array(values))


def read_fee_share(path: Path) -> FeeShareSeries:
    """Daily share of miner revenue paid as transaction fees (`date`, `fee_share`, 0 to 1), one
    row per day without gaps; an empty cell means no value for that day."""
    rows = _rows(path)
    first = _first_row(path, rows, ["date", "fee_share"])
    days: list[date] = []
    values: list[float] = []
    for line, row in enumerate([first, *rows], start=2):
        day = _day(path, line, "date", row["date"])
        _daily_days(path, line, day, days)
        value = _optional_number(path, line, "fee_share", row["fee_share"])
        if not (math.isnan(value) or 0 <= value <= 1):
            raise RecordedDataError(path, f"line {line}, fee_share: {value} is not in [0, 1]")
        days.append(day)
        values.append(value)
    return FeeShareSeries(tuple(days), np.array(values))


_GPU_COLUMN = re.compile(r"gpu(\d+)_power_w")


def read_gpu_trace(path: Path, *, interval_s: float = 0.1) -> GpuTrace:
    """Per-GPU power of one node (`elapsed_s`, `gpu0_power_w`, `gpu1_power_w`, ...).

    nvidia-smi polls are not exactly regular (90-130 ms apart in the bundled trace), so the
    trace is resampled to a fixed `interval_s` from the first poll by linear interpolation on
    `elapsed_s`, up to the last poll. Elapsed times must increase strictly; watts must be finite
    and non-negative.
    """
    if interval_s <= 0:
        raise ValueError("interval_s: must be positive")
    rows = _rows(path)
    first = _first_row(path, rows, ["elapsed_s"])
    numbers = sorted(
        int(match.group(1))
        for column in first
        if column is not None and (match := _GPU_COLUMN.fullmatch(column))
    )
    if not numbers:
        raise RecordedDataError(path, "missing column(s) gpu0_power_w (no GPU power columns)")
    columns = [f"gpu{k}_power_w" for k in range(numbers[-1] + 1)]
    _require_columns(path, list(first.keys()), columns)
    elapsed: list[float] = []
    watts: list[list[float]] = []
    for line, row in enumerate([first, *rows], start=2):
        moment = _number(path, line, "elapsed_s", row["elapsed_s"])
        if elapsed and moment <= elapsed[-1]:
            raise _order_error(path, line, f"elapsed_s {moment:g}", moment == elapsed[-1])
        draw = [_number(path, line, column, row[column]) for column in columns]
        for column, value in zip(columns, draw, strict=True):
            if value < 0:
                raise RecordedDataError(path, f"line {line}, {column}: negative power {value}")
        elapsed.append(moment)
        watts.append(draw)
    if len(elapsed) < 2:
        raise RecordedDataError(path, "fewer than two polls")
    polls = np.array(elapsed)
    recorded: npt.NDArray[np.float64] = np.array(watts)
    grid = polls[0] + interval_s * np.arange(
        math.floor((polls[-1] - polls[0]) / interval_s + 1e-9) + 1
    )
    resampled = np.column_stack(
        [np.interp(grid, polls, recorded[:, k]) for k in range(recorded.shape[1])]
    )
    return GpuTrace(interval_s, resampled)
