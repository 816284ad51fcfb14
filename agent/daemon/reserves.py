"""Reserve deployments, carried out by the agent itself, without the solver, within the
product's response time (agent.programs.RESPONSE_S: RRS half a second, ECRS ten minutes,
NSPIN thirty).

On `as/deploy` (`{"id", "product", "mw", "start"}`, from the site's QSE), or when the grid's
frequency on `grid/frequency` reads at or below 59.7 Hz while the site holds Responsive
Reserve (what an under-frequency relay does: the whole RRS award of the hour is dropped), the
qualified miners that cover the deployed MW are put to sleep at once, least efficient first,
each miner for one product, and held asleep until the deployment is recalled (`as/recall`,
`{"id"}`; a frequency deployment's id starts with `ufr-`, and `{"id": "ufr"}` recalls them
all): the planning cycle may not wake them (they are locked asleep in its problem, and a plan
made before the deployment is cut to it on its way out), the guard and safe mode never wake a
miner. On the recall the planner plans again and wakes them as it sees fit.

Each deployment is judged at its response time: met if the commands went out in time, the
miners the devices say went to sleep drew at least the deployed MW (less 5 %), and, where
every site meter has reported since, the site's draw fell by as much from the reading before
the deployment; otherwise `reserve.failed` with why (short, late, meter), counted per product
and reason. The log says `reserve.deployed` and `reserve.recalled`; each deployment is in the
ledger, so a restart keeps holding what is not recalled.

Every second `as/obligation` (the MW awarded for the hour now and the MW deployed, per
product, and the deployments holding) and `as/available` (the draw of the awake qualified
miners per product) go out at QoS 0, not retained: they are stale a second later.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog

from gridpilot.adapters.actuation import AsicCommand, Publish
from gridpilot.adapters.payloads import (
    Deploy,
    Rejected,
    decode_deploy,
    decode_frequency,
    decode_recall,
)
from gridpilot.agent.daemon.clock import Clock
from gridpilot.agent.daemon.commands import Sender
from gridpilot.agent.daemon.inputs import InputHandler
from gridpilot.agent.daemon.ledger import DeploymentRecord
from gridpilot.agent.daemon.metrics import RESERVE_FAILURES, Metrics
from gridpilot.agent.daemon.obligations import PUBLISH_EVERY_S, Obligations
from gridpilot.agent.daemon.program_state import Hold
from gridpilot.agent.daemon.recorder import Recorder
from gridpilot.agent.daemon.setpoints import IntArray, Setpoints
from gridpilot.agent.daemon.state import SiteState
from gridpilot.agent.daemon.topics import Topics
from gridpilot.agent.daemon.triggers import Triggers
from gridpilot.agent.guard import shed_order
from gridpilot.agent.programs import RESPONSE_S, qualified_mw
from gridpilot.agent.settings import Settings
from gridpilot.optimizer.problem import Problem

_log = structlog.get_logger("gridpilot.daemon")

# ERCOT's under-frequency relay setting for Load Resources carrying Responsive Reserve
# (docs/domain.md, "Reserves").
UNDER_FREQUENCY_HZ = 59.7
FREQUENCY_ID = "ufr"  # the prefix of a frequency deployment's id, and the recall of all of them
# A deployment is met within this share of its MW (the replay's rule, agent.replay.programs).
DELIVERY_TOLERANCE = 0.05
# Deployment ids seen are remembered this long: a repeated instruction (a retained message
# delivered again after a restart) is not carried out twice.
REMEMBER_IDS = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class _Check:
    """What a deployment is judged on at `deadline`."""

    hold: Hold
    deadline: datetime
    sent: datetime  # when its commands had gone out
    late: bool
    dropped_watts: float  # what the miners the devices say went to sleep drew
    baseline_watts: float | None  # the site's draw before, where the meters gave one


class Reserves:
    """Carries out, holds and recalls deployments (`on_deploy`, `on_frequency`,
    `on_recall`), judges them, and reports the site's obligation and availability (`run`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        site: Problem,
        state: SiteState,
        setpoints: Setpoints,
        commands: Sender,
        triggers: Triggers,
        recorder: Recorder,
        metrics: Metrics,
        clock: Clock,
        topics: Topics,
        publish: Publish,
    ) -> None:
        self._meters = settings.agent.meters
        self._max_bytes = settings.mqtt.max_payload_bytes
        self._state = state
        self._programs = state.programs
        self._setpoints = setpoints
        self._commands = commands
        self._triggers = triggers
        self._recorder = recorder
        self._metrics = metrics
        self._clock = clock
        self.products = tuple(p for p in RESPONSE_S if p in qualified_mw(site))
        self._pending: dict[str, tuple[Deploy, str]] = {}  # id -> (instruction, source)
        self._checks: list[_Check] = []
        self._seen: dict[str, datetime] = {}  # deployment id -> when it was carried out
        self._wake = asyncio.Event()
        self.obligations = Obligations(
            self.products,
            state=state,
            setpoints=setpoints,
            metrics=metrics,
            topics=topics,
            publish=publish,
        )
        for product in self.products:
            metrics.reserve_deployments.labels(product)
            for reason in RESERVE_FAILURES:
                metrics.reserve_failures.labels(product, reason)

    # --- inputs ----------------------------------------------------------------------------

    def handlers(self) -> dict[str, InputHandler]:
        """Its inputs by kind (`Topics.programs`), for the inputs part."""
        return {"deploy": self.on_deploy, "recall": self.on_recall, "frequency": self.on_frequency}

    async def on_deploy(self, payload: bytes, now: datetime) -> None:
        instruction = decode_deploy(payload, received=now, max_bytes=self._max_bytes)
        if instruction.product not in self.products:
            raise Rejected(
                "unknown_name",
                f"product {instruction.product}: no group of the site is qualified",
            )
        if instruction.id in self._seen or instruction.id in self._pending:
            _log.info("reserve.repeated", deployment=instruction.id)
            return
        if instruction.start > now:
            self._pending[instruction.id] = (instruction, "qse")
            self._wake.set()
            _log.info(
                "reserve.scheduled", deployment=instruction.id, start=instruction.start.isoformat()
            )
            return
        await self._carry_out(instruction, "qse")

    async def on_frequency(self, payload: bytes, now: datetime) -> None:
        """A frequency reading; at or below `UNDER_FREQUENCY_HZ`, the hour's RRS award not yet
        deployed is dropped, as an under-frequency relay would."""
        reading = decode_frequency(payload, received=now, max_bytes=self._max_bytes)
        self._programs.frequency_hz = reading.value
        self._metrics.grid_frequency.set(reading.value)
        if reading.value > UNDER_FREQUENCY_HZ or "RRS" not in self.products:
            return
        if any(h.source == "frequency" for h in self._programs.holds.values()):
            return  # already tripped: held until recalled
        awarded = float(self._programs.awards.window("RRS", now, 1, 3_600.0)[0])
        mw = awarded - self._programs.deployed_mw("RRS")
        if mw <= 0:
            _log.info("reserve.under_frequency", hz=reading.value, rrs_mw=awarded)
            return
        deployment = f"{FREQUENCY_ID}-{now.strftime('%Y%m%dT%H%M%S.%fZ')}"
        await self._carry_out(Deploy(deployment, "RRS", mw, now), "frequency")

    async def on_recall(self, payload: bytes, now: datetime) -> None:
        recall = decode_recall(payload, received=now, max_bytes=self._max_bytes)
        holds = self._programs.holds
        ids = [
            i
            for i, h in holds.items()
            if i == recall.id or (recall.id == FREQUENCY_ID and h.source == "frequency")
        ]
        if recall.id in self._pending:
            del self._pending[recall.id]
            _log.info("reserve.recalled", deployment=recall.id, held_s=0.0)
            return
        if not ids:
            raise Rejected("unknown_name", f"no deployment {recall.id!r} is holding")
        for deployment in ids:
            hold = self._programs.release(deployment)
            self._recorder.write(self._recorder.ledger.close_deployment, deployment, now)
            _log.info(
                "reserve.recalled",
                deployment=deployment,
                product=hold.product,
                held_s=round((now - hold.start).total_seconds(), 3),
                units=sum(hold.units.values()),
            )
            self._triggers.request_plan(f"reserve {hold.product} recalled")

    async def restore(self) -> None:
        """The deployments the ledger says still hold (their miners are asleep in the
        restored setpoints), and the ids carried out lately."""
        now = self._clock.now()
        records = await self._recorder.call(self._recorder.ledger.deployments, now - REMEMBER_IDS)
        for record in records:
            self._seen[record.id] = record.start
            if record.recalled is None:
                self._programs.holds[record.id] = _hold_of(record)
        if self._programs.holds:
            # The restored setpoints have every held miner asleep: the site may not draw more.
            self._programs.deploy_cap_watts = sum(g.watts for g in self._setpoints.power())
            _log.info("reserve.restored", deployments=sorted(self._programs.holds))

    # --- carrying out ------------------------------------------------------------------------

    async def _carry_out(self, instruction: Deploy, source: str) -> None:
        """Put to sleep the qualified miners that cover `instruction`, at once."""
        setpoints = self._setpoints
        before = setpoints.units_on.copy()
        baseline = self._state.site_watts(self._meters)
        draw_before = sum(g.watts for g in setpoints.power())
        commands, planned = _planned(setpoints, self._state, instruction, source)
        # Held before the commands are handed to the devices: a plan sent while they wait in
        # the devices' queue (or are carried out) is cut to the hold and cannot wake them.
        self._programs.hold(planned, draw_before)
        try:
            await self._commands.send(commands, plan=f"reserve-{instruction.id}")
        except Exception:
            # Remembered as the setpoints all the same: held, and in the ledger, as commanded.
            self._keep(planned, planned, self._clock.now())
            raise
        sent = self._clock.now()
        units, dropped_watts = _asleep(setpoints, before, commands, reported=True)
        hold = replace(planned, units=units, dropped_watts=dropped_watts)
        self._keep(hold, planned, sent)
        self._deployed(hold, sent, baseline)

    def _keep(self, hold: Hold, planned: Hold, sent: datetime) -> None:
        """`hold` as carried out, in place of `planned`, and written to the ledger."""
        self._programs.carried_out(hold, planned)
        self._seen[hold.id] = sent
        self._recorder.write(self._recorder.ledger.open_deployment, _record_of(hold))

    def _deployed(self, hold: Hold, sent: datetime, baseline: float | None) -> None:
        """`hold`'s commands went out at `sent`: judged at its response time, counted, said."""
        product = hold.product
        elapsed_s = (sent - hold.start).total_seconds()
        response_s = RESPONSE_S[product]
        deadline = hold.start + timedelta(seconds=response_s)
        late = elapsed_s > response_s
        self._checks.append(_Check(hold, deadline, sent, late, hold.dropped_watts, baseline))
        self._wake.set()
        self._metrics.reserve_deployments.labels(product).inc()
        _log.warning(
            "reserve.deployed",
            deployment=hold.id,
            product=product,
            mw=hold.mw,
            source=hold.source,
            dropped_mw=round(hold.dropped_watts / 1e6, 4),
            groups=len(hold.units),
            units=sum(hold.units.values()),
            elapsed_s=round(elapsed_s, 4),
            response_s=response_s,
        )
        self._triggers.request_plan(f"reserve {product} deployed")

    # --- judging and reporting -------------------------------------------------------------

    async def run(self) -> None:
        """Carry out scheduled deployments at their start, judge deployments at their
        response time, and report every second, until cancelled."""
        while True:
            now = self._clock.now()
            await self.once(now)
            due = [now + timedelta(seconds=PUBLISH_EVERY_S)]
            due += [c.deadline for c in self._checks]
            due += [d.start for d, _ in self._pending.values()]
            wait_s = max(0.0, (min(due) - now).total_seconds())
            self._wake.clear()
            try:
                async with asyncio.timeout(wait_s / self._clock.speed):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def once(self, now: datetime) -> None:
        """One pass: what is due by `now`, then the report (at most once a second)."""
        for deployment, (instruction, source) in list(self._pending.items()):
            if instruction.start <= now:
                del self._pending[deployment]
                await self._carry_out(instruction, source)
        for check in [c for c in self._checks if c.deadline <= now]:
            self._checks.remove(check)
            self._judge(check)
        if self.obligations.due(now):
            await self.obligations.report(now)

    def _judge(self, check: _Check) -> None:
        hold = check.hold
        failure, measured = judge(check, self._state, self._meters)
        fields = {
            "deployment": hold.id,
            "product": hold.product,
            "mw": hold.mw,
            "dropped_mw": round(check.dropped_watts / 1e6, 4),
            "metered_drop_mw": None if measured is None else round(measured / 1e6, 4),
        }
        if failure is None:
            _log.info("reserve.met", **fields)
            return
        self._metrics.reserve_failures.labels(hold.product, failure).inc()
        _log.error("reserve.failed", why=failure, **fields)


