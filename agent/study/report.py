"""What a study shows: `report.md` with PNG plots, every number in it from `results.csv`.

It opens with the answer a CFO reads in a minute: per AI share, the business model and
strategy that earn the most, with their operating profit against pure mining (AI share 0),
payback, worst-month profit and CO2 per dollar, and one sentence of what that says. Then the
plots, each with its numbers in a table beside it: profit against its volatility (the
frontier), CO2 per MWh and per dollar against AI share, and what each swept axis does to
profit.

The figures of a point are the means over the scenarios it stands for (the axes not shown
averaged out: years, hubs, hashprice paths, workloads, contract mixes), so each can be
recomputed from `results.csv` by the columns named in its table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gridpilot.agent.study.batches import Row
from gridpilot.agent.study.results import CSV
from gridpilot.agent.study.scenario import year_span

if TYPE_CHECKING:  # matplotlib is imported only where a plot is drawn (as in replay/report.py)
    from matplotlib.figure import Figure

FRONTIER = "frontier.png"
CO2 = "co2.png"
AXES = "axes.png"
DPI = 110
# Axes whose values are named in the frontier's labels and the CO2 plot's lines.
SHOWN = ("ai_share", "business_model", "strategy")


@dataclass(frozen=True, slots=True)
class Point:
    """One AI share, business model and strategy: means over the scenarios it stands for."""

    ai_share: float
    business_model: str
    strategy: str
    scenarios: int
    profit_usd: float  # operating_profit_usd
    std_usd: float  # monthly_profit_std_usd
    cvar_usd: float  # monthly_profit_cvar5_usd
    payback_years: float
    co2_kg_per_mwh: float
    co2_t_per_musd: float  # co2_t_per_musd_profit

    @property
    def label(self) -> str:
        return f"{self.business_model}/{self.strategy}"


def _mean(rows: Sequence[Row], column: str) -> float:
    values = [_number(row.get(column)) for row in rows]
    return math.fsum(values) / len(values) if values else math.nan


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def ok_rows(rows: Sequence[Row]) -> list[Row]:
    return [row for row in rows if row.get("status") == "ok"]


def points(rows: Sequence[Row]) -> list[Point]:
    """The rows grouped by AI share, business model and strategy, in that order."""
    groups: dict[tuple[float, str, str], list[Row]] = {}
    for row in ok_rows(rows):
        share = _number(row["ai_share"])
        groups.setdefault((share, str(row["business_model"]), str(row["strategy"])), []).append(row)
    return [
        Point(
            ai_share=share,
            business_model=model,
            strategy=strategy,
            scenarios=len(members),
            profit_usd=_mean(members, "operating_profit_usd"),
            std_usd=_mean(members, "monthly_profit_std_usd"),
            cvar_usd=_mean(members, "monthly_profit_cvar5_usd"),
            payback_years=_mean(members, "payback_years"),
            co2_kg_per_mwh=_mean(members, "co2_kg_per_mwh"),
            co2_t_per_musd=_mean(members, "co2_t_per_musd_profit"),
        )
        for (share, model, strategy), members in sorted(groups.items())
    ]


def best_by_share(found: Sequence[Point]) -> list[Point]:
    """Per AI share, the point of the highest profit."""
    best: dict[float, Point] = {}
    for point in found:
        if point.ai_share not in best or point.profit_usd > best[point.ai_share].profit_usd:
            best[point.ai_share] = point
    return [best[share] for share in sorted(best)]


def frontier(found: Sequence[Point]) -> list[Point]:
    """The points no other beats on both profit (higher) and volatility (lower), by
    volatility."""
    return sorted(
        (
            p
            for p in found
            if not any(
                q.profit_usd >= p.profit_usd
                and q.std_usd <= p.std_usd
                and (q.profit_usd, q.std_usd) != (p.profit_usd, p.std_usd)
                for q in found
            )
        ),
        key=lambda p: p.std_usd,
    )


def axis_effects(
    rows: Sequence[Row], axes: dict[str, tuple[object, ...]]
) -> dict[str, list[tuple[str, int, float]]]:
    """For each axis with more than one value: (value, scenarios, mean operating profit) per
    value, the other axes averaged over."""
    good = ok_rows(rows)
    column = {"hashprice": "hashprice_path"}
    effects: dict[str, list[tuple[str, int, float]]] = {}
    for axis, values in axes.items():
        if len(values) < 2:
            continue
        name = column.get(axis, axis)
        effects[axis] = []
        for value in values:
            members = [row for row in good if row.get(name) == value]
            effects[axis].append((str(value), len(members), _mean(members, "operating_profit_usd")))
    return effects


def _musd(usd: float) -> str:
    return f"{usd / 1e6:,.2f}" if math.isfinite(usd) else "n/a"


def _kusd(usd: float) -> str:
    return f"{usd / 1e3:,.0f}" if math.isfinite(usd) else "n/a"


def _years(years: float) -> str:
    if math.isinf(years):
        return "never"
    return f"{years:.1f}" if math.isfinite(years) else "n/a"


def _plain(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}" if math.isfinite(value) else "n/a"


def _share(share: float) -> str:
    return f"{share:.0%}"


def _period(rows: Sequence[Row]) -> str:
    """What the profits are over: a year, or the window replayed."""
    windows: set[tuple[int, int]] = set()
    for row in rows:
        first, after = year_span(_whole(row.get("year")))
        start, end = _whole(row.get("window_start_day")), _whole(row.get("window_end_day"))
        if (start, end) != (1, (after - first).days + 1):
            windows.add((start, end))
    if not windows:
        return "a year"
    shown = ", ".join(f"days {start} to {end - 1}" for start, end in sorted(windows))
    return f"the window replayed ({shown} of the year), not a year"


def _whole(value: object) -> int:
    return int(value) if isinstance(value, int | float) and math.isfinite(value) else 1


def answer(rows: Sequence[Row]) -> list[str]:
    """The CFO's table and its sentence."""
    found = points(rows)
    best = best_by_share(found)
    if not best:
        return ["No scenario has figures yet."]
    mining = next((p for p in best if p.ai_share == 0.0), None)
    lines = [
        f"Operating profit over {_period(ok_rows(rows))}, M$; per AI share the business model and"
        " strategy that earn the most, each figure the mean over the scenarios of that share,"
        " model and strategy (the other axes averaged; results.csv columns"
        " `operating_profit_usd`, `payback_years`, `monthly_profit_cvar5_usd`,"
        " `co2_t_per_musd_profit`).",
        "",
        "| AI share | best | operating profit M$ | against pure mining M$ | payback years"
        " | worst month (CVaR 5 %) k$ | t CO2 per M$ profit | scenarios |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in best:
        against = _musd(p.profit_usd - mining.profit_usd) if mining else "n/a"
        name = f"pure mining ({p.strategy})" if p.ai_share == 0.0 else p.label
        lines.append(
            f"| {_share(p.ai_share)} | {name} | {_musd(p.profit_usd)} | {against}"
            f" | {_years(p.payback_years)} | {_kusd(p.cvar_usd)} | {_plain(p.co2_t_per_musd)}"
            f" | {p.scenarios} |"
        )
    return [*lines, "", _sentence(best, mining)]


def _sentence(best: Sequence[Point], mining: Point | None) -> str:
    top = max(best, key=lambda p: p.profit_usd)
    if mining is None:
        return (
            f"{_share(top.ai_share)} AI ({top.label}) earns the most, {_musd(top.profit_usd)} M$;"
            " the study has no pure-mining scenario (AI share 0) to weigh it against."
        )
    if top is mining:
        return (
            f"Pure mining earns the most ({_musd(mining.profit_usd)} M$, paying back in"
            f" {_years(mining.payback_years)} years): no AI share swept beats it."
        )
    ratio = top.co2_t_per_musd / mining.co2_t_per_musd if mining.co2_t_per_musd > 0 else math.nan
    co2 = f", at {ratio:.2f}x its CO2 per dollar" if math.isfinite(ratio) else ""
    return (
        f"Turning {_share(top.ai_share)} of the site to AI ({top.label}) earns the most:"
        f" {_musd(top.profit_usd)} M$ against {_musd(mining.profit_usd)} M$ for pure mining,"
        f" paying back in {_years(top.payback_years)} years against"
        f" {_years(mining.payback_years)}, with a worst month of {_kusd(top.cvar_usd)} k$"
        f" against {_kusd(mining.cvar_usd)} k${co2}."
    )


def _figure(width_in: float, height_in: float) -> Figure:
    # A bare Figure draws through Agg when saved: no pyplot, no display, no global state.
    from matplotlib.figure import Figure  # noqa: PLC0415

    return Figure(figsize=(width_in, height_in))


def frontier_plot(found: Sequence[Point]) -> Figure:
    """Profit against monthly volatility, coloured by AI share, the frontier joined."""
    import matplotlib as mpl  # noqa: PLC0415

    figure = _figure(8.0, 5.5)
    axis = figure.add_subplot()
    colours = mpl.colormaps["viridis"]
    norm = mpl.colors.Normalize(0.0, 1.0)
    for p in found:
        axis.scatter(p.std_usd / 1e3, p.profit_usd / 1e6, color=colours(norm(p.ai_share)), s=40)
        axis.annotate(
            p.label,
            (p.std_usd / 1e3, p.profit_usd / 1e6),
            fontsize=7,
            xytext=(4, 2),
            textcoords="offset points",
        )
    edge = frontier(found)
    axis.plot(
        [p.std_usd / 1e3 for p in edge],
        [p.profit_usd / 1e6 for p in edge],
        color="grey",
        linestyle="--",
        linewidth=1,
        label="frontier",
    )
    figure.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=colours), ax=axis, label="AI share")
    axis.set_xlabel("standard deviation of monthly profit, k$")
    axis.set_ylabel("operating profit, M$")
    axis.set_title("Profit against volatility, by AI share")
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure


