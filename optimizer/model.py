"""The linear model of one planning horizon, built from numpy arrays and solved by OR-Tools.

Columns, per class (merged groups) and step:

- ``on``     ASIC units awake
- ``wake``   ASIC units woken in the step (they draw power but hash nothing for `wake_loss_s`)
- ``tgt``    ASIC class watts where the firmware has a power target (``min*on`` to ``max*on``)
- ``cap``    GPU nodes capped at one cap level (one column per usable level)
- ``pause``  GPU nodes paused
- ``start``  GPU nodes whose curtailment begins in the step (only where an event length is limited)
- ``excess`` node-hours beyond the allowance (only in grid events; penalised)
- ``slack``  watts over the site's cap (priced at `SOFT_LIMIT_USD_PER_MWH`, so never "infeasible")
- ``hold``   watts held for a reserve product, per group of classes qualified alike and step:
             at most what those classes draw and could drop (miners awake; GPU nodes at full
             power, down to their contract's deepest cap or to a pause)
- ``short``  watts of a reserve award not held (charged at the product's failure price)

The objective is profit: hash revenue less waking losses, plus AI revenue, less energy cost
(the price plus any expected 4CP transmission charge per MWh), penalties and the reservation
value of allowance spent, plus what reserves held earn less their expected deployment cost and
the failure charge of awards not held. The whole matrix is assembled as COO
triplets in numpy and handed to OR-Tools in one call; Python never loops over terms.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from ortools.linear_solver.python import model_builder_helper as mbh

from gridpilot.optimizer.aggregate import AsicClass, GpuClass
from gridpilot.optimizer.economics import SECONDS_PER_DAY, SECONDS_PER_HOUR, WATT_SECONDS_PER_MWH
from gridpilot.optimizer.problem import (
    AsicGroup,
    FloatArray,
    GpuGroup,
    Problem,
    ReserveProduct,
    SolveOptions,
    Tier,
)
from gridpilot.optimizer.schedule import (
    SOFT_LIMIT_USD_PER_MWH,
    allowance_periods,
    curtailable,
    flexible_floor_level,
)

IntArray = npt.NDArray[np.int64]
INF = np.inf


class _Columns:
    """Allocates column blocks and collects their bounds and objective coefficients."""

    def __init__(self) -> None:
        self.count = 0
        self.lower: list[FloatArray] = []
        self.upper: list[FloatArray] = []
        self.objective: list[FloatArray] = []

    def add(self, lower: FloatArray, upper: FloatArray, objective: FloatArray) -> IntArray:
        shape = np.shape(upper)
        size = math.prod(shape)
        index = np.arange(self.count, self.count + size).reshape(shape)
        self.count += size
        self.lower.append(_spread(lower, shape, size))
        self.upper.append(_spread(upper, shape, size))
        self.objective.append(_spread(objective, shape, size))
        return index


def _spread(values: FloatArray | float, shape: tuple[int, ...], size: int) -> FloatArray:
    """`values` broadcast to `shape`, flattened, as a float64 array of its own. The two common
    cases (already that shape, or one value) without broadcasting's overhead: a model is built
    for every solve."""
    array = np.asarray(values, dtype=np.float64)
    if array.shape == shape:
        return array.ravel().copy()
    if array.size == 1:
        return np.full(size, array.reshape(-1)[0])
    return np.broadcast_to(array, shape).ravel().copy()


class _Rows:
    """Collects constraint rows as COO triplets: each `add` appends a block of rows."""

    def __init__(self) -> None:
        self.count = 0
        self.lower: list[FloatArray] = []
        self.upper: list[FloatArray] = []
        self.rows: list[IntArray] = []
        self.cols: list[IntArray] = []
        self.values: list[FloatArray] = []

    def add(
        self,
        lower: FloatArray | float,
        upper: FloatArray | float,
        terms: list[tuple[IntArray, IntArray, FloatArray | float]],
        count: int,
    ) -> IntArray:
        """Add `count` rows; each term is (row offset within the block, column, coefficient)."""
        first = self.count
        self.count += count
        self.lower.append(_filled(lower, count))
        self.upper.append(_filled(upper, count))
        for local_rows, cols, coefficient in terms:
            rows_in, cols_in = np.asarray(local_rows), np.asarray(cols)
            values = np.asarray(coefficient, dtype=np.float64)
            if rows_in.shape == cols_in.shape and values.shape in ((), rows_in.shape):
                # The common cases, without broadcasting's overhead (models are built per solve).
                self.rows.append(rows_in.ravel() + first)
                self.cols.append(cols_in.ravel())
                self.values.append(_spread(values, rows_in.shape, rows_in.size))
                continue
            shape = np.broadcast_shapes(rows_in.shape, cols_in.shape, np.shape(coefficient))
            self.rows.append(np.broadcast_to(rows_in, shape).ravel() + first)
            self.cols.append(np.broadcast_to(cols_in, shape).ravel())
            self.values.append(np.broadcast_to(values, shape).ravel())
        return np.arange(first, self.count)


def _filled(bound: FloatArray | float, count: int) -> FloatArray:
    return _spread(bound, (count,), count)


@dataclass(frozen=True, slots=True, eq=False)
class LinearModel:
    """The assembled model plus the column blocks needed to read a solution back."""

    lower: FloatArray
    upper: FloatArray
    objective: FloatArray
    offset: float
    row_lower: FloatArray
    row_upper: FloatArray
    matrix: sp.csr_matrix
    integer: IntArray
    on: IntArray  # (A, T)
    target: dict[int, IntArray]  # class -> (T,) watts columns
    cap: IntArray  # (H, T) columns of capped nodes, -1 where capping is not allowed at all
    cap_level: IntArray  # (H, T) the level capped nodes go to
    pause: IntArray  # (H, T) columns of paused nodes, -1 where pausing is not allowed at all
    # class -> [(level, (T,) columns of nodes capped at that shallower level)], where one applies
    shallower: dict[int, list[tuple[int, IntArray]]]
    # Per qualification set, the (T,) hold columns of each product it carries (problem order).
    reserve: dict[frozenset[str], tuple[tuple[int, IntArray], ...]] = field(default_factory=dict)
    reserve_count: int = 0  # the problem's reserve products

    @property
    def columns(self) -> int:
        return self.lower.size

    @property
    def nonzeros(self) -> int:
        return int(self.matrix.nnz)


@dataclass(frozen=True, slots=True, eq=False)
class ClassSolution:
    """Fractional (LP) or integer values per class and step, read off the solver."""

    on: FloatArray  # (A, T)
    watts_per_unit: FloatArray  # (A, T)
    cap_level: IntArray  # (H, T)
    capped: FloatArray  # (H, T) nodes
    paused: FloatArray  # (H, T) nodes
    # Per qualification set, (R, T) watts held per product (rows of products it does not carry
    # are zero).
    reserve_watts: dict[frozenset[str], FloatArray] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SolverResult:
    status: str  # OPTIMAL, FEASIBLE, or the solver's word for why there is no solution
    solution: ClassSolution | None
    objective_usd: float
    bound_usd: float
    solver: str
    solve_s: float


def _window_starts(offsets: FloatArray, ends: FloatArray, length_s: float) -> IntArray:
    """For each step t, the first step j such that steps j..t lie within `length_s` of t's end."""
    return np.searchsorted(offsets, ends - length_s - 1e-9, side="left").astype(np.int64)


