"""Which actuator carries out each group's setpoints, as the site file says.

Groups default to MQTT commands for a device gateway; `actuator = "pyasic"` drives miners
directly, `"nvml"` caps this host's GPUs, `"command"` pauses and resumes jobs. The daemon gets
one `RoutingActuator` over all of them, the ones that must be started (pyasic, NVML) wrapped by
`supervise` (agent.daemon.devices) so that one that cannot start is down, not fatal. `check` tells
`check-config` which entries cannot work on this host.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from gridpilot.adapters.actuation import (
    Actuator,
    DeviceUnavailableError,
    ManagedActuator,
    MqttActuator,
    RoutingActuator,
)
from gridpilot.adapters.gpus import (
    CommandActuator,
    JobCommands,
    Nvml,
    NvmlActuator,
    check_commands,
    check_nvml,
    load_nvml,
)
from gridpilot.adapters.miners import MinerGroup, PyasicActuator, require_pyasic
from gridpilot.agent.settings import Settings

# Builds the miners' actuator from {group: its miners}; see adapters.miners.
MinerActuatorFactory = Callable[[dict[str, MinerGroup], Settings], ManagedActuator]
# Wraps an actuator that must be started, given its kind and its groups (agent.daemon.devices).
Supervise = Callable[[ManagedActuator, str, tuple[str, ...]], Actuator]


def _unsupervised(actuator: ManagedActuator, _kind: str, _groups: tuple[str, ...]) -> Actuator:
    return actuator


def build_actuator(
    settings: Settings,
    mqtt: MqttActuator,
    *,
    supervise: Supervise = _unsupervised,
    miners: MinerActuatorFactory | None = None,
    nvml: Callable[[], Nvml] = load_nvml,
) -> RoutingActuator:
    """The site's actuators, routed by group. Nothing is opened or imported here: device
    libraries load when the actuator starts."""
    routes: dict[str, Actuator] = {}
    miner_groups: dict[str, MinerGroup] = {}
    for asic in settings.asic_groups:
        if asic.actuator == "pyasic":
            for (name, _), addresses in zip(asic.split(), asic.addresses(), strict=True):
                miner_groups[name] = MinerGroup(addresses, asic.watts_per_unit)
    if miner_groups:
        factory = miners or _pyasic_miners
        actuator = supervise(factory(miner_groups, settings), "pyasic", tuple(miner_groups))
        routes.update(dict.fromkeys(miner_groups, actuator))
    nvml_groups = {g.name: g.gpus for g in settings.gpu_groups if g.actuator == "nvml"}
    if nvml_groups:
        caps = NvmlActuator(
            nvml_groups,
            nvml=nvml,
            restore_defaults_on_close=settings.devices.restore_gpu_defaults_on_exit,
        )
        routes.update(dict.fromkeys(nvml_groups, supervise(caps, "nvml", tuple(nvml_groups))))
    jobs = {
        name: JobCommands(g.pause_command, g.resume_command, g.command_timeout_s)
        for g in settings.gpu_groups
        if g.actuator == "command"
        for name, _ in g.split()
    }
    if jobs:
        pauses = CommandActuator(jobs)
        routes.update(dict.fromkeys(jobs, pauses))
    return RoutingActuator(routes, mqtt)


def describe(settings: Settings, mqtt_topics: tuple[str, str]) -> list[str]:
    """One line per site-file entry: what carries its setpoints out (for `check-config`)."""
    asic_topic, gpu_topic = mqtt_topics
    lines = []
    for asic in settings.asic_groups:
        groups = len(asic.split())
        if asic.actuator == "pyasic":
            addresses = [a for group in asic.addresses() for a in group]
            how = f"pyasic, {len(addresses):,} miners {addresses[0]} .. {addresses[-1]}"
        else:
            how = f"MQTT to a gateway, {asic_topic}"
        lines.append(f"  {asic.name:<20} {groups:>4} groups  {how}")
    for gpu in settings.gpu_groups:
        groups = len(gpu.split())
        if gpu.actuator == "nvml":
            how = f"NVML on this host, GPUs {', '.join(str(i) for i in gpu.gpus)}"
        elif gpu.actuator == "command":
            how = f"commands: pause {' '.join(gpu.pause_command)}"
        else:
            how = f"MQTT to a gateway, {gpu_topic}"
        lines.append(f"  {gpu.name:<20} {groups:>4} groups  {how}")
    return lines


def actuator_kinds(settings: Settings) -> dict[str, str]:
    """Each optimizer group's actuator kind ("mqtt", "pyasic", "nvml", "command")."""
    kinds: dict[str, str] = {}
    for asic in settings.asic_groups:
        kinds.update(dict.fromkeys((name for name, _ in asic.split()), asic.actuator))
    for gpu in settings.gpu_groups:
        kinds.update(dict.fromkeys((name for name, _ in gpu.split()), gpu.actuator))
    return kinds


def check(
    settings: Settings,
    *,
    nvml: Callable[[], Nvml] = load_nvml,
    pyasic: Callable[[], None] = require_pyasic,
) -> list[tuple[str, DeviceUnavailableError]]:
    """(entry, why) for each site-file entry whose actuator cannot work on this host: pyasic
    not importable; NVML not importable, not initialisable or without the entry's GPUs; a job
    command's program not on PATH. Reads and sets nothing on any device (miners are not
    contacted: from another machine that would say nothing about the controller)."""
    problems: list[tuple[str, DeviceUnavailableError]] = []
    checks: list[tuple[str, Callable[[], None]]] = [
        (asic.name, pyasic) for asic in settings.asic_groups if asic.actuator == "pyasic"
    ]
    for gpu in settings.gpu_groups:
        if gpu.actuator == "nvml":
            checks.append((gpu.name, partial(check_nvml, {gpu.name: gpu.gpus}, nvml)))
        elif gpu.actuator == "command":
            jobs = JobCommands(gpu.pause_command, gpu.resume_command)
            checks.append((gpu.name, partial(check_commands, jobs)))
    for name, probe in checks:
        try:
            probe()
        except DeviceUnavailableError as error:
            problems.append((name, error))
    return problems


def _pyasic_miners(groups: dict[str, MinerGroup], settings: Settings) -> ManagedActuator:
    devices = settings.devices
    actuator: ManagedActuator = PyasicActuator(
        groups,
        concurrency=devices.concurrency,
        timeout_s=devices.timeout_s,
        confirm_after_s=devices.confirm_after_s,
        asleep_power_share=devices.asleep_power_share,
        retries=devices.retries,
    )
    return actuator
