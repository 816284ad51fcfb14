"""The capture lab's own arithmetic, on short made-up price series: its hindsight is the best of
every on/off sequence (also when it may fall asleep only after an expensive interval), its
per-interval DP follows it when the forecast is the truth, its spell oracles sleep where they
say, and its day-ahead check and spell odds count what they say."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gridpilot.optimizer.economics import breakeven_usd_per_mwh
from tests.agent.replay.capture_lab import (
    Model,
    Year,
    best_first_moves,
    earnings,
    fitted_table,
    follow,
    hindsight,
    losses,
    preemptive_sleep,
    spell_odds,
    spell_oracle,
)

WAKE_H = 600 / 3_600


def _year(price: list[float], horizon: int) -> Year:
    values = np.array(price, dtype=np.float64)
    padded = np.concatenate((values, np.full(horizon, values[-1])))
    perfect = np.stack([padded[t : t + horizon] for t in range(values.size)])
    flat = np.full(values.size, 0.05)
    no_day_ahead = np.full((values.size, 2), np.nan)
    return Year(values, perfect, no_day_ahead, flat, flat, 0.25, 0.0, 1.0)


def _never_sleeps_early(on: tuple[bool, ...], may_sleep: np.ndarray) -> bool:
    """Whether every fall into sleep in `on` (from on, or from the start) is where allowed."""
    before = (True, *on[:-1])
    return all(
        now or not was or bool(may_sleep[t])
        for t, (was, now) in enumerate(zip(before, on, strict=True))
    )


@pytest.mark.parametrize("foresees_starts", [True, False])
def test_hindsight_is_the_best_of_every_sequence_it_may_choose(foresees_starts: bool) -> None:
    """Free, or falling asleep only after an expensive interval has settled, the DP earns what
    the best of every such on/off sequence earns."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        price = list(rng.choice([20.0, 60.0, 150.0, 400.0], size=9))
        year = _year(price, 4)
        breakeven = np.full(9, 100.0)
        may_sleep = np.full(9, True) if foresees_starts else year.last_settled > breakeven
        best = max(
            earnings(np.array(on), year.price, breakeven, year, WAKE_H)
            for on in itertools.product([True, False], repeat=9)
            if _never_sleeps_early(on, may_sleep)
        )
        chosen = hindsight(
            year.price, breakeven, year, WAKE_H, None if foresees_starts else may_sleep
        )
        assert _never_sleeps_early(tuple(bool(on) for on in chosen), may_sleep)
        assert earnings(chosen, year.price, breakeven, year, WAKE_H) == pytest.approx(best)


def test_the_dp_on_a_perfect_forecast_earns_what_hindsight_does() -> None:
    price = [30, 30, 500, 600, 550, 40, 30, 130, 30, 30, 900, 800, 30, 30]
    year = _year([float(p) for p in price], horizon=len(price))
    breakeven = np.full(len(price), 100.0)
    keep, wake = best_first_moves(year.forecast, breakeven, year, WAKE_H)
    planned = earnings(follow(keep, wake), year.price, breakeven, year, WAKE_H)
    best = earnings(
        hindsight(year.price, breakeven, year, WAKE_H), year.price, breakeven, year, WAKE_H
    )
    assert best > 0
    assert planned == pytest.approx(best)


def test_the_spell_oracles_sleep_from_the_second_interval() -> None:
    # A long spell (3 intervals, worth sleeping through) and a one-interval blip.
    price = np.array([30.0, 500.0, 600.0, 550.0, 40.0, 30.0, 130.0, 30.0, 30.0])
    year = _year(list(price), 4)
    breakeven = np.full(price.size, 100.0)
    lagging = spell_oracle(price, breakeven, year, WAKE_H, skip=False, on_time=False)
    assert list(np.flatnonzero(~lagging)) == [2, 3, 4, 7]  # the threshold rule's sleeps
    on_time = spell_oracle(price, breakeven, year, WAKE_H, skip=True, on_time=True)
    assert list(np.flatnonzero(~on_time)) == [2, 3]


