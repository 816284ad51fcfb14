"""What a plan says about itself (the reason for each curtailment), and the lengthening steps and
move blocking it is built on."""

from __future__ import annotations

import itertools
import math
from datetime import timedelta

import numpy as np
import numpy.typing as npt
from hypothesis import given
from hypothesis import strategies as st

from gridpilot.optimizer.horizon import coarsen, stretch
from gridpilot.optimizer.problem import (
    AsicGroup,
    Contract,
    GpuGroup,
    GridEvent,
    Problem,
    Tier,
    lengthening_steps,
)
from gridpilot.optimizer.schedule import Schedule, evaluate
from gridpilot.optimizer.solve import solve
from tests.optimizer.strategies import EXACT, PROPERTY_SETTINGS, START, THREE_LEVELS

S19J_PRO = AsicGroup(
    "s19jpro-01", "S19j Pro", 10, 3_050.0, 100.0, overhead_factor=1.05, units_on_now=10
)
S21 = AsicGroup("s21-01", "S21", 10, 3_500.0, 200.0, overhead_factor=1.05, units_on_now=10)


def _one_step(
    price: float,
    *,
    asics: tuple[AsicGroup, ...] = (S19J_PRO,),
    limit_watts: float = 1e6,
    gpus: tuple[GpuGroup, ...] = (),
    contracts: tuple[Contract, ...] = (),
    events: tuple[GridEvent, ...] = (),
) -> Problem:
    return Problem(
        start=START,
        step_s=(300.0,),
        price_usd_per_mwh=(price,),
        hashprice_usd_per_th_day=(0.05,),
        site_limit_watts=limit_watts,
        site_margin_watts=0.0,
        asic_groups=asics,
        gpu_groups=gpus,
        contracts=contracts,
        events=events,
        pool_fee=0.02,
        options=EXACT,
    )


def test_a_price_curtailment_names_the_price_and_the_breakeven() -> None:
    """At 212 $/MWh the S19j Pros sleep, and the reason reads "price 212 $/MWh > S19j Pro
    breakeven NN", NN their breakeven at the meter (after the pool fee and the site overhead)."""
    plan = solve(_one_step(212.0))
    (setpoint,) = plan.asic_setpoints(0)
    at_meter = 0.05 * (1 - 0.02) * 1e6 / (24 * (3_050.0 / 100.0) * 1.05)
    assert setpoint.units_on == 0
    assert setpoint.reason == f"price 212 $/MWh > S19j Pro breakeven {at_meter:.0f}"
    assert setpoint.reason == "price 212 $/MWh > S19j Pro breakeven 64"


def test_a_limit_curtailment_says_site_limit_and_a_full_group_says_nothing() -> None:
    """With power cheap but room for only part of the fleet, the less efficient S19j Pros are the
    ones curtailed, "site limit" is their reason, and the S21s, all awake, have none."""
    s21_watts = 10 * 3_500.0 * 1.05
    plan = solve(_one_step(20.0, asics=(S19J_PRO, S21), limit_watts=s21_watts + 4 * 3_202.5 + 1))
    s19, s21 = plan.asic_setpoints(0)
    assert s21.units_on == 10
    assert s21.reason == ""
    assert s19.units_on == 4
    assert "site limit" in s19.reason


def test_an_event_curtailment_names_the_event() -> None:
    """Miners and firm GPUs shed for a grid event say which event made them."""
    gpu = GpuGroup("gpu-01", "firm", 2, 8, THREE_LEVELS, 100.0, 1_500.0)
    event = GridEvent("ercot-eea-7", START, START + timedelta(hours=1), 8_000.0)
    plan = solve(
        _one_step(
            20.0,
            gpus=(gpu,),
            contracts=(Contract("firm", Tier.FIRM, 2.0, penalty_usd_per_gpu_hour=10.0),),
            events=(event,),
        )
    )
    (asic,) = plan.asic_setpoints(0)
    (node,) = plan.gpu_setpoints(0)
    assert asic.units_on < 10
    assert node.capped_nodes + node.paused_nodes > 0
    assert "ercot-eea-7" in asic.reason
    assert "ercot-eea-7" in node.reason


def test_uncurtailed_gpus_have_no_reason() -> None:
    """GPUs left at full power carry an empty reason."""
    gpu = GpuGroup("gpu-01", "firm", 2, 8, THREE_LEVELS, 100.0, 1_500.0)
    plan = solve(_one_step(20.0, gpus=(gpu,), contracts=(Contract("firm", Tier.FIRM, 2.0),)))
    (node,) = plan.gpu_setpoints(0)
    assert node.capped_nodes == node.paused_nodes == 0
    assert node.reason == ""


