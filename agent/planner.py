"""The planner: the site's state and what is known of the market, turned into a plan.

One code path for the daemon and the replay: both hand it the state of the plant, the allowance
the ledger says is used, and a `MarketView` of what is known at the moment of deciding; it builds
the optimizer's problem (forecast prices, the previous day's hashprice, budgets, reservation
prices), solves it and returns the plan. It reads no clock and no file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from gridpilot.agent.forecast import (
    DRIFT_INTERVALS,
    DayAheadWindow,
    base_levels,
    drift,
    forecast_prices,
    step_means,
)
from gridpilot.agent.pacing import reservations
from gridpilot.agent.programs import ProgramView
from gridpilot.optimizer.economics import breakeven_usd_per_mwh
from gridpilot.optimizer.plan import Plan
from gridpilot.optimizer.problem import (
    AllowanceBudget,
    AsicGroup,
    FloatArray,
    GpuGroup,
    GridEvent,
    Problem,
    Programs,
    SolveOptions,
    uniform_steps,
)
from gridpilot.optimizer.solve import solve

RECENT_PRICE_DAYS = 30


@dataclass(frozen=True, slots=True)
class PlantState:
    """What the site is doing now, per group, in the problem's group order."""

    asic_units_on: tuple[int, ...]
    gpu_curtailed_nodes: tuple[int, ...]
    gpu_curtailed_for_s: tuple[float, ...]
    # Miners asleep for less than their minimum off time (`optimizer.lockout.SleepRecord`),
    # and the seconds until the last of them may wake; empty: none.
    asic_locked_off: tuple[int, ...] = ()
    asic_locked_for_s: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class MarketView:
    """The market as known at `now`: settled real-time prices up to the interval just ended
    (the last element), the day-ahead prices published by then, the previous day's hashprice."""

    now: datetime
    history_usd_per_mwh: FloatArray
    interval_s: float
    hashprice_usd_per_th_day: float
    day_ahead: DayAheadWindow | None = None
    events: tuple[GridEvent, ...] = ()
    # The grid programs as known now, per interval from `now` (None: energy alone).
    programs: ProgramView | None = None


