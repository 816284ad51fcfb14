"""Capture lab: the miners' sleep-and-wake decisions alone, in seconds (not a test).

Run: `.venv/bin/python -m tests.agent.replay.capture_lab [--settlement-point HB_NORTH]
[--no-day-ahead]`
(or `make capture-lab`).

The full replay takes minutes and mixes every decision the agent makes. The part of capture
that price forecasts decide is the miners' sleep and wake around expensive spells, and that part
is cheap to study on its own: here each miner model of the reference site is one unit, on or
asleep in each 15-minute interval, earning (breakeven - price) per MWh while on and losing
`wake_loss_s` of hashing each time it wakes. Decisions use the previous day's hashprice and the
prices settled before the interval; scoring uses the true ones, as in the replay. Policies:

- `threshold`: asleep exactly when the last settled price was above breakeven.
- `agent forecast`: the agent's own forecast (`agent.forecast.forecast_prices`) of the next
  `HORIZON` intervals, with the exact best sleep-and-wake sequence over it, decided again every
  interval (what the planner does for one model, without the rest of the site).
- three oracles that know each expensive spell's length from its first settled interval, but
  not its start: `skip short spells` (sleeps only through spells that pay for the waking),
  `wake on time` (wakes as the spell ends, not an interval later), and both.
- `hindsight but for each spell's start`: the exact best sequence over the true prices, except
  that a unit may fall asleep only after an interval above breakeven has settled. It is the
  ceiling for any policy that cannot foresee when a spell begins.
- `table fitted on the year itself`: the best action for each combination of what is known at
  the time (the last two settled prices and the day-ahead prices of this interval and the next
  hour, each in a few bands around breakeven), chosen by its total hindsight advantage over the
  very year it is scored on. It is not a forecast anyone could run (it has seen the year), but
  an optimistic bound on what that information can tell. `table fitted on the other half` is
  the same table fitted on one half of the year and used on the other, both ways round: what
  such a table is worth on data it has not seen.
- `hindsight`: the exact best sequence over the true prices.

Capture is `(policy - always on) / (hindsight - always on)`, summed over the models by their
megawatts. It is not the replay's capture (no site limit, no GPUs, no guard), but it moves with
it: a forecast that does better here is worth a full replay. Each policy's shortfall is split
into where it is lost (`LOSSES`). Two more tables follow: how spells went on (`spell_odds`), and
whether the day-ahead price foresees a spell's start (`preemptive_sleep`).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import numpy as np

from gridpilot.adapters.recorded import (
    NotRecordedError,
    RecordedDataError,
    read_bitcoin_daily,
    read_day_ahead_prices,
    read_fee_share,
    read_gpu_trace,
    read_realtime_prices,
)
from gridpilot.agent import bundled, cli
from gridpilot.agent.forecast import forecast_prices
from gridpilot.agent.replay.period import HISTORY_DAYS, ReplayData, make_period
from gridpilot.agent.replay.simulation import _day_ahead_window
from gridpilot.agent.settings import load_settings
from gridpilot.optimizer.economics import breakeven_usd_per_mwh
from gridpilot.optimizer.problem import FloatArray

HORIZON = 32  # intervals the forecast looks ahead: 8 hours, longer than nearly every spell

BoolArray = np.ndarray[tuple[int], np.dtype[np.bool_]]
Values = float | FloatArray  # the DP step serves one path (floats) and many at once (arrays)


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    megawatts: float
    joules_per_th: float
    wake_loss_s: float


@dataclass(frozen=True, slots=True)
class Year:
    """The replayed year at one settlement point, as the lab needs it."""

    price: FloatArray  # true real-time price of each interval
    forecast: FloatArray  # (intervals, HORIZON): the agent's forecast made at each interval
    day_ahead: FloatArray  # (intervals, 2): this interval's day-ahead price and the next hour's
    # mean, as published at the time (NaN where none was)
    known_hashprice: FloatArray  # the previous day's, per interval
    true_hashprice: FloatArray
    interval_h: float
    pool_fee: float
    overhead: float

    @property
    def last_settled(self) -> FloatArray:
        """Per interval, the price of the one before it (the first interval's own at the start):
        what the threshold rule reacts to."""
        return np.concatenate(([self.price[0]], self.price[:-1]))


def load(point: str | None, day_ahead: bool) -> tuple[Year, tuple[Model, ...]]:
    settings = load_settings(bundled.REFERENCE_SITE)
    point = point or settings.site.settlement_point
    prices = read_realtime_prices(bundled.BUNDLED_PRICES, point)
    data = ReplayData(
        prices=prices,
        hashprices=read_bitcoin_daily(bundled.BUNDLED_BTC),
        trace=read_gpu_trace(bundled.BUNDLED_TRACE),
        day_ahead=read_day_ahead_prices(bundled.BUNDLED_DAY_AHEAD, point) if day_ahead else None,
        fee_share=read_fee_share(bundled.BUNDLED_FEES),
    )
    start = prices.start_utc[0]
    end = prices.start_utc[-1] + timedelta(seconds=prices.interval_s)
    period = make_period(data, start, end)
    history = round(HISTORY_DAYS * 86_400.0 / prices.interval_s)
    forecast = np.empty((len(period.moments), HORIZON))
    known_day_ahead = np.full((len(period.moments), 2), np.nan)
    steps = (prices.interval_s,) * HORIZON
    for k, now in enumerate(period.moments):
        index = period.first + k
        window = _day_ahead_window(
            data.day_ahead, data.day_ahead.known_until(now) if data.day_ahead else None
        )
        forecast[k] = forecast_prices(
            now=now,
            step_s=steps,
            history=prices.usd_per_mwh[max(0, index - history) : index],
            interval_s=prices.interval_s,
            day_ahead=window,
        )
        if window is not None:
            ahead = window(now, 5, prices.interval_s)
            known_day_ahead[k] = ahead[0], _mean_known(ahead[1:])
    models = tuple(
        Model(
            g.model,
            g.count * g.watts_per_unit / 1e6,
            g.watts_per_unit / g.ths_per_unit,
            g.wake_loss_s,
        )
        for g in settings.asic_groups
    )
    year = Year(
        price=np.asarray(period.true_price, dtype=np.float64),
        forecast=forecast,
        day_ahead=known_day_ahead,
        known_hashprice=np.array([period.known_hashprice[m.date()] for m in period.moments]),
        true_hashprice=np.array([period.day_hashprice[m.date()] for m in period.moments]),
        interval_h=prices.interval_s / 3_600.0,
        pool_fee=settings.site.pool_fee,
        overhead=settings.site.asic_overhead_factor,
    )
    return year, models


def _mean_known(values: FloatArray) -> float:
    known = values[np.isfinite(values)]
    return float(known.mean()) if known.size else float("nan")


def breakevens(year: Year, model: Model, hashprice: FloatArray) -> FloatArray:
    return np.array(
        [
            breakeven_usd_per_mwh(
                h, model.joules_per_th, pool_fee=year.pool_fee, overhead_factor=year.overhead
            )
            for h in hashprice
        ]
    )


def earnings(
    on: BoolArray, price: FloatArray, breakeven: FloatArray, year: Year, wake_h: float
) -> float:
    """Per MW, what running `on` earns over running always on."""
    before = np.concatenate(([True], on[:-1]))
    woke = on & ~before
    margin = (breakeven - price) * year.interval_h
    return float(
        np.sum(np.where(on, margin, 0.0) - np.where(woke, breakeven * wake_h, 0.0)) - np.sum(margin)
    )


def follow(keep: BoolArray, wake: BoolArray) -> BoolArray:
    """The on/off sequence from each interval's rule: stay on (if on) or wake (if asleep)."""
    on = np.empty(keep.size, dtype=bool)
    state = True
    for t in range(keep.size):
        state = bool(keep[t]) if state else bool(wake[t])
        on[t] = state
    return on


def _step_back(
    gain: Values, wake_cost: Values, value_on: Values, value_off: Values, may_sleep: bool = True
) -> tuple[Values, Values, Values, Values]:
    """One interval of the two-state DP, backwards: given an interval's margin `gain`, the cost
    of waking into it, and the best values from the next interval on (entering it on, or
    asleep), the advantage of staying on over sleeping and of waking over staying asleep, and
    the best values from this interval on. Where a unit that is on may not fall asleep
    (`may_sleep` false), being on is worth staying on, whatever that earns."""
    stay = gain + value_on - value_off
    wake = gain - wake_cost + value_on - value_off
    entering_on = value_off + (np.maximum(stay, 0.0) if may_sleep else stay)
    return stay, wake, entering_on, value_off + np.maximum(wake, 0.0)


def best_first_moves(
    prices: FloatArray, breakeven: FloatArray, year: Year, wake_h: float
) -> tuple[BoolArray, BoolArray]:
    """For each row of `prices` (intervals ahead, as seen at that row's moment), whether the
    best sequence over them starts on, from on and from asleep: an exact two-state DP."""
    value_on: Values = np.zeros(prices.shape[0])
    value_off: Values = np.zeros(prices.shape[0])
    for k in range(prices.shape[1] - 1, -1, -1):
        gain = (breakeven - prices[:, k]) * year.interval_h
        stay, wake, value_on, value_off = _step_back(gain, breakeven * wake_h, value_on, value_off)
    return np.asarray(stay >= 0), np.asarray(wake > 0)


def advantages(
    price: FloatArray,
    breakeven: FloatArray,
    year: Year,
    wake_h: float,
    may_sleep: BoolArray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Per interval, with perfect knowledge of the rest: how much more staying on earns than
    sleeping (for a unit that is on), and waking than staying asleep (for one asleep). With
    `may_sleep`, a unit that is on can fall asleep only in the intervals it marks."""
    stay = np.empty(price.size)
    wake = np.empty(price.size)
    value_on: Values = 0.0
    value_off: Values = 0.0
    gains = (breakeven - price) * year.interval_h
    for t in range(price.size - 1, -1, -1):
        allowed = True if may_sleep is None else bool(may_sleep[t])
        stay[t], wake[t], value_on, value_off = _step_back(
            gains[t], breakeven[t] * wake_h, value_on, value_off, allowed
        )
    return stay, wake


def hindsight(
    price: FloatArray,
    breakeven: FloatArray,
    year: Year,
    wake_h: float,
    may_sleep: BoolArray | None = None,
) -> BoolArray:
    stay, wake = advantages(price, breakeven, year, wake_h, may_sleep)
    keep = stay >= 0 if may_sleep is None else (stay >= 0) | ~may_sleep
    return follow(keep, wake > 0)


def fitted_table(
    year: Year, known: FloatArray, true: FloatArray, wake_h: float, *, cross: bool = False
) -> BoolArray:
    """The best action per cell of what is known at the time, fitted on the year itself, or
    with `cross` on its other half (a cell the other half never saw follows the threshold
    rule)."""
    last = year.last_settled
    before = np.concatenate(([last[0]], last[:-1]))

    def band(
        values: FloatArray, edges: tuple[float, ...]
    ) -> np.ndarray[tuple[int], np.dtype[np.int64]]:
        # NaN (no day-ahead price) gets its own band, 0.
        share = np.where(np.isfinite(values), values / known, -1.0)
        return np.where(share < 0, 0, 1 + np.digitize(share, edges)).astype(np.int64)

    prices = (0.8, 1.0, 1.5, 3.0)
    day_ahead = (0.8, 1.0, 1.5)
    cell = band(last, prices)
    for values, edges in (
        (before, prices),
        (year.day_ahead[:, 0], day_ahead),
        (year.day_ahead[:, 1], day_ahead),
    ):
        cell = cell * 10 + band(values, edges)
    _, index = np.unique(cell, return_inverse=True)
    stay, wake = advantages(year.price, true, year, wake_h)
    if not cross:
        stay_cell = np.bincount(index, weights=stay) >= 0
        wake_cell = np.bincount(index, weights=wake) > 0
        return follow(stay_cell[index], wake_cell[index])
    keep = last <= known
    wakes = keep.copy()
    half = year.price.size // 2
    for fit, use in (
        (slice(half, None), slice(None, half)),
        (slice(None, half), slice(half, None)),
    ):
        cells = index.max() + 1
        seen = np.bincount(index[fit], minlength=cells) > 0
        stay_cell = np.bincount(index[fit], weights=stay[fit], minlength=cells) >= 0
        wake_cell = np.bincount(index[fit], weights=wake[fit], minlength=cells) > 0
        known_cell = seen[index[use]]
        keep[use] = np.where(known_cell, stay_cell[index[use]], keep[use])
        wakes[use] = np.where(known_cell, wake_cell[index[use]], wakes[use])
    return follow(keep, wakes)


def spell_oracle(
    price: FloatArray,
    breakeven: FloatArray,
    year: Year,
    wake_h: float,
    *,
    skip: bool,
    on_time: bool,
) -> BoolArray:
    """Asleep from a spell's second interval (its first has settled: the start is not
    foreseen) to its end (`on_time`) or an interval past it (the threshold rule's lag); with
    `skip`, only through spells that pay for the waking."""
    on = np.ones(price.size, dtype=bool)
    high = price > breakeven
    t = 0
    while t < price.size:
        if not high[t]:
            t += 1
            continue
        end = t
        while end < price.size and high[end]:
            end += 1
        asleep_from, asleep_to = t + 1, min(end if on_time else end + 1, price.size)
        span = slice(asleep_from, asleep_to)
        saved = float(np.sum(price[span] - breakeven[span]) * year.interval_h)
        worth = asleep_to > asleep_from and (not skip or saved > breakeven[t] * wake_h)
        if worth:
            on[span] = False
        t = end
    return on


# (year, known breakeven, true breakeven, wake loss in hours) -> on or not, per interval
Policy = Callable[[Year, FloatArray, FloatArray, float], BoolArray]


def policies() -> dict[str, Policy]:
    def threshold(year: Year, known: FloatArray, _: FloatArray, __: float) -> BoolArray:
        return np.asarray(year.last_settled <= known)

    def agent(year: Year, known: FloatArray, _: FloatArray, wake_h: float) -> BoolArray:
        keep, wake = best_first_moves(year.forecast, known, year, wake_h)
        return follow(keep, wake)

    def oracle(skip: bool, on_time: bool) -> Policy:
        def decide(year: Year, known: FloatArray, _: FloatArray, wake_h: float) -> BoolArray:
            return spell_oracle(year.price, known, year, wake_h, skip=skip, on_time=on_time)

        return decide

    def unforeseen_starts(
        year: Year, known: FloatArray, true: FloatArray, wake_h: float
    ) -> BoolArray:
        return hindsight(year.price, true, year, wake_h, may_sleep=year.last_settled > known)

    return {
        "threshold": threshold,
        "agent forecast": agent,
        "oracle: skip short spells": oracle(True, False),
        "oracle: wake on time": oracle(False, True),
        "oracle: both": oracle(True, True),
        "hindsight but for each spell's start": unforeseen_starts,
        "table fitted on the year itself": fitted_table,
        "table fitted on the other half": partial(fitted_table, cross=True),
    }


LOSSES = ("awake, spell's first interval", "awake, later in a spell", "asleep, cheap", "waking")


def losses(
    on: BoolArray, price: FloatArray, breakeven: FloatArray, year: Year, wake_h: float
) -> FloatArray:
    """Per MW, what `on` gives up against sleeping through every expensive interval for free,
    in the four parts of `LOSSES` (an interval is a spell's first when the one before it was at
    or below breakeven). `earnings` is a constant less their sum, so a policy's shortfall
    against hindsight splits exactly into their differences."""
    expensive = price > breakeven
    first = expensive & ~np.concatenate(([False], expensive[:-1]))
    excess = (price - breakeven) * year.interval_h
    woke = on & ~np.concatenate(([True], on[:-1]))
    return np.array(
        [
            np.sum(excess[on & first]),
            np.sum(excess[on & expensive & ~first]),
            -np.sum(excess[~on & ~expensive]),
            np.sum(breakeven[woke] * wake_h),
        ]
    )


def capture(
    year: Year, models: tuple[Model, ...]
) -> tuple[dict[str, float], dict[str, FloatArray]]:
    """Per policy, its capture and its shortfall against hindsight split by `LOSSES` (as shares
    of hindsight's gain over always on: they add up to 1 - capture)."""
    totals = dict.fromkeys([*policies(), "hindsight"], 0.0)
    parts = {name: np.zeros(len(LOSSES)) for name in policies()}
    for model in models:
        wake_h = model.wake_loss_s / 3_600.0
        known = breakevens(year, model, year.known_hashprice)
        true = breakevens(year, model, year.true_hashprice)
        best = hindsight(year.price, true, year, wake_h)
        totals["hindsight"] += model.megawatts * earnings(best, year.price, true, year, wake_h)
        best_losses = losses(best, year.price, true, year, wake_h)
        for name, policy in policies().items():
            on = policy(year, known, true, wake_h)
            totals[name] += model.megawatts * earnings(on, year.price, true, year, wake_h)
            parts[name] += model.megawatts * (
                losses(on, year.price, true, year, wake_h) - best_losses
            )
    bound = totals.pop("hindsight")
    return (
        {name: value / bound for name, value in totals.items()},
        {name: value / bound for name, value in parts.items()},
    )


# Bands of the day-ahead price as a share of breakeven, for `preemptive_sleep`.
DAY_AHEAD_BANDS = (0.5, 0.8, 1.0, 1.5, 3.0)


def preemptive_sleep(year: Year, models: tuple[Model, ...]) -> list[tuple[str, int, float, float]]:
    """Can the day-ahead price foresee a spell's start? Over the intervals that follow a settled
    price at or below breakeven (where only a forecast could call for sleep), per band of this
    interval's day-ahead price as a share of breakeven: how many there are, the share whose
    price came out above breakeven, and what sleeping through every one of them would have
    earned over staying on, in $ per MW of miners, before any waking loss (so an optimistic
    figure: a band where it is negative cannot pay for a forecast's sleep)."""
    rows: dict[int, list[float]] = {}
    total_mw = sum(model.megawatts for model in models)
    for model in models:
        known = breakevens(year, model, year.known_hashprice)
        true = breakevens(year, model, year.true_hashprice)
        calm = year.last_settled <= known
        share = year.day_ahead[:, 0] / known
        band = np.where(np.isfinite(share), 1 + np.digitize(share, DAY_AHEAD_BANDS), 0)
        weight = model.megawatts / total_mw
        for b in np.unique(band[calm]):
            chosen = calm & (band == b)
            row = rows.setdefault(int(b), [0.0, 0.0, 0.0])
            row[0] += weight * float(chosen.sum())
            row[1] += weight * float(np.sum(year.price[chosen] > true[chosen]))
            row[2] += weight * float(np.sum(year.price[chosen] - true[chosen]) * year.interval_h)
    edges = ("0", *(f"{edge:g}" for edge in DAY_AHEAD_BANDS), "")
    labels = ["no day-ahead price"] + [
        f"day-ahead {low}-{high} x breakeven" if high else f"day-ahead >= {low} x breakeven"
        for low, high in itertools.pairwise(edges)
    ]
    return [
        (labels[b], round(count), above / count, value)
        for b, (count, above, value) in sorted(rows.items())
        if count > 0
    ]


@dataclass(frozen=True, slots=True)
class SpellOdds:
    """How spells went on, for one model (breakeven as known at the time)."""

    breakeven: float  # mean, $/MWh
    went_on: float  # share of spells whose second interval was expensive too
    excess: float  # mean price above breakeven in that second interval, $/MWh
    waking: float  # what one waking costs, $ per MW
    # share of spells followed, after their first cheap interval, by an expensive one
    resumed: float


def spell_odds(year: Year, model: Model) -> SpellOdds:
    """`SpellOdds` over the year (NaN where it had no spell)."""
    known = breakevens(year, model, year.known_hashprice)
    expensive = year.price > known
    # Intervals whose previous one was a spell's first, and the first cheap one after a spell.
    after_one = np.zeros_like(expensive)
    after_one[2:] = expensive[1:-1] & ~expensive[:-2]
    after_end = np.zeros_like(expensive)
    after_end[2:] = ~expensive[1:-1] & expensive[:-2]

    def mean(values: FloatArray) -> float:
        return float(values.mean()) if values.size else float("nan")

    return SpellOdds(
        breakeven=float(known.mean()),
        went_on=mean(expensive[after_one].astype(np.float64)),
        excess=mean(year.price[after_one] - known[after_one]),
        waking=float(known.mean() * model.wake_loss_s / 3_600.0),
        resumed=mean(expensive[after_end].astype(np.float64)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.agent.replay.capture_lab")
    parser.add_argument("--settlement-point", default=None)
    parser.add_argument("--no-day-ahead", action="store_true")
    args = parser.parse_args(argv)
    try:
        year, models = load(args.settlement_point, not args.no_day_ahead)
    except (RecordedDataError, NotRecordedError) as error:
        print(f"capture_lab: {error}", file=sys.stderr)
        return cli.EX_DATAERR
    shares, shortfalls = capture(year, models)
    print(f"{'miners alone':40s} capture | shortfall: " + " | ".join(LOSSES))
    for name, share in shares.items():
        split = " ".join(f"{part:6.3f}" for part in shortfalls[name])
        print(f"  {name:38s} {share:6.3f} | {split}")
    print("spells, per model: breakeven $/MWh, share going on after their first interval, mean")
    print("excess $/MWh in the second, waking $/MW, share resuming after their first cheap one:")
    for model in models:
        odds = spell_odds(year, model)
        print(
            f"  {model.name:38s} {odds.breakeven:6.1f} {odds.went_on:6.3f} {odds.excess:7.1f}"
            f" {odds.waking:6.1f} {odds.resumed:6.3f}"
        )
    print("after a settled price at or below breakeven (intervals, share above it, $/MW asleep):")
    for label, count, above, value in preemptive_sleep(year, models):
        print(f"  {label:38s} {count:6d} {above:6.3f} {value:10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
