"""Synthetic planning problems for benchmarks and tests: deterministic for a seed, realistic in
shape, and made of groups that cannot be merged (each has its own efficiency and state).

ASIC models span the efficiencies of the miners in the field today (about 15 to 38 J/TH; the
S21's 17.5 and the S19j Pro's 30.5 are from docs/domain.md); GPU groups are H100 nodes under the
three contract tiers. Prices follow an ERCOT-like summer day, cheap at night and spiking in the
late afternoon, with noise; a grid event caps the site for an hour in the evening peak.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np

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

H100_CAP_LEVELS = (
    CapLevel(700.0, 1.0),
    CapLevel(600.0, 0.985),
    CapLevel(500.0, 0.96),
    CapLevel(420.0, 0.93),
    CapLevel(350.0, 0.91),
    CapLevel(300.0, 0.895),
    CapLevel(250.0, 0.88),
    CapLevel(200.0, 0.80),
)

CONTRACTS = (
    Contract("firm", Tier.FIRM, 2.10, penalty_usd_per_gpu_hour=10.0, billed_when_curtailed=False),
    Contract(
        "flex",
        Tier.FLEXIBLE,
        1.80,
        allowance_node_hours=100.0 * 700,
        min_power_fraction=0.6,
        penalty_usd_per_gpu_hour=10.0,
    ),
    Contract(
        "interruptible",
        Tier.INTERRUPTIBLE,
        1.40,
        allowance_node_hours=40.0 * 300,
        max_event_s=4 * 3_600.0,
        notice_s=900.0,
        penalty_usd_per_gpu_hour=10.0,
        billed_when_curtailed=False,
    ),
)


def summer_day_prices(steps: int, step_s: float, rng: np.random.Generator) -> np.ndarray:
    """$/MWh per step: a daily shape (night 20, afternoon peak 150) with noise and a spike."""
    hours = (np.arange(steps) * step_s / 3_600.0) % 24
    shape = (
        25 + 120 * np.exp(-0.5 * ((hours - 18.5) / 1.6) ** 2) - 10 * np.cos(hours / 24 * 2 * np.pi)
    )
    price = shape * rng.lognormal(0.0, 0.25, steps) + rng.normal(0.0, 4.0, steps)
    spike = (hours >= 19) & (hours < 19.5)
    price[spike] = rng.uniform(900, 3_000, int(spike.sum()))
    return np.asarray(price, dtype=np.float64)


def synthetic_problem(
    groups: int,
    steps: int,
    *,
    seed: int = 7,
    step_s: float = 300.0,
    options: SolveOptions | None = None,
) -> Problem:
    """A site of `groups` distinct groups (four ASIC groups to each GPU group) over `steps`."""
    rng = np.random.default_rng(seed)
    gpu_count = max(1, groups // 5) if groups >= 2 else 0
    asic_count = groups - gpu_count
    asics = []
    for index in range(asic_count):
        joules_per_th = float(rng.uniform(15.0, 38.0))
        ths = float(rng.uniform(90.0, 250.0))
        units = int(rng.integers(100, 320))
        asics.append(
            AsicGroup(
                name=f"asic-{index:04d}",
                model=f"model-{index:04d}",
                units=units,
                watts_per_unit=round(joules_per_th * ths, 1),
                ths_per_unit=round(ths, 2),
                overhead_factor=1.05,
                wake_loss_s=600.0,
                min_off_s=float(rng.choice([0.0, 900.0, 1_800.0])),
                # As a previous plan leaves a site: most containers awake, some asleep.
                units_on_now=units if rng.random() < 0.8 else 0,
            )
        )
    tiers = [c.name for c in CONTRACTS]
    gpus = [
        GpuGroup(
            name=f"gpu-{index:04d}",
            contract=tiers[index % 3],
            nodes=int(rng.integers(8, 40)),
            gpus_per_node=8,
            cap_levels=H100_CAP_LEVELS,
            idle_watts_per_gpu=100.0,
            host_watts_per_node=1_500.0 + index,  # distinct hosts keep the groups apart
            overhead_factor=1.25,
        )
        for index in range(gpu_count)
    ]
    peak = sum(g.units * g.watts_per_unit * g.overhead_factor for g in asics) + sum(
        g.nodes * g.full_node_watts * g.overhead_factor for g in gpus
    )
    start = datetime(2024, 8, 20, 5, 0, tzinfo=UTC)
    limit = max(peak * 0.92, 1e6)
    events = (
        (
            GridEvent(
                "synthetic-shed",
                start + timedelta(hours=14),
                start + timedelta(hours=15),
                limit * 0.6,
            ),
        )
        if steps * step_s > 15 * 3_600
        else ()
    )
    return Problem(
        start=start,
        step_s=uniform_steps(steps, step_s),
        price_usd_per_mwh=tuple(summer_day_prices(steps, step_s, rng).tolist()),
        hashprice_usd_per_th_day=(0.05,) * steps,
        site_limit_watts=limit,
        site_margin_watts=limit * 0.02,
        asic_groups=tuple(asics),
        gpu_groups=tuple(gpus),
        contracts=CONTRACTS,
        events=events,
        pool_fee=0.02,
        options=options or SolveOptions(),
    )


# How a synthetic site's miners are qualified as Load Resources: most carry the slower
# reserves, some (with under-frequency relays) Responsive Reserve too, some nothing.
_QUALIFICATIONS: tuple[frozenset[str], ...] = (
    frozenset({"ECRS", "NSPIN"}),
    frozenset({"RRS", "ECRS", "NSPIN"}),
    frozenset(),
)
# Product, response (s), a day's mean price ($/MW-h): about the 2024 day-ahead means of
# docs/domain.md (RRS 5.71, NSPIN 6.26, ECRS 8.28).
_PRODUCTS = (("RRS", 0.5, 5.7), ("ECRS", 600.0, 8.3), ("NSPIN", 1_800.0, 6.3))


def with_programs(problem: Problem, *, seed: int = 11, awarded_s: float = 12 * 3_600.0) -> Problem:
    """`problem` taking part in grid programs: its groups qualified for reserves (miners by a
    seeded draw, flexible GPU groups for ECRS), three reserve products priced through the day
    and awarded over the first `awarded_s` (as day-ahead awards would be), and an expected 4CP
    charge on summer afternoons peaking at 17:00 Central (22:00 UTC)."""
    rng = np.random.default_rng(seed)
    asics = tuple(
        replace(g, reserve_products=_QUALIFICATIONS[int(rng.integers(0, 3))])
        for g in problem.asic_groups
    )
    flexible = {c.name for c in problem.contracts if c.tier is Tier.FLEXIBLE}
    gpus = tuple(
        replace(g, reserve_products=frozenset({"ECRS"})) if g.contract in flexible else g
        for g in problem.gpu_groups
    )
    offsets = problem.step_offsets_s()
    hours_utc = (problem.start.hour + offsets / 3_600.0) % 24
    awarded = offsets < awarded_s
    reserves = []
    for name, response_s, mean in _PRODUCTS:
        price = mean * (0.5 + np.exp(-0.5 * ((hours_utc - 23.0) / 2.0) ** 2))
        price *= rng.lognormal(0.0, 0.3, problem.steps)
        award = np.where(awarded, 5.0, 0.0)
        reserves.append(
            ReserveProduct(
                name=name,
                response_s=response_s,
                usd_per_mw_h=tuple(price.tolist()),
                max_mw=tuple(np.where(awarded, award, 50.0).tolist()),
                awarded_mw=tuple(award.tolist()),
                failure_usd_per_mw_h=250.0,
                deploy_usd_per_mw_h=0.5,
            )
        )
    # 68,547 $/MW-yr over four intervals is about 17,137 $/MW each; as $/MWh of a 15-minute
    # interval, 68,547 $/MWh, times the chance that the interval is a peak.
    chance = 0.01 * np.exp(-0.5 * ((hours_utc - 22.0) / 1.0) ** 2)
    charge = chance * 68_547.0
    return replace(
        problem,
        asic_groups=asics,
        gpu_groups=gpus,
        programs=Programs(
            reserves=tuple(reserves), transmission_usd_per_mwh=tuple(charge.tolist())
        ),
    )