@dataclass(frozen=True, slots=True, eq=False)
class _Context:
    """What every block of the model shares: the steps, their prices, and the growing model."""

    problem: Problem
    steps: int
    dt: FloatArray
    hours: FloatArray
    offsets: FloatArray
    ends: FloatArray
    price: FloatArray
    hash_usd_per_th_s: FloatArray
    usd_per_watt_step: FloatArray  # energy cost of one watt for a step
    cols: _Columns
    rows: _Rows
    step_index: IntArray
    site_terms: list[tuple[IntArray, IntArray, FloatArray | float]]
    integer: list[IntArray]


@dataclass(slots=True, eq=False)
class _GpuBlock:
    cap_cols: IntArray
    cap_levels: IntArray
    pause_cols: IntArray
    shallower: dict[int, list[tuple[int, IntArray]]]
    offset_usd: float
    site_constant: FloatArray  # GPU draw at full power, moved to the right-hand side
    lowest: FloatArray  # GPU draw as far down as the contracts surely allow
    contracts_use: dict[str, list[tuple[IntArray, FloatArray]]]


def build(
    problem: Problem, asics: tuple[AsicClass, ...], gpus: tuple[GpuClass, ...]
) -> LinearModel:
    steps = problem.steps
    dt = np.asarray(problem.step_s, dtype=np.float64)
    price = np.asarray(problem.price_usd_per_mwh, dtype=np.float64)
    offsets = problem.step_offsets_s()
    ctx = _Context(
        problem=problem,
        steps=steps,
        dt=dt,
        hours=dt / SECONDS_PER_HOUR,
        offsets=offsets,
        ends=offsets + dt,
        price=price,
        hash_usd_per_th_s=np.asarray(problem.hashprice_usd_per_th_day)
        * (1 - problem.pool_fee)
        / SECONDS_PER_DAY,
        # The expected 4CP charge of a MWh drawn is a price like the energy's.
        usd_per_watt_step=(price + problem.programs.transmission(steps))
        * dt
        / WATT_SECONDS_PER_MWH,
        cols=_Columns(),
        rows=_Rows(),
        step_index=np.arange(steps),
        site_terms=[],
        integer=[],
    )
    on, target_cols = _asic_block(ctx, asics)
    gpu = _gpu_block(ctx, gpus)
    _allowance_rows(ctx, gpu.contracts_use)
    reserve = _reserve_block(ctx, asics, gpus, on=on, target_cols=target_cols, gpu=gpu)
    model = _assemble(ctx, on, target_cols, gpu)
    if not reserve:
        return model
    return replace(model, reserve=reserve, reserve_count=len(problem.programs.reserves))


