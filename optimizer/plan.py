"""The answer: setpoints per group and step, what they earn, and why each curtailment happens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import cached_property

import numpy as np
import numpy.typing as npt

from gridpilot.optimizer.economics import breakeven_usd_per_mwh
from gridpilot.optimizer.problem import FloatArray, Problem
from gridpilot.optimizer.schedule import SOFT_LIMIT_USD_PER_MWH, Outcome, Schedule, evaluate

# How a curtailment for a likely coincident peak begins its reason.
CP_REASON = "4CP: likely system peak"


class PlanStatus(StrEnum):
    OPTIMAL = "optimal"  # the solver proved optimality (within the relative gap asked for)
    FEASIBLE = "feasible"  # the solver stopped at its time limit with a solution
    FALLBACK = "fallback"  # the solver failed or timed out: merit-order plan, see `note`
    BASELINE = "baseline"  # a reference rule, not a decision of the agent's


@dataclass(frozen=True, slots=True)
class AsicSetpoint:
    group: str
    units_on: int
    watts_per_unit: float
    reason: str  # empty when nothing is curtailed


@dataclass(frozen=True, slots=True)
class GpuSetpoint:
    group: str
    power_cap_watts: float  # per GPU, for the capped nodes
    capped_nodes: int
    paused_nodes: int
    reason: str


@dataclass(frozen=True, eq=False)
class Plan:
    """Setpoints over the horizon. Apply step 0; re-plan next interval.

    What the schedule earns on the problem's own prices (`outcome`) and how far that is from
    the solver's bound (`gap`) are worked out when first asked for, then kept: a replay's agent
    applies thousands of plans and reads the score of few."""

    problem: Problem
    schedule: Schedule
    status: PlanStatus
    solver: str  # OR-Tools backend, or the rule that made the plan
    build_s: float
    solve_s: float
    note: str = ""  # why the fallback was used, when it was
    # The solver's bound on the model's objective ($; NaN: it offered none), from which `gap`
    # follows; None for a plan no solver made (a rule's: its gap is NaN).
    bound_usd: float | None = None
    joined_gap: float | None = None  # a plan joined from others': their largest gap

    @cached_property
    def outcome(self) -> Outcome:
        return evaluate(self.problem, self.schedule)

    @cached_property
    def gap(self) -> float:
        """Relative distance from the model's bound, rounding included."""
        if self.joined_gap is not None:
            return self.joined_gap
        if self.bound_usd is None:
            return float("nan")
        value = model_value(self.problem, self.outcome)
        return max(0.0, self.bound_usd - value) / max(1.0, abs(self.bound_usd))

    @property
    def total_s(self) -> float:
        return self.build_s + self.solve_s

    def asic_setpoints(self, step: int = 0) -> tuple[AsicSetpoint, ...]:
        return tuple(
            AsicSetpoint(
                group=group.name,
                units_on=int(self.schedule.asic_units_on[i, step]),
                watts_per_unit=float(self.schedule.asic_watts_per_unit[i, step]),
                reason=self.asic_reason(i, step),
            )
            for i, group in enumerate(self.problem.asic_groups)
        )

    def gpu_setpoints(self, step: int = 0) -> tuple[GpuSetpoint, ...]:
        setpoints = []
        for i, gpu in enumerate(self.problem.gpu_groups):
            level = int(self.schedule.gpu_level[i, step])
            setpoints.append(
                GpuSetpoint(
                    group=gpu.name,
                    power_cap_watts=gpu.cap_levels[level].watts_per_gpu,
                    capped_nodes=int(self.schedule.gpu_capped_nodes[i, step]),
                    paused_nodes=int(self.schedule.gpu_paused_nodes[i, step]),
                    reason=self.gpu_reason(i, step),
                )
            )
        return tuple(setpoints)

    # Reasons ------------------------------------------------------------------------------------

    @cached_property
    def _binds(self) -> npt.NDArray[np.bool_]:
        """Per step, whether the site draws all its cap allows (within two of its largest
        units): worked out once, as every group's reason at a step asks it."""
        cap = self.problem.cap_watts()
        largest_unit = max(
            [g.watts_per_unit * g.overhead_factor for g in self.problem.asic_groups] + [0.0]
        )
        return np.asarray(self.outcome.site_watts >= cap - np.maximum(2 * largest_unit, 1e-3 * cap))

    @cached_property
    def _transmission(self) -> FloatArray:
        return self.problem.programs.transmission(self.problem.steps)

    def _limit_binds(self, step: int) -> bool:
        return bool(self._binds[step])

    def _event_note(self, step: int) -> str | None:
        start = self.problem.step_start(step)
        end = start + timedelta(seconds=self.problem.step_s[step])
        for event in self.problem.events:
            if event.start < end and event.end > start:
                return f"grid event {event.id}: site capped at {event.max_site_watts / 1e6:.1f} MW"
        return None

    def asic_reason(self, index: int, step: int) -> str:
        group = self.problem.asic_groups[index]
        if self.schedule.asic_units_on[index, step] >= group.units:
            return ""
        price = self.problem.price_usd_per_mwh[step]
        breakeven = breakeven_usd_per_mwh(
            self.problem.hashprice_usd_per_th_day[step],
            group.joules_per_th,
            pool_fee=self.problem.pool_fee,
            overhead_factor=group.overhead_factor,
        )
        binds = self._limit_binds(step)
        event = self._event_note(step)
        if event and binds:
            return event
        if price > breakeven:
            return f"price {price:.0f} $/MWh > {group.model} breakeven {breakeven:.0f}"
        if binds:
            # At its cap the site draws all it may: nothing was lowered for anything else.
            limit = self.problem.site_limit_watts / 1e6
            margin = self.problem.site_margin_watts / 1e6
            return f"site limit {limit:.1f} MW less {margin:.1f} MW margin"
        charge = float(self._transmission[step])
        if price + charge > breakeven:
            return (
                f"{CP_REASON}: expected charge {charge:.0f} $/MWh on top of price {price:.0f}"
                f" > {group.model} breakeven {breakeven:.0f}"
            )
        return self._held_asleep(index, step, breakeven)

    def _held_asleep(self, index: int, step: int, breakeven: float) -> str:
        """Why a group stays asleep although running would pay at this step's price."""
        group = self.problem.asic_groups[index]
        price = self.problem.price_usd_per_mwh[step]
        if (
            group.units_locked_off
            and self.problem.step_offsets_s()[step] < group.locked_off_until_s
        ):
            return f"minimum off time: asleep until {group.locked_off_until_s:.0f} s"
        ahead = np.asarray(self.problem.price_usd_per_mwh[step:])
        if group.wake_loss_s > 0 and (ahead > breakeven).any():
            return (
                f"price {price:.0f} $/MWh below {group.model} breakeven {breakeven:.0f} only "
                f"briefly: waking loses {group.wake_loss_s / 60:.0f} min of hashing"
            )
        return f"{group.model} held asleep by the plan's horizon at price {price:.0f} $/MWh"

    def gpu_reason(self, index: int, step: int) -> str:
        gpu = self.problem.gpu_groups[index]
        capped = int(self.schedule.gpu_capped_nodes[index, step])
        paused = int(self.schedule.gpu_paused_nodes[index, step])
        if capped + paused == 0:
            return ""
        what = f"{paused} nodes paused" if paused else f"{capped} nodes capped"
        event = self._event_note(step)
        if event:
            return f"{event}; {what}"
        price = self.problem.price_usd_per_mwh[step]
        if self._limit_binds(step):
            cap_mw = self.problem.cap_watts()[step] / 1e6
            return f"site limit: {what} to make room within {cap_mw:.1f} MW"
        reserve = self.problem.allowance_value_usd_per_node_hour.get(gpu.contract, 0.0)
        return (
            f"price {price:.0f} $/MWh: {what}"
            f" ({gpu.contract} allowance worth {reserve:.0f} $/node-hour)"
        )


def model_value(problem: Problem, outcome: Outcome) -> float:
    """The model's objective for an outcome: profit less the reservation value of allowance
    spent and the price of any watt over the cap."""
    reserved = sum(
        problem.allowance_value_usd_per_node_hour.get(name, 0.0) * used
        for name, used in outcome.allowance_used_node_hours.items()
    )
    return outcome.profit_usd - reserved - SOFT_LIMIT_USD_PER_MWH * outcome.over_limit_mwh
