"""Readers for the recorded files of ERCOT's grid programs (see deploy/data/SOURCES.md): the
system load that 4CP is forecast from, the 4CP intervals and the transmission rate they are
billed at, grid events, and the day-ahead ancillary service prices a Load Resource earns.

The conventions are `gridpilot.adapters.recorded`'s: `read_*` takes a path and returns frozen
values with units in their names; every problem with a file is a `RecordedDataError` naming the
file and, where it applies, the line and the column; a lookup outside what was recorded is a
`NotRecordedError`. Hours without a value stay NaN (policy `LEFT_NAN`) and are listed as `Gap`s.
Times are timezone-aware UTC; the files' local times are Central prevailing time
(America/Chicago), with daylight saving.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import MappingProxyType

import numpy as np

from gridpilot.adapters.recorded import (
    CENTRAL,
    Gap,
    NotRecordedError,
    RecordedDataError,
    _complete,
    _day,
    _first_row,
    _nan_gaps,
    _number,
    _optional_number,
    _order_error,
    _rows,
    day_ahead_known_until,
    day_ahead_published_at,
    hour_ending_columns,
    hourly_window,
)
from gridpilot.optimizer.problem import FloatArray

LEFT_NAN = "left NaN: the file has no value for it"

# The day-ahead ancillary services and their columns in the day-ahead file: Regulation Up and
# Down, Responsive Reserve, Non-Spinning Reserve, ERCOT Contingency Reserve Service.
ANCILLARY_PRODUCTS = ("REGUP", "REGDN", "RRS", "NSPIN", "ECRS")

_HOUR_S = 3_600.0
_CP_INTERVAL = timedelta(minutes=15)
_RATE_ITEM = "ERCOT wholesale"
_RATE_UNIT = "USD per 4CP kW-year"


def _years(years: Iterable[int]) -> str:
    return ", ".join(str(year) for year in sorted(set(years)))


def _readonly(values: FloatArray) -> FloatArray:
    values.setflags(write=False)
    return values


def _utc(path: Path, line: int, column: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RecordedDataError(path, f"line {line}, {column}: not a timestamp: {text!r}") from None
    if moment.tzinfo is None:
        raise RecordedDataError(path, f"line {line}, {column}: no UTC offset: {text!r}")
    return moment.astimezone(UTC)


def _integer(path: Path, line: int, column: str, text: str) -> int:
    if not text.strip().isdigit():
        raise RecordedDataError(path, f"line {line}, {column}: not a whole number: {text!r}")
    return int(text)


# --- System load -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class SystemLoad:
    """ERCOT's hourly system load: `mw[i]` is the mean load, MW, of the hour starting at
    `start_utc[i]`; hours run without a break from the first to the last, NaN where the file
    has no value (listed in `gaps`)."""

    start_utc: tuple[datetime, ...]
    mw: FloatArray
    gaps: tuple[Gap, ...] = ()
    interval_s: float = _HOUR_S

    def hourly_index(self, moment: datetime) -> int:
        """Index of the hour containing `moment` (timezone-aware)."""
        if moment.tzinfo is None:
            raise ValueError("moment: must be timezone-aware")
        index = math.floor((moment - self.start_utc[0]).total_seconds() / self.interval_s)
        if not 0 <= index < len(self.start_utc):
            raise NotRecordedError(
                f"{moment.isoformat()} is outside the recorded system load ({self.span()})"
            )
        return index

    def settled(self, now: datetime) -> FloatArray:
        """The load of every hour that ended at or before `now`, in order (a read-only view):
        what a forecaster standing at `now` may know. Empty before the first hour ends."""
        if now.tzinfo is None:
            raise ValueError("now: must be timezone-aware")
        ended = math.floor((now - self.start_utc[0]).total_seconds() / self.interval_s)
        return self.mw[: min(max(ended, 0), len(self.mw))]

    def span(self) -> str:
        """The time the load covers, for messages."""
        end = self.start_utc[-1] + timedelta(seconds=self.interval_s)
        return f"{self.start_utc[0].isoformat()} to {end.isoformat()}"


def read_system_load(path: Path) -> SystemLoad:
    """Hourly ERCOT system load (`interval_end_utc`, hour ending with its UTC offset, and
    `ERCOT`, MW). Missing hours and empty cells are NaN, reported as gaps (policy `LEFT_NAN`);
    times off the hour, duplicated or out-of-order hours and negative loads are errors."""
    rows = _rows(path)
    first = _first_row(path, rows, ["interval_end_utc", "ERCOT"])
    stamps: list[float] = []
    loads: list[float] = []
    for line, row in enumerate([first, *rows], start=2):
        _complete(path, line, row, ("interval_end_utc", "ERCOT"))
        end = _utc(path, line, "interval_end_utc", row["interval_end_utc"])
        if (end.minute, end.second, end.microsecond) != (0, 0, 0):
            raise RecordedDataError(
                path, f"line {line}, interval_end_utc: {end.isoformat()} is not on the hour"
            )
        stamp = end.timestamp() - _HOUR_S
        if stamps and stamp <= stamps[-1]:
            raise _order_error(path, line, f"hour ending {end.isoformat()}", stamp == stamps[-1])
        load = _optional_number(path, line, "ERCOT", row["ERCOT"])
        if load < 0:
            raise RecordedDataError(path, f"line {line}, ERCOT: negative load {load:g} MW")
        stamps.append(stamp)
        loads.append(load)
    origin = datetime.fromtimestamp(stamps[0], UTC)
    index = np.rint((np.array(stamps) - stamps[0]) / _HOUR_S).astype(np.int64)
    values = np.full(int(index[-1]) + 1, np.nan)
    values[index] = loads
    grid = tuple(origin + i * timedelta(hours=1) for i in range(len(values)))
    return SystemLoad(grid, _readonly(values), _nan_gaps(values, origin, _HOUR_S, LEFT_NAN))


# --- 4CP intervals ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CoincidentPeak:
    """A month's 15-minute system peak: the interval from `start_utc` (15 minutes long) and the
    mean system load in it, MW. `official`: one of the year's settlement 4CP intervals (ERCOT
    report NP9-83-M); otherwise the month's peak from ERCOT's Demand and Energy workbook, which
    is almost always, but not always, the settlement interval."""

    year: int
    month: int
    start_utc: datetime
    mw: float
    official: bool


@dataclass(frozen=True, slots=True)
class CpIntervals:
    """The June-September coincident peaks per year, ordered by year and month."""

    peaks: tuple[CoincidentPeak, ...]

    @property
    def years(self) -> tuple[int, ...]:
        return tuple(sorted({peak.year for peak in self.peaks}))

    def official(self, year: int) -> tuple[datetime, ...]:
        """The starts (UTC) of `year`'s four settlement 4CP intervals, June to September."""
        starts = tuple(p.start_utc for p in self.peaks if p.year == year and p.official)
        if not starts:
            have = _years(p.year for p in self.peaks if p.official)
            raise NotRecordedError(
                f"no official 4CP intervals recorded for {year}; the file has them for {have}"
            )
        return starts

    def monthly_peaks(self, year: int) -> tuple[CoincidentPeak, ...]:
        """`year`'s monthly peaks, official or not, by month."""
        peaks = tuple(p for p in self.peaks if p.year == year)
        if not peaks:
            raise NotRecordedError(
                f"no coincident peaks recorded for {year}; the file covers {_years(self.years)}"
            )
        return peaks


