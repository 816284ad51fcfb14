"""Grid programs in the one model: reserves held from load that is on and can drop, awards and
their shortfall, and the expected 4CP charge priced like energy."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gridpilot.optimizer.hindsight import hindsight
from gridpilot.optimizer.horizon import block_index, coarsen
from gridpilot.optimizer.model import gpu_droppable_watts_per_node
from gridpilot.optimizer.plan import CP_REASON
from gridpilot.optimizer.problem import (
    AsicGroup,
    CapLevel,
    Contract,
    GpuGroup,
    GridEvent,
    Problem,
    Programs,
    ReserveProduct,
    SolveOptions,
    Tier,
    uniform_steps,
)
from gridpilot.optimizer.schedule import evaluate
from gridpilot.optimizer.solve import solve
from gridpilot.optimizer.synthetic import synthetic_problem, with_programs
from tests.optimizer.strategies import EXACT, START

UNIT_WATTS = 3_050.0 * 1.05  # an S19j Pro at the meter
QUALIFIED = AsicGroup(
    "s19-ecrs",
    "S19j Pro",
    10,
    3_050.0,
    100.0,
    overhead_factor=1.05,
    reserve_products=frozenset({"ECRS", "NSPIN"}),
)
PLAIN = replace(QUALIFIED, name="s19-plain", reserve_products=frozenset())
NO_PROGRAMS = Programs()
BLOCKING = SolveOptions().blocking


def _reserve(
    name: str, steps: int, *, price: float, max_mw: float, award: float = 0.0
) -> ReserveProduct:
    return ReserveProduct(
        name=name,
        response_s=600.0,
        usd_per_mw_h=(price,) * steps,
        max_mw=(max_mw,) * steps,
        awarded_mw=(award,) * steps,
        failure_usd_per_mw_h=1_000.0,
    )


def _problem(
    prices: tuple[float, ...],
    *,
    asics: tuple[AsicGroup, ...] = (QUALIFIED, PLAIN),
    programs: Programs = NO_PROGRAMS,
    events: tuple[GridEvent, ...] = (),
    gpus: tuple[GpuGroup, ...] = (),
    contracts: tuple[Contract, ...] = (),
) -> Problem:
    return Problem(
        start=START,
        step_s=uniform_steps(len(prices), 900.0),
        price_usd_per_mwh=prices,
        hashprice_usd_per_th_day=(0.05,) * len(prices),
        site_limit_watts=10e6,
        site_margin_watts=0.0,
        asic_groups=asics,
        gpu_groups=gpus,
        contracts=contracts,
        events=events,
        pool_fee=0.02,
        programs=programs,
        options=EXACT,
    )


def test_a_likely_4cp_interval_puts_miners_to_sleep_in_it_alone() -> None:
    """Cheap power throughout, but a step whose expected transmission charge is 5,000 $/MWh:
    every miner sleeps in that step and runs in the others, and the plan's outcome charges the
    transmission on what it drew."""
    charge = (0.0, 0.0, 5_000.0, 0.0)
    plan = solve(_problem((20.0,) * 4, programs=Programs(transmission_usd_per_mwh=charge)))
    on = plan.schedule.asic_units_on.sum(axis=0)
    assert on.tolist() == [20, 20, 0, 20]
    assert plan.outcome.transmission_usd == pytest.approx(0.0, abs=1e-6)
    kept_on = solve(_problem((20.0,) * 4, programs=Programs(transmission_usd_per_mwh=(1.0,) * 4)))
    drawn_mwh = float(np.sum(kept_on.outcome.site_watts)) * 900 / 3.6e9
    assert kept_on.outcome.transmission_usd == pytest.approx(drawn_mwh * 1.0)


def test_reserves_are_held_only_from_qualified_load_that_is_awake() -> None:
    """At 20 $/MW-h for ECRS the qualified miners' whole draw is held, and nothing of the
    unqualified ones'; what is held earns its price."""
    programs = Programs(reserves=(_reserve("ECRS", 2, price=20.0, max_mw=100.0),))
    plan = solve(_problem((20.0, 20.0), programs=programs))
    held = plan.schedule.held_watts(1)
    assert held[0] == pytest.approx([10 * UNIT_WATTS] * 2)
    mw_h = float(np.sum(held[0])) / 1e6 * 0.25
    assert plan.outcome.ancillary_usd == pytest.approx(20.0 * mw_h)


def test_a_mw_held_is_not_curtailed_for_price() -> None:
    """At 90 $/MWh the S19j Pros, breaking even near 64, sleep; paid 60 $/MW-h to stand ready,
    the qualified ones stay awake and are held, while the unqualified ones still sleep."""
    lone = solve(_problem((90.0,)))
    assert lone.schedule.asic_units_on[:, 0].tolist() == [0, 0]
    programs = Programs(reserves=(_reserve("ECRS", 1, price=60.0, max_mw=100.0),))
    plan = solve(_problem((90.0,), programs=programs))
    assert plan.schedule.asic_units_on[:, 0].tolist() == [10, 0]
    assert plan.schedule.held_watts(1)[0, 0] == pytest.approx(10 * UNIT_WATTS)


def test_one_watt_serves_one_product_at_a_time() -> None:
    """Two products on the same miners share their draw: together they hold at most it."""
    programs = Programs(
        reserves=(
            _reserve("ECRS", 1, price=10.0, max_mw=100.0),
            _reserve("NSPIN", 1, price=9.0, max_mw=100.0),
        )
    )
    plan = solve(_problem((20.0,), programs=programs))
    held = plan.schedule.held_watts(2)[:, 0]
    assert held.sum() == pytest.approx(10 * UNIT_WATTS)
    assert held[0] == pytest.approx(10 * UNIT_WATTS)  # the better-paid product first


