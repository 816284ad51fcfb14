"""Readers of recorded telemetry: the bundled files load, and bad files fail naming the problem."""

from __future__ import annotations

import gzip
import math
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest

from gridpilot.adapters.recorded import (
    CARRIED_FORWARD,
    Gap,
    NotRecordedError,
    RecordedDataError,
    read_bitcoin_daily,
    read_fee_share,
    read_gpu_trace,
    read_realtime_prices,
)

DATA = Path(__file__).resolve().parents[2] / "deploy" / "data"
PRICES = DATA / "ercot_rtm_spp_2024_hubs_15min.csv.gz"
BTC = DATA / "btc_daily_price_difficulty_hashrate_hashprice_2020-04-11_2025-04-07.csv"
FEES = DATA / "blockchaincom_daily_miner_revenue_fees_2023-04-30_2024-04-28.csv"
TRACE = DATA / "h100x8_llama3-8b_train_ckpt100_per_gpu_100ms.csv.gz"
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
    assert series.gaps == ()


def test_bundled_2023_prices_are_the_scarcer_year() -> None:
    """2023 at HB_WEST has 35,040 quarter hours without gaps and 239 above 1,000 $/MWh."""
    series = read_realtime_prices(DATA / "ercot_rtm_spp_2023_hubs_15min.csv.gz", "HB_WEST")
    assert len(series.start_utc) == 35_040
    assert series.start_utc[0] == datetime(2023, 1, 1, 6, tzinfo=UTC)
    assert series.gaps == ()
    assert int(np.count_nonzero(series.usd_per_mwh > 1_000)) == 239
    assert series.usd_per_mwh.mean() == pytest.approx(49.4, abs=0.05)


def test_bundled_hashprice_matches_its_provenance_notes() -> None:
    """The daily file gives 0.0703 $/TH/day on 2023-11-02 and 0.0410 on 2025-04-07."""
    series = read_bitcoin_daily(BTC)
    assert series.on(date(2023, 11, 2)) == pytest.approx(0.0703, abs=5e-5)
    assert series.on(date(2025, 4, 7)) == pytest.approx(0.0410, abs=5e-5)
    with pytest.raises(NotRecordedError, match="2019-01-01"):
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
            "2024-01-01 00:40:00+00:00,x,3\n",
            "not on the 15-minute grid",
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
    """Unsorted, duplicated, off-grid, non-numeric or zone-less rows are errors, never bridged."""
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


def _quarter_hours(*minutes_and_prices: tuple[int, float]) -> str:
    return HEADER + "".join(
        f"2024-01-01 {m // 60:02d}:{m % 60:02d}:00+00:00,x,{p}\n" for m, p in minutes_and_prices
    )


def test_short_price_gap_is_bridged_with_the_last_price_and_reported(tmp_path: Path) -> None:
    """Two missing quarter hours are filled with the price before them and listed as a gap."""
    text = _quarter_hours((0, 1.0), (15, 2.0), (60, 3.0), (75, 4.0))
    series = read_realtime_prices(_write(tmp_path, text), "HB_WEST")
    assert series.usd_per_mwh.tolist() == [1.0, 2.0, 2.0, 2.0, 3.0, 4.0]
    assert len(series.start_utc) == 6
    assert series.start_utc[3] == datetime(2024, 1, 1, 0, 45, tzinfo=UTC)
    assert series.gaps == (
        Gap(
            datetime(2024, 1, 1, 0, 30, tzinfo=UTC),
            datetime(2024, 1, 1, 1, 0, tzinfo=UTC),
            2,
            CARRIED_FORWARD,
        ),
    )
    assert series.index_of(datetime(2024, 1, 1, 1, 10, tzinfo=UTC)) == 4


