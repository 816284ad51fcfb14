"""Hypothesis strategies for small random planning problems, solved exactly.

Every problem uses `EXACT` (or `PROVEN`): no move blocking and integer counts for every ASIC and
GPU class, so the solver answers a mixed-integer program over the problem's own steps and its
plan is exact up to the relative gap it reports.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from gridpilot.optimizer.problem import (
    AllowanceBudget,
    AsicGroup,
    CapLevel,
    Contract,
    GpuGroup,
    GridEvent,
    Problem,
    SolveOptions,
    Tier,
)
from gridpilot.optimizer.synthetic import H100_CAP_LEVELS

EXACT = SolveOptions(blocking=(), integer_max_units=64, integer_max_nodes=64)
# The same, solved to optimality: the reported bound is then within HiGHS's absolute gap (1e-6 $).
PROVEN = replace(EXACT, relative_gap=0.0)
START = datetime(2024, 8, 20, 12, 0, tzinfo=UTC)

THREE_LEVELS = (CapLevel(700.0, 1.0), CapLevel(500.0, 0.96), CapLevel(300.0, 0.895))
TWO_LEVELS = (CapLevel(700.0, 1.0), CapLevel(400.0, 0.92))

# Shared by the property tests: reproducible runs (examples derived from the test's name), no
# example database written into the project, and no deadline (a solve takes a few ms, but the
# first one pays OR-Tools' start-up).
PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@dataclass(frozen=True, slots=True)
class Sizes:
    """Inclusive ranges of a generated problem's dimensions."""

    asic_groups: tuple[int, int] = (1, 3)
    units: tuple[int, int] = (1, 6)
    gpu_groups: tuple[int, int] = (0, 2)
    nodes: tuple[int, int] = (1, 4)
    steps: tuple[int, int] = (2, 6)
    cap_levels: tuple[tuple[CapLevel, ...], ...] = (H100_CAP_LEVELS, THREE_LEVELS)
    twins: bool = False  # may a second ASIC group repeat the first (so the solver merges them)
    locked: bool = False  # may ASIC groups have units locked asleep
    gpu_twins: bool = False  # may a second GPU group repeat the first, under the same contract


PROPERTY_SIZES = Sizes(twins=True, locked=True, gpu_twins=True)

TINY_SIZES = Sizes(
    asic_groups=(1, 2),
    units=(1, 3),
    gpu_groups=(0, 1),
    nodes=(1, 2),
    steps=(2, 3),
    cap_levels=(TWO_LEVELS, THREE_LEVELS),
    twins=True,
    locked=True,
)

_STEP_S = st.integers(2, 6).map(lambda k: 150.0 * k)  # 300 to 900 s
# Most of the interesting prices sit around the miners' breakevens (40-150 $/MWh); spikes reach
# the ERCOT offer cap.
_PRICE = st.one_of(
    st.floats(-50.0, 200.0, allow_nan=False),
    st.floats(200.0, 5_000.0, allow_nan=False),
)
_HASHPRICE = st.floats(0.03, 0.08, allow_nan=False)


@st.composite
def asic_groups(draw: st.DrawFn, index: int, sizes: Sizes) -> AsicGroup:
    """One ASIC group with its own efficiency and state."""
    units = draw(st.integers(*sizes.units))
    on_now = draw(st.integers(0, units))
    locked = 0
    locked_until = 0.0
    if sizes.locked and on_now < units and draw(st.booleans()):
        locked = draw(st.integers(1, units - on_now))
        locked_until = draw(st.sampled_from([300.0, 600.0, 900.0]))
    return AsicGroup(
        name=f"asic-{index}",
        model=f"model-{index}",
        units=units,
        watts_per_unit=draw(st.floats(2_500.0, 3_600.0)),
        ths_per_unit=draw(st.floats(80.0, 220.0)),
        overhead_factor=draw(st.sampled_from([1.0, 1.05, 1.2])),
        wake_loss_s=draw(st.sampled_from([0.0, 600.0])),
        min_off_s=draw(st.sampled_from([0.0, 600.0, 1_200.0])),
        units_on_now=on_now,
        units_locked_off=locked,
        locked_off_until_s=locked_until,
    )


@st.composite
def twin_of(draw: st.DrawFn, group: AsicGroup, index: int, sizes: Sizes) -> AsicGroup:
    """A group of the same model and state rules as `group` (merged into one class by the solver)
    but with its own size and its own units awake now."""
    units = draw(st.integers(*sizes.units))
    locked = min(group.units_locked_off, units)
    on_now = draw(st.integers(0, units - locked))
    return replace(
        group,
        name=f"asic-{index}",
        units=units,
        units_on_now=on_now,
        units_locked_off=locked,
        locked_off_until_s=group.locked_off_until_s if locked else 0.0,
    )


@st.composite
def contracts(draw: st.DrawFn, name: str, nodes: int, horizon_s: float) -> Contract:
    """An SLA of any tier, with a small allowance so that it binds."""
    tier = draw(st.sampled_from(list(Tier)))
    curtailable = tier is not Tier.FIRM
    max_event_s = (
        draw(st.none() | st.sampled_from([300.0, 600.0, 1_200.0])) if curtailable else None
    )
    return Contract(
        name=name,
        tier=tier,
        usd_per_gpu_hour=draw(st.floats(1.0, 3.0)),
        allowance_node_hours=draw(st.floats(0.0, nodes * horizon_s / 3_600.0)),
        max_event_s=max_event_s,
        notice_s=draw(st.sampled_from([0.0, 300.0, 600.0])) if curtailable else 0.0,
        penalty_usd_per_gpu_hour=draw(st.floats(0.0, 20.0)),
        min_power_fraction=draw(st.floats(0.3, 0.9)) if tier is Tier.FLEXIBLE else 0.0,
        billed_when_curtailed=draw(st.booleans()),
    )