@dataclass(frozen=True, slots=True)
class Planner:
    """Plans `site` (a problem template: groups, contracts, limits; its prices are ignored)."""

    site: Problem
    horizon_s: float = 86_400.0
    options: SolveOptions = field(default_factory=SolveOptions)

    def problem(
        self,
        state: PlantState,
        market: MarketView,
        used_node_hours: dict[str, float],
        *,
        levels: FloatArray | None = None,
    ) -> Problem:
        """The problem at `market.now`. `levels`: the forecast's base levels at that moment
        (`forecast.base_levels`) for the horizon or longer, where the caller has them already."""
        intervals = round(self.horizon_s / market.interval_s)
        steps = uniform_steps(intervals, market.interval_s)
        if levels is None:
            levels = self.levels(market, intervals)
        settled = min(DRIFT_INTERVALS, market.history_usd_per_mwh.size)
        forecast = step_means(
            levels[settled : settled + intervals],
            drift(market.history_usd_per_mwh, levels[:settled]),
            steps,
            market.interval_s,
        )
        budgets = self._budgets(market.now, used_node_hours)
        recent = market.history_usd_per_mwh[
            -round(RECENT_PRICE_DAYS * 86_400.0 / market.interval_s) :
        ]
        period_end = month_end(market.now)
        # Reservations read only what the site template holds (groups, contracts, pool fee), not
        # the plant's state, so the problem is built once, with them.
        reserved = reservations(
            self.site,
            recent_prices=recent,
            forecast_prices=forecast,
            forecast_step_s=steps,
            hashprice_usd_per_th_day=market.hashprice_usd_per_th_day,
            node_hours_left={
                b.contract: b.node_hours_left for b in budgets if b.period_end == period_end
            },
            hours_left_in_period=(period_end - market.now).total_seconds() / 3_600.0,
            site_oversubscribed=_oversubscribed(self.site),
        )
        programs = (
            market.programs.on_steps(len(steps), market.interval_s)
            if market.programs is not None
            else Programs()
        )
        return replace(
            self.site,
            start=market.now,
            step_s=steps,
            programs=programs,
            price_usd_per_mwh=tuple(forecast.tolist()),
            hashprice_usd_per_th_day=(market.hashprice_usd_per_th_day,) * len(steps),
            asic_groups=_asic_state(self.site.asic_groups, state),
            gpu_groups=_gpu_state(self.site.gpu_groups, state),
            events=market.events,
            budgets=budgets,
            options=self.options,
            allowance_value_usd_per_node_hour={
                name: r.usd_per_node_hour for name, r in reserved.items()
            },
        )

    def plan(
        self,
        state: PlantState,
        market: MarketView,
        used_node_hours: dict[str, float],
        *,
        levels: FloatArray | None = None,
    ) -> Plan:
        return solve(self.problem(state, market, used_node_hours, levels=levels))

    @staticmethod
    def levels(market: MarketView, intervals: int) -> FloatArray:
        """The forecast's base levels at `market.now`: the last settled intervals', then the
        next `intervals` (see `forecast.base_levels`)."""
        return base_levels(
            now=market.now,
            intervals=intervals,
            history=market.history_usd_per_mwh,
            interval_s=market.interval_s,
            day_ahead=market.day_ahead,
        )

    def offer(
        self,
        state: PlantState,
        market: MarketView,
        used_node_hours: dict[str, float],
        *,
        horizon_s: float,
        first: int,
        last: int,
    ) -> dict[str, FloatArray]:
        """What the plan over `horizon_s` from now would hold of each reserve product in
        intervals `first` to `last` (exclusive), MW: the day-ahead offer for those hours, given
        a `market.programs` that lets the day's intervals hold up to the site's qualification
        at the expected prices. The plan is made and dropped; only its holds are kept."""
        planner = replace(self, horizon_s=horizon_s)
        plan = solve(planner.problem(state, market, used_node_hours))
        reserves = plan.problem.programs.reserves
        held = plan.schedule.held_watts(len(reserves)) / 1e6
        return {r.name: held[i, first:last].copy() for i, r in enumerate(reserves)}

    def _budgets(
        self, now: datetime, used_node_hours: dict[str, float]
    ) -> tuple[AllowanceBudget, ...]:
        """This month's allowance less what the ledger says is used; the next month's whole,
        where the horizon reaches into it."""
        this_start, this_end = month_start(now), month_end(now)
        budgets = []
        for contract in self.site.contracts:
            left = max(0.0, contract.allowance_node_hours - used_node_hours.get(contract.name, 0.0))
            budgets.append(AllowanceBudget(contract.name, this_start, this_end, left))
            if now + timedelta(seconds=self.horizon_s) > this_end:
                budgets.append(
                    AllowanceBudget(
                        contract.name,
                        this_end,
                        month_end(this_end),
                        contract.allowance_node_hours,
                    )
                )
        return tuple(budgets)


def _at_steps(
    per_interval: FloatArray, starts_s: FloatArray, step_s: tuple[float, ...], interval_s: float
) -> FloatArray:
    """The mean of `per_interval` (intervals from now) over each step starting `starts_s`
    from now and lasting its `step_s`."""
    if all(length_s == interval_s for length_s in step_s):
        # Steps of one interval each, as the first hours' are: each is its interval's value.
        index = np.rint(starts_s / interval_s).astype(np.int64)
        aligned = bool(np.all(index * interval_s == starts_s)) and bool(np.all(index >= 0))
        if aligned and (index.size == 0 or int(index[-1]) < per_interval.size):
            return np.asarray(per_interval[index], dtype=np.float64)
    out = np.zeros(len(step_s))
    for i, (start_s, length_s) in enumerate(zip(starts_s.tolist(), step_s, strict=True)):
        first = max(0, round(start_s / interval_s))
        last = max(first + 1, round((start_s + length_s) / interval_s))
        chunk = per_interval[first:last]
        out[i] = float(chunk.sum()) / chunk.size if chunk.size else 0.0  # the mean, cheaper
    return out


