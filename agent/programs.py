"""The grid programs as the planner sees them, in the daemon and the replay alike.

Two programs enter the optimizer's one model beside energy (`optimizer.problem.Programs`):

- **4CP.** The chance that an interval is its month's coincident peak (agent.peaks, or a
  bought 4CP alert), times a quarter of the yearly transmission rate, is an expected charge per
  MW drawn in it; per MWh of a step it is priced like energy.
- **Reserves as a Load Resource.** The site offers MW of each product its groups are qualified
  for in ERCOT's day-ahead market, whose offers close at 10:00 Central on the day before
  (`DAY_AHEAD_OFFERS_DUE`); it is paid the clearing price for every MW awarded, held ready to
  drop within the product's response time, deployed or not. The site offers as a price taker
  (at zero), so what it offers is what it is awarded. Awarded hours bind the real-time plans:
  a MW of an award not held is charged (`ProgramSettings.failure_usd_per_mw_h`).

What the offer for a day holds is decided by the same planner, over the horizon to the day's
end, with each product's expected clearing price: the median of the same hour over the last
week of published day-ahead prices (`expected_prices`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

import numpy as np

from gridpilot.adapters.grid import AncillaryPrices
from gridpilot.adapters.recorded import CENTRAL
from gridpilot.optimizer.economics import SECONDS_PER_HOUR
from gridpilot.optimizer.problem import FloatArray, Problem, Programs, ReserveProduct

# How fast each product's MW must be dropped, seconds: Responsive Reserve from a Load Resource
# on an under-frequency relay trips within about half a second; ERCOT Contingency Reserve is
# deployed within 10 minutes and Non-Spinning Reserve within 30 (docs/domain.md, "Reserves").
RESPONSE_S: Mapping[str, float] = {"RRS": 0.5, "ECRS": 600.0, "NSPIN": 1_800.0}
PRODUCTS = tuple(RESPONSE_S)
# ERCOT's day-ahead market takes offers for operating day D until 10:00 Central on D-1.
DAY_AHEAD_OFFERS_DUE = time(10, 0)
PRICE_HISTORY_DAYS = 30
QUARTERS_PER_CP_INTERVAL = 1  # a coincident peak is one 15-minute interval


@dataclass(frozen=True, slots=True, eq=False)
class AwardBook:
    """Day-ahead awards per product, MW per hour, by the hour's start (UTC), with the price
    each cleared at."""

    mw: Mapping[str, Mapping[datetime, float]] = field(default_factory=dict)
    usd_per_mw_h: Mapping[str, Mapping[datetime, float]] = field(default_factory=dict)

    def window(self, product: str, start: datetime, count: int, interval_s: float) -> FloatArray:
        """MW awarded in each of `count` intervals from `start` (0 where nothing is)."""
        awards = self.mw.get(product, {})
        return np.array([awards.get(_hour(start, k, interval_s), 0.0) for k in range(count)])

    def prices(self, product: str, start: datetime, count: int, interval_s: float) -> FloatArray:
        prices = self.usd_per_mw_h.get(product, {})
        return np.array([prices.get(_hour(start, k, interval_s), 0.0) for k in range(count)])

    def with_day(
        self,
        product: str,
        awards: Mapping[datetime, float],
        prices: Mapping[datetime, float],
    ) -> AwardBook:
        """This book with `product`'s awards and prices for more hours."""
        mw = {**self.mw, product: {**self.mw.get(product, {}), **awards}}
        usd = {**self.usd_per_mw_h, product: {**self.usd_per_mw_h.get(product, {}), **prices}}
        return AwardBook(mw, usd)

    def held_hours(self, product: str) -> int:
        return sum(1 for mw in self.mw.get(product, {}).values() if mw > 0)


def _hour(start: datetime, k: int, interval_s: float) -> datetime:
    moment = start + timedelta(seconds=k * interval_s)
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True, eq=False)
class ReserveView:
    """One product over the intervals ahead: what holding a MW earns, how much may and must
    be held."""

    name: str
    usd_per_mw_h: FloatArray
    max_mw: FloatArray
    awarded_mw: FloatArray
    failure_usd_per_mw_h: float
    deploy_usd_per_mw_h: float


