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
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from gridpilot.adapters.plant import IntervalUse, SteadyUse
from gridpilot.adapters.recorded import (
    DayAheadSeries,
)
from gridpilot.agent.guard import shed
from gridpilot.agent.planner import (
    MarketView,
    Planner,
    RecedingPlanner,
)
from gridpilot.agent.replay.baselines import (
    asleep_where,
    awarded,
    fixed_reserve,
    hindsight_commitments,
    hindsight_schedule,
    lowered,
    whole_period,
)
from gridpilot.agent.replay.offers import Offers
from gridpilot.agent.replay.period import (
    HISTORY_DAYS,
    PROGRAM_BASELINES,
    STRATEGIES,
    Period,
    ReplayData,
    ReplayResult,
    Run,
    Setpoints,
    Strategy,
    data_gaps,
    make_period,
    month_key,
)
from gridpilot.agent.replay.programs import (
    DELIVERY_TOLERANCE,
    PeriodPrograms,
    ProgramTerms,
    transmission_usd,
)
from gridpilot.optimizer.economics import SECONDS_PER_DAY, SECONDS_PER_HOUR
from gridpilot.optimizer.merit import always_on_schedule, threshold_schedule
from gridpilot.optimizer.plan import CP_REASON, Plan
from gridpilot.optimizer.problem import (
    FloatArray,
    Problem,
    Tier,
)
from gridpilot.optimizer.schedule import Schedule


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
    only: tuple[str, ...] | None = None,
) -> ReplayResult:
    """Replay [start, end) on `site` (a problem template: groups, contracts, limits).

    With `data.grid` and the site's program `terms` the grid programs are replayed too: every
    strategy is charged the 4CP cost of its own draw and paid for the reserves it was awarded,
    deployments simulated on its plant; `threshold_4cp` and `fixed_reserve` run beside.

    A gap in the real-time prices longer than `max_gap_s` in the window or the agent's history
    before it is a `ReplayGapError` (see `check_gaps`); gaps elsewhere in the data do not
    matter. The strategies do not interact, so with `parallel` the references (always-on, the
    baselines, the hindsight bound) run in a second process while the agent runs here. `only`
    runs just the strategies named (a study needs one and always-on, not the bound)."""
    started = time.perf_counter()
    start, end = start.astimezone(UTC), end.astimezone(UTC)  # intervals add up in UTC
    period = make_period(data, start, end, max_gap_s, site=site, terms=terms)
    names = STRATEGIES + (PROGRAM_BASELINES if period.programs is not None else ())
    names = tuple(n for n in names if only is None or n in only)
    wanted = frozenset(names) - {"agent"}
    runs: dict[str, Run] = {}

    def agent() -> None:
        if "agent" in names:
            runs["agent"] = _run_agent(site, data, period, planner or Planner(site), progress)

    if parallel and wanted and "agent" in names:
        with ProcessPoolExecutor(max_workers=1) as pool:
            # The references read the programs' truth from the period; the files stay here.
            references = pool.submit(
                _run_references, site, replace(data, grid=None), period, wanted
            )
            agent()
            runs.update(references.result())
    else:
        agent()
        runs.update(_run_references(site, data, period, wanted))
    programs = period.programs
    count = len(period.moments)
    agent_run = runs.get("agent")
    return ReplayResult(
        start=start,
        end=end,
        settlement_point=data.prices.settlement_point,
        totals={name: runs[name].totals for name in names},
        wall_s=time.perf_counter() - started,
        price_usd_per_mwh=period.true_price,
        site_watts={name: runs[name].site_watts for name in names},
        asic_curtailed_watts={name: runs[name].asic_curtailed_watts for name in names},
        agent_decisions=agent_run.decisions if agent_run else np.zeros((count, 0), np.int32),
        agent_solves=agent_run.solves if agent_run else 0,
        data_gaps=data_gaps(data, start, end),
        deployments=programs.deployments if programs else (),
        cp_intervals=tuple(period.moments[k] for _, k in programs.cp_intervals) if programs else (),
        hashprice_usd_per_th_day=data.hashprice_usd_per_th_day,
        system_load_mw=_system_load(data, period) if programs else None,
        clearing_usd_per_mw_h=dict(programs.clearing) if programs else {},
        reserve_mw={name: runs[name].awards for name in names} if programs else {},
    )


