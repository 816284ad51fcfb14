"""Replay: recorded telemetry through the live planner and guard, on a simulated plant.

Four strategies run on the same plant (its GPU jobs swinging with the real H100 trace), with the
same site-limit margin and the same guard:

- `agent`: the planner, re-planning every price interval on what it knows then: settled
  real-time prices up to the interval before, the day-ahead prices published by then, and the
  previous day's hashprice.
- `always_on`: every miner awake but what the site limit forces asleep; GPUs untouched.
- `threshold`: each model sleeps while the last settled price exceeds its breakeven at the
  previous day's hashprice (in the first recorded interval, with no price settled yet, none
  sleeps for price); GPUs untouched.
- `hindsight`: the same model over the whole period given the true prices and hashprice.

Each interval every strategy's setpoints are applied, the meter is read at its resolution, the
guard sheds miners from the first sample over the cap, and the interval is accounted at the true
real-time price and the day's true hashprice. Nothing of the future reaches the agent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

import numpy as np

from gridpilot.adapters.plant import IntervalUse, SimulatedPlant
from gridpilot.adapters.recorded import (
    DayAheadSeries,
    FeeShareSeries,
    Gap,
    GpuTrace,
    HashpriceSeries,
    PriceSeries,
)
from gridpilot.agent.guard import shed, shed_order
from gridpilot.agent.pacing import marginal_hash_value_usd_per_mwh
from gridpilot.agent.planner import (
    MarketView,
    Planner,
    PlantState,
    RecedingPlanner,
    month_end,
    month_start,
)
from gridpilot.agent.programs import (
    RESPONSE_S,
    ProgramView,
    ReserveView,
    expected_prices,
    holding_breakeven,
    next_offer_day,
    offer_window,
    qualified_mw,
    spike_cost,
)
from gridpilot.agent.replay.programs import (
    DELIVERY_TOLERANCE,
    FIXED_RESERVE_SHARE,
    Deployment,
    GridData,
    PeriodPrograms,
    ProgramTerms,
    period_programs,
    transmission_usd,
)
from gridpilot.optimizer.economics import SECONDS_PER_DAY, SECONDS_PER_HOUR
from gridpilot.optimizer.hindsight import hindsight
from gridpilot.optimizer.merit import always_on, threshold
from gridpilot.optimizer.plan import CP_REASON
from gridpilot.optimizer.problem import (
    AllowanceBudget,
    FloatArray,
    Problem,
    Programs,
    ReserveProduct,
    Tier,
    uniform_steps,
)
from gridpilot.optimizer.schedule import Schedule

STRATEGIES = ("agent", "always_on", "threshold", "hindsight")
# Beside them when the grid programs are replayed: the miners' threshold rule with the common
# 4CP practice, and a constant Responsive Reserve offer in every hour.
PROGRAM_BASELINES = ("threshold_4cp", "fixed_reserve")

# One interval's commands: ASIC units on, then per GPU group cap level, capped and paused nodes.
Setpoints = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

# Transaction fees' share of miner revenue where the recorded fee data has no day: the mean of
# the bundled blockchain.com series (2023-04-30 to 2024-04-28), per deploy/data/SOURCES.md.
DEFAULT_FEE_SHARE = 0.078

# Settled real-time prices the agent keeps for its forecast, as the daemon does.
HISTORY_DAYS = 40


class ReplayWindowError(ValueError):
    """A start and end the recorded prices cannot replay: reversed, off their interval grid,
    or outside them."""


class ReplayGapError(ValueError):
    """A gap in the real-time prices a replay reads (its window, or the agent's history before
    it) longer than the replay bridges. `where` says which of the two it is in."""

    def __init__(self, series: str, gap: Gap, *, where: str, max_gap_s: float) -> None:
        minutes = (gap.end_utc - gap.start_utc).total_seconds() / 60.0
        super().__init__(
            f"gap in {series} {where}: {gap.missing_intervals} intervals missing from"
            f" {gap.start_utc:%Y-%m-%d %H:%M} UTC ({minutes:g} min); gaps of up to"
            f" {max_gap_s / 60:g} min are bridged"
        )
        self.series = series
        self.gap = gap
        self.where = where
        self.max_gap_s = max_gap_s


@dataclass(frozen=True, slots=True, eq=False)
class ReplayData:
    prices: PriceSeries
    hashprices: HashpriceSeries
    trace: GpuTrace
    day_ahead: DayAheadSeries | None = None
    fee_share: FeeShareSeries | None = None
    # The grid programs' files; None: energy alone.
    grid: GridData | None = None
    # A constant hashprice, fees included, in place of the recorded one (what-if runs, and
    # windows past the bundled Bitcoin data).
    hashprice_usd_per_th_day: float | None = None


@dataclass(slots=True)
class Totals:
    """What one strategy earned and used over the replay."""

    hash_revenue_usd: float = 0.0
    ai_revenue_usd: float = 0.0
    energy_cost_usd: float = 0.0
    penalty_usd: float = 0.0
    energy_mwh: float = 0.0
    asic_curtailed_mwh: float = 0.0
    gpu_curtailed_gpu_hours: float = 0.0
    sla_breaches: int = 0
    limit_violation_minutes: float = 0.0
    guard_sheds: int = 0
    monthly_profit_usd: dict[str, float] = field(default_factory=dict)
    allowance_used: dict[str, dict[str, float]] = field(default_factory=dict)  # month -> contract
    # Grid programs: the 4CP charge the replay's draw sets, reserves paid and failures charged.
    transmission_usd: float = 0.0
    ancillary_usd: float = 0.0
    ancillary_by_product_usd: dict[str, float] = field(default_factory=dict)
    reserve_failure_usd: float = 0.0
    deployments: int = 0
    failed_deployments: int = 0
    cp_hours_curtailed: float = 0.0  # hours in which load was lowered for 4CP
    cp_mw_at_intervals: tuple[float, ...] = ()  # site MW in each official 4CP interval

    @property
    def programs_usd(self) -> float:
        return self.ancillary_usd - self.reserve_failure_usd - self.transmission_usd

    @property
    def profit_usd(self) -> float:
        energy = self.hash_revenue_usd + self.ai_revenue_usd - self.energy_cost_usd
        return energy - self.penalty_usd + self.programs_usd


@dataclass(frozen=True, slots=True, eq=False)
class ReplayResult:
    start: datetime
    end: datetime
    settlement_point: str
    totals: dict[str, Totals]
    wall_s: float
    # Per interval, for the report: price, and per strategy the site's mean draw.
    price_usd_per_mwh: FloatArray
    site_watts: dict[str, FloatArray]
    asic_curtailed_watts: dict[str, FloatArray]
    # The agent's setpoints per interval, after the guard: ASIC units on per group, then GPU
    # capped and paused nodes per group.
    agent_decisions: np.ndarray
    agent_solves: int  # how often the agent solved afresh (it re-plans when the world departs)
    # Gaps in the recorded data that the replay saw (window and history), by the series' name.
    data_gaps: tuple[tuple[str, Gap], ...] = ()
    deployments: tuple[Deployment, ...] = ()
    cp_intervals: tuple[datetime, ...] = ()  # the official 4CP intervals in the window
    hashprice_usd_per_th_day: float | None = None  # the constant one, where one was given

    @property
    def strategies(self) -> tuple[str, ...]:
        return tuple(self.totals)

    def capture(self, strategy: str) -> float:
        """Share of the hindsight bound's improvement over always-on that `strategy` achieves."""
        base = self.totals["always_on"].profit_usd
        best = self.totals["hindsight"].profit_usd - base
        return (self.totals[strategy].profit_usd - base) / best if best > 0 else float("nan")


