"""The plant as commanded, and what it earns, in metrics.

Each group's setpoint; the commanded draw per group and load class and what is held off, by
the bounded class of its reason; each miner model's breakeven at the latest hashprice; energy,
its cost (or, at negative prices, its credit), hash and AI revenue as counters. Draws are at
the meter and at nominal power: what the commands ask for, not a measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gridpilot.adapters.actuation import AsicCommand, Command
from gridpilot.agent.daemon.actuators import actuator_kinds
from gridpilot.agent.daemon.metrics import LOAD_CLASSES, Metrics, curtailment_reason
from gridpilot.agent.daemon.setpoints import GroupPower, Setpoints
from gridpilot.agent.daemon.state import SiteState
from gridpilot.agent.settings import Settings
from gridpilot.optimizer.economics import (
    SECONDS_PER_DAY,
    SECONDS_PER_HOUR,
    WATT_SECONDS_PER_MWH,
    breakeven_usd_per_mwh,
)
from gridpilot.optimizer.problem import Problem


class PlantGauges:
    """Keeps the plant's and the money's metrics: `setpoint` and `power` as commands go out,
    `breakeven` on each hashprice, `money` on each housekeeping tick."""

    def __init__(
        self,
        settings: Settings,
        *,
        site: Problem,
        setpoints: Setpoints,
        state: SiteState,
        metrics: Metrics,
    ) -> None:
        self._meters = settings.agent.meters
        self._site = site
        self._setpoints = setpoints
        self._state = state
        self._metrics = metrics
        self._money_at: datetime | None = None
        self._group_power: dict[str, GroupPower] = {}
        self._load_watts = dict.fromkeys(LOAD_CLASSES, 0.0)
        self._held_watts: dict[tuple[str, str], float] = {}
        m = metrics
        m.interconnect.set(settings.site.interconnect_watts)
        for name, kind in actuator_kinds(settings).items():
            m.device_up.labels(name, kind).set(1)  # until its device fails to start
        for group in site.asic_groups:
            m.asic_units_on.labels(group.name).set(group.units)
        for gpu in site.gpu_groups:
            m.gpu_curtailed_nodes.labels(gpu.name).set(0)
            m.gpu_power_cap.labels(gpu.name).set(gpu.cap_levels[0].watts_per_gpu)
        self.power()

    def setpoint(self, command: Command) -> None:
        """What a group was just told."""
        m = self._metrics
        if isinstance(command, AsicCommand):
            m.asic_units_on.labels(command.group).set(command.units_on)
        else:
            nodes = command.capped_nodes + command.paused_nodes
            m.gpu_curtailed_nodes.labels(command.group).set(nodes)
            m.gpu_power_cap.labels(command.group).set(command.power_cap_watts)

    def breakeven(self, hashprice: float) -> None:
        """Each miner model's breakeven power price at the meter, at `hashprice`."""
        for group in self._site.asic_groups:
            self._metrics.breakeven.labels(group.model).set(
                breakeven_usd_per_mwh(
                    hashprice,
                    group.joules_per_th,
                    pool_fee=self._site.pool_fee,
                    overhead_factor=group.overhead_factor,
                )
            )

    def power(self, commands: Sequence[Command] | None = None) -> None:
        """Commanded draw per group and class, and what is held off, by reason: for the groups
        of `commands` (all, when None), the class totals kept by difference, so a shed of a
        few groups on a site of a thousand costs a few updates, not a thousand."""
        m = self._metrics
        setpoints = self._setpoints
        if commands is None:
            changed = setpoints.power()
        else:
            changed = [
                setpoints.asic_power(setpoints.asic_index[c.group])
                if isinstance(c, AsicCommand)
                else setpoints.gpu_power(setpoints.gpu_index[c.group])
                for c in commands
            ]
        touched: set[tuple[str, str]] = set()
        for group in changed:
            before = self._group_power.get(group.name)
            if before is not None:
                self._load_watts[before.load] -= before.watts
                touched.add(self._hold(before, -before.held_watts))
            self._group_power[group.name] = group
            self._load_watts[group.load] += group.watts
            touched.add(self._hold(group, group.held_watts))
            m.group_power.labels(group.name, group.load).set(group.watts)
        for load, watts in self._load_watts.items():
            m.load_power.labels(load).set(watts)
        for load, reason in touched:
            m.curtailed_power.labels(load, reason).set(
                max(0.0, self._held_watts.get((load, reason), 0.0))
            )

    def _hold(self, group: GroupPower, watts: float) -> tuple[str, str]:
        key = (group.load, curtailment_reason(group.reason))
        self._held_watts[key] = self._held_watts.get(key, 0.0) + watts
        return key

    def money(self, now: datetime) -> None:
        """Energy, its cost and the revenue since the last call, from the latest meter
        reading, price and hashprice and the commanded setpoints."""
        since, self._money_at = self._money_at, now
        if since is None or now <= since:
            return
        seconds = (now - since).total_seconds()
        m = self._metrics
        state = self._state
        site = state.site_watts(self._meters)
        if site is not None:
            m.energy.inc(site * seconds)
            if state.price is not None:
                usd = site * seconds / WATT_SECONDS_PER_MWH * state.price.value
                # Counters only rise: at a negative price the site is paid, counted apart.
                (m.energy_cost if usd >= 0 else m.energy_credit).inc(abs(usd))
        units_on = self._setpoints.units_on
        if state.hashprice is not None:
            ths = sum(
                float(units_on[i]) * g.ths_per_unit for i, g in enumerate(self._site.asic_groups)
            )
            usd_per_day = ths * state.hashprice.value * (1 - self._site.pool_fee)
            m.hash_revenue.inc(usd_per_day * seconds / SECONDS_PER_DAY)
        m.ai_revenue.inc(self._billed_usd_per_hour() * seconds / SECONDS_PER_HOUR)

    def _billed_usd_per_hour(self) -> float:
        """What the AI contracts bill per hour at the current setpoints."""
        billed = 0.0
        for i, gpu in enumerate(self._site.gpu_groups):
            contract = self._site.contract(gpu.contract)
            curtailed = self._setpoints.curtailed_nodes(i)
            nodes = gpu.nodes if contract.billed_when_curtailed else gpu.nodes - curtailed
            billed += nodes * gpu.gpus_per_node * contract.usd_per_gpu_hour
        return billed
