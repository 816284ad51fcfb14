"""The replay report: Central days and hours, the week with the most at stake, and its files."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import QuadMesh
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle, StepPatch

from gridpilot.adapters.recorded import CARRIED_FORWARD, CENTRAL, Gap
from gridpilot.agent.replay.period import PROGRAM_BASELINES, STRATEGIES, ReplayResult, Totals
from gridpilot.agent.replay.programs import Deployment
from gridpilot.agent.replay.report import (
    ALLOWANCE,
    CP_DAYS,
    CURTAILMENT_HEATMAP,
    MONTHLY_PROFIT,
    PRICE_HEATMAP,
    RESERVES,
    WEEK_AT_STAKE,
    cp_days_plot,
    curtailment_heatmap,
    day_hour_grid,
    price_heatmap,
    programs_table,
    reserve_revenue_by_month,
    reserves_plot,
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
# A grid programs window, Central midnight (CDT) to Central midnight, and its official 4CP
# intervals: 16:30 CDT on Wed 28 August, and 19:30 CDT on Tue 3 September, which is already
# 4 September in UTC.
PROGRAMS_START = datetime(2024, 8, 25, 5, tzinfo=UTC)
PROGRAMS_END = datetime(2024, 9, 6, 5, tzinfo=UTC)
CP_AUGUST = datetime(2024, 8, 28, 21, 30, tzinfo=UTC)
CP_SEPTEMBER = datetime(2024, 9, 4, 0, 30, tzinfo=UTC)

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


# Per strategy, its draw (watts) at the 4CP intervals, 60 MW elsewhere.
CP_DRAW_WATTS = {
    "agent": {CP_AUGUST: 5.2e6, CP_SEPTEMBER: 7.4e6},
    "threshold_4cp": {CP_AUGUST: 3.0e6, CP_SEPTEMBER: 3.5e6},
    "hindsight": {CP_AUGUST: 4.0e6, CP_SEPTEMBER: 4.5e6},
}
CLEARING_USD_PER_MW_H = {"RRS": 4.0, "ECRS": 2.0}
# Matplotlib's date numbers are days since 1970: to the second, not relative to their size.
SECOND_IN_DAYS = 1 / 86_400.0


def _award(mw: float, central_hours: range) -> Series:
    return lambda t: mw if t.astimezone(CENTRAL).hour in central_hours else 0.0


# Per strategy and product, its award (MW) in each interval: the agent's RRS in the Central
# evening (00:00 to 05:00 UTC: its last evening of August is paid in UTC September) and ECRS
# in the Central small hours.
AWARDS: dict[str, dict[str, Series]] = {
    "agent": {"RRS": _award(10.0, range(19, 24)), "ECRS": _award(5.0, range(5))},
    "hindsight": {"RRS": _award(12.0, range(19, 24))},
    "fixed_reserve": {"RRS": _award(8.0, range(24))},
}


def _programs_result(*, charged: bool = True) -> ReplayResult:
    """A result with the grid programs as `replay` returns it: six strategies, two official 4CP
    intervals, reserve awards paid at constant clearing prices (the totals booked as the
    replay's ledger books them), and one RRS deployment. With `charged` false the 4CP charge
    covers neither interval (no transmission rate for the year)."""
    base = _result(PROGRAMS_START, PROGRAMS_END)
    starts = _starts(PROGRAMS_START, PROGRAMS_END)
    names = STRATEGIES + PROGRAM_BASELINES
    site = {
        name: np.array([CP_DRAW_WATTS.get(name, {}).get(t, 60e6) for t in starts]) for name in names
    }
    reserve_mw = {
        name: {
            p: np.array([AWARDS.get(name, {}).get(p, _award(0.0, range(0)))(t) for t in starts])
            for p in CLEARING_USD_PER_MW_H
        }
        for name in names
    }
    totals: dict[str, Totals] = {}
    for rank, name in enumerate(names):
        paid = {
            p: float(np.sum(mw)) * CLEARING_USD_PER_MW_H[p] * STEP_S / 3_600.0
            for p, mw in reserve_mw[name].items()
        }
        mw_at = tuple(float(site[name][starts.index(t)]) / 1e6 for t in (CP_AUGUST, CP_SEPTEMBER))
        totals[name] = Totals(
            hash_revenue_usd=1_000.0 + 10.0 * rank,
            monthly_profit_usd={"2024-08": 100.0 + rank, "2024-09": 90.0 + rank},
            allowance_used={"2024-08": {"interruptible": 2.0}, "2024-09": {"interruptible": 1.0}},
            transmission_usd=sum(mw_at) * 5_000.0 if charged else 0.0,
            ancillary_usd=sum(paid.values()),
            ancillary_by_product_usd=paid,
            deployments=int(name in AWARDS),
            failed_deployments=int(name == "fixed_reserve"),
            reserve_failure_usd=120.0 if name == "fixed_reserve" else 0.0,
            cp_hours_curtailed=2.0 if name in CP_DRAW_WATTS else 0.0,
            cp_mw_at_intervals=mw_at if charged else (),
        )
    return replace(
        base,
        totals=totals,
        site_watts=site,
        asic_curtailed_watts={name: np.zeros(len(starts)) for name in names},
        cp_intervals=(CP_AUGUST, CP_SEPTEMBER),
        deployments=(
            Deployment(
                "RRS",
                CP_AUGUST + timedelta(days=1),
                CP_AUGUST + timedelta(days=1, minutes=20),
                "frequency",
            ),
        ),
        system_load_mw=np.array([60_000.0 + 1_000.0 * t.astimezone(CENTRAL).hour for t in starts]),
        clearing_usd_per_mw_h={
            p: np.full(len(starts), usd) for p, usd in CLEARING_USD_PER_MW_H.items()
        },
        reserve_mw=reserve_mw,
    )


def _shown_with_captions(lines: list[str], names: tuple[str, ...]) -> None:
    for name in names:
        (shown,) = [k for k, line in enumerate(lines) if line.endswith(f"]({name})")]
        caption = lines[shown + 2]
        assert caption.startswith("*") and caption.endswith("*") and "look for" in caption


def test_the_programs_section_and_its_plots_are_written_only_when_programs_were_replayed(
    tmp_path: Path,
) -> None:
    """An energy-only result's report has no programs section, 4CP-day or reserves plot; one
    with the programs has the section with its table, and both plots shown with captions."""
    energy = write_report(_result(PROGRAMS_START, PROGRAMS_END), tmp_path / "energy")
    assert "## Grid programs" not in energy.read_text()
    assert not (tmp_path / "energy" / CP_DAYS).exists()
    assert not (tmp_path / "energy" / RESERVES).exists()

    result = _programs_result()
    markdown = write_report(result, tmp_path / "programs")
    for name in (CP_DAYS, RESERVES):
        assert (tmp_path / "programs" / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    lines = markdown.read_text().splitlines()
    section = lines.index("## Grid programs")
    table = programs_table(result)
    assert lines[section:].count(table[0]) == 1
    first = lines.index(table[0])
    assert lines[first : first + len(table)] == table
    _shown_with_captions(lines[section:], (CP_DAYS, RESERVES))
    assert "1 RRS (frequency)" in lines[section + 2]
    assert "4CP days (Central): Wed 2024-08-28, Tue 2024-09-03." in lines[section + 2]


def _central_midnight(day: date) -> float:
    return float(mdates.date2num(datetime.combine(day, time(0), CENTRAL)))  # type: ignore[no-untyped-call]


def _twin(figure: Figure, panel: Axes) -> Axes:
    """The axis drawn over `panel` with its own y axis (the site MW of a 4CP-day panel)."""
    (twin,) = [
        a for a in figure.axes if a is not panel and panel.get_shared_x_axes().joined(panel, a)
    ]
    return twin


def test_the_4cp_day_panels_are_one_per_central_day_each_spanning_it_and_marking_its_interval() -> (
    None
):
    """cp_days.png has one panel per Central day of an official 4CP interval (the 19:30 CDT
    one on its Central day, not its UTC one), each from that day's Central midnight to the
    next with the interval shaded, and each strategy's MW through the day on its twin axis."""
    result = _programs_result()
    figure = cp_days_plot(result)
    panels = [a for a in figure.axes if a.get_title()]
    assert len(panels) == 2
    for panel, day, interval in zip(
        panels, (date(2024, 8, 28), date(2024, 9, 3)), (CP_AUGUST, CP_SEPTEMBER), strict=True
    ):
        low, high = panel.get_xlim()
        assert (low, high) == pytest.approx(
            (_central_midnight(day), _central_midnight(day + timedelta(days=1))),
            abs=SECOND_IN_DAYS,
        )
        assert f"{day:%d %b %Y}" in panel.get_title()
        (band,) = [p for p in panel.patches if p.get_label() == "4CP interval"]
        assert isinstance(band, Rectangle)
        box = band.get_bbox()
        begin = float(mdates.date2num(interval))  # type: ignore[no-untyped-call]
        assert (box.x0, box.x1) == pytest.approx(
            (begin, begin + STEP_S / 86_400.0), abs=SECOND_IN_DAYS
        )
        drawn = {
            p.get_label(): p.get_data()
            for p in _twin(figure, panel).patches
            if isinstance(p, StepPatch)
        }
        assert set(drawn) == set(result.strategies)
        values, edges, _ = drawn["agent"]
        assert (edges[0], edges[-1]) == pytest.approx((low, high), abs=SECOND_IN_DAYS)
        at = int(np.searchsorted(edges, begin + 1e-9)) - 1
        assert values[at] == pytest.approx(CP_DRAW_WATTS["agent"][interval] / 1e6)
        assert values[at - 1] == pytest.approx(60.0)


def _bars(axis: Axes) -> dict[str, list[float]]:
    """An axis's bars, by label: each container's heights in order."""
    return {
        str(c.get_label()): [float(r.get_height()) for r in c.patches]
        for c in axis.containers
        if isinstance(c, BarContainer)
    }


def test_the_reserve_payments_by_month_add_up_to_each_strategys_total_in_utc_months() -> None:
    """Each strategy's payments per UTC month sum to its `ancillary_usd`; the agent's last
    Central evening of August falls in UTC September and is paid there; the bars drawn are
    those months, for the strategies paid anything."""
    result = _programs_result()
    revenue = reserve_revenue_by_month(result)
    for name in result.strategies:
        assert sum(revenue[name].values()) == pytest.approx(result.totals[name].ancillary_usd)
    # RRS 10 MW x 4 $/MW-h x 5 h on 6 evenings and ECRS 5 MW x 2 $/MW-h x 5 h on 7 mornings
    # in August (UTC); 6 evenings and 5 mornings in September.
    assert revenue["agent"] == pytest.approx({"2024-08": 1_550.0, "2024-09": 1_450.0})
    monthly = next(a for a in reserves_plot(result).axes if "month" in a.get_title())
    bars = _bars(monthly)
    assert set(bars) == {"agent", "hindsight", "fixed_reserve"}
    for name, heights in bars.items():
        assert heights == pytest.approx([revenue[name]["2024-08"], revenue[name]["2024-09"]])
    assert [t.get_text() for t in monthly.get_xticklabels()] == ["2024-08", "2024-09"]


def test_the_reserve_hours_panel_shows_the_agents_mean_award_by_central_hour_per_product() -> None:
    """The hour-of-day panel stacks, per product, the agent's awarded MW in each Central hour,
    averaged over the window: RRS in the evening hours, ECRS in the small hours."""
    hourly = next(a for a in reserves_plot(_programs_result()).axes if "hour" in a.get_title())
    bars = _bars(hourly)
    assert bars["RRS"] == [10.0 if h >= 19 else 0.0 for h in range(24)]
    assert bars["ECRS"] == [5.0 if h < 5 else 0.0 for h in range(24)]


def _rows(table: list[str]) -> dict[str, list[str]]:
    """A Markdown table's cells by the first one's text, the heads under "strategy"."""
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    return {row[0]: row[1:] for k, row in enumerate(cells) if k != 1}


def test_the_programs_table_shows_each_strategys_mw_at_the_4cp_intervals_in_central_time() -> None:
    """The table's last columns are headed by the 4CP intervals' Central starts and hold each
    strategy's `cp_mw_at_intervals`, in order, beside its charge, payments and deployments."""
    result = _programs_result()
    rows = _rows(programs_table(result))
    heads = rows.pop("strategy")
    assert heads[-2:] == ["MW 2024-08-28 16:30 CDT", "MW 2024-09-03 19:30 CDT"]
    assert list(rows) == list(result.strategies)
    for name, cells in rows.items():
        totals = result.totals[name]
        assert cells[-2:] == [f"{mw:.1f}" for mw in totals.cp_mw_at_intervals]
        by_head = dict(zip(heads, cells, strict=True))
        assert by_head["4CP $"] == f"{totals.transmission_usd:,.0f}"
        assert by_head["reserves $"] == f"{totals.ancillary_usd:,.0f}"
        assert by_head["RRS $"] == f"{totals.ancillary_by_product_usd['RRS']:,.0f}"
        assert (by_head["deployments"], by_head["failed"]) == (
            str(totals.deployments),
            str(totals.failed_deployments),
        )
    assert rows["agent"][-2:] == ["5.2", "7.4"]
    assert rows["fixed_reserve"][heads.index("failures $")] == "120"


def test_an_interval_the_4cp_charge_leaves_out_keeps_its_column_read_off_the_draw() -> None:
    """Where no interval was charged (no transmission rate for the year, so no
    `cp_mw_at_intervals`), the MW columns still show each strategy's draw in each interval."""
    rows = _rows(programs_table(_programs_result(charged=False)))
    assert rows.pop("strategy")[-2:] == ["MW 2024-08-28 16:30 CDT", "MW 2024-09-03 19:30 CDT"]
    assert rows["agent"][-2:] == ["5.2", "7.4"]
    assert rows["always_on"][-2:] == ["60.0", "60.0"]
