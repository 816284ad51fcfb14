"""`solve(problem) -> Plan`: the optimizer's one entry point.

Merge identical groups, build the linear model, solve it under a time limit, turn the solution
into whole units and nodes that still respect the site's cap and the contracts' allowances, and
score it. Any failure of the solver yields the merit-order fallback, never an exception or
"no plan"; only an invalid problem raises (`ProblemError`, at construction).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from gridpilot.optimizer.aggregate import (
    AsicClass,
    GpuClass,
    asic_classes,
    gpu_classes,
    split_nodes,
    split_units,
)
from gridpilot.optimizer.economics import SECONDS_PER_HOUR
from gridpilot.optimizer.horizon import block_index, coarsen, stretch
from gridpilot.optimizer.merit import fallback_plan
from gridpilot.optimizer.model import (
    ClassSolution,
    build,
    gpu_droppable_watts_per_node,
    reserve_sets,
    run,
)
from gridpilot.optimizer.plan import Plan, PlanStatus
from gridpilot.optimizer.problem import FloatArray, Problem
from gridpilot.optimizer.schedule import (
    IntArray,
    Schedule,
    allowance_periods,
)

# LP values within this of an integer are that integer (simplex round-off).
_ROUNDING_TOLERANCE = 1e-6


def solve(problem: Problem) -> Plan:
    """Plan the horizon. With move blocking (`SolveOptions.blocking`) the later steps are decided
    in blocks; the plan is always scored on the problem's own steps."""
    block = block_index(problem, problem.options.blocking)
    blocked = int(block[-1]) + 1 < problem.steps
    modelled = coarsen(problem, block) if blocked else problem
    asics = asic_classes(modelled.asic_groups)
    gpus = gpu_classes(modelled.gpu_groups)
    started = time.perf_counter()  # a duration for the report, not a decision input
    model = build(modelled, asics, gpus)
    build_s = time.perf_counter() - started
    try:
        result = run(model, problem.options)
    except (RuntimeError, ValueError, MemoryError) as error:
        return replace(fallback_plan(problem, f"solver error: {error}"), build_s=build_s)
    if result.solution is None:
        note = f"{result.solver} returned {result.status} within {problem.options.time_limit_s} s"
        return replace(fallback_plan(problem, note), build_s=build_s, solve_s=result.solve_s)
    schedule = _to_schedule(modelled, asics, gpus, result.solution)
    if blocked:
        schedule = stretch(schedule, block)
    status = PlanStatus.OPTIMAL if result.status == "OPTIMAL" else PlanStatus.FEASIBLE
    return Plan(
        problem=problem,
        schedule=schedule,
        status=status,
        solver=result.solver,
        build_s=build_s,
        solve_s=result.solve_s,
        bound_usd=result.bound_usd,
    )


# From fractions to whole units --------------------------------------------------------------------


def _to_schedule(
    problem: Problem,
    asics: tuple[AsicClass, ...],
    gpus: tuple[GpuClass, ...],
    solution: ClassSolution,
) -> Schedule:
    steps = problem.steps
    level, capped, paused = _round_gpus(problem, gpus, solution)
    on = np.floor(solution.on + _ROUNDING_TOLERANCE).astype(np.int64)
    watts = solution.watts_per_unit.copy()
    for a, asic_class in enumerate(asics):
        nominal = asic_class.group.watts_per_unit
        watts[a] = np.where(watts[a] > 0, np.minimum(watts[a], nominal), nominal)
    _shed_to_cap(
        problem,
        asics=asics,
        gpus=gpus,
        on=on,
        watts=watts,
        level=level,
        capped=capped,
        paused=paused,
    )
    _respect_min_off(problem, asics, on)
    held = _fit_reserves(
        problem, asics, gpus, solution, on=on, watts=watts, capped=capped, paused=paused
    )

    schedule = Schedule(
        asic_units_on=np.zeros((len(problem.asic_groups), steps), dtype=np.int64),
        asic_watts_per_unit=np.zeros((len(problem.asic_groups), steps)),
        gpu_level=np.zeros((len(problem.gpu_groups), steps), dtype=np.int64),
        gpu_capped_nodes=np.zeros((len(problem.gpu_groups), steps), dtype=np.int64),
        gpu_paused_nodes=np.zeros((len(problem.gpu_groups), steps), dtype=np.int64),
        reserve_watts=held,
    )
    for a, asic_class in enumerate(asics):
        members = np.array(asic_class.members)
        groups = [problem.asic_groups[i] for i in asic_class.members]
        schedule.asic_units_on[members] = split_units(on[a], groups, problem.step_offsets_s())
        schedule.asic_watts_per_unit[members] = watts[a]
    ends = problem.step_offsets_s() + np.asarray(problem.step_s)
    for h, gpu_class in enumerate(gpus):
        members = np.array(gpu_class.members)
        split_capped, split_paused = split_nodes(
            capped[h],
            paused[h],
            [problem.gpu_groups[i] for i in gpu_class.members],
            ends,
            problem.contract(gpu_class.group.contract).max_event_s,
        )
        schedule.gpu_capped_nodes[members] = split_capped
        schedule.gpu_paused_nodes[members] = split_paused
        schedule.gpu_level[members] = level[h]
    return schedule