def month_start(moment: datetime) -> datetime:
    """Billing months are calendar months in UTC."""
    utc = moment.astimezone(UTC)
    return datetime(utc.year, utc.month, 1, tzinfo=UTC)


def month_end(moment: datetime) -> datetime:
    start = month_start(moment)
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def _oversubscribed(problem: Problem) -> bool:
    peak = sum(g.units * g.watts_per_unit * g.overhead_factor for g in problem.asic_groups)
    peak += sum(g.nodes * g.full_node_watts * g.overhead_factor for g in problem.gpu_groups)
    return bool(peak > problem.site_limit_watts - problem.site_margin_watts)


def _asic_state(groups: tuple[AsicGroup, ...], state: PlantState) -> tuple[AsicGroup, ...]:
    # Only groups whose state differs are copied: most intervals change few groups or none.
    groups = tuple(
        g if g.on_now == on else replace(g, units_on_now=int(on))
        for g, on in zip(groups, state.asic_units_on, strict=True)
    )
    if not state.asic_locked_off:
        return groups
    return tuple(
        _locked(g, locked, for_s)
        for g, locked, for_s in zip(
            groups, state.asic_locked_off, state.asic_locked_for_s, strict=True
        )
    )


def _locked(group: AsicGroup, locked: int, for_s: float) -> AsicGroup:
    """`group` with `locked` more of its sleepers locked asleep for `for_s` (a reserve
    deployment may already hold some: the two are added, up to the units asleep, and the later
    end kept, which keeps every locked unit asleep at least as long as it must)."""
    if locked <= 0:
        return group
    asleep = group.units - group.on_now
    return replace(
        group,
        units_locked_off=min(asleep, group.units_locked_off + locked),
        locked_off_until_s=max(group.locked_off_until_s, for_s),
    )


def _gpu_state(groups: tuple[GpuGroup, ...], state: PlantState) -> tuple[GpuGroup, ...]:
    return tuple(
        g
        if (g.curtailed_nodes_now, g.curtailed_for_s) == (nodes, running)
        else replace(g, curtailed_nodes_now=int(nodes), curtailed_for_s=float(running))
        for g, nodes, running in zip(
            groups, state.gpu_curtailed_nodes, state.gpu_curtailed_for_s, strict=True
        )
    )


_Breakevens = tuple[tuple[AsicGroup, ...], tuple[float, float], FloatArray]


@dataclass(frozen=True, slots=True)
class Decision:
    """Setpoints for now, and whether they come from a fresh solve."""

    plan: Plan
    step: int  # the plan step that covers now
    fresh: bool
    reason: str  # why the planner solved again, or why it did not


