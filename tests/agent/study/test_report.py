"""The study report's reading of the results: the best per AI share, the frontier, the
answer's sentence."""

from __future__ import annotations

import math

from gridpilot.agent.study.batches import Row
from gridpilot.agent.study.report import answer, axis_effects, best_by_share, frontier, points


def _row(share: float, model: str, strategy: str, profit: float, std: float, **more: object) -> Row:
    return {
        "status": "ok",
        "ai_share": share,
        "business_model": model,
        "strategy": strategy,
        "year": 2024,
        "window_start_day": 1,
        "window_end_day": 367,
        "operating_profit_usd": profit,
        "monthly_profit_std_usd": std,
        "monthly_profit_cvar5_usd": profit / 20,
        "payback_years": 5.0,
        "co2_kg_per_mwh": 400.0,
        "co2_t_per_musd_profit": 1e8 / profit if profit > 0 else math.inf,
        **more,
    }


ROWS = [
    _row(0.0, "hosting", "agent", 10e6, 1e5),
    _row(0.5, "hosting", "agent", 30e6, 2e5),
    _row(0.5, "cloud", "agent", 50e6, 9e5),
    _row(0.5, "cloud", "threshold", 40e6, 9.5e5),  # beaten on both by cloud/agent
    {"status": "failed", "ai_share": 1.0, "business_model": "cloud", "strategy": "agent"},
]


def test_points_average_over_the_axes_not_shown() -> None:
    """Two years of one share, model and strategy are one point at their mean profit."""
    rows = [_row(0.5, "cloud", "agent", 40e6, 1e5), _row(0.5, "cloud", "agent", 60e6, 3e5)]
    (point,) = points(rows)
    assert (point.scenarios, point.profit_usd, point.std_usd) == (2, 50e6, 2e5)


def test_the_best_per_share_and_the_frontier() -> None:
    """The best of share 0.5 is cloud/agent; the frontier leaves out the one beaten on both
    profit and volatility; failed rows count nowhere."""
    found = points(ROWS)
    assert [(p.ai_share, p.label) for p in best_by_share(found)] == [
        (0.0, "hosting/agent"),
        (0.5, "cloud/agent"),
    ]
    assert [p.label for p in frontier(found)] == ["hosting/agent", "hosting/agent", "cloud/agent"]


def test_the_answer_weighs_the_best_against_pure_mining() -> None:
    """The table's line for share 0.5 gains 40 M$ on pure mining, and the sentence says so
    with the CO2 per dollar against mining's."""
    lines = answer(ROWS)
    assert "| 50% | cloud/agent | 50.00 | 40.00 | 5.0 | 2,500 | 2 | 1 |" in lines
    assert "| 0% | pure mining (agent) | 10.00 | 0.00 |" in lines[4]
    assert lines[-1].startswith("Turning 50% of the site to AI (cloud/agent) earns the most:")
    assert "at 0.20x its CO2 per dollar" in lines[-1]
    assert "over a year" in lines[0]


def test_pure_mining_best_and_no_mining_are_said_plainly() -> None:
    """Where no AI share beats mining the sentence says so; without share 0 it says there is
    nothing to weigh against."""
    assert answer([ROWS[0], _row(0.5, "cloud", "agent", 5e6, 1e5)])[-1].startswith(
        "Pure mining earns the most (10.00 M$"
    )
    assert "no pure-mining scenario" in answer(ROWS[1:3])[-1]
    assert answer([]) == ["No scenario has figures yet."]


def test_axis_effects_are_means_per_value_of_swept_axes() -> None:
    """Only axes with two values or more; each value's mean profit over its scenarios."""
    axes: dict[str, tuple[object, ...]] = {
        "ai_share": (0.0, 0.5),
        "business_model": ("hosting", "cloud"),
        "year": (2024,),
    }
    effects = axis_effects(ROWS, axes)
    assert effects == {
        "ai_share": [("0.0", 1, 10e6), ("0.5", 3, 40e6)],
        "business_model": [("hosting", 2, 20e6), ("cloud", 2, 45e6)],
    }
