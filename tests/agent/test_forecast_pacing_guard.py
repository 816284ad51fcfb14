"""The planner's parts: price forecasts, allowance pacing and the guard."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pytest

from gridpilot.adapters.recorded import CENTRAL
from gridpilot.agent.forecast import (
    CALIBRATION_DAYS,
    DRIFT_INTERVALS,
    DRIFT_TIME_CONSTANT_S,
    HISTORY_DAYS,
    DayAheadWindow,
    daily_profile,
    day_ahead_weight,
    forecast_prices,
    past_profiles,
)
from gridpilot.agent.guard import shed, shed_order
from gridpilot.agent.pacing import marginal_hash_value_usd_per_mwh, reservations
from gridpilot.optimizer.synthetic import synthetic_problem

NOW = datetime(2024, 8, 20, 5, tzinfo=UTC)
DAY = 96  # quarter hours


def test_daily_profile_is_the_median_of_each_time_of_day() -> None:
    """Seven days of a repeating shape with one outlier day give back the shape."""
    shape = np.linspace(10, 105, DAY)
    history = np.tile(shape, 7)
    history[3 * DAY : 4 * DAY] += 1_000  # one abnormal day does not move a median of seven
    assert np.allclose(daily_profile(history, 900.0, now=NOW), shape)


def test_profile_without_history_is_flat() -> None:
    """Less than a day of history gives a flat profile at its median; none gives zero."""
    assert np.allclose(daily_profile(np.array([5.0, 7.0, 9.0]), 900.0, now=NOW), 7.0)
    assert np.allclose(daily_profile(np.array([]), 900.0, now=NOW), 0.0)


def test_day_ahead_price_leads_and_the_drift_fades() -> None:
    """Where a day-ahead price is known the forecast tends to it: the interval being decided keeps
    the settled prices' whole drift, later ones see it fade with the time constant."""
    history = np.full(7 * DAY, 20.0)
    history[-DRIFT_INTERVALS:] = 120.0  # the market has been running 100 above its day-ahead

    def day_ahead(start: datetime, count: int, interval_s: float) -> np.ndarray:
        return np.full(count, 20.0)

    steps = (900.0,) * 8
    forecast = forecast_prices(
        now=NOW, step_s=steps, history=history, interval_s=900.0, day_ahead=day_ahead
    )
    expected = 20.0 + 100.0 * np.exp(-900.0 * np.arange(8) / DRIFT_TIME_CONSTANT_S)
    assert forecast[0] == pytest.approx(120.0)
    assert np.allclose(forecast, expected)


def test_one_settled_excursion_counts_for_less_than_a_sustained_one() -> None:
    """A single settled interval 100 above the shape moves the forecast by its share of the
    drift window; the same excursion sustained over the window moves it all the way."""
    once = np.full(7 * DAY, 20.0)
    once[-1] = 120.0
    sustained = np.full(7 * DAY, 20.0)
    sustained[-DRIFT_INTERVALS:] = 120.0
    common = {"now": NOW, "step_s": (900.0,), "interval_s": 900.0, "day_ahead": None}
    assert forecast_prices(history=once, **common)[0] == pytest.approx(  # type: ignore[arg-type]
        20.0 + 100.0 / DRIFT_INTERVALS
    )
    assert forecast_prices(history=sustained, **common)[0] == pytest.approx(  # type: ignore[arg-type]
        120.0
    )


