"""Readers of ERCOT's grid-program files: the bundled files reproduce their provenance figures,
and a bad file fails naming the file, the line and the column."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from gridpilot.adapters.grid import (
    ANCILLARY_PRODUCTS,
    LEFT_NAN,
    AncillaryPrices,
    CpIntervals,
    SystemLoad,
    read_ancillary_prices,
    read_cp_intervals,
    read_grid_events,
    read_system_load,
    read_transmission_rates,
)
from gridpilot.adapters.recorded import (
    CENTRAL,
    NotRecordedError,
    RecordedDataError,
    read_day_ahead_prices,
)

DATA = Path(__file__).resolve().parents[2] / "deploy" / "data"
LOAD = DATA / "ercot_system_load_hourly_2019_2024.csv.gz"
CP = DATA / "ercot_4cp_intervals_2008_2024.csv"
RATES = DATA / "ercot_4cp_transmission_rates.csv"
EVENTS = DATA / "ercot_grid_events_2023_2024_partial.csv"
DAY_AHEAD = DATA / "ercot_dam_rtm_hourly_hubs_AS_2024.csv.gz"


def _central(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A Central wall time (first occurrence on the fall-back day) as UTC."""
    return datetime(year, month, day, hour, minute, tzinfo=CENTRAL).astimezone(UTC)