def test_a_table_fitted_on_one_half_serves_the_other_when_the_halves_agree() -> None:
    # The same day twenty times: a spell every day, so either half teaches the other all of it.
    day = [30.0, 30.0, 500.0, 600.0, 550.0, 40.0, 30.0, 30.0]
    year = _year(day * 20, 4)
    known = np.full(year.price.size, 100.0)
    itself = fitted_table(year, known, known, WAKE_H)
    crossed = fitted_table(year, known, known, WAKE_H, cross=True)
    assert crossed.tolist() == itself.tolist()
    assert not itself.all()  # it does sleep through the spells


def test_the_day_ahead_check_counts_the_calm_intervals_by_band() -> None:
    # Breakeven is 100 $/MWh throughout (hashprice and model chosen for it below).
    price = np.array([30.0, 30.0, 500.0, 600.0, 40.0, 30.0, 130.0, 30.0])
    year = _year(list(price), 4)
    day_ahead = np.array([np.nan, 120.0, 120.0, 120.0, 20.0, 90.0, 400.0, 20.0])
    year = Year(
        year.price,
        year.forecast,
        np.column_stack((day_ahead, day_ahead)),
        year.known_hashprice,
        year.true_hashprice,
        0.25,
        0.0,
        1.0,
    )
    joules = breakeven_usd_per_mwh(0.05, 1.0, pool_fee=0.0, overhead_factor=1.0) / 100.0
    rows = {
        label: (count, above, value)
        for label, count, above, value in preemptive_sleep(year, (Model("m", 2.0, joules, 600.0),))
    }
    # Calm (last settled <= 100): intervals 0, 1, 2, 5 and 6 (the first counts its own price).
    assert rows["day-ahead 1-1.5 x breakeven"] == pytest.approx((2, 0.5, (400 - 70) * 0.25))
    assert rows["day-ahead >= 3 x breakeven"] == pytest.approx((1, 1.0, 30 * 0.25))
    assert rows["no day-ahead price"][0] == 1
    assert sum(count for count, _, _ in rows.values()) == 5


def test_the_spell_odds_count_spells_going_on_and_resuming() -> None:
    # Breakeven 100: spells at 1-2 (goes on), 6, 9 and 11 (each one interval); after their
    # first cheap interval, the spells at 1-2 and 6 stay cheap and the one at 9 resumes.
    price = [30.0, 500.0, 600.0, 40.0, 30.0, 30.0, 130.0, 30.0, 30.0, 500.0, 30.0, 500.0, 30.0]
    year = _year(price, 4)
    joules = breakeven_usd_per_mwh(0.05, 1.0) / 100.0
    odds = spell_odds(year, Model("m", 1.0, joules, 600.0))
    assert odds.breakeven == pytest.approx(100.0)
    assert odds.went_on == pytest.approx(1 / 4)
    assert odds.excess == pytest.approx((500 - 70 * 3) / 4)
    assert odds.waking == pytest.approx(100.0 / 6)
    assert odds.resumed == pytest.approx(1 / 3)


def test_the_losses_split_every_difference_in_earnings_exactly() -> None:
    rng = np.random.default_rng(7)
    price = rng.choice([-10.0, 20.0, 60.0, 150.0, 400.0], size=40)
    year = _year(list(price), 4)
    breakeven = rng.uniform(80.0, 120.0, size=40)
    first, second = rng.random(40) < 0.6, rng.random(40) < 0.6
    split = losses(second, price, breakeven, year, WAKE_H) - losses(
        first, price, breakeven, year, WAKE_H
    )
    assert np.all(losses(first, price, breakeven, year, WAKE_H)[[0, 1, 3]] >= 0)
    assert split.sum() == pytest.approx(
        earnings(first, price, breakeven, year, WAKE_H)
        - earnings(second, price, breakeven, year, WAKE_H)
    )