def _asic_block(
    ctx: _Context, asics: tuple[AsicClass, ...]
) -> tuple[IntArray, dict[int, IntArray]]:
    """Units awake per class and step, power targets, and waking and minimum off time."""
    problem = ctx.problem
    # ASIC classes -----------------------------------------------------------------------------
    n_asic = len(asics)
    units = np.array([c.group.units for c in asics], dtype=np.float64)
    on_upper = np.repeat(units[:, None], ctx.steps, axis=1)
    on_objective = np.zeros((n_asic, ctx.steps))
    for a, asic_class in enumerate(asics):
        group = asic_class.group
        if group.units_locked_off:
            locked = ctx.offsets < group.locked_off_until_s
            on_upper[a, locked] = group.units - group.units_locked_off
        hash_share_per_unit = 1.0
        if group.power_target is None:
            on_objective[a] -= group.overhead_factor * group.watts_per_unit * ctx.usd_per_watt_step
        else:
            target = group.power_target
            slope = (1 - target.hash_fraction_at_min) / (
                group.watts_per_unit - target.min_watts_per_unit
            )
            hash_share_per_unit = target.hash_fraction_at_min - slope * target.min_watts_per_unit
        on_objective[a] += group.ths_per_unit * hash_share_per_unit * ctx.hash_usd_per_th_s * ctx.dt
    on = ctx.cols.add(np.zeros(1), on_upper, on_objective)
    for a, asic_class in enumerate(asics):
        if asic_class.group.units <= problem.options.integer_max_units:
            ctx.integer.append(on[a])

    target_cols: dict[int, IntArray] = {}
    plain = np.array([c.group.power_target is None for c in asics], dtype=bool)
    ctx.site_terms.append(
        (
            np.broadcast_to(ctx.step_index, (int(plain.sum()), ctx.steps)),
            on[plain],
            np.array([c.group.overhead_factor * c.group.watts_per_unit for c in asics])[
                plain, None
            ],
        )
    )
    for a in np.flatnonzero(~plain).tolist():
        group = asics[a].group
        assert group.power_target is not None
        target = group.power_target
        slope = (1 - target.hash_fraction_at_min) / (
            group.watts_per_unit - target.min_watts_per_unit
        )
        objective = (
            group.ths_per_unit * slope * ctx.hash_usd_per_th_s * ctx.dt
            - group.overhead_factor * ctx.usd_per_watt_step
        )
        tgt = ctx.cols.add(np.zeros(1), on_upper[a] * group.watts_per_unit, objective)
        target_cols[int(a)] = tgt
        ctx.site_terms.append((ctx.step_index, tgt, group.overhead_factor))
        # The class's watts lie between its units' minimum and nominal watts.
        low: list[tuple[IntArray, IntArray, FloatArray | float]] = [
            (ctx.step_index, tgt, 1.0),
            (ctx.step_index, on[a], -target.min_watts_per_unit),
        ]
        high: list[tuple[IntArray, IntArray, FloatArray | float]] = [
            (ctx.step_index, tgt, 1.0),
            (ctx.step_index, on[a], -group.watts_per_unit),
        ]
        ctx.rows.add(0.0, INF, low, ctx.steps)
        ctx.rows.add(-INF, 0.0, high, ctx.steps)

    coupled = np.array(
        [c.group.wake_loss_s > 0 or c.group.min_off_s > 0 for c in asics], dtype=bool
    )
    if coupled.any():
        members = [asics[a].group for a in np.flatnonzero(coupled)]
        count = len(members)
        loss = np.array([g.ths_per_unit * g.wake_loss_s for g in members])[:, None]
        wake = ctx.cols.add(
            np.zeros(1),
            np.repeat(units[coupled][:, None], ctx.steps, axis=1),
            -loss * ctx.hash_usd_per_th_s[None, :],
        )
        # wake[t] >= on[t] - on[t-1], with on[-1] the units awake now
        local = np.arange(count * ctx.steps).reshape(count, ctx.steps)
        lower = np.zeros((count, ctx.steps))
        lower[:, 0] = [-g.on_now for g in members]
        ctx.rows.add(
            lower.ravel(),
            INF,
            [
                (local, wake, 1.0),
                (local, on[coupled], -1.0),
                (local[:, 1:], on[coupled][:, :-1], 1.0),
            ],
            count * ctx.steps,
        )
        min_off = np.array([g.min_off_s for g in members])
        for length_s in np.unique(min_off[min_off > 0]):
            chosen = np.flatnonzero(min_off == length_s)
            _add_min_off(
                ctx.rows,
                offsets=ctx.offsets,
                min_off_s=float(length_s),
                units=units[coupled][chosen],
                on_now=np.array([members[k].on_now for k in chosen], dtype=np.float64),
                locked=np.array(
                    [
                        np.where(
                            ctx.offsets < members[k].locked_off_until_s,
                            members[k].units_locked_off,
                            0,
                        )
                        for k in chosen
                    ],
                    dtype=np.float64,
                ),
                on=on[coupled][chosen],
                wake=wake[chosen],
            )

    return on, target_cols


def _gpu_block(ctx: _Context, gpus: tuple[GpuClass, ...]) -> _GpuBlock:
    """Capped and paused nodes per class and step, under the contracts' rules."""
    problem, steps = ctx.problem, ctx.steps
    n_gpu = len(gpus)
    deepest, may_cap, may_pause = curtailable(problem, tuple(c.group for c in gpus))
    block = _GpuBlock(
        cap_cols=np.full((n_gpu, steps), -1, dtype=np.int64),  # -1: no such column
        cap_levels=np.zeros((n_gpu, steps), dtype=np.int64),
        pause_cols=np.full((n_gpu, steps), -1, dtype=np.int64),
        shallower={},
        offset_usd=0.0,
        site_constant=np.zeros(steps),
        lowest=np.zeros(steps),
        contracts_use={},
    )
    for h, gpu_class in enumerate(gpus):
        _gpu_class(ctx, block, h, gpu_class.group, curtailable=(deepest, may_cap, may_pause))
    return block