def _write(tmp_path: Path, text: str, name: str = "file.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def load() -> SystemLoad:
    return read_system_load(LOAD)


@pytest.fixture(scope="module")
def peaks() -> CpIntervals:
    return read_cp_intervals(CP)


@pytest.fixture(scope="module")
def ancillary() -> AncillaryPrices:
    return read_ancillary_prices(DAY_AHEAD)


# --- System load -----------------------------------------------------------------------------


def test_bundled_system_load_has_every_hour_and_the_yearly_peaks(load: SystemLoad) -> None:
    """2019-2024 is 52,608 hours from 00:00 Central 2019-01-01, with SOURCES.md's yearly peaks."""
    assert len(load.start_utc) == len(load.mw) == 52_608
    assert load.start_utc[0] == datetime(2019, 1, 1, 6, tzinfo=UTC)
    assert load.start_utc[-1] == datetime(2025, 1, 1, 5, tzinfo=UTC)
    assert load.gaps == ()
    assert load.mw[0] == 37_081.443
    yearly = []
    for year in range(2019, 2025):
        first = load.hourly_index(_central(year, 1, 1))
        last = load.hourly_index(_central(year, 12, 31, 23))
        yearly.append(round(float(load.mw[first : last + 1].max())))
    assert yearly == [74_666, 74_328, 73_651, 80_038, 85_464, 85_199]


def test_the_peak_hour_of_2024_is_the_august_4cp_hour(load: SystemLoad) -> None:
    """2024-08-20 17:00-18:00 Central (HE18) is the hour of 2024's peak, 85,198.85 MW."""
    assert load.mw[load.hourly_index(_central(2024, 8, 20, 17, 40))] == 85_198.85


def test_settled_load_holds_only_the_hours_that_have_ended(load: SystemLoad) -> None:
    """At 17:30 the 16:00-17:00 hour is the last known; at 18:00 sharp the 17:00 hour is too."""
    half_past = load.settled(_central(2024, 8, 20, 17, 30))
    assert len(half_past) == load.hourly_index(_central(2024, 8, 20, 16)) + 1
    assert half_past[-1] == load.mw[load.hourly_index(_central(2024, 8, 20, 16))]
    on_the_hour = load.settled(_central(2024, 8, 20, 18))
    assert on_the_hour[-1] == 85_198.85
    assert len(on_the_hour) == len(half_past) + 1
    assert load.settled(datetime(2019, 1, 1, 6, 59, tzinfo=UTC)).size == 0
    assert len(load.settled(datetime(2030, 1, 1, tzinfo=UTC))) == 52_608
    with pytest.raises(ValueError, match="timezone-aware"):
        load.settled(datetime(2024, 1, 1))  # a naive time


def test_hourly_index_refuses_moments_outside_the_file(load: SystemLoad) -> None:
    """The first and last hours are found; a moment before or after is NotRecordedError."""
    assert load.hourly_index(datetime(2019, 1, 1, 6, 59, tzinfo=UTC)) == 0
    assert load.hourly_index(datetime(2025, 1, 1, 5, 59, tzinfo=UTC)) == 52_607
    with pytest.raises(NotRecordedError, match="outside the recorded system load"):
        load.hourly_index(datetime(2025, 1, 1, 6, tzinfo=UTC))
    with pytest.raises(NotRecordedError, match="2019-01-01T06:00:00"):
        load.hourly_index(datetime(2019, 1, 1, 5, tzinfo=UTC))


def test_missing_hours_and_empty_load_cells_are_nan_gaps(tmp_path: Path) -> None:
    """A missing row and an empty ERCOT cell stay NaN, each run reported as one gap."""
    path = _write(
        tmp_path,
        "interval_end_utc,ERCOT\n2024-01-01T07:00Z,40000\n2024-01-01T08:00Z,\n"
        "2024-01-01T10:00Z,41000\n",
    )
    series = read_system_load(path)
    assert len(series.mw) == 4
    assert series.mw[0] == 40_000 and series.mw[3] == 41_000
    assert np.isnan(series.mw[1:3]).all()
    assert [(g.start_utc, g.end_utc, g.missing_intervals, g.policy) for g in series.gaps] == [
        (datetime(2024, 1, 1, 7, tzinfo=UTC), datetime(2024, 1, 1, 9, tzinfo=UTC), 2, LEFT_NAN)
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("interval_end_utc,COAST\n2024-01-01T07:00Z,1\n", r"missing column\(s\) ERCOT"),
        ("interval_end_utc,ERCOT\n", "no rows"),
        (
            "interval_end_utc,ERCOT\n2024-01-01T07:00Z,1\n01/01/2024 08:00,2\n",
            "line 3, interval_end_utc: not a timestamp: '01/01/2024 08:00'",
        ),
        ("interval_end_utc,ERCOT\n2024-01-01T07:00,1\n", "line 2, interval_end_utc: no UTC offset"),
        (
            "interval_end_utc,ERCOT\n2024-01-01T07:15Z,1\n",
            "line 2, interval_end_utc: .* on the hour",
        ),
        (
            "interval_end_utc,ERCOT\n2024-01-01T07:00Z,1\n2024-01-01T07:00Z,2\n",
            "line 3: hour ending 2024-01-01T07:00:00\\+00:00 is duplicated",
        ),
        (
            "interval_end_utc,ERCOT\n2024-01-01T08:00Z,1\n2024-01-01T07:00Z,2\n",
            "line 3: .* is out of order",
        ),
        ("interval_end_utc,ERCOT\n2024-01-01T07:00Z,lots\n", "line 2, ERCOT: not a number"),
        ("interval_end_utc,ERCOT\n2024-01-01T07:00Z,-5\n", "line 2, ERCOT: negative load"),
        ("interval_end_utc,ERCOT\n2024-01-01T07:00Z\n", "line 2, ERCOT: missing cell"),
    ],
)
def test_bad_system_load_files_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    """Missing columns, bad or unsorted timestamps and bad cells name the file and line."""
    path = _write(tmp_path, text)
    with pytest.raises(RecordedDataError, match=message) as caught:
        read_system_load(path)
    assert str(caught.value).startswith(str(path))


# --- 4CP intervals ---------------------------------------------------------------------------


def test_official_2024_intervals_are_the_settlement_4cp(peaks: CpIntervals) -> None:
    """2024's 4CP intervals start 06-30 17:30 (a Sunday), 07-01 16:45, 08-20 16:45 and 09-20
    15:45 Central."""
    starts = peaks.official(2024)
    assert starts == (
        _central(2024, 6, 30, 17, 30),
        _central(2024, 7, 1, 16, 45),
        _central(2024, 8, 20, 16, 45),
        _central(2024, 9, 20, 15, 45),
    )
    assert starts[0] == datetime(2024, 6, 30, 22, 30, tzinfo=UTC)
    assert starts[0].astimezone(CENTRAL).strftime("%A") == "Sunday"
    assert all(start.tzinfo is UTC for start in starts)