def judge(
    check: _Check, state: SiteState, meters: tuple[str, ...]
) -> tuple[str | None, float | None]:
    """Why the deployment of `check` failed ("late", "short", "meter"; None: met) and how far
    the site's meters say its draw fell (None where not every meter has reported since its
    commands went out)."""
    need = (1 - DELIVERY_TOLERANCE) * check.hold.mw * 1e6
    measured = None
    names = meters or tuple(state.meters)
    heard = bool(names) and all(
        n in state.meters and state.meters[n].received >= check.sent for n in names
    )
    now_watts = state.site_watts(meters)
    if heard and check.baseline_watts is not None and now_watts is not None:
        measured = check.baseline_watts - now_watts
    if check.late:
        return "late", measured
    if check.dropped_watts < need:
        return "short", measured
    if measured is not None and measured < need:
        return "meter", measured
    return None, measured


def deployment_commands(
    setpoints: Setpoints, state: SiteState, product: str, mw: float, *, reason: str, label: str
) -> list[AsicCommand]:
    """The commands that put to sleep the awake miners qualified for `product` that cover
    `mw`: least efficient first, groups under an operator's override last."""
    order = [i for i in shed_order(setpoints.asic) if product in setpoints.asic[i].reserve_products]
    order.sort(key=lambda i: setpoints.asic[i].name in state.overrides)  # stable: merit kept
    needed = mw * 1e6
    commands: list[AsicCommand] = []
    for i in order:
        on = int(setpoints.units_on[i])
        if needed <= 1e-6:
            break
        if on <= 0:
            continue
        unit_watts = _unit_watts(setpoints, i)
        units = min(on, math.ceil(needed / unit_watts - 1e-9))
        needed -= units * unit_watts
        group = setpoints.asic[i]
        watts = setpoints.asic_watts_per_unit(i)
        commands.append(AsicCommand(group.name, on - units, watts, reason, label))
    return commands


