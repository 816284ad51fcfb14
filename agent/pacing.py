"""Allowance pacing: what one node-hour of a contract's allowance is worth keeping for later.

Spending a monthly allowance is an online knapsack: the hindsight bound spends each contract's
hours on the month's most valuable hours, but an online agent does not know which those will be.
The classic answer is a reservation price: curtail only when the value of curtailing exceeds the
value the allowance is expected to fetch later. Here the reservation is set so that, if the rest of
the month looks like the recent past, the hours whose value exceeds it add up to the allowance
left: the (1 - left/remaining) quantile of recent values.

The value of curtailing one GPU node for an hour, in $/MWh of the power it frees, is the higher of
the power price (the energy no longer bought) and, while the site is at its limit, the hash value
per MWh of the miners the freed power lets run. A contract whose curtailed hours go unbilled only
gains above the price at which the lost revenue is recovered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridpilot.optimizer.economics import SECONDS_PER_DAY
from gridpilot.optimizer.problem import Contract, FloatArray, GpuGroup, Problem, Tier
from gridpilot.optimizer.schedule import flexible_floor_level


@dataclass(frozen=True, slots=True)
class Reservation:
    contract: str
    threshold_usd_per_mwh: float  # curtail when the value of freed power exceeds this
    usd_per_node_hour: float  # the same, as the optimizer's allowance value


def marginal_hash_value_usd_per_mwh(problem: Problem, hashprice_usd_per_th_day: float) -> float:
    """Hash revenue per MWh at the meter of the least efficient miner model: the one that runs on
    power a curtailed GPU frees when the site is at its limit."""
    worst = max(problem.asic_groups, key=lambda g: g.joules_per_th * g.overhead_factor)
    ths_per_watt = worst.ths_per_unit / (worst.watts_per_unit * worst.overhead_factor)
    usd_per_watt_s = (
        ths_per_watt * hashprice_usd_per_th_day * (1 - problem.pool_fee) / SECONDS_PER_DAY
    )
    return usd_per_watt_s * 3.6e9


def _freed_mw_per_node(group: GpuGroup, contract: Contract) -> float:
    if contract.tier is Tier.INTERRUPTIBLE:
        node_watts = group.paused_node_watts
    else:
        node_watts = group.node_watts(
            flexible_floor_level(group.cap_levels, contract.min_power_fraction)
        )
    return group.overhead_factor * (group.full_node_watts - node_watts) / 1e6


def reservations(
    problem: Problem,
    *,
    recent_prices: FloatArray,
    hashprice_usd_per_th_day: float,
    node_hours_left: dict[str, float],
    hours_left_in_period: float,
    site_oversubscribed: bool,
) -> dict[str, Reservation]:
    """Reservation per contract with an allowance, from recent real-time prices."""
    hash_value = marginal_hash_value_usd_per_mwh(problem, hashprice_usd_per_th_day)
    values = recent_prices[np.isfinite(recent_prices)]
    if site_oversubscribed:
        values = np.maximum(values, hash_value)
    result: dict[str, Reservation] = {}
    for contract in problem.contracts:
        groups = [g for g in problem.gpu_groups if g.contract == contract.name]
        if contract.tier is Tier.FIRM or not groups or contract.allowance_node_hours <= 0:
            continue
        nodes = sum(g.nodes for g in groups)
        freed = _freed_mw_per_node(groups[0], contract)
        lost = (
            0.0
            if contract.billed_when_curtailed
            else groups[0].gpus_per_node * contract.usd_per_gpu_hour
        )
        floor = lost / freed if freed > 0 else float("inf")
        share = node_hours_left.get(contract.name, 0.0) / max(nodes * hours_left_in_period, 1e-9)
        if share >= 1.0 or values.size == 0:
            threshold = floor
        elif share <= 0.0:
            threshold = float("inf")
        else:
            threshold = max(floor, float(np.quantile(values, 1.0 - share)))
        per_node_hour = freed * (threshold - floor) if np.isfinite(threshold) else 1e9
        result[contract.name] = Reservation(contract.name, threshold, max(0.0, per_node_hour))
    return result