class _Strategy:
    """One strategy's plant, ledger and state through the replay."""

    def __init__(self, site: Problem, trace: GpuTrace, seed: int) -> None:
        self.site = site
        self.plant = SimulatedPlant(site.asic_groups, site.gpu_groups, trace, seed=seed)
        self.totals = Totals()
        self.full_units = np.array([g.units for g in site.asic_groups], dtype=np.int64)
        self.asic_full_watts = sum(
            g.units * g.watts_per_unit * g.overhead_factor for g in site.asic_groups
        )
        self.units_on = np.array([g.on_now for g in site.asic_groups], dtype=np.int64)
        groups = len(site.gpu_groups)
        self.curtailed = np.zeros(groups, dtype=np.int64)
        self.curtailed_for_s = np.zeros(groups)
        self.max_event_s = np.array(
            [site.contract(g.contract).max_event_s or np.inf for g in site.gpu_groups]
        )
        self.order = shed_order(site.asic_groups)
        # Reserve awards (MW per product and interval) and the intervals lowered for 4CP,
        # filled in as the strategy decides them.
        self.awards: dict[str, FloatArray] = {}
        self.lowered_for_cp: np.ndarray = np.zeros(0, dtype=bool)

    def state(self) -> PlantState:
        return PlantState(
            asic_units_on=tuple(int(u) for u in self.units_on),
            gpu_curtailed_nodes=tuple(int(c) for c in self.curtailed),
            gpu_curtailed_for_s=tuple(float(s) for s in self.curtailed_for_s),
        )

    def used(self, month: str) -> dict[str, float]:
        return dict(self.totals.allowance_used.get(month, {}))