def _flag(path: Path, line: int, column: str, text: str) -> bool:
    if text not in ("True", "False"):
        raise RecordedDataError(path, f"line {line}, {column}: not True or False: {text!r}")
    return text == "True"


def read_cp_intervals(path: Path) -> CpIntervals:
    """The monthly 15-minute coincident peaks (`year`, `month`, `interval_end_utc`,
    `interval_start_local`, `mw_15min`, `is_official_settlement_4cp`).

    Each interval starts 15 minutes before `interval_end_utc`, which must agree with
    `interval_start_local` (Central wall time) and lie in the row's year and month. A year and
    month appears once; a year with official intervals has exactly four, one per month."""
    needed = ["year", "month", "interval_end_utc", "interval_start_local", "mw_15min"]
    flag = "is_official_settlement_4cp"
    rows = _rows(path)
    first = _first_row(path, rows, [*needed, flag])
    peaks: list[CoincidentPeak] = []
    seen: set[tuple[int, int]] = set()
    for line, row in enumerate([first, *rows], start=2):
        _complete(path, line, row, [*needed, flag])
        year = _integer(path, line, "year", row["year"])
        month = _integer(path, line, "month", row["month"])
        start = _utc(path, line, "interval_end_utc", row["interval_end_utc"]) - _CP_INTERVAL
        local = start.astimezone(CENTRAL)
        text = row["interval_start_local"]
        if local.strftime("%Y-%m-%d %H:%M") != text.strip():
            raise RecordedDataError(
                path,
                f"line {line}, interval_start_local: {text!r} is not 15 minutes before"
                f" interval_end_utc ({local.strftime('%Y-%m-%d %H:%M')} Central)",
            )
        if (local.year, local.month) != (year, month):
            raise RecordedDataError(
                path, f"line {line}: the interval {text} is not in year {year}, month {month}"
            )
        if (year, month) in seen:
            raise RecordedDataError(path, f"line {line}: {year}-{month:02d} is listed twice")
        seen.add((year, month))
        mw = _number(path, line, "mw_15min", row["mw_15min"])
        peaks.append(CoincidentPeak(year, month, start, mw, _flag(path, line, flag, row[flag])))
    peaks.sort(key=lambda peak: (peak.year, peak.month))
    for year in {peak.year for peak in peaks if peak.official}:
        months = [p.month for p in peaks if p.year == year and p.official]
        if months != [6, 7, 8, 9]:
            raise RecordedDataError(
                path,
                f"{year} has official 4CP intervals in months {months}; a year has four,"
                " one each in June, July, August and September",
            )
    return CpIntervals(tuple(peaks))


