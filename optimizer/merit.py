"""Plans without a solver: the merit-order fallback and the two baselines miners know.

All three fill the site's cap in merit order, most efficient miners first, after the GPUs' draw;
they differ in what they react to:

- `fallback_plan`: the planner's safety net when the solver fails or times out. Each step, a model
  runs only while the step's (forecast) price is below its breakeven; GPUs are curtailed only when
  the ASICs alone cannot bring the site under its cap, within what contracts allow.
- `always_on`: every ASIC awake but what the site limit forces asleep; GPUs untouched.
- `threshold`: the rule miners run today: each model sleeps while the last known price exceeds its
  breakeven at the previous day's hashprice; GPUs untouched.
"""

from __future__ import annotations

import numpy as np

from gridpilot.optimizer.economics import breakeven_usd_per_mwh
from gridpilot.optimizer.plan import Plan, PlanStatus
from gridpilot.optimizer.problem import FloatArray, Problem
from gridpilot.optimizer.schedule import Schedule, allowance_periods, curtailable


def _merit_order(problem: Problem) -> list[int]:
    """ASIC groups from most to least efficient; among equals, the ones awake now first."""
    return sorted(
        range(len(problem.asic_groups)),
        key=lambda i: (
            problem.asic_groups[i].joules_per_th * problem.asic_groups[i].overhead_factor,
            -problem.asic_groups[i].on_now,
            i,
        ),
    )


def _shed_gpus(problem: Problem, schedule: Schedule, over_watts: FloatArray) -> None:
    """Curtail GPUs where the cap cannot be met otherwise: deepest allowed cap first, then pause,
    spending allowance in time order and, in grid events only, going beyond it."""
    deepest, may_cap, may_pause = curtailable(problem, problem.gpu_groups)
    event = problem.event_active()
    hours = np.asarray(problem.step_s) / 3_600.0
    offsets = problem.step_offsets_s()
    left = {
        c.name: [[s, e, budget] for s, e, budget in allowance_periods(problem, c.name)]
        for c in problem.contracts
    }
    for t in np.flatnonzero(over_watts > 0):
        need = float(over_watts[t])
        for i, gpu in enumerate(problem.gpu_groups):
            if need <= 0:
                break
            periods = [p for p in left[gpu.contract] if p[0] <= offsets[t] < p[1]]
            budget_nodes = (
                min((p[2] / hours[t] for p in periods), default=float(gpu.nodes))
                if not event[t]
                else float(gpu.nodes)
            )
            level = int(deepest[i, t])
            saved = gpu.overhead_factor * (gpu.full_node_watts - gpu.node_watts(level))
            # Capping keeps the jobs running, so it comes first, unless even capping every node
            # the budget allows falls short where pausing is allowed.
            enough = min(gpu.nodes, budget_nodes) * saved >= need
            if may_cap[i, t] and (enough or not may_pause[i, t]):
                nodes = int(min(gpu.nodes, budget_nodes, np.ceil(need / saved)))
                schedule.gpu_level[i, t] = level
                schedule.gpu_capped_nodes[i, t] = max(nodes, 0)
            elif may_pause[i, t]:
                saved = gpu.overhead_factor * (gpu.full_node_watts - gpu.paused_node_watts)
                nodes = int(min(gpu.nodes, budget_nodes, np.ceil(need / saved)))
                schedule.gpu_paused_nodes[i, t] = max(nodes, 0)
            else:
                continue
            used = int(schedule.gpu_capped_nodes[i, t] + schedule.gpu_paused_nodes[i, t])
            need -= used * saved
            for period in periods:
                period[2] = max(0.0, period[2] - used * hours[t])