def test_official_peaks_carry_their_demand(peaks: CpIntervals) -> None:
    """The 4CP demand averages 83,557 MW in 2023 and 81,043 MW in 2024."""
    for year, mean_mw in ((2023, 83_557), (2024, 81_043)):
        official = [p for p in peaks.monthly_peaks(year) if p.official]
        assert [p.month for p in official] == [6, 7, 8, 9]
        assert np.mean([p.mw for p in official]) == pytest.approx(mean_mw, abs=1)
    assert peaks.official(2023)[3] == _central(2023, 9, 8, 16, 30)


def test_years_before_2022_have_monthly_peaks_but_no_official_4cp(peaks: CpIntervals) -> None:
    """2008-2021 hold unofficial monthly peaks; asking their official 4CP names the years held."""
    assert peaks.years == tuple(range(2008, 2025))
    earlier = peaks.monthly_peaks(2021)
    assert [p.month for p in earlier] == [6, 7, 8, 9]
    assert not any(p.official for p in earlier)
    with pytest.raises(NotRecordedError, match="for 2021; the file has them for 2022, 2023, 2024"):
        peaks.official(2021)
    with pytest.raises(NotRecordedError, match="2008, 2009"):
        peaks.monthly_peaks(2030)


CP_HEADER = (
    "year,month,interval_end_local,interval_start_local,interval_end_utc,mw_15min,source,"
    "is_official_settlement_4cp\n"
)


def _cp_row(
    month: int, end_utc: str, start_local: str, flag: str = "True", mw: str = "80000"
) -> str:
    return f"2024,{month},x,{start_local},{end_utc},{mw},src,{flag}\n"


GOOD_CP = [
    _cp_row(6, "2024-06-30T22:45Z", "2024-06-30 17:30"),
    _cp_row(7, "2024-07-01T22:00Z", "2024-07-01 16:45"),
    _cp_row(8, "2024-08-20T22:00Z", "2024-08-20 16:45"),
    _cp_row(9, "2024-09-20T21:00Z", "2024-09-20 15:45"),
]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([_cp_row(6, "2024-06-30 22:45", "2024-06-30 17:30")], "line 2, interval_end_utc: no UTC"),
        ([_cp_row(6, "June 30", "2024-06-30 17:30")], "line 2, interval_end_utc: not a timestamp"),
        (
            [GOOD_CP[0], _cp_row(7, "2024-07-01T22:00Z", "2024-07-01 17:00")],
            "line 3, interval_start_local: '2024-07-01 17:00' is not 15 minutes before",
        ),
        ([_cp_row(7, "2024-06-30T22:45Z", "2024-06-30 17:30")], "line 2: .* not in year 2024, mo"),
        ([_cp_row(6, "2024-06-30T22:45Z", "2024-06-30 17:30", flag="yes")], "line 2, is_official"),
        ([_cp_row(6, "2024-06-30T22:45Z", "2024-06-30 17:30", mw="")], "line 2, mw_15min: not a"),
        ([GOOD_CP[0], GOOD_CP[0]], "line 3: 2024-06 is listed twice"),
        ([GOOD_CP[0], "2024,7,x\n"], "line 3, interval_end_utc: missing cell"),
        (GOOD_CP[:3], r"2024 has official 4CP intervals in months \[6, 7, 8\]"),
    ],
)
def test_bad_cp_files_are_rejected(tmp_path: Path, rows: list[str], message: str) -> None:
    """Bad timestamps, inconsistent local times, flags and cells, repeats and a year without
    its four official intervals name the line or the year."""
    with pytest.raises(RecordedDataError, match=message):
        read_cp_intervals(_write(tmp_path, CP_HEADER + "".join(rows)))


def test_a_small_good_cp_file_reads(tmp_path: Path) -> None:
    """Four official rows of one year read back as that year's 4CP, the others refused."""
    peaks = read_cp_intervals(_write(tmp_path, CP_HEADER + "".join(reversed(GOOD_CP))))
    assert [p.month for p in peaks.peaks] == [6, 7, 8, 9]
    assert peaks.official(2024)[2] == _central(2024, 8, 20, 16, 45)


def test_cp_file_without_the_official_flag_is_rejected(tmp_path: Path) -> None:
    """A file lacking is_official_settlement_4cp names the missing column."""
    text = CP_HEADER.replace(",is_official_settlement_4cp", "") + GOOD_CP[0].rsplit(",", 1)[0]
    with pytest.raises(RecordedDataError, match=r"missing column\(s\) is_official_settlement_4cp"):
        read_cp_intervals(_write(tmp_path, text + "\n"))