@st.composite
def gpu_groups(draw: st.DrawFn, index: int, contract: str, nodes: int, sizes: Sizes) -> GpuGroup:
    """A group of 8-GPU nodes serving `contract`."""
    curtailed_now = draw(st.integers(0, nodes))
    return GpuGroup(
        name=f"gpu-{index}",
        contract=contract,
        nodes=nodes,
        gpus_per_node=8,
        cap_levels=draw(st.sampled_from(sizes.cap_levels)),
        idle_watts_per_gpu=100.0,
        host_watts_per_node=1_500.0,
        overhead_factor=draw(st.sampled_from([1.0, 1.25])),
        curtailed_nodes_now=curtailed_now,
        curtailed_for_s=draw(st.sampled_from([0.0, 300.0, 900.0])) if curtailed_now else 0.0,
    )


@st.composite
def budgets(draw: st.DrawFn, contract: str, horizon_s: float) -> tuple[AllowanceBudget, ...]:
    """What the ledger says is left: one billing period over the whole horizon, or a period that
    ends inside the horizon and the next one."""
    left = st.floats(0.0, 2.0)
    if draw(st.booleans()):
        return (
            AllowanceBudget(
                contract, START - timedelta(days=10), START + timedelta(days=20), draw(left)
            ),
        )
    cut = START + timedelta(seconds=draw(st.floats(1.0, horizon_s - 1.0)))
    return (
        AllowanceBudget(contract, START - timedelta(days=30), cut, draw(left)),
        AllowanceBudget(contract, cut, cut + timedelta(days=30), draw(left)),
    )


@st.composite
def problems(
    draw: st.DrawFn,
    sizes: Sizes = PROPERTY_SIZES,
    *,
    events: bool = True,
    gpus: bool = True,
    options: SolveOptions = EXACT,
) -> Problem:
    """A small site: a few ASIC groups, a few GPU groups each under its own contract, a few steps
    of 300 to 900 s, a site limit near the peak draw, maybe a grid event and ledger budgets."""
    steps = draw(st.integers(*sizes.steps))
    step_s = tuple(draw(st.lists(_STEP_S, min_size=steps, max_size=steps)))
    horizon_s = sum(step_s)

    asics: list[AsicGroup] = []
    for index in range(draw(st.integers(*sizes.asic_groups))):
        if index == 1 and sizes.twins and draw(st.booleans()):
            asics.append(draw(twin_of(asics[0], index, sizes)))
        else:
            asics.append(draw(asic_groups(index, sizes)))

    gpu_list: list[GpuGroup] = []
    contract_list: list[Contract] = []
    budget_list: list[AllowanceBudget] = []
    reservation: dict[str, float] = {}
    for index in range(draw(st.integers(*sizes.gpu_groups)) if gpus else 0):
        if index == 1 and sizes.gpu_twins and draw(st.booleans()):
            curtailed_now = draw(st.integers(0, gpu_list[0].nodes))
            gpu_list.append(
                replace(
                    gpu_list[0],
                    name=f"gpu-{index}",
                    curtailed_nodes_now=curtailed_now,
                    curtailed_for_s=gpu_list[0].curtailed_for_s if curtailed_now else 0.0,
                )
            )
            continue
        nodes = draw(st.integers(*sizes.nodes))
        contract = draw(contracts(f"contract-{index}", nodes, horizon_s))
        contract_list.append(contract)
        gpu_list.append(draw(gpu_groups(index, contract.name, nodes, sizes)))
        if draw(st.booleans()):
            budget_list.extend(draw(budgets(contract.name, horizon_s)))
        if draw(st.booleans()):
            reservation[contract.name] = draw(st.floats(0.0, 50.0))

    peak = sum(g.units * g.watts_per_unit * g.overhead_factor for g in asics) + sum(
        g.nodes * g.full_node_watts * g.overhead_factor for g in gpu_list
    )
    limit = peak * draw(st.floats(0.5, 1.3))
    event_list: tuple[GridEvent, ...] = ()
    if events and draw(st.booleans()):
        begin = draw(st.floats(-600.0, horizon_s - 1.0))
        length = draw(st.floats(300.0, 3_600.0))
        event_list = (
            GridEvent(
                "shed-1",
                START + timedelta(seconds=begin),
                START + timedelta(seconds=begin + length),
                peak * draw(st.floats(0.2, 0.9)),
            ),
        )
    return Problem(
        start=START,
        step_s=step_s,
        price_usd_per_mwh=tuple(draw(st.lists(_PRICE, min_size=steps, max_size=steps))),
        hashprice_usd_per_th_day=tuple(draw(st.lists(_HASHPRICE, min_size=steps, max_size=steps))),
        site_limit_watts=limit,
        site_margin_watts=limit * draw(st.sampled_from([0.0, 0.02])),
        asic_groups=tuple(asics),
        gpu_groups=tuple(gpu_list),
        contracts=tuple(contract_list),
        events=event_list,
        budgets=tuple(budget_list),
        pool_fee=draw(st.sampled_from([0.0, 0.02])),
        allowance_value_usd_per_node_hour=reservation,
        options=options,
    )