def _month_key(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def _true_hashprice(data: ReplayData, day: date) -> float:
    """The day's hashprice including transaction fees (subsidy-only / (1 - fee share)), or
    the constant one given."""
    if data.hashprice_usd_per_th_day is not None:
        return data.hashprice_usd_per_th_day
    fee = data.fee_share.on(day) if data.fee_share is not None else None
    share = DEFAULT_FEE_SHARE if fee is None else fee
    return data.hashprices.on(day) / (1.0 - share)


@dataclass(frozen=True, slots=True, eq=False)
class _Period:
    """The replayed span and what is true and known in it."""

    start: datetime
    interval_s: float
    first: int  # index of the first interval in the price series
    moments: tuple[datetime, ...]
    true_price: FloatArray
    day_hashprice: dict[date, float]  # true, fees included
    known_hashprice: dict[date, float]  # the previous day's, as known on the day
    programs: PeriodPrograms | None = None


@dataclass(slots=True, eq=False)
class _Run:
    """One strategy's figures and series through the replay."""

    totals: Totals
    site_watts: FloatArray
    asic_curtailed_watts: FloatArray
    decisions: np.ndarray
    solves: int = 0


def data_gaps(data: ReplayData, start: datetime, end: datetime) -> tuple[tuple[str, Gap], ...]:
    """The gaps the readers bridged or left in the data a replay of [start, end) uses: its
    window and the agent's history before it, each named by its series. Gaps elsewhere in the
    files are no part of the replay and are left out."""
    seen_from = start - timedelta(days=HISTORY_DAYS)
    series: list[tuple[str, tuple[Gap, ...]]] = [(_realtime_name(data), data.prices.gaps)]
    if data.day_ahead is not None:
        series.append((f"day-ahead prices at {data.prices.settlement_point}", data.day_ahead.gaps))
    return tuple(
        (name, gap)
        for name, gaps in series
        for gap in gaps
        if gap.end_utc > seen_from and gap.start_utc < end
    )


def check_gaps(data: ReplayData, start: datetime, end: datetime, *, max_gap_s: float) -> None:
    """Raise `ReplayGapError` for the first gap in the real-time prices a replay of [start, end)
    reads (see `data_gaps`) that is longer than `max_gap_s`: its bridged prices would stand in
    for too much of what the agent sees or is scored on. Gaps outside are not judged, so a
    price file read with `max_gap_s=math.inf` can be replayed anywhere its data is whole
    enough."""
    name = _realtime_name(data)
    for series, gap in data_gaps(data, start, end):
        if series != name or (gap.end_utc - gap.start_utc).total_seconds() <= max_gap_s + 1e-6:
            continue
        where = (
            "in the replayed window"
            if gap.end_utc > start and gap.start_utc < end
            else f"in the {HISTORY_DAYS} days of history before the window"
        )
        raise ReplayGapError(series, gap, where=where, max_gap_s=max_gap_s)


def _realtime_name(data: ReplayData) -> str:
    return f"real-time prices at {data.prices.settlement_point}"


def check_window(prices: PriceSeries, start: datetime, end: datetime) -> None:
    """Raise `ReplayWindowError` unless [start, end) is a run of whole intervals of `prices`."""
    interval_s = prices.interval_s
    if end <= start:
        raise ReplayWindowError(
            f"the end {end.isoformat()} is not after the start {start.isoformat()}"
        )
    for name, moment in (("start", start), ("end", end)):
        intervals = (moment - prices.start_utc[0]).total_seconds() / interval_s
        if abs(intervals - round(intervals)) > 1e-9:
            raise ReplayWindowError(
                f"the {name} {moment.isoformat()} is not on the {interval_s / 60:g}-minute grid"
                f" of the recorded prices, which start at {prices.start_utc[0].isoformat()}"
            )
    last = prices.start_utc[-1] + timedelta(seconds=interval_s)
    if start < prices.start_utc[0] or end > last:
        raise ReplayWindowError(
            f"the recorded prices cover {prices.span()}, not {start.isoformat()} to"
            f" {end.isoformat()}"
        )


def _period(
    data: ReplayData,
    start: datetime,
    end: datetime,
    max_gap_s: float = 3_600.0,
    *,
    site: Problem | None = None,
    terms: ProgramTerms | None = None,
) -> _Period:
    check_window(data.prices, start, end)
    check_gaps(data, start, end, max_gap_s=max_gap_s)
    prices = data.prices
    interval_s = prices.interval_s
    count = round((end - start).total_seconds() / interval_s)
    first = prices.index_of(start)
    moments = tuple(start + timedelta(seconds=k * interval_s) for k in range(count))
    days = sorted({m.date() for m in moments})
    true_price = prices.usd_per_mwh[first : first + count]
    known = {d: _true_hashprice(data, d - timedelta(days=1)) for d in days}
    programs = None
    if data.grid is not None and terms is not None and site is not None:
        programs = period_programs(
            data.grid,
            terms,
            qualified_mw=qualified_mw(site),
            moments=moments,
            interval_s=interval_s,
            true_price=true_price,
            hash_value_usd_per_mwh=marginal_hash_value_usd_per_mwh(
                site, float(np.mean(list(known.values())))
            ),
        )
    return _Period(
        start=start,
        interval_s=interval_s,
        first=first,
        moments=moments,
        true_price=true_price,
        day_hashprice={d: _true_hashprice(data, d) for d in days},
        known_hashprice=known,
        programs=programs,
    )


def replay(
    site: Problem,
    data: ReplayData,
    *,
    start: datetime,
    end: datetime,
    planner: Planner | None = None,
    progress: Callable[[int, int], None] | None = None,
    parallel: bool = True,
    max_gap_s: float = 3_600.0,
    terms: ProgramTerms | None = None,
) -> ReplayResult:
    """Replay [start, end) on `site` (a problem template: groups, contracts, limits).

    With `data.grid` and the site's program `terms` the grid programs are replayed too: every
    strategy is charged the 4CP cost of its own draw and paid for the reserves it was awarded,
    deployments simulated on its plant; `threshold_4cp` and `fixed_reserve` run beside.

    A gap in the real-time prices longer than `max_gap_s` in the window or the agent's history
    before it is a `ReplayGapError` (see `check_gaps`); gaps elsewhere in the data do not
    matter. The strategies do not interact, so with `parallel` the references (always-on, the
    baselines, the hindsight bound) run in a second process while the agent runs here."""
    started = time.perf_counter()
    period = _period(data, start, end, max_gap_s, site=site, terms=terms)
    runs: dict[str, _Run] = {}
    if parallel:
        with ProcessPoolExecutor(max_workers=1) as pool:
            # The references read the programs' truth from the period; the files stay here.
            references = pool.submit(_run_references, site, replace(data, grid=None), period)
            runs["agent"] = _run_agent(site, data, period, planner or Planner(site), progress)
            runs.update(references.result())
    else:
        runs["agent"] = _run_agent(site, data, period, planner or Planner(site), progress)
        runs.update(_run_references(site, data, period))
    names = STRATEGIES + (PROGRAM_BASELINES if period.programs is not None else ())
    programs = period.programs
    return ReplayResult(
        start=start,
        end=end,
        settlement_point=data.prices.settlement_point,
        totals={name: runs[name].totals for name in names},
        wall_s=time.perf_counter() - started,
        price_usd_per_mwh=period.true_price,
        site_watts={name: runs[name].site_watts for name in names},
        asic_curtailed_watts={name: runs[name].asic_curtailed_watts for name in names},
        agent_decisions=runs["agent"].decisions,
        agent_solves=runs["agent"].solves,
        data_gaps=data_gaps(data, start, end),
        deployments=programs.deployments if programs else (),
        cp_intervals=tuple(period.moments[k] for _, k in programs.cp_intervals) if programs else (),
        hashprice_usd_per_th_day=data.hashprice_usd_per_th_day,
    )


def _simulate(
    site: Problem,
    data: ReplayData,
    period: _Period,
    decide: Callable[[int, _Strategy], Setpoints],
    progress: Callable[[int, int], None] | None = None,
    *,
    prepare: Callable[[_Strategy], None] | None = None,
) -> _Run:
    """Run one strategy's decisions through its own plant, guard and ledger. `prepare` fills
    in what a strategy commits to ahead (its reserve awards, its 4CP hours) before it runs."""
    strategy = _Strategy(site, data.trace, seed=0)
    count = len(period.moments)
    strategy.lowered_for_cp = np.zeros(count, dtype=bool)
    if period.programs is not None:
        strategy.awards = {p: np.zeros(count) for p in period.programs.products}
    if prepare is not None:
        prepare(strategy)
    cap = site.site_limit_watts - site.site_margin_watts
    asic_watts = np.array([g.watts_per_unit * g.overhead_factor for g in site.asic_groups])
    run = _Run(
        totals=strategy.totals,
        site_watts=np.zeros(count),
        asic_curtailed_watts=np.zeros(count),
        decisions=np.zeros((count, len(site.asic_groups) + 2 * len(site.gpu_groups)), np.int32),
    )
    for k, now in enumerate(period.moments):
        setpoints = decide(k, strategy)
        use = _run_interval(
            strategy,
            setpoints=setpoints,
            at_s=k * period.interval_s,
            interval_s=period.interval_s,
            cap_watts=cap,
            limit_watts=site.site_limit_watts,
            deployed=_deployed(strategy, period, k),
        )
        _account(
            strategy,
            use=use,
            now=now,
            price=float(period.true_price[k]),
            hashprice=period.day_hashprice[now.date()],
            interval_s=period.interval_s,
        )
        if period.programs is not None:
            _account_reserves(strategy, period.programs, k, period.interval_s)
        run.site_watts[k] = use.mean_site_watts
        run.asic_curtailed_watts[k] = float(
            np.sum((strategy.full_units - strategy.units_on) * asic_watts)
        )
        run.decisions[k] = np.concatenate((strategy.units_on, setpoints[2], setpoints[3]))
        if progress is not None:
            progress(k + 1, count)
    _close_months(strategy, site)
    if period.programs is not None:
        _close_programs(strategy, period.programs, run.site_watts, period.interval_s)
    return run


@dataclass(frozen=True, slots=True)
class _Deployed:
    """A deployment a strategy carries out in one interval."""

    product: str
    start_s: float  # within the interval; 0 for one that started before it
    starts: bool  # it starts in this interval
    award_mw: float
    failure_usd_per_mw: float  # what a MW short costs over the deployment's hours


def _deployed(strategy: _Strategy, period: _Period, k: int) -> tuple[_Deployed, ...]:
    """The deployments of the strategy's awards in interval `k`."""
    programs = period.programs
    if programs is None:
        return ()
    return tuple(
        _Deployed(
            product,
            max(start_s, 0.0),
            starts,
            float(strategy.awards[product][k]),
            programs.failure_usd_per_mw_h * programs.duration_h(product, k, period.interval_s),
        )
        for product, start_s, starts in programs.active(k)
        if strategy.awards[product][k] > 0
    )


def _account_reserves(
    strategy: _Strategy, programs: PeriodPrograms, k: int, interval_s: float
) -> None:
    """Pay each award at its clearing price for the interval (deployed or not)."""
    totals = strategy.totals
    hours = interval_s / SECONDS_PER_HOUR
    for product in programs.products:
        usd = float(strategy.awards[product][k]) * float(programs.clearing[product][k]) * hours
        totals.ancillary_usd += usd
        totals.ancillary_by_product_usd[product] = (
            totals.ancillary_by_product_usd.get(product, 0.0) + usd
        )


def _close_programs(
    strategy: _Strategy, programs: PeriodPrograms, site_watts: FloatArray, interval_s: float
) -> None:
    """The 4CP charge the strategy's draw set, and its hours lowered for 4CP."""
    totals = strategy.totals
    charged = [(y, k) for y, k in programs.cp_intervals if y in programs.rate_for_peaks_of]
    totals.transmission_usd, totals.cp_mw_at_intervals = transmission_usd(
        site_watts, tuple(charged), programs.rate_for_peaks_of
    )
    totals.cp_hours_curtailed = float(strategy.lowered_for_cp.sum()) * interval_s / 3_600.0


def _run_agent(
    site: Problem,
    data: ReplayData,
    period: _Period,
    planner: Planner,
    progress: Callable[[int, int], None] | None,
) -> _Run:
    receding = RecedingPlanner(planner)
    prices = data.prices
    history_intervals = round(HISTORY_DAYS * 86_400.0 / period.interval_s)
    horizon = round(planner.horizon_s / period.interval_s)
    solves = 0
    programs = period.programs
    offers = _Offers(planner, site, data, period) if programs is not None else None

    def decide(k: int, strategy: _Strategy) -> Setpoints:
        nonlocal solves
        now = period.moments[k]
        index = period.first + k
        market = MarketView(
            now=now,
            history_usd_per_mwh=prices.usd_per_mwh[max(0, index - history_intervals) : index],
            interval_s=period.interval_s,
            hashprice_usd_per_th_day=period.known_hashprice[now.date()],
            day_ahead=_day_ahead_window(data.day_ahead, now),
        )
        if offers is not None:
            offers.make_due(k, strategy, market)
            market = replace(market, programs=offers.view(k, strategy, horizon))
        decision = receding.decide(
            strategy.state(),
            market,
            strategy.used(_month_key(now)),
            published_until=data.day_ahead.known_until(now) if data.day_ahead else None,
        )
        solves += decision.fresh
        if offers is not None:
            strategy.lowered_for_cp[k] = any(
                a.reason.startswith(CP_REASON) for a in decision.plan.asic_setpoints(decision.step)
            )
        return _column(decision.plan.schedule, decision.step)

    run = _simulate(site, data, period, decide, progress)
    run.solves = solves + (offers.solves if offers is not None else 0)
    return run


class _Offers:
    """The agent's day-ahead reserve offers and what it knows of 4CP, as the replay goes: at
    10:00 Central each day it offers the next day's hours, decided by its own planner over the
    horizon to that day's end at the prices it expects; what it offers it is awarded."""

    def __init__(self, planner: Planner, site: Problem, data: ReplayData, period: _Period) -> None:
        assert period.programs is not None and data.grid is not None
        self.planner = planner
        self.site = site
        self.period = period
        self.programs = period.programs
        self.ancillary = data.grid.ancillary
        self.offered: set[datetime] = set()
        self.solves = 0
        self._cp: tuple[datetime, FloatArray] | None = None  # hour -> chance from its start

    def make_due(self, k: int, strategy: _Strategy, market: MarketView) -> None:
        day = next_offer_day(market.now)
        if day is None or day in self.offered or self.ancillary is None:
            return
        self.offered.add(day)
        day_start, day_end = offer_window(day)
        interval_s = self.period.interval_s
        first = round((day_start - market.now).total_seconds() / interval_s)
        last = round((day_end - market.now).total_seconds() / interval_s)
        view = self.view(k, strategy, last)
        reserves = []
        for r in view.reserves:
            price = r.usd_per_mw_h.copy()
            # What a MW held is expected to earn, less what holding it is expected to cost.
            price[first:] = expected_prices(
                self.ancillary,
                r.name,
                now=market.now,
                start=day_start,
                count=last - first,
                interval_s=interval_s,
            ) - spike_cost(
                market.history_usd_per_mwh,
                interval_s=interval_s,
                offsets=range(first, last),
                breakeven_usd_per_mwh=holding_breakeven(
                    self.site, r.name, market.hashprice_usd_per_th_day
                ),
            )
            max_mw = r.max_mw.copy()
            max_mw[first:] = self.programs.qualified_mw[r.name]
            reserves.append(replace(r, usd_per_mw_h=price, max_mw=max_mw))
        offer_market = replace(market, programs=replace(view, reserves=tuple(reserves)))
        held = self.planner.offer(
            strategy.state(),
            offer_market,
            strategy.used(_month_key(market.now)),
            horizon_s=last * interval_s,
            first=first,
            last=last,
        )
        self.solves += 1
        per_hour = round(3_600.0 / interval_s)
        for product, mw in held.items():
            # an award is for a whole hour: the least the plan holds in any of its intervals
            hourly = np.repeat(
                np.floor(10.0 * mw.reshape(-1, per_hour).min(axis=1)) / 10.0, per_hour
            )
            begin = k + first
            end = min(begin + hourly.size, len(self.period.moments))
            if end > begin:
                cleared = self.programs.clearing[product][begin:end] > 0
                strategy.awards[product][begin:end] = np.where(cleared, hourly[: end - begin], 0.0)

    def view(self, k: int, strategy: _Strategy, count: int) -> ProgramView:
        """The programs as the agent knows them at interval `k`, for `count` intervals."""
        period, programs = self.period, self.programs
        now = period.moments[k]
        rate = programs.rate_for_peaks_of.get(now.year, 0.0)
        reserves = tuple(
            ReserveView(
                name=p,
                usd_per_mw_h=_ahead(programs.clearing[p], k, count),
                max_mw=_ahead(strategy.awards[p], k, count),
                awarded_mw=_ahead(strategy.awards[p], k, count),
                failure_usd_per_mw_h=programs.failure_usd_per_mw_h,
                deploy_usd_per_mw_h=programs.deploy_usd_per_mw_h.get(p, 0.0),
            )
            for p in programs.products
        )
        return ProgramView(
            cp_chance=self._cp_chance(now, count) if rate > 0 else np.zeros(0),
            transmission_usd_per_kw_year=rate,
            reserves=reserves,
            awards_key=len(self.offered),
        )

    def _cp_chance(self, now: datetime, count: int) -> FloatArray:
        """The 4CP chance per interval from `now`, worked out once an hour (the load settles
        hourly) for the longest span asked and sliced."""
        hour = now.replace(minute=0, second=0, microsecond=0)
        interval_s = self.period.interval_s
        offset = round((now - hour).total_seconds() / interval_s)
        cached = self._cp
        if cached is None or cached[0] != hour or cached[1].size < offset + count:
            forecaster = self.programs.forecasters.get(now.year)
            if forecaster is None:
                return np.zeros(count)
            span = max(offset + count, round(2 * 86_400.0 / interval_s))
            cached = (hour, forecaster.cp_chance(now=hour, intervals=span, interval_s=interval_s))
            self._cp = cached
        return cached[1][offset : offset + count]


def _ahead(values: FloatArray, k: int, count: int) -> FloatArray:
    out = np.zeros(count)
    chunk = values[k : k + count]
    out[: chunk.size] = chunk
    return out


def _run_references(site: Problem, data: ReplayData, period: _Period) -> dict[str, _Run]:
    """Always-on, the threshold rule, the program baselines and the hindsight bound. The
    baselines decide each interval from its own inputs alone (the last settled price, the
    previous day's hashprice, the load settled by 14:00), so their decisions for the whole
    period come from one pass.

    The threshold rule's first interval reacts to the last price settled before the window.
    A window that starts with the recorded prices has none: that interval is decided on no
    price (NaN), so no model sleeps for price in it, as a rule that has seen nothing yet would
    do; its own price is not known until it has passed."""
    count = len(period.moments)
    prices = data.prices
    last_known = prices.usd_per_mwh[max(period.first - 1, 0) : period.first + count - 1]
    if period.first == 0:
        last_known = np.concatenate(([np.nan], last_known))
    whole = _whole_period(site, period, period.known_hashprice)
    threshold_schedule = threshold(whole, last_known).schedule
    hindsight_schedule = _hindsight_schedule(site, period)
    runs = {
        name: _simulate(site, data, period, _follow(schedule), prepare=prepare)
        for name, schedule, prepare in (
            ("always_on", always_on(whole).schedule, None),
            ("threshold", threshold_schedule, None),
            (
                "hindsight",
                hindsight_schedule,
                _hindsight_commitments(site, period, hindsight_schedule),
            ),
        )
    }
    programs = period.programs
    if programs is not None:
        cp_schedule = _asleep_where(threshold_schedule, programs.alert)
        runs["threshold_4cp"] = _simulate(
            site, data, period, _follow(cp_schedule), prepare=_lowered(programs.alert)
        )
        reserve_schedule, award = _fixed_reserve(site, programs, threshold_schedule)
        runs["fixed_reserve"] = _simulate(
            site, data, period, _follow(reserve_schedule), prepare=_awarded("RRS", award)
        )
    return runs


def _hindsight_commitments(
    site: Problem, period: _Period, schedule: Schedule
) -> Callable[[_Strategy], None] | None:
    """Hindsight is awarded what it held, and lowers its draw at the intervals it knows."""
    programs = period.programs
    if programs is None:
        return None
    held = schedule.held_watts(len(programs.products)) / 1e6
    on = schedule.asic_units_on.sum(axis=0)
    full = sum(g.units for g in site.asic_groups)
    intervals = np.zeros(len(period.moments), dtype=bool)
    intervals[[k for _, k in programs.cp_intervals]] = True

    def prepare(strategy: _Strategy) -> None:
        for r, product in enumerate(programs.products):
            strategy.awards[product] = np.where(
                programs.clearing[product] > 0, np.floor(10.0 * held[r]) / 10.0, 0.0
            )
        strategy.lowered_for_cp = intervals & (on < full)

    return prepare


def _lowered(hours: np.ndarray) -> Callable[[_Strategy], None]:
    def prepare(strategy: _Strategy) -> None:
        strategy.lowered_for_cp = hours.copy()

    return prepare


def _awarded(product: str, mw: FloatArray) -> Callable[[_Strategy], None]:
    def prepare(strategy: _Strategy) -> None:
        strategy.awards[product] = mw.copy()

    return prepare


def _asleep_where(schedule: Schedule, asleep: np.ndarray) -> Schedule:
    """`schedule` with every miner asleep in the intervals marked."""
    units = schedule.asic_units_on.copy()
    units[:, asleep] = 0
    return replace(schedule, asic_units_on=units)


def _fixed_reserve(
    site: Problem, programs: PeriodPrograms, schedule: Schedule
) -> tuple[Schedule, FloatArray]:
    """The threshold rule with a constant Responsive Reserve offer: `FIXED_RESERVE_SHARE` of
    the RRS-qualified MW in every hour with a clearing price, its miners (most efficient
    first) kept awake to cover it."""
    count = schedule.asic_units_on.shape[1]
    if "RRS" not in programs.products:
        return schedule, np.zeros(count)
    award = np.where(
        programs.clearing["RRS"] > 0,
        np.floor(10.0 * FIXED_RESERVE_SHARE * programs.qualified_mw["RRS"]) / 10.0,
        0.0,
    )
    units = schedule.asic_units_on.copy()
    needed = award * 1e6
    for i in reversed(shed_order(site.asic_groups)):
        group = site.asic_groups[i]
        if "RRS" not in group.reserve_products:
            continue
        unit_watts = group.watts_per_unit * group.overhead_factor
        want = np.minimum(group.units, np.ceil(np.maximum(needed, 0.0) / unit_watts))
        units[i] = np.maximum(units[i], want.astype(np.int64))
        needed = needed - units[i] * unit_watts
    return replace(schedule, asic_units_on=units), award


def _follow(schedule: Schedule) -> Callable[[int, _Strategy], Setpoints]:
    """Decisions read off a schedule made in advance."""

    def decide(k: int, _strategy: _Strategy) -> Setpoints:
        return _column(schedule, k)

    return decide


def _day_ahead_window(
    series: DayAheadSeries | None, now: datetime
) -> Callable[[datetime, int, float], FloatArray] | None:
    """The day-ahead prices as known at `now`: NaN past what has been published."""
    if series is None:
        return None
    known_until = series.known_until(now)

    def window(start_utc: datetime, count: int, interval_s: float) -> FloatArray:
        values = series.window(start_utc, count, interval_s)
        ends_s = (np.arange(count) + 1) * interval_s
        published_s = (known_until - start_utc).total_seconds()
        return np.where(ends_s <= published_s + 1e-6, values, np.nan)

    return window


def _whole_period(site: Problem, period: _Period, hashprice: dict[date, float]) -> Problem:
    """The site over the whole period at the true prices and the given daily hashprice."""
    return replace(
        site,
        start=period.start,
        step_s=uniform_steps(len(period.moments), period.interval_s),
        price_usd_per_mwh=tuple(period.true_price.tolist()),
        hashprice_usd_per_th_day=tuple(hashprice[m.date()] for m in period.moments),
    )


def _hindsight_schedule(site: Problem, period: _Period) -> Schedule:
    """The bound over the period: true prices and hashprice, each month's whole allowance,
    and, with the programs, the true 4CP intervals and the reserves' true clearing prices."""
    months = sorted({month_start(m) for m in period.moments})
    budgets = tuple(
        AllowanceBudget(c.name, start, month_end(start), c.allowance_node_hours)
        for c in site.contracts
        for start in months
    )
    problem = replace(_whole_period(site, period, period.day_hashprice), budgets=budgets)
    if period.programs is not None:
        problem = replace(problem, programs=_known_programs(period))
    return hindsight(problem).schedule


def _known_programs(period: _Period) -> Programs:
    """The programs as hindsight knows them: each official 4CP interval certain, every
    product's clearing price, up to the qualified MW held in any hour with a price."""
    programs = period.programs
    assert programs is not None
    count = len(period.moments)
    hours = period.interval_s / SECONDS_PER_HOUR
    charge = np.zeros(count)
    for year, k in programs.cp_intervals:
        rate = programs.rate_for_peaks_of.get(year, 0.0)
        charge[k] = rate * 1_000.0 / 4.0 / hours
    reserves = tuple(
        ReserveProduct(
            name=p,
            response_s=RESPONSE_S[p],
            usd_per_mw_h=tuple(programs.clearing[p].tolist()),
            max_mw=tuple(
                np.where(programs.clearing[p] > 0, programs.qualified_mw[p], 0.0).tolist()
            ),
            awarded_mw=(0.0,) * count,
        )
        for p in programs.products
    )
    return Programs(reserves=reserves, transmission_usd_per_mwh=tuple(charge.tolist()))


def _column(schedule: Schedule, k: int) -> Setpoints:
    return (
        schedule.asic_units_on[:, k].copy(),
        schedule.gpu_level[:, k].copy(),
        schedule.gpu_capped_nodes[:, k].copy(),
        schedule.gpu_paused_nodes[:, k].copy(),
    )


def _run_interval(
    strategy: _Strategy,
    *,
    setpoints: Setpoints,
    at_s: float,
    interval_s: float,
    cap_watts: float,
    limit_watts: float,
    deployed: tuple[_Deployed, ...] = (),
) -> IntervalUse:
    """Apply, carry out deployments, read the meter, let the guard shed from the first sample
    over the cap, account."""
    units, level, capped, paused = setpoints
    plant = strategy.plant
    plant.apply(units, level, capped, paused, at_s)
    if deployed:
        units = _deploy(strategy, units, level, capped, paused, at_s=at_s, deployed=deployed)
    end_s = at_s + interval_s
    for _ in range(len(units) + 1):
        samples = plant.meter(at_s, end_s)
        over = np.flatnonzero(samples > cap_watts)
        if not over.size:
            break
        moment = at_s + float(over[0]) * plant.meter_interval_s
        units = shed(
            strategy.site.asic_groups,
            units,
            reading_watts=float(samples[over[0]]),
            cap_watts=cap_watts,
            order=strategy.order,
        )
        plant.apply(units, level, capped, paused, moment)
        strategy.totals.guard_sheds += 1
    strategy.units_on = units
    curtailed = capped + paused
    running = np.where(curtailed > 0, strategy.curtailed_for_s + interval_s, 0.0)
    # An event that runs past its contract's longest is one SLA breach, counted as it crosses.
    crossed = (running > strategy.max_event_s + 1e-6) & (
        strategy.curtailed_for_s <= strategy.max_event_s + 1e-6
    )
    strategy.totals.sla_breaches += int(crossed.sum())
    strategy.curtailed_for_s = running
    strategy.curtailed = curtailed
    return plant.advance(at_s, end_s, cap_watts=limit_watts)


def _deploy(
    strategy: _Strategy,
    units: np.ndarray,
    level: np.ndarray,
    capped: np.ndarray,
    paused: np.ndarray,
    *,
    at_s: float,
    deployed: tuple[_Deployed, ...],
) -> np.ndarray:
    """Drop the qualified miners covering each deployed award (least efficient first; one
    miner serves one product): an ongoing deployment's from the interval's start, one that
    starts here from its start, when it is counted, and failed if the MW dropped fall short
    of the award (the shortfall charged for the deployment's hours)."""
    after = units.copy()
    ongoing = [d for d in deployed if not d.starts]
    for d in ongoing:
        _drop(strategy, after, d)
    if ongoing:
        strategy.plant.apply(after, level, capped, paused, at_s)
    for d in sorted((d for d in deployed if d.starts), key=lambda d: d.start_s):
        short_mw = _drop(strategy, after, d) / 1e6
        strategy.plant.apply(after, level, capped, paused, at_s + d.start_s)
        strategy.totals.deployments += 1
        if short_mw > DELIVERY_TOLERANCE * d.award_mw:
            strategy.totals.failed_deployments += 1
            strategy.totals.reserve_failure_usd += short_mw * d.failure_usd_per_mw
    return after


def _drop(strategy: _Strategy, units: np.ndarray, deployment: _Deployed) -> float:
    """Put to sleep, in place, the qualified miners that cover `deployment`'s award; returns
    the watts it still lacks."""
    needed = deployment.award_mw * 1e6
    for i in strategy.order:
        if needed <= 0:
            break
        group = strategy.site.asic_groups[i]
        if deployment.product not in group.reserve_products or units[i] <= 0:
            continue
        unit_watts = group.watts_per_unit * group.overhead_factor
        drop = min(int(units[i]), int(np.ceil(needed / unit_watts)))
        units[i] -= drop
        needed -= drop * unit_watts
    return max(0.0, needed)


def _account(
    strategy: _Strategy,
    *,
    use: IntervalUse,
    now: datetime,
    price: float,
    hashprice: float,
    interval_s: float,
) -> None:
    site = strategy.site
    totals = strategy.totals
    hash_usd = use.hash_ths_s * hashprice * (1 - site.pool_fee) / SECONDS_PER_DAY
    energy_usd = use.energy_mwh * price
    ai_usd = 0.0
    month = _month_key(now)
    used = totals.allowance_used.setdefault(month, {c.name: 0.0 for c in site.contracts})
    for index, gpu in enumerate(site.gpu_groups):
        contract = site.contract(gpu.contract)
        full = float(use.gpu_full_node_s[index])
        capped = float(use.gpu_capped_node_s[index])
        paused = float(use.gpu_paused_node_s[index])
        billed_node_s = full + (capped + paused if contract.billed_when_curtailed else 0.0)
        ai_usd += billed_node_s / SECONDS_PER_HOUR * gpu.gpus_per_node * contract.usd_per_gpu_hour
        curtailed_hours = (capped + paused) / SECONDS_PER_HOUR
        used[contract.name] += curtailed_hours
        totals.gpu_curtailed_gpu_hours += curtailed_hours * gpu.gpus_per_node
        if contract.tier is Tier.FIRM and curtailed_hours > 0:
            totals.sla_breaches += 1  # firm GPUs touched outside a grid event
    full_mwh = strategy.asic_full_watts * interval_s / 3.6e9
    totals.asic_curtailed_mwh += max(0.0, full_mwh - use.asic_energy_mwh)
    totals.hash_revenue_usd += hash_usd
    totals.energy_cost_usd += energy_usd
    totals.ai_revenue_usd += ai_usd
    totals.energy_mwh += use.energy_mwh
    totals.limit_violation_minutes += use.over_cap_s / 60.0
    totals.monthly_profit_usd[month] = (
        totals.monthly_profit_usd.get(month, 0.0) + hash_usd + ai_usd - energy_usd
    )


def _close_months(strategy: _Strategy, site: Problem) -> None:
    """Penalties and SLA breaches for allowance spent beyond each month's."""
    totals = strategy.totals
    for month, used in totals.allowance_used.items():
        for contract in site.contracts:
            excess = used.get(contract.name, 0.0) - contract.allowance_node_hours
            if excess > 1e-6:
                gpus = next(g.gpus_per_node for g in site.gpu_groups if g.contract == contract.name)
                penalty = excess * gpus * contract.penalty_usd_per_gpu_hour
                totals.penalty_usd += penalty
                totals.monthly_profit_usd[month] -= penalty
                totals.sla_breaches += 1
