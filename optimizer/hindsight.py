"""The hindsight bound: the same model over the whole period, given the true prices.

It is what every replay reports against: the best any strategy could have done on the same plant
knowing the future. Every step is decided on its own (no move blocking) and allowance has no
reservation value, since the whole billing period is in view.

A long period is solved in consecutive chunks cut at billing-period boundaries (by default
monthly, where allowances reset), each starting from the state the previous one ended in. The
only coupling lost at a cut is foresight across it: a miner's waking and minimum off time, and a
contract's notice, are honoured at the cut but not planned across it.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import numpy as np

from gridpilot.optimizer.plan import Plan, PlanStatus
from gridpilot.optimizer.problem import AsicGroup, GpuGroup, Problem
from gridpilot.optimizer.schedule import Schedule
from gridpilot.optimizer.solve import solve

_MONTH_S = 31 * 86_400.0


def hindsight(problem: Problem, *, chunk_s: float = _MONTH_S) -> Plan:
    base, parts = _solved(problem, chunk_s)
    if len(parts) == 1:
        return parts[0]
    schedule = _joined(base, parts)
    statuses = {p.status for p in parts}
    worst = next(
        s for s in (PlanStatus.FALLBACK, PlanStatus.FEASIBLE, PlanStatus.OPTIMAL) if s in statuses
    )
    return Plan(
        problem=base,
        schedule=schedule,
        status=worst,
        solver=parts[0].solver,
        joined_gap=max(p.gap for p in parts),
        build_s=sum(p.build_s for p in parts),
        solve_s=sum(p.solve_s for p in parts),
        note="; ".join(p.note for p in parts if p.note),
    )


def hindsight_schedule(problem: Problem, *, chunk_s: float = _MONTH_S) -> Schedule:
    """The bound's setpoints alone: a replay runs them on its plant and scores them there, so
    scoring the year's on the problem too would be work for nothing."""
    base, parts = _solved(problem, chunk_s)
    return parts[0].schedule if len(parts) == 1 else _joined(base, parts)


def _solved(problem: Problem, chunk_s: float) -> tuple[Problem, list[Plan]]:
    """The problem as the bound solves it, and its chunks' plans."""
    base = replace(
        problem,
        options=replace(problem.options, blocking=()),
        allowance_value_usd_per_node_hour={},
    )
    offsets = base.step_offsets_s()
    cuts = _cuts(base, offsets, chunk_s)
    if len(cuts) == 2:  # one chunk
        return base, [solve(base)]
    parts: list[Plan] = []
    state = base
    for first, last in pairwise(cuts):
        chunk = _chunk(state, first, last)
        plan = solve(chunk)
        parts.append(plan)
        state = _carry(state, chunk, plan.schedule)
    return base, parts


def _joined(base: Problem, parts: list[Plan]) -> Schedule:
    return Schedule(
        asic_units_on=np.concatenate([p.schedule.asic_units_on for p in parts], axis=1),
        asic_watts_per_unit=np.concatenate([p.schedule.asic_watts_per_unit for p in parts], axis=1),
        gpu_level=np.concatenate([p.schedule.gpu_level for p in parts], axis=1),
        gpu_capped_nodes=np.concatenate([p.schedule.gpu_capped_nodes for p in parts], axis=1),
        gpu_paused_nodes=np.concatenate([p.schedule.gpu_paused_nodes for p in parts], axis=1),
        reserve_watts=(
            np.concatenate([p.schedule.held_watts(len(base.programs.reserves)) for p in parts], 1)
            if base.programs.reserves
            else None
        ),
    )


def _cuts(problem: Problem, offsets: np.ndarray, chunk_s: float) -> list[int]:
    """Step indices where chunks begin (plus the end): at billing-period starts where the
    problem has budgets, else every `chunk_s`."""
    horizon_s = float(offsets[-1] + problem.step_s[-1])
    starts = sorted(
        {(b.period_start - problem.start).total_seconds() for b in problem.budgets}
        | {(b.period_end - problem.start).total_seconds() for b in problem.budgets}
    )
    starts = [s for s in starts if 0 < s < horizon_s]
    if not starts:
        starts = list(np.arange(chunk_s, horizon_s, chunk_s))
    indices = {0, problem.steps}
    indices |= {int(np.searchsorted(offsets, s - 1e-9)) for s in starts}
    return sorted(i for i in indices if 0 <= i <= problem.steps)


def _chunk(problem: Problem, first: int, last: int) -> Problem:
    programs = problem.programs
    return replace(
        problem,
        start=problem.step_start(first),
        step_s=problem.step_s[first:last],
        price_usd_per_mwh=problem.price_usd_per_mwh[first:last],
        hashprice_usd_per_th_day=problem.hashprice_usd_per_th_day[first:last],
        programs=replace(
            programs,
            reserves=tuple(
                replace(
                    r,
                    usd_per_mw_h=r.usd_per_mw_h[first:last],
                    max_mw=r.max_mw[first:last],
                    awarded_mw=r.awarded_mw[first:last],
                )
                for r in programs.reserves
            ),
            transmission_usd_per_mwh=programs.transmission_usd_per_mwh[first:last],
        ),
    )


def _carry(whole: Problem, chunk: Problem, schedule: Schedule) -> Problem:
    """The whole problem with its groups in the state the chunk's schedule ends in. Units put to
    sleep within their minimum off time of the end stay locked until it has passed for all."""
    dt = np.asarray(chunk.step_s)
    ends = np.cumsum(dt)
    horizon_s = float(ends[-1])
    asics: list[AsicGroup] = []
    for index, group in enumerate(chunk.asic_groups):
        on = schedule.asic_units_on[index]
        locked, until = 0, 0.0
        if group.min_off_s > 0:
            slept = np.maximum(0, -np.diff(on, prepend=group.on_now))
            recent = ends - dt > horizon_s - group.min_off_s
            locked = int(min(group.units - on[-1], slept[recent].sum()))
            until = group.min_off_s
        asics.append(
            replace(
                group,
                units_on_now=int(on[-1]),
                units_locked_off=locked,
                locked_off_until_s=until if locked else 0.0,
            )
        )
    gpus: list[GpuGroup] = []
    for index, gpu in enumerate(chunk.gpu_groups):
        curtailed = schedule.gpu_capped_nodes[index] + schedule.gpu_paused_nodes[index]
        running = 0.0
        for t in range(curtailed.size - 1, -1, -1):
            if curtailed[t] == 0:
                break
            running += float(dt[t])
        gpus.append(replace(gpu, curtailed_nodes_now=int(curtailed[-1]), curtailed_for_s=running))
    return replace(whole, asic_groups=tuple(asics), gpu_groups=tuple(gpus))
