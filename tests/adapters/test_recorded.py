"""Readers of recorded telemetry: the bundled files load, and bad files fail naming the problem."""

from __future__ import annotations

import gzip
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from adapters.recorded import RecordedDataError, read_bitcoin_daily, read_realtime_prices

DATA = Path(__file__).resolve().parents[2] / "deploy" / "data"
PRICES = DATA / "ercot_rtm_spp_2024_hubs_15min.csv.gz"
BTC = DATA / "btc_daily_price_difficulty_hashrate_hashprice_2020-04-11_2025-04-07.csv"
HEADER = "interval_start_utc,interval_start_central,HB_WEST\n"


def _write(tmp_path: Path, text: str, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_bundled_prices_match_their_provenance_notes() -> None:
    """The 2024 HB_WEST series has 35,136 quarter hours, mean 27.4 $/MWh and max 4,981.33."""
    series = read_realtime_prices(PRICES, "HB_WEST")
    assert len(series.start_utc) == 35_136
    assert series.interval_s == 900.0
    assert series.usd_per_mwh.mean() == pytest.approx(27.4, abs=0.05)
    assert series.usd_per_mwh.max() == pytest.approx(4_981.33)
    assert series.start_utc[0] == datetime(2024, 1, 1, 6, tzinfo=UTC)
    assert series.index_of(datetime(2024, 1, 1, 6, 20, tzinfo=UTC)) == 1


def test_bundled_hashprice_matches_its_provenance_notes() -> None:
    """The daily file gives 0.0703 $/TH/day on 2023-11-02 and 0.0410 on 2025-04-07."""
    series = read_bitcoin_daily(BTC)
    assert series.on(date(2023, 11, 2)) == pytest.approx(0.0703, abs=5e-5)
    assert series.on(date(2025, 4, 7)) == pytest.approx(0.0410, abs=5e-5)
    with pytest.raises(KeyError, match="2019-01-01"):
        series.on(date(2019, 1, 1))


def test_unknown_settlement_point_lists_the_known_ones() -> None:
    """Asking for a hub the file lacks names the hubs it has."""
    with pytest.raises(RecordedDataError, match=r"unknown settlement point 'HB_EAST'.*HB_WEST"):
        read_realtime_prices(PRICES, "HB_EAST")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A missing file is a RecordedDataError naming the path, not a bare OSError."""
    with pytest.raises(RecordedDataError, match="cannot read"):
        read_realtime_prices(tmp_path / "absent.csv", "HB_WEST")


def test_missing_timestamp_column_is_named(tmp_path: Path) -> None:
    """A file without interval_start_utc says which column is missing."""
    path = _write(tmp_path, "start,HB_WEST\n2024-01-01T00:00:00+00:00,1\n")
    with pytest.raises(RecordedDataError, match=r"missing column.*interval_start_utc"):
        read_realtime_prices(path, "HB_WEST")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("2024-01-01 00:15:00+00:00,x,1\n2024-01-01 00:00:00+00:00,x,2\n", "out of order"),
        ("2024-01-01 00:00:00+00:00,x,1\n2024-01-01 00:00:00+00:00,x,2\n", "duplicated"),
        (
            "2024-01-01 00:00:00+00:00,x,1\n2024-01-01 00:15:00+00:00,x,2\n"
            "2024-01-01 00:45:00+00:00,x,3\n",
            "gap after 2024-01-01T00:15:00",
        ),
        ("2024-01-01 00:00:00+00:00,x,1\n2024-01-01 00:15:00+00:00,x,abc\n", "not a number"),
        ("2024-01-01 00:00:00+00:00,x,1\n2024-01-01 00:15:00+00:00,x,nan\n", "not a finite"),
        ("2024-01-01 00:00:00,x,1\n2024-01-01 00:15:00,x,2\n", "no UTC offset"),
        ("yesterday,x,1\n", "not a timestamp"),
        ("2024-01-01 00:00:00+00:00,x,1\n", "fewer than two"),
    ],
)
def test_bad_price_rows_are_rejected_with_the_reason(
    tmp_path: Path, rows: str, message: str
) -> None:
    """Unsorted, duplicated, gapped, non-numeric or zone-less rows are errors, never bridged."""
    with pytest.raises(RecordedDataError, match=message):
        read_realtime_prices(_write(tmp_path, HEADER + rows), "HB_WEST")


def test_gzip_and_plain_files_read_alike(tmp_path: Path) -> None:
    """A gzipped copy reads the same as the plain file; a corrupt gzip is a clear error."""
    text = HEADER + "2024-01-01 00:00:00+00:00,x,1\n2024-01-01 00:15:00+00:00,x,2.5\n"
    plain = read_realtime_prices(_write(tmp_path, text), "HB_WEST")
    packed = tmp_path / "prices.csv.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    assert list(read_realtime_prices(packed, "HB_WEST").usd_per_mwh) == list(plain.usd_per_mwh)
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress(text.encode())[:20])
    with pytest.raises(RecordedDataError, match="gzip"):
        read_realtime_prices(broken, "HB_WEST")


def test_empty_files_are_rejected(tmp_path: Path) -> None:
    """A file with a header but no rows is an error for both readers."""
    with pytest.raises(RecordedDataError, match="no rows"):
        read_realtime_prices(_write(tmp_path, HEADER), "HB_WEST")
    with pytest.raises(RecordedDataError, match="no rows"):
        read_bitcoin_daily(_write(tmp_path, "date,x\n", "btc.csv"))


def test_bitcoin_days_must_follow_each_other(tmp_path: Path) -> None:
    """A skipped day or a bad date in the daily file is named."""
    header = "date,hashprice_usd_per_th_day_subsidy_only\n"
    gap = _write(tmp_path, header + "2024-01-01,0.05\n2024-01-03,0.05\n", "gap.csv")
    with pytest.raises(RecordedDataError, match="2024-01-03 does not follow 2024-01-01"):
        read_bitcoin_daily(gap)
    bad = _write(tmp_path, header + "Jan 1,0.05\n", "bad.csv")
    with pytest.raises(RecordedDataError, match="not a date"):
        read_bitcoin_daily(bad)
    missing = _write(tmp_path, "date,price\n2024-01-01,1\n", "missing.csv")
    with pytest.raises(RecordedDataError, match="hashprice_usd_per_th_day_subsidy_only"):
        read_bitcoin_daily(missing)
