"""Which actuator carries out each group's setpoints, as the site file says.

Groups default to MQTT commands for a device gateway; `actuator = "pyasic"` drives miners
directly, `"nvml"` caps this host's GPUs, `"command"` pauses and resumes jobs. The daemon gets
one `RoutingActuator` over all of them.
"""

from __future__ import annotations

from collections.abc import Callable

from gridpilot.adapters.actuation import Actuator, MqttActuator, RoutingActuator
from gridpilot.adapters.gpus import CommandActuator, JobCommands, Nvml, NvmlActuator, load_nvml
from gridpilot.adapters.miners import MinerGroup, PyasicActuator
from gridpilot.agent.settings import Settings

# Builds the miners' actuator from {group: its miners}; see adapters.miners.
MinerActuatorFactory = Callable[[dict[str, MinerGroup], Settings], Actuator]


def build_actuator(
    settings: Settings,
    mqtt: MqttActuator,
    *,
    miners: MinerActuatorFactory | None = None,
    nvml: Callable[[], Nvml] = load_nvml,
) -> RoutingActuator:
    routes: dict[str, Actuator] = {}
    miner_groups: dict[str, MinerGroup] = {}
    for asic in settings.asic_groups:
        if asic.actuator == "pyasic":
            for (name, _), addresses in zip(asic.split(), asic.addresses(), strict=True):
                miner_groups[name] = MinerGroup(addresses, asic.watts_per_unit)
    if miner_groups:
        factory = miners or _pyasic_miners
        actuator = factory(miner_groups, settings)
        routes.update(dict.fromkeys(miner_groups, actuator))
    nvml_groups = {g.name: g.gpus for g in settings.gpu_groups if g.actuator == "nvml"}
    if nvml_groups:
        caps = NvmlActuator(
            nvml(),
            nvml_groups,
            restore_defaults_on_close=settings.devices.restore_gpu_defaults_on_exit,
        )
        routes.update(dict.fromkeys(nvml_groups, caps))
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


def _pyasic_miners(groups: dict[str, MinerGroup], settings: Settings) -> Actuator:
    devices = settings.devices
    actuator: Actuator = PyasicActuator(
        groups,
        concurrency=devices.concurrency,
        timeout_s=devices.timeout_s,
        confirm_after_s=devices.confirm_after_s,
        asleep_power_share=devices.asleep_power_share,
        retries=devices.retries,
    )
    return actuator
