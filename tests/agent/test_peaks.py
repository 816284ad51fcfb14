"""The 4CP chance's two ways of placing intervals on the Central clock agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from gridpilot.adapters.grid import read_system_load
from gridpilot.adapters.recorded import CENTRAL
from gridpilot.agent.bundled import BUNDLED_LOAD
from gridpilot.agent.peaks import PeakForecaster
from gridpilot.agent.replay.programs import peak_forecaster

INTERVAL_S = 900.0


@pytest.fixture(scope="module")
def forecaster() -> PeakForecaster:
    return peak_forecaster(read_system_load(BUNDLED_LOAD), 2024)


def _settled(forecaster: PeakForecaster, now: datetime) -> tuple[int, int]:
    """Today's index and hours settled, as `cp_chance` works them out."""
    days = forecaster.days
    settled = int((now - days.load.start_utc).total_seconds() // 3_600.0)
    today = int(np.searchsorted(days.first, settled, side="right")) - 1
    return today, settled - int(days.first[today])


@pytest.mark.parametrize(
    "now",
    [
        datetime(2024, 5, 30, 17, tzinfo=UTC),  # into June
        datetime(2024, 7, 16, 5, tzinfo=UTC),  # Central midnight
        datetime(2024, 8, 20, 19, tzinfo=UTC),  # a peak afternoon
        datetime(2024, 9, 29, 22, tzinfo=UTC),  # out of September
    ],
)
def test_clock_arithmetic_places_intervals_as_the_conversion_does(
    forecaster: PeakForecaster, now: datetime
) -> None:
    """Two days and a half of 15-minute intervals, no clock change among them: the arithmetic
    path gives every interval exactly the chance the per-interval conversion does."""
    today, known = _settled(forecaster, now)
    by_clock, by_conversion = np.zeros(240), np.zeros(240)
    forecaster._chance_by_clock(
        by_clock, now.astimezone(CENTRAL), INTERVAL_S, today=today, known=known
    )
    forecaster._chance_by_conversion(by_conversion, now, INTERVAL_S, today=today, known=known)
    assert by_conversion.any()
    np.testing.assert_array_equal(by_clock, by_conversion)


def test_a_span_across_a_clock_change_is_converted_interval_by_interval(
    forecaster: PeakForecaster,
) -> None:
    """Across the fall-back of 2024-11-03 the offset changes, so `cp_chance` converts each
    interval; no 4CP month is near, so every chance is 0. In summer it takes the arithmetic
    path, with the same values as a longer span's first intervals."""
    autumn = datetime(2024, 11, 2, 12, tzinfo=UTC)
    assert (
        autumn.astimezone(CENTRAL).utcoffset()
        != (autumn + timedelta(days=2)).astimezone(CENTRAL).utcoffset()
    )
    chance = forecaster.cp_chance(now=autumn, intervals=192, interval_s=INTERVAL_S)
    assert chance.shape == (192,) and not chance.any()
    summer = datetime(2024, 8, 20, 14, tzinfo=UTC)
    short = forecaster.cp_chance(now=summer, intervals=96, interval_s=INTERVAL_S)
    long = forecaster.cp_chance(now=summer, intervals=192, interval_s=INTERVAL_S)
    assert short.any()
    np.testing.assert_array_equal(short, long[:96])


def test_the_calibrations_hours_worked_out_together_are_each_hours_chance(
    forecaster: PeakForecaster,
) -> None:
    """`chances_today`, which the calibration asks for a summer's every hour at once, gives
    each day and hour settled exactly what `_day_chance` gives it alone: at the first hour and
    the last, with no day left in the month and with many, after a month's peaks and before."""
    days = forecaster.days
    summer = [i for i, d in enumerate(days.dates) if d.year == 2023 and d.month in (6, 8, 9)][::9]
    todays = np.repeat(np.array(summer, dtype=np.int64), 4)
    known = np.tile(np.array([0, 7, 16, 23], dtype=np.int64), len(summer))
    together = forecaster.chances_today(todays, known)
    alone = [
        forecaster._day_chance(days.dates[t], today=t, known=k)
        for t, k in zip(todays.tolist(), known.tolist(), strict=True)
    ]
    assert {days.dates[t].day for t in summer} >= {30}  # a month's last day among them
    assert together.tolist() == alone
    assert 0 < together.max() <= 1


def test_the_days_of_an_hours_span_worked_out_together_are_each_days_chance(
    forecaster: PeakForecaster,
) -> None:
    """An hourly 4CP chance spans two days ahead: `_day_chances` gives today and the days
    after exactly what `_day_chance` gives each alone (a later day's wider spread and its bar
    raised to today's forecast included), in June, at a month's turn and in September."""
    days = forecaster.days
    for moment in (
        datetime(2024, 6, 12, 15, tzinfo=UTC),
        datetime(2024, 7, 30, 20, tzinfo=UTC),
        datetime(2024, 9, 3, 9, tzinfo=UTC),
    ):
        today, known = _settled(forecaster, moment)
        span = [days.dates[today] + timedelta(days=ahead) for ahead in range(3)]
        alone = [forecaster._day_chance(d, today=today, known=known) for d in span]
        assert forecaster._day_chances(span, today=today, known=known) == alone
        assert any(chance > 0 for chance in alone)