def _gpu_class(
    ctx: _Context,
    block: _GpuBlock,
    h: int,
    gpu: GpuGroup,
    *,
    curtailable: tuple[IntArray, npt.NDArray[np.bool_], npt.NDArray[np.bool_]],
) -> None:
    """One GPU class's columns and ctx.rows, added to `block`."""
    problem = ctx.problem
    deepest, may_cap, may_pause = curtailable
    event = problem.event_active()
    contract = problem.contract(gpu.contract)
    node_usd_per_step = gpu.gpus_per_node * contract.usd_per_gpu_hour * ctx.hours
    block.offset_usd += float(np.sum(gpu.nodes * node_usd_per_step))
    full_site_watts = gpu.overhead_factor * gpu.nodes * gpu.full_node_watts
    block.offset_usd -= float(np.sum(full_site_watts * ctx.usd_per_watt_step))
    block.site_constant += full_site_watts
    # In a grid event any node may be paused, beyond its allowance and without notice; only
    # a longest-event limit could stop that, and outside events the allowance, notice and
    # event length may all forbid curtailing.
    surely = (
        contract.max_event_s is None or contract.max_event_s >= gpu.curtailed_for_s + ctx.ends[-1]
    )
    paused_site_watts = gpu.overhead_factor * gpu.nodes * gpu.paused_node_watts
    block.lowest += np.where(event & surely, paused_site_watts, full_site_watts)
    reservation = problem.allowance_value_usd_per_node_hour.get(contract.name, 0.0)
    unbilled = 0.0 if contract.billed_when_curtailed else 1.0
    node_cost = reservation * ctx.hours + unbilled * node_usd_per_step
    upper_now = np.full(ctx.steps, float(gpu.nodes))
    notice = np.zeros(ctx.steps, dtype=bool)
    if contract.notice_s > 0:
        # Within the notice period only what is already curtailed may stay so (grid events
        # excepted: an emergency gives no notice).
        notice = (ctx.offsets < contract.notice_s) & ~event
        upper_now[notice] = min(gpu.nodes, gpu.curtailed_nodes_now)
    exact = gpu.nodes <= problem.options.integer_max_nodes
    # Capped nodes go to the deepest level the step allows: the allowance is spent per
    # node-hour whatever the depth, so a deeper cap frees more power for the same cost.
    # Where the ctx.price is negative, power earns, and a shallower cap may do better.
    curtail_terms: list[tuple[IntArray, IntArray, FloatArray | float]] = []
    level_watts = np.array([gpu.node_watts(k) for k in range(len(gpu.cap_levels))])
    block.cap_levels[h] = np.where(may_cap[h], deepest[h], 0)
    if may_cap[h].any():
        saved = gpu.overhead_factor * (gpu.full_node_watts - level_watts[block.cap_levels[h]])
        cap = _curtail_columns(
            ctx, allowed=may_cap[h], upper=upper_now, saved=saved, cost=node_cost, exact=exact
        )
        block.cap_cols[h] = cap
        curtail_terms.append((ctx.step_index, cap, 1.0))
        if exact and (may_cap[h] & (ctx.price < 0) & (deepest[h] > 1)).any():
            block.shallower[h] = _add_shallower_caps(
                ctx.rows,
                ctx.cols,
                ctx.integer,
                site_terms=ctx.site_terms,
                curtail_terms=curtail_terms,
                usd_per_watt_step=ctx.usd_per_watt_step,
                node_cost=node_cost,
                gpu=gpu,
                chosen=may_cap[h] & (ctx.price < 0),
                deepest=deepest[h],
                upper_now=upper_now,
                cap=cap,
            )
    if may_pause[h].any():
        saved_paused = gpu.overhead_factor * (gpu.full_node_watts - gpu.paused_node_watts)
        pause = _curtail_columns(
            ctx,
            allowed=may_pause[h],
            upper=upper_now,
            saved=saved_paused,
            cost=node_cost,
            exact=exact,
        )
        block.pause_cols[h] = pause
        curtail_terms.append((ctx.step_index, pause, 1.0))
    if not curtail_terms:
        return
    _gpu_rules(ctx, block, gpu, curtail_terms, notice=notice, exact=exact)


def _curtail_columns(
    ctx: _Context,
    *,
    allowed: npt.NDArray[np.bool_],
    upper: FloatArray,
    saved: FloatArray | float,
    cost: FloatArray,
    exact: bool,
) -> IntArray:
    """Nodes curtailed per step (capped or paused), each freeing `saved` watts at the meter for
    the energy it no longer buys, at `cost` (lost revenue, allowance value) per node and step."""
    columns = ctx.cols.add(
        np.zeros(1), np.where(allowed, upper, 0.0), saved * ctx.usd_per_watt_step - cost
    )
    if exact:
        ctx.integer.append(columns)
    ctx.site_terms.append((ctx.step_index, columns, -saved))
    return columns