def test_gap_up_to_the_limit_is_bridged_and_a_longer_one_raises(tmp_path: Path) -> None:
    """Four missing quarter hours fit the default hour; five do not, and the error says so."""
    fits = _write(tmp_path, _quarter_hours((0, 1.0), (15, 1.5), (90, 2.0)), "fits.csv")
    assert read_realtime_prices(fits, "HB_WEST").gaps[0].missing_intervals == 4
    too_long = _write(tmp_path, _quarter_hours((0, 1.0), (15, 1.5), (105, 2.0)), "long.csv")
    with pytest.raises(
        RecordedDataError,
        match=r"long.csv: gap after 2024-01-01T00:15:00\+00:00: next interval starts 90 min"
        r" later instead of 15 \(5 missing; gaps of up to 60 min are bridged\)",
    ):
        read_realtime_prices(too_long, "HB_WEST")
    assert len(read_realtime_prices(too_long, "HB_WEST", max_gap_s=4_500).usd_per_mwh) == 8
    with pytest.raises(RecordedDataError, match="gap after"):
        read_realtime_prices(fits, "HB_WEST", max_gap_s=0)


def test_an_unlimited_gap_is_bridged_and_listed_for_the_caller_to_judge(tmp_path: Path) -> None:
    """With max_gap_s=inf a gap of any length is carried forward and listed, not refused."""
    rows = [("01 00:00", 1.0), ("01 00:15", 2.0), ("08 00:00", 3.0), ("08 00:15", 4.0)]
    text = HEADER + "".join(f"2024-01-{when}:00+00:00,x,{price}\n" for when, price in rows)
    week = _write(tmp_path, text)
    series = read_realtime_prices(week, "HB_WEST", max_gap_s=math.inf)
    assert len(series.usd_per_mwh) == 7 * 96 + 2
    assert series.usd_per_mwh[-3:].tolist() == [2.0, 3.0, 4.0]
    assert [(gap.missing_intervals, gap.policy) for gap in series.gaps] == [
        (7 * 96 - 2, CARRIED_FORWARD)
    ]
    with pytest.raises(ValueError, match="max_gap_s"):
        read_realtime_prices(week, "HB_WEST", max_gap_s=math.nan)


def test_an_empty_price_cell_is_a_missing_interval(tmp_path: Path) -> None:
    """A row without a price at the settlement point is bridged and reported like a missing row,
    and an interval with no price at all cannot be read."""
    text = _quarter_hours((0, 1.0), (15, 2.0), (45, 4.0)).replace(
        "00:15:00+00:00,x,2.0\n", "00:15:00+00:00,x,2.0\n2024-01-01 00:30:00+00:00,x,\n"
    )
    series = read_realtime_prices(_write(tmp_path, text), "HB_WEST")
    assert series.usd_per_mwh.tolist() == [1.0, 2.0, 2.0, 4.0]
    assert [(gap.start_utc.minute, gap.missing_intervals) for gap in series.gaps] == [(30, 1)]
    empty = _write(tmp_path, HEADER + "2024-01-01 00:00:00+00:00,x,\n" * 1, "empty.csv")
    with pytest.raises(RecordedDataError, match="fewer than two intervals priced at HB_WEST"):
        read_realtime_prices(empty, "HB_WEST")


def test_one_stray_timestamp_is_named_on_its_own_line(tmp_path: Path) -> None:
    """The grid is the file's most common step, so a timestamp two minutes off is the one
    blamed, on its own line, against the 15-minute grid."""
    minutes = [0, 15, 30, 45, 60, 77, 90, 105, 120]
    path = _write(tmp_path, _quarter_hours(*((m, 1.0) for m in minutes)))
    with pytest.raises(
        RecordedDataError,
        match=r"line 7: interval 2024-01-01T01:17:00\+00:00 is not on the 15-minute grid",
    ):
        read_realtime_prices(path, "HB_WEST")


def test_a_moment_outside_the_prices_names_what_they_cover(tmp_path: Path) -> None:
    series = read_realtime_prices(_write(tmp_path, _quarter_hours((0, 1.0), (15, 2.0))), "HB_WEST")
    with pytest.raises(
        NotRecordedError, match=r"2024-01-01T00:00:00\+00:00 to 2024-01-01T00:30:00\+00:00"
    ):
        series.index_of(datetime(2024, 2, 1, tzinfo=UTC))