# --- Transmission rates ----------------------------------------------------------------------


def test_transmission_rates_by_charge_year_and_by_peaks() -> None:
    """The 2024-billed rate is 66.757 $/kW-yr (2023's 4CP), 2025-billed 68.547 (2024's 4CP);
    Oncor's retail rows are not read."""
    rates = read_transmission_rates(RATES)
    assert [r.charge_year for r in rates.rates] == [2024, 2025, 2026]
    assert rates.for_charge_year(2024) == pytest.approx(66.757, abs=5e-4)
    assert rates.for_charge_year(2025) == pytest.approx(68.547, abs=5e-4)
    assert rates.for_peaks_of(2023) == rates.for_charge_year(2024)
    assert rates.for_peaks_of(2024) == pytest.approx(68.547, abs=5e-4)
    assert rates.rate(2025).docket == "PUCT Docket 57491"
    assert rates.rate(2025).peaks_year == 2024
    assert "not final" in rates.rate(2026).status
    with pytest.raises(NotRecordedError, match="charge year 2023; the file has 2024, 2025, 2026"):
        rates.for_peaks_of(2022)


RATE_HEADER = "item,charge_year_or_effective,value,unit,basis_4cp_summer,docket_or_tariff,status\n"
RATE_UNIT = "USD per 4CP kW-year"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([f"ERCOT wholesale,2024,,{RATE_UNIT},2023,d,s\n"], "line 2, value: not a number: ''"),
        ([f"ERCOT wholesale,2024,-1,{RATE_UNIT},2023,d,s\n"], "line 2, value: -1 is not positive"),
        (["ERCOT wholesale,2024,66,USD per kW-month,2023,d,s\n"], "line 2, unit: 'USD per kW-m"),
        ([f"ERCOT wholesale,2024,66,{RATE_UNIT},2024,d,s\n"], "line 2, basis_4cp_summer: 2024"),
        ([f"ERCOT wholesale,FY24,66,{RATE_UNIT},2023,d,s\n"], "line 2, charge_year_or_effective"),
        (
            [f"ERCOT wholesale,2024,66,{RATE_UNIT},2023,d,s\n"] * 2,
            "line 3: charge year 2024 is listed twice",
        ),
        ([f"Oncor TCRF,2026-08-01,3.49,{RATE_UNIT},,d,s\n"], "no row whose item starts with"),
        (["ERCOT wholesale,2024,66\n"], "line 2, unit: missing cell"),
    ],
)
def test_bad_rate_files_are_rejected(tmp_path: Path, rows: list[str], message: str) -> None:
    """Empty or non-positive rates, wrong units or basis years, repeats and a file without an
    ERCOT rate name the line."""
    with pytest.raises(RecordedDataError, match=message):
        read_transmission_rates(_write(tmp_path, RATE_HEADER + "".join(rows)))


def test_rate_file_without_a_unit_column_is_rejected(tmp_path: Path) -> None:
    """A rates file lacking its unit column says so rather than guessing the unit."""
    path = _write(tmp_path, "item,charge_year_or_effective,value\nERCOT wholesale,2024,66\n")
    with pytest.raises(RecordedDataError, match=r"missing column\(s\) unit, basis_4cp_summer"):
        read_transmission_rates(path)


# --- Grid events -----------------------------------------------------------------------------


def test_bundled_events_convert_central_times_to_utc() -> None:
    """The EEA2 of 2023-09-06 ran from about 19:25 to 20:40 CDT (00:25-01:40 UTC next day);
    an appeal without hours keeps None; the June 2024 monthly summary is skipped."""
    events = read_grid_events(EVENTS)
    assert len(events) == 6
    eea = next(e for e in events if e.kind.startswith("EEA Level 2"))
    assert eea.day == date(2023, 9, 6)
    assert eea.start_utc == datetime(2023, 9, 7, 0, 25, tzinfo=UTC)
    assert eea.end_utc == datetime(2023, 9, 7, 1, 40, tzinfo=UTC)
    assert eea.approximate
    first = events[0]
    assert first.kind == "Voluntary Conservation Notice (TXANS)"
    assert (first.start_utc, first.end_utc) == (
        _central(2023, 8, 17, 15),
        _central(2023, 8, 17, 20),
    )
    assert not first.approximate
    assert "Weather Watch" in first.details
    untimed = events[-1]
    assert untimed.day == date(2023, 9, 7)
    assert untimed.start_utc is None and untimed.end_utc is None
    assert all(e.day.year == 2023 for e in events)


