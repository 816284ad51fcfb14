"""A scenario over a window of its year: the replay's span, its months, CO2 and payback."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gridpilot.agent.bundled import REFERENCE_SITE
from gridpilot.agent.replay.simulation import replay
from gridpilot.agent.study.data import year_data
from gridpilot.agent.study.results import read_table
from gridpilot.agent.study.run import site_template
from gridpilot.agent.study.scenario import Strategy, Window, build_site, evaluate, year_span
from tests.agent.study.conftest import PoolRun


def test_a_window_is_central_days_in_utc() -> None:
    """Days 228 to 230 of 2024 start at Central midnight of August 15th (CDT, UTC-5) and end
    at that of the 18th; the year itself starts at 06:00 UTC (CST)."""
    start, end = Window(228, 231).span(2024)
    assert (start.isoformat(), end.isoformat()) == (
        "2024-08-15T05:00:00+00:00",
        "2024-08-18T05:00:00+00:00",
    )
    assert year_span(2023)[1].isoformat() == "2024-01-01T06:00:00+00:00"
    with pytest.raises(ValueError, match="day 366 is past the end of 2023"):
        Window(1, 367).span(2023)
    with pytest.raises(ValueError, match="not a window"):
        Window(5, 5)


def test_a_window_s_co2_is_of_its_own_hours(pool_run: PoolRun) -> None:
    """The emissions of a window are its draw at the intensity of the window's hours, not of
    the year's first hours."""
    scenario = next(s for s in pool_run.spec.scenarios if s.ai_share == 0.5)
    scenario = replace(scenario, window=Window(228, 229))
    base, terms = site_template(REFERENCE_SITE)
    year = year_data(2024, "HB_WEST")
    row = evaluate(scenario, base, year, terms)
    start, end = scenario.span()
    result = replay(
        build_site(base, scenario),
        year.replay,
        start=start,
        end=end,
        terms=terms,
        parallel=False,
        only=("threshold", "always_on"),
    )
    hourly_mw = result.site_watts["threshold"].reshape(24, -1).mean(axis=1) / 1e6
    offset = round((start - year_span(2024)[0]).total_seconds() / 3_600)
    expected_t = float(np.sum(hourly_mw * year.co2_kg_per_mwh[offset : offset + 24])) / 1e3
    assert row["co2_t"] == pytest.approx(expected_t, rel=1e-9)
    assert row["co2_t"] != pytest.approx(
        float(np.sum(hourly_mw * year.co2_kg_per_mwh[:24])) / 1e3, rel=1e-3
    )


def test_a_window_s_payback_is_on_its_profit_scaled_to_a_year(pool_run: PoolRun) -> None:
    """Three days of a 366-day year: payback is capex over 122 times the window's profit;
    its one month has no spread, and its worst month is that month."""
    for row in read_table(pool_run.out / "results.parquet"):
        profit, capex = row["operating_profit_usd"], row["capex_usd"]
        assert isinstance(profit, float)
        assert isinstance(capex, float)
        assert row["payback_years"] == pytest.approx(capex / (profit * 366 / 3))
        assert row["monthly_profit_std_usd"] == 0.0


@pytest.mark.parametrize("strategy", ["threshold", "agent"])
def test_a_site_turned_wholly_to_ai_replays(pool_run: PoolRun, strategy: Strategy) -> None:
    """At AI share 1 the site has no miners: it still replays (reserves held on GPUs alone
    give up no hashing), earns AI revenue only, and pays its energy."""
    scenario = next(s for s in pool_run.spec.scenarios if s.ai_share == 0.5)
    scenario = replace(scenario, ai_share=1.0, strategy=strategy, window=Window(228, 229))
    base, terms = site_template(REFERENCE_SITE)
    row = evaluate(scenario, base, year_data(2024, "HB_WEST"), terms)
    assert row["asic_mw"] == 0.0
    assert row["hash_revenue_usd"] == 0.0
    assert isinstance(row["ai_revenue_usd"], float) and row["ai_revenue_usd"] > 0
    assert isinstance(row["energy_cost_usd"], float) and row["energy_cost_usd"] > 0
