"""The site as the optimizer sees it: pure conversions from `Settings` to optimizer values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from gridpilot.adapters.grid import TransmissionRates
from gridpilot.agent.settings import AsicGroupSettings, PowerTargetSettings, Settings
from gridpilot.optimizer.economics import breakeven_usd_per_mwh, gpu_value_usd_per_mwh
from gridpilot.optimizer.problem import (
    AsicGroup,
    CapLevel,
    Contract,
    GpuGroup,
    PowerTarget,
    Problem,
    SolveOptions,
    Tier,
)


def asic_groups(settings: Settings) -> tuple[AsicGroup, ...]:
    """One group per container (or per entry without `units_per_group`), overhead from the site."""
    return tuple(
        AsicGroup(
            name=name,
            model=entry.model,
            units=units,
            watts_per_unit=entry.watts_per_unit,
            ths_per_unit=entry.ths_per_unit,
            overhead_factor=settings.site.asic_overhead_factor,
            wake_loss_s=entry.wake_loss_s,
            min_off_s=entry.min_off_s,
            power_target=_power_target(entry.power_target),
            reserve_products=frozenset(entry.reserve_products),
        )
        for entry in settings.asic_groups
        for name, units in entry.split()
    )


def gpu_groups(settings: Settings) -> tuple[GpuGroup, ...]:
    """One group per entry, or per `nodes_per_group` nodes of it, overhead from the site."""
    return tuple(
        GpuGroup(
            name=name,
            contract=entry.contract,
            nodes=nodes,
            gpus_per_node=entry.gpus_per_node,
            cap_levels=tuple(
                CapLevel(watts_per_gpu=level.watts_per_gpu, throughput=level.throughput)
                for level in entry.cap_levels
            ),
            idle_watts_per_gpu=entry.idle_watts_per_gpu,
            host_watts_per_node=entry.host_watts_per_node,
            overhead_factor=settings.site.gpu_overhead_factor,
            reserve_products=frozenset(entry.reserve_products),
        )
        for entry in settings.gpu_groups
        for name, nodes in entry.split()
    )


def contracts(settings: Settings) -> tuple[Contract, ...]:
    """The contracts, with each allowance in node-hours per month: the hours at the contract's
    full size times the nodes of every GPU group serving it."""
    result: list[Contract] = []
    for entry in settings.contracts:
        nodes = sum(group.nodes for group in settings.gpu_groups if group.contract == entry.name)
        result.append(
            Contract(
                name=entry.name,
                tier=entry.tier,
                usd_per_gpu_hour=entry.usd_per_gpu_hour,
                allowance_node_hours=entry.allowance_hours_per_month * nodes,
                max_event_s=entry.max_event_s,
                notice_s=entry.notice_s,
                penalty_usd_per_gpu_hour=entry.penalty_usd_per_gpu_hour,
                min_power_fraction=entry.min_power_fraction or 0.0,
                billed_when_curtailed=entry.billed_when_curtailed,
            )
        )
    return tuple(result)


@dataclass(frozen=True, slots=True)
class ReserveQualification:
    """One `[[asic_groups]]` or `[[gpu_groups]]` entry qualified for reserves: its products and
    what its load draws at the meter at full power (the most it could hold ready)."""

    name: str
    kind: Literal["asic", "gpu"]
    products: tuple[str, ...]
    groups: int
    full_power_watts: float


def reserve_qualifications(settings: Settings) -> tuple[ReserveQualification, ...]:
    """The entries that carry reserves, ASICs first, in the file's order."""
    result = [
        ReserveQualification(
            entry.name,
            "asic",
            entry.reserve_products,
            len(entry.split()),
            entry.count * entry.watts_per_unit * settings.site.asic_overhead_factor,
        )
        for entry in settings.asic_groups
        if entry.reserve_products
    ]
    result += [
        ReserveQualification(
            entry.name,
            "gpu",
            entry.reserve_products,
            len(entry.split()),
            entry.nodes
            * (entry.gpus_per_node * entry.cap_levels[0].watts_per_gpu + entry.host_watts_per_node)
            * settings.site.gpu_overhead_factor,
        )
        for entry in settings.gpu_groups
        if entry.reserve_products
    ]
    return tuple(result)


def transmission_usd_per_kw_year(
    settings: Settings, rates: TransmissionRates, charge_year: int
) -> float:
    """The 4CP rate billed in `charge_year`, $/kW-yr: the site file's, or else the rates
    file's for that year (`NotRecordedError` if it has none)."""
    configured = settings.programs.transmission_usd_per_kw_year
    return configured if configured is not None else rates.for_charge_year(charge_year)