def _gpu_rules(
    ctx: _Context,
    block: _GpuBlock,
    gpu: GpuGroup,
    curtail_terms: list[tuple[IntArray, IntArray, FloatArray | float]],
    *,
    notice: npt.NDArray[np.bool_],
    exact: bool,
) -> None:
    """A GPU class's curtailment under its contract: no more nodes than it has, notice,
    longest event, the allowance it draws on, and going beyond it in grid events only."""
    contract = ctx.problem.contract(gpu.contract)
    rows, cols, steps, hours, integer = ctx.rows, ctx.cols, ctx.steps, ctx.hours, ctx.integer
    offsets, ends = ctx.offsets, ctx.ends
    event = ctx.problem.event_active()
    if len(curtail_terms) > 1:
        rows.add(-INF, float(gpu.nodes), curtail_terms, steps)
    later = np.flatnonzero(notice[1:]) + 1
    if later.size:
        # ... and stays so without a break: a node let go within the notice period would
        # need a new notice to be curtailed again.
        rows.add(
            -INF,
            0.0,
            [
                term
                for _, col, _ in curtail_terms
                for term in (
                    (np.arange(later.size), col[later], 1.0),
                    (np.arange(later.size), col[later - 1], -1.0),
                )
            ],
            later.size,
        )
    uses = block.contracts_use.setdefault(contract.name, [])
    uses.extend((col, hours) for _, col, _ in curtail_terms)
    if contract.max_event_s is not None:
        starts = _add_max_event(
            rows,
            cols=cols,
            offsets=offsets,
            ends=ends,
            gpu=gpu,
            max_event_s=contract.max_event_s,
            curtail_terms=curtail_terms,
            notice=notice,
        )
        if exact:
            integer.append(starts)
    if event.any():
        # Beyond the allowance, only in grid events, at the contract's penalty: the excess
        # of a step is at most what that step curtails, so curtailing outside events never
        # goes beyond the allowance, whatever events the period holds.
        excess = cols.add(
            np.zeros(1),
            np.where(event, gpu.nodes * hours, 0.0),
            np.full(steps, -contract.penalty_usd_per_gpu_hour * gpu.gpus_per_node),
        )
        uses.append((excess, np.full(steps, -1.0)))
        during = np.flatnonzero(event)
        rows.add(
            -INF,
            0.0,
            [
                (np.arange(during.size), excess[during], 1.0),
                *(
                    (np.arange(during.size), col[during], -hours[during])
                    for _, col, _ in curtail_terms
                ),
            ],
            during.size,
        )


def reserve_sets(
    asics: tuple[AsicClass, ...], gpus: tuple[GpuClass, ...]
) -> dict[frozenset[str], tuple[list[int], list[int]]]:
    """The classes that carry the same reserve products, by those products: (ASIC classes, GPU
    classes). One watt of load serves one product at a time, so each set's droppable load is
    shared among its products; sets are few (a site qualifies a handful of ways)."""
    sets: dict[frozenset[str], tuple[list[int], list[int]]] = {}
    for a, asic_class in enumerate(asics):
        if asic_class.group.reserve_products:
            sets.setdefault(asic_class.group.reserve_products, ([], []))[0].append(a)
    for h, gpu_class in enumerate(gpus):
        if gpu_class.group.reserve_products:
            sets.setdefault(gpu_class.group.reserve_products, ([], []))[1].append(h)
    return sets


def gpu_droppable_watts_per_node(problem: Problem, gpu: GpuGroup) -> float:
    """What one node at full power frees at the meter when a deployment drops it: down to its
    flexible contract's deepest usable cap, or to a pause; a firm contract frees nothing."""
    contract = problem.contract(gpu.contract)
    if contract.tier is Tier.FLEXIBLE:
        floor = flexible_floor_level(gpu.cap_levels, contract.min_power_fraction)
        return gpu.overhead_factor * (gpu.full_node_watts - gpu.node_watts(floor))
    if contract.tier is Tier.INTERRUPTIBLE:
        return gpu.overhead_factor * (gpu.full_node_watts - gpu.paused_node_watts)
    return 0.0


def _reserve_block(
    ctx: _Context,
    asics: tuple[AsicClass, ...],
    gpus: tuple[GpuClass, ...],
    *,
    on: IntArray,
    target_cols: dict[int, IntArray],
    gpu: _GpuBlock,
) -> dict[frozenset[str], tuple[tuple[int, IntArray], ...]]:
    """Reserve holds per product and qualification set, within what each set could drop, and
    the shortfall of each award; returns each set's hold columns by product index."""
    reserves = ctx.problem.programs.reserves
    if not reserves:
        return {}
    holds: list[list[IntArray]] = [[] for _ in reserves]
    by_set: dict[frozenset[str], tuple[tuple[int, IntArray], ...]] = {}
    for products, (asic_members, gpu_members) in reserve_sets(asics, gpus).items():
        terms: list[tuple[IntArray, IntArray, FloatArray | float]] = []
        carried: list[tuple[int, IntArray]] = []
        for r, reserve in enumerate(reserves):
            if reserve.name in products:
                price = np.asarray(reserve.usd_per_mw_h) - reserve.deploy_usd_per_mw_h
                hold = ctx.cols.add(
                    np.zeros(1), np.asarray(reserve.max_mw) * 1e6, price * ctx.hours / 1e6
                )
                holds[r].append(hold)
                carried.append((r, hold))
                terms.append((ctx.step_index, hold, 1.0))
        by_set[products] = tuple(carried)
        if terms:
            droppable, constant = _droppable_terms(
                ctx,
                asics=[(a, asics[a].group, on[a], target_cols.get(a)) for a in asic_members],
                gpus=[(h, gpus[h].group) for h in gpu_members],
                gpu=gpu,
            )
            # held <= what the set's miners draw awake and its full-power GPU nodes could drop
            ctx.rows.add(-INF, constant, terms + droppable, ctx.steps)
    for r, reserve in enumerate(reserves):
        _award_rows(ctx, reserve, holds[r])
    return by_set


