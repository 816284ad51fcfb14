"""The capture lab's own arithmetic, on short made-up price series: its hindsight is the best of
every on/off sequence, its per-interval DP follows it when the forecast is the truth, and its
spell oracles sleep where they say."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.agent.capture_lab import (
    Year,
    best_first_moves,
    earnings,
    fitted_table,
    follow,
    hindsight,
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


def test_hindsight_is_the_best_of_every_sequence() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        price = list(rng.choice([20.0, 60.0, 150.0, 400.0], size=9))
        year = _year(price, 4)
        breakeven = np.full(9, 100.0)
        best = max(
            earnings(np.array(on), year.price, breakeven, year, WAKE_H)
            for on in itertools.product([True, False], repeat=9)
        )
        found = earnings(
            hindsight(year.price, breakeven, year, WAKE_H), year.price, breakeven, year, WAKE_H
        )
        assert found == pytest.approx(best)


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