EVENT_HEADER = "date,event_type,start_local_cpt,end_local_cpt,details,source_url\n"


def test_an_event_ending_after_midnight_ends_the_next_day(tmp_path: Path) -> None:
    """22:00 to 01:00 Central is a three-hour event; a lone start keeps its end None."""
    path = _write(
        tmp_path, EVENT_HEADER + "2023-08-20,Appeal,22:00,01:00,late,u\n2023-08-21,Watch,9:05,,,u\n"
    )
    late, lone = read_grid_events(path)
    assert late.end_utc is not None and late.start_utc is not None
    assert late.end_utc - late.start_utc == timedelta(hours=3)
    assert lone.start_utc == _central(2023, 8, 21, 9, 5)
    assert lone.end_utc is None


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("08/20/2023,Appeal,19:00,22:00,d,u\n", "line 2, date: not a date: '08/20/2023'"),
        ("2023-08-20,Appeal,7pm,22:00,d,u\n", "line 2, start_local_cpt: not a time"),
        ("2023-08-20,Appeal,19:00,24:30,d,u\n", "line 2, end_local_cpt: not a time"),
        ("2023-08-20,,19:00,22:00,d,u\n", "line 2, event_type: empty"),
        ("2023-08-20,Appeal\n", "line 2, start_local_cpt: missing cell"),
    ],
)
def test_bad_event_rows_are_rejected(tmp_path: Path, row: str, message: str) -> None:
    """Dates that are not ISO, unreadable times and events without a kind name the line."""
    with pytest.raises(RecordedDataError, match=message):
        read_grid_events(_write(tmp_path, EVENT_HEADER + row))


def test_event_file_without_times_columns_is_rejected(tmp_path: Path) -> None:
    """A file lacking the local time columns names them."""
    path = _write(tmp_path, "date,event_type,details\n2023-08-20,Appeal,d\n")
    with pytest.raises(RecordedDataError, match="start_local_cpt, end_local_cpt"):
        read_grid_events(path)


# --- Ancillary service prices ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("product", "mean", "median"),
    [
        ("REGUP", 6.05, 1.79),
        ("REGDN", 3.44, 1.50),
        ("RRS", 5.71, 1.00),
        ("NSPIN", 6.26, 1.04),
        ("ECRS", 8.28, 1.00),
    ],
)
def test_2024_ancillary_prices_reproduce_the_documented_figures(
    ancillary: AncillaryPrices, product: str, mean: float, median: float
) -> None:
    """Each product's 2024 day-ahead mean and median ($/MW-h) are the domain notes' figures."""
    prices = ancillary.prices(product)
    assert float(np.nanmean(prices)) == pytest.approx(mean, abs=0.01)
    assert float(np.nanmedian(prices)) == pytest.approx(median, abs=0.01)
    assert int(np.count_nonzero(~np.isnan(prices))) == 8_614


def test_ancillary_hours_share_the_day_ahead_grid_and_gaps(ancillary: AncillaryPrices) -> None:
    """The AS prices sit on the energy prices' hourly grid, including both DST days, with the
    same two gaps (the missing March week and the repeated fall-back hour) per product."""
    energy = read_day_ahead_prices(DAY_AHEAD, "HB_WEST")
    assert ancillary.start_utc == energy.start_utc
    assert ancillary.products == ANCILLARY_PRODUCTS
    for product in ANCILLARY_PRODUCTS:
        assert [(g.start_utc, g.missing_intervals, g.policy) for g in ancillary.gaps[product]] == [
            (datetime(2024, 3, 10, 7, tzinfo=UTC), 169, LEFT_NAN),
            (datetime(2024, 11, 3, 7, tzinfo=UTC), 1, LEFT_NAN),
        ]
    assert ancillary.prices("ECRS")[0] == 0.06  # 2024-01-01 HE1
    with pytest.raises(ValueError, match="read-only"):
        ancillary.prices("RRS")[0] = 1.0