def test_bundled_fee_share_matches_its_provenance_notes() -> None:
    """Fees average 0.078 of miner revenue, peak at 0.74 on 2024-04-20; the empty day is None."""
    series = read_fee_share(FEES)
    assert len(series.days) == 365
    assert float(np.nanmean(series.fee_share)) == pytest.approx(0.078, abs=5e-4)
    assert series.on(date(2024, 4, 20)) == pytest.approx(0.74494171)
    assert series.on(date(2024, 4, 28)) is None
    assert series.on(date(2022, 1, 1)) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("date,fees\n2024-01-01,0.1\n", r"missing column\(s\) fee_share"),
        ("date,fee_share\n2024-01-01,1.5\n", r"line 2, fee_share: 1.5 is not in \[0, 1\]"),
        ("date,fee_share\n2024-01-01,0.1\n2024-01-01,0.1\n", "does not follow"),
        ("date,fee_share\n2024-01-01,lots\n", "line 2, fee_share: not a number"),
    ],
)
def test_bad_fee_share_files_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    """A missing column, a share outside [0, 1], a repeated day or a non-number is named."""
    with pytest.raises(RecordedDataError, match=message):
        read_fee_share(_write(tmp_path, text, "fees.csv"))


def test_bundled_gpu_trace_is_resampled_to_100_ms() -> None:
    """The 8-GPU trace spans 697 s at a fixed 0.1 s, averaging 2,185 W per node time-weighted
    (the notes' 2,203 W is the per-poll mean), never above 4,632 W per node."""
    trace = read_gpu_trace(TRACE)
    assert trace.gpus == 8
    assert trace.interval_s == 0.1
    assert trace.samples == 6_970
    assert trace.duration_s == pytest.approx(697.0)
    node = trace.node_watts()
    assert float(node.mean()) == pytest.approx(2_203, rel=0.01)
    assert float(node.mean()) == pytest.approx(2_185.4, abs=0.5)
    assert float(node.max()) <= 4_632.0
    assert float(node.min()) >= 574.0 - 1e-9
    assert float(trace.gpu_watts[0, 0]) == pytest.approx(72.36)


def test_irregular_polls_are_interpolated_linearly(tmp_path: Path) -> None:
    """Polls at 0, 0.15 and 0.3 s become samples at 0, 0.1, 0.2, 0.3 s on straight lines."""
    text = "elapsed_s,gpu0_power_w,gpu1_power_w\n0,0,100\n0.15,15,100\n0.3,30,400\n"
    trace = read_gpu_trace(_write(tmp_path, text, "trace.csv"))
    assert trace.gpu_watts.shape == (4, 2)
    assert trace.gpu_watts[:, 0].tolist() == pytest.approx([0.0, 10.0, 20.0, 30.0])
    assert trace.gpu_watts[:, 1].tolist() == pytest.approx([100.0, 100.0, 200.0, 400.0])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("elapsed_s,watts\n0,1\n0.1,1\n", "no GPU power columns"),
        ("time,gpu0_power_w\n0,1\n0.1,1\n", r"missing column\(s\) elapsed_s"),
        ("elapsed_s,gpu0_power_w,gpu2_power_w\n0,1,1\n", r"missing column\(s\) gpu1_power_w"),
        ("elapsed_s,gpu0_power_w\n0,1\n0.2,1\n0.1,1\n", "line 4: elapsed_s 0.1 is out of order"),
        ("elapsed_s,gpu0_power_w\n0,1\n0,1\n", "line 3: elapsed_s 0 is duplicated"),
        ("elapsed_s,gpu0_power_w\n0,1\n0.1,inf\n", "line 3, gpu0_power_w: not a finite"),
        ("elapsed_s,gpu0_power_w\n0,1\n0.1,-5\n", "line 3, gpu0_power_w: negative power"),
        ("elapsed_s,gpu0_power_w\n0,1\n", "fewer than two polls"),
    ],
)
def test_bad_gpu_traces_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    """Missing or non-contiguous GPU columns, unordered time and bad watts are named."""
    with pytest.raises(RecordedDataError, match=message):
        read_gpu_trace(_write(tmp_path, text, "trace.csv"))