def _system_load(data: ReplayData, period: Period) -> FloatArray:
    """ERCOT's load in each interval of the window (its hour's), for the report."""
    assert data.grid is not None
    load = data.grid.load
    first = load.hourly_index(period.moments[0])
    per_hour = round(3_600.0 / period.interval_s)
    offset = round((period.moments[0] - load.start_utc[first]).total_seconds() / period.interval_s)
    hours = np.asarray(load.mw)[first : first + len(period.moments) // per_hour + 2]
    return np.repeat(hours, per_hour)[offset : offset + len(period.moments)]


def _simulate(
    site: Problem,
    data: ReplayData,
    period: Period,
    decide: Callable[[int, Strategy], Setpoints],
    progress: Callable[[int, int], None] | None = None,
    *,
    prepare: Callable[[Strategy], None] | None = None,
    follows: Schedule | None = None,
) -> Run:
    """Run one strategy's decisions through its own plant, guard and ledger. `prepare` fills
    in what a strategy commits to ahead (its reserve awards, its 4CP hours) before it runs.

    `follows` is the schedule `decide` reads off when it is fixed in advance (the references):
    through its stretches of intervals that change nothing (no new setpoint, no deployment, no
    GPU curtailed, no sample over the cap) the plant and the ledger account in bulk, with the
    same figures as interval by interval."""
    strategy = Strategy(site, data.trace, seed=0)
    count = len(period.moments)
    strategy.lowered_for_cp = np.zeros(count, dtype=bool)
    if period.programs is not None:
        strategy.awards = {p: np.zeros(count) for p in period.programs.products}
    if prepare is not None:
        prepare(strategy)
    cap = site.site_limit_watts - site.site_margin_watts
    asic_watts = np.array([g.watts_per_unit * g.overhead_factor for g in site.asic_groups])
    run = Run(
        totals=strategy.totals,
        site_watts=np.zeros(count),
        asic_curtailed_watts=np.zeros(count),
        decisions=np.zeros((count, len(site.asic_groups) + 2 * len(site.gpu_groups)), np.int32),
    )
    stretches = _Stretches(follows, strategy, period) if follows is not None else None
    k = 0
    while k < count:
        now = period.moments[k]
        setpoints = decide(k, strategy)
        steady = None
        if stretches is not None and stretches.quiet[k] and strategy.plant.holds(*setpoints):
            steady = strategy.plant.advance_steady(
                k * period.interval_s, period.interval_s, stretches.length(k), guard_watts=cap
            )
        if steady is not None and steady.count:
            _account_steady(strategy, steady, k=k, period=period)
            done = slice(k, k + steady.count)
            site_watts: FloatArray | float = steady.mean_site_watts
        else:
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
            done, site_watts = slice(k, k + 1), use.mean_site_watts
        run.site_watts[done] = site_watts
        run.asic_curtailed_watts[done] = float(
            np.sum((strategy.full_units - strategy.units_on) * asic_watts)
        )
        run.decisions[done] = np.concatenate((strategy.units_on, setpoints[2], setpoints[3]))
        k = done.stop
        if progress is not None:
            progress(k, count)
    _close_months(strategy, site)
    if period.programs is not None:
        _close_programs(strategy, period.programs, run.site_watts, period.interval_s)
        run.awards = strategy.awards
    return run


class _Stretches:
    """Where a strategy that follows a fixed schedule may be accounted in bulk: the intervals
    that are `quiet` (no deployment of its awards, no GPU curtailed: nothing in them but the
    plant's draw) and the schedule's changes, which end a stretch."""

    def __init__(self, schedule: Schedule, strategy: Strategy, period: Period) -> None:
        count = len(period.moments)
        changed = np.zeros(count, dtype=bool)
        changed[0] = True
        for setpoint in (
            schedule.asic_units_on,
            schedule.gpu_level,
            schedule.gpu_capped_nodes,
            schedule.gpu_paused_nodes,
        ):
            changed[1:] |= (setpoint[:, 1:count] != setpoint[:, : count - 1]).any(axis=0)
        curtailed = schedule.gpu_capped_nodes[:, :count] + schedule.gpu_paused_nodes[:, :count]
        self.quiet: npt.NDArray[np.bool_] = np.all(curtailed == 0, axis=0)
        if period.programs is not None:
            for product, award in strategy.awards.items():
                self.quiet &= ~(period.programs.deployed[product] & (award > 0))
        self._ends = np.flatnonzero(changed | ~self.quiet)
        self._count = count

    def length(self, k: int) -> int:
        """How many intervals from `k` (a quiet one) on change nothing."""
        after = int(np.searchsorted(self._ends, k, side="right"))
        end = int(self._ends[after]) if after < self._ends.size else self._count
        return end - k


@dataclass(frozen=True, slots=True)
class _Deployed:
    """A deployment a strategy carries out in one interval."""

    product: str
    start_s: float  # within the interval; 0 for one that started before it
    starts: bool  # it starts in this interval
    award_mw: float
    failure_usd_per_mw: float  # what a MW short costs over the deployment's hours


def _deployed(strategy: Strategy, period: Period, k: int) -> tuple[_Deployed, ...]:
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
    strategy: Strategy, programs: PeriodPrograms, k: int, interval_s: float
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
    strategy: Strategy, programs: PeriodPrograms, site_watts: FloatArray, interval_s: float
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
    period: Period,
    planner: Planner,
    progress: Callable[[int, int], None] | None,
) -> Run:
    receding = RecedingPlanner(planner)
    prices = data.prices
    history_intervals = round(HISTORY_DAYS * 86_400.0 / period.interval_s)
    horizon = round(planner.horizon_s / period.interval_s)
    solves = 0
    programs = period.programs
    offers = Offers(planner, site, data, period) if programs is not None else None
    cp_steps: _LoweredForCp | None = None

    def decide(k: int, strategy: Strategy) -> Setpoints:
        nonlocal solves
        now = period.moments[k]
        index = period.first + k
        published_until = data.day_ahead.known_until(now) if data.day_ahead else None
        market = MarketView(
            now=now,
            history_usd_per_mwh=prices.usd_per_mwh[max(0, index - history_intervals) : index],
            interval_s=period.interval_s,
            hashprice_usd_per_th_day=period.known_hashprice[now.date()],
            day_ahead=_day_ahead_window(data.day_ahead, published_until),
        )
        if offers is not None:
            offers.make_due(k, strategy, market)
            market = replace(market, programs=offers.view(k, strategy, horizon))
        decision = receding.decide(
            strategy.state(),
            market,
            strategy.used(month_key(now)),
            published_until=published_until,
        )
        solves += decision.fresh
        plan, step = decision.plan, decision.step
        if offers is not None:
            nonlocal cp_steps
            if cp_steps is None or cp_steps.plan is not plan:
                cp_steps = _LoweredForCp(plan)
            if cp_steps.charged[step]:
                strategy.lowered_for_cp[k] = cp_steps.at(step)
        return _column(decision.plan.schedule, decision.step)

    run = _simulate(site, data, period, decide, progress)
    run.solves = solves + (offers.solves if offers is not None else 0)
    return run


