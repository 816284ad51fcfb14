"""Setpoints out: the `Actuator` boundary, its MQTT implementation and a recording fake.

The daemon decides setpoints per group; an actuator carries them to the devices and says, per
group, whether it did. This module's `MqttActuator` publishes each as a retained QoS 1 command
for a device gateway (`cmd/asic/<group>`, `cmd/gpu/<group>` by default), so a gateway that
restarts gets the last word. Direct device actuators (miners, GPUs) implement the same protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gridpilot.adapters.payloads import encode_asic_command, encode_gpu_command


@dataclass(frozen=True, slots=True)
class AsicCommand:
    group: str
    units_on: int
    watts_per_unit: float
    reason: str
    plan: str  # the plan (or guard action, or safe mode) that asked for it


@dataclass(frozen=True, slots=True)
class GpuCommand:
    group: str
    power_cap_watts: float  # per GPU, on the capped nodes
    capped_nodes: int
    paused_nodes: int
    reason: str
    plan: str


Command = AsicCommand | GpuCommand


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one group's command. `units_on`: where an actuator could tell, how many
    of a miner group's units are really awake (a failed sleep leaves some hashing)."""

    group: str
    ok: bool
    detail: str = ""
    units_on: int | None = None
    faults: tuple[str, ...] = ()  # one kind per device that failed (adapters.miners.FAULT_KINDS)


# The fix for a device library that is not installed (pyproject.toml's `devices` extra).
INSTALL_DEVICES = (
    "install the devices extra into the agent's venv: pip install 'gridpilot[devices]'"
)


class DeviceUnavailableError(Exception):
    """A device actuator cannot start on this host: its library is missing, its driver cannot be
    reached, or none of its devices answers. `actuator` is its kind (`"nvml"`, `"pyasic"`,
    `"command"`), `reason` what is wrong and `fix` what an operator can do about it. Raised by
    `ManagedActuator.start` and by the checks `check-config` runs; the agent keeps the
    actuator's groups down and retries (agent.daemon.devices)."""

    def __init__(self, actuator: str, reason: str, fix: str = "") -> None:
        super().__init__(f"{reason}; {fix}" if fix else reason)
        self.actuator = actuator
        self.reason = reason
        self.fix = fix


class Actuator(Protocol):
    """Carries setpoints to devices. `apply` never raises for a device's failure: it reports it
    in that group's `Outcome`, and the planner sees the plant where it really is."""

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]: ...


class ManagedActuator(Actuator, Protocol):
    """An actuator with something to open and to put back (NVML, connections). `start` raises
    `DeviceUnavailableError` when its devices cannot be driven from this host."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class RoutingActuator:
    """Hands each group's commands to the actuator configured for it (`default` for the
    rest), all actuators at once, and returns the outcomes in the commands' order."""

    def __init__(self, routes: dict[str, Actuator], default: Actuator) -> None:
        self._routes = routes
        self._default = default

    def actuators(self) -> list[Actuator]:
        unique: dict[int, Actuator] = {id(self._default): self._default}
        unique.update((id(a), a) for a in self._routes.values())
        return list(unique.values())

    def route(self, group: str) -> Actuator:
        return self._routes.get(group, self._default)

    async def start(self) -> None:
        for actuator in self.actuators():
            start = getattr(actuator, "start", None)
            if start is not None:
                await start()

    async def close(self) -> None:
        for actuator in self.actuators():
            close = getattr(actuator, "close", None)
            if close is not None:
                await close()

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        batches: dict[int, tuple[Actuator, list[int]]] = {}
        for index, command in enumerate(commands):
            actuator = self.route(command.group)
            batches.setdefault(id(actuator), (actuator, []))[1].append(index)
        results = await asyncio.gather(
            *(a.apply([commands[i] for i in indices]) for a, indices in batches.values())
        )
        outcomes: list[Outcome | None] = [None] * len(commands)
        for (_, indices), batch in zip(batches.values(), results, strict=True):
            for index, outcome in zip(indices, batch, strict=True):
                outcomes[index] = outcome
        return [o for o in outcomes if o is not None]


def encode(command: Command) -> bytes:
    if isinstance(command, AsicCommand):
        return encode_asic_command(
            plan=command.plan,
            units_on=command.units_on,
            watts_per_unit=command.watts_per_unit,
            reason=command.reason,
        )
    return encode_gpu_command(
        plan=command.plan,
        power_cap_watts=command.power_cap_watts,
        capped_nodes=command.capped_nodes,
        paused_nodes=command.paused_nodes,
        reason=command.reason,
    )


Publish = Callable[[str, bytes], Awaitable[bool]]


class MqttActuator:
    """Publishes each command to its topic (`asic_topic`/`gpu_topic` with `{group}` filled in),
    all at once: the broker acknowledges them in parallel, not one round trip after another."""

    def __init__(self, publish: Publish, *, asic_topic: str, gpu_topic: str) -> None:
        self._publish = publish
        self._asic_topic = asic_topic
        self._gpu_topic = gpu_topic

    def topic(self, command: Command) -> str:
        template = self._asic_topic if isinstance(command, AsicCommand) else self._gpu_topic
        return template.format(group=command.group)

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        sent = await asyncio.gather(*(self._publish(self.topic(c), encode(c)) for c in commands))
        return [
            Outcome(c.group, ok, "" if ok else "broker not connected; resent on reconnect")
            for c, ok in zip(commands, sent, strict=True)
        ]


class RecordingActuator:
    """The fake: remembers every command it was given and reports each as done (or as failed,
    for the groups in `failing`)."""

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.applied: list[Command] = []
        self.failing = failing

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        self.applied.extend(commands)
        return [
            Outcome(c.group, c.group not in self.failing, "failing by request") for c in commands
        ]
