"""`gridpilot run`: the site agent as a long-running asyncio service.

One root `asyncio.TaskGroup` holds the named tasks:

- `mqtt`: the broker session (adapters.mqtt); every input message is decoded at the edge and
  folded into the `SiteState`; a bad one is counted by topic and reason and dropped.
- `guard`: woken by each meter reading and grid event; if the site is over its cap it puts
  miners to sleep at once along the merit order (agent.guard), without the solver, then asks
  for a new plan.
- `planner`: every `plan_interval_s`, and at once on a new grid event, forecast or override,
  builds the plan through the same `RecedingPlanner` the replay uses, in a worker thread, and
  sends the setpoints of the step that covers now.
- `housekeeping`: once a second: signal ages and safe mode, expired overrides and ended
  events, the SLA ledger's allowance accounting.
- `metrics`: the Prometheus endpoint.
- `devices`: retries each device actuator that could not start (agent.daemon.devices)
  until it is up.

Safe mode (a stale meter, price or hashprice): no planning; GPUs stay as they are; ASICs are
held to `safe_asic_share` of the limit less margin, most efficient first, never woken; the guard
keeps running while the meter is fresh. It is announced on the mode topic and in the log, and
left as soon as every feed is fresh again.

Shadow mode decides and publishes plans but commands nothing (the guard only says what it
would shed).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import structlog

from gridpilot.adapters.actuation import (
    Actuator,
    AsicCommand,
    Command,
    GpuCommand,
    MqttActuator,
    Outcome,
    RoutingActuator,
    encode,
)
from gridpilot.adapters.mqtt import MqttLink
from gridpilot.adapters.payloads import (
    EventCancel,
    Override,
    OverrideClear,
    Rejected,
    decode_event,
    decode_forecast,
    decode_override,
    decode_reading,
)
from gridpilot.agent.daemon import devices, systemd
from gridpilot.agent.daemon.actuators import actuator_kinds, build_actuator
from gridpilot.agent.daemon.clock import Clock
from gridpilot.agent.daemon.ledger import CommandRecord, Ledger
from gridpilot.agent.daemon.metrics import (
    LOAD_CLASSES,
    Metrics,
    curtailment_reason,
    serve_metrics,
)
from gridpilot.agent.daemon.recorder import Recorder
from gridpilot.agent.daemon.setpoints import GroupPower, Setpoints, command_from_payload
from gridpilot.agent.daemon.state import Signal, SiteState
from gridpilot.agent.daemon.topics import Topics, broker_options, field_map
from gridpilot.agent.guard import shed, shed_order
from gridpilot.agent.planner import MarketView, Planner, PlantState, RecedingPlanner, month_end
from gridpilot.agent.settings import Settings
from gridpilot.agent.site import site_problem
from gridpilot.optimizer.economics import (
    SECONDS_PER_DAY,
    SECONDS_PER_HOUR,
    WATT_SECONDS_PER_MWH,
    breakeven_usd_per_mwh,
)
from gridpilot.optimizer.plan import Plan
from gridpilot.optimizer.problem import GridEvent, Problem, SolveOptions

_log = structlog.get_logger("gridpilot.daemon")

OVERRIDE_MODES = ("awake", "asleep", "cap")


class _Stop(Exception):  # noqa: N818  # a signal to the task group, not an error
    """Raised inside the task group to end it cleanly."""


class Daemon:
    """The agent. `await run(stop)` serves until `stop` is set."""

    def __init__(
        self,
        settings: Settings,
        *,
        ledger: Ledger,
        clock: Clock,
        metrics: Metrics,
        actuator: Actuator | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.agent
        self.ledger = ledger
        self.clock = clock
        self.metrics = metrics
        self.topics = Topics.of(settings)
        now = clock.now()
        self.site: Problem = site_problem(
            settings,
            start=now,
            step_s=(self.config.plan_interval_s,),
            price_usd_per_mwh=(0.0,),
            hashprice_usd_per_th_day=0.0,
            options=SolveOptions(time_limit_s=self.config.solve_time_limit_s),
        )
        self.asic = self.site.asic_groups
        self.gpu = self.site.gpu_groups
        # What each group was last told. The names below are views of it, for brevity: its
        # arrays change in place and are never replaced.
        self.setpoints = Setpoints(self.asic, self.gpu)
        self.asic_index = self.setpoints.asic_index
        self.gpu_index = self.setpoints.gpu_index
        self.units_on = self.setpoints.units_on
        self.gpu_level = self.setpoints.gpu_level
        self.gpu_capped = self.setpoints.gpu_capped
        self.gpu_paused = self.setpoints.gpu_paused
        self.commanded = self.setpoints.commanded
        self.state = SiteState(started=now, interval_s=self.config.plan_interval_s)
        self.link = MqttLink(
            broker_options(settings, self.topics),
            subscriptions=self.topics.subscriptions(),
            on_message=self._on_message,
            on_connect=self._on_connect,
            on_state=self._on_link_state,
        )
        self.mqtt_actuator = MqttActuator(
            self.link.publish,
            asic_topic=self.topics.asic_command,
            gpu_topic=self.topics.gpu_command,
        )
        # A device library that cannot start leaves its groups down, not the agent.
        supervise = devices.supervisor(clock=clock, metrics=metrics, resend=self._resend)
        self.actuator: Actuator = actuator or build_actuator(
            settings, self.mqtt_actuator, supervise=supervise
        )
        self._fields = {
            "meter": field_map(settings.mqtt.meter_fields),
            "price": field_map(settings.mqtt.price_fields),
            "hashprice": field_map(settings.mqtt.hashprice_fields),
        }
        self.interruptions: dict[str, tuple[int, datetime]] = {}  # group -> (ledger id, start)
        self.mode = "normal"
        self.safe_reasons: tuple[str, ...] = ()
        self.last_plan: Plan | None = None
        self.plans_made = 0
        self.guard_actions = 0
        self._receding: RecedingPlanner | None = None
        self._receding_key: object = None
        self._replan = asyncio.Event()
        self._replan_reason = "first plan"
        self._guard_check = asyncio.Event()
        self._shed_credit: list[tuple[float, float]] = []  # (monotonic s, watts shed)
        self.recorder = Recorder(ledger)
        self._last_solve = -float("inf")
        self._published_notices: dict[str, tuple[str | None, int]] = {}
        self.metrics_port: asyncio.Future[int] | None = None
        self._money_at: datetime | None = None
        self._group_power: dict[str, GroupPower] = {}
        self._load_watts = dict.fromkeys(LOAD_CLASSES, 0.0)
        self._held_watts: dict[tuple[str, str], float] = {}
        self._static_metrics()

    # --- running -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then say goodbye: status `offline`, allowance accounted.
        Devices keep their last commanded state."""
        await self._restore()
        start = getattr(self.actuator, "start", None)
        if start is not None:
            await start()
        self.metrics_port = asyncio.get_running_loop().create_future()
        _log.info(
            "agent.start",
            site=self.settings.site.name,
            asic_groups=len(self.asic),
            gpu_groups=len(self.gpu),
            shadow=self.config.shadow,
            broker=f"{self.settings.mqtt.host}:{self.settings.mqtt.port}",
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.link.run(), name="mqtt")
                tasks.create_task(self._guard_loop(), name="guard")
                tasks.create_task(self._planner_loop(), name="planner")
                tasks.create_task(self._housekeeping_loop(), name="housekeeping")
                tasks.create_task(self.recorder.run(), name="ledger")
                tasks.create_task(
                    serve_metrics(
                        self.metrics.registry,
                        self.config.metrics_host,
                        self.config.metrics_port,
                        self.metrics_port,
                    ),
                    name="metrics",
                )
                tasks.create_task(devices.retry_down(self.actuator), name="devices")
                tasks.create_task(self._until(stop), name="stop")
                systemd.notify("READY=1")
        except* _Stop:
            pass
        close = getattr(self.actuator, "close", None)
        if close is not None:
            await close()
        self.recorder.flush()
        await self._account(self.clock.now())
        _log.info("agent.stop", plans=self.plans_made, guard_actions=self.guard_actions)

    async def _until(self, stop: asyncio.Event) -> None:
        await stop.wait()
        systemd.notify("STOPPING=1")
        # The will fires only on an unclean end: say it ourselves.
        await self.link.publish(self.topics.status, b"offline")
        raise _Stop

    async def _restore(self) -> None:
        """Pick up where the last run stopped: the setpoints last sent and the interruptions
        still running (their length counts towards each contract's longest event)."""
        current = await self.recorder.call(self.ledger.current_setpoints)
        for (kind, group), payload in current.items():
            command = command_from_payload(kind, group, payload)
            if command is None or not self._known(command):
                continue
            self._remember(command)
        for interruption in await self.recorder.call(self.ledger.open_interruptions):
            if interruption.group in self.gpu_index:
                self.interruptions[interruption.group] = (interruption.id, interruption.start)
        self._power_metrics()
        if current:
            _log.info(
                "agent.restored", setpoints=len(current), interruptions=len(self.interruptions)
            )

    # --- inputs --------------------------------------------------------------------------

    async def _on_connect(self) -> None:
        await self.link.publish(self.topics.status, b"online")
        await self._publish_mode()
        gateway = [c for c in self.commanded.values() if self._via_mqtt(c.group)]
        if gateway and not self.config.shadow:
            # A broker restarted without persistence forgot every retained command.
            await self.mqtt_actuator.apply(gateway)
        _log.info("mqtt.connected", connects=self.link.connects, republished=len(self.commanded))

    def _on_link_state(self, connected: bool) -> None:
        self.metrics.mqtt_connected.set(1 if connected else 0)
        if connected:
            if self.link.connects > 1:
                self.metrics.mqtt_reconnects.inc()
        else:
            _log.warning("mqtt.disconnected", error=self.link.last_error)

    async def _on_message(self, topic: str, payload: bytes) -> None:
        kind = self._kind(topic)
        now = self.clock.now()
        limit = self.settings.mqtt.max_payload_bytes
        try:
            if kind == "meter":
                self._on_meter(topic[len(self.topics.meter_prefix) :], payload, now, limit)
            elif kind in ("price", "hashprice"):
                reading = decode_reading(payload, self._fields[kind], received=now, max_bytes=limit)
                signal = Signal(reading.value, reading.ts, now)
                if kind == "price":
                    self.state.price = signal
                    self.state.prices.add(reading.ts, reading.value)
                    self.metrics.price.set(reading.value)
                else:
                    self.state.hashprice = signal
                    self.metrics.hashprice.set(reading.value)
                    self._breakeven_metrics(reading.value)
                if self.last_plan is None:
                    self._request_plan("first plan")  # the inputs it lacked may be here now
            elif kind == "forecast":
                self.state.day_ahead.add(decode_forecast(payload, received=now, max_bytes=limit))
                self.state.forecast_received = now
                self._request_plan("new forecast")
            elif kind == "event":
                self._on_event(decode_event(payload, received=now, max_bytes=limit))
            elif kind == "override":
                group = topic[len(self.topics.override_prefix) :]
                await self._on_override(
                    decode_override(payload, group, received=now, max_bytes=limit)
                )
        except Rejected as rejected:
            self.metrics.rejected.labels(kind, rejected.reason).inc()
            _log.warning(
                "input.rejected", topic=topic, reason=rejected.reason, detail=rejected.detail[:200]
            )
        except Exception:
            # A bug in handling one message must not take the site's agent down with it.
            self.metrics.rejected.labels(kind, "internal_error").inc()
            _log.exception("input.failed", topic=topic)

    def _kind(self, topic: str) -> str:
        t = self.topics
        if topic.startswith(t.meter_prefix):
            return "meter"
        if topic.startswith(t.override_prefix):
            return "override"
        exact = {
            t.price: "price",
            t.forecast: "forecast",
            t.hashprice: "hashprice",
            t.event: "event",
        }
        return exact.get(topic, "unknown")

    def _on_meter(self, name: str, payload: bytes, now: datetime, limit: int) -> None:
        meters = self.config.meters
        if meters and name not in meters:
            raise Rejected("unknown_name", f"meter {name!r} is not one of {', '.join(meters)}")
        reading = decode_reading(payload, self._fields["meter"], received=now, max_bytes=limit)
        if reading.value < 0:
            raise Rejected("out_of_range", f"meter {name!r} read {reading.value} W")
        self.state.meters[name] = Signal(reading.value, reading.ts, now)
        self._guard_check.set()

    def _on_event(self, event: GridEvent | EventCancel) -> None:
        if isinstance(event, EventCancel):
            if self.state.events.pop(event.id, None) is not None:
                _log.info("event.cancelled", grid_event=event.id)
                self._request_plan(f"grid event {event.id} cancelled")
            return
        self.state.events[event.id] = event
        _log.info(
            "event.received",
            grid_event=event.id,
            start=event.start.isoformat(),
            end=event.end.isoformat(),
            max_site_watts=event.max_site_watts,
        )
        self._guard_check.set()
        self._request_plan(f"grid event {event.id}")

    async def _on_override(self, override: Override | OverrideClear) -> None:
        group = override.group
        if group not in self.asic_index and group not in self.gpu_index:
            raise Rejected("unknown_name", f"{group!r} is not a group of this site")
        if isinstance(override, OverrideClear):
            if self.state.overrides.pop(group, None) is not None:
                _log.info("override.cleared", group=group)
                self._request_plan(f"override of {group} cleared")
            return
        if group in self.asic_index and override.mode == "cap" and override.units_on is None:
            raise Rejected("schema", f"{group} is a miner group: a cap gives units_on")
        if group in self.gpu_index and override.mode == "cap" and override.power_cap_watts is None:
            raise Rejected("schema", f"{group} is a GPU group: a cap gives power_cap_watts")
        if (
            group in self.asic_index
            and (override.units_on or 0) > self.asic[self.asic_index[group]].units
        ):
            raise Rejected("out_of_range", f"{group} has fewer than {override.units_on} miners")
        self.state.overrides[group] = override
        _log.info(
            "override.set",
            group=group,
            mode=override.mode,
            until=override.until.isoformat(),
            by=override.by,
        )
        await self._send([self.setpoints.override_command(override)], plan="override")
        self._request_plan(f"override of {group}")

    # --- the guard -----------------------------------------------------------------------

    async def _guard_loop(self) -> None:
        while True:
            await self._guard_check.wait()
            self._guard_check.clear()
            await self.guard_once()

    def cap_watts(self, now: datetime) -> float:
        cap = self.settings.site.interconnect_watts - self.settings.site.margin_watts
        for event in self.state.active_events(now):
            cap = min(cap, event.max_site_watts)
        return cap

    async def guard_once(self) -> None:
        """Shed miners if the latest reading is over the cap; does nothing otherwise."""
        reading = self.state.site_watts(self.config.meters)
        if reading is None:
            return
        now = self.clock.now()
        cap = self.cap_watts(now)
        self.metrics.site_power.set(reading)
        self.metrics.site_limit.set(cap)
        tick = time.monotonic()
        self._shed_credit = [
            (t, w) for t, w in self._shed_credit if tick - t < self.config.guard_settle_s
        ]
        credit = sum(w for _, w in self._shed_credit)
        if reading - credit <= cap:
            return
        overridden = [self.asic_index[g] for g in self.state.overrides if g in self.asic_index]
        order = [i for i in shed_order(self.asic) if i not in overridden] + overridden
        after = shed(
            self.asic, self.units_on, reading_watts=reading - credit, cap_watts=cap, order=order
        )
        changed = np.flatnonzero(after != self.units_on)
        shed_watts = float(
            sum(
                (self.units_on[i] - after[i])
                * self.asic[i].watts_per_unit
                * self.asic[i].overhead_factor
                for i in changed
            )
        )
        self.guard_actions += 1
        self.metrics.guard_actions.inc()
        self.metrics.guard_shed_units.inc(int((self.units_on - after).sum()))
        reason = f"guard: site at {reading / 1e6:.3f} MW over its cap of {cap / 1e6:.3f} MW"
        _log.warning(
            "guard.shed",
            reading_watts=reading,
            cap_watts=cap,
            credit_watts=credit,
            groups=len(changed),
            shed_watts=shed_watts,
            shadow=self.config.shadow,
        )
        if not changed.size:
            return  # nothing left awake to shed
        self._shed_credit.append((tick, shed_watts))
        commands: list[Command] = [
            AsicCommand(
                self.asic[i].name,
                int(after[i]),
                self.setpoints.asic_watts_per_unit(int(i)),
                reason,
                f"guard-{self.guard_actions}",
            )
            for i in changed
        ]
        await self._send(commands, plan=f"guard-{self.guard_actions}")
        if self.config.replan_after_guard:
            self._request_plan("guard shed")

    # --- the planner ---------------------------------------------------------------------

    def _request_plan(self, reason: str) -> None:
        self._replan_reason = reason
        self._replan.set()

    async def _planner_loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.config.plan_interval_s / self.clock.speed):
                    await self._replan.wait()
            except TimeoutError:
                self._replan_reason = "interval"
            gap = self.config.replan_min_gap_s - (time.monotonic() - self._last_solve)
            if gap > 0:
                await asyncio.sleep(gap)
            reason, self._replan_reason = self._replan_reason, "interval"
            await self.plan_once(reason)

    async def plan_once(self, reason: str) -> Plan | None:
        """One planning cycle; None when in safe mode or without the inputs a plan needs."""
        now = self.clock.now()
        await self._account(now)
        # Requests made until here are answered by this plan, which reads the state from here.
        self._replan.clear()
        missing = "safe mode" if self.mode == "safe" else _missing(self.state)
        if missing:
            _log.info("plan.skipped", reason=reason, why=missing)
            return None
        hashprice, price = self.state.hashprice, self.state.price
        assert hashprice is not None and price is not None  # _missing checked both
        history = self.state.prices.settled(now)
        if history.size == 0:
            # Only the current interval is priced so far: its latest price is all there is.
            history = np.array([price.value])
        template, asic_rows, gpu_rows = self._planning_site(now)
        key = (
            tuple(sorted((o.group, o.mode, o.until) for o in self.state.overrides.values())),
            tuple((e.id, e.start, e.end, e.max_site_watts) for e in template.events),
        )
        if key != self._receding_key or self._receding is None:
            # Overrides and grid events change the problem itself: start a fresh horizon.
            self._receding = RecedingPlanner(
                Planner(template, horizon_s=self.config.horizon_s, options=template.options)
            )
            self._receding_key = key
        plant = PlantState(
            asic_units_on=tuple(int(self.units_on[i]) for i in asic_rows),
            gpu_curtailed_nodes=tuple(
                int(self.gpu_capped[i] + self.gpu_paused[i]) for i in gpu_rows
            ),
            gpu_curtailed_for_s=tuple(
                self._curtailed_for_s(self.gpu[i].name, now) for i in gpu_rows
            ),
        )
        market = MarketView(
            now=now,
            history_usd_per_mwh=history,
            interval_s=self.config.plan_interval_s,
            hashprice_usd_per_th_day=hashprice.value,
            day_ahead=self.state.day_ahead.window if self.state.day_ahead.until else None,
            events=template.events,
        )
        used = await self.recorder.call(self.ledger.used_node_hours, now)
        receding = self._receding
        started = time.perf_counter()
        decision = await asyncio.to_thread(
            receding.decide, plant, market, used, published_until=self.state.day_ahead.until
        )
        self._last_solve = time.monotonic()
        plan = decision.plan
        if decision.fresh:
            self.plans_made += 1
            self.metrics.plans.labels(plan.status.value).inc()
            self.metrics.plan_seconds.observe(time.perf_counter() - started)
        self.metrics.last_plan.set(now.timestamp())
        self.metrics.forecast_price.set(float(plan.problem.price_usd_per_mwh[decision.step]))
        self.last_plan = plan
        commands = self._plan_commands(plan, decision.step)
        plan_id = await self.recorder.call(
            self.ledger.record_plan,
            now,
            plan.status.value,
            f"{reason}; {decision.reason}",
            float(plan.outcome.profit_usd),
            {"solver": plan.solver, "gap": plan.gap, "step": decision.step, "note": plan.note},
        )
        label = f"plan-{plan_id}"
        commands = [replace(c, plan=label) for c in commands]
        commands = await self._send(commands, plan=label, plan_id=plan_id, planned=True)
        await self.recorder.durable()
        await self._publish_plan(plan, label, now, reason, decision.fresh)
        await self._publish_notices(plan, gpu_rows, label)
        _log.info(
            "plan.made",
            plan=label,
            reason=reason,
            decision=decision.reason,
            fresh=decision.fresh,
            status=plan.status.value,
            solve_s=round(plan.total_s, 3),
            profit_usd=round(float(plan.outcome.profit_usd), 2),
            price_usd_per_mwh=round(float(history[-1]), 2),
            asic_units_on=int(self.units_on.sum()),
            gpu_curtailed_nodes=int((self.gpu_capped + self.gpu_paused).sum()),
            changed=len(commands),
            curtailed_because=_reasons(plan, decision.step),
        )
        return plan

    def _planning_site(self, now: datetime) -> tuple[Problem, list[int], list[int]]:
        """The site as the planner may decide it: overridden groups are taken out, their
        forced draw taken off the limit and off every grid event's cap."""
        overrides = self.state.overrides
        asic_rows = [i for i, g in enumerate(self.asic) if g.name not in overrides]
        gpu_rows = [i for i, g in enumerate(self.gpu) if g.name not in overrides]
        forced = 0.0
        for override in overrides.values():
            command = self.setpoints.override_command(override)
            forced += self.setpoints.command_watts(command)
        site = self.site
        events = tuple(
            replace(e, max_site_watts=max(0.0, e.max_site_watts - forced))
            for e in self.state.upcoming_events(now)
        )
        limit = max(site.site_limit_watts - forced, site.site_margin_watts + 1.0)
        template = replace(
            site,
            start=now,
            asic_groups=tuple(self.asic[i] for i in asic_rows),
            gpu_groups=tuple(self.gpu[i] for i in gpu_rows),
            site_limit_watts=limit,
            events=events,
        )
        return template, asic_rows, gpu_rows

    def _plan_commands(self, plan: Plan, step: int) -> list[Command]:
        """The plan's setpoints for `step` that differ from what the groups were last told.
        Groups under an operator's override are left out."""
        held = self.state.overrides
        commands: list[Command] = []
        for asic in plan.asic_setpoints(step):
            command = AsicCommand(
                asic.group,
                asic.units_on,
                asic.watts_per_unit,
                asic.reason or "run: worth more than its power",
                "",
            )
            if asic.group not in held and self.setpoints.differs(command):
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
            if gpu.group not in held and self.setpoints.differs(gpu_command):
                commands.append(gpu_command)
        return commands

    # --- housekeeping and safe mode ------------------------------------------------------

    async def _housekeeping_loop(self) -> None:
        last_account = time.monotonic()
        last_prune = -float("inf")
        watchdog_s = systemd.watchdog_period_s()
        last_watchdog = -float("inf")
        while True:
            await self.housekeeping_once()
            tick = time.monotonic()
            if watchdog_s is not None and tick - last_watchdog >= watchdog_s:
                # From this loop, so that a loop stuck anywhere stops the pings.
                systemd.notify("WATCHDOG=1")
                last_watchdog = tick
            if tick - last_account >= 60.0 / self.clock.speed:
                await self._account(self.clock.now())
                last_account = tick
            if tick - last_prune >= 86_400.0 / self.clock.speed:
                cutoff = self.clock.now() - timedelta(days=self.config.ledger_keep_days)
                await self.recorder.call(self.ledger.prune, cutoff)
                last_prune = tick
            await self.clock.sleep(1.0)

    async def housekeeping_once(self) -> None:
        now = self.clock.now()
        self._money_metrics(now)
        state = self.state
        ages = {
            "meter": state.meter_age_s(self.config.meters, now),
            "price": state.age_s(state.price, now),
            "hashprice": state.age_s(state.hashprice, now),
        }
        for signal, age in ages.items():
            self.metrics.signal_age.labels(signal).set(age)
        if state.forecast_received is not None:
            self.metrics.signal_age.labels("forecast").set(
                (now - state.forecast_received).total_seconds()
            )
        limits = {
            "meter": self.config.meter_stale_after_s,
            "price": self.config.price_stale_after_s,
            "hashprice": self.config.hashprice_stale_after_s,
        }
        stale = tuple(s for s, age in ages.items() if age > limits[s])
        if stale and self.mode != "safe":
            await self._enter_safe_mode(stale, ages)
        elif stale != self.safe_reasons and self.mode == "safe" and stale:
            self.safe_reasons = stale
            await self._publish_mode()
        elif not stale and self.mode == "safe":
            await self._leave_safe_mode()
        ended, expired = state.drop_past(now)
        for override in expired:
            _log.info("override.expired", group=override.group, until=override.until.isoformat())
            # Clear the retained override so a restarted agent does not see it again.
            await self.link.publish(self.topics.override_prefix + override.group, b"")
        if ended or expired:
            self._request_plan("override expired" if expired else "grid event ended")
        if state.active_events(now):
            self._guard_check.set()  # an announced event's cap applies from its start

    async def _enter_safe_mode(self, stale: tuple[str, ...], ages: dict[str, float]) -> None:
        self.mode = "safe"
        self.safe_reasons = stale
        self.metrics.set_mode("safe")
        _log.warning(
            "mode.safe",
            stale=list(stale),
            ages_s={k: round(v, 1) for k, v in ages.items()},
            asic_share=self.config.safe_asic_share,
        )
        await self._publish_mode()
        budget = self.config.safe_asic_share * (
            self.settings.site.interconnect_watts - self.settings.site.margin_watts
        )
        commands: list[Command] = []
        # Most efficient first: the miners worth the most per watt keep running.
        for i in reversed(shed_order(self.asic)):
            group = self.asic[i]
            unit_watts = group.watts_per_unit * group.overhead_factor
            keep = min(int(self.units_on[i]), max(0, int(budget // unit_watts)))
            budget -= keep * unit_watts
            if self.asic[i].name in self.state.overrides:
                continue
            if keep != self.units_on[i]:
                commands.append(
                    AsicCommand(
                        group.name,
                        keep,
                        self.setpoints.asic_watts_per_unit(i),
                        f"safe mode: {', '.join(stale)} stale",
                        "safe",
                    )
                )
        await self._send(commands, plan="safe")

    async def _leave_safe_mode(self) -> None:
        self.mode = "normal"
        self.safe_reasons = ()
        self.metrics.set_mode("shadow" if self.config.shadow else "normal")
        _log.info("mode.normal")
        await self._publish_mode()
        self._receding = None
        self._request_plan("fresh data after safe mode")

    # --- output --------------------------------------------------------------------------

    async def _send(
        self,
        commands: Sequence[Command],
        *,
        plan: str,
        plan_id: int | None = None,
        planned: bool = False,
    ) -> list[Command]:
        """Remember and carry out `commands` (in shadow mode: remember only), account the
        allowance up to now first, and write them to the ledger. A plan's commands (`planned`)
        leave out groups under an operator's override, also one that arrived while the plan
        was made: checked here, after the last wait, so the override's own command is never
        followed by an older plan's. Returns the commands sent."""
        now = self.clock.now()
        if any(isinstance(c, GpuCommand) for c in commands):
            await self._account(now)
        if planned:
            commands = [c for c in commands if c.group not in self.state.overrides]
        if not commands:
            return []
        for command in commands:
            self._remember(command)
        if self.config.shadow:
            outcomes = [Outcome(c.group, True, "shadow: not sent") for c in commands]
        else:
            outcomes = await self.actuator.apply(commands)
        # Carried out first, then written down: a shed must not wait for an fsync (a few ms),
        # and the guard does not wait for the write at all. A crash in between leaves the
        # ledger a command behind; the restarted agent republishes that, and its guard sheds
        # again at the first reading over the cap. Plans wait for their records.
        records = [
            CommandRecord(
                "asic" if isinstance(c, AsicCommand) else "gpu",
                c.group,
                json.loads(encode(c)),
                c.reason,
            )
            for c in commands
        ]
        self.recorder.write(self.ledger.record_commands, now, plan_id, records)
        for command, outcome in zip(commands, outcomes, strict=True):
            kind = "asic" if isinstance(command, AsicCommand) else "gpu"
            self.metrics.commands.labels(kind, "ok" if outcome.ok else "failed").inc()
            for fault in outcome.faults:
                self.metrics.device_faults.labels(command.group, fault).inc()
            if not outcome.ok:
                self.metrics.command_failures.labels(kind, command.group).inc()
                _log.warning(
                    "command.failed", group=outcome.group, detail=outcome.detail, plan=plan
                )
            if (
                isinstance(command, AsicCommand)
                and outcome.units_on is not None
                and outcome.units_on != command.units_on
            ):
                # The plant is not where it was told to be: plan from where it is.
                self.units_on[self.asic_index[command.group]] = outcome.units_on
                self._request_plan(f"{command.group} did not follow its command")
        self._power_metrics(commands)
        await self._track_interruptions(commands, now)
        return list(commands)

    async def _resend(self, groups: tuple[str, ...]) -> None:
        """Send `groups` their current setpoints: a device that has just come up
        (agent.daemon.devices) gets the latest command decided for each, also while it was down."""
        wanted = set(groups)
        current = [c for c in self.commanded.values() if c.group in wanted]
        await self._send(current, plan="device-up")

    def _remember(self, command: Command) -> None:
        self.setpoints.remember(command)
        if isinstance(command, AsicCommand):
            self.metrics.asic_units_on.labels(command.group).set(command.units_on)
        else:
            nodes = command.capped_nodes + command.paused_nodes
            self.metrics.gpu_curtailed_nodes.labels(command.group).set(nodes)
            self.metrics.gpu_power_cap.labels(command.group).set(command.power_cap_watts)

    def _via_mqtt(self, group: str) -> bool:
        actuator = self.actuator
        if isinstance(actuator, RoutingActuator):
            return actuator.route(group) is self.mqtt_actuator
        return isinstance(actuator, MqttActuator)

    def _known(self, command: Command) -> bool:
        index = self.asic_index if isinstance(command, AsicCommand) else self.gpu_index
        return command.group in index

    async def _track_interruptions(self, commands: Sequence[Command], now: datetime) -> None:
        for command in commands:
            if not isinstance(command, GpuCommand):
                continue
            nodes = command.capped_nodes + command.paused_nodes
            running = self.interruptions.get(command.group)
            if nodes and running is None:
                contract = self.gpu[self.gpu_index[command.group]].contract
                event_id = await self.recorder.call(
                    self.ledger.open_interruption,
                    contract,
                    command.group,
                    now,
                    nodes,
                    command.reason,
                )
                self.interruptions[command.group] = (event_id, now)
            elif not nodes and running is not None:
                await self.recorder.call(self.ledger.close_interruption, running[0], now)
                del self.interruptions[command.group]

    def _curtailed_for_s(self, group: str, now: datetime) -> float:
        running = self.interruptions.get(group)
        return 0.0 if running is None else max(0.0, (now - running[1]).total_seconds())

    async def _account(self, now: datetime) -> None:
        """Charge each contract's allowance with the node-hours curtailed since the last
        accounting, split at the month's end when the interval crosses it."""
        last_text = await self.recorder.call(self.ledger.get_meta, "allowance_accounted_until")
        await self.recorder.call(self.ledger.set_meta, "allowance_accounted_until", now.isoformat())
        if last_text is None:
            return
        last = datetime.fromisoformat(last_text)
        if now <= last:
            return
        curtailed: dict[str, int] = {}
        for i, group in enumerate(self.gpu):
            count = int(self.gpu_capped[i] + self.gpu_paused[i])
            if count:
                curtailed[group.contract] = curtailed.get(group.contract, 0) + count
        start = last
        while start < now:
            end = min(now, month_end(start))
            hours = (end - start).total_seconds() / 3_600.0
            for name, count in curtailed.items():
                await self.recorder.call(self.ledger.add_allowance, name, start, count * hours)
            start = end
        used = await self.recorder.call(self.ledger.used_node_hours, now)
        for contract in self.site.contracts:
            spent = used.get(contract.name, 0.0)
            left = max(0.0, contract.allowance_node_hours - spent)
            self.metrics.allowance_used.labels(contract.name).set(spent * SECONDS_PER_HOUR)
            self.metrics.allowance_left.labels(contract.name).set(left * SECONDS_PER_HOUR)

    async def _publish_mode(self) -> None:
        mode = "safe" if self.mode == "safe" else ("shadow" if self.config.shadow else "normal")
        payload = {
            "mode": mode,
            "stale": list(self.safe_reasons),
            "at": self.clock.now().isoformat(),
        }
        await self.link.publish(self.topics.mode, json.dumps(payload).encode())

    async def _publish_plan(
        self, plan: Plan, label: str, now: datetime, reason: str, fresh: bool
    ) -> None:
        summary = {
            "plan": label,
            "at": now.isoformat(),
            "reason": reason,
            "fresh": fresh,
            "status": plan.status.value,
            "solver": plan.solver,
            "solve_s": round(plan.total_s, 3),
            "profit_usd": round(float(plan.outcome.profit_usd), 2),
            "asic_units_on": int(self.units_on.sum()),
            "gpu_capped_nodes": int(self.gpu_capped.sum()),
            "gpu_paused_nodes": int(self.gpu_paused.sum()),
            "shadow": self.config.shadow,
        }
        await self.link.publish(self.topics.plan, json.dumps(summary).encode())

    async def _publish_notices(self, plan: Plan, gpu_rows: list[int], label: str) -> None:
        """Tell each contract with a notice period when the plan next pauses its nodes, each
        time that changes (retained: a customer's scheduler that subscribes late still sees it)."""
        for contract in self.site.contracts:
            if contract.notice_s <= 0:
                continue
            rows = [k for k, i in enumerate(gpu_rows) if self.gpu[i].contract == contract.name]
            paused = plan.schedule.gpu_paused_nodes[rows].sum(axis=0) if rows else np.zeros(1)
            upcoming = np.flatnonzero(paused > 0)
            first = int(upcoming[0]) if upcoming.size else None
            start = plan.problem.step_start(first).isoformat() if first is not None else None
            nodes = int(paused[first]) if first is not None else 0
            if self._published_notices.get(contract.name) == (start, nodes):
                continue
            payload = {
                "plan": label,
                "start": start,
                "paused_nodes": nodes,
                "notice_s": contract.notice_s,
            }
            topic = self.topics.notice.format(contract=contract.name)
            if await self.link.publish(topic, json.dumps(payload).encode()):
                self._published_notices[contract.name] = (start, nodes)

    # --- metrics -------------------------------------------------------------------------

    def _static_metrics(self) -> None:
        m = self.metrics
        m.interconnect.set(self.settings.site.interconnect_watts)
        m.site_limit.set(self.cap_watts(self.clock.now()))
        m.set_mode("shadow" if self.config.shadow else "normal")
        for signal, after in (
            ("meter", self.config.meter_stale_after_s),
            ("price", self.config.price_stale_after_s),
            ("hashprice", self.config.hashprice_stale_after_s),
        ):
            m.signal_stale_after.labels(signal).set(after)
        for contract in self.site.contracts:
            total_s = contract.allowance_node_hours * SECONDS_PER_HOUR  # base units
            m.allowance_total.labels(contract.name).set(total_s)
            m.allowance_used.labels(contract.name).set(0.0)
            m.allowance_left.labels(contract.name).set(total_s)
        for group in self.asic:
            m.asic_units_on.labels(group.name).set(group.units)
        for name, kind in actuator_kinds(self.settings).items():
            m.device_up.labels(name, kind).set(1)  # until its device fails to start
        for gpu in self.gpu:
            m.gpu_curtailed_nodes.labels(gpu.name).set(0)
            m.gpu_power_cap.labels(gpu.name).set(gpu.cap_levels[0].watts_per_gpu)
        self._power_metrics()

    def _breakeven_metrics(self, hashprice: float) -> None:
        for group in self.asic:
            self.metrics.breakeven.labels(group.model).set(
                breakeven_usd_per_mwh(
                    hashprice,
                    group.joules_per_th,
                    pool_fee=self.site.pool_fee,
                    overhead_factor=group.overhead_factor,
                )
            )

    def _power_metrics(self, commands: Sequence[Command] | None = None) -> None:
        """Commanded draw per group and class, and what is held off, by reason: for the groups
        of `commands` (all, when None), the class totals kept by difference, so a shed of a
        few groups on a site of a thousand costs a few updates, not a thousand."""
        m = self.metrics
        if commands is None:
            changed = self.setpoints.power()
        else:
            changed = [
                self.setpoints.asic_power(self.asic_index[c.group])
                if isinstance(c, AsicCommand)
                else self.setpoints.gpu_power(self.gpu_index[c.group])
                for c in commands
            ]
        touched: set[tuple[str, str]] = set()
        for group in changed:
            before = self._group_power.get(group.name)
            if before is not None:
                self._load_watts[before.load] -= before.watts
                key = (before.load, curtailment_reason(before.reason))
                self._held_watts[key] = self._held_watts.get(key, 0.0) - before.held_watts
                touched.add(key)
            self._group_power[group.name] = group
            self._load_watts[group.load] += group.watts
            key = (group.load, curtailment_reason(group.reason))
            self._held_watts[key] = self._held_watts.get(key, 0.0) + group.held_watts
            touched.add(key)
            m.group_power.labels(group.name, group.load).set(group.watts)
        for load, watts in self._load_watts.items():
            m.load_power.labels(load).set(watts)
        for load, reason in touched:
            m.curtailed_power.labels(load, reason).set(
                max(0.0, self._held_watts.get((load, reason), 0.0))
            )

    def _money_metrics(self, now: datetime) -> None:
        """Energy, its cost and the revenue since the last call, from the latest meter
        reading, price and hashprice and the commanded setpoints."""
        since, self._money_at = self._money_at, now
        if since is None or now <= since:
            return
        seconds = (now - since).total_seconds()
        m = self.metrics
        site = self.state.site_watts(self.config.meters)
        if site is not None:
            m.energy.inc(site * seconds)
            if self.state.price is not None:
                usd = site * seconds / WATT_SECONDS_PER_MWH * self.state.price.value
                # Counters only rise: at a negative price the site is paid, counted apart.
                (m.energy_cost if usd >= 0 else m.energy_credit).inc(abs(usd))
        if self.state.hashprice is not None:
            ths = sum(float(self.units_on[i]) * g.ths_per_unit for i, g in enumerate(self.asic))
            m.hash_revenue.inc(
                ths
                * self.state.hashprice.value
                * (1 - self.site.pool_fee)
                * seconds
                / SECONDS_PER_DAY
            )
        billed_usd = 0.0
        for i, gpu in enumerate(self.gpu):
            contract = self.site.contract(gpu.contract)
            curtailed = int(self.gpu_capped[i] + self.gpu_paused[i])
            nodes = gpu.nodes if contract.billed_when_curtailed else gpu.nodes - curtailed
            billed_usd += nodes * gpu.gpus_per_node * contract.usd_per_gpu_hour
        m.ai_revenue.inc(billed_usd * seconds / SECONDS_PER_HOUR)

    # --- helpers -------------------------------------------------------------------------


def _missing(state: SiteState) -> str:
    """What a plan needs and the state lacks, or empty."""
    if state.hashprice is None:
        return "no hashprice yet"
    if state.price is None:
        return "no real-time price yet"
    return ""


def _reasons(plan: Plan, step: int, most: int = 4) -> dict[str, int]:
    """Why groups are curtailed in `step`: each distinct reason and how many groups it holds
    (the `most` commonest, so the line stays one line on a site of a thousand groups)."""
    counts: dict[str, int] = {}
    texts = [a.reason for a in plan.asic_setpoints(step)]
    texts += [g.reason for g in plan.gpu_setpoints(step)]
    for text in texts:
        if text:
            counts[text] = counts.get(text, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1])[:most])