def co2_plot(found: Sequence[Point]) -> Figure:
    """CO2 per MWh and per M$ of profit against AI share, a line per model and strategy."""
    figure = _figure(10.0, 4.2)
    per_mwh, per_usd = figure.subplots(1, 2)
    for label in sorted({p.label for p in found}):
        line = [p for p in found if p.label == label]
        shares = [100 * p.ai_share for p in line]
        per_mwh.plot(shares, [p.co2_kg_per_mwh for p in line], marker="o", label=label)
        finite = [p for p in line if math.isfinite(p.co2_t_per_musd)]
        per_usd.plot(
            [100 * p.ai_share for p in finite],
            [p.co2_t_per_musd for p in finite],
            marker="o",
            label=label,
        )
    per_mwh.set_ylabel("kg CO2 per MWh drawn")
    per_usd.set_ylabel("t CO2 per M$ of operating profit")
    for axis in (per_mwh, per_usd):
        axis.set_xlabel("AI share, %")
        axis.grid(alpha=0.3)
    per_mwh.legend(fontsize=7)
    figure.tight_layout()
    return figure


def axes_plot(effects: dict[str, list[tuple[str, int, float]]]) -> Figure:
    """One panel per swept axis: mean operating profit per value."""
    columns = min(3, len(effects))
    rows = math.ceil(len(effects) / columns)
    figure = _figure(4.0 * columns, 3.2 * rows)
    for index, (axis_name, values) in enumerate(effects.items()):
        axis = figure.add_subplot(rows, columns, index + 1)
        axis.bar([v for v, _, _ in values], [usd / 1e6 for _, _, usd in values], color="tab:blue")
        axis.set_title(axis_name, fontsize=9)
        axis.set_ylabel("mean operating profit, M$", fontsize=8)
        axis.tick_params(labelsize=7)
    figure.tight_layout()
    return figure