def _planned(
    setpoints: Setpoints, state: SiteState, instruction: Deploy, source: str
) -> tuple[list[AsicCommand], Hold]:
    """The commands that carry out `instruction`, and its hold as they command it."""
    product = instruction.product
    reason = f"reserve {product} deployed ({instruction.id}): asleep until recalled"
    commands = deployment_commands(
        setpoints, state, product, instruction.mw, reason=reason, label=f"reserve-{instruction.id}"
    )
    units, dropped_watts = _asleep(setpoints, setpoints.units_on, commands, reported=False)
    hold = Hold(
        instruction.id,
        product,
        instruction.mw,
        instruction.start,
        units,
        source,
        reason,
        dropped_watts,
    )
    return commands, hold


def _asleep(
    setpoints: Setpoints, before: IntArray, commands: list[AsicCommand], *, reported: bool
) -> tuple[dict[str, int], float]:
    """The miners per group that `commands` put to sleep from `before`, and what they drew:
    as commanded, or (`reported`, once carried out) as the devices say (an actuator that can
    tell corrects the setpoints)."""
    units: dict[str, int] = {}
    watts = 0.0
    for command in commands:
        i = setpoints.asic_index[command.group]
        now_on = max(command.units_on, int(setpoints.units_on[i])) if reported else command.units_on
        asleep = int(before[i]) - now_on
        if asleep > 0:
            units[command.group] = asleep
            watts += asleep * _unit_watts(setpoints, i)
    return units, watts


def _record_of(hold: Hold) -> DeploymentRecord:
    return DeploymentRecord(
        hold.id,
        hold.product,
        hold.mw,
        hold.start,
        dict(hold.units),
        hold.source,
        hold.reason,
        hold.dropped_watts,
    )


def _hold_of(record: DeploymentRecord) -> Hold:
    return Hold(
        record.id,
        record.product,
        record.mw,
        record.start,
        dict(record.units),
        record.source,
        record.reason,
        record.dropped_watts,
    )


def _unit_watts(setpoints: Setpoints, i: int) -> float:
    return setpoints.asic_watts_per_unit(i) * setpoints.asic[i].overhead_factor