# --- Transmission rates ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransmissionRate:
    """ERCOT's wholesale transmission rate billed in `charge_year` per kW of a load's mean
    demand in the 4CP intervals of `peaks_year` (the summer before), $/kW-yr, and its docket."""

    charge_year: int
    peaks_year: int
    usd_per_kw_year: float
    docket: str
    status: str


@dataclass(frozen=True, slots=True)
class TransmissionRates:
    """The wholesale rates by charge year, in order."""

    rates: tuple[TransmissionRate, ...]

    def rate(self, charge_year: int) -> TransmissionRate:
        """The rate billed in `charge_year`, with its docket and status."""
        for rate in self.rates:
            if rate.charge_year == charge_year:
                return rate
        have = _years(rate.charge_year for rate in self.rates)
        raise NotRecordedError(
            f"no ERCOT transmission rate recorded for charge year {charge_year}; the file has"
            f" {have}"
        )

    def for_charge_year(self, year: int) -> float:
        """The rate billed in `year`, $/kW-yr."""
        return self.rate(year).usd_per_kw_year

    def for_peaks_of(self, year: int) -> float:
        """The rate that `year`'s 4CP demand is billed at (in `year + 1`), $/kW-yr."""
        return self.rate(year + 1).usd_per_kw_year


def read_transmission_rates(path: Path) -> TransmissionRates:
    """ERCOT's wholesale transmission rates (`item`, `charge_year_or_effective`, `value`,
    `unit`, `basis_4cp_summer`, `docket_or_tariff`, `status`): only the rows whose item starts
    with "ERCOT wholesale"; other rows (utilities' retail riders) are not read. Each rate is in
    USD per 4CP kW-year, positive, based on the summer before its charge year, once per year."""
    needed = ["item", "charge_year_or_effective", "value", "unit", "basis_4cp_summer"]
    rows = _rows(path)
    first = _first_row(path, rows, [*needed, "docket_or_tariff", "status"])
    rates: list[TransmissionRate] = []
    for line, row in enumerate([first, *rows], start=2):
        if not (row["item"] or "").startswith(_RATE_ITEM):
            continue
        _complete(path, line, row, [*needed, "docket_or_tariff", "status"])
        year = _integer(path, line, "charge_year_or_effective", row["charge_year_or_effective"])
        if row["unit"] != _RATE_UNIT:
            raise RecordedDataError(
                path, f"line {line}, unit: {row['unit']!r}, expected {_RATE_UNIT!r}"
            )
        value = _number(path, line, "value", row["value"])
        if value <= 0:
            raise RecordedDataError(path, f"line {line}, value: {value:g} is not positive")
        basis = row["basis_4cp_summer"]
        if basis.strip() and _integer(path, line, "basis_4cp_summer", basis) != year - 1:
            raise RecordedDataError(
                path,
                f"line {line}, basis_4cp_summer: {basis}, but a rate billed in {year} is based"
                f" on the 4CP of {year - 1}",
            )
        if any(rate.charge_year == year for rate in rates):
            raise RecordedDataError(path, f"line {line}: charge year {year} is listed twice")
        rates.append(
            TransmissionRate(year, year - 1, value, row["docket_or_tariff"], row["status"])
        )
    if not rates:
        raise RecordedDataError(path, f"no row whose item starts with {_RATE_ITEM!r}")
    return TransmissionRates(tuple(sorted(rates, key=lambda rate: rate.charge_year)))