def test_day_ahead_counts_as_far_as_real_time_followed_it() -> None:
    """The day-ahead price's departure from the daily shape is trusted as far as real-time
    prices followed such departures over the past month: fully where they did, not at all where
    they stayed on the shape, at face value where there is no past to judge."""
    days = HISTORY_DAYS + CALIBRATION_DAYS
    shape = np.tile(np.linspace(10.0, 40.0, DAY), days)
    rng = np.random.default_rng(2)
    bumps = np.where(rng.random(days * DAY) < 0.1, 200.0, 0.0)

    def published(values: np.ndarray) -> DayAheadWindow:
        start = NOW - timedelta(days=days)

        def window(first: datetime, count: int, interval_s: float) -> np.ndarray:
            offset = round((first - start).total_seconds() / interval_s)
            result = np.full(count, 80.0)  # the hours ahead: 80 where the shape says 10 to 40
            inside = np.arange(offset, offset + count)
            known = inside < values.size
            result[known] = values[inside[known]]
            return result

        return window

    followed = shape + bumps
    ignored = shape
    day_ahead = published(shape + bumps)  # the day-ahead market priced every bump
    common = {"now": NOW, "interval_s": 900.0, "day_ahead": day_ahead}
    assert day_ahead_weight(history=followed, **common) == pytest.approx(1.0)  # type: ignore[arg-type]
    assert day_ahead_weight(history=ignored, **common) == pytest.approx(0.0)  # type: ignore[arg-type]
    assert day_ahead_weight(history=ignored[-DAY:], **common) == 1.0  # type: ignore[arg-type]
    ahead = {"now": NOW, "step_s": (900.0,) * 4, "interval_s": 900.0, "day_ahead": day_ahead}
    trusting = forecast_prices(history=followed, **ahead)  # type: ignore[arg-type]
    doubting = forecast_prices(history=ignored, **ahead)  # type: ignore[arg-type]
    assert np.all(trusting[1:] > 70.0)
    assert np.all(doubting[1:] < 45.0)


def test_past_profiles_are_the_profiles_known_before_each_day() -> None:
    """Each past day's profile is the daily profile of the history before that day."""
    history = np.random.default_rng(3).lognormal(3.0, 0.7, 12 * DAY)
    profiles = past_profiles(history, 900.0, 4, now=NOW)
    assert profiles.size == 4 * DAY
    for day in range(4):
        before = history[: (8 + day) * DAY]
        its_start = NOW - timedelta(days=4 - day)
        assert np.allclose(
            profiles[day * DAY : (day + 1) * DAY], daily_profile(before, 900.0, now=its_start)
        )
    assert past_profiles(history[: 7 * DAY], 900.0, 4, now=NOW).size == 0


def test_unpublished_day_ahead_falls_back_to_history() -> None:
    """NaN day-ahead prices (not yet published) are replaced by the daily shape."""
    shape = np.linspace(10, 105, DAY)
    history = np.tile(shape, 7)

    def nothing(start: datetime, count: int, interval_s: float) -> np.ndarray:
        return np.full(count, np.nan)

    with_nan = forecast_prices(
        now=NOW, step_s=(900.0,) * DAY, history=history, interval_s=900.0, day_ahead=nothing
    )
    alone = forecast_prices(
        now=NOW, step_s=(900.0,) * DAY, history=history, interval_s=900.0, day_ahead=None
    )
    assert np.allclose(with_nan, alone)
    assert np.allclose(alone[48:], shape[48:], atol=1.0)  # the drift is gone half a day out


def test_longer_steps_average_their_intervals() -> None:
    """An hourly step takes the mean of the four quarter hours it spans."""
    history = np.tile(np.linspace(0, 95, DAY), 7)
    quarter = forecast_prices(
        now=NOW, step_s=(900.0,) * 8, history=history, interval_s=900.0, day_ahead=None
    )
    hourly = forecast_prices(
        now=NOW, step_s=(3_600.0, 3_600.0), history=history, interval_s=900.0, day_ahead=None
    )
    assert hourly == pytest.approx([quarter[:4].mean(), quarter[4:].mean()])


def _central_hour_price(moment_s: np.ndarray) -> np.ndarray:
    """A price that depends only on the Central clock hour: 10 $/MWh per hour of the day."""
    hours = [datetime.fromtimestamp(float(s), CENTRAL).hour for s in moment_s]
    return 10.0 * np.array(hours, dtype=np.float64) + 5.0


