"""Allowance pacing: what the rest of a billing period is expected to be worth, hour by hour."""

from __future__ import annotations

import numpy as np
import pytest

from gridpilot.agent.pacing import expected_hours, reservations, weighted_quantile
from gridpilot.optimizer.synthetic import synthetic_problem

QUARTER_HOUR_S = 900.0


def _spike_day() -> tuple[np.ndarray, tuple[float, ...]]:
    """A day's forecast in quarter hours: 2 h at 30 $/MWh, 3 h at 9,000, then 30 again."""
    prices = np.array([30.0] * 8 + [9_000.0] * 12 + [30.0] * 76)
    return prices, (QUARTER_HOUR_S,) * prices.size


def test_a_forecast_spike_counts_for_its_hours_not_as_the_whole_month() -> None:
    """A daemon that knows one settled price and a day's forecast with a 3-hour spike, with
    the interruptible contract's allowance for 40 of the 650 hours left, keeps the allowance's
    price below the spike: the spike is 3 hours of the month, not its every eighth hour."""
    problem = synthetic_problem(15, 4)
    forecast, steps = _spike_day()
    nodes = sum(g.nodes for g in problem.gpu_groups if g.contract == "interruptible")
    result = reservations(
        problem,
        recent_prices=np.array([30.0]),
        forecast_prices=forecast,
        forecast_step_s=steps,
        hashprice_usd_per_th_day=0.05,
        node_hours_left={"interruptible": 40.0 * nodes},
        hours_left_in_period=650.0,
        site_oversubscribed=False,
    )
    assert result["interruptible"].threshold_usd_per_mwh < 9_000.0


def test_scarce_allowance_is_kept_for_the_forecast_spike() -> None:
    """With allowance for one hour of the next three, the reservation rises to the spike: it
    is kept for the spike's hours rather than spent on cheap ones."""
    forecast, steps = _spike_day()
    values, hours = expected_hours(np.array([30.0]), forecast, steps, hours_left=24.0)
    assert weighted_quantile(values, hours, 1.0 - 1.0 / 24.0) == 9_000.0
    assert weighted_quantile(values, hours, 1.0 - 4.0 / 24.0) == 30.0


def test_forecast_steps_past_the_period_end_do_not_count() -> None:
    """Two hours before the period's end only the forecast's first two hours are the period's:
    a spike after them does not raise this period's reservation, and the recent past has no
    hours left to stand for."""
    forecast, steps = _spike_day()
    values, hours = expected_hours(np.full(10, 500.0), forecast, steps, hours_left=2.0)
    assert hours.sum() == pytest.approx(2.0)
    assert set(values[hours > 0]) == {30.0}


def test_without_history_the_forecast_stands_for_the_whole_rest() -> None:
    """No recent price: the forecast's shape is all there is, stretched over the hours left;
    neither: nothing is known."""
    forecast, steps = _spike_day()
    values, hours = expected_hours(np.empty(0), forecast, steps, hours_left=240.0)
    assert hours.sum() == pytest.approx(240.0)
    assert hours[values == 9_000.0].sum() == pytest.approx(30.0)
    empty_values, empty_hours = expected_hours(np.empty(0), np.empty(0), (), hours_left=240.0)
    assert empty_values.size == empty_hours.size == 0


def test_recent_prices_share_the_hours_the_forecast_does_not_reach() -> None:
    """A day's forecast and 100 recent prices over 100 hours left: the forecast weighs its 24
    hours, each recent price 0.76 h; unknown forecast steps (NaN) weigh nothing."""
    forecast, steps = _spike_day()
    forecast[0] = np.nan
    values, hours = expected_hours(np.arange(100.0), forecast, steps, hours_left=100.0)
    assert hours.sum() == pytest.approx(100.0)
    assert hours[: forecast.size - 1].sum() == pytest.approx(23.75)
    assert np.allclose(hours[forecast.size - 1 :], 76.25 / 100)
    assert np.isfinite(values).all()


def test_weighted_quantile_weighs_each_value_by_its_hours() -> None:
    """Equal weights give the ordinary lower quantile; a heavy value pulls the quantile to it."""
    values = np.array([4.0, 1.0, 3.0, 2.0])
    assert weighted_quantile(values, np.ones(4), 0.5) == 2.0
    assert weighted_quantile(values, np.ones(4), 1.0) == 4.0
    assert weighted_quantile(values, np.array([1.0, 1.0, 1.0, 97.0]), 0.5) == 2.0
    assert weighted_quantile(values, np.array([97.0, 1.0, 1.0, 1.0]), 0.5) == 4.0