# --- Grid events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedGridEvent:
    """A grid event as reported: its Central operating `day`, `kind` (ERCOT's name for it,
    e.g. "EEA Level 2 (Emergency Operations)"), start and end (UTC; None where the report gives
    no time), whether those times are approximate, and the report's details."""

    day: date
    kind: str
    start_utc: datetime | None
    end_utc: datetime | None
    approximate: bool
    details: str


# "15:00", "~20:40", "~19:25-19:30" (a range: its earliest time is taken).
_LOCAL_TIME = re.compile(r"~?(\d{1,2}):(\d{2})(?:\s*-\s*~?\d{1,2}:\d{2})?")
_MONTH_ONLY = re.compile(r"\d{4}-\d{2}(?!-\d)\b.*")


def _event_time(path: Path, line: int, column: str, day: date, text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    match = _LOCAL_TIME.fullmatch(text)
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise RecordedDataError(
            path, f"line {line}, {column}: not a time like 15:00 or ~19:25-19:30: {text!r}"
        )
    local = time(int(match.group(1)), int(match.group(2)))
    return datetime.combine(day, local, CENTRAL).astimezone(UTC)


def read_grid_events(path: Path) -> tuple[RecordedGridEvent, ...]:
    """Reported grid events (`date`, `event_type`, `start_local_cpt`, `end_local_cpt`,
    `details`), in file order.

    Times are Central wall clock on the row's date. An approximate time ("~20:40") or a range
    ("~19:25-19:30") is read as its earliest time and marks the event `approximate`. An end
    before the start is on the next day. A row with a date but no times is kept with `start_utc`
    and `end_utc` None (the event happened that day, its hours unreported). A row whose date is
    only a month ("2024-06 (month)", a monthly summary such as "No ECRS or RRS deployments") is
    skipped: it is no event and has no day."""
    needed = ["date", "event_type", "start_local_cpt", "end_local_cpt", "details"]
    rows = _rows(path)
    first = _first_row(path, rows, needed)
    events: list[RecordedGridEvent] = []
    for line, row in enumerate([first, *rows], start=2):
        _complete(path, line, row, needed)
        if _MONTH_ONLY.fullmatch(row["date"].strip()):
            continue
        day = _day(path, line, "date", row["date"].strip())
        kind = row["event_type"].strip()
        if not kind:
            raise RecordedDataError(path, f"line {line}, event_type: empty")
        start = _event_time(path, line, "start_local_cpt", day, row["start_local_cpt"])
        end = _event_time(path, line, "end_local_cpt", day, row["end_local_cpt"])
        if start is not None and end is not None and end < start:
            end += timedelta(days=1)
        approximate = any(
            "~" in row[column] or "-" in row[column]
            for column in ("start_local_cpt", "end_local_cpt")
        )
        events.append(RecordedGridEvent(day, kind, start, end, approximate, row["details"].strip()))
    return tuple(events)


# --- Ancillary service prices ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class AncillaryPrices:
    """Hourly day-ahead ancillary service clearing prices, $/MW per hour, by product name
    (`ANCILLARY_PRODUCTS`): `usd_per_mw_h[product][i]` is the price of holding a MW ready in
    the hour starting at `start_utc[i]`, NaN where there is none (runs listed in `gaps`)."""

    start_utc: tuple[datetime, ...]
    usd_per_mw_h: Mapping[str, FloatArray]
    gaps: Mapping[str, tuple[Gap, ...]]
    interval_s: float = _HOUR_S

    @property
    def products(self) -> tuple[str, ...]:
        return tuple(self.usd_per_mw_h)

    def prices(self, product: str) -> FloatArray:
        """The product's hourly prices (read-only)."""
        try:
            return self.usd_per_mw_h[product]
        except KeyError:
            raise NotRecordedError(
                f"no day-ahead prices for {product!r}; this file has {', '.join(self.products)}"
            ) from None

    def window(
        self, product: str, start_utc: datetime, count: int, interval_s: float
    ) -> FloatArray:
        """The product's prices for `count` intervals of `interval_s` from `start_utc`: an
        interval within an hour takes that hour's price, one spanning hours their time-weighted
        mean; NaN where any part has no price or lies outside the file."""
        return hourly_window(
            self.prices(product),
            self.start_utc[0],
            start_utc,
            count,
            interval_s,
            values_interval_s=self.interval_s,
        )

    def published_at(self, delivery_start_utc: datetime) -> datetime:
        """When the prices of the hour starting at `delivery_start_utc` become known: with the
        day-ahead energy prices (`recorded.day_ahead_published_at`)."""
        return day_ahead_published_at(delivery_start_utc)

    def known_until(self, as_of_utc: datetime) -> datetime:
        """End (exclusive, UTC) of the prices published by `as_of_utc`, by the day-ahead
        rule of `recorded.day_ahead_known_until`."""
        return day_ahead_known_until(as_of_utc)


def read_ancillary_prices(path: Path) -> AncillaryPrices:
    """The day-ahead ancillary service prices of the day-ahead file (`delivery_date`,
    `hour_ending`, `AS_REGUP_DA`, `AS_REGDN_DA`, `AS_RRS_DA`, `AS_NSPIN_DA`, `AS_ECRS_DA`),
    hour-ending rows on Central days converted as `recorded.read_day_ahead_prices` does,
    daylight-saving days included. Missing rows and empty cells are NaN, reported per product
    as gaps (policy `LEFT_NAN`)."""
    columns = [f"AS_{product}_DA" for product in ANCILLARY_PRODUCTS]
    rows = _rows(path)
    first = _first_row(path, rows, ["delivery_date", "hour_ending", *columns])
    grid, series = hour_ending_columns(path, [first, *rows], columns)
    prices = {p: _readonly(v) for p, v in zip(ANCILLARY_PRODUCTS, series, strict=True)}
    gaps = {p: _nan_gaps(v, grid[0], _HOUR_S, LEFT_NAN) for p, v in prices.items()}
    return AncillaryPrices(grid, MappingProxyType(prices), MappingProxyType(gaps))


# --- CO2 intensity ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Co2Intensity:
    """ERCOT's hourly average CO2 intensity, kg per MWh generated: `kg_per_mwh[i]` is the
    hour starting at `start_utc + i` hours (hours run without a break)."""

    start_utc: datetime
    kg_per_mwh: FloatArray

    def hours_from(self, moment: datetime, count: int) -> FloatArray:
        """`count` hourly values from the hour starting at `moment`."""
        first = math.floor((moment - self.start_utc).total_seconds() / _HOUR_S)
        if first < 0 or first + count > self.kg_per_mwh.size:
            end = self.start_utc + timedelta(hours=self.kg_per_mwh.size)
            raise NotRecordedError(
                f"the CO2 intensity covers {self.start_utc.isoformat()} to {end.isoformat()},"
                f" not {count} hours from {moment.isoformat()}"
            )
        return self.kg_per_mwh[first : first + count]


def read_co2_intensity(path: Path) -> Co2Intensity:
    """`hour_start_utc` and `co2_intensity_kg_per_mwh` of the derived hourly file."""
    rows = _rows(path)
    first = _first_row(path, rows, ["hour_start_utc", "co2_intensity_kg_per_mwh"])
    starts: list[datetime] = []
    values: list[float] = []
    for line, row in enumerate((first, *rows), start=2):
        starts.append(_utc(path, line, "hour_start_utc", row["hour_start_utc"]))
        values.append(
            _number(path, line, "co2_intensity_kg_per_mwh", row["co2_intensity_kg_per_mwh"])
        )
        if len(starts) > 1 and starts[-1] - starts[-2] != timedelta(hours=1):
            raise RecordedDataError(path, f"line {line}: not the hour after the line before")
    return Co2Intensity(starts[0], _readonly(np.asarray(values, dtype=np.float64)))
