"""`gridpilot run`: the site agent as a long-running asyncio service, composed of its parts.

One root `asyncio.TaskGroup` holds the named tasks:

- `mqtt`: the broker session (adapters.mqtt); every input message is decoded at the edge and
  folded into the `SiteState` (agent.daemon.inputs); a bad one is counted by topic and reason
  and dropped. On every connect the status, the mode and the gateway's commands are published
  again.
- `guard`: woken by each meter reading and grid event; if the site is over its cap it puts
  miners to sleep at once along the merit order (agent.guard), without the solver, then asks
  for a new plan (agent.daemon.guard_loop).
- `planner`: every `plan_interval_s`, and at once on a new grid event, forecast or override,
  builds the plan through the same `RecedingPlanner` the replay uses, in a worker thread, and
  sends the setpoints of the step that covers now (agent.daemon.cycle).
- `housekeeping`: once a second: signal ages and safe mode, expired overrides and ended
  events, the SLA ledger's allowance accounting (agent.daemon.housekeeping).
- `ledger`: the ledger's writer, which writes command records in order off the event loop
  (agent.daemon.recorder).
- `metrics`: the Prometheus endpoint (prometheus_client's server, agent.daemon.metrics).
- `devices`: retries each device actuator that could not start (agent.daemon.devices)
  until it is up.
- `reserves`: carries out scheduled reserve deployments, judges each at its response time
  and publishes the obligation and availability every second (agent.daemon.reserves).
- `peaks`: calibrates the 4CP model once, in a worker thread, as soon as any system load
  is known (agent.daemon.programs), and ends.

Safe mode (a stale meter, price or hashprice; agent.daemon.safemode): no planning; GPUs stay as
they are; ASICs are held to `safe_asic_share` of the limit less margin, most efficient first,
never woken; the guard keeps running while the meter is fresh. It is announced on the mode
topic and in the log, and left as soon as every feed is fresh again.

Shadow mode decides and publishes plans but commands nothing (the guard only says what it
would shed).

The parts, each with its dependencies passed in: `Inputs` (topics to state), `Overrides`,
`GuardLoop`, `PlanningCycle`, `SafeMode`, `Housekeeping`, `Commands` (out to the actuator,
the ledger and the setpoints), `Allowance` (interruptions and allowance against the ledger),
`Publisher` (status, mode, plan, notices, the `plan.made` line), `PlantGauges` (power and
money metrics), and for the grid programs `GridPrograms` (4CP, awards: what the planner sees),
`DayAheadOffers` and `Reserves` (deployments). They share the `SiteState`, the `Setpoints`,
the `Mode` and the `Triggers` that wake the two decision loops.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import structlog

from gridpilot.adapters.actuation import Actuator, MqttActuator
from gridpilot.agent.daemon import devices, systemd
from gridpilot.agent.daemon.actuators import build_actuator
from gridpilot.agent.daemon.allowance import Allowance
from gridpilot.agent.daemon.clock import Clock
from gridpilot.agent.daemon.commands import Commands
from gridpilot.agent.daemon.cycle import PlanningCycle
from gridpilot.agent.daemon.gauges import PlantGauges
from gridpilot.agent.daemon.guard_loop import GuardLoop
from gridpilot.agent.daemon.housekeeping import Housekeeping
from gridpilot.agent.daemon.inputs import Inputs
from gridpilot.agent.daemon.ledger import Ledger, LedgerError
from gridpilot.agent.daemon.link import SiteLink
from gridpilot.agent.daemon.metrics import Metrics, serve_metrics
from gridpilot.agent.daemon.mode import Mode
from gridpilot.agent.daemon.offers import DayAheadOffers
from gridpilot.agent.daemon.overrides import Overrides
from gridpilot.agent.daemon.programs import GridPrograms
from gridpilot.agent.daemon.publisher import Publisher
from gridpilot.agent.daemon.recorder import Recorder
from gridpilot.agent.daemon.reserves import Reserves
from gridpilot.agent.daemon.safemode import SafeMode
from gridpilot.agent.daemon.setpoints import Setpoints
from gridpilot.agent.daemon.state import SiteState
from gridpilot.agent.daemon.topics import Topics, broker_options
from gridpilot.agent.daemon.triggers import Triggers
from gridpilot.agent.peaks import PeakModel
from gridpilot.agent.settings import Settings
from gridpilot.agent.site import site_problem
from gridpilot.optimizer.problem import Problem, SolveOptions

_log = structlog.get_logger("gridpilot.daemon")


class _Stop(Exception):  # noqa: N818  # a signal to the task group, not an error
    """Raised inside the task group to end it cleanly."""


class Daemon:
    """The agent. `await run(stop)` serves until `stop` is set.

    What the parts share is built here: the site (`site`), what each group was last told
    (`setpoints`), the inputs' latest values (`state`), the mode (`mode`), the loops' wake-ups
    (`triggers`), the broker link (`link`) and the ledger's recorder (`recorder`).
    `peak_model`: the 4CP model, when one is already calibrated (else learned at start)."""

    def __init__(
        self,
        settings: Settings,
        *,
        ledger: Ledger,
        clock: Clock,
        metrics: Metrics,
        actuator: Actuator | None = None,
        peak_model: PeakModel | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.agent
        self.ledger = ledger
        self.clock = clock
        self.metrics = metrics
        self.topics = Topics.of(settings)
        now = clock.now()
        self.site = site_template(settings, now)
        self.setpoints = Setpoints(self.site.asic_groups, self.site.gpu_groups)
        self.state = SiteState(started=now, interval_s=self.config.plan_interval_s)
        self.mode = Mode()
        self.triggers = Triggers()
        self.recorder = Recorder(
            ledger, on_failure=lambda action: metrics.ledger_failures.labels(action).inc()
        )
        self.link = SiteLink(
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
        self.metrics_port: asyncio.Future[int] | None = None
        self._outputs()
        self.programs, self.offers, self.reserves = _grid_programs(self, peak_model)
        self._loops()

    def _outputs(self) -> None:
        """The parts that carry decisions out and report them."""
        self.publisher = Publisher(
            self.link.publish,
            topics=self.topics,
            site=self.site,
            setpoints=self.setpoints,
            mode=self.mode,
            clock=self.clock,
            shadow=self.config.shadow,
        )
        self.gauges = PlantGauges(
            self.settings,
            site=self.site,
            setpoints=self.setpoints,
            state=self.state,
            metrics=self.metrics,
        )
        self.allowance = Allowance(
            site=self.site, setpoints=self.setpoints, recorder=self.recorder, metrics=self.metrics
        )
        self.commands = Commands(
            setpoints=self.setpoints,
            actuator=self.actuator,
            gateway=self.mqtt_actuator,
            recorder=self.recorder,
            allowance=self.allowance,
            gauges=self.gauges,
            metrics=self.metrics,
            state=self.state,
            triggers=self.triggers,
            clock=self.clock,
            shadow=self.config.shadow,
            mode=self.mode,
        )

    def _loops(self) -> None:
        """The parts that decide: on inputs, on the guard's wake-up, on the planner's."""
        settings, state, triggers = self.settings, self.state, self.triggers
        self.overrides = Overrides(
            state=state,
            setpoints=self.setpoints,
            commands=self.commands,
            publisher=self.publisher,
            triggers=triggers,
        )
        self.inputs = Inputs(
            settings,
            topics=self.topics,
            state=state,
            clock=self.clock,
            metrics=self.metrics,
            triggers=triggers,
            gauges=self.gauges,
            on_override=self.overrides.apply,
            handlers={**self.programs.handlers(), **self.reserves.handlers()},
        )
        self.guard = GuardLoop(
            settings,
            state=state,
            setpoints=self.setpoints,
            commands=self.commands,
            triggers=triggers,
            metrics=self.metrics,
            clock=self.clock,
        )
        self.cycle = PlanningCycle(
            settings,
            site=self.site,
            state=state,
            setpoints=self.setpoints,
            mode=self.mode,
            triggers=triggers,
            commands=self.commands,
            allowance=self.allowance,
            publisher=self.publisher,
            recorder=self.recorder,
            metrics=self.metrics,
            clock=self.clock,
            programs=self.programs,
            offers=self.offers,
        )
        self._upkeep()

    def _upkeep(self) -> None:
        """Safe mode and the once-a-second housekeeping that switches it."""
        self.safe_mode = SafeMode(
            self.settings,
            mode=self.mode,
            state=self.state,
            setpoints=self.setpoints,
            commands=self.commands,
            announce=self.publisher.mode,
            replan_afresh=self.cycle.start_afresh,
            metrics=self.metrics,
        )
        self.housekeeping = Housekeeping(
            self.settings,
            state=self.state,
            safe_mode=self.safe_mode,
            overrides=self.overrides,
            allowance=self.allowance,
            gauges=self.gauges,
            triggers=self.triggers,
            recorder=self.recorder,
            metrics=self.metrics,
            clock=self.clock,
        )

    # --- running -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then say goodbye: status `offline`, allowance accounted.
        Devices keep their last commanded state (GPUs their defaults, where the site asks for
        them on exit). A part that crashes ends the run with its error, after the same
        cleanup: the devices closed, the queued ledger writes written, the allowance
        accounted."""
        await self.commands.restore()
        for part in (self.programs, self.offers, self.reserves):
            await part.restore()
        start = getattr(self.actuator, "start", None)
        if start is not None:
            await start()
        self.metrics_port = asyncio.get_running_loop().create_future()
        _log.info(
            "agent.start",
            site=self.settings.site.name,
            asic_groups=len(self.site.asic_groups),
            gpu_groups=len(self.site.gpu_groups),
            shadow=self.config.shadow,
            broker=f"{self.settings.mqtt.host}:{self.settings.mqtt.port}",
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                self._start_tasks(tasks, stop, self.metrics_port)
                systemd.notify("READY=1")
        except* _Stop:
            pass
        except* Exception as crash:
            _log.error("agent.crashed", error=repr(crash.exceptions[0]), exc_info=crash)
            await _clean_up(self)
            raise
        await _clean_up(self)
        _log.info("agent.stop", plans=self.cycle.plans_made, guard_actions=self.guard.actions)

    def _start_tasks(
        self, tasks: asyncio.TaskGroup, stop: asyncio.Event, port: asyncio.Future[int]
    ) -> None:
        config = self.config
        tasks.create_task(self.link.run(), name="mqtt")
        tasks.create_task(self.guard.run(), name="guard")
        tasks.create_task(self.cycle.run(), name="planner")
        tasks.create_task(self.housekeeping.run(), name="housekeeping")
        tasks.create_task(self.recorder.run(), name="ledger")
        tasks.create_task(self.commands.run(), name="devices-out")
        tasks.create_task(
            serve_metrics(self.metrics.registry, config.metrics_host, config.metrics_port, port),
            name="metrics",
        )
        tasks.create_task(devices.retry_down(self.actuator), name="devices")
        tasks.create_task(self.reserves.run(), name="reserves")
        tasks.create_task(self.programs.calibrate(), name="peaks")
        tasks.create_task(self._until(stop), name="stop")

    async def _until(self, stop: asyncio.Event) -> None:
        await stop.wait()
        systemd.notify("STOPPING=1")
        await self.publisher.offline()
        raise _Stop

    # --- the broker link's handlers --------------------------------------------------------

    async def _on_message(self, topic: str, payload: bytes) -> None:
        await self.inputs.on_message(topic, payload)

    async def _on_connect(self) -> None:
        await self.publisher.connected()
        await self.commands.republish()
        _log.info(
            "mqtt.connected",
            connects=self.link.connects,
            republished=len(self.setpoints.commanded),
        )

    def _on_link_state(self, connected: bool) -> None:
        self.metrics.mqtt_connected.set(1 if connected else 0)
        if connected:
            if self.link.connects > 1:
                self.metrics.mqtt_reconnects.inc()
        else:
            _log.warning("mqtt.disconnected", error=self.link.last_error)

    async def _resend(self, groups: tuple[str, ...]) -> None:
        await self.commands.resend(groups)


def _grid_programs(
    daemon: Daemon, peak_model: PeakModel | None
) -> tuple[GridPrograms, DayAheadOffers, Reserves]:
    """The grid programs' parts over what `daemon` shares: what the planner sees of them
    (4CP, awards), the day-ahead offer, and the deployments."""
    programs = GridPrograms(
        daemon.settings,
        site=daemon.site,
        state=daemon.state,
        recorder=daemon.recorder,
        metrics=daemon.metrics,
        triggers=daemon.triggers,
        clock=daemon.clock,
        peak_model=peak_model,
    )
    offers = DayAheadOffers(
        site=daemon.site,
        programs=programs,
        state=daemon.state,
        recorder=daemon.recorder,
        publish=daemon.link.publish,
        topic=daemon.topics.offer,
    )
    reserves = Reserves(
        daemon.settings,
        site=daemon.site,
        state=daemon.state,
        setpoints=daemon.setpoints,
        commands=daemon.commands,
        triggers=daemon.triggers,
        recorder=daemon.recorder,
        metrics=daemon.metrics,
        clock=daemon.clock,
        topics=daemon.topics,
        publish=daemon.link.publish_fleeting,
    )
    return programs, offers, reserves


def site_template(settings: Settings, now: datetime) -> Problem:
    """The site as a problem template: groups, contracts and limits (its prices are the
    planner's to fill in)."""
    return site_problem(
        settings,
        start=now,
        step_s=(settings.agent.plan_interval_s,),
        price_usd_per_mwh=(0.0,),
        hashprice_usd_per_th_day=0.0,
        options=SolveOptions(time_limit_s=settings.agent.solve_time_limit_s),
    )


async def _clean_up(daemon: Daemon) -> None:
    """Close the devices, write what the ledger still has queued, account the allowance;
    each step is tried whatever the one before it did."""
    close = getattr(daemon.actuator, "close", None)
    try:
        await daemon.commands.drain()
        if close is not None:
            await close()
    except Exception:  # a device library's own failure: the ledger must still be written
        _log.exception("devices.close_failed")
    daemon.recorder.flush()
    try:
        await daemon.allowance.account(daemon.clock.now())
    except LedgerError:
        _log.exception("allowance.account_failed")