def write_report(rows: Sequence[Row], folder: Path, *, axes: dict[str, tuple[object, ...]]) -> Path:
    """`report.md` and its plots in `folder`; returns the Markdown file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    found = points(rows)
    effects = axis_effects(rows, axes)
    lines = ["# Study report", "", *answer(rows), ""]
    failed = [row for row in rows if row.get("status") != "ok"]
    plots: dict[str, Callable[[], Figure]] = {}
    if found:
        plots[FRONTIER] = lambda: frontier_plot(found)
        plots[CO2] = lambda: co2_plot(found)
        lines += _frontier_section(found) + _co2_section(found)
    if found and effects:
        plots[AXES] = lambda: axes_plot(effects)
        lines += _axes_section(effects)
    for name, draw in plots.items():
        draw().savefig(folder / name, dpi=DPI)
    lines += _failed_section(failed)
    lines += [
        "## Where the numbers come from",
        "",
        f"Every figure above is a mean of columns of `{CSV}` (one row per scenario, its inputs"
        " and figures; `results.parquet` holds the same), over the scenarios with `status` ok"
        " that share the values named. Payback is capex over the operating profit scaled to a"
        " year; `never` where a scenario makes no profit. Months are UTC calendar months.",
        "",
    ]
    markdown = folder / "report.md"
    markdown.write_text("\n".join(lines))
    return markdown


def _frontier_section(found: Sequence[Point]) -> list[str]:
    edge = {(p.ai_share, p.label) for p in frontier(found)}
    lines = [
        "## Profit against volatility",
        "",
        f"![profit against volatility]({FRONTIER})",
        "",
        "Each point one AI share, business model and strategy (`operating_profit_usd` and"
        " `monthly_profit_std_usd`, means); the frontier joins those no other beats on both.",
        "",
        "| AI share | model/strategy | operating profit M$ | monthly std k$ | on the frontier |",
        "| ---: | --- | ---: | ---: | --- |",
    ]
    lines += [
        f"| {_share(p.ai_share)} | {p.label} | {_musd(p.profit_usd)} | {_kusd(p.std_usd)}"
        f" | {'yes' if (p.ai_share, p.label) in edge else ''} |"
        for p in found
    ]
    return [*lines, ""]


def _co2_section(found: Sequence[Point]) -> list[str]:
    lines = [
        "## CO2 against AI share",
        "",
        f"![CO2 against AI share]({CO2})",
        "",
        "ERCOT's hourly average intensity times the site's draw (`co2_kg_per_mwh`,"
        " `co2_t_per_musd_profit`, means); n/a where the profit is not positive.",
        "",
        "| AI share | model/strategy | kg CO2 per MWh | t CO2 per M$ profit |",
        "| ---: | --- | ---: | ---: |",
    ]
    lines += [
        f"| {_share(p.ai_share)} | {p.label} | {_plain(p.co2_kg_per_mwh, 1)}"
        f" | {_plain(p.co2_t_per_musd)} |"
        for p in found
    ]
    return [*lines, ""]


def _axes_section(effects: dict[str, list[tuple[str, int, float]]]) -> list[str]:
    lines = [
        "## What each axis does to profit",
        "",
        f"![profit by axis]({AXES})",
        "",
        "Mean `operating_profit_usd` of the scenarios with each value, the other axes averaged.",
        "",
        "| axis | value | scenarios | mean operating profit M$ |",
        "| --- | --- | ---: | ---: |",
    ]
    for axis, values in effects.items():
        lines += [f"| {axis} | {v} | {n} | {_musd(usd)} |" for v, n, usd in values]
    return [*lines, ""]


def _failed_section(failed: Sequence[Row]) -> list[str]:
    if not failed:
        return []
    lines = [
        "## Failed scenarios",
        "",
        f"{len(failed)} scenario{'s' if len(failed) != 1 else ''} without figures (a re-run"
        " tries them again):",
        "",
        "| key | AI share | model | strategy | year | error |",
        "| --- | ---: | --- | --- | ---: | --- |",
    ]
    for row in failed:
        error = str(row.get("error")).replace("|", "/")
        lines.append(
            f"| {row.get('key')} | {_share(_number(row.get('ai_share')))}"
            f" | {row.get('business_model')} | {row.get('strategy')} | {row.get('year')}"
            f" | {error} |"
        )
    return [*lines, ""]
