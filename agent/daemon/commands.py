"""Commands out: remembered as the setpoints, carried out, written down, their outcomes read.

Every command the agent decides (the planner's, the guard's, safe mode's, an operator's
override, a device's resend) goes through `Commands.send`. In shadow mode commands are
remembered and recorded but not carried out. Commands are carried out first and written to the
ledger straight after, by the ledger's own task, so a shed never waits for an fsync; what an
actuator reports back (a command not carried out, devices that did not follow) is counted, and
where a miner group is not where it was told to be the planner is asked to plan from where it
is. A plan never wakes the miners a reserve deployment holds asleep (agent.daemon.reserves).

Devices are spoken to by one task of their own (`run`), batch after batch in the order sent,
so that what must not wait on a device does not: the guard's sheds, safe mode's holds, reserve
deployments and operators' overrides (which arrive in the broker's message loop, where meter
readings queue behind them) are remembered as the setpoints at once and handed over
(`wait=False`); a plan waits for its batch to be carried out. Without that task running (a
part tested alone), a batch is carried out in the call.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

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
from gridpilot.agent.daemon.allowance import Allowance
from gridpilot.agent.daemon.clock import Clock
from gridpilot.agent.daemon.gauges import PlantGauges
from gridpilot.agent.daemon.ledger import CommandRecord
from gridpilot.agent.daemon.metrics import Metrics
from gridpilot.agent.daemon.mode import Mode
from gridpilot.agent.daemon.recorder import Recorder
from gridpilot.agent.daemon.setpoints import Setpoints, command_from_payload
from gridpilot.agent.daemon.state import SiteState
from gridpilot.agent.daemon.triggers import Triggers

_log = structlog.get_logger("gridpilot.daemon")

# Told each batch `Commands.send` carried out, once its outcomes are read.
Observer = Callable[[Sequence[Command]], None]


class Sender(Protocol):
    """What the guard, the planning cycle, safe mode and overrides send commands through."""

    async def send(
        self,
        commands: Sequence[Command],
        *,
        plan: str,
        plan_id: int | None = None,
        planned: bool = False,
        wait: bool = True,
    ) -> list[Command]: ...


@dataclass(frozen=True, slots=True)
class _Batch:
    """Commands sent together, as `send` was given them."""

    commands: list[Command]
    plan: str
    plan_id: int | None
    sent: datetime


class Commands:
    """Sends commands through `actuator` (`gateway` is the MQTT one, for what is republished
    on every connect) and keeps `setpoints`, the ledger, the allowance and the metrics up with
    them. `observers` are told each batch carried out, after its outcomes are read."""

    def __init__(
        self,
        *,
        setpoints: Setpoints,
        actuator: Actuator,
        gateway: MqttActuator,
        recorder: Recorder,
        allowance: Allowance,
        gauges: PlantGauges,
        metrics: Metrics,
        state: SiteState,
        triggers: Triggers,
        clock: Clock,
        shadow: bool,
        mode: Mode,
    ) -> None:
        self._setpoints = setpoints
        self._actuator = actuator
        self._gateway = gateway
        self._recorder = recorder
        self._ledger = recorder.ledger
        self._allowance = allowance
        self._gauges = gauges
        self._metrics = metrics
        self._state = state
        self._triggers = triggers
        self._clock = clock
        self._shadow = shadow
        self._mode = mode
        self.observers: list[Observer] = []
        self._queue: asyncio.Queue[tuple[_Batch, asyncio.Future[None] | None]] = asyncio.Queue()
        self._running = False

    async def send(
        self,
        commands: Sequence[Command],
        *,
        plan: str,
        plan_id: int | None = None,
        planned: bool = False,
        wait: bool = True,
    ) -> list[Command]:
        """Remember and carry out `commands` (in shadow mode: remember only), account the
        allowance up to now first, and write them to the ledger. A plan's commands (`planned`)
        leave out groups under an operator's override, also one that arrived while the plan
        was made, and are not sent at all once safe mode has begun, also while the plan was
        being solved: both checked here, after the last wait, so neither the override's own
        command nor safe mode's holds are ever followed by an older plan's. With `wait` off,
        returns once they are remembered and queued for the devices. Returns the commands
        sent."""
        now = self._clock.now()
        if any(isinstance(c, GpuCommand) for c in commands):
            await self._allowance.account_or_say(now)
        if planned and self._mode.safe:
            _log.warning("plan.not_sent", plan=plan, why="safe mode began while it was made")
            return []
        if planned:
            commands = [c for c in commands if c.group not in self._state.overrides]
            commands = self._within_holds(commands)
        if not commands:
            return []
        for command in commands:
            self._remember(command, now.timestamp())
        batch = _Batch(list(commands), plan, plan_id, now)
        if not self._running:
            await self._carry_out(batch)
        elif wait:
            done = asyncio.get_running_loop().create_future()
            self._queue.put_nowait((batch, done))
            await done
        else:
            self._queue.put_nowait((batch, None))
        return list(commands)

    async def run(self) -> None:
        """Carry out the queued batches in order, until cancelled (a task of the daemon)."""
        self._running = True
        try:
            while True:
                batch, done = await self._queue.get()
                try:
                    await self._carry_out(batch)
                except Exception as error:  # the sender's to handle when it waits
                    if done is None:
                        _log.exception("commands.failed", plan=batch.plan)
                    elif not done.done():
                        done.set_exception(error)
                else:
                    if done is not None and not done.done():
                        done.set_result(None)
        finally:
            self._running = False

    async def drain(self) -> None:
        """Outside the task: carry out what is still queued (on the way out)."""
        while not self._queue.empty():
            batch, done = self._queue.get_nowait()
            try:
                await self._carry_out(batch)
            except Exception:  # on the way out: log, and go on with the next
                _log.exception("commands.failed", plan=batch.plan)
            if done is not None and not done.done():
                done.cancel()

    async def _carry_out(self, batch: _Batch) -> None:
        commands = batch.commands
        if self._shadow:
            outcomes = [Outcome(c.group, True, "shadow: not sent") for c in commands]
        else:
            outcomes = await self._actuator.apply(commands)
        # Carried out first, then written down: a shed must not wait for an fsync (a few ms),
        # and the guard does not wait for the write at all. A crash in between leaves the
        # ledger a command behind; the restarted agent republishes that, and its guard sheds
        # again at the first reading over the cap. Plans wait for their records.
        records = [
            CommandRecord(_load(c), c.group, json.loads(encode(c)), c.reason) for c in commands
        ]
        self._recorder.write(self._ledger.record_commands, batch.sent, batch.plan_id, records)
        for command, outcome in zip(commands, outcomes, strict=True):
            self._read(command, outcome, batch.plan)
        self._gauges.power(commands)
        await self._allowance.track(commands, batch.sent)
        for observer in self.observers:
            observer(commands)

    def _within_holds(self, commands: Sequence[Command]) -> list[Command]:
        """A plan's miner commands with the miners a reserve deployment holds asleep kept
        asleep: also a plan made before the deployment arrived is cut to it here, after its
        last wait; a group so cut that is already where it would be is left out."""
        held = self._state.programs.held_units()
        if not held:
            return list(commands)
        kept: list[Command] = []
        for command in commands:
            if isinstance(command, AsicCommand) and held.get(command.group, 0):
                cut = self._held_asleep(command, held[command.group])
                if self._setpoints.differs(cut):
                    kept.append(cut)
            else:
                kept.append(command)
        return kept

    def _held_asleep(self, command: AsicCommand, held: int) -> AsicCommand:
        """`command` with at most the group's miners less `held` awake, and the deployment's
        reason where that is why they sleep."""
        group = self._setpoints.asic[self._setpoints.asic_index[command.group]]
        most = max(0, group.units - held)
        # The plan gives a miner locked asleep the reason of a minimum off time.
        if command.units_on < most and not command.reason.startswith("minimum off time"):
            return command
        reason = self._state.programs.hold_reason(command.group)
        return replace(command, units_on=min(command.units_on, most), reason=reason)

    def _read(self, command: Command, outcome: Outcome, plan: str) -> None:
        """Count what became of one command, and take the plant as it is."""
        kind = _load(command)
        self._metrics.commands.labels(kind, "ok" if outcome.ok else "failed").inc()
        for fault in outcome.faults:
            self._metrics.device_faults.labels(command.group, fault).inc()
        if not outcome.ok:
            self._metrics.command_failures.labels(kind, command.group).inc()
            _log.warning("command.failed", group=outcome.group, detail=outcome.detail, plan=plan)
        if (
            isinstance(command, AsicCommand)
            and outcome.units_on is not None
            and outcome.units_on != command.units_on
        ):
            # The plant is not where it was told to be: plan from where it is.
            self._setpoints.units_on[self._setpoints.asic_index[command.group]] = outcome.units_on
            self._triggers.request_plan(f"{command.group} did not follow its command")

    async def resend(self, groups: tuple[str, ...]) -> None:
        """Send `groups` their current setpoints: a device that has just come up
        (agent.daemon.devices) gets the latest command decided for each, also while it was down."""
        wanted = set(groups)
        current = [c for c in self._setpoints.commanded.values() if c.group in wanted]
        await self.send(current, plan="device-up")

    async def republish(self) -> None:
        """Publish again every current command a gateway carries out: a broker restarted
        without persistence forgot every retained command. Not in shadow mode."""
        gateway = [c for c in self._setpoints.commanded.values() if self._via_gateway(c.group)]
        if gateway and not self._shadow:
            await self._gateway.apply(gateway)

    async def restore(self) -> None:
        """Pick up where the last run stopped: the setpoints last sent, as the ledger has them,
        as the plant's state, and the interruptions still running (their length counts towards
        each contract's longest event)."""
        current = await self._recorder.call(self._ledger.current_setpoints)
        for (kind, group), payload in current.items():
            command = command_from_payload(kind, group, payload)
            if command is not None and self._known(command):
                self._remember(command)
        await self._allowance.restore()
        self._gauges.power()
        if current:
            _log.info(
                "agent.restored",
                setpoints=len(current),
                interruptions=len(self._allowance.interruptions),
            )

    def _remember(self, command: Command, at_s: float | None = None) -> None:
        self._setpoints.remember(command, at_s)
        self._gauges.setpoint(command)

    def _via_gateway(self, group: str) -> bool:
        actuator = self._actuator
        if isinstance(actuator, RoutingActuator):
            return actuator.route(group) is self._gateway
        return isinstance(actuator, MqttActuator)

    def _known(self, command: Command) -> bool:
        setpoints = self._setpoints
        index = setpoints.asic_index if isinstance(command, AsicCommand) else setpoints.gpu_index
        return command.group in index


def _load(command: Command) -> str:
    return "asic" if isinstance(command, AsicCommand) else "gpu"
