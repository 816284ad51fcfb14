"""What a replay reads, what is true over its window, and what each strategy's run holds:
the recorded data, the window's checks, the totals and the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np

from gridpilot.adapters.plant import SimulatedPlant
from gridpilot.adapters.recorded import (
    DayAheadSeries,
    FeeShareSeries,
    Gap,
    GpuTrace,
    HashpriceSeries,
    PriceSeries,
)
from gridpilot.agent.guard import shed_order
from gridpilot.agent.pacing import marginal_hash_value_usd_per_mwh
from gridpilot.agent.planner import (
    PlantState,
)
from gridpilot.agent.programs import (
    qualified_mw,
)
from gridpilot.agent.replay.programs import (
    Deployment,
    GridData,
    PeriodPrograms,
    ProgramTerms,
    period_programs,
)
from gridpilot.optimizer.problem import (
    FloatArray,
    Problem,
)

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
    wakes_refused: int = 0  # units commanded awake within their minimum off time
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
    # With the programs, per interval: ERCOT's system load (MW, its hour's), each product's
    # clearing price ($/MW-h), and each strategy's reserve awards (MW per product).
    system_load_mw: FloatArray | None = None
    clearing_usd_per_mw_h: dict[str, FloatArray] = field(default_factory=dict)
    reserve_mw: dict[str, dict[str, FloatArray]] = field(default_factory=dict)

    @property
    def strategies(self) -> tuple[str, ...]:
        return tuple(self.totals)

    def capture(self, strategy: str) -> float:
        """Share of the hindsight bound's improvement over always-on that `strategy` achieves."""
        if "always_on" not in self.totals or "hindsight" not in self.totals:
            return float("nan")
        base = self.totals["always_on"].profit_usd
        best = self.totals["hindsight"].profit_usd - base
        return (self.totals[strategy].profit_usd - base) / best if best > 0 else float("nan")


class Strategy:
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
        """The plant as it stands at the end of the last interval accounted."""
        locked, locked_for_s = self.plant.locked_off(self.plant.accounted_s)
        # tolist() gives Python ints and floats (the arrays are int64 and float64), as the
        # state's fields are.
        return PlantState(
            asic_units_on=tuple(self.units_on.tolist()),
            gpu_curtailed_nodes=tuple(self.curtailed.tolist()),
            gpu_curtailed_for_s=tuple(self.curtailed_for_s.tolist()),
            asic_locked_off=tuple(locked.tolist()),
            asic_locked_for_s=tuple(locked_for_s.tolist()),
        )

    def used(self, month: str) -> dict[str, float]:
        return dict(self.totals.allowance_used.get(month, {}))


def month_key(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def true_hashprice(data: ReplayData, day: date) -> float:
    """The day's hashprice including transaction fees (subsidy-only / (1 - fee share)), or
    the constant one given."""
    if data.hashprice_usd_per_th_day is not None:
        return data.hashprice_usd_per_th_day
    fee = data.fee_share.on(day) if data.fee_share is not None else None
    share = DEFAULT_FEE_SHARE if fee is None else fee
    return data.hashprices.on(day) / (1.0 - share)


@dataclass(frozen=True, slots=True, eq=False)
class Period:
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
class Run:
    """One strategy's figures and series through the replay."""

    totals: Totals
    site_watts: FloatArray
    asic_curtailed_watts: FloatArray
    decisions: np.ndarray
    solves: int = 0
    awards: dict[str, FloatArray] = field(default_factory=dict)  # MW per product and interval


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


def make_period(
    data: ReplayData,
    start: datetime,
    end: datetime,
    max_gap_s: float = 3_600.0,
    *,
    site: Problem | None = None,
    terms: ProgramTerms | None = None,
) -> Period:
    # In UTC: a zone with daylight saving would add intervals on the wall clock.
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    check_window(data.prices, start, end)
    check_gaps(data, start, end, max_gap_s=max_gap_s)
    prices = data.prices
    interval_s = prices.interval_s
    count = round((end - start).total_seconds() / interval_s)
    first = prices.index_of(start)
    moments = tuple(start + timedelta(seconds=k * interval_s) for k in range(count))
    days = sorted({m.date() for m in moments})
    true_price = prices.usd_per_mwh[first : first + count]
    known = {d: true_hashprice(data, d - timedelta(days=1)) for d in days}
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
    return Period(
        start=start,
        interval_s=interval_s,
        first=first,
        moments=moments,
        true_price=true_price,
        day_hashprice={d: true_hashprice(data, d) for d in days},
        known_hashprice=known,
        programs=programs,
    )