class _LoweredForCp:
    """A plan's steps charged for 4CP and, per such step, whether it lowers a miner for 4CP:
    worked out once per plan, not every interval the plan stands."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.charged = plan.problem.programs.transmission(plan.problem.steps) > 0
        self._lowered: dict[int, bool] = {}

    def at(self, step: int) -> bool:
        if step not in self._lowered:
            self._lowered[step] = any(
                self.plan.asic_reason(i, step).startswith(CP_REASON)
                for i in range(len(self.plan.problem.asic_groups))
            )
        return self._lowered[step]


def _run_references(
    site: Problem,
    data: ReplayData,
    period: Period,
    wanted: frozenset[str],
    *,
    in_bulk: bool = True,
) -> dict[str, Run]:
    """Always-on, the threshold rule, the program baselines and the hindsight bound. The
    baselines decide each interval from its own inputs alone (the last settled price, the
    previous day's hashprice, the load settled by 14:00), so their decisions for the whole
    period come from one pass.

    The threshold rule's first interval reacts to the last price settled before the window.
    A window that starts with the recorded prices has none: that interval is decided on no
    price (NaN), so no model sleeps for price in it, as a rule that has seen nothing yet would
    do; its own price is not known until it has passed.

    `in_bulk` lets their steady stretches be accounted at once (see `_simulate`); without it
    every interval goes through the plant on its own, as the agent's do."""
    count = len(period.moments)
    prices = data.prices
    last_known = prices.usd_per_mwh[max(period.first - 1, 0) : period.first + count - 1]
    if period.first == 0:
        last_known = np.concatenate(([np.nan], last_known))
    whole = whole_period(site, period, period.known_hashprice)
    threshold_setpoints = threshold_schedule(whole, last_known)
    runs: dict[str, Run] = {}

    def run(name: str, schedule: Schedule, prepare: Callable[[Strategy], None] | None) -> None:
        runs[name] = _simulate(
            site,
            data,
            period,
            _follow(schedule),
            prepare=prepare,
            follows=schedule if in_bulk else None,
        )

    if "always_on" in wanted:
        run("always_on", always_on_schedule(whole), None)
    if "threshold" in wanted:
        run("threshold", threshold_setpoints, None)
    if "hindsight" in wanted:
        bound = hindsight_schedule(site, period)
        run("hindsight", bound, hindsight_commitments(site, period, bound))
    programs = period.programs
    if programs is not None and "threshold_4cp" in wanted:
        cp_schedule = asleep_where(threshold_setpoints, programs.alert)
        run("threshold_4cp", cp_schedule, lowered(programs.alert))
    if programs is not None and "fixed_reserve" in wanted:
        reserve_schedule, award = fixed_reserve(site, programs, threshold_setpoints)
        run("fixed_reserve", reserve_schedule, awarded("RRS", award))
    return runs


def _follow(schedule: Schedule) -> Callable[[int, Strategy], Setpoints]:
    """Decisions read off a schedule made in advance."""

    def decide(k: int, _strategy: Strategy) -> Setpoints:
        return _column(schedule, k)

    return decide


def _day_ahead_window(
    series: DayAheadSeries | None, known_until: datetime | None
) -> Callable[[datetime, int, float], FloatArray] | None:
    """The day-ahead prices as known when they are published `known_until`: NaN past it."""
    if series is None or known_until is None:
        return None

    def window(start_utc: datetime, count: int, interval_s: float) -> FloatArray:
        values = series.window(start_utc, count, interval_s)
        ends_s = (np.arange(count) + 1) * interval_s
        published_s = (known_until - start_utc).total_seconds()
        return np.where(ends_s <= published_s + 1e-6, values, np.nan)

    return window


def _column(schedule: Schedule, k: int) -> Setpoints:
    return (
        schedule.asic_units_on[:, k].copy(),
        schedule.gpu_level[:, k].copy(),
        schedule.gpu_capped_nodes[:, k].copy(),
        schedule.gpu_paused_nodes[:, k].copy(),
    )


def _run_interval(
    strategy: Strategy,
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
    units = plant.apply(units, level, capped, paused, at_s)
    if deployed:
        units = _deploy(strategy, units, level, capped, paused, at_s=at_s, deployed=deployed)
    end_s = at_s + interval_s
    for _ in range(len(units) + 1):
        samples = plant.meter(at_s, end_s)
        if not samples.max() > cap_watts:  # most intervals: one pass, no index array
            break
        over = np.flatnonzero(samples > cap_watts)
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
    strategy.totals.wakes_refused = plant.wakes_refused
    curtailed = capped + paused
    if curtailed.any() or strategy.curtailed_for_s.any():  # most intervals curtail no GPU
        running = np.where(curtailed > 0, strategy.curtailed_for_s + interval_s, 0.0)
        # An event that runs past its contract's longest is one SLA breach, counted as it
        # crosses.
        crossed = (running > strategy.max_event_s + 1e-6) & (
            strategy.curtailed_for_s <= strategy.max_event_s + 1e-6
        )
        strategy.totals.sla_breaches += int(crossed.sum())
        strategy.curtailed_for_s = running
    strategy.curtailed = curtailed
    return plant.advance(at_s, end_s, cap_watts=limit_watts)


def _deploy(
    strategy: Strategy,
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


def _drop(strategy: Strategy, units: np.ndarray, deployment: _Deployed) -> float:
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
    strategy: Strategy,
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
    ai_usd = _ai_usd(site, use.gpu_full_node_s, use.gpu_capped_node_s, use.gpu_paused_node_s)
    month = month_key(now)
    used = totals.allowance_used.setdefault(month, {c.name: 0.0 for c in site.contracts})
    for index, gpu in enumerate(site.gpu_groups):
        contract = site.contract(gpu.contract)
        capped = float(use.gpu_capped_node_s[index])
        paused = float(use.gpu_paused_node_s[index])
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


@lru_cache(maxsize=2)
def _calendar(period: Period) -> tuple[list[str], FloatArray]:
    """Each interval's month and true hashprice, worked out once for all the references."""
    months = [month_key(now) for now in period.moments]
    return months, np.array([period.day_hashprice[now.date()] for now in period.moments])


def _ai_usd(site: Problem, full_s: FloatArray, capped_s: FloatArray, paused_s: FloatArray) -> float:
    """What the GPU groups' node-seconds bill: full ones, and curtailed ones where billed."""
    usd = 0.0
    for index, gpu in enumerate(site.gpu_groups):
        contract = site.contract(gpu.contract)
        billed_node_s = float(full_s[index]) + (
            float(capped_s[index]) + float(paused_s[index])
            if contract.billed_when_curtailed
            else 0.0
        )
        usd += billed_node_s / SECONDS_PER_HOUR * gpu.gpus_per_node * contract.usd_per_gpu_hour
    return usd


def _account_steady(strategy: Strategy, steady: SteadyUse, *, k: int, period: Period) -> None:
    """`_account` and `_account_reserves` for each interval of a steady stretch from `k`:
    the figures of each interval worked out together, added up one interval after another in
    `_account`'s order, so that the totals come out the same to the last bit. Nothing is
    curtailed in a steady stretch, so no allowance is spent and no firm GPU breached."""
    site = strategy.site
    totals = strategy.totals
    done = slice(k, k + steady.count)
    months, hashprice = _calendar(period)
    hash_usd = steady.hash_ths_s * hashprice[done] * (1 - site.pool_fee) / SECONDS_PER_DAY
    energy_usd = steady.energy_mwh * period.true_price[done]
    ai_usd = _ai_usd(
        site, steady.gpu_full_node_s, steady.gpu_capped_node_s, steady.gpu_paused_node_s
    )
    full_mwh = strategy.asic_full_watts * steady.interval_s / 3.6e9
    curtailed_mwh = max(0.0, full_mwh - steady.asic_energy_mwh)
    unspent = {c.name: 0.0 for c in site.contracts}
    for month, hashed, spent, mwh in zip(
        months[done],
        hash_usd.tolist(),
        energy_usd.tolist(),
        steady.energy_mwh.tolist(),
        strict=True,
    ):
        totals.allowance_used.setdefault(month, dict(unspent))
        totals.asic_curtailed_mwh += curtailed_mwh
        totals.hash_revenue_usd += hashed
        totals.energy_cost_usd += spent
        totals.ai_revenue_usd += ai_usd
        totals.energy_mwh += mwh
        totals.monthly_profit_usd[month] = (
            totals.monthly_profit_usd.get(month, 0.0) + hashed + ai_usd - spent
        )
    programs = period.programs
    if programs is None:
        return
    hours = steady.interval_s / SECONDS_PER_HOUR
    paid = {
        p: strategy.awards[p][done] * programs.clearing[p][done] * hours for p in programs.products
    }
    for product in programs.products:
        totals.ancillary_by_product_usd.setdefault(product, 0.0)
    # Adding a zero changes no total: only the intervals with an award paid are added up.
    for j in np.flatnonzero(np.any([paid[p] != 0.0 for p in programs.products], axis=0)):
        for product in programs.products:
            usd = float(paid[product][j])
            totals.ancillary_usd += usd
            totals.ancillary_by_product_usd[product] += usd


def _close_months(strategy: Strategy, site: Problem) -> None:
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
