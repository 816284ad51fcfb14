"""A schedule of setpoints and what it earns: the one evaluator every strategy is scored by.

The solver's own objective is never reported: every plan, whether from the solver, the merit-order
fallback or a baseline, is scored here from its integer setpoints, so the figures compare like with
like and a bug in the model cannot flatter itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridpilot.optimizer.economics import SECONDS_PER_DAY, SECONDS_PER_HOUR, WATT_SECONDS_PER_MWH
from gridpilot.optimizer.problem import CapLevel, FloatArray, GpuGroup, Problem, Tier

IntArray = npt.NDArray[np.int64]

# The price of a watt over the site's limit or an event's cap: far above any penalty or energy
# price, so the solver breaks a limit only where nothing else can meet it, and never says
# "infeasible".
SOFT_LIMIT_USD_PER_MWH = 1e6


@dataclass(frozen=True, slots=True, eq=False)
class Schedule:
    """Setpoints per group (rows, in the problem's group order) and step (columns).

    GPU nodes of a group are either at full power, `capped` at `gpu_level` (an index into the
    group's cap levels), or paused.
    """

    asic_units_on: IntArray  # (asic groups, T)
    asic_watts_per_unit: FloatArray  # (asic groups, T): nominal, or a power target
    gpu_level: IntArray  # (gpu groups, T)
    gpu_capped_nodes: IntArray  # (gpu groups, T)
    gpu_paused_nodes: IntArray  # (gpu groups, T)
    # (reserve products, T): watts held ready to drop per product; None: nothing held
    reserve_watts: FloatArray | None = None

    def held_watts(self, products: int) -> FloatArray:
        """Watts held per product and step, zeros where the schedule holds none."""
        if self.reserve_watts is None:
            return np.zeros((products, self.asic_units_on.shape[1]))
        return self.reserve_watts


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a schedule earns and uses, in dollars, MWh and node-hours."""

    hash_revenue_usd: float  # after pool fee and waking losses
    wake_loss_usd: float  # hashing lost to waking, already taken out of hash_revenue_usd
    ai_revenue_usd: float
    energy_cost_usd: float
    penalty_usd: float
    energy_mwh: float
    over_limit_mwh: float  # energy above the site limit or an event's cap (ideally 0)
    allowance_used_node_hours: dict[str, float]
    allowance_excess_node_hours: dict[str, float]
    site_watts: FloatArray  # planned draw per step
    # Grid programs: what reserves held earn, the expected cost of their deployments, the
    # charge for awards not held, and the expected 4CP transmission charge.
    ancillary_usd: float = 0.0
    reserve_deploy_usd: float = 0.0
    reserve_failure_usd: float = 0.0
    transmission_usd: float = 0.0

    @property
    def programs_usd(self) -> float:
        """The grid programs' net: reserves earned less their costs, less transmission."""
        return (
            self.ancillary_usd
            - self.reserve_deploy_usd
            - self.reserve_failure_usd
            - self.transmission_usd
        )

    @property
    def profit_usd(self) -> float:
        energy = self.hash_revenue_usd + self.ai_revenue_usd - self.energy_cost_usd
        return energy - self.penalty_usd + self.programs_usd


def _asic_array(problem: Problem, field: str) -> FloatArray:
    return np.array([getattr(g, field) for g in problem.asic_groups], dtype=np.float64)[:, None]


def hash_rate_ths(problem: Problem, schedule: Schedule) -> FloatArray:
    """Hashrate per ASIC group and step, with power targets along their linear hash curve."""
    share = np.ones_like(schedule.asic_watts_per_unit)
    for index, group in enumerate(problem.asic_groups):
        target = group.power_target
        if target is not None:
            span = group.watts_per_unit - target.min_watts_per_unit
            share[index] = target.hash_fraction_at_min + (1 - target.hash_fraction_at_min) * (
                (schedule.asic_watts_per_unit[index] - target.min_watts_per_unit) / span
            )
    return schedule.asic_units_on * _asic_array(problem, "ths_per_unit") * share


def site_watts(problem: Problem, schedule: Schedule) -> FloatArray:
    asic = _asic_array(problem, "overhead_factor") * schedule.asic_units_on
    total = np.sum(asic * schedule.asic_watts_per_unit, axis=0)
    for index, gpu in enumerate(problem.gpu_groups):
        level_watts = np.array([gpu.node_watts(i) for i in range(len(gpu.cap_levels))])
        capped = schedule.gpu_capped_nodes[index]
        paused = schedule.gpu_paused_nodes[index]
        full = gpu.nodes - capped - paused
        node_watts = (
            full * gpu.full_node_watts
            + capped * level_watts[schedule.gpu_level[index]]
            + paused * gpu.paused_node_watts
        )
        total += gpu.overhead_factor * node_watts
    return np.asarray(total, dtype=np.float64)


def _period_mask(problem: Problem, start_s: float, end_s: float) -> npt.NDArray[np.bool_]:
    offsets = problem.step_offsets_s()
    return (offsets >= start_s) & (offsets < end_s)


def evaluate(problem: Problem, schedule: Schedule) -> Outcome:
    """Score a schedule on the problem's own prices (for a plan: the forecast it was made on)."""
    dt = np.asarray(problem.step_s)
    hours = dt / SECONDS_PER_HOUR
    price = np.asarray(problem.price_usd_per_mwh)
    hashprice = np.asarray(problem.hashprice_usd_per_th_day) * (1 - problem.pool_fee)

    ths = hash_rate_ths(problem, schedule)
    hash_gross = float(np.sum(ths * hashprice * dt / SECONDS_PER_DAY))
    on_now = np.array([g.on_now for g in problem.asic_groups], dtype=np.int64)[:, None]
    woken = np.maximum(0, np.diff(schedule.asic_units_on, axis=1, prepend=on_now))
    lost_th_s = woken * _asic_array(problem, "ths_per_unit") * _asic_array(problem, "wake_loss_s")
    wake_loss = float(np.sum(lost_th_s * hashprice / SECONDS_PER_DAY))

    watts = site_watts(problem, schedule)
    energy_mwh = watts * dt / WATT_SECONDS_PER_MWH
    over_mwh = np.maximum(0.0, watts - problem.cap_watts()) * dt / WATT_SECONDS_PER_MWH

    ai_revenue = 0.0
    penalty = 0.0
    used: dict[str, float] = {c.name: 0.0 for c in problem.contracts}
    use_by_step: dict[str, FloatArray] = {
        c.name: np.zeros(problem.steps) for c in problem.contracts
    }
    for index, gpu in enumerate(problem.gpu_groups):
        contract = problem.contract(gpu.contract)
        curtailed = schedule.gpu_capped_nodes[index] + schedule.gpu_paused_nodes[index]
        billed_nodes = gpu.nodes - (0 if contract.billed_when_curtailed else curtailed)
        ai_revenue += float(
            np.sum(billed_nodes * gpu.gpus_per_node * contract.usd_per_gpu_hour * hours)
        )
        use_by_step[contract.name] += curtailed * hours
    excess: dict[str, float] = {c.name: 0.0 for c in problem.contracts}
    for contract in problem.contracts:
        used[contract.name] = float(np.sum(use_by_step[contract.name]))
        for start_s, end_s, left in allowance_periods(problem, contract.name):
            spent = float(np.sum(use_by_step[contract.name][_period_mask(problem, start_s, end_s)]))
            excess[contract.name] += max(0.0, spent - left)
        gpus_per_node = _gpus_per_node(problem, contract.name)
        penalty += excess[contract.name] * gpus_per_node * contract.penalty_usd_per_gpu_hour

    ancillary, deploy, failure = _reserves(problem, schedule, hours)
    return Outcome(
        hash_revenue_usd=hash_gross - wake_loss,
        wake_loss_usd=wake_loss,
        ai_revenue_usd=ai_revenue,
        energy_cost_usd=float(np.sum(energy_mwh * price)),
        penalty_usd=penalty,
        energy_mwh=float(np.sum(energy_mwh)),
        over_limit_mwh=float(np.sum(over_mwh)),
        allowance_used_node_hours=used,
        allowance_excess_node_hours=excess,
        site_watts=watts,
        ancillary_usd=ancillary,
        reserve_deploy_usd=deploy,
        reserve_failure_usd=failure,
        transmission_usd=float(np.sum(energy_mwh * problem.programs.transmission(problem.steps))),
    )


def _reserves(problem: Problem, schedule: Schedule, hours: FloatArray) -> tuple[float, ...]:
    """(earned, expected deployment cost, failure charge) of the reserves a schedule holds."""
    reserves = problem.programs.reserves
    held_mw = schedule.held_watts(len(reserves)) / 1e6
    earned = deploy = failure = 0.0
    for r, reserve in enumerate(reserves):
        mw_h = held_mw[r] * hours
        earned += float(np.sum(mw_h * np.asarray(reserve.usd_per_mw_h)))
        deploy += float(np.sum(mw_h)) * reserve.deploy_usd_per_mw_h
        short = np.maximum(0.0, np.asarray(reserve.awarded_mw) - held_mw[r])
        failure += float(np.sum(short * hours)) * reserve.failure_usd_per_mw_h
    return earned, deploy, failure


def _gpus_per_node(problem: Problem, contract: str) -> int:
    for gpu in problem.gpu_groups:
        if gpu.contract == contract:
            return gpu.gpus_per_node
    return 0


def allowance_periods(problem: Problem, contract: str) -> list[tuple[float, float, float]]:
    """(start_s, end_s, node-hours left) for each billing period the horizon touches.

    Budgets come from the ledger; a contract without one is taken to have its whole monthly
    allowance left over the entire horizon.
    """
    periods = [
        (
            (b.period_start - problem.start).total_seconds(),
            (b.period_end - problem.start).total_seconds(),
            b.node_hours_left,
        )
        for b in problem.budgets
        if b.contract == contract
    ]
    if periods:
        return periods
    horizon_s = float(np.sum(problem.step_s))
    return [(0.0, horizon_s, problem.contract(contract).allowance_node_hours)]


def curtailable(
    problem: Problem, gpu_groups: tuple[GpuGroup, ...]
) -> tuple[IntArray, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """What each GPU group may do outside its allowance accounting, per step.

    Returns (deepest usable cap level, whether capping is allowed, whether pausing is allowed),
    shaped (gpu groups, T). Outside grid events a firm contract is never touched, a flexible one
    only capped down to its floor, an interruptible one only paused; in an event all may be.
    """
    event = problem.event_active()
    groups = len(gpu_groups)
    deepest = np.zeros((groups, problem.steps), dtype=np.int64)
    may_cap = np.zeros((groups, problem.steps), dtype=bool)
    may_pause = np.zeros((groups, problem.steps), dtype=bool)
    for index, gpu in enumerate(gpu_groups):
        contract = problem.contract(gpu.contract)
        last = len(gpu.cap_levels) - 1
        floor = flexible_floor_level(gpu.cap_levels, contract.min_power_fraction)
        normal_cap = contract.tier is Tier.FLEXIBLE and floor > 0
        normal_pause = contract.tier is Tier.INTERRUPTIBLE
        deepest[index] = np.where(event, last, floor if normal_cap else 0)
        may_cap[index] = event | normal_cap
        may_cap[index] &= deepest[index] > 0
        may_pause[index] = event | normal_pause
    return deepest, may_cap, may_pause


def flexible_floor_level(levels: tuple[CapLevel, ...], min_power_fraction: float) -> int:
    """Index of the deepest cap level at or above `min_power_fraction` of full power."""
    full = levels[0].watts_per_gpu
    usable = [i for i, lvl in enumerate(levels) if lvl.watts_per_gpu >= min_power_fraction * full]
    return max(usable)
