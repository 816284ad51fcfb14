"""The planning cycle: the state in, a plan, the setpoints of the step that covers now out.

Every `plan_interval_s`, and at once when asked (a new grid event, forecast or override, a
guard shed, a command the plant did not follow, safe mode left), but never sooner than
`replan_min_gap_s` after the last solve: the allowance is accounted, the site as the planner
may decide it is built (groups under an override taken out, their draw taken off the limit and
off every event's cap), and the same `RecedingPlanner` the replay runs decides in a worker
thread, under `solve_time_limit_s`, on the settled price history heard, the forecast, the latest
hashprice, the allowance the ledger says is used and the grid programs (agent.daemon.programs:
the 4CP chance, the reserve awards ahead). The plan is recorded, its changed setpoints are sent,
and once their records are on disk it is published; then, once a day from 10:00 Central, the
day-ahead reserve offer is made (agent.daemon.offers). Miners a reserve deployment holds asleep
are locked asleep in the problem. No plan is made in safe mode or before a price and a
hashprice have arrived.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import datetime

import numpy as np
import structlog

from gridpilot.adapters.actuation import AsicCommand, Command, GpuCommand
from gridpilot.agent.daemon.allowance import Allowance
from gridpilot.agent.daemon.clock import Clock
from gridpilot.agent.daemon.commands import Sender
from gridpilot.agent.daemon.ledger import LedgerError
from gridpilot.agent.daemon.metrics import Metrics
from gridpilot.agent.daemon.mode import Mode
from gridpilot.agent.daemon.offers import DayAheadOffers
from gridpilot.agent.daemon.programs import GridPrograms
from gridpilot.agent.daemon.publisher import PlanMade, Publisher
from gridpilot.agent.daemon.recorder import Recorder
from gridpilot.agent.daemon.setpoints import Setpoints
from gridpilot.agent.daemon.state import SiteState
from gridpilot.agent.daemon.triggers import Triggers
from gridpilot.agent.planner import Decision, MarketView, Planner, PlantState, RecedingPlanner
from gridpilot.agent.settings import Settings
from gridpilot.optimizer.plan import Plan
from gridpilot.optimizer.problem import AsicGroup, FloatArray, Problem

_log = structlog.get_logger("gridpilot.daemon")


class PlanningCycle:
    """Plans `site` when `triggers` ask and every interval. `plans_made` counts fresh solves;
    `last_plan` is the latest plan (fresh or standing)."""

    def __init__(
        self,
        settings: Settings,
        *,
        site: Problem,
        state: SiteState,
        setpoints: Setpoints,
        mode: Mode,
        triggers: Triggers,
        commands: Sender,
        allowance: Allowance,
        publisher: Publisher,
        recorder: Recorder,
        metrics: Metrics,
        clock: Clock,
        programs: GridPrograms,
        offers: DayAheadOffers,
    ) -> None:
        self._config = settings.agent
        self._programs = programs
        self._offers = offers
        self._site = site
        self._state = state
        self._setpoints = setpoints
        self._mode = mode
        self._triggers = triggers
        self._commands = commands
        self._allowance = allowance
        self._publisher = publisher
        self._recorder = recorder
        self._metrics = metrics
        self._clock = clock
        self.plans_made = 0
        self.last_plan: Plan | None = None
        self._receding: RecedingPlanner | None = None
        self._receding_key: object = None
        self._last_solve = -float("inf")
        self._offer_on: tuple[Planner, PlantState, MarketView, dict[str, float]] | None = None

    async def run(self) -> None:
        """Plan when asked or when the interval has passed, until cancelled."""
        config, triggers = self._config, self._triggers
        while True:
            try:
                async with asyncio.timeout(config.plan_interval_s / self._clock.speed):
                    await triggers.replan.wait()
            except TimeoutError:
                triggers.interval_due()
            gap = config.replan_min_gap_s - (time.monotonic() - self._last_solve)
            if gap > 0:
                await asyncio.sleep(gap)
            await self.plan_once(triggers.take_reason())

    def start_afresh(self, reason: str) -> None:
        """Ask for a plan on a fresh horizon, not one that follows the plans before."""
        self._receding = None
        self._triggers.request_plan(reason)

    async def plan_once(self, reason: str) -> Plan | None:
        """One planning cycle; None when in safe mode or without the inputs a plan needs."""
        now = self._clock.now()
        await self._allowance.account_or_say(now)
        # Requests made until here are answered by this plan, which reads the state from here.
        self._triggers.replan.clear()
        missing = "safe mode" if self._mode.safe else _missing(self._state)
        if missing:
            _log.info("plan.skipped", reason=reason, why=missing)
            return None
        template, asic_rows, gpu_rows = self.planning_site(now)
        history = self._history(now)
        decision = await self._decide(template, asic_rows, gpu_rows, history, now)
        plan = decision.plan
        self.last_plan = plan
        self._triggers.plan_made()
        commands = self.plan_commands(plan, decision.step)
        plan_id = await _recorded(self._recorder, decision, reason, now)
        if plan_id is None:
            self._receding = None  # the next plan starts afresh from what the devices do
            return None
        label = f"plan-{plan_id}"
        commands = [replace(c, plan=label) for c in commands]
        commands = await self._commands.send(commands, plan=label, plan_id=plan_id, planned=True)
        await self._recorder.durable()
        if self._mode.safe:  # it began while the plan was made: its holds stand, not the plan
            self._receding = None
            return None
        made = PlanMade(
            plan=plan,
            label=label,
            at=now,
            reason=reason,
            decision=decision.reason,
            fresh=decision.fresh,
            step=decision.step,
            price_usd_per_mwh=float(history[-1]),
            changed=len(commands),
            gpu_rows=tuple(gpu_rows),
        )
        await self._publisher.plan_made(made)
        if self._offer_on is not None:
            await self._offers.make_due(*self._offer_on)
        return plan

    def _history(self, now: datetime) -> FloatArray:
        """The settled real-time prices, or the latest price when none has settled yet."""
        history = self._state.prices.settled(now)
        if history.size == 0:
            # Only the current interval is priced so far: its latest price is all there is.
            assert self._state.price is not None  # _missing checked it
            history = np.array([self._state.price.value])
        return history

    async def _decide(
        self,
        template: Problem,
        asic_rows: list[int],
        gpu_rows: list[int],
        history: FloatArray,
        now: datetime,
    ) -> Decision:
        """The receding planner's decision, in a worker thread, with its metrics."""
        hashprice = self._state.hashprice
        assert hashprice is not None  # _missing checked it
        receding = self._receding_for(template)
        setpoints = self._setpoints
        locked, locked_for_s = setpoints.sleeps.locked(now.timestamp())
        plant = PlantState(
            asic_units_on=tuple(int(setpoints.units_on[i]) for i in asic_rows),
            gpu_curtailed_nodes=tuple(setpoints.curtailed_nodes(i) for i in gpu_rows),
            gpu_curtailed_for_s=tuple(
                self._allowance.curtailed_for_s(setpoints.gpu[i].name, now) for i in gpu_rows
            ),
            asic_locked_off=tuple(int(locked[i]) for i in asic_rows),
            asic_locked_for_s=tuple(float(locked_for_s[i]) for i in asic_rows),
        )
        day_ahead = self._state.day_ahead
        interval_s = self._config.plan_interval_s
        market = MarketView(
            now=now,
            history_usd_per_mwh=history,
            interval_s=interval_s,
            hashprice_usd_per_th_day=hashprice.value,
            day_ahead=day_ahead.window if day_ahead.until else None,
            events=template.events,
            programs=self._programs.view(
                now, round(self._config.horizon_s / interval_s), interval_s, hashprice.value
            ),
        )
        used = await self._allowance.used_node_hours(now)
        started = time.perf_counter()
        decision = await asyncio.to_thread(
            receding.decide, plant, market, used, published_until=day_ahead.until
        )
        self._last_solve = time.monotonic()
        plan = decision.plan
        if decision.fresh:
            self.plans_made += 1
            self._metrics.plans.labels(plan.status.value).inc()
            self._metrics.plan_seconds.observe(time.perf_counter() - started)
        self._metrics.last_plan.set(now.timestamp())
        self._metrics.forecast_price.set(float(plan.problem.price_usd_per_mwh[decision.step]))
        # What the day-ahead offer is made on, once this plan is out (`plan_once`).
        self._offer_on = (receding.planner, plant, market, used)
        return decision

    def _receding_for(self, template: Problem) -> RecedingPlanner:
        """The receding planner for `template`: the one so far, or a fresh horizon when the
        overrides or grid events, which change the problem itself, are not what they were."""
        key = (
            tuple(sorted((o.group, o.mode, o.until) for o in self._state.overrides.values())),
            tuple((e.id, e.start, e.end, e.max_site_watts) for e in template.events),
            tuple(sorted(self._state.programs.holds)),
        )
        if key != self._receding_key or self._receding is None:
            self._receding = RecedingPlanner(
                Planner(template, horizon_s=self._config.horizon_s, options=template.options)
            )
            self._receding_key = key
        return self._receding

    def planning_site(self, now: datetime) -> tuple[Problem, list[int], list[int]]:
        """The site as the planner may decide it: overridden groups are taken out, their
        forced draw taken off the limit and off every grid event's cap; miners a reserve
        deployment holds are locked asleep over the horizon, and while one holds the site's
        draw is capped at what it was when it was carried out, as by a grid event."""
        overrides, setpoints, site = self._state.overrides, self._setpoints, self._site
        asic_rows = [i for i, g in enumerate(site.asic_groups) if g.name not in overrides]
        gpu_rows = [i for i, g in enumerate(site.gpu_groups) if g.name not in overrides]
        forced = 0.0
        for override in overrides.values():
            forced += setpoints.command_watts(setpoints.override_command(override))
        deployment = self._state.programs.deployment_event()
        events = tuple(
            replace(e, max_site_watts=max(0.0, e.max_site_watts - forced))
            for e in (*self._state.upcoming_events(now), *([deployment] if deployment else []))
        )
        limit = max(site.site_limit_watts - forced, site.site_margin_watts + 1.0)
        template = replace(
            site,
            start=now,
            asic_groups=held_asleep(
                tuple(site.asic_groups[i] for i in asic_rows),
                [int(setpoints.units_on[i]) for i in asic_rows],
                self._state.programs.held_units(),
                until_s=self._config.horizon_s + 1.0,
            ),
            gpu_groups=tuple(site.gpu_groups[i] for i in gpu_rows),
            site_limit_watts=limit,
            events=events,
        )
        return template, asic_rows, gpu_rows

    def plan_commands(self, plan: Plan, step: int) -> list[Command]:
        """The plan's setpoints for `step` that differ from what the groups were last told.
        Groups under an operator's override are left out."""
        held = self._state.overrides
        commands: list[Command] = []
        for asic in plan.asic_setpoints(step):
            command = AsicCommand(
                asic.group,
                asic.units_on,
                asic.watts_per_unit,
                asic.reason or "run: worth more than its power",
                "",
            )
            if asic.group not in held and self._setpoints.differs(command):
                commands.append(command)
        for gpu in plan.gpu_setpoints(step):
            gpu_command = GpuCommand(
                gpu.group,
                gpu.power_cap_watts,
                gpu.capped_nodes,
                gpu.paused_nodes,
                gpu.reason or "full power",
                "",
            )
            if gpu.group not in held and self._setpoints.differs(gpu_command):
                commands.append(gpu_command)
        return commands


