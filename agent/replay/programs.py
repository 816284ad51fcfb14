"""The grid programs in a replay: what is true (the 4CP intervals, the deployments, the clearing
prices), what each strategy commits to (its reserve awards), and what the agent knows when.

**Deployments.** No log of ERCOT's deployments is bundled, so the replay makes them, the same for
every strategy, from three sources (`deployments`):

- the recorded grid emergencies with their times (the EEA2 of 2023-09-06): every product is
  deployed for the emergency's span;
- scarcity in the real-time price: each run of intervals at or above
  `SCARCITY_USD_PER_MWH` deploys ECRS from its first interval for the run (at most ERCOT's two
  hours), and Non-Spin beside it where the run reaches `DEEP_SCARCITY_USD_PER_MWH`;
- frequency events: Responsive Reserve deployed by under-frequency relays, as a seeded Poisson
  process of `FREQUENCY_EVENTS_PER_YEAR` events of `FREQUENCY_EVENT_S` each (our assumption:
  a Load Resource trips at 59.7 Hz a few times a year at most).

A deployment drops, at its start, the qualified miners that cover each strategy's award of the
product (least efficient first) and holds them asleep to its end. A Load Resource's response is
measured on its own load: the MW it dropped by the product's response time. Less than the award
(less `DELIVERY_TOLERANCE`) is a failed deployment, charged the failure price for the MW missing
over the deployment's hours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import lru_cache

import numpy as np

from gridpilot.adapters.grid import (
    AncillaryPrices,
    CpIntervals,
    RecordedGridEvent,
    SystemLoad,
    TransmissionRates,
)
from gridpilot.adapters.recorded import CENTRAL, NotRecordedError
from gridpilot.agent.peaks import CP_MONTHS, PeakForecaster, as_load, calibrate
from gridpilot.agent.programs import PRODUCTS
from gridpilot.optimizer.problem import FloatArray

SCARCITY_USD_PER_MWH = 1_000.0
DEEP_SCARCITY_USD_PER_MWH = 2_000.0
LONGEST_DEPLOYMENT_S = {"RRS": 3_600.0, "ECRS": 2 * 3_600.0, "NSPIN": 4 * 3_600.0}
FREQUENCY_EVENTS_PER_YEAR = 2.0
FREQUENCY_EVENT_S = 20 * 60.0
DELIVERY_TOLERANCE = 0.05
# The common miner practice `threshold_4cp` follows: sleep everything in these Central hours on
# June-September weekdays whose load so far is within `CP_ALERT_SHARE` of the month's peak.
CP_WINDOW = (time(14, 0), time(19, 0))
CP_ALERT_SHARE = 0.95
# `fixed_reserve` offers this share of its RRS-qualified MW in every hour.
FIXED_RESERVE_SHARE = 0.8


@dataclass(frozen=True, slots=True, eq=False)
class GridData:
    """The recorded files of the grid programs a replay reads."""

    load: SystemLoad
    cp: CpIntervals
    rates: TransmissionRates
    ancillary: AncillaryPrices | None = None
    events: tuple[RecordedGridEvent, ...] = ()
    # An analysis, not a strategy anyone could run: the agent is told the official 4CP
    # intervals (chance 1 in each, 0 elsewhere) as a perfect bought alert would, to measure
    # what its 4CP forecast leaves on the table.
    perfect_cp_alert: bool = False
    # An analysis too: the 4CP forecaster of a year from the load (None: `peak_forecaster`,
    # learned from the summers before). The 4CP lab gives the agent better-informed ones than
    # any forecast could be, to bound what forecasting is worth.
    forecast_peaks: Callable[[SystemLoad, int], PeakForecaster] | None = None


@dataclass(frozen=True, slots=True)
class Deployment:
    product: str
    start: datetime
    end: datetime
    source: str  # "emergency", "scarcity" or "frequency"


def deployments(
    grid: GridData,
    *,
    moments: tuple[datetime, ...],
    interval_s: float,
    true_price: FloatArray,
    products: tuple[str, ...],
    seed: int = 0,
) -> tuple[Deployment, ...]:
    """The deployments of the replayed window, by the rules of the module docstring."""
    if not moments:
        return ()
    start, end = moments[0], moments[-1] + timedelta(seconds=interval_s)
    found: list[Deployment] = []
    for event in grid.events:
        if event.start_utc is None or event.end_utc is None or "EEA" not in event.kind:
            continue
        if event.end_utc > start and event.start_utc < end:
            found += [Deployment(p, event.start_utc, event.end_utc, "emergency") for p in products]
    found += _scarcity(moments, interval_s, true_price, products)
    if "RRS" in products:
        found += _frequency(start, end, seed)
    return tuple(sorted(found, key=lambda d: (d.start, d.product)))


def _scarcity(
    moments: tuple[datetime, ...], interval_s: float, price: FloatArray, products: tuple[str, ...]
) -> list[Deployment]:
    found: list[Deployment] = []
    scarce = np.concatenate(([False], price >= SCARCITY_USD_PER_MWH, [False]))
    edges = np.flatnonzero(np.diff(scarce.astype(np.int8)))
    for first, last in zip(edges[::2], edges[1::2], strict=True):
        begin = moments[int(first)]
        length_s = (int(last) - int(first)) * interval_s
        deep = bool((price[first:last] >= DEEP_SCARCITY_USD_PER_MWH).any())
        for product, wanted in (("ECRS", True), ("NSPIN", deep)):
            if wanted and product in products:
                held_s = min(length_s, LONGEST_DEPLOYMENT_S[product])
                found.append(
                    Deployment(product, begin, begin + timedelta(seconds=held_s), "scarcity")
                )
    return found


def _frequency(start: datetime, end: datetime, seed: int) -> list[Deployment]:
    rng = np.random.default_rng(seed)
    span_s = (end - start).total_seconds()
    count = int(rng.poisson(FREQUENCY_EVENTS_PER_YEAR * span_s / (365.0 * 86_400.0)))
    offsets = np.sort(rng.uniform(0.0, span_s, count))
    return [
        Deployment(
            "RRS",
            start + timedelta(seconds=float(s)),
            start + timedelta(seconds=float(s) + FREQUENCY_EVENT_S),
            "frequency",
        )
        for s in offsets
        if s + FREQUENCY_EVENT_S <= span_s
    ]


def cp_interval_indices(
    cp: CpIntervals, moments: tuple[datetime, ...], interval_s: float
) -> tuple[tuple[int, int], ...]:
    """(year, interval index) of each official 4CP interval inside the window; for a year
    without official intervals, its monthly 15-minute peaks."""
    if not moments:
        return ()
    first = moments[0]
    found = []
    for year in sorted({m.year for m in moments}):
        if not any(m.year == year and m.month in CP_MONTHS for m in moments):
            continue
        try:
            starts = cp.official(year)
        except NotRecordedError:
            starts = tuple(p.start_utc for p in cp.monthly_peaks(year) if p.month in CP_MONTHS)
        for moment in starts:
            k = round((moment - first).total_seconds() / interval_s)
            if 0 <= k < len(moments) and moments[k] == moment:
                found.append((year, k))
    return tuple(found)


def transmission_usd(
    site_watts: FloatArray,
    intervals: tuple[tuple[int, int], ...],
    rate_for_peaks_of: dict[int, float],
) -> tuple[float, tuple[float, ...]]:
    """The 4CP charge a strategy's draw sets, and its MW in each interval: a year's charge is
    its average MW in the year's four intervals times the rate billed for them ($/kW-yr, times
    1,000 per MW), so each interval in the window adds a quarter of the rate per MW (a window
    holding only some of a year's intervals is charged for those)."""
    mw = tuple(float(site_watts[k]) / 1e6 for _, k in intervals)
    total = sum(
        m * rate_for_peaks_of[year] * 1_000.0 / 4.0
        for (year, _), m in zip(intervals, mw, strict=True)
    )
    return total, mw


@lru_cache(maxsize=8)
def peak_forecaster(load: SystemLoad, year: int) -> PeakForecaster:
    """The 4CP forecaster for `year`, learned from the summers before it. Learning takes most
    of a second, so it is kept for the process's life per load (by identity: a load is read
    once and never changed) and year: a study worker's scenarios of a year share one."""
    start = load.start_utc[0]
    cut = (
        load.hourly_index(datetime(year, 1, 1, 6, tzinfo=start.tzinfo)) if start.year < year else 0
    )
    mw = np.asarray(load.mw, dtype=np.float64)
    return PeakForecaster(calibrate(as_load(start, mw[:cut])), as_load(start, mw))


def cp_alert_hours(load: SystemLoad, moments: tuple[datetime, ...]) -> np.ndarray:
    """Per interval, whether the common miner rule sleeps for 4CP in it: inside `CP_WINDOW` on
    a June-September weekday (Central) whose highest load settled by the window's start is
    within `CP_ALERT_SHARE` of the month's highest so far (the rule decides at 14:00 on what
    has settled by then)."""
    alert = np.zeros(len(moments), dtype=bool)
    decided: dict[object, bool] = {}
    mw = np.asarray(load.mw, dtype=np.float64)
    for k, moment in enumerate(moments):
        local = moment.astimezone(CENTRAL)
        if local.month not in CP_MONTHS or local.weekday() >= 5:
            continue
        if not CP_WINDOW[0] <= local.time() < CP_WINDOW[1]:
            continue
        day = local.date()
        if day not in decided:
            at = datetime.combine(day, CP_WINDOW[0], CENTRAL)
            settled = load.hourly_index(at)  # hours before this one have ended
            midnight = load.hourly_index(datetime.combine(day, time(0), CENTRAL))
            month = load.hourly_index(datetime.combine(day.replace(day=1), time(0), CENTRAL))
            today = float(np.max(mw[midnight:settled]))
            decided[day] = today >= CP_ALERT_SHARE * float(np.max(mw[month:settled]))
        alert[k] = decided[day]
    return alert


def ancillary_prices(
    prices: AncillaryPrices | None,
    products: tuple[str, ...],
    moments: tuple[datetime, ...],
    interval_s: float,
) -> dict[str, FloatArray]:
    """The day-ahead clearing price of each product per interval of the window (0 where none
    was published: nothing is awarded or paid in those hours)."""
    if prices is None or not moments:
        return {}
    return {
        p: np.nan_to_num(prices.window(p, moments[0], len(moments), interval_s), nan=0.0)
        for p in products
        if p in prices.products and p in PRODUCTS
    }


@dataclass(frozen=True, slots=True, eq=False)
class PeriodPrograms:
    """What is true of the programs over a replayed window, and what they cost."""

    products: tuple[str, ...]  # qualified and priced: the ones offered
    clearing: dict[str, FloatArray]  # day-ahead clearing price per interval, $/MW-h
    qualified_mw: dict[str, float]
    deployments: tuple[Deployment, ...]
    # Per product, per interval: whether a deployment is on, and where one starts within it (s).
    deployed: dict[str, np.ndarray]
    starts_at_s: dict[str, np.ndarray]
    cp_intervals: tuple[tuple[int, int], ...]  # (year, interval index) of the official 4CP
    rate_for_peaks_of: dict[int, float]  # $/kW-yr billed for each year's 4CP
    failure_usd_per_mw_h: float
    deploy_usd_per_mw_h: dict[str, float]
    forecasters: dict[int, PeakForecaster]  # per calendar year, learned from the years before
    alert: np.ndarray  # the miner rule's 4CP hours (threshold_4cp)

    def active(self, k: int) -> list[tuple[str, float, bool]]:
        """(product, start within the interval in s, whether it starts here) of the
        deployments on in interval `k`."""
        return [
            (p, float(self.starts_at_s[p][k]), bool(self.starts_at_s[p][k] >= 0))
            for p in self.products
            if self.deployed[p][k]
        ]

    def duration_h(self, product: str, k: int, interval_s: float) -> float:
        """How long the deployment of `product` that starts in interval `k` lasts, hours."""
        run = self.deployed[product][k:]
        off = np.flatnonzero(~run)
        return (int(off[0]) if off.size else run.size) * interval_s / 3_600.0


def mark_deployments(
    found: tuple[Deployment, ...],
    products: tuple[str, ...],
    moments: tuple[datetime, ...],
    interval_s: float,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per product, which intervals a deployment covers and where in its first one it starts
    (-1 where none starts)."""
    count = len(moments)
    deployed = {p: np.zeros(count, dtype=bool) for p in products}
    starts = {p: np.full(count, -1.0) for p in products}
    if not moments:
        return deployed, starts
    first = moments[0]
    for deployment in found:
        if deployment.product not in deployed:
            continue
        begin_s = (deployment.start - first).total_seconds()
        end_s = (deployment.end - first).total_seconds()
        k0 = max(0, int(begin_s // interval_s))
        k1 = min(count, int(np.ceil(end_s / interval_s)))
        if k0 >= k1:
            continue
        deployed[deployment.product][k0:k1] = True
        if begin_s >= 0:
            # the plant takes commands on its meter's whole seconds
            starts[deployment.product][k0] = float(int(begin_s - k0 * interval_s))
    return deployed, starts


@dataclass(frozen=True, slots=True)
class ProgramTerms:
    """The site's terms for the programs (its `[programs]` settings, as plain values)."""

    failure_usd_per_mw_h: float
    deploy_chance_per_hour: dict[str, float]
    transmission_usd_per_kw_year: float | None = None  # None: the rates file's


def period_programs(
    grid: GridData,
    terms: ProgramTerms,
    *,
    qualified_mw: dict[str, float],
    moments: tuple[datetime, ...],
    interval_s: float,
    true_price: FloatArray,
    hash_value_usd_per_mwh: float,
    seed: int = 0,
) -> PeriodPrograms:
    """The programs' truth over a window: clearing prices, deployments, the 4CP intervals and
    their rates, the 4CP forecaster of each year, the miner rule's alert hours."""
    clearing = ancillary_prices(grid.ancillary, tuple(qualified_mw), moments, interval_s)
    products = tuple(p for p in PRODUCTS if p in clearing and qualified_mw.get(p, 0.0) > 0)
    found = deployments(
        grid,
        moments=moments,
        interval_s=interval_s,
        true_price=true_price,
        products=products,
        seed=seed,
    )
    deployed, starts = mark_deployments(found, products, moments, interval_s)
    intervals = cp_interval_indices(grid.cp, moments, interval_s)
    years = sorted({m.year for m in moments})
    configured = terms.transmission_usd_per_kw_year
    rates = {
        year: configured if configured is not None else grid.rates.for_peaks_of(year)
        for year in {y for y, _ in intervals} | set(years)
        if configured is not None or _has_rate(grid.rates, year)
    }
    return PeriodPrograms(
        products=products,
        clearing=clearing,
        qualified_mw=qualified_mw,
        deployments=tuple(d for d in found if d.product in products),
        deployed=deployed,
        starts_at_s=starts,
        cp_intervals=intervals,
        rate_for_peaks_of=rates,
        failure_usd_per_mw_h=terms.failure_usd_per_mw_h,
        deploy_usd_per_mw_h={
            p: terms.deploy_chance_per_hour.get(p, 0.0) * hash_value_usd_per_mwh for p in products
        },
        forecasters={
            year: (grid.forecast_peaks or peak_forecaster)(grid.load, year)
            for year in years
            if any(m.year == year and m.month in CP_MONTHS for m in moments)
        },
        alert=cp_alert_hours(grid.load, moments),
    )


def _has_rate(rates: TransmissionRates, year: int) -> bool:
    try:
        rates.for_peaks_of(year)
    except NotRecordedError:
        return False
    return True
