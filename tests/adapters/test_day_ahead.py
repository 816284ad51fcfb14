"""Day-ahead prices: ERCOT hour-ending rows on Central days become an hourly UTC series."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from gridpilot.adapters.recorded import (
    NO_FORECAST,
    DayAheadSeries,
    RecordedDataError,
    read_day_ahead_prices,
)

DATA = Path(__file__).resolve().parents[2] / "deploy" / "data"
DAY_AHEAD = DATA / "ercot_dam_rtm_hourly_hubs_AS_2024.csv.gz"
HEADER = "delivery_date,hour_ending,HB_WEST_DA,HB_WEST_RT_hourly,AS_REGUP_DA\n"


@pytest.fixture(scope="module")
def hubavg() -> DayAheadSeries:
    return read_day_ahead_prices(DAY_AHEAD, "HB_HUBAVG")


def _hour(series: DayAheadSeries, moment: datetime) -> float:
    return float(series.usd_per_mwh[series.start_utc.index(moment)])


def _write(tmp_path: Path, rows: list[tuple[str, int, str]]) -> Path:
    path = tmp_path / "dam.csv"
    path.write_text(HEADER + "".join(f"{d},{h},{p},0,0\n" for d, h, p in rows))
    return path


def test_bundled_day_ahead_prices_match_their_provenance_notes(hubavg: DayAheadSeries) -> None:
    """HB_HUBAVG HE1-3 of 2024-01-01 are 16.62, 17.69, 17.81, from 00:00 Central (06:00 UTC)."""
    assert hubavg.start_utc[0] == datetime(2024, 1, 1, 6, tzinfo=UTC)
    assert hubavg.usd_per_mwh[:3].tolist() == [16.62, 17.69, 17.81]
    assert hubavg.interval_s == 3_600.0
    # Every hour of the Central year, priced or not: 8,614 rows priced, 170 hours without.
    assert len(hubavg.start_utc) == 8_784
    assert hubavg.start_utc[-1] == datetime(2025, 1, 1, 5, tzinfo=UTC)
    assert int(np.count_nonzero(~np.isnan(hubavg.usd_per_mwh))) == 8_614
    steps = np.diff([s.timestamp() for s in hubavg.start_utc])
    assert set(steps.tolist()) == {3_600.0}


def test_spring_forward_day_maps_to_utc(hubavg: DayAheadSeries) -> None:
    """2024-03-10 HE1 is 00:00 CST (06:00 UTC); 2024-03-17 HE4 is 03:00 CDT (08:00 UTC)."""
    assert _hour(hubavg, datetime(2024, 3, 10, 6, tzinfo=UTC)) == 37.25
    assert math.isnan(_hour(hubavg, datetime(2024, 3, 10, 7, tzinfo=UTC)))
    assert not math.isnan(_hour(hubavg, datetime(2024, 3, 17, 8, tzinfo=UTC)))
    assert math.isnan(_hour(hubavg, datetime(2024, 3, 17, 7, tzinfo=UTC)))


def test_fall_back_day_prices_the_first_repeated_hour_only(hubavg: DayAheadSeries) -> None:
    """On 2024-11-03, HE2 is the first 01:00 (CDT, 06:00 UTC); the repeat (CST, 07:00 UTC) has
    no price and HE3 starts at 02:00 CST (08:00 UTC)."""
    assert _hour(hubavg, datetime(2024, 11, 3, 5, tzinfo=UTC)) == 11.59
    assert _hour(hubavg, datetime(2024, 11, 3, 6, tzinfo=UTC)) == 10.57
    assert math.isnan(_hour(hubavg, datetime(2024, 11, 3, 7, tzinfo=UTC)))
    assert _hour(hubavg, datetime(2024, 11, 3, 8, tzinfo=UTC)) == 7.08
    assert _hour(hubavg, datetime(2024, 11, 4, 5, tzinfo=UTC)) == 14.24


def test_missing_hours_are_reported_as_gaps_with_counts(hubavg: DayAheadSeries) -> None:
    """The missing week in March (169 hours) and the repeated fall-back hour are the gaps."""
    assert [(g.start_utc, g.end_utc, g.missing_intervals) for g in hubavg.gaps] == [
        (datetime(2024, 3, 10, 7, tzinfo=UTC), datetime(2024, 3, 17, 8, tzinfo=UTC), 169),
        (datetime(2024, 11, 3, 7, tzinfo=UTC), datetime(2024, 11, 3, 8, tzinfo=UTC), 1),
    ]
    assert {g.policy for g in hubavg.gaps} == {NO_FORECAST}


def test_window_repeats_each_hour_over_its_quarter_hours(hubavg: DayAheadSeries) -> None:
    """Quarter hours repeat their hour's price; two-hour steps average; gaps and edges are NaN."""
    start = datetime(2024, 1, 1, 6, tzinfo=UTC)
    assert hubavg.window(start, 8, 900).tolist() == [16.62] * 4 + [17.69] * 4
    assert hubavg.window(start, 2, 7_200).tolist() == pytest.approx(
        [(16.62 + 17.69) / 2, (17.81 + 18.57) / 2]
    )
    half_past = hubavg.window(start + timedelta(minutes=30), 1, 3_600)
    assert half_past.tolist() == pytest.approx([(16.62 + 17.69) / 2])
    early = hubavg.window(start - timedelta(minutes=15), 2, 900)
    assert math.isnan(early[0])
    assert early[1] == 16.62
    around_gap = hubavg.window(datetime(2024, 3, 10, 6, 30, tzinfo=UTC), 3, 1_800)
    assert around_gap[0] == 37.25
    assert np.isnan(around_gap[1:]).all()
    assert np.isnan(hubavg.window(datetime(2024, 3, 10, 6, tzinfo=UTC), 1, 7_200)).all()
    assert hubavg.window(start, 0, 900).size == 0


