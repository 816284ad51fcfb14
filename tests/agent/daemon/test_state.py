"""Site state: settled price history per interval, signal ages, events and overrides."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from gridpilot.adapters.payloads import Forecast, Override, OverrideMode
from gridpilot.agent.daemon.clock import ScaledClock
from gridpilot.agent.daemon.state import RESUM_EVERY, MeterReadings, PriceHistory, Signal, SiteState
from gridpilot.optimizer.problem import GridEvent

T0 = datetime(2024, 8, 20, 12, 0, tzinfo=UTC)


def test_history_averages_each_interval_and_leaves_out_the_current_one() -> None:
    """Each interval's price is the mean of what was published in it; the interval still
    running is not settled and not in the history."""
    history = PriceHistory(300.0)
    history.add(T0, 20.0)
    history.add(T0 + timedelta(seconds=100), 40.0)
    history.add(T0 + timedelta(seconds=300), 50.0)
    history.add(T0 + timedelta(seconds=600), 70.0)
    settled = history.settled(T0 + timedelta(seconds=650))
    assert settled.tolist() == [30.0, 50.0]


def test_history_carries_the_last_price_over_silent_intervals() -> None:
    """An interval without any price keeps the last known one (the gap policy of the replay)."""
    history = PriceHistory(300.0)
    history.add(T0, 20.0)
    history.add(T0 + timedelta(seconds=900), 60.0)
    history.add(T0 - timedelta(seconds=300), 10.0)  # late, for an older interval
    settled = history.settled(T0 + timedelta(seconds=1_500))
    assert settled.tolist() == [10.0, 20.0, 20.0, 20.0, 60.0, 60.0]


def test_history_is_bounded() -> None:
    """Only the last days' intervals are kept, whatever arrives."""
    history = PriceHistory(3_600.0, days=1)
    for hour in range(100):
        history.add(T0 + timedelta(hours=hour), float(hour))
    settled = history.settled(T0 + timedelta(hours=100))
    assert settled.size == 24
    assert settled[-1] == 99.0
    assert PriceHistory(300.0).settled(T0).size == 0


def test_the_running_sum_of_a_thousand_meters_stays_their_sum() -> None:
    """The draw kept up reading by reading equals the meters' exact sum after many readings
    (past several fresh sums), a meter added or removed included; it is used only when the
    configured meters are exactly those read, and the slow sum otherwise."""
    rng = random.Random(7)
    readings = MeterReadings()
    names = tuple(f"m{i}" for i in range(1_000))
    for step in range(3 * RESUM_EVERY + 17):
        name = names[rng.randrange(len(names))]
        readings[name] = Signal(rng.uniform(0.0, 2e5), T0, T0)
        if step % 4_999 == 0:
            exact = math.fsum(signal.value for signal in readings.values())
            assert readings.total == pytest.approx(exact, rel=1e-12, abs=1e-6)
    state = SiteState(started=T0, interval_s=300.0)
    state.meters = readings
    assert len(readings) == len(names)  # every meter has reported by now
    exact = math.fsum(signal.value for signal in readings.values())
    assert state.site_watts(names) == pytest.approx(exact, rel=1e-12)
    readings["extra"] = Signal(1e6, T0, T0)  # one not configured: not in the site's draw
    assert not readings.covers(names)
    assert state.site_watts(names) == pytest.approx(exact, rel=1e-12)
    assert state.site_watts(()) == pytest.approx(exact + 1e6, rel=1e-12)
    del readings["m0"]
    assert state.site_watts(names) is None


def test_site_power_needs_every_configured_meter() -> None:
    """The site's draw is the sum of its meters' latest readings, unknown until all reported;
    the meter feed is as old as its oldest meter."""
    state = SiteState(started=T0, interval_s=300.0)
    assert state.site_watts(("a", "b")) is None
    state.meters["a"] = Signal(10.0, T0, T0)
    assert state.site_watts(("a", "b")) is None
    state.meters["b"] = Signal(5.0, T0, T0 + timedelta(seconds=20))
    assert state.site_watts(("a", "b")) == 15.0
    assert state.site_watts(()) == 15.0
    assert state.meter_age_s(("a", "b"), T0 + timedelta(seconds=30)) == 30.0
    assert state.meter_age_s((), T0 + timedelta(seconds=30)) == 30.0
    assert SiteState(started=T0, interval_s=300.0).meter_age_s((), T0 + timedelta(seconds=7)) == 7


def test_events_and_overrides_end_on_time() -> None:
    """Events are active from start to end; ended events and expired overrides are dropped."""
    state = SiteState(started=T0, interval_s=300.0)
    event = GridEvent("e1", T0 + timedelta(hours=1), T0 + timedelta(hours=2), 1e6)
    state.events["e1"] = event
    override = Override("g", OverrideMode.ASLEEP, T0 + timedelta(minutes=30))
    state.overrides["g"] = override
    assert state.active_events(T0) == []
    assert state.upcoming_events(T0) == (event,)
    assert state.active_events(T0 + timedelta(minutes=90)) == [event]
    assert state.drop_past(T0 + timedelta(minutes=45)) == ([], [override])
    assert state.drop_past(T0 + timedelta(hours=2)) == ([event], [])
    assert not state.events
    assert not state.overrides


def test_day_ahead_book_maps_hours_onto_intervals_and_keeps_the_past() -> None:
    """Each 5-minute interval takes its hour's published price, NaN outside what was
    published; a later publication replaces the hours it covers and keeps the others, so the
    past month stays available to learn from."""
    state = SiteState(started=T0, interval_s=300.0)
    assert state.day_ahead.until is None
    state.day_ahead.add(Forecast(issued=T0, start=T0, step_s=3_600.0, usd_per_mwh=(10.0, 20.0)))
    values = state.day_ahead.window(T0 - timedelta(minutes=5), 26, 300.0)
    assert np.isnan(values[0])
    assert values[1:13].tolist() == [10.0] * 12
    assert values[13:25].tolist() == [20.0] * 12
    assert np.isnan(values[25])
    assert state.day_ahead.until == T0 + timedelta(hours=2)
    later = T0 + timedelta(hours=1)
    state.day_ahead.add(
        Forecast(issued=later, start=later, step_s=3_600.0, usd_per_mwh=(25.0, 30.0))
    )
    values = state.day_ahead.window(T0, 3, 3_600.0)
    assert values.tolist() == [10.0, 25.0, 30.0]
    assert state.day_ahead.until == T0 + timedelta(hours=3)
    far = T0 + timedelta(days=60)
    state.day_ahead.add(Forecast(issued=far, start=far, step_s=3_600.0, usd_per_mwh=(5.0,)))
    assert np.isnan(state.day_ahead.window(T0, 1, 3_600.0)[0])


def test_scaled_clock_runs_fast_and_rejects_nonsense() -> None:
    """A scaled clock advances `speed` times the wall; a speed of zero is refused."""
    clock = ScaledClock(1_000.0, origin=T0)
    first = clock.now()
    asyncio.run(clock.sleep(10.0))  # 10 ms of wall time
    assert clock.now() - first >= timedelta(seconds=9)
    with pytest.raises(ValueError, match="speed"):
        ScaledClock(0.0)
