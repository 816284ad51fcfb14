"""The replay: the agent sees nothing of the future, and every strategy is scored alike."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from gridpilot.adapters.recorded import (
    CARRIED_FORWARD,
    FeeShareSeries,
    Gap,
    read_bitcoin_daily,
    read_day_ahead_prices,
    read_fee_share,
    read_gpu_trace,
    read_realtime_prices,
)
from gridpilot.agent.bundled import (
    BUNDLED_BTC,
    BUNDLED_DAY_AHEAD,
    BUNDLED_FEES,
    BUNDLED_PRICES,
    BUNDLED_TRACE,
    REFERENCE_SITE,
)
from gridpilot.agent.cli import EX_CANTCREAT, EX_DATAERR, EX_USAGE, main
from gridpilot.agent.replay import report
from gridpilot.agent.replay.period import STRATEGIES, ReplayData, ReplayResult, Strategy, data_gaps
from gridpilot.agent.replay.simulation import _run_interval, replay
from gridpilot.agent.settings import load_settings
from gridpilot.agent.site import site_problem

START = datetime(2024, 8, 19, 5, tzinfo=UTC)  # a Central day with an evening price spike


@pytest.fixture(scope="module")
def data() -> ReplayData:
    return ReplayData(
        prices=read_realtime_prices(BUNDLED_PRICES, "HB_WEST"),
        hashprices=read_bitcoin_daily(BUNDLED_BTC),
        trace=read_gpu_trace(BUNDLED_TRACE),
        day_ahead=read_day_ahead_prices(BUNDLED_DAY_AHEAD, "HB_WEST"),
        fee_share=read_fee_share(BUNDLED_FEES),
    )


def _run(data: ReplayData, hours: int) -> ReplayResult:
    settings = load_settings(REFERENCE_SITE)
    site = site_problem(
        settings,
        start=START,
        step_s=[900.0],
        price_usd_per_mwh=[0.0],
        hashprice_usd_per_th_day=0.05,
    )
    return replay(site, data, start=START, end=START + timedelta(hours=hours))


def test_no_lookahead(data: ReplayData) -> None:
    """Nothing the agent decided up to an interval changes when any data after it changes."""
    # After it: real-time prices, day-ahead prices not yet published, and the hashprice and fee
    # share of its own day on (a day's are settled only at its end).
    cut = START + timedelta(hours=14)  # 14:00 Central on the day: tomorrow's day-ahead unpublished
    # The bundled fee data ends in April 2024: a fee share for every day of August, so that
    # changing the days after the cut has something to change.
    august = tuple(date(2024, 8, 1) + timedelta(days=d) for d in range(31))
    known = replace(data, fee_share=FeeShareSeries(august, np.full(31, 0.05)))
    truth = _run(known, 30)
    rng = np.random.default_rng(1)
    prices = data.prices.usd_per_mwh.copy()
    after = data.prices.index_of(cut) + 1
    prices[after:] = rng.uniform(-50, 5_000, prices.size - after)
    day_ahead = data.day_ahead
    assert day_ahead is not None
    published = day_ahead.known_until(cut)
    unknown = np.array([s >= published for s in day_ahead.start_utc])
    ahead_prices = day_ahead.usd_per_mwh.copy()
    ahead_prices[unknown] = rng.uniform(-50, 5_000, int(unknown.sum()))
    hashprices = data.hashprices.usd_per_th_day.copy()
    unsettled = np.array([d >= cut.date() for d in data.hashprices.days])
    hashprices[unsettled] *= rng.uniform(0.1, 10.0, int(unsettled.sum()))
    fees = np.where(
        np.array([d >= cut.date() for d in august]), rng.uniform(0.0, 0.9, len(august)), 0.05
    )
    bitcoin_altered = replace(
        known,
        hashprices=replace(data.hashprices, usd_per_th_day=hashprices),
        fee_share=FeeShareSeries(august, fees),
    )
    altered = replace(
        bitcoin_altered,
        prices=replace(data.prices, usd_per_mwh=prices),
        day_ahead=replace(day_ahead, usd_per_mwh=ahead_prices),
    )
    decided = round((cut - START).total_seconds() / 900.0) + 1  # up to and including the cut
    for changed in (_run(altered, 30), _run(bitcoin_altered, 30)):
        assert np.array_equal(truth.agent_decisions[:decided], changed.agent_decisions[:decided])
        # The altered future does reach the later decisions: the comparison above can fail.
        assert not np.array_equal(
            truth.agent_decisions[decided:], changed.agent_decisions[decided:]
        )


def test_every_strategy_is_scored_against_the_bound(data: ReplayData) -> None:
    """Over a day with a spike: the bound earns most, capture is 0 for always-on and 1 for the
    bound, nobody breaks the limit or an SLA, and the agent beats always-on."""
    result = _run(data, 24)
    profits = {name: result.totals[name].profit_usd for name in STRATEGIES}
    assert profits["hindsight"] == max(profits.values())
    assert result.capture("always_on") == 0
    assert result.capture("hindsight") == 1
    assert result.capture("agent") > 0.5
    for name in STRATEGIES:
        assert result.totals[name].sla_breaches == 0
        assert result.totals[name].limit_violation_minutes == 0


def test_replay_command_writes_json_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gridpilot replay` prints the table and writes the JSON and the report folder."""
    out = tmp_path / "not" / "yet" / "replay.json"  # folders are made as needed
    folder = tmp_path / "report"
    code = main(
        [
            "replay",
            "--start", "2024-08-20T05:00",
            "--end", "2024-08-20T11:00",
            "--forecast", "none",
            "--json", str(out),
            "--report", str(folder),
        ]
    )  # fmt: skip
    assert code == 0
    assert "hindsight" in capsys.readouterr().out
    document = json.loads(out.read_text())
    for name in STRATEGIES:
        assert set(document[name]) >= {
            "profit_usd",
            "hash_revenue_usd",
            "ai_revenue_usd",
            "energy_cost_usd",
            "penalty_usd",
            "energy_mwh",
            "asic_curtailed_mwh",
            "gpu_curtailed_gpu_hours",
            "sla_breaches",
            "limit_violation_minutes",
            "capture",
        }
    assert document["wall_s"] > 0
    plots = ("price_heatmap", "curtailment_heatmap", "week_at_stake", "monthly_profit", "allowance")
    for name in ("report.md", *(f"{plot}.png" for plot in plots)):
        assert (folder / name).stat().st_size > 0


