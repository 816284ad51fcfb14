"""The replay report: Central days and hours, the week with the most at stake, and its files."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure

from gridpilot.adapters.recorded import CARRIED_FORWARD, CENTRAL, Gap
from gridpilot.agent.replay.period import STRATEGIES, ReplayResult, Totals
from gridpilot.agent.replay.report import (
    ALLOWANCE,
    CURTAILMENT_HEATMAP,
    MONTHLY_PROFIT,
    PRICE_HEATMAP,
    WEEK_AT_STAKE,
    curtailment_heatmap,
    day_hour_grid,
    price_heatmap,
    week_at_stake,
    week_plot,
    write_report,
)
from gridpilot.optimizer.problem import FloatArray

STEP_S = 900.0
# Central midnights (CST) around both of 2024's daylight-saving changes, which are on
# 2024-03-10 (02:00 CST becomes 03:00 CDT) and 2024-11-03 (02:00 CDT becomes 01:00 CST).
BEFORE_SPRING = datetime(2024, 3, 9, 6, tzinfo=UTC)
AFTER_FALL = datetime(2024, 11, 4, 6, tzinfo=UTC)
AUGUST = datetime(2024, 8, 1, 5, tzinfo=UTC)  # Central midnight (CDT)
OCTOBER_28 = datetime(2024, 10, 28, 5, tzinfo=UTC)  # Central midnight (CDT), a Monday

# Per interval start (UTC) a value: a price in $/MWh or a draw in watts.
Series = Callable[[datetime], float]


def _starts(start: datetime, end: datetime) -> list[datetime]:
    count = round((end - start).total_seconds() / STEP_S)
    return [start + timedelta(seconds=k * STEP_S) for k in range(count)]


def _result(
    start: datetime,
    end: datetime,
    *,
    price: Series = lambda _t: 30.0,
    site: dict[str, Series] | None = None,
    curtailed: dict[str, Series] | None = None,
    gaps: tuple[tuple[str, Gap], ...] = (),
) -> ReplayResult:
    """A result as `replay` returns it, with the series given as functions of each interval's
    UTC start (60 MW of site draw and nothing curtailed unless given) and plain totals."""
    starts = _starts(start, end)

    def series(functions: dict[str, Series] | None, default: float) -> dict[str, FloatArray]:
        def constant(_t: datetime) -> float:
            return default

        given = functions or {}
        return {
            name: np.array([given.get(name, constant)(t) for t in starts]) for name in STRATEGIES
        }

    months = sorted({f"{t:%Y-%m}" for t in starts})
    totals = {
        name: Totals(
            hash_revenue_usd=1_000.0 + 10.0 * rank,
            monthly_profit_usd=dict.fromkeys(months, 100.0 + 10.0 * rank),
            allowance_used={m: {"interruptible": 2.0 + rank} for m in months},
        )
        for rank, name in enumerate(("always_on", "threshold", "agent", "hindsight"))
    }
    return ReplayResult(
        start=start,
        end=end,
        settlement_point="HB_WEST",
        totals=totals,
        wall_s=1.5,
        price_usd_per_mwh=np.array([price(t) for t in starts]),
        site_watts=series(site, 60e6),
        asic_curtailed_watts=series(curtailed, 0.0),
        agent_decisions=np.zeros((len(starts), 1), dtype=np.int32),
        agent_solves=1,
        data_gaps=gaps,
    )


def _central_day(moment: datetime) -> date:
    return moment.astimezone(CENTRAL).date()


def _on_days(days: dict[date, float], otherwise: float) -> Series:
    """A series that is `days[d]` through each listed Central day d and `otherwise` elsewhere."""
    return lambda t: days.get(_central_day(t), otherwise)


def _utc_hour(t: datetime) -> float:
    return float(t.hour)


def test_the_heatmap_has_24_wall_clock_hours_on_every_central_day_across_both_dst_changes() -> None:
    """Over a window with the 23-hour and the 25-hour Central day, the grid is days x 24; the
    skipped 02:00 is the only empty cell, the repeated 01:00 is the mean of both, and no hour
    after either change is shifted."""
    starts = _starts(BEFORE_SPRING, AFTER_FALL)
    grid = day_hour_grid(BEFORE_SPRING, STEP_S, np.array([_utc_hour(t) for t in starts]))
    assert grid.values.shape == (240, 24)  # 2024-03-09 to 2024-11-03, Central
    assert (grid.days[0], grid.days[-1]) == (date(2024, 3, 9), date(2024, 11, 3))
    spring = grid.values[grid.days.index(date(2024, 3, 10))]
    fall = grid.values[grid.days.index(date(2024, 11, 3))]
    # Each cell holds the UTC hour its local hour fell in: UTC-6 before a change, UTC-5 after.
    assert np.argwhere(np.isnan(grid.values)).tolist() == [[1, 2]]
    assert spring[[0, 1]].tolist() == [6.0, 7.0]
    assert spring[3:].tolist() == [float((h + 5) % 24) for h in range(3, 24)]
    assert fall[0] == 5.0
    assert fall[1] == 6.5  # 01:00 CDT is 06:00 UTC, 01:00 CST is 07:00 UTC
    assert fall[2:].tolist() == [float((h + 6) % 24) for h in range(2, 24)]
    assert grid.values[0].tolist() == [float((h + 6) % 24) for h in range(24)]


def _cells(heatmap: Figure) -> FloatArray:
    """A heatmap's cells as drawn, hours by days, NaN where it shows no data."""
    mesh = next(c for c in heatmap.axes[0].collections if isinstance(c, QuadMesh))
    cells = mesh.get_array()
    assert cells is not None
    return np.ma.filled(cells.astype(np.float64), np.nan)