def held_asleep(
    groups: tuple[AsicGroup, ...], units_on: list[int], held: dict[str, int], *, until_s: float
) -> tuple[AsicGroup, ...]:
    """`groups` (now `units_on` awake) with the miners a reserve deployment holds (`held`
    per group) locked asleep for `until_s`: beyond the horizon, since when the recall comes is
    not known."""

    def lock(group: AsicGroup, on: int) -> AsicGroup:
        locked = min(held.get(group.name, 0), group.units - on)
        if locked <= 0:
            return group
        return replace(group, units_on_now=on, units_locked_off=locked, locked_off_until_s=until_s)

    return tuple(lock(g, on) for g, on in zip(groups, units_on, strict=True))


def _missing(state: SiteState) -> str:
    """What a plan needs and the state lacks, or empty."""
    if state.hashprice is None:
        return "no hashprice yet"
    if state.price is None:
        return "no real-time price yet"
    return ""


async def _recorded(
    recorder: Recorder, decision: Decision, reason: str, now: datetime
) -> int | None:
    """The plan of `decision` in the ledger, and its id; None (said and counted) when the ledger
    cannot take it. A plan is carried out only once it is on disk: until one can be recorded
    again the devices keep their commands, and the guard and safe mode still act."""
    plan = decision.plan
    try:
        return await recorder.call(
            recorder.ledger.record_plan,
            now,
            plan.status.value,
            f"{reason}; {decision.reason}",
            float(plan.outcome.profit_usd),
            {"solver": plan.solver, "gap": plan.gap, "step": decision.step, "note": plan.note},
        )
    except LedgerError as error:
        recorder.failed("plan", error, event="plan.not_recorded", reason=reason)
        return None
