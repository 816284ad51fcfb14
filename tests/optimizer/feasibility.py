"""An independent reading of the problem's rules, to check schedules against.

Written from the docstrings of `optimizer.problem`, not from the model, and at the level of single
units and nodes rather than the model's aggregated counts:

- an ASIC group runs 0 to `units` units at nominal watts; `units_locked_off` of the units asleep
  now may not wake before `locked_off_until_s`; a unit put to sleep in a step stays asleep for at
  least `min_off_s` from that step's start (units asleep now have slept long enough);
- a GPU group's nodes are at full power, capped at one level per step, or paused; outside grid
  events a firm contract's nodes are never touched, a flexible one's are only capped, to levels at
  or above `min_power_fraction` of full power, an interruptible one's are only paused; in a step
  that overlaps a grid event, any node may be capped to any level or paused;
- within `notice_s` of the start, outside grid events, a node may be curtailed only if it already
  is (it stays so; nothing new is curtailed without notice);
- no node stays curtailed (capped or paused) longer than the contract's `max_event_s`, counting
  how long its current curtailment has already run (`curtailed_for_s`);
- in each billing period, the node-hours curtailed in steps outside grid events do not exceed
  what is left of the allowance: going beyond it is allowed only in grid events (and penalised).

- the site's draw stays within its limit less the margin, and within the cap of any grid event
  overlapping the step, wherever the site can surely get under it: with every ASIC asleep and
  every GPU as far down as its contract surely allows (paused in a grid event, unless a
  longest-event limit could stop it; at full power outside events, where the allowance, notice
  and event length may all forbid curtailing). Where it cannot, a schedule may go over, and is
  scored with the price of the energy over.
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np

from gridpilot.optimizer.problem import GpuGroup, Problem, Tier
from gridpilot.optimizer.schedule import Schedule

_EPS = 1e-9


def violations(problem: Problem, schedule: Schedule) -> list[str]:
    """Every rule the schedule breaks, in words; empty when it is feasible."""
    return group_violations(problem, schedule) + cap_violations(problem, schedule)


def group_violations(problem: Problem, schedule: Schedule) -> list[str]:
    """The rules that bind each group on its own (all but the site's cap), broken."""
    found: list[str] = []
    found += _asic_violations(problem, schedule)
    found += _gpu_violations(problem, schedule)
    found += _allowance_violations(problem, schedule)
    return found


def site_watts(problem: Problem, schedule: Schedule) -> list[float]:
    """The site's draw in each step, from the units' and nodes' nameplate watts."""
    draw = [
        sum(
            g.overhead_factor
            * g.nodes
            * (g.gpus_per_node * g.cap_levels[0].watts_per_gpu + g.host_watts_per_node)
            for g in problem.gpu_groups
        )
    ] * problem.steps
    for t in range(problem.steps):
        for g, group in enumerate(problem.asic_groups):
            draw[t] += (
                group.overhead_factor
                * float(schedule.asic_units_on[g, t])
                * float(schedule.asic_watts_per_unit[g, t])
            )
        for h, gpu in enumerate(problem.gpu_groups):
            level = gpu.cap_levels[int(schedule.gpu_level[h, t])].watts_per_gpu
            full = gpu.cap_levels[0].watts_per_gpu
            capped = float(schedule.gpu_capped_nodes[h, t])
            paused = float(schedule.gpu_paused_nodes[h, t])
            draw[t] -= (
                gpu.overhead_factor
                * gpu.gpus_per_node
                * (capped * (full - level) + paused * (full - gpu.idle_watts_per_gpu))
            )
    return draw


def lowest_sure_watts(problem: Problem) -> list[float]:
    """What the site draws per step with every ASIC asleep and every GPU as far down as its
    contract surely lets it go (see the module's docstring)."""
    event = step_events(problem)
    horizon_s = sum(problem.step_s)
    draw = [0.0] * problem.steps
    for gpu in problem.gpu_groups:
        contract = problem.contract(gpu.contract)
        unlimited = (
            contract.max_event_s is None or contract.max_event_s >= gpu.curtailed_for_s + horizon_s
        )
        full = gpu.gpus_per_node * gpu.cap_levels[0].watts_per_gpu + gpu.host_watts_per_node
        paused = gpu.gpus_per_node * gpu.idle_watts_per_gpu + gpu.host_watts_per_node
        for t in range(problem.steps):
            per_node = paused if event[t] and unlimited else full
            draw[t] += gpu.overhead_factor * gpu.nodes * per_node
    return draw


def site_caps(problem: Problem) -> list[float]:
    """The site's allowed draw in each step: its limit less the margin, or the lowest cap of a
    grid event overlapping the step."""
    offsets = [float(x) for x in problem.step_offsets_s()]
    caps = []
    for t, start_s in enumerate(offsets):
        end_s = start_s + problem.step_s[t]
        cap = problem.site_limit_watts - problem.site_margin_watts
        for e in problem.events:
            if (e.start - problem.start).total_seconds() < end_s and (
                e.end - problem.start
            ).total_seconds() > start_s:
                cap = min(cap, e.max_site_watts)
        caps.append(cap)
    return caps


def cap_violations(problem: Problem, schedule: Schedule) -> list[str]:
    """Steps over a cap that the site could surely get under."""
    return [
        f"step {t}: {draw:.3f} W over the cap of {cap:.3f} W"
        for t, (draw, cap, lowest) in enumerate(
            zip(
                site_watts(problem, schedule),
                site_caps(problem),
                lowest_sure_watts(problem),
                strict=True,
            )
        )
        if lowest <= cap and draw > cap + 1e-6
    ]


def step_events(problem: Problem) -> list[bool]:
    """Whether each step overlaps a grid event."""
    offsets = [float(x) for x in problem.step_offsets_s()]
    active = []
    for t, start_s in enumerate(offsets):
        end_s = start_s + problem.step_s[t]
        active.append(
            any(
                (e.start - problem.start).total_seconds() < end_s
                and (e.end - problem.start).total_seconds() > start_s
                for e in problem.events
            )
        )
    return active


def _asic_violations(problem: Problem, schedule: Schedule) -> list[str]:
    found: list[str] = []
    offsets = [float(x) for x in problem.step_offsets_s()]
    for g, group in enumerate(problem.asic_groups):
        on = [int(x) for x in schedule.asic_units_on[g]]
        if any(n < 0 or n > group.units for n in on):
            found.append(f"{group.name}: units on {on} outside 0..{group.units}")
            continue
        if group.power_target is None and not np.allclose(
            schedule.asic_watts_per_unit[g], group.watts_per_unit
        ):
            found.append(f"{group.name}: watts per unit differ from nominal")
        # Each asleep unit is represented by the time it may wake again.
        free = group.units - group.on_now - group.units_locked_off
        asleep = [-np.inf] * free + [group.locked_off_until_s] * group.units_locked_off
        previous = group.on_now
        for t, now in enumerate(on):
            if now > previous:
                ready = sorted(x for x in asleep if x <= offsets[t] + _EPS)
                if len(ready) < now - previous:
                    found.append(
                        f"{group.name}: step {t} wakes {now - previous} units, "
                        f"{len(ready)} may wake"
                    )
                    break
                for x in ready[: now - previous]:
                    asleep.remove(x)
            elif now < previous:
                asleep += [offsets[t] + group.min_off_s] * (previous - now)
            previous = now
    return found


def _gpu_violations(problem: Problem, schedule: Schedule) -> list[str]:
    found: list[str] = []
    event = step_events(problem)
    for h, gpu in enumerate(problem.gpu_groups):
        contract = problem.contract(gpu.contract)
        full = gpu.cap_levels[0].watts_per_gpu
        capped = [int(x) for x in schedule.gpu_capped_nodes[h]]
        paused = [int(x) for x in schedule.gpu_paused_nodes[h]]
        level = [int(x) for x in schedule.gpu_level[h]]
        for t in range(problem.steps):
            where = f"{gpu.name} step {t}"
            if capped[t] < 0 or paused[t] < 0 or capped[t] + paused[t] > gpu.nodes:
                found.append(f"{where}: {capped[t]} capped + {paused[t]} paused nodes")
            if not 0 <= level[t] < len(gpu.cap_levels):
                found.append(f"{where}: no cap level {level[t]}")
                continue
            if event[t]:
                continue
            if contract.tier is Tier.FIRM and capped[t] + paused[t]:
                found.append(f"{where}: firm contract curtailed outside a grid event")
            if contract.tier is Tier.FLEXIBLE and paused[t]:
                found.append(f"{where}: flexible contract paused outside a grid event")
            if contract.tier is Tier.INTERRUPTIBLE and capped[t]:
                found.append(f"{where}: interruptible contract capped outside a grid event")
            if (
                capped[t]
                and gpu.cap_levels[level[t]].watts_per_gpu
                < contract.min_power_fraction * full - _EPS
            ):
                found.append(f"{where}: capped below the contract's floor")
        curtailed = tuple(c + p for c, p in zip(capped, paused, strict=True))
        if not _nodes_can_follow(problem, gpu, curtailed, tuple(event)):
            found.append(
                f"{gpu.name}: no assignment of nodes curtails {curtailed} within the "
                f"contract's notice and longest event"
            )
    return found


def _nodes_can_follow(
    problem: Problem, gpu: GpuGroup, curtailed: tuple[int, ...], event: tuple[bool, ...]
) -> bool:
    """Whether single nodes can be curtailed so that `curtailed` of them are in each step,
    honouring notice and the longest event. Searches every choice of nodes, step by step."""
    contract = problem.contract(gpu.contract)
    offsets = [float(x) for x in problem.step_offsets_s()]
    ends = [o + s for o, s in zip(offsets, problem.step_s, strict=True)]
    longest = np.inf if contract.max_event_s is None else contract.max_event_s

    @cache
    def reachable(t: int, state: tuple[float | None, ...]) -> bool:
        # `state`: for each node, when its current curtailment began (None: not curtailed).
        if t == problem.steps:
            return True
        if not 0 <= curtailed[t] <= gpu.nodes:
            return False
        needs_notice = not event[t] and offsets[t] < contract.notice_s - _EPS
        tried: set[tuple[float | None, ...]] = set()
        for chosen in itertools.combinations(range(gpu.nodes), curtailed[t]):
            after: list[float | None] = [None] * gpu.nodes
            ok = True
            for node in chosen:
                began = state[node]
                if began is None:
                    if needs_notice:
                        ok = False
                        break
                    began = offsets[t]
                if ends[t] - began > longest + _EPS:
                    ok = False
                    break
                after[node] = began
            key = tuple(sorted(after, key=lambda b: (b is None, b or 0.0)))
            if ok and key not in tried:
                tried.add(key)
                if reachable(t + 1, key):
                    return True
        return False

    now = gpu.curtailed_nodes_now
    initial = (-gpu.curtailed_for_s,) * now + (None,) * (gpu.nodes - now)
    return reachable(0, initial)


def _allowance_violations(problem: Problem, schedule: Schedule) -> list[str]:
    found: list[str] = []
    event = step_events(problem)
    offsets = [float(x) for x in problem.step_offsets_s()]
    for contract in problem.contracts:
        periods = [
            (
                (b.period_start - problem.start).total_seconds(),
                (b.period_end - problem.start).total_seconds(),
                b.node_hours_left,
            )
            for b in problem.budgets
            if b.contract == contract.name
        ] or [(-np.inf, np.inf, contract.allowance_node_hours)]
        for start_s, end_s, left in periods:
            used = 0.0
            for h, gpu in enumerate(problem.gpu_groups):
                if gpu.contract != contract.name:
                    continue
                for t in range(problem.steps):
                    if start_s <= offsets[t] < end_s and not event[t]:
                        nodes = schedule.gpu_capped_nodes[h, t] + schedule.gpu_paused_nodes[h, t]
                        used += float(nodes) * problem.step_s[t] / 3_600.0
            if used > left + 1e-6:
                found.append(
                    f"{contract.name}: {used:.4f} node-hours curtailed outside grid events in "
                    f"a period with {left:.4f} left"
                )
    return found
