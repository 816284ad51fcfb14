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
from gridpilot.agent.planner import (
    MarketView,
    Planner,
    PlantState,
    RecedingPlanner,
    month_end,
    month_start,
)
from gridpilot.optimizer.economics import SECONDS_PER_DAY, SECONDS_PER_HOUR
from gridpilot.optimizer.hindsight import hindsight
from gridpilot.optimizer.merit import always_on, threshold
from gridpilot.optimizer.problem import AllowanceBudget, FloatArray, Problem, Tier, uniform_steps
from gridpilot.optimizer.schedule import Schedule

STRATEGIES = ("agent", "always_on", "threshold", "hindsight")

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

    @property
    def profit_usd(self) -> float:
        return self.hash_revenue_usd + self.ai_revenue_usd - self.energy_cost_usd - self.penalty_usd


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
    """The day's hashprice including transaction fees (subsidy-only / (1 - fee share))."""
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
    data: ReplayData, start: datetime, end: datetime, max_gap_s: float = 3_600.0
) -> _Period:
    check_window(data.prices, start, end)
    check_gaps(data, start, end, max_gap_s=max_gap_s)
    prices = data.prices
    interval_s = prices.interval_s
    count = round((end - start).total_seconds() / interval_s)
    first = prices.index_of(start)
    moments = tuple(start + timedelta(seconds=k * interval_s) for k in range(count))
    days = sorted({m.date() for m in moments})
    return _Period(
        start=start,
        interval_s=interval_s,
        first=first,
        moments=moments,
        true_price=prices.usd_per_mwh[first : first + count],
        day_hashprice={d: _true_hashprice(data, d) for d in days},
        known_hashprice={d: _true_hashprice(data, d - timedelta(days=1)) for d in days},
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
) -> ReplayResult:
    """Replay [start, end) on `site` (a problem template: groups, contracts, limits).

    A gap in the real-time prices longer than `max_gap_s` in the window or the agent's history
    before it is a `ReplayGapError` (see `check_gaps`); gaps elsewhere in the data do not
    matter. The strategies do not interact, so with `parallel` the three references (always-on,
    the threshold rule, the hindsight bound) run in a second process while the agent runs
    here."""
    started = time.perf_counter()
    period = _period(data, start, end, max_gap_s)
    runs: dict[str, _Run] = {}
    if parallel:
        with ProcessPoolExecutor(max_workers=1) as pool:
            references = pool.submit(_run_references, site, data, period)
            runs["agent"] = _run_agent(site, data, period, planner or Planner(site), progress)
            runs.update(references.result())
    else:
        runs["agent"] = _run_agent(site, data, period, planner or Planner(site), progress)
        runs.update(_run_references(site, data, period))
    return ReplayResult(
        start=start,
        end=end,
        settlement_point=data.prices.settlement_point,
        totals={name: runs[name].totals for name in STRATEGIES},
        wall_s=time.perf_counter() - started,
        price_usd_per_mwh=period.true_price,
        site_watts={name: runs[name].site_watts for name in STRATEGIES},
        asic_curtailed_watts={name: runs[name].asic_curtailed_watts for name in STRATEGIES},
        agent_decisions=runs["agent"].decisions,
        agent_solves=runs["agent"].solves,
        data_gaps=data_gaps(data, start, end),
    )


def _simulate(
    site: Problem,
    data: ReplayData,
    period: _Period,
    decide: Callable[[int, _Strategy], Setpoints],
    progress: Callable[[int, int], None] | None = None,
) -> _Run:
    """Run one strategy's decisions through its own plant, guard and ledger."""
    strategy = _Strategy(site, data.trace, seed=0)
    count = len(period.moments)
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
        )
        _account(
            strategy,
            use=use,
            now=now,
            price=float(period.true_price[k]),
            hashprice=period.day_hashprice[now.date()],
            interval_s=period.interval_s,
        )
        run.site_watts[k] = use.mean_site_watts
        run.asic_curtailed_watts[k] = float(
            np.sum((strategy.full_units - strategy.units_on) * asic_watts)
        )
        run.decisions[k] = np.concatenate((strategy.units_on, setpoints[2], setpoints[3]))
        if progress is not None:
            progress(k + 1, count)
    _close_months(strategy, site)
    return run


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
    solves = 0

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
        decision = receding.decide(
            strategy.state(),
            market,
            strategy.used(_month_key(now)),
            published_until=data.day_ahead.known_until(now) if data.day_ahead else None,
        )
        solves += decision.fresh
        return _column(decision.plan.schedule, decision.step)

    run = _simulate(site, data, period, decide, progress)
    run.solves = solves
    return run


def _run_references(site: Problem, data: ReplayData, period: _Period) -> dict[str, _Run]:
    """Always-on, the threshold rule and the hindsight bound. The baselines decide each
    interval from its own inputs alone (the last settled price, the previous day's hashprice),
    so their decisions for the whole period come from one pass.

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
    schedules = {
        "always_on": always_on(whole).schedule,
        "threshold": threshold(whole, last_known).schedule,
        "hindsight": _hindsight_schedule(site, period),
    }
    return {
        name: _simulate(site, data, period, _follow(schedule))
        for name, schedule in schedules.items()
    }


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
    """The bound over the period: true prices and hashprice, each month's whole allowance."""
    months = sorted({month_start(m) for m in period.moments})
    budgets = tuple(
        AllowanceBudget(c.name, start, month_end(start), c.allowance_node_hours)
        for c in site.contracts
        for start in months
    )
    problem = replace(_whole_period(site, period, period.day_hashprice), budgets=budgets)
    return hindsight(problem).schedule


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
) -> IntervalUse:
    """Apply, read the meter, let the guard shed from the first sample over the cap, account."""
    units, level, capped, paused = setpoints
    plant = strategy.plant
    plant.apply(units, level, capped, paused, at_s)
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