def test_ancillary_window_repeats_each_hour_and_is_nan_without_a_price(
    ancillary: AncillaryPrices,
) -> None:
    """Quarter hours take their hour's price; the fall-back repeat hour and outside are NaN."""
    start = datetime(2024, 1, 1, 6, tzinfo=UTC)
    assert ancillary.window("RRS", start, 8, 900).tolist() == [1.01] * 4 + [1.0] * 4
    assert ancillary.window("REGDN", start, 1, 7_200).tolist() == pytest.approx([1.52])
    repeat = ancillary.window("NSPIN", datetime(2024, 11, 3, 6, 45, tzinfo=UTC), 3, 900)
    assert not math.isnan(repeat[0])
    assert np.isnan(repeat[1:]).all()
    assert np.isnan(ancillary.window("ECRS", start - timedelta(hours=1), 4, 900)).all()
    with pytest.raises(NotRecordedError, match="no day-ahead prices for 'ERS-10'"):
        ancillary.window("ERS-10", start, 1, 900)


def test_ancillary_prices_publish_with_the_day_ahead_market(ancillary: AncillaryPrices) -> None:
    """Day D's AS prices are known from 13:30 Central on D-1, in CST and CDT, as energy's are."""
    energy = read_day_ahead_prices(DAY_AHEAD, "HB_WEST")
    for moment in (
        datetime(2024, 1, 1, 19, 29, tzinfo=UTC),  # 13:29 CST
        datetime(2024, 1, 1, 19, 30, tzinfo=UTC),  # 13:30 CST
        datetime(2024, 7, 1, 18, 30, tzinfo=UTC),  # 13:30 CDT
    ):
        assert ancillary.known_until(moment) == energy.known_until(moment)
    assert ancillary.known_until(_central(2024, 7, 1, 13, 29)) == _central(2024, 7, 2)
    assert ancillary.known_until(_central(2024, 7, 1, 13, 30)) == _central(2024, 7, 3)
    assert ancillary.published_at(_central(2024, 7, 2, 23)) == _central(2024, 7, 1, 13, 30)


AS_HEADER = (
    "delivery_date,hour_ending,HB_WEST_DA,"
    "AS_REGUP_DA,AS_REGDN_DA,AS_RRS_DA,AS_NSPIN_DA,AS_ECRS_DA\n"
)


def test_an_empty_ancillary_cell_is_a_gap_of_its_product_only(tmp_path: Path) -> None:
    """An empty RRS cell is NaN and a gap for RRS; the other products keep their price."""
    text = (
        AS_HEADER
        + "2024-01-01,1,20,1,2,3,4,5\n2024-01-01,2,20,1,2,,4,5\n2024-01-01,3,20,1,2,3,4,5\n"
    )
    prices = read_ancillary_prices(_write(tmp_path, text))
    assert np.isnan(prices.prices("RRS")[1])
    assert [(g.start_utc, g.missing_intervals) for g in prices.gaps["RRS"]] == [
        (datetime(2024, 1, 1, 7, tzinfo=UTC), 1)
    ]
    assert prices.gaps["ECRS"] == ()
    assert prices.prices("ECRS").tolist() == [5.0, 5.0, 5.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            AS_HEADER.replace(",AS_ECRS_DA", "") + "2024-01-01,1,20,1,2,3,4\n",
            r"missing column\(s\) AS_ECRS_DA",
        ),
        (AS_HEADER + "2024-1-1,1,20,1,2,3,4,5\n", "line 2, delivery_date: not a date"),
        (AS_HEADER + "2024-01-01,0,20,1,2,3,4,5\n", "line 2, hour_ending: not an hour"),
        (AS_HEADER + "2024-01-01,1,20,1,2,3,four,5\n", "line 2, AS_NSPIN_DA: not a number"),
        (AS_HEADER + "2024-01-01,1,20,1,2,3\n", "line 2, AS_NSPIN_DA: missing cell"),
        (
            AS_HEADER + "2024-03-10,2,20,1,2,3,4,5\n2024-03-10,3,,,,,,7\n",
            "line 3, AS_ECRS_DA: a price for hour ending 3 on 2024-03-10",
        ),
    ],
)
def test_bad_ancillary_files_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    """Missing product columns, bad dates, hours and cells, and a price for the hour that does
    not exist (spring forward) name the line and the column."""
    with pytest.raises(RecordedDataError, match=message):
        read_ancillary_prices(_write(tmp_path, text))