def test_the_heatmaps_draw_every_central_day_and_the_agents_curtailment() -> None:
    """Drawn over both daylight-saving changes, each heatmap is 24 hours by the window's Central
    days, and the curtailment map shows the agent's curtailed MW, not another strategy's."""
    agent_curtails = {date(2024, 3, 10): 20e6, date(2024, 11, 3): 30e6}
    result = _result(
        BEFORE_SPRING,
        AFTER_FALL,
        curtailed={
            "agent": _on_days(agent_curtails, 0.0),
            "always_on": lambda _t: 5e6,
            "hindsight": lambda _t: 40e6,
        },
    )
    price, mw = (_cells(price_heatmap(result)), _cells(curtailment_heatmap(result)))
    assert price.shape == mw.shape == (24, 240)
    spring, fall = 1, 239
    assert np.isnan(mw[2, spring])  # the hour clocks skip
    assert np.nansum(mw[:, spring]) == pytest.approx(23 * 20.0)
    assert mw[:, fall].tolist() == [30.0] * 24  # the repeated hour averages 30 with 30
    assert np.nansum(mw) == pytest.approx(23 * 20.0 + 24 * 30.0)


def test_the_week_at_stake_weighs_the_strategies_difference_in_draw_by_the_price() -> None:
    """The chosen week is the seven Central days where the strategies' draws differ most times
    the price: a small difference at 200 $/MWh outweighs a large one at 5 $/MWh."""
    days = {
        date(2024, 8, 4): (5.0, 40e6),  # 20 MW apart at 5 $/MWh: $2,400 over the day
        date(2024, 8, 11): (200.0, 55e6),  # 5 MW apart at 200 $/MWh: $24,000
        date(2024, 8, 17): (30.0, 55e6),  # 5 MW apart at 30 $/MWh: $3,600
    }
    result = _result(
        AUGUST,
        AUGUST + timedelta(days=21),
        price=_on_days({d: p for d, (p, _) in days.items()}, 30.0),
        site={"agent": _on_days({d: w for d, (_, w) in days.items()}, 60e6)},
    )
    week = week_at_stake(result)
    # Only the week from 2024-08-11 holds both the 11th and the 17th.
    assert (week.first_day, week.last_day) == (date(2024, 8, 11), date(2024, 8, 17))
    assert (week.first, week.stop) == (10 * 96, 17 * 96)
    assert week.stake_usd == pytest.approx(24_000 + 3_600)


def test_a_week_across_the_fall_back_is_169_hours_from_central_midnight() -> None:
    """A week at stake that holds the 25-hour day runs from its first Central midnight to the
    one after its seventh day: 676 quarter hours, not 672."""
    stake_days = {date(2024, 11, 3) + timedelta(days=d): 30e6 for d in range(7)}
    result = _result(
        OCTOBER_28, OCTOBER_28 + timedelta(days=15), site={"agent": _on_days(stake_days, 60e6)}
    )
    week = week_at_stake(result)
    assert (week.first_day, week.last_day) == (date(2024, 11, 3), date(2024, 11, 9))
    first_utc = OCTOBER_28 + timedelta(seconds=week.first * STEP_S)
    assert first_utc == datetime.combine(date(2024, 11, 3), time(0), CENTRAL)
    assert week.stop - week.first == 169 * 4