@dataclass(frozen=True, slots=True, eq=False)
class ProgramView:
    """The programs as known at the moment of deciding, per interval from then on.

    `cp_chance`: the chance that each interval is its month's coincident peak (empty: 4CP not
    considered); `awards_key` changes whenever the awards ahead do, so that a standing plan
    made before new awards is made again."""

    cp_chance: FloatArray
    transmission_usd_per_kw_year: float
    reserves: tuple[ReserveView, ...] = ()
    awards_key: object = None

    def on_steps(self, steps: int, interval_s: float) -> Programs:
        """The optimizer's `Programs` for `steps` steps of one interval each."""
        hours = interval_s / SECONDS_PER_HOUR
        transmission: tuple[float, ...] = ()
        if self.cp_chance.size:
            chance = _fit(self.cp_chance, steps)
            # $/MW of average demand in one interval: a quarter of the yearly rate ($/kW-yr).
            per_mw = self.transmission_usd_per_kw_year * 1_000.0 / 4.0
            transmission = tuple((chance * per_mw / hours).tolist())
        reserves = tuple(
            ReserveProduct(
                name=r.name,
                response_s=RESPONSE_S[r.name],
                usd_per_mw_h=tuple(_fit(r.usd_per_mw_h, steps).tolist()),
                max_mw=tuple(_fit(r.max_mw, steps).tolist()),
                awarded_mw=tuple(_fit(r.awarded_mw, steps).tolist()),
                failure_usd_per_mw_h=r.failure_usd_per_mw_h,
                deploy_usd_per_mw_h=r.deploy_usd_per_mw_h,
            )
            for r in self.reserves
        )
        return Programs(reserves=reserves, transmission_usd_per_mwh=transmission)

    def transmission_usd_per_mwh(self, count: int, interval_s: float) -> FloatArray:
        """The expected 4CP charge per MWh of each of the next `count` intervals."""
        if not self.cp_chance.size:
            return np.zeros(count)
        per_mw = self.transmission_usd_per_kw_year * 1_000.0 / 4.0
        return _fit(self.cp_chance, count) * per_mw / (interval_s / SECONDS_PER_HOUR)


def _fit(values: FloatArray, count: int) -> FloatArray:
    """`values` cut or padded with zeros to `count`."""
    out = np.zeros(count)
    out[: min(count, values.size)] = values[:count]
    return out


def qualified_mw(site: Problem) -> dict[str, float]:
    """Per product, the MW at the meter its qualified groups draw at full power."""
    mw = dict.fromkeys(PRODUCTS, 0.0)
    for group in site.asic_groups:
        for product in group.reserve_products:
            mw[product] += group.units * group.watts_per_unit * group.overhead_factor / 1e6
    for gpu in site.gpu_groups:
        for product in gpu.reserve_products:
            mw[product] += gpu.nodes * gpu.full_node_watts * gpu.overhead_factor / 1e6
    return {p: v for p, v in mw.items() if v > 0}