def asic_peak_watts(settings: Settings) -> float:
    """Draw at the meter with every miner awake at nominal power."""
    return sum(g.units * g.watts_per_unit * g.overhead_factor for g in asic_groups(settings))


def gpu_peak_watts(settings: Settings) -> float:
    """Draw at the meter with every GPU node at full power."""
    return sum(g.nodes * g.full_node_watts * g.overhead_factor for g in gpu_groups(settings))


@dataclass(frozen=True, slots=True)
class AsicMerit:
    """One `[[asic_groups]]` entry and the power price above which it should sleep."""

    name: str
    model: str
    units: int
    groups: int
    joules_per_th: float
    breakeven_usd_per_mwh: float  # hashprice over efficiency alone, as the industry quotes it
    breakeven_at_meter_usd_per_mwh: float  # less the pool fee, per MWh drawn with overhead


@dataclass(frozen=True, slots=True)
class GpuMerit:
    """One `[[gpu_groups]]` entry and what its contract earns per MWh at full power."""

    name: str
    contract: str
    tier: Tier
    nodes: int
    groups: int
    value_usd_per_mwh: float  # contract revenue per MWh the nodes draw
    value_at_meter_usd_per_mwh: float  # per MWh drawn at the meter, with overhead


MeritRow = AsicMerit | GpuMerit


def merit_order(settings: Settings, hashprice_usd_per_th_day: float) -> list[MeritRow]:
    """The order in which load should be shed as power gets dearer: ASIC entries from the lowest
    breakeven at the meter (first to sleep) up, then GPU entries from the lowest contract value
    per MWh up. For GPUs the tier and allowance decide more than this value does."""
    asics = sorted(
        (_asic_merit(settings, entry, hashprice_usd_per_th_day) for entry in settings.asic_groups),
        key=lambda row: row.breakeven_at_meter_usd_per_mwh,
    )
    by_name = {contract.name: contract for contract in settings.contracts}
    gpus: list[GpuMerit] = []
    for entry in settings.gpu_groups:
        contract = by_name[entry.contract]
        node_watts = (
            entry.gpus_per_node * entry.cap_levels[0].watts_per_gpu + entry.host_watts_per_node
        )
        value = gpu_value_usd_per_mwh(contract.usd_per_gpu_hour, node_watts, entry.gpus_per_node)
        gpus.append(
            GpuMerit(
                name=entry.name,
                contract=contract.name,
                tier=contract.tier,
                nodes=entry.nodes,
                groups=len(entry.split()),
                value_usd_per_mwh=value,
                value_at_meter_usd_per_mwh=value / settings.site.gpu_overhead_factor,
            )
        )
    gpus.sort(key=lambda row: row.value_at_meter_usd_per_mwh)
    return [*asics, *gpus]


def _asic_merit(
    settings: Settings, entry: AsicGroupSettings, hashprice_usd_per_th_day: float
) -> AsicMerit:
    joules_per_th = entry.watts_per_unit / entry.ths_per_unit
    return AsicMerit(
        name=entry.name,
        model=entry.model,
        units=entry.count,
        groups=len(entry.split()),
        joules_per_th=joules_per_th,
        breakeven_usd_per_mwh=breakeven_usd_per_mwh(hashprice_usd_per_th_day, joules_per_th),
        breakeven_at_meter_usd_per_mwh=breakeven_usd_per_mwh(
            hashprice_usd_per_th_day,
            joules_per_th,
            pool_fee=settings.site.pool_fee,
            overhead_factor=settings.site.asic_overhead_factor,
        ),
    )


def _power_target(target: PowerTargetSettings | None) -> PowerTarget | None:
    if target is None:
        return None
    return PowerTarget(
        min_watts_per_unit=target.min_watts_per_unit,
        hash_fraction_at_min=target.hash_fraction_at_min,
    )


def site_problem(
    settings: Settings,
    *,
    start: datetime,
    step_s: Sequence[float],
    price_usd_per_mwh: Sequence[float],
    hashprice_usd_per_th_day: float,
    options: SolveOptions | None = None,
) -> Problem:
    """The planning problem of the configured site over the given steps, with everything awake
    and nothing curtailed now (the daemon and the replay pass their live state instead)."""
    return Problem(
        start=start,
        step_s=tuple(step_s),
        price_usd_per_mwh=tuple(price_usd_per_mwh),
        hashprice_usd_per_th_day=(hashprice_usd_per_th_day,) * len(step_s),
        site_limit_watts=settings.site.interconnect_watts,
        site_margin_watts=settings.site.margin_watts,
        asic_groups=asic_groups(settings),
        gpu_groups=gpu_groups(settings),
        contracts=contracts(settings),
        pool_fee=settings.site.pool_fee,
        options=options or SolveOptions(),
    )