def _droppable_terms(
    ctx: _Context,
    *,
    asics: list[tuple[int, AsicGroup, IntArray, IntArray | None]],
    gpus: list[tuple[int, GpuGroup]],
    gpu: _GpuBlock,
) -> tuple[list[tuple[IntArray, IntArray, FloatArray | float]], FloatArray]:
    """A set's droppable watts as row terms, negated (the row reads held - droppable <= 0),
    and its constant part for the right-hand side (the set's GPU nodes all at full power).
    `asics`: (class, group, its units-awake columns, its power-target columns or None)."""
    terms: list[tuple[IntArray, IntArray, FloatArray | float]] = []
    for _, group, on_cols, target in asics:
        if target is not None:
            terms.append((ctx.step_index, target, -group.overhead_factor))
        else:
            watts = group.overhead_factor * group.watts_per_unit
            terms.append((ctx.step_index, on_cols, -watts))
    constant = np.zeros(ctx.steps)
    for h, gpu_group in gpus:
        saved = gpu_droppable_watts_per_node(ctx.problem, gpu_group)
        constant += saved * gpu_group.nodes
        curtailing = [gpu.cap_cols[h], gpu.pause_cols[h]]
        curtailing += [columns for _, columns in gpu.shallower.get(h, [])]
        for columns in curtailing:
            present = columns >= 0
            if present.any():
                terms.append((ctx.step_index[present], columns[present], saved))
    return terms, constant


def _award_rows(ctx: _Context, reserve: ReserveProduct, holds: list[IntArray]) -> None:
    """What is held for an award, plus its shortfall (charged), covers the award."""
    award = np.asarray(reserve.awarded_mw) * 1e6
    if not (award > 0).any():
        return
    short = ctx.cols.add(np.zeros(1), award, -reserve.failure_usd_per_mw_h * ctx.hours / 1e6)
    terms: list[tuple[IntArray, IntArray, FloatArray | float]] = [(ctx.step_index, short, 1.0)]
    terms += [(ctx.step_index, hold, 1.0) for hold in holds]
    ctx.rows.add(award, INF, terms, ctx.steps)


def _allowance_rows(
    ctx: _Context, contracts_use: dict[str, list[tuple[IntArray, FloatArray]]]
) -> None:
    """Each contract's curtailment within each billing period fits what is left of it."""
    problem, offsets, rows = ctx.problem, ctx.offsets, ctx.rows
    for name, terms in contracts_use.items():
        for start_s, end_s, left in allowance_periods(problem, name):
            inside = (offsets >= start_s) & (offsets < end_s)
            if not inside.any():
                continue
            row_terms: list[tuple[IntArray, IntArray, FloatArray | float]] = [
                (np.zeros(int(inside.sum()), dtype=np.int64), col[inside], weight[inside])
                for col, weight in terms
            ]
            rows.add(-INF, left, row_terms, 1)


def _assemble(
    ctx: _Context, on: IntArray, target_cols: dict[int, IntArray], gpu: _GpuBlock
) -> LinearModel:
    """The site's cap per step, then the whole model as one sparse matrix."""
    problem, dt, cols, rows, steps, step_index, site_terms, integer = (
        ctx.problem,
        ctx.dt,
        ctx.cols,
        ctx.rows,
        ctx.steps,
        ctx.step_index,
        ctx.site_terms,
        ctx.integer,
    )
    # Site limit -------------------------------------------------------------------------------
    # Over the cap only by what the site surely cannot shed (ASICs asleep, GPUs as far down as
    # their contracts surely allow): that keeps every problem feasible, while a linear price,
    # however high, would let the plan buy a sliver over the cap rather than sleep one more
    # miner or pay one more node's SLA penalty.
    slack = cols.add(
        np.zeros(1),
        np.maximum(0.0, gpu.lowest - problem.cap_watts()),
        -SOFT_LIMIT_USD_PER_MWH * dt / WATT_SECONDS_PER_MWH,
    )
    rows.add(
        -INF,
        problem.cap_watts() - gpu.site_constant,
        [(step_index, slack, -1.0), *site_terms],
        steps,
    )

    matrix = sp.csr_matrix(
        (
            np.concatenate(rows.values) if rows.values else np.zeros(0),
            (
                np.concatenate(rows.rows) if rows.rows else np.zeros(0, dtype=np.int64),
                np.concatenate(rows.cols) if rows.cols else np.zeros(0, dtype=np.int64),
            ),
        ),
        shape=(rows.count, cols.count),
    )
    return LinearModel(
        lower=np.concatenate(cols.lower),
        upper=np.concatenate(cols.upper),
        objective=np.concatenate(cols.objective),
        offset=gpu.offset_usd,
        row_lower=np.concatenate(rows.lower),
        row_upper=np.concatenate(rows.upper),
        matrix=matrix,
        integer=np.concatenate(integer) if integer else np.zeros(0, dtype=np.int64),
        on=on,
        target=target_cols,
        cap=gpu.cap_cols,
        cap_level=gpu.cap_levels,
        pause=gpu.pause_cols,
        shallower=gpu.shallower,
    )