def expected_prices(
    prices: AncillaryPrices,
    product: str,
    *,
    now: datetime,
    start: datetime,
    count: int,
    interval_s: float,
) -> FloatArray:
    """Each interval's expected clearing price: the mean of the same hour over the last
    `PRICE_HISTORY_DAYS` days whose prices were published by `now`. An award is paid the
    price, so what an offer is worth is the price's expectation: the mean, not the median,
    which would miss the scarce hours where most of the revenue lies (ECRS 2024: mean 8.28,
    median 1.00 $/MW-h)."""
    known_until = prices.known_until(now)
    # The same hours of each earlier day (on the local clock, so 23 or 25 hours apart across a
    # clock change), sliced from one window over them all: an interval's price is its own.
    earlier = [start - timedelta(days=days) for days in range(1, PRICE_HISTORY_DAYS + 1)]
    first = earlier[-1].astimezone(UTC)
    offsets = np.array(
        [round((e.astimezone(UTC) - first).total_seconds() / interval_s) for e in earlier]
    )
    every = prices.window(product, first, int(offsets[0]) + count, interval_s)
    published_s = np.array([(known_until - e).total_seconds() for e in earlier])
    published = (np.arange(count) + 1) * interval_s <= published_s[:, None] + 1e-6
    stacked = np.where(published, every[offsets[:, None] + np.arange(count)], np.nan)
    if not np.isfinite(stacked).any():
        return np.zeros(count)
    known = np.isfinite(stacked)
    # Intervals with no published hour in the window take the window's mean of all hours.
    mean = np.full(count, float(np.mean(stacked[known])))
    counts = known.sum(axis=0)
    has = counts > 0
    mean[has] = np.where(known, stacked, 0.0).sum(axis=0)[has] / counts[has]
    return np.asarray(mean, dtype=np.float64)


def next_offer_day(now: datetime) -> datetime | None:
    """The Central midnight starting the operating day whose offers are due at `now`'s
    interval: from 10:00 Central, tomorrow's; None before it."""
    local = now.astimezone(CENTRAL)
    if local.time() < DAY_AHEAD_OFFERS_DUE:
        return None
    return datetime.combine(local.date() + timedelta(days=1), time(0), CENTRAL)


def offer_window(day_start_local: datetime) -> tuple[datetime, datetime]:
    """The operating day [start, end) in UTC: 23, 24 or 25 hours."""
    end_local = datetime.combine(day_start_local.date() + timedelta(days=1), time(0), CENTRAL)
    return day_start_local.astimezone(CENTRAL), end_local


SPIKE_HISTORY_DAYS = 30


def spike_cost(
    history_usd_per_mwh: FloatArray,
    *,
    interval_s: float,
    offsets: range,
    breakeven_usd_per_mwh: float,
    days: int = SPIKE_HISTORY_DAYS,
) -> FloatArray:
    """What holding a MW ready is expected to cost in each interval `offsets` from now: a MW
    held cannot sleep when the price rises above the breakeven of the miners that hold it, so
    it pays the excess. The mean excess at the same time of day over the last `days` days of
    settled prices (`history_usd_per_mwh` ends with the interval just before now), $/MW-h.
    A forecast's median cannot see it: the spikes are in the tail."""
    per_day = round(86_400.0 / interval_s)
    usable = min(days, history_usd_per_mwh.size // per_day)
    if usable == 0:
        return np.zeros(len(offsets))
    recent = history_usd_per_mwh[history_usd_per_mwh.size - usable * per_day :]
    excess = np.maximum(0.0, recent.reshape(usable, per_day) - breakeven_usd_per_mwh).mean(axis=0)
    # Column j is the time of day j intervals after the start of the last whole day, which
    # began `per_day` intervals before now: interval t from now sits in column t mod per_day.
    return np.asarray(excess[np.arange(offsets.start, offsets.stop) % per_day], dtype=np.float64)


def holding_breakeven(site: Problem, product: str, hashprice_usd_per_th_day: float) -> float:
    """The breakeven at the meter of the least efficient miners qualified for `product`: the
    first the site would put to sleep as the price rises, were they not held."""
    candidates = [
        hashprice_usd_per_th_day
        * (1 - site.pool_fee)
        * 1e6
        / (24.0 * g.joules_per_th * g.overhead_factor)
        for g in site.asic_groups
        if product in g.reserve_products
    ]
    return min(candidates) if candidates else 0.0


def awards_since(book: AwardBook, moment: datetime) -> AwardBook:
    """`book` without the hours that ended before `moment`: what a long-running agent keeps."""
    first = moment.replace(minute=0, second=0, microsecond=0)
    return AwardBook(
        {p: {h: mw for h, mw in hours.items() if h >= first} for p, hours in book.mw.items()},
        {
            p: {h: usd for h, usd in hours.items() if h >= first}
            for p, hours in book.usd_per_mw_h.items()
        },
    )