def test_an_award_that_a_grid_event_forbids_is_charged_as_a_failure() -> None:
    """Awarded 30 kW of ECRS, with a grid event capping the site at 10 kW: what cannot be
    held is charged at the failure price; the guard-free plan still keeps the cap."""
    programs = Programs(reserves=(_reserve("ECRS", 1, price=5.0, max_mw=0.03, award=0.03),))
    event = GridEvent("eea", START, START.replace(hour=START.hour + 1), max_site_watts=10e3)
    plan = solve(_problem((20.0,), programs=programs, events=(event,)))
    held_mw = float(plan.schedule.held_watts(1)[0, 0]) / 1e6
    assert plan.outcome.site_watts[0] <= 10e3 + 1e-6
    assert held_mw <= 10e3 / 1e6 + 1e-9
    assert plan.outcome.reserve_failure_usd == pytest.approx((0.03 - held_mw) * 0.25 * 1_000.0)


def test_flexible_gpus_hold_what_capping_them_would_free_less_what_is_capped() -> None:
    """A flexible contract's nodes at full power may be held down to their floor cap; capped
    nodes free nothing more, so a grid event's capping leaves less to hold."""
    contract = Contract(
        "flex", Tier.FLEXIBLE, 2.0, allowance_node_hours=100.0, min_power_fraction=0.5
    )
    gpu = GpuGroup(
        "h100",
        "flex",
        nodes=10,
        gpus_per_node=8,
        cap_levels=(CapLevel(700.0, 1.0), CapLevel(400.0, 0.9)),
        idle_watts_per_gpu=100.0,
        host_watts_per_node=500.0,
        overhead_factor=1.25,
        reserve_products=frozenset({"ECRS"}),
    )
    programs = Programs(reserves=(_reserve("ECRS", 1, price=50.0, max_mw=100.0),))
    plan = solve(_problem((20.0,), asics=(), gpus=(gpu,), contracts=(contract,), programs=programs))
    per_node = 1.25 * 8 * (700.0 - 400.0)
    assert plan.schedule.held_watts(1)[0, 0] == pytest.approx(10 * per_node)


def test_blocks_break_where_an_award_changes_and_hold_the_largest() -> None:
    """Move blocking never merges a step awarded with one that is not."""
    steps = 16
    awarded = (0.0,) * 8 + (5.0,) * 8
    reserve = replace(_reserve("ECRS", steps, price=5.0, max_mw=10.0), awarded_mw=awarded)
    problem = _problem((20.0,) * steps, programs=Programs(reserves=(reserve,)))
    block = block_index(problem, ((0.0, 3_600.0 * 4),))
    assert block[7] != block[8]
    coarse = coarsen(problem, block)
    assert set(coarse.programs.reserves[0].awarded_mw) == {0.0, 5.0}


def test_hindsight_over_chunks_keeps_the_programs_aligned() -> None:
    """Cut into chunks, the bound still sleeps in the one likely-peak step and holds reserves
    in every step."""
    steps = 12
    charge = [0.0] * steps
    charge[9] = 5_000.0
    programs = Programs(
        reserves=(_reserve("ECRS", steps, price=20.0, max_mw=100.0),),
        transmission_usd_per_mwh=tuple(charge),
    )
    problem = _problem((20.0,) * steps, programs=programs)
    plan = hindsight(problem, chunk_s=4 * 900.0)
    on = plan.schedule.asic_units_on.sum(axis=0)
    assert on[9] == 0
    assert (np.delete(on, 9) == 20).all()
    held = plan.schedule.held_watts(1)[0]
    assert (np.delete(held, 9) > 0).all()
    assert plan.outcome.ancillary_usd == pytest.approx(
        evaluate(problem, plan.schedule).ancillary_usd
    )


def test_a_large_site_with_programs_holds_no_more_than_its_qualified_miners_draw() -> None:
    """On the bench's synthetic site with programs (blocked as in the daemon), the plan holds
    reserves, meets its awards, and in no step holds more than its qualified miners draw awake
    plus what its qualified GPU nodes at full power could drop."""
    problem = with_programs(synthetic_problem(60, 96, options=replace(EXACT, blocking=BLOCKING)))
    plan = solve(problem)
    held = plan.schedule.held_watts(len(problem.programs.reserves)).sum(axis=0)
    assert held.sum() > 0
    assert plan.outcome.reserve_failure_usd == pytest.approx(0.0, abs=1e-6)
    qualified = np.array([[float(bool(g.reserve_products))] for g in problem.asic_groups])
    unit_watts = np.array([[g.watts_per_unit * g.overhead_factor] for g in problem.asic_groups])
    droppable = (plan.schedule.asic_units_on * unit_watts * qualified).sum(axis=0)
    for index, gpu in enumerate(problem.gpu_groups):
        if gpu.reserve_products:
            full = (
                gpu.nodes
                - plan.schedule.gpu_capped_nodes[index]
                - plan.schedule.gpu_paused_nodes[index]
            )
            droppable += full * gpu_droppable_watts_per_node(problem, gpu)
    assert (held <= droppable + 1e-3).all()


def test_a_4cp_curtailment_says_so_with_its_expected_charge() -> None:
    """Miners asleep at a cheap price for a likely peak name 4CP and the expected charge."""
    charge = (0.0, 5_000.0)
    plan = solve(_problem((20.0, 20.0), programs=Programs(transmission_usd_per_mwh=charge)))
    first, second = plan.asic_setpoints(1)
    assert first.units_on == 0
    assert first.reason.startswith(CP_REASON)
    assert "5000 $/MWh on top of price 20" in first.reason
    assert all(s.reason == "" for s in plan.asic_setpoints(0))
    assert second.reason == first.reason.replace("s19-ecrs", "s19-plain")