def test_prices_are_known_from_1330_central_the_day_before(hubavg: DayAheadSeries) -> None:
    """An operating day's prices publish at 13:30 Central the day before, CST or CDT alike."""
    assert hubavg.published_at(datetime(2024, 1, 1, 6, tzinfo=UTC)) == datetime(
        2023, 12, 31, 19, 30, tzinfo=UTC
    )
    # The last hour of 2024-01-01 (Central) belongs to the same operating day.
    assert hubavg.published_at(datetime(2024, 1, 2, 5, tzinfo=UTC)) == datetime(
        2023, 12, 31, 19, 30, tzinfo=UTC
    )
    # Operating day 2024-03-11 is published on the spring-forward day, in CDT.
    assert hubavg.published_at(datetime(2024, 3, 11, 5, tzinfo=UTC)) == datetime(
        2024, 3, 10, 18, 30, tzinfo=UTC
    )
    before = datetime(2024, 1, 1, 19, 29, tzinfo=UTC)
    assert hubavg.known_until(before) == datetime(2024, 1, 2, 6, tzinfo=UTC)
    after = datetime(2024, 1, 1, 19, 30, tzinfo=UTC)
    assert hubavg.known_until(after) == datetime(2024, 1, 3, 6, tzinfo=UTC)


def test_spring_forward_hour_may_be_listed_empty_but_not_priced(tmp_path: Path) -> None:
    """A row for the nonexistent 02:00 hour is skipped when empty and an error when priced."""
    day = "2024-03-10"
    rows = [(day, h, "" if h == 3 else str(float(h))) for h in range(1, 25)]
    series = read_day_ahead_prices(_write(tmp_path, rows), "HB_WEST")
    assert len(series.start_utc) == 23
    assert series.gaps == ()
    assert series.start_utc[2] == datetime(2024, 3, 10, 8, tzinfo=UTC)
    assert series.usd_per_mwh[:3].tolist() == [1.0, 2.0, 4.0]
    priced = [(day, h, "5") for h in range(1, 25)]
    with pytest.raises(
        RecordedDataError, match=r"line 4, HB_WEST_DA: a price for hour ending 3 on 2024-03-10"
    ):
        read_day_ahead_prices(_write(tmp_path, priced), "HB_WEST")


def test_empty_cells_and_missing_rows_are_nan_gaps(tmp_path: Path) -> None:
    """An empty price and a missing row are NaN hours reported as gaps, not errors."""
    rows = [("2024-01-01", 1, "10"), ("2024-01-01", 2, ""), ("2024-01-01", 5, "20")]
    series = read_day_ahead_prices(_write(tmp_path, rows), "HB_WEST")
    assert len(series.usd_per_mwh) == 5
    assert np.isnan(series.usd_per_mwh[1:4]).all()
    assert [(g.start_utc, g.missing_intervals) for g in series.gaps] == [
        (datetime(2024, 1, 1, 7, tzinfo=UTC), 3)
    ]


@pytest.mark.parametrize(
    ("text", "point", "message"),
    [
        (
            "day,hour_ending,HB_WEST_DA\n2024-01-01,1,2\n",
            "HB_WEST",
            r"missing column\(s\) delivery_date",
        ),
        (
            HEADER + "2024-01-01,1,2,0,0\n",
            "HB_EAST",
            r"unknown settlement point 'HB_EAST'.*HB_WEST",
        ),
        (
            HEADER + "2024-01-01,2,2,0,0\n2024-01-01,1,2,0,0\n",
            "HB_WEST",
            "line 3: 2024-01-01 hour ending 1 is out of order",
        ),
        (
            HEADER + "2024-01-01,1,2,0,0\n2024-01-01,1,2,0,0\n",
            "HB_WEST",
            "line 3: 2024-01-01 hour ending 1 is duplicated",
        ),
        (
            HEADER + "2024-01-01,25,2,0,0\n",
            "HB_WEST",
            "line 2, hour_ending: not an hour from 1 to 24",
        ),
        (HEADER + "1/1/2024,1,2,0,0\n", "HB_WEST", "line 2, delivery_date: not a date"),
        (HEADER + "2024-01-01,1,cheap,0,0\n", "HB_WEST", "line 2, HB_WEST_DA: not a number"),
        (HEADER, "HB_WEST", "no rows"),
    ],
)
def test_bad_day_ahead_files_are_rejected(
    tmp_path: Path, text: str, point: str, message: str
) -> None:
    """Missing columns, unknown hubs, unsorted or duplicated hours and bad cells are named."""
    path = tmp_path / "dam.csv"
    path.write_text(text)
    with pytest.raises(RecordedDataError, match=message):
        read_day_ahead_prices(path, point)


def test_bundled_file_has_every_hub_day_ahead(hubavg: DayAheadSeries) -> None:
    """Every hub of the file reads, with the same hourly span as HB_HUBAVG."""
    for hub in ("HB_BUSAVG", "HB_HOUSTON", "HB_NORTH", "HB_PAN", "HB_SOUTH", "HB_WEST"):
        series = read_day_ahead_prices(DAY_AHEAD, hub)
        assert series.start_utc == hubavg.start_utc
        assert len(series.gaps) == 2
    assert date(2024, 1, 1) == hubavg.start_utc[0].date()
