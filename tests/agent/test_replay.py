"""The replay: the agent sees nothing of the future, and every strategy is scored alike."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from adapters.recorded import (
    read_bitcoin_daily,
    read_day_ahead_prices,
    read_fee_share,
    read_gpu_trace,
    read_realtime_prices,
)
from agent.cli import (
    BUNDLED_BTC,
    BUNDLED_DAY_AHEAD,
    BUNDLED_FEES,
    BUNDLED_PRICES,
    BUNDLED_TRACE,
    EX_CANTCREAT,
    REFERENCE_SITE,
    main,
)
from agent.replay import STRATEGIES, ReplayData, ReplayResult, _run_interval, _Strategy, replay
from agent.settings import load_settings
from agent.site import site_problem

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
    """Replacing every price after an interval (real-time, and day-ahead not yet published)
    changes nothing the agent decided up to that interval."""
    cut = START + timedelta(hours=14)  # 14:00 Central on the day: tomorrow's day-ahead unpublished
    truth = _run(data, 30)
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
    altered = replace(
        data,
        prices=replace(data.prices, usd_per_mwh=prices),
        day_ahead=replace(day_ahead, usd_per_mwh=ahead_prices),
    )
    changed = _run(altered, 30)
    decided = round((cut - START).total_seconds() / 900.0) + 1  # up to and including the cut
    assert np.array_equal(truth.agent_decisions[:decided], changed.agent_decisions[:decided])
    # The altered future does reach the later decisions: the comparison above can fail.
    assert not np.array_equal(truth.agent_decisions[decided:], changed.agent_decisions[decided:])


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
    for name in ("report.md", "price_and_power.png", "monthly_profit.png", "allowance.png"):
        assert (folder / name).stat().st_size > 0


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
    strategy = _Strategy(site, data.trace, seed=0)
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