def test_lengthening_steps_cover_a_day_and_lengthen() -> None:
    """The default steps add up to exactly 24 h, never shorten, and end longer than they start."""
    steps = lengthening_steps()
    assert math.fsum(steps) == 86_400.0
    assert all(a <= b for a, b in itertools.pairwise(steps))
    assert steps[0] < steps[-1]


@st.composite
def blocked(draw: st.DrawFn) -> tuple[Problem, npt.NDArray[np.int64]]:
    """A problem with uneven steps and prices, and a partition of its steps into blocks."""
    steps = draw(st.integers(2, 12))
    step_s = tuple(
        draw(st.lists(st.sampled_from([300.0, 900.0, 3_600.0]), min_size=steps, max_size=steps))
    )
    cuts = draw(st.lists(st.booleans(), min_size=steps - 1, max_size=steps - 1))
    block = np.concatenate(([0], np.cumsum(cuts))).astype(np.int64)
    gpu = GpuGroup("gpu-01", "flex", 3, 8, THREE_LEVELS, 100.0, 1_500.0, overhead_factor=1.25)
    problem = Problem(
        start=START,
        step_s=step_s,
        price_usd_per_mwh=tuple(
            draw(st.lists(st.floats(-50.0, 5_000.0), min_size=steps, max_size=steps))
        ),
        hashprice_usd_per_th_day=tuple(
            draw(st.lists(st.floats(0.03, 0.08), min_size=steps, max_size=steps))
        ),
        site_limit_watts=1e6,
        site_margin_watts=0.0,
        asic_groups=(S19J_PRO, S21),
        gpu_groups=(gpu,),
        contracts=(
            Contract("flex", Tier.FLEXIBLE, 2.0, allowance_node_hours=1e3, min_power_fraction=0.5),
        ),
        pool_fee=0.02,
        options=EXACT,
    )
    return problem, block


@PROPERTY_SETTINGS
@given(blocked(), st.integers(0, 10), st.integers(0, 10), st.integers(0, 3))
def test_a_constant_schedule_scores_the_same_blocked_and_stretched(
    case: tuple[Problem, npt.NDArray[np.int64]], s19_on: int, s21_on: int, capped: int
) -> None:
    """Held constant over a block, a schedule's energy cost there is its power times the block's
    time-weighted mean price, so scoring it on the coarsened problem and stretched back over the
    original steps gives the same figures."""
    problem, block = case
    coarse = coarsen(problem, block)
    blocks = coarse.steps
    schedule = Schedule(
        asic_units_on=np.array([[s19_on] * blocks, [s21_on] * blocks], dtype=np.int64),
        asic_watts_per_unit=np.array([[3_050.0] * blocks, [3_500.0] * blocks]),
        gpu_level=np.ones((1, blocks), dtype=np.int64),
        gpu_capped_nodes=np.full((1, blocks), capped, dtype=np.int64),
        gpu_paused_nodes=np.zeros((1, blocks), dtype=np.int64),
    )
    on_blocks = evaluate(coarse, schedule)
    on_steps = evaluate(problem, stretch(schedule, block))
    watts = float(on_steps.site_watts[0])
    mean_price = [
        float(
            np.average(
                np.asarray(problem.price_usd_per_mwh)[block == b],
                weights=np.asarray(problem.step_s)[block == b],
            )
        )
        for b in range(blocks)
    ]
    by_hand = sum(watts * coarse.step_s[b] / 3.6e9 * mean_price[b] for b in range(blocks))
    assert np.allclose(on_steps.site_watts, watts)
    assert math.isclose(on_steps.energy_cost_usd, by_hand, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(
        on_blocks.energy_cost_usd, on_steps.energy_cost_usd, rel_tol=1e-9, abs_tol=1e-9
    )
    assert math.isclose(
        on_blocks.hash_revenue_usd, on_steps.hash_revenue_usd, rel_tol=1e-9, abs_tol=1e-9
    )
    assert math.isclose(on_blocks.profit_usd, on_steps.profit_usd, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(
        on_blocks.allowance_used_node_hours["flex"],
        on_steps.allowance_used_node_hours["flex"],
        rel_tol=1e-12,
        abs_tol=1e-12,
    )