def test_one_process_replays_the_same_figures_as_two(tmp_path: Path) -> None:
    """`--one-process` (the one-core figure of `make bench-replay ONE_CORE=1`) runs the same
    strategies to the same figures; only where they run differs."""
    window = ["--start", "2024-08-20T05:00", "--end", "2024-08-20T11:00", "--forecast", "none"]
    documents = []
    for name, extra in (("two", []), ("one", ["--one-process"])):
        out = tmp_path / f"{name}.json"
        assert main(["replay", *window, *extra, "--json", str(out)]) == 0
        document = json.loads(out.read_text())
        document.pop("wall_s")
        documents.append(document)
    assert documents[0] == documents[1]
    assert set(documents[0]) >= set(STRATEGIES)


def test_unwritable_results_fail_before_the_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A JSON path under a file (not a folder) exits 73 at once, before any replaying."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["replay", "--json", str(blocker / "replay.json")])
    assert code == EX_CANTCREAT
    captured = capsys.readouterr()
    assert "cannot write results" in captured.err
    assert "replay" not in captured.out


def test_a_json_folder_or_a_report_file_fails_before_the_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outputs that are the wrong kind of thing exit 73 before any replaying."""
    assert main(["replay", "--json", str(tmp_path)]) == EX_CANTCREAT
    captured = capsys.readouterr()
    assert f"--json {tmp_path} is a folder" in captured.err
    assert "replay" not in captured.out
    taken = tmp_path / "report"
    taken.write_text("")
    assert main(["replay", "--report", str(taken)]) == EX_CANTCREAT
    captured = capsys.readouterr()
    assert "cannot write results there" in captured.err
    assert "replay" not in captured.out


def test_a_report_that_fails_to_write_keeps_the_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails after the replay (here the report: a full disk, say) is said, exits
    73, and does not cost the other output."""

    def disk_full(result: ReplayResult, folder: Path) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_report", disk_full)
    out = tmp_path / "replay.json"
    window = ["--start", "2024-08-20T12:00", "--end", "2024-08-20T13:00", "--forecast", "none"]
    code = main(["replay", *window, "--json", str(out), "--report", str(tmp_path / "r")])
    assert code == EX_CANTCREAT
    assert "cannot write the report: [Errno 28] No space left on device" in capsys.readouterr().err
    assert json.loads(out.read_text())["agent"]["capture"] is not None


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (
            ["--start", "2024-08-10", "--end", "2024-08-01"],
            "the end 2024-08-01T00:00:00+00:00 is not after the start 2024-08-10T00:00:00+00:00",
        ),
        (
            ["--start", "2024-08-10", "--end", "2024-08-10"],
            "the end 2024-08-10T00:00:00+00:00 is not after the start",
        ),
        (
            ["--start", "2024-08-01T00:07", "--end", "2024-08-02"],
            "the start 2024-08-01T00:07:00+00:00 is not on the 15-minute grid",
        ),
        (
            ["--start", "2024-08-01", "--end", "2024-08-01T00:20"],
            "the end 2024-08-01T00:20:00+00:00 is not on the 15-minute grid",
        ),
        (
            ["--start", "2025-02-01", "--end", "2025-02-10"],
            "the recorded prices cover 2024-01-01T06:00:00+00:00 to 2025-01-01T06:00:00+00:00,"
            " not 2025-02-01",
        ),
    ],
)
def test_a_window_the_prices_cannot_replay_is_a_usage_error(
    window: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reversed, empty, off-grid or uncovered windows exit 64 at once, saying which."""
    assert main(["replay", *window]) == EX_USAGE
    captured = capsys.readouterr()
    assert f"gridpilot: {message}" in captured.err
    assert "replay" not in captured.out


def _prices_with_a_gap(folder: Path) -> Path:
    """Three days of the bundled prices around 2024-08-20 with 13:30 and 13:45 UTC removed."""
    with gzip.open(BUNDLED_PRICES, "rt") as source:
        lines = source.read().splitlines()
    kept = [lines[0]] + [
        line
        for line in lines[1:]
        if line.startswith(("2024-08-18", "2024-08-19", "2024-08-20"))
        and not line.startswith(("2024-08-20 13:30", "2024-08-20 13:45"))
    ]
    path = folder / "prices.csv"
    path.write_text("\n".join(kept) + "\n")
    return path


def test_gaps_are_said_on_stderr_in_the_json_and_in_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bridged real-time gap and the bundled day-ahead file's missing week are named, with
    what was done, wherever the results go; a gap longer than --max-gap stops the replay."""
    prices = _prices_with_a_gap(tmp_path)
    out, folder = tmp_path / "replay.json", tmp_path / "report"
    window = ["--start", "2024-08-20T12:00", "--end", "2024-08-20T16:00"]
    results = ["--json", str(out), "--report", str(folder)]
    assert main(["replay", "--prices", str(prices), *window, *results]) == 0
    err = capsys.readouterr().err
    assert (
        "gridpilot: gap in real-time prices at HB_WEST: none from 2024-08-20 13:30 to"
        " 2024-08-20 14:00 UTC (30 min); carried forward" in err
    )
    gaps = json.loads(out.read_text())["data_gaps"]
    assert [(g["series"], g["start_utc"], g["missing_intervals"]) for g in gaps] == [
        ("real-time prices at HB_WEST", "2024-08-20T13:30:00+00:00", 2)
    ]
    assert "none from 2024-08-20 13:30" in (folder / "report.md").read_text()

    assert main(["replay", "--prices", str(prices), *window, "--max-gap", "15"]) == EX_DATAERR
    assert (
        f"gridpilot: {prices}: gap in real-time prices at HB_WEST in the replayed window: 2"
        " intervals missing from 2024-08-20 13:30 UTC (30 min); gaps of up to 15 min are bridged"
        " (--max-gap bridges longer ones)" in capsys.readouterr().err
    )

    # The bundled day-ahead file has no prices from 2024-03-10 08:00 UTC for a week.
    window = ["--start", "2024-03-12T12:00", "--end", "2024-03-12T13:00"]
    assert main(["replay", *window, "--json", str(out)]) == 0
    assert "gap in day-ahead prices at HB_WEST: none from 2024-03-10" in capsys.readouterr().err
    assert [g["series"] for g in json.loads(out.read_text())["data_gaps"]] == [
        "day-ahead prices at HB_WEST"
    ]


def test_the_gaps_a_replay_sees_are_its_window_and_the_history_before_it(
    data: ReplayData,
) -> None:
    """A gap 39 days before the start is in the agent's history and is named; one 41 days
    before, or at the end, is not."""

    def gap(days_before: float) -> Gap:
        start = START - timedelta(days=days_before)
        return Gap(start, start + timedelta(minutes=30), 2, CARRIED_FORWARD)

    seen, too_old, at_end = gap(39), gap(41), gap(-1)
    with_gaps = replace(data, prices=replace(data.prices, gaps=(too_old, seen, at_end)))
    found = data_gaps(with_gaps, START, START + timedelta(hours=6))
    # (The bundled day-ahead file's gaps, in March and November, are far from this window.)
    assert found == (("real-time prices at HB_WEST", seen),)


def test_an_event_past_its_longest_is_one_breach(data: ReplayData) -> None:
    """Pausing the interruptible contract for 17 quarter hours (its longest event is 4 h) counts
    one SLA breach as it crosses 4 h, and none before."""
    settings = load_settings(REFERENCE_SITE)
    site = site_problem(
        settings,
        start=START,
        step_s=[900.0],
        price_usd_per_mwh=[0.0],
        hashprice_usd_per_th_day=0.05,
    )
    strategy = Strategy(site, data.trace, seed=0)
    units = np.zeros(len(site.asic_groups), dtype=np.int64)
    groups = len(site.gpu_groups)
    paused = np.array([g.nodes if g.contract == "interruptible" else 0 for g in site.gpu_groups])
    setpoints = (units, np.zeros(groups, np.int64), np.zeros(groups, np.int64), paused)
    for k in range(17):
        _run_interval(
            strategy,
            setpoints=setpoints,
            at_s=k * 900.0,
            interval_s=900.0,
            cap_watts=site.site_limit_watts,
            limit_watts=site.site_limit_watts,
        )
        assert strategy.totals.sla_breaches == (1 if k == 16 else 0)


def _synthetic_prices(folder: Path, missing: list[tuple[datetime, datetime]]) -> Path:
    """HB_WEST quarter hours from 2024-11-10 to 2025-01-03 and on 2025-01-10, 20 to 60 $/MWh
    through each day, without the rows in each [from, to) of `missing`; after 2025-01-03 a week
    is missing."""
    step = timedelta(minutes=15)
    first, last = datetime(2024, 11, 10, tzinfo=UTC), datetime(2025, 1, 11, tzinfo=UTC)
    week_missing = (datetime(2025, 1, 3, tzinfo=UTC), datetime(2025, 1, 10, tzinfo=UTC))
    rows = ["interval_start_utc,HB_WEST"]
    moment = first
    while moment < last:
        if not any(lo <= moment < hi for lo, hi in [week_missing, *missing]):
            price = 40.0 + 20.0 * np.sin(2 * np.pi * moment.hour / 24)
            rows.append(f"{moment.isoformat()},{price:.2f}")
        moment += step
    path = folder / "prices.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


# Two Central-morning hours of 2025-01-02: the agent's 40 days of history reach back to
# 2024-11-23 06:00 UTC.
SYNTHETIC_WINDOW = ["--start", "2025-01-02T06:00Z", "--end", "2025-01-02T08:00Z"]


def test_gaps_outside_what_the_replay_reads_do_not_stop_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A gap after the window or older than the agent's history is neither judged nor listed."""
    older = datetime(2024, 11, 15, tzinfo=UTC)  # 48 days before the start
    prices = _synthetic_prices(tmp_path, [(older, older + timedelta(hours=6))])
    out = tmp_path / "replay.json"
    arguments = ["--prices", str(prices), "--forecast", "none", "--fees", "none"]
    assert main(["replay", *arguments, *SYNTHETIC_WINDOW, "--json", str(out)]) == 0
    assert "gap" not in capsys.readouterr().err
    assert json.loads(out.read_text())["data_gaps"] == []


@pytest.mark.parametrize(
    ("missing_from", "where"),
    [
        (datetime(2024, 12, 20, 9, tzinfo=UTC), "in the 40 days of history before the window"),
        (datetime(2025, 1, 2, 6, 30, tzinfo=UTC), "in the replayed window"),
    ],
)
def test_a_long_gap_in_what_the_replay_reads_stops_it_saying_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], missing_from: datetime, where: str
) -> None:
    """A long gap in the window or the agent's history exits 65 saying where; --max-gap bridges."""
    prices = _synthetic_prices(tmp_path, [(missing_from, missing_from + timedelta(hours=2))])
    arguments = ["--prices", str(prices), "--forecast", "none", "--fees", "none"]
    assert main(["replay", *arguments, *SYNTHETIC_WINDOW]) == EX_DATAERR
    captured = capsys.readouterr()
    assert (
        f"gridpilot: {prices}: gap in real-time prices at HB_WEST {where}: 8 intervals missing"
        f" from {missing_from:%Y-%m-%d %H:%M} UTC (120 min); gaps of up to 60 min are bridged"
        " (--max-gap bridges longer ones)" in captured.err
    )
    assert "replay" not in captured.out
    assert main(["replay", *arguments, *SYNTHETIC_WINDOW, "--max-gap", "120"]) == 0
    assert f"none from {missing_from:%Y-%m-%d %H:%M}" in capsys.readouterr().err


