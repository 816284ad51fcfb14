"""Allowance pacing: what one node-hour of a contract's allowance is worth keeping for later.

Spending a monthly allowance is an online knapsack: the hindsight bound spends each contract's
hours on the month's most valuable hours, but an online agent does not know which those will be.
The classic answer is a reservation price: curtail only when the value of curtailing exceeds the
value the allowance is expected to fetch later. Here the reservation is set so that the hours of
the rest of the billing period whose value exceeds it add up to the allowance left: a quantile of
what those hours are expected to be worth. The hours the forecast covers count as forecast, each
step for its own length; the rest of the period is expected to look like the recent past. Each
value weighs the hours it stands for, so a day's forecast is a day of the month, however short
the history beside it (a daemon that has just started knows a few prices and a day ahead: its
forecast's spike is three hours of the month, not the month's every eighth hour).

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
    if not problem.asic_groups:
        return 0.0  # no miners: freed power hashes nothing
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
    forecast_prices: FloatArray | None = None,
    forecast_step_s: tuple[float, ...] = (),
) -> dict[str, Reservation]:
    """Reservation per contract with an allowance, from what the rest of the period is expected
    to be worth: the forecast (`forecast_prices`, one per step of `forecast_step_s` from now)
    for the hours it covers, recent real-time prices for the rest."""
    hash_value = marginal_hash_value_usd_per_mwh(problem, hashprice_usd_per_th_day)
    values, hours = expected_hours(
        recent_prices,
        np.empty(0) if forecast_prices is None else forecast_prices,
        forecast_step_s,
        hours_left_in_period,
    )
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
            threshold = max(floor, weighted_quantile(values, hours, 1.0 - share))
        per_node_hour = freed * (threshold - floor) if np.isfinite(threshold) else 1e9
        result[contract.name] = Reservation(contract.name, threshold, max(0.0, per_node_hour))
    return result


def expected_hours(
    recent: FloatArray, forecast: FloatArray, step_s: tuple[float, ...], hours_left: float
) -> tuple[FloatArray, FloatArray]:
    """The values the rest of the period is expected to take, and the hours each stands for:
    the forecast's steps that fall within the `hours_left`, for their length in it; then the
    recent prices, sharing the hours the forecast does not reach. Without recent prices the
    forecast stands for the whole rest; without either, nothing is known (empty arrays)."""
    recent = recent[np.isfinite(recent)]
    step_hours = np.asarray(step_s, dtype=np.float64)[: forecast.size] / 3_600.0
    starts = np.concatenate(([0.0], np.cumsum(step_hours)[:-1])) if step_hours.size else step_hours
    forecast_hours = np.clip(hours_left - starts, 0.0, step_hours)
    known = np.isfinite(forecast[: step_hours.size]) & (forecast_hours > 0)
    values, hours = forecast[: step_hours.size][known], forecast_hours[known]
    rest = max(hours_left - float(hours.sum()), 0.0)
    if recent.size:
        return (
            np.concatenate((values, recent)),
            np.concatenate((hours, np.full(recent.size, rest / recent.size))),
        )
    if hours.sum() > 0:
        return values, hours * (hours_left / hours.sum())
    return np.empty(0), np.empty(0)


def weighted_quantile(values: FloatArray, weights: FloatArray, q: float) -> float:
    """The smallest value at or below which at least the share `q` of the total weight lies."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    index = int(np.searchsorted(cumulative, q * cumulative[-1], side="left"))
    return float(values[order][min(index, values.size - 1)])
