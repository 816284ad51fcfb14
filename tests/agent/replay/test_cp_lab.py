"""The 4CP lab's oracles do what it says of them, and the replay takes the forecaster given."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from gridpilot.adapters.grid import SystemLoad, read_system_load
from gridpilot.agent.bundled import BUNDLED_LOAD, REFERENCE_SITE
from gridpilot.agent.peaks import PeakForecaster
from gridpilot.agent.replay.period import ReplayData
from gridpilot.agent.replay.programs import peak_forecaster
from gridpilot.agent.replay.simulation import replay
from gridpilot.agent.study.data import year_data
from gridpilot.agent.study.run import site_template
from gridpilot.optimizer.problem import FloatArray
from tests.agent.replay.cp_lab import month_known, today_known

SEPTEMBER = date(2024, 9, 1)


@pytest.fixture(scope="module")
def load() -> SystemLoad:
    return read_system_load(BUNDLED_LOAD)


def test_knowing_the_month_gives_each_day_its_chance_of_the_highest_quarter_hour(
    load: SystemLoad,
) -> None:
    """September 2024's chances add up to one, the day with the highest hourly peak (the 19th)
    gets the most, the official day (the 20th, 0.17 % lower) the rest, and they agree with
    drawing every day's 15-minute peak at random."""
    spread = 0.002
    oracle = month_known(spread, load, 2024)
    chances = oracle.month_chances(SEPTEMBER)
    assert sum(chances.values()) == pytest.approx(1.0, abs=1e-6)
    assert max(chances, key=lambda d: chances[d]) == date(2024, 9, 19)
    assert chances[date(2024, 9, 19)] + chances[date(2024, 9, 20)] > 0.99
    days = oracle.days
    indices = [days.index[d] for d in sorted(chances)]
    logs = np.log(days.peaks[indices])
    draws = logs + spread * np.random.default_rng(7).standard_normal((200_000, len(indices)))
    wins = np.bincount(np.argmax(draws, axis=1), minlength=len(indices)) / draws.shape[0]
    assert [chances[d] for d in sorted(chances)] == pytest.approx(wins.tolist(), abs=0.005)


def test_knowing_today_forecasts_its_final_peak_from_midnight(load: SystemLoad) -> None:
    """Told today's peak, the forecaster's forecast is that peak whatever has settled, where
    the agent's own moves with the hours known; its chances are scaled like the agent's."""
    oracle = today_known(0.004, load, 2024)
    own = peak_forecaster(load, 2024)
    day = oracle.days.index[date(2024, 8, 20)]
    peak = float(oracle.days.peaks[day])
    assert [oracle.days.forecast(day, known) for known in (0, 10, 15)] == [peak] * 3
    assert own.days.forecast(day, 10, float(own.model.ratio_weight[10])) != peak
    assert 0.1 < oracle.model.scale < 1.0


class _NoPeaks(PeakForecaster):
    """A 4CP forecast that sees no peak anywhere."""

    def cp_chance(self, *, now: datetime, intervals: int, interval_s: float) -> FloatArray:
        return np.zeros(intervals)


def no_peaks(load: SystemLoad, year: int) -> PeakForecaster:
    learned = peak_forecaster(load, year)
    return _NoPeaks(learned.model, learned.days.load)


def test_the_replay_gives_the_agent_the_forecaster_it_is_handed() -> None:
    """Over the days of August 2024's peak, the agent handed a forecast that sees no peak lowers
    nothing for 4CP and pays the charge of its whole draw; with its own, it curtails."""
    base, terms = site_template(REFERENCE_SITE)
    data: ReplayData = year_data(2024, "HB_WEST").replay
    assert data.grid is not None
    blind = replace(data, grid=replace(data.grid, forecast_peaks=no_peaks))
    start = datetime(2024, 8, 19, 5, tzinfo=UTC)

    def agent(given: ReplayData) -> tuple[float, float]:
        result = replay(
            base,
            given,
            start=start,
            end=start + timedelta(days=2),
            terms=terms,
            parallel=False,
            only=("agent",),
        )
        totals = result.totals["agent"]
        return totals.cp_hours_curtailed, totals.cp_mw_at_intervals[0]

    own_hours, own_mw = agent(data)
    blind_hours, blind_mw = agent(blind)
    assert blind_hours == 0.0
    assert own_hours > 1.0
    assert blind_mw > own_mw + 20.0