def _date_ticks(axis: Axes) -> list[tuple[datetime, str]]:
    """The x axis's ticks within its limits, each as a UTC moment and its label."""
    low, high = axis.get_xlim()
    return [
        (mdates.num2date(tick), label.get_text())  # type: ignore[no-untyped-call]
        for tick, label in zip(axis.get_xticks(), axis.get_xticklabels(), strict=True)
        if low <= tick <= high
    ]


def _concise_central_label(moment: datetime) -> str:
    """How a daily tick at `moment` reads in Central time: the month on its first, else the day."""
    local = moment.astimezone(CENTRAL)
    return f"{local:%b}" if local.day == 1 else f"{local:%d}"


def test_the_time_axes_are_dated_in_central_time() -> None:
    """The week plot's and the heatmap's date ticks fall on Central midnights, which are 05:00
    UTC before the fall-back and 06:00 after, and are labelled with the Central date."""
    result = _result(
        OCTOBER_28,
        OCTOBER_28 + timedelta(days=7, hours=1),  # seven Central days, one of them 25 hours
        site={"agent": lambda t: 50e6 if t.hour == 0 else 60e6},
    )
    week = week_plot(result, week_at_stake(result))
    power = week.axes[1]
    week.draw_without_rendering()
    ticks = _date_ticks(power)
    assert len(ticks) >= 5
    assert all(t.astimezone(CENTRAL).time() == time(0) for t, _ in ticks)
    assert {t.hour for t, _ in ticks} == {5, 6}
    assert [label for _, label in ticks] == [_concise_central_label(t) for t, _ in ticks]
    assert "Central" in power.get_xlabel()

    long = _result(datetime(2024, 9, 1, 5, tzinfo=UTC), datetime(2024, 12, 31, 6, tzinfo=UTC))
    heatmap = price_heatmap(long)
    heatmap.draw_without_rendering()
    ticks = _date_ticks(heatmap.axes[0])
    assert len(ticks) >= 3
    assert all(t.astimezone(CENTRAL).time() == time(0) for t, _ in ticks)
    assert {t.hour for t, _ in ticks} == {5, 6}


def test_write_report_writes_each_plot_and_names_it_with_a_caption(tmp_path: Path) -> None:
    """write_report writes every PNG and a report.md that shows each with a caption after it,
    names the week at stake, and keeps the table, the JSON and the gaps."""
    stake_days = {date(2024, 11, 4) + timedelta(days=d): 30e6 for d in range(7)}
    gap_start = datetime(2024, 10, 30, 13, 30, tzinfo=UTC)
    gap = Gap(gap_start, gap_start + timedelta(minutes=30), 2, CARRIED_FORWARD)
    result = _result(
        OCTOBER_28,
        datetime.combine(date(2024, 11, 11), time(0), CENTRAL),  # 14 days, one of 25 hours
        site={"agent": _on_days(stake_days, 60e6)},
        curtailed={"agent": _on_days(stake_days, 0.0)},
        gaps=(("real-time prices at HB_WEST", gap),),
    )
    markdown = write_report(result, tmp_path / "report")
    assert markdown == tmp_path / "report" / "report.md"
    lines = markdown.read_text().splitlines()
    for name in (PRICE_HEATMAP, CURTAILMENT_HEATMAP, WEEK_AT_STAKE, MONTHLY_PROFIT, ALLOWANCE):
        assert (tmp_path / "report" / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        (shown,) = [k for k, line in enumerate(lines) if line.endswith(f"]({name})")]
        caption = lines[shown + 2]
        assert caption.startswith("*") and "look for" in caption
    text = "\n".join(lines)
    assert "Mon 2024-11-04 to Sun 2024-11-10, $151,200" in text  # 0 to 30 MW at 30 $/MWh
    assert "hindsight" in text and "```json" in text
    assert "none from 2024-10-30 13:30 to 2024-10-30 14:00 UTC" in text


def test_importing_the_command_line_does_not_load_matplotlib() -> None:
    """The daemon's entry point imports the report module but not matplotlib, which only
    drawing a report loads."""
    check = "import sys, gridpilot.agent.cli; sys.exit('matplotlib' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", check], check=False)  # noqa: S603  # our own code
    assert run.returncode == 0
