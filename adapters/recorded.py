"""Readers for recorded telemetry files (see deploy/data/SOURCES.md for their shapes).

`read_*` functions take a path and return typed series; every problem with a file is a
`RecordedDataError` that names the file, and where it applies the row and the column.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from optimizer.problem import FloatArray


class RecordedDataError(ValueError):
    """A recorded data file that cannot be used as it is."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True, slots=True, eq=False)
class PriceSeries:
    """Prices at a settlement point: `start_utc[i]` begins an interval of `interval_s`."""

    settlement_point: str
    start_utc: tuple[datetime, ...]
    usd_per_mwh: FloatArray
    interval_s: float

    def index_of(self, moment: datetime) -> int:
        """Index of the interval containing `moment` (timezone-aware)."""
        offset = (moment - self.start_utc[0]).total_seconds()
        index = math.floor(offset / self.interval_s)
        if not 0 <= index < len(self.start_utc):
            raise KeyError(f"{moment.isoformat()} is outside the recorded prices")
        return index


@dataclass(frozen=True, slots=True, eq=False)
class HashpriceSeries:
    """Daily hashprice, $/TH/s/day, by UTC calendar day."""

    days: tuple[date, ...]
    usd_per_th_day: FloatArray

    def on(self, day: date) -> float:
        index = (day - self.days[0]).days
        if not 0 <= index < len(self.days):
            raise KeyError(f"no hashprice recorded for {day.isoformat()}")
        return float(self.usd_per_th_day[index])


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
    yield from csv.DictReader(io.StringIO(raw.decode("utf-8")))


def _require_columns(path: Path, header: list[str] | None, needed: list[str]) -> None:
    missing = [column for column in needed if column not in (header or [])]
    if missing:
        raise RecordedDataError(
            path, f"missing column(s) {', '.join(missing)}; found: {', '.join(header or [])}"
        )


def _number(path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RecordedDataError(path, f"line {line}, {column}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise RecordedDataError(path, f"line {line}, {column}: not a finite number: {text!r}")
    return value


def read_realtime_prices(path: Path, settlement_point: str) -> PriceSeries:
    """Real-time prices in the wide shape: `interval_start_utc` plus one column per settlement
    point, at a fixed interval. Duplicated, unsorted or missing intervals are errors here;
    bridging gaps is the caller's documented choice, not a silent one."""
    rows = _rows(path)
    first = next(rows, None)
    if first is None:
        raise RecordedDataError(path, "no rows")
    header = list(first.keys())
    _require_columns(path, header, ["interval_start_utc"])
    if settlement_point not in header:
        points = [c for c in header if c.startswith(("HB_", "LZ_")) or c.isupper()]
        raise RecordedDataError(
            path,
            f"unknown settlement point {settlement_point!r}; this file has: {', '.join(points)}",
        )
    starts: list[datetime] = []
    prices: list[float] = []
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
        starts.append(moment.astimezone(UTC))
        prices.append(_number(path, line, settlement_point, row[settlement_point]))
    steps = np.diff(np.array([s.timestamp() for s in starts]))
    if len(starts) < 2:
        raise RecordedDataError(path, "fewer than two intervals")
    if (steps <= 0).any():
        bad = int(np.flatnonzero(steps <= 0)[0])
        kind = "duplicated" if steps[bad] == 0 else "out of order"
        raise RecordedDataError(
            path, f"line {bad + 3}: interval {starts[bad + 1].isoformat()} is {kind}"
        )
    interval_s = float(np.min(steps))
    if (steps != interval_s).any():
        bad = int(np.flatnonzero(steps != interval_s)[0])
        raise RecordedDataError(
            path,
            f"gap after {starts[bad].isoformat()}: next interval starts"
            f" {steps[bad] / 60:.0f} min later instead of {interval_s / 60:.0f}",
        )
    return PriceSeries(settlement_point, tuple(starts), np.array(prices), interval_s)


def read_bitcoin_daily(path: Path) -> HashpriceSeries:
    """Daily subsidy-only hashprice from the network file (`date`,
    `hashprice_usd_per_th_day_subsidy_only`), one row per day without gaps."""
    rows = _rows(path)
    first = next(rows, None)
    if first is None:
        raise RecordedDataError(path, "no rows")
    column = "hashprice_usd_per_th_day_subsidy_only"
    _require_columns(path, list(first.keys()), ["date", column])
    days: list[date] = []
    values: list[float] = []
    for line, row in enumerate([first, *rows], start=2):
        try:
            day = date.fromisoformat(row["date"])
        except ValueError:
            raise RecordedDataError(
                path, f"line {line}, date: not a date: {row['date']!r}"
            ) from None
        if days and day != days[-1] + timedelta(days=1):
            raise RecordedDataError(
                path, f"line {line}: {day.isoformat()} does not follow {days[-1].isoformat()}"
            )
        days.append(day)
        values.append(_number(path, line, column, row[column]))
    return HashpriceSeries(tuple(days), np.array(values))