def _windows(first: IntArray) -> tuple[IntArray, IntArray]:
    """For windows j(t)..t, the (row t, step j) pairs, flattened."""
    steps = first.size
    lengths = np.maximum(np.arange(steps) - first + 1, 0)
    local = np.repeat(np.arange(steps), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    window = np.arange(local.size) - starts + np.repeat(first, lengths)
    return local, window


def _add_min_off(
    rows: _Rows,
    *,
    offsets: FloatArray,
    min_off_s: float,
    units: FloatArray,
    on_now: FloatArray,
    locked: FloatArray,
    on: IntArray,
    wake: IntArray,
) -> None:
    """Units woken within `min_off_s` of a step must have been asleep before that window began:
    sum(wake[j..t]) + on[j-1] <= units - locked[t], where j is the first step less than
    `min_off_s` before t and `locked[t]` the units a lock still holds asleep (shape `(A, T)`).
    (Equivalent to the usual "units put to sleep in the window, and locked units, are still
    asleep", with the sleep count eliminated; the lock is counted here because a unit it holds
    cannot stand in for one the window holds.) One block of rows for all classes (rows of `on`,
    `wake`) sharing the length."""
    count, steps = on.shape
    first = np.searchsorted(offsets, offsets - min_off_s + 1e-9, side="left")
    local, window = _windows(first)
    shift = (np.arange(count) * steps)[:, None]
    has_before = first > 0
    before_rows = np.arange(steps)[has_before]
    terms: list[tuple[IntArray, IntArray, FloatArray | float]] = [
        (local[None, :] + shift, wake[:, window], 1.0),
        (before_rows[None, :] + shift, on[:, first[has_before] - 1], 1.0),
    ]
    upper = np.where(has_before[None, :], units[:, None], (units - on_now)[:, None]) - locked
    rows.add(-INF, upper.ravel(), terms, count * steps)


def _add_shallower_caps(
    rows: _Rows,
    cols: _Columns,
    integer: list[IntArray],
    *,
    site_terms: list[tuple[IntArray, IntArray, FloatArray | float]],
    curtail_terms: list[tuple[IntArray, IntArray, FloatArray | float]],
    usd_per_watt_step: FloatArray,
    node_cost: FloatArray,
    gpu: GpuGroup,
    chosen: npt.NDArray[np.bool_],
    deepest: IntArray,
    upper_now: FloatArray,
    cap: IntArray,
) -> list[tuple[int, IntArray]]:
    """Columns for capping at each level shallower than the deepest, in the `chosen` steps (where
    power has a negative price, so a cap that frees just enough may beat the deepest), with
    binaries that keep all of a step's capped nodes on one level (a group has one cap setting).
    Returns (level, columns) for each shallower level used."""
    steps = chosen.size
    chosen = chosen & (deepest > 1)
    which = np.flatnonzero(chosen)
    rows_at = np.arange(which.size)
    nodes = float(gpu.nodes)
    picks: list[tuple[IntArray, IntArray, FloatArray | float]] = []

    def pick_for(capped: IntArray, usable: npt.NDArray[np.bool_]) -> None:
        pick = cols.add(np.zeros(1), np.where(usable, 1.0, 0.0), np.zeros(steps))
        integer.append(pick)
        # A level's nodes only in the steps whose binary picks that level.
        rows.add(
            -INF, 0.0, [(rows_at, capped[which], 1.0), (rows_at, pick[which], -nodes)], which.size
        )
        picks.append((rows_at, pick[which], 1.0))

    pick_for(cap, chosen)
    full = gpu.full_node_watts
    columns: list[tuple[int, IntArray]] = []
    for level in range(1, int(deepest[which].max())):
        usable = chosen & (deepest > level)
        saved = gpu.overhead_factor * (full - gpu.node_watts(level))
        capped = cols.add(
            np.zeros(1),
            np.where(usable, upper_now, 0.0),
            np.where(usable, saved * usd_per_watt_step - node_cost, 0.0),
        )
        integer.append(capped)
        pick_for(capped, usable)
        site_terms.append((np.arange(steps), capped, -saved))
        curtail_terms.append((np.arange(steps), capped, 1.0))
        columns.append((level, capped))
    rows.add(-INF, 1.0, picks, which.size)
    return columns


def _add_max_event(
    rows: _Rows,
    *,
    cols: _Columns,
    offsets: FloatArray,
    ends: FloatArray,
    gpu: GpuGroup,
    max_event_s: float,
    curtail_terms: list[tuple[IntArray, IntArray, FloatArray | float]],
    notice: npt.NDArray[np.bool_],
) -> IntArray:
    """Nodes curtailed at step t must have begun their curtailment within `max_event_s` of t's
    end: curtailed[t] <= sum(starts[j..t]) + (nodes curtailed now, while their event lasts).
    Nothing starts within the notice period (`notice`). Returns the `starts` columns."""
    steps = offsets.size
    step_index = np.arange(steps)
    starts = cols.add(np.zeros(1), np.where(notice, 0.0, float(gpu.nodes)), np.zeros(steps))
    # A node curtailed now and not in the step before starts its curtailment now.
    lower = np.zeros(steps)
    lower[0] = -gpu.curtailed_nodes_now
    terms: list[tuple[IntArray, IntArray, FloatArray | float]] = [(step_index, starts, 1.0)]
    for local, col, _ in curtail_terms:
        terms.append((local, col, -1.0))
        terms.append((local[1:], col[:-1], 1.0))
    rows.add(lower, INF, terms, steps)
    # ... and no more than really can begin: starts[t] <= curtailed[t] and
    # starts[t] <= nodes - curtailed[t-1]. Without these bounds `starts` could be inflated to
    # `nodes` in every step and the window rows below would bind nothing.
    rows.add(
        -INF,
        0.0,
        [(step_index, starts, 1.0), *((loc, col, -1.0) for loc, col, _ in curtail_terms)],
        steps,
    )
    free = np.full(steps, float(gpu.nodes))
    free[0] -= gpu.curtailed_nodes_now
    rows.add(
        -INF,
        free,
        [(step_index, starts, 1.0), *((loc[1:], col[:-1], 1.0) for loc, col, _ in curtail_terms)],
        steps,
    )
    local, window = _windows(_window_starts(offsets, ends, max_event_s))
    carry = np.where(gpu.curtailed_for_s + ends <= max_event_s, float(gpu.curtailed_nodes_now), 0.0)
    window_terms: list[tuple[IntArray, IntArray, FloatArray | float]] = [
        (local, starts[window], -1.0),
        *((loc, col, 1.0) for loc, col, _ in curtail_terms),
    ]
    rows.add(-INF, carry, window_terms, steps)
    return starts


# Solving ----------------------------------------------------------------------------------------

# Measured on the bench problem (`gridpilot bench plan`): HiGHS's dual simplex solves these LPs
# an order of magnitude faster than GLOP; its interior point and PDLP did not finish in 60 s.
_LP_SOLVER = "highs"
_MIP_SOLVER = "highs"


def choose_solver(model: LinearModel, options: SolveOptions) -> str:
    if options.solver != "auto":
        return options.solver
    return _MIP_SOLVER if model.integer.size else _LP_SOLVER


def run(model: LinearModel, options: SolveOptions) -> SolverResult:
    """Solve under the time limit. A solver that stops without a solution is a status here,
    not an exception; the caller falls back."""
    solver_name = choose_solver(model, options)
    helper = mbh.ModelBuilderHelper()
    helper.fill_model_from_sparse_data(
        # OR-Tools' stub annotates these as `ndarray[float64, ...]`, which no array matches.
        model.lower,  # type: ignore[arg-type]
        model.upper,  # type: ignore[arg-type]
        model.objective,  # type: ignore[arg-type]
        model.row_lower,  # type: ignore[arg-type]
        model.row_upper,  # type: ignore[arg-type]
        model.matrix,
    )
    helper.set_maximize(True)
    helper.set_objective_offset(model.offset)
    for column in model.integer.tolist():
        helper.set_var_integrality(column, True)
    solver = mbh.ModelSolverHelper(solver_name)
    if not solver.solver_is_supported():
        raise ValueError(f"solver {solver_name!r} is not available in this OR-Tools build")
    solver.set_time_limit_in_seconds(max(options.time_limit_s, 1e-3))
    if solver_name == "highs":
        parameters = ["output_flag=false"]  # the solver's log is not ours to print
        if model.integer.size:
            parameters.append(f"mip_rel_gap={options.relative_gap}")
        else:
            # Presolve costs more than it saves on these LPs: on 370 of the bundled year's
            # plans (756 columns, 548 rows) their solves took 0.84 s with it and 0.46 s
            # without, objectives equal to 1e-9 $. Another optimal vertex may come back, so
            # figures move within the LP's tolerances (the default replay: agent +428 $,
            # hindsight -1,631 $ of 384 M$).
            parameters.append("presolve=off")
        solver.set_solver_specific_parameters("\n".join(parameters))
    started = time.perf_counter()
    solver.solve(helper)
    wall = time.perf_counter() - started
    status = solver.status().name
    if status not in ("OPTIMAL", "FEASIBLE") or not solver.has_solution():
        return SolverResult(status, None, float("nan"), float("nan"), solver_name, wall)
    values = np.asarray(solver.variable_values(), dtype=np.float64)
    objective = float(solver.objective_value())
    if model.integer.size:
        bound = float(solver.best_objective_bound())
        if status == "OPTIMAL":
            # OR-Tools' HiGHS wrapper reports the incumbent as the bound. HiGHS stops within
            # `mip_rel_gap` of its incumbent or `mip_abs_gap` (1e-6) of its dual bound, so that
            # is how far the true bound may lie.
            bound = max(bound, objective + options.relative_gap * abs(objective) + 1e-6)
        elif not bound > objective:
            bound = float("nan")  # no bound offered
    else:
        # A simplex that stopped early has no bound to offer; a finished one is its own bound.
        bound = objective if status == "OPTIMAL" else float("nan")
    return SolverResult(status, read_solution(model, values), objective, bound, solver_name, wall)


def _values(values: FloatArray, columns: IntArray) -> FloatArray:
    """Column values, with 0 where a block has no column (-1)."""
    return np.where(columns >= 0, np.clip(values[np.maximum(columns, 0)], 0.0, None), 0.0)


def read_solution(model: LinearModel, values: FloatArray) -> ClassSolution:
    on = np.clip(values[model.on], 0.0, None)
    watts = np.zeros_like(on)  # zero: nominal watts, filled in by the caller
    for a, col in model.target.items():
        watts[a] = np.where(on[a] > 1e-9, values[col] / np.maximum(on[a], 1e-9), 0.0)
    cap_level = model.cap_level.copy()
    capped = _values(values, model.cap)
    for h, columns in model.shallower.items():
        for level, col in columns:
            nodes = np.clip(values[col], 0.0, None)
            cap_level[h] = np.where(nodes > 0.5, level, cap_level[h])
            capped[h] += nodes
    reserve: dict[frozenset[str], FloatArray] = {}
    for products, held_columns in model.reserve.items():
        held = np.zeros((model.reserve_count, on.shape[1]))
        for r, cols in held_columns:
            held[r] = np.clip(values[cols], 0.0, None)
        reserve[products] = held
    return ClassSolution(
        on=on,
        watts_per_unit=watts,
        cap_level=cap_level,
        capped=capped,
        paused=_values(values, model.pause),
        reserve_watts=reserve,
    )