def _fit_reserves(
    problem: Problem,
    asics: tuple[AsicClass, ...],
    gpus: tuple[GpuClass, ...],
    solution: ClassSolution,
    *,
    on: IntArray,
    watts: FloatArray,
    capped: IntArray,
    paused: IntArray,
) -> FloatArray | None:
    """The reserves the solution holds, per product, trimmed to what each qualification set
    can still drop once units and nodes are whole (rounding down may leave a set a unit
    short); None when the problem has no reserve products."""
    if not problem.programs.reserves:
        return None
    total = np.zeros((len(problem.programs.reserves), problem.steps))
    for products, (asic_members, gpu_members) in reserve_sets(asics, gpus).items():
        held = solution.reserve_watts.get(products)
        if held is None:
            continue
        droppable = np.zeros(problem.steps)
        for a in asic_members:
            droppable += asics[a].group.overhead_factor * watts[a] * on[a]
        for h in gpu_members:
            group = gpus[h].group
            full = group.nodes - capped[h] - paused[h]
            droppable += gpu_droppable_watts_per_node(problem, group) * full
        wanted = held.sum(axis=0)
        scale = np.where(wanted > droppable, droppable / np.maximum(wanted, 1e-9), 1.0)
        total += held * scale
    return total


def _round_gpus(
    problem: Problem, gpus: tuple[GpuClass, ...], solution: ClassSolution
) -> tuple[IntArray, IntArray, IntArray]:
    """Whole nodes, then any allowance overrun that rounding caused trimmed away."""
    paused = np.rint(solution.paused).astype(np.int64)
    nodes = np.array([c.group.nodes for c in gpus], dtype=np.int64).reshape(len(gpus), 1)
    capped = np.minimum(np.rint(solution.capped).astype(np.int64), nodes - paused)
    _trim_allowance(problem, gpus, capped, paused)
    return solution.cap_level.copy(), capped, paused


def _trim_allowance(
    problem: Problem, gpus: tuple[GpuClass, ...], capped: IntArray, paused: IntArray
) -> None:
    """Rounding up may spend a fraction of a node-hour more than is left: give it back from the
    latest steps outside grid events (in events, going beyond is allowed and penalised, so only
    what is curtailed outside them must fit in the allowance)."""
    hours = np.asarray(problem.step_s) / SECONDS_PER_HOUR
    offsets = problem.step_offsets_s()
    event = problem.event_active()
    for contract in problem.contracts:
        members = [h for h, c in enumerate(gpus) if c.group.contract == contract.name]
        for start_s, end_s, left in allowance_periods(problem, contract.name):
            inside = (offsets >= start_s) & (offsets < end_s) & ~event
            spent = sum(
                float(np.sum((capped[h] + paused[h])[inside] * hours[inside])) for h in members
            )
            for t in np.flatnonzero(inside)[::-1]:
                if spent <= left + 1e-9:
                    break
                for h in members:
                    while spent > left + 1e-9 and capped[h, t] + paused[h, t] > 0:
                        if capped[h, t]:
                            capped[h, t] -= 1
                        else:
                            paused[h, t] -= 1
                        spent -= hours[t]


def _shed_to_cap(
    problem: Problem,
    *,
    asics: tuple[AsicClass, ...],
    gpus: tuple[GpuClass, ...],
    on: IntArray,
    watts: FloatArray,
    level: IntArray,
    capped: IntArray,
    paused: IntArray,
) -> None:
    """Where rounding left a step over the cap, put the least efficient miners to sleep."""
    site = np.zeros(problem.steps)
    for a, asic_class in enumerate(asics):
        site += asic_class.group.overhead_factor * on[a] * watts[a]
    for h, gpu_class in enumerate(gpus):
        gpu = gpu_class.group
        level_watts = np.array([gpu.node_watts(k) for k in range(len(gpu.cap_levels))])
        full = gpu.nodes - capped[h] - paused[h]
        site += gpu.overhead_factor * (
            full * gpu.full_node_watts
            + capped[h] * level_watts[level[h]]
            + paused[h] * gpu.paused_node_watts
        )
    over = site - problem.cap_watts()
    if not (over > 1e-6).any():
        return
    order = sorted(range(len(asics)), key=lambda a: -asics[a].group.joules_per_th)
    for a in order:
        unit_watts = asics[a].group.overhead_factor * watts[a]
        shed = np.where(
            over > 1e-6, np.minimum(on[a], np.ceil(over / np.maximum(unit_watts, 1e-9))), 0
        ).astype(np.int64)
        on[a] -= shed
        over -= shed * unit_watts


def _respect_min_off(problem: Problem, asics: tuple[AsicClass, ...], on: IntArray) -> None:
    """Rounding can wake a unit sooner than its minimum off time allows: hold it asleep.
    In place, one pass over the steps for all classes at once."""
    offsets = problem.step_offsets_s()
    min_off = np.array([c.group.min_off_s for c in asics])
    chosen = np.flatnonzero(min_off > 0)
    if not chosen.size:
        return
    units = np.array([asics[a].group.units for a in chosen])
    previous = np.array([asics[a].group.on_now for a in chosen])
    first = np.searchsorted(offsets, offsets[None, :] - min_off[chosen, None] + 1e-9, side="left")
    slept = np.zeros((chosen.size, problem.steps + 1), dtype=np.int64)  # cumulative sleeps
    rows = np.arange(chosen.size)
    for t in range(problem.steps):
        recently_slept = slept[:, t] - slept[rows, first[:, t]]
        current = on[chosen, t]
        waking = current > previous
        limit = np.maximum(previous, units - recently_slept)
        current = np.where(waking, np.minimum(current, limit), current)
        on[chosen, t] = current
        slept[:, t + 1] = slept[:, t] + np.maximum(0, previous - current)
        previous = current
