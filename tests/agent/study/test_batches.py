"""How a study's grid is cut into tasks."""

from __future__ import annotations

from dataclasses import replace

from gridpilot.agent.study.batches import TASK_S, estimate_s, plan_batches
from gridpilot.agent.study.scenario import (
    BusinessModel,
    ContractMix,
    HashpricePath,
    Scenario,
    Window,
)


def _scenario(**changes: object) -> Scenario:
    scenario = Scenario(
        ai_share=0.0,
        business=BusinessModel("hosting", "hosting", usd_per_mw_month=140_000.0),
        workload="training",
        mix=ContractMix("reference", 0.6, 0.28, 0.12),
        year=2024,
        hub="HB_WEST",
        hashprice=HashpricePath("recorded"),
        strategy="threshold",
    )
    return replace(scenario, **changes)  # type: ignore[arg-type]


def _grid() -> list[Scenario]:
    return [
        _scenario(ai_share=share, year=year, hub=hub, strategy=strategy)
        for share in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
        for year in (2023, 2024)
        for hub in ("HB_WEST", "HB_NORTH")
        for strategy in ("agent", "threshold")
    ]


def test_a_year_costs_what_its_strategy_does_and_a_window_its_share() -> None:
    """A threshold year is estimated at 10 s and an agent one at 75 s, plus a second of set-up;
    a 3-day window of a leap year at 3/366 of that."""
    assert estimate_s(_scenario()) == 11.0
    assert estimate_s(_scenario(strategy="agent")) == 76.0
    assert estimate_s(_scenario(window=Window(228, 231))) == 1.0 + 10.0 * 3 / 366


def test_batches_hold_one_year_and_hub_and_every_scenario_once() -> None:
    """Each batch is of one year and hub (one cached year serves it), every scenario is in
    exactly one, agent years run alone and threshold ones in pairs (up to 30 s), the longest
    first."""
    grid = _grid()
    batches = plan_batches(grid, workers=2)
    assert sorted(s.key() for b in batches for s in b) == sorted(s.key() for s in grid)
    assert all(len({(s.year, s.hub) for s in batch}) == 1 for batch in batches)
    work = [sum(map(estimate_s, batch)) for batch in batches]
    assert work == sorted(work, reverse=True)
    assert all(w <= TASK_S or len(b) == 1 for w, b in zip(work, batches, strict=True))
    assert {len(b) for b in batches if b[0].strategy == "agent"} == {1}
    assert {len(b) for b in batches if b[0].strategy == "threshold"} == {2}


def test_a_small_study_gives_every_worker_several_tasks() -> None:
    """Eight short scenarios (about a second each) are eight tasks on two workers and four
    pairs on one, not one task: batches shrink so that each worker gets three or more."""
    grid = [_scenario(ai_share=i / 8, window=Window(228, 231)) for i in range(8)]
    assert [len(b) for b in plan_batches(grid, workers=2)] == [1] * 8
    assert [len(b) for b in plan_batches(grid, workers=1)] == [2] * 4