class RecedingPlanner:
    """The receding horizon: solve, apply the step that covers now, and solve again when the
    world departs from the plan.

    A new solve happens when the plan is `max_age_s` old, when the plant is not where the plan
    put it (the guard shed, a command failed), when new day-ahead prices, reserve awards or a
    new day's hashprice were published, or when the forecast as it stands now (power price and
    expected 4CP charge) puts an interval of the next `breakeven_window_s` on the other side of
    a miner model's breakeven than the plan did, or, above the lowest breakeven, departs from
    the plan's by more than `price_tolerance_usd_per_mwh` and `price_tolerance_share` (the
    forecast moves with every
    settled price; a plan made on the old one would run miners through what now looks like a
    spell, or keep them asleep past its end). Otherwise the current plan stands: its decisions
    were made on what is still, as far as they are concerned, the latest information.

    Re-planning only when it can matter, measured on the bundled year with the grid programs
    (`make bench-replay`): a standing plan is due after six hours rather than two (profit
    within 3,200 $, the replay 98.5 s -> 74.5 s), and a settled price that merely misses the
    plan's expectation no longer re-plans by itself (it made two thirds of all solves in a
    summer fortnight; without it the agent's profit moved by 8,100 $ of 383 M$, capture 0.856
    -> 0.855, and the replay took 55.9 s with other work beside it): what a miss changes, the
    forecast's breakeven test sees.
    """

    def __init__(
        self,
        planner: Planner,
        *,
        max_age_s: float = 6 * 3_600.0,
        price_tolerance_usd_per_mwh: float = 10.0,
        price_tolerance_share: float = 0.25,
        breakeven_window_s: float = 3_600.0,
    ) -> None:
        self.planner = planner
        self.max_age_s = max_age_s
        self.price_tolerance_usd_per_mwh = price_tolerance_usd_per_mwh
        self.price_tolerance_share = price_tolerance_share
        self.breakeven_window_s = breakeven_window_s
        self._plan: Plan | None = None
        self._published: datetime | None = None
        # The forecast's base levels when the plan was made (the last settled intervals', then
        # the ones ahead): the forecast moves after it only by the drift of new settled prices.
        self._levels: FloatArray = np.empty(0)
        self._settled = 0
        self._planned: FloatArray = np.empty(0)
        self._awards_key: object = None
        # The breakevens at a plan's groups, pool fee and hashprice, kept while they stay.
        self._breakevens_for: _Breakevens | None = None

    def decide(
        self,
        state: PlantState,
        market: MarketView,
        used_node_hours: dict[str, float],
        *,
        published_until: datetime | None = None,
    ) -> Decision:
        step = self._step(market.now) if self._plan is not None else 0
        reason = self._stale(state, market, published_until, step)
        if reason is None and self._plan is not None:
            return Decision(self._plan, step, False, "plan stands")
        ahead = int(np.ceil((self.max_age_s + self.breakeven_window_s) / market.interval_s)) + 1
        horizon = round(self.planner.horizon_s / market.interval_s)
        # One forecast for the plan and for the tests of it until the next.
        levels = self.planner.levels(market, max(ahead, horizon))
        self._plan = self.planner.plan(state, market, used_node_hours, levels=levels)
        self._published = published_until
        self._awards_key = market.programs.awards_key if market.programs else None
        self._settled = levels.size - max(ahead, horizon)
        self._levels = levels[: self._settled + ahead]
        problem = self._plan.problem
        # What a MWh of each step was planned to cost: the power price and the expected 4CP
        # charge.
        self._planned = np.asarray(problem.price_usd_per_mwh, dtype=np.float64) + (
            problem.programs.transmission(problem.steps)
        )
        return Decision(self._plan, 0, True, reason or "first plan")

    def _step(self, now: datetime) -> int:
        """The standing plan's step that covers `now`."""
        assert self._plan is not None
        elapsed = (now - self._plan.problem.start).total_seconds()
        offsets = self._plan.problem.step_offsets_s()
        return int(np.searchsorted(offsets, elapsed + 1e-6, side="right") - 1)

    def _stale(
        self, state: PlantState, market: MarketView, published_until: datetime | None, step: int
    ) -> str | None:
        plan = self._plan
        if plan is None:
            return "first plan"
        elapsed = (market.now - plan.problem.start).total_seconds()
        if elapsed >= self.max_age_s or elapsed < 0:
            return "plan is due"
        if published_until != self._published:
            return "new day-ahead prices"
        if (market.programs.awards_key if market.programs else None) != self._awards_key:
            return "new reserve awards"
        if market.hashprice_usd_per_th_day != plan.problem.hashprice_usd_per_th_day[0]:
            return "new hashprice"
        return self._departure(plan, state, market, step)

    def _departure(
        self, plan: Plan, state: PlantState, market: MarketView, step: int
    ) -> str | None:
        """How the plant or the market has left the plan since its last step, if it has."""
        previous = max(step - 1, 0)
        expected_on = plan.schedule.asic_units_on[:, previous]
        if tuple(expected_on.tolist()) != state.asic_units_on:
            return "plant departed from the plan"
        curtailed = (
            plan.schedule.gpu_capped_nodes[:, previous]
            + plan.schedule.gpu_paused_nodes[:, previous]
        )
        if tuple(curtailed.tolist()) != state.gpu_curtailed_nodes:
            return "GPUs departed from the plan"
        return self._breakeven_crossed(plan, market, step)

    def _breakevens(self, problem: Problem, hashprice_usd_per_th_day: float) -> FloatArray:
        """One breakeven per distinct miner model and overhead (they are few), kept while
        the groups, the pool fee and the hashprice stay: this runs every interval."""
        kept = self._breakevens_for
        if (
            kept is None
            or kept[0] is not problem.asic_groups  # a plan's groups, the same tuple each interval
            or kept[1] != (problem.pool_fee, hashprice_usd_per_th_day)
        ):
            models = {(g.joules_per_th, g.overhead_factor) for g in problem.asic_groups}
            values = np.array(
                [
                    breakeven_usd_per_mwh(
                        hashprice_usd_per_th_day,
                        joules_per_th,
                        pool_fee=problem.pool_fee,
                        overhead_factor=overhead,
                    )
                    for joules_per_th, overhead in sorted(models)
                ]
            )
            kept = (problem.asic_groups, (problem.pool_fee, hashprice_usd_per_th_day), values)
            self._breakevens_for = kept
        return kept[2]

    def _breakeven_crossed(self, plan: Plan, market: MarketView, first: int) -> str | None:
        """Whether the forecast now puts a step of the next `breakeven_window_s` on the other
        side of a miner model's breakeven (at the hashprice known now) than the plan's, or,
        above the lowest breakeven, departs from the plan's by more than the price tolerance.

        The forecast now is the plan's base levels (kept from when it was made; they move only
        with a day's new prices, and the plan is at most `max_age_s` old) plus the drift of the
        prices settled since: the same forecast the planner would make, at a fraction of its
        cost, since this runs every interval."""
        problem = plan.problem
        offsets = problem.step_offsets_s()
        elapsed = (market.now - problem.start).total_seconds()
        # The steps from the one covering now that start within the window.
        stop = int(np.searchsorted(offsets, elapsed + self.breakeven_window_s, side="left"))
        if stop <= first or not problem.asic_groups:
            return None
        # The standing plan's steps ahead, forecast afresh: on the base levels the plan was made
        # with, and the drift of the prices settled since.
        step_s = problem.step_s[first:stop]
        intervals = round(sum(step_s) / market.interval_s)
        first_interval = self._settled + round(float(offsets[first]) / market.interval_s)
        if first_interval + intervals <= self._levels.size:
            past = min(DRIFT_INTERVALS, first_interval)
            settled_drift = drift(
                market.history_usd_per_mwh, self._levels[first_interval - past : first_interval]
            )
            ahead = self._levels[first_interval : first_interval + intervals]
            fresh = step_means(ahead, settled_drift, step_s, market.interval_s)
        else:
            start = problem.start + timedelta(seconds=float(offsets[first]))
            fresh = forecast_prices(
                now=max(start, market.now),
                step_s=step_s,
                history=market.history_usd_per_mwh,
                interval_s=market.interval_s,
                day_ahead=market.day_ahead,
            )
        # What a MWh costs: the power price and the expected 4CP charge, both as known now.
        planned = self._planned[first:stop]
        # (Outside the 4CP months the expected charge is nothing: the forecast stands.)
        if market.programs is not None and market.programs.cp_chance.any():
            ahead = market.programs.transmission_usd_per_mwh(
                round((elapsed + self.breakeven_window_s) / market.interval_s) + 1,
                market.interval_s,
            )
            fresh = fresh + _at_steps(
                ahead, offsets[first:stop] - elapsed, step_s, market.interval_s
            )
        breakevens = self._breakevens(problem, market.hashprice_usd_per_th_day).tolist()
        lowest = min(breakevens)
        # A few steps and models: compared as Python floats, the same comparisons as arrays'.
        for now_usd, then_usd in zip(fresh.tolist(), planned.tolist(), strict=True):
            crossed = any((then_usd > b) != (now_usd > b) for b in breakevens)
            # Above the lowest breakeven, how long a spell lasts and how high it runs decide
            # whether sleeping pays for the waking loss: a material change there counts too.
            miss = abs(now_usd - then_usd)
            moved = (
                max(now_usd, then_usd) > lowest
                and miss > self.price_tolerance_usd_per_mwh
                and miss > self.price_tolerance_share * abs(then_usd)
            )
            if crossed or moved:
                why = "across a miner breakeven" if crossed else "above breakeven"
                return f"forecast {now_usd:.0f} $/MWh against {then_usd:.0f} planned {why}"
        return None
