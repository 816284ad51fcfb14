"""Small problems on which the optimizer once went wrong, one for each bug the exhaustive search
found. Each is small enough to search exhaustively and is run by `test_exhaustive` before the
generated problems. All but the last are solved to a zero gap (`PROVEN`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from gridpilot.optimizer.problem import (
    AllowanceBudget,
    AsicGroup,
    Contract,
    GpuGroup,
    GridEvent,
    Problem,
    SolveOptions,
    Tier,
)
from tests.optimizer.strategies import EXACT, PROVEN, START, THREE_LEVELS

_S19 = AsicGroup("asic-0", "S19j Pro", 1, 3_050.0, 100.0, units_on_now=0)


def _node(contract: str, *, nodes: int = 1, curtailed_now: int = 0, for_s: float = 0.0) -> GpuGroup:
    return GpuGroup(
        "gpu-0",
        contract,
        nodes,
        8,
        THREE_LEVELS,
        100.0,
        1_500.0,
        curtailed_nodes_now=curtailed_now,
        curtailed_for_s=for_s,
    )


def _problem(
    prices: tuple[float, ...],
    *,
    asics: tuple[AsicGroup, ...] = (_S19,),
    gpus: tuple[GpuGroup, ...] = (),
    contracts: tuple[Contract, ...] = (),
    limit_watts: float = 1e6,
    events: tuple[GridEvent, ...] = (),
    budgets: tuple[AllowanceBudget, ...] = (),
    step_s: tuple[float, ...] | None = None,
    options: SolveOptions = PROVEN,
) -> Problem:
    return Problem(
        start=START,
        step_s=step_s or (300.0,) * len(prices),
        price_usd_per_mwh=prices,
        hashprice_usd_per_th_day=(0.05,) * len(prices),
        site_limit_watts=limit_watts,
        site_margin_watts=0.0,
        asic_groups=asics,
        gpu_groups=gpus,
        contracts=contracts,
        events=events,
        budgets=budgets,
        options=options,
    )


def _event(start_s: float, end_s: float, max_site_watts: float) -> GridEvent:
    return GridEvent(
        "shed-1",
        START + timedelta(seconds=start_s),
        START + timedelta(seconds=end_s),
        max_site_watts,
    )


def longest_event() -> Problem:
    """An interruptible node worth pausing in every step, but for at most two steps in a row:
    `max_event_s` was not enforced (the model's curtailment starts could be inflated)."""
    contract = Contract(
        "spot", Tier.INTERRUPTIBLE, 1.5, allowance_node_hours=10.0, max_event_s=600.0,
        billed_when_curtailed=False,
    )  # fmt: skip
    return _problem((4_000.0,) * 3, gpus=(_node("spot"),), contracts=(contract,))


def rotation_without_notice() -> Problem:
    """A paused node past its longest event must resume, and the other may not be paused in its
    place before the notice period has run: the model swapped them."""
    contract = Contract(
        "spot", Tier.INTERRUPTIBLE, 1.5, allowance_node_hours=10.0, max_event_s=600.0,
        notice_s=600.0, billed_when_curtailed=False,
    )  # fmt: skip
    gpu = _node("spot", nodes=2, curtailed_now=1, for_s=900.0)
    return _problem((4_000.0,) * 3, gpus=(gpu,), contracts=(contract,))


def notice_after_release() -> Problem:
    """A paused node released in a cheap step cannot be paused again within the notice period:
    the model let it go and took it back."""
    contract = Contract(
        "spot", Tier.INTERRUPTIBLE, 1.5, allowance_node_hours=10.0, notice_s=900.0,
        billed_when_curtailed=False,
    )  # fmt: skip
    gpu = _node("spot", curtailed_now=1)
    return _problem((0.0, 5_000.0, 5_000.0), gpus=(gpu,), contracts=(contract,))


def shallower_cap_below_zero() -> Problem:
    """In a grid event at a negative price, capping a firm node to the middle level beats capping
    it deepest or pausing it: the model only knew the deepest level."""
    asic = AsicGroup("asic-0", "m", 2, 3_600.0, 185.68, wake_loss_s=600.0, units_on_now=0)
    gpu = GpuGroup("gpu-0", "firm", 1, 8, THREE_LEVELS, 100.0, 1_500.0, overhead_factor=1.25)
    return _problem(
        (0.0, 1_399.0, -2.0),
        step_s=(300.0, 300.0, 600.0),
        asics=(asic,),
        gpus=(gpu,),
        contracts=(Contract("firm", Tier.FIRM, 2.5),),
        limit_watts=16_747.0,
        events=(_event(600.0, 1_200.0, 7_758.0),),
    )


def excess_without_event_curtailment() -> Problem:
    """A flexible contract with no allowance left may not be capped for price outside an event,
    even though an event elsewhere in the period lets it go beyond: the model drew on that
    event's capacity for the non-event step."""
    contract = Contract("flex", Tier.FLEXIBLE, 1.5, min_power_fraction=0.5)
    budget = AllowanceBudget(
        "flex", START - timedelta(days=10), START + timedelta(days=20), node_hours_left=0.0
    )
    return _problem(
        (50.0, 5_000.0),
        gpus=(_node("flex"),),
        contracts=(contract,),
        events=(_event(0.0, 300.0, 1e6),),
        budgets=(budget,),
    )


def locked_unit_with_min_off() -> Problem:
    """Of two units, one is locked asleep until 600 s and the other is put to sleep at 0 s for at
    least 1,200 s: neither may wake at 300 s. The model counted the locked unit as free to wake
    under the minimum-off rule."""
    asic = AsicGroup(
        "asic-0", "m", 2, 3_000.0, 200.0, min_off_s=1_200.0, units_on_now=1,
        units_locked_off=1, locked_off_until_s=600.0,
    )  # fmt: skip
    return _problem((3_000.0, 0.0, 0.0), asics=(asic,))


def twins_keep_their_units() -> Problem:
    """Two containers of one model, one unit awake in the first and two in the second, and room
    for three: the split moved a unit from one container to the other, paying a waking loss."""
    first = AsicGroup("asic-0", "m", 3, 3_000.0, 200.0, wake_loss_s=600.0, units_on_now=1)
    second = AsicGroup("asic-1", "m", 3, 3_000.0, 200.0, wake_loss_s=600.0, units_on_now=2)
    return _problem((20.0, 20.0), asics=(first, second), limit_watts=9_100.0)


def twins_wake_units_free_to_wake() -> Problem:
    """Two containers of one model whose units slept at 0 s may not wake at 900 s: the split woke
    all the units in one container, including one its minimum off time still held."""
    twin = AsicGroup(
        "asic-0", "m", 3, 3_600.0, 96.75, min_off_s=1_200.0, units_on_now=1,
        units_locked_off=1, locked_off_until_s=300.0,
    )  # fmt: skip
    other = AsicGroup(
        "asic-1", "m", 3, 3_600.0, 96.75, min_off_s=1_200.0, units_on_now=1,
        units_locked_off=1, locked_off_until_s=300.0,
    )  # fmt: skip
    return _problem((80.0, 0.0), step_s=(900.0, 900.0), asics=(twin, other), limit_watts=10_800.0)


def allowance_left_after_an_event() -> Problem:
    """An event forces a flexible node down beyond the little allowance left; capping it again
    for a price spike afterwards fits in the allowance: the clean-up after the solve counted the
    event's curtailment against the allowance and undid the capping."""
    contract = Contract("flex", Tier.FLEXIBLE, 1.5, min_power_fraction=0.5)
    budget = AllowanceBudget(
        "flex", START - timedelta(days=10), START + timedelta(days=20), node_hours_left=0.1
    )
    return _problem(
        (100.0, 5_000.0),
        gpus=(_node("flex"),),
        contracts=(contract,),
        events=(_event(0.0, 300.0, 6_000.0),),
        budgets=(budget,),
    )


def sliver_over_the_limit() -> Problem:
    """A miner that fits under the site limit but for 0.025 W: the model ran it, buying the sliver
    at the soft limit's price, and the cap was then enforced by putting it to sleep after the
    solve, a loss the plan did not report."""
    asic = AsicGroup("asic-0", "m", 1, 2_500.0, 80.0, units_on_now=0)
    return _problem((0.0, 0.0), asics=(asic,), limit_watts=2_499.975)


def sliver_over_an_event_cap() -> Problem:
    """Pausing both firm nodes meets the event's cap; pausing one leaves the site 95 W over it,
    which at the soft limit's price cost less than the second node's SLA penalty, so the model
    bought the sliver."""
    gpu = GpuGroup("gpu-0", "firm", 2, 8, THREE_LEVELS, 100.0, 1_500.0, overhead_factor=1.25)
    contract = Contract(
        "firm", Tier.FIRM, 1.0, penalty_usd_per_gpu_hour=12.0, billed_when_curtailed=False
    )
    return _problem(
        (0.0, 0.0),
        gpus=(gpu,),
        contracts=(contract,),
        events=(_event(0.0, 300.0, 11_655.0),),
    )


def stopped_within_the_gap() -> Problem:
    """Solved to the default relative gap, HiGHS stops at a plan 0.01 $ short of the best (an
    unavoidable overload makes the objective large): the plan reported a zero gap, because
    OR-Tools passes HiGHS's incumbent on as its bound."""
    first = AsicGroup("asic-0", "m", 2, 2_503.7454, 112.319, overhead_factor=1.2, units_on_now=1)
    second = replace(first, name="asic-1", units=1)
    gpu = _node("firm", nodes=2, curtailed_now=1, for_s=900.0)
    contract = Contract(
        "firm", Tier.FIRM, 2.9437, allowance_node_hours=0.418, penalty_usd_per_gpu_hour=6.035
    )
    return _problem(
        (-24.08, 0.0),
        step_s=(900.0, 450.0),
        asics=(first, second),
        gpus=(gpu,),
        contracts=(contract,),
        limit_watts=11_925.59,
        events=(_event(0.0, 622.0, 11_231.79),),
        options=EXACT,
    )


ALL = (
    longest_event,
    rotation_without_notice,
    notice_after_release,
    shallower_cap_below_zero,
    excess_without_event_curtailment,
    allowance_left_after_an_event,
    locked_unit_with_min_off,
    twins_keep_their_units,
    twins_wake_units_free_to_wake,
    sliver_over_the_limit,
    sliver_over_an_event_cap,
    stopped_within_the_gap,
)