def _threshold_asleep_watts(data: ReplayData, start: datetime, hours: int) -> np.ndarray:
    """The threshold rule's ASIC draw held asleep per interval, over `hours` from `start`."""
    settings = load_settings(REFERENCE_SITE)
    site = site_problem(
        settings,
        start=start,
        step_s=[900.0],
        price_usd_per_mwh=[0.0],
        hashprice_usd_per_th_day=0.05,
    )
    result = replay(site, data, start=start, end=start + timedelta(hours=hours), parallel=False)
    return result.asic_curtailed_watts["threshold"]


def test_the_threshold_rule_decides_each_interval_before_its_price_settles(
    data: ReplayData,
) -> None:
    """The threshold rule's first decision reacts to the price before it, never to its own."""
    # From the first recorded interval on nothing has settled: no miner sleeps for price then.
    first = data.prices.index_of(START)
    from_start = replace(
        data,
        prices=replace(
            data.prices,
            start_utc=data.prices.start_utc[first:],
            usd_per_mwh=data.prices.usd_per_mwh[first:].copy(),
        ),
    )
    spiked = from_start.prices.usd_per_mwh.copy()
    spiked[0] = 5_000.0  # far above every model's breakeven
    calm = _threshold_asleep_watts(from_start, START, 1)
    alarmed = _threshold_asleep_watts(
        replace(from_start, prices=replace(from_start.prices, usd_per_mwh=spiked)), START, 1
    )
    assert calm[0] == alarmed[0]
    assert alarmed[1] > calm[1]  # the spike, once settled, puts miners to sleep

    before = data.prices.usd_per_mwh.copy()
    before[first - 1] = 5_000.0
    later = replace(data, prices=replace(data.prices, usd_per_mwh=before))
    assert _threshold_asleep_watts(later, START, 1)[0] > _threshold_asleep_watts(data, START, 1)[0]


def test_the_minimum_off_time_holds_across_plans(data: ReplayData) -> None:
    """The reference site with a two-hour minimum off time, over two days with an evening
    spike: the plant refuses a wake within it, and neither the agent (re-planning every few
    intervals, each plan told which miners are still locked) nor the hindsight bound asks for
    one, while the threshold rule, which knows nothing of it, does."""
    settings = load_settings(REFERENCE_SITE)
    site = site_problem(
        settings,
        start=START,
        step_s=[900.0],
        price_usd_per_mwh=[0.0],
        hashprice_usd_per_th_day=0.05,
    )
    site = replace(site, asic_groups=tuple(replace(g, min_off_s=7_200.0) for g in site.asic_groups))
    result = replay(site, data, start=START, end=START + timedelta(hours=48))
    refused = {name: result.totals[name].wakes_refused for name in STRATEGIES}
    assert refused["agent"] == 0
    assert refused["hindsight"] == 0
    assert refused["threshold"] > 0
    assert result.totals["agent"].asic_curtailed_mwh > 0  # it did put miners to sleep