@pytest.mark.parametrize(
    "change",
    [date(2024, 3, 10), date(2024, 11, 3), date(2026, 3, 8), date(2026, 11, 1)],
    ids=["spring-2024", "fall-2024", "spring-2026", "fall-2026"],
)
@pytest.mark.parametrize(
    ("day", "clock"),
    [(1, time(0)), (1, time(9, 45)), (0, time(5)), (-1, time(14))],
    ids=["next-midnight", "next-morning", "change-day", "day-before"],
)
def test_the_daily_shape_follows_central_clock_time_across_dst(
    change: date, day: int, clock: time
) -> None:
    """Around a DST change each interval's daily shape is its Central clock time's, not UTC's."""
    # Prices depend only on the Central hour: the forecast of the next 24 hours and the past
    # days' profiles must give back each interval's own hour's price.
    now = datetime.combine(change + timedelta(days=day), clock, CENTRAL).astimezone(UTC)
    now_s = now.timestamp()
    history = _central_hour_price(now_s - 900.0 * np.arange(12 * DAY, 0, -1))
    forecast = forecast_prices(
        now=now, step_s=(900.0,) * DAY, history=history, interval_s=900.0, day_ahead=None
    )
    assert np.allclose(forecast, _central_hour_price(now_s + 900.0 * np.arange(DAY)))
    profiles = past_profiles(history, 900.0, 3, now=now)
    assert np.allclose(profiles, history[-3 * DAY :])


def test_reservation_rises_as_allowance_runs_short() -> None:
    """With the whole month's allowance for the rest of it, the flexible contract's threshold is
    low; with a tenth of it, it is a high quantile of recent values; firm gets none."""
    problem = synthetic_problem(15, 4)
    prices = np.random.default_rng(0).lognormal(3.5, 1.0, 30 * DAY)
    common = {
        "recent_prices": prices,
        "hashprice_usd_per_th_day": 0.05,
        "site_oversubscribed": False,
    }
    plenty = reservations(
        problem,
        node_hours_left={"flex": 1e9, "interruptible": 1e9},
        hours_left_in_period=100.0,
        **common,  # type: ignore[arg-type]
    )
    scarce = reservations(
        problem,
        node_hours_left={"flex": 50.0, "interruptible": 1.0},
        hours_left_in_period=500.0,
        **common,  # type: ignore[arg-type]
    )
    assert "firm" not in plenty
    assert plenty["flex"].usd_per_node_hour == 0
    assert scarce["flex"].threshold_usd_per_mwh > np.quantile(prices, 0.9)
    assert scarce["flex"].usd_per_node_hour > 0
    none_left = reservations(
        problem,
        node_hours_left={"flex": 0.0},
        hours_left_in_period=500.0,
        **common,  # type: ignore[arg-type]
    )
    assert none_left["flex"].threshold_usd_per_mwh == float("inf")


def test_unbilled_contracts_start_above_their_lost_revenue() -> None:
    """Pausing an interruptible node loses its revenue: its threshold is at least the price at
    which the freed power pays that back."""
    problem = synthetic_problem(15, 4)
    result = reservations(
        problem,
        recent_prices=np.full(100, 30.0),
        hashprice_usd_per_th_day=0.05,
        node_hours_left={"interruptible": 1e9},
        hours_left_in_period=10.0,
        site_oversubscribed=True,
    )
    assert result["interruptible"].threshold_usd_per_mwh > 1_000
    assert marginal_hash_value_usd_per_mwh(problem, 0.05) > 0


def test_guard_sheds_least_efficient_first_and_just_enough() -> None:
    """Over the cap by 10 kW: only the least efficient group sheds, by the units that cover it."""
    problem = synthetic_problem(6, 2)
    groups = problem.asic_groups
    units = np.array([g.units for g in groups], dtype=np.int64)
    order = shed_order(groups)
    worst = order[0]
    unit_watts = groups[worst].watts_per_unit * groups[worst].overhead_factor
    after = shed(groups, units, reading_watts=1e6 + 10_000, cap_watts=1e6)
    assert after[worst] == units[worst] - int(np.ceil(10_000 / unit_watts))
    assert all(after[i] == units[i] for i in order[1:])
    assert (units == np.array([g.units for g in groups])).all()  # the input is left alone
    everything = shed(groups, units, reading_watts=1e12, cap_watts=0.0)
    assert (everything == 0).all()
    untouched = shed(groups, units, reading_watts=1.0, cap_watts=2.0)
    assert (untouched == units).all()