def merit_order_schedule(
    problem: Problem,
    react_price_usd_per_mwh: FloatArray,
    *,
    sleep_above_breakeven: bool,
    curtail_gpus: bool,
) -> Schedule:
    steps = problem.steps
    n_asic = len(problem.asic_groups)
    n_gpu = len(problem.gpu_groups)
    schedule = Schedule(
        asic_units_on=np.zeros((n_asic, steps), dtype=np.int64),
        asic_watts_per_unit=np.array(
            [np.full(steps, g.watts_per_unit) for g in problem.asic_groups]
        ).reshape(n_asic, steps),
        gpu_level=np.zeros((n_gpu, steps), dtype=np.int64),
        gpu_capped_nodes=np.zeros((n_gpu, steps), dtype=np.int64),
        gpu_paused_nodes=np.zeros((n_gpu, steps), dtype=np.int64),
    )
    cap = problem.cap_watts()
    gpu_watts: FloatArray = np.full(
        steps,
        sum((g.overhead_factor * g.nodes * g.full_node_watts for g in problem.gpu_groups), 0.0),
    )
    if curtail_gpus and n_gpu:
        _shed_gpus(problem, schedule, np.maximum(0.0, gpu_watts - cap))
        gpu_watts = gpu_watts - _gpu_savings(problem, schedule)
    room = np.maximum(0.0, cap - gpu_watts)
    offsets = problem.step_offsets_s()
    hashprice = np.asarray(problem.hashprice_usd_per_th_day, dtype=np.float64)
    for i in _merit_order(problem):
        group = problem.asic_groups[i]
        unit_watts = group.watts_per_unit * group.overhead_factor
        allowed = np.full(steps, group.units, dtype=np.int64)
        if group.units_locked_off:
            locked = offsets < group.locked_off_until_s
            allowed[locked] = group.units - group.units_locked_off
        if sleep_above_breakeven:
            breakeven = breakeven_usd_per_mwh(
                hashprice,
                group.joules_per_th,
                pool_fee=problem.pool_fee,
                overhead_factor=group.overhead_factor,
            )
            allowed[react_price_usd_per_mwh > breakeven] = 0
        on = np.minimum(allowed, np.floor(room / unit_watts + 1e-9).astype(np.int64))
        schedule.asic_units_on[i] = on
        room = room - on * unit_watts
    return schedule


def _gpu_savings(problem: Problem, schedule: Schedule) -> FloatArray:
    saved = np.zeros(problem.steps)
    for i, gpu in enumerate(problem.gpu_groups):
        level_watts = np.array([gpu.node_watts(k) for k in range(len(gpu.cap_levels))])
        per_capped = gpu.full_node_watts - level_watts[schedule.gpu_level[i]]
        per_paused = gpu.full_node_watts - gpu.paused_node_watts
        saved += gpu.overhead_factor * (
            schedule.gpu_capped_nodes[i] * per_capped + schedule.gpu_paused_nodes[i] * per_paused
        )
    return saved


def _plan(problem: Problem, schedule: Schedule, status: PlanStatus, rule: str, note: str) -> Plan:
    return Plan(
        problem=problem,
        schedule=schedule,
        status=status,
        solver=rule,
        build_s=0.0,
        solve_s=0.0,
        note=note,
    )


def fallback_plan(problem: Problem, note: str) -> Plan:
    """The plan used when the solver cannot answer in time: never "no plan"."""
    schedule = merit_order_schedule(
        problem,
        np.asarray(problem.price_usd_per_mwh),
        sleep_above_breakeven=True,
        curtail_gpus=True,
    )
    return _plan(problem, schedule, PlanStatus.FALLBACK, "merit-order", note)


def always_on(problem: Problem) -> Plan:
    return _plan(problem, always_on_schedule(problem), PlanStatus.BASELINE, "always-on", "")


def always_on_schedule(problem: Problem) -> Schedule:
    """Every miner awake but what the site's cap forces asleep; GPUs untouched. (A replay
    needs only the setpoints: scoring a year of them on the forecast is work for nothing.)"""
    return merit_order_schedule(
        problem,
        np.asarray(problem.price_usd_per_mwh),
        sleep_above_breakeven=False,
        curtail_gpus=False,
    )


def threshold(problem: Problem, known_price_usd_per_mwh: float | FloatArray) -> Plan:
    """The threshold rule, reacting to the price known when each step is decided: one last price
    for the whole horizon, or one per step (in a replay, the previous interval's). NaN where no
    price is known yet: there is nothing to react to, so no model sleeps for price there.

    The caller passes the problem's hashprice as it was known (the previous day's)."""
    schedule = threshold_schedule(problem, known_price_usd_per_mwh)
    return _plan(problem, schedule, PlanStatus.BASELINE, "threshold", "")


def threshold_schedule(problem: Problem, known_price_usd_per_mwh: float | FloatArray) -> Schedule:
    """The threshold rule's setpoints (see `threshold`), unscored."""
    known = np.broadcast_to(np.asarray(known_price_usd_per_mwh, dtype=np.float64), (problem.steps,))
    react = np.where(np.isnan(known), -np.inf, known)
    return merit_order_schedule(problem, react, sleep_above_breakeven=True, curtail_gpus=False)
