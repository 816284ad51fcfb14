"""What a replay shows: the summary table, the JSON document, and a folder of Markdown and PNGs."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from gridpilot.adapters.recorded import CENTRAL, Gap
from gridpilot.agent.replay.period import STRATEGIES, ReplayResult, Totals
from gridpilot.optimizer.problem import FloatArray

if TYPE_CHECKING:  # matplotlib is imported only where a plot is drawn (see `write_report`)
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

IntArray = npt.NDArray[np.int64]

# The plots' files, as report.md names them.
PRICE_HEATMAP = "price_heatmap.png"
CURTAILMENT_HEATMAP = "curtailment_heatmap.png"
WEEK_AT_STAKE = "week_at_stake.png"
MONTHLY_PROFIT = "monthly_profit.png"
ALLOWANCE = "allowance.png"
CP_DAYS = "cp_days.png"
RESERVES = "reserves.png"

WEEK_DAYS = 7
# The price heatmap's colour scale is clipped to these percentiles of its hourly means, so that
# a few spike hours (ERCOT's cap is 5,000 $/MWh) do not wash the everyday shape out.
PRICE_CLIP_PERCENTILES = (1.0, 99.0)
# The week's price panel is linear up to this and logarithmic beyond: spikes stay on the chart.
PRICE_LINEAR_TO_USD_PER_MWH = 100.0
DPI = 110


def describe_gap(series: str, gap: Gap) -> str:
    """One line for an operator: which series, when, how long, and what was done about it."""
    minutes = (gap.end_utc - gap.start_utc).total_seconds() / 60.0
    length = f"{minutes:g} min" if minutes < 120 else f"{minutes / 60:g} h"
    return (
        f"{series}: none from {gap.start_utc:%Y-%m-%d %H:%M} to {gap.end_utc:%Y-%m-%d %H:%M} UTC"
        f" ({length}); {gap.policy}"
    )


def summary(result: ReplayResult) -> dict[str, Any]:
    """The JSON document: per strategy the figures of the issue, plus `wall_s` for the run."""
    document: dict[str, Any] = {
        "start": result.start.isoformat(),
        "end": result.end.isoformat(),
        "settlement_point": result.settlement_point,
    }
    programs = bool(result.cp_intervals) or bool(result.deployments) or len(result.totals) > 4
    for name in result.strategies:
        totals = result.totals[name]
        document[name] = {
            "profit_usd": round(totals.profit_usd, 2),
            "hash_revenue_usd": round(totals.hash_revenue_usd, 2),
            "ai_revenue_usd": round(totals.ai_revenue_usd, 2),
            "energy_cost_usd": round(totals.energy_cost_usd, 2),
            "penalty_usd": round(totals.penalty_usd, 2),
            "energy_mwh": round(totals.energy_mwh, 3),
            "asic_curtailed_mwh": round(totals.asic_curtailed_mwh, 3),
            "gpu_curtailed_gpu_hours": round(totals.gpu_curtailed_gpu_hours, 2),
            "sla_breaches": totals.sla_breaches,
            "limit_violation_minutes": round(totals.limit_violation_minutes, 3),
            "wakes_refused": totals.wakes_refused,
            "capture": round(result.capture(name), 4),
        }
        if programs:
            document[name] |= _programs_summary(totals)
    if programs:
        document["cp_intervals_utc"] = [m.isoformat() for m in result.cp_intervals]
        document["deployments"] = [
            {
                "product": d.product,
                "start_utc": d.start.isoformat(),
                "end_utc": d.end.isoformat(),
                "source": d.source,
            }
            for d in result.deployments
        ]
    if result.hashprice_usd_per_th_day is not None:
        document["hashprice_usd_per_th_day"] = result.hashprice_usd_per_th_day
    document["data_gaps"] = [
        {
            "series": series,
            "start_utc": gap.start_utc.isoformat(),
            "end_utc": gap.end_utc.isoformat(),
            "missing_intervals": gap.missing_intervals,
            "policy": gap.policy,
        }
        for series, gap in result.data_gaps
    ]
    document["wall_s"] = round(result.wall_s, 2)
    return document


def _programs_summary(totals: Totals) -> dict[str, Any]:
    return {
        "transmission_usd": round(totals.transmission_usd, 2),
        "ancillary_usd": round(totals.ancillary_usd, 2),
        "ancillary_by_product_usd": {
            p: round(v, 2) for p, v in sorted(totals.ancillary_by_product_usd.items())
        },
        "reserve_failure_usd": round(totals.reserve_failure_usd, 2),
        "deployments": totals.deployments,
        "failed_deployments": totals.failed_deployments,
        "cp_hours_curtailed": round(totals.cp_hours_curtailed, 2),
        "cp_mw_at_intervals": [round(mw, 3) for mw in totals.cp_mw_at_intervals],
    }


def table(result: ReplayResult) -> list[str]:
    lines = [
        f"replay {result.start:%Y-%m-%d %H:%M} to {result.end:%Y-%m-%d %H:%M} UTC at"
        f" {result.settlement_point}, {result.wall_s:.1f} s",
        "",
        f"  {'strategy':<13} {'profit $':>14} {'hash $':>12} {'AI $':>13} {'energy $':>12}"
        f" {'penalty $':>10} {'MWh':>9} {'capture':>8} {'SLA':>4} {'over min':>8}",
    ]
    for name in result.strategies:
        t = result.totals[name]
        lines.append(
            f"  {name:<13} {t.profit_usd:14,.0f} {t.hash_revenue_usd:12,.0f}"
            f" {t.ai_revenue_usd:13,.0f} {t.energy_cost_usd:12,.0f} {t.penalty_usd:10,.0f}"
            f" {t.energy_mwh:9,.0f} {result.capture(name):8.3f} {t.sla_breaches:4d}"
            f" {t.limit_violation_minutes:8.1f}"
        )
    if len(result.totals) > len(STRATEGIES):
        lines += [
            "",
            f"  {'programs':<13} {'4CP $':>12} {'reserves $':>12} {'failures $':>11}"
            f" {'deployed':>9} {'failed':>7} {'4CP hours':>10}  MW at the 4CP intervals",
        ]
        for name in result.strategies:
            t = result.totals[name]
            at = " ".join(f"{mw:.1f}" for mw in t.cp_mw_at_intervals)
            lines.append(
                f"  {name:<13} {t.transmission_usd:12,.0f} {t.ancillary_usd:12,.0f}"
                f" {t.reserve_failure_usd:11,.0f} {t.deployments:9d} {t.failed_deployments:7d}"
                f" {t.cp_hours_curtailed:10.1f}  {at}"
            )
    return lines


def _interval_s(result: ReplayResult) -> float:
    """The length of one of the result's intervals, in seconds."""
    return (result.end - result.start).total_seconds() / max(result.price_usd_per_mwh.size, 1)


@dataclass(frozen=True, slots=True)
class _CentralClock:
    """Where each interval starts on the Central wall clock: its day and its hour of day."""

    days: tuple[date, ...]  # every Central day from the first interval's to the last's
    day_index: IntArray  # per interval, its day's index in `days`
    hour: IntArray  # per interval, its Central hour of day, 0 to 23


def _central_clock(start: datetime, interval_s: float, count: int) -> _CentralClock:
    local = [(start + timedelta(seconds=k * interval_s)).astimezone(CENTRAL) for k in range(count)]
    first = local[0].date()
    day_index = np.array([(t.date() - first).days for t in local], dtype=np.int64)
    days = tuple(first + timedelta(days=d) for d in range(int(day_index[-1]) + 1))
    return _CentralClock(days, day_index, np.array([t.hour for t in local], dtype=np.int64))


@dataclass(frozen=True, slots=True, eq=False)
class DayHourGrid:
    """Values by Central day (rows) and Central hour of day (24 columns)."""

    days: tuple[date, ...]
    values: FloatArray  # shape (len(days), 24); NaN where no interval starts in the hour


def day_hour_grid(start: datetime, interval_s: float, values: FloatArray) -> DayHourGrid:
    """Each cell the mean of the intervals that start in that Central day and wall-clock hour.

    Cells are keyed by the wall clock, so nothing after a daylight-saving change shifts: on the
    spring-forward day (23 hours) the skipped 02:00 hour has no interval and stays NaN (drawn as
    "no data"); on the fall-back day (25 hours) the 01:00 hour happens twice, and its cell is the
    mean of both (eight quarter hours rather than four)."""
    clock = _central_clock(start, interval_s, values.size)
    cell = clock.day_index * 24 + clock.hour
    cells = len(clock.days) * 24
    total = np.bincount(cell, weights=values, minlength=cells)
    count = np.bincount(cell, minlength=cells)
    mean = np.full(cells, np.nan)
    np.divide(total, count, out=mean, where=count > 0)
    return DayHourGrid(clock.days, mean.reshape(len(clock.days), 24))


def stake_usd(result: ReplayResult) -> FloatArray:
    """Per interval, the value at stake in $: |real-time price| times the spread between the
    highest and the lowest site draw among the strategies, over the interval. It is the most
    by which the strategies' energy bills for the interval differ: how much money the decision
    of how much to draw moved then."""
    draws_watts = np.vstack([result.site_watts[name] for name in result.strategies])
    spread_mw = (draws_watts.max(axis=0) - draws_watts.min(axis=0)) / 1e6
    hours = _interval_s(result) / 3600.0
    stake: FloatArray = np.abs(result.price_usd_per_mwh) * spread_mw * hours
    return stake


@dataclass(frozen=True, slots=True)
class Week:
    """A run of Central days of a replay and the intervals [first, stop) that start in them."""

    first_day: date
    last_day: date
    first: int
    stop: int
    stake_usd: float


def week_at_stake(result: ReplayResult) -> Week:
    """The seven consecutive Central days with the most value at stake (`stake_usd` summed over
    their intervals); the earliest such week on a tie, and the whole replay if it is shorter."""
    step_s = _interval_s(result)
    stake = stake_usd(result)
    clock = _central_clock(result.start, step_s, stake.size)
    per_day = np.bincount(clock.day_index, weights=stake, minlength=len(clock.days))
    span = min(WEEK_DAYS, len(clock.days))
    sums = np.lib.stride_tricks.sliding_window_view(per_day, span).sum(axis=1)
    first_day = int(np.argmax(sums))
    first = int(np.searchsorted(clock.day_index, first_day))
    stop = int(np.searchsorted(clock.day_index, first_day + span))
    return Week(
        first_day=clock.days[first_day],
        last_day=clock.days[first_day + span - 1],
        first=first,
        stop=stop,
        stake_usd=float(sums[first_day]),
    )


def price_colour_range(grid: DayHourGrid) -> tuple[float, float]:
    """The price heatmap's clipped colour scale, $/MWh: from the 1st percentile of its hourly
    means (or 0 if that is above 0) to the 99th."""
    finite = grid.values[np.isfinite(grid.values)]
    low, high = (float(v) for v in np.percentile(finite, PRICE_CLIP_PERCENTILES))
    low = min(low, 0.0)
    return low, max(high, low + 1.0)


def _figure(width_in: float, height_in: float) -> Figure:
    # A bare Figure draws through Agg when saved: no pyplot, so no display backend on a site
    # controller or in CI, and no global registry of open figures to close.
    from matplotlib.figure import Figure  # noqa: PLC0415

    return Figure(figsize=(width_in, height_in))


# matplotlib.dates has no type annotations (matplotlib 3.11); its few calls here are marked.


def _central_date_axis(axis: Axes, *, minor_hours: tuple[int, ...] = ()) -> None:
    """Date ticks and labels on the x axis (whose values are matplotlib date numbers) in US
    Central time, so a tick at midnight is a Central midnight; minor ticks at `minor_hours`."""
    import matplotlib.dates as mdates  # noqa: PLC0415

    locator = mdates.AutoDateLocator(tz=CENTRAL)  # type: ignore[no-untyped-call]
    formatter = mdates.ConciseDateFormatter(locator, tz=CENTRAL)  # type: ignore[no-untyped-call]
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(formatter)
    if minor_hours:
        minor = mdates.HourLocator(byhour=minor_hours, tz=CENTRAL)  # type: ignore[no-untyped-call]
        axis.xaxis.set_minor_locator(minor)
    axis.set_xlabel("US Central time (America/Chicago)")


def _date_numbers(moments: list[datetime]) -> FloatArray:
    """Matplotlib's date numbers (days since its epoch, in UTC) of timezone-aware moments."""
    import matplotlib.dates as mdates  # noqa: PLC0415

    numbers = mdates.date2num(moments)  # type: ignore[no-untyped-call]
    return np.asarray(numbers, dtype=np.float64)


def _day_edges(days: tuple[date, ...]) -> FloatArray:
    """Date numbers of the Central midnights that bound `days`: a 23- or 25-hour day is a
    column that much narrower or wider, at its true place on the time axis."""
    bounds = [*days, days[-1] + timedelta(days=1)]
    return _date_numbers([datetime.combine(d, time(0), CENTRAL) for d in bounds])


def _heatmap(
    grid: DayHourGrid,
    *,
    title: str,
    colour_label: str,
    colours: str,
    low: float,
    high: float,
) -> Figure:
    """Days along the x axis, the hours of each Central day up it, one coloured cell per hour."""
    import matplotlib as mpl  # noqa: PLC0415

    figure = _figure(12, 4.2)
    axis = figure.subplots()
    cmap = mpl.colormaps[colours].with_extremes(bad="#d9d9d9")  # no data: grey
    mesh = axis.pcolormesh(
        _day_edges(grid.days),
        np.arange(25),
        np.ma.masked_invalid(grid.values.T),
        cmap=cmap,
        vmin=low,
        vmax=high,
        shading="flat",
    )
    finite = grid.values[np.isfinite(grid.values)]
    over, under = bool(np.any(finite > high)), bool(np.any(finite < low))
    extend = {(True, True): "both", (True, False): "max", (False, True): "min"}
    colourbar = figure.colorbar(mesh, ax=axis, extend=extend.get((over, under), "neither"))
    colourbar.set_label(colour_label)
    axis.set_yticks(range(0, 25, 6), [f"{h:02d}:00" for h in range(0, 25, 6)])
    axis.set_ylabel("hour of day (Central)")
    axis.set_title(title)
    _central_date_axis(axis)
    figure.tight_layout()
    return figure


def price_heatmap(result: ReplayResult) -> Figure:
    """The real-time price's hourly mean by Central day and hour, on a clipped colour scale."""
    grid = day_hour_grid(result.start, _interval_s(result), result.price_usd_per_mwh)
    low, high = price_colour_range(grid)
    return _heatmap(
        grid,
        title=f"Real-time price at {result.settlement_point}",
        colour_label=f"$/MWh, clipped to {low:,.0f} to {high:,.0f}",
        colours="inferno",
        low=low,
        high=high,
    )


def curtailment_heatmap(result: ReplayResult) -> Figure:
    """The agent's curtailed ASIC MW, mean over each Central day and hour, linear from 0."""
    grid = day_hour_grid(
        result.start, _interval_s(result), result.asic_curtailed_watts["agent"] / 1e6
    )
    finite = grid.values[np.isfinite(grid.values)]
    return _heatmap(
        grid,
        title="Agent's curtailed ASIC power",
        colour_label="MW curtailed",
        colours="viridis",
        low=0.0,
        high=max(float(finite.max()), 1e-3),
    )


# The week's price axis is labelled in plain $/MWh at these, where they fall in its range.
_PRICE_TICKS = (-250, -100, -50, 0, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000)

# One look per strategy in the week plot: the agent stands out, always-on is the reference.
_STYLE: dict[str, dict[str, Any]] = {
    "always_on": {"color": "0.55", "linestyle": "--", "linewidth": 1.0},
    "threshold": {"color": "tab:orange", "linewidth": 1.0},
    "hindsight": {"color": "tab:green", "linewidth": 1.0},
    "agent": {"color": "tab:blue", "linewidth": 1.6},
    "threshold_4cp": {"color": "tab:purple", "linewidth": 1.0},
    "fixed_reserve": {"color": "tab:brown", "linewidth": 1.0},
}


def week_plot(result: ReplayResult, week: Week) -> Figure:
    """The price (above) and each strategy's site MW (below) over `week`, step by step."""
    import matplotlib.ticker as mticker  # noqa: PLC0415

    step_s = _interval_s(result)
    edges = _date_numbers(
        [result.start + timedelta(seconds=k * step_s) for k in range(week.first, week.stop + 1)]
    )
    window = slice(week.first, week.stop)
    figure = _figure(12, 6.5)
    price, power = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 3]})
    prices = result.price_usd_per_mwh[window]
    price.stairs(prices, edges, baseline=None, color="black", linewidth=0.9)
    price.set_yscale("symlog", linthresh=PRICE_LINEAR_TO_USD_PER_MWH)
    ticks = [t for t in _PRICE_TICKS if prices.min() - 25 <= t <= prices.max() * 1.2 + 25]
    price.set_yticks(ticks, [f"{t:,.0f}" for t in ticks])
    price.yaxis.set_minor_locator(mticker.NullLocator())
    price.axhline(0.0, color="0.7", linewidth=0.6)
    price.set_ylabel("real-time price, $/MWh")
    price.set_title(
        f"Week with the most at stake: {week.first_day:%a %d %b} to {week.last_day:%a %d %b %Y}"
        f" (Central), ${week.stake_usd:,.0f}"
    )
    for name in ("always_on", "threshold", "hindsight", "agent"):
        watts = result.site_watts[name][window]
        power.stairs(watts / 1e6, edges, baseline=None, label=name, **_STYLE[name])
    power.set_ylabel("site draw, MW")
    power.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8)  # off the data
    power.set_xlim(edges[0], edges[-1])
    _central_date_axis(power, minor_hours=(6, 12, 18))
    for axis in (price, power):
        axis.grid(True, axis="x", which="major", color="0.8", linewidth=0.7)
        axis.grid(True, axis="x", which="minor", color="0.93", linewidth=0.5)
    figure.tight_layout()
    return figure


def _monthly_profit(result: ReplayResult, months: list[str]) -> Figure:
    base = np.array([result.totals["always_on"].monthly_profit_usd.get(m, 0.0) for m in months])
    figure = _figure(12, 4)
    axis = figure.subplots()
    width = 0.27
    for offset, name in enumerate(("agent", "threshold", "hindsight")):
        gain = np.array([result.totals[name].monthly_profit_usd.get(m, 0.0) for m in months]) - base
        axis.bar(np.arange(len(months)) + (offset - 1) * width, gain, width, label=name)
    axis.set_xticks(np.arange(len(months)), months, rotation=45)
    axis.set_ylabel("profit over always-on, $")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _allowance(result: ReplayResult, months: list[str]) -> Figure:
    contracts = sorted(
        {c for t in result.totals.values() for u in t.allowance_used.values() for c in u}
    )
    figure = _figure(12, 4)
    axis = figure.subplots()
    for name in ("agent", "hindsight"):
        for contract in contracts:
            used = [
                result.totals[name].allowance_used.get(m, {}).get(contract, 0.0) for m in months
            ]
            axis.plot(months, used, marker="o", label=f"{name} {contract}")
    axis.set_ylabel("allowance used, node-hours")
    axis.tick_params(axis="x", rotation=45)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def has_programs(result: ReplayResult) -> bool:
    """Whether `result` replayed the grid programs: their baselines beside the four strategies,
    official 4CP intervals in the window, or reserve awards."""
    baselines = len(result.strategies) > len(STRATEGIES)
    return baselines or bool(result.cp_intervals) or bool(result.reserve_mw)


def _central(moment: datetime) -> str:
    return f"{moment.astimezone(CENTRAL):%Y-%m-%d %H:%M %Z}"


def _products(result: ReplayResult) -> list[str]:
    """The reserve products of the result: the priced ones in their order, then any other paid."""
    paid = {p for t in result.totals.values() for p in t.ancillary_by_product_usd}
    priced = list(result.clearing_usd_per_mw_h)
    return priced + sorted(paid - set(priced))


def mw_at_cp_intervals(result: ReplayResult, strategy: str) -> tuple[float, ...]:
    """`strategy`'s site MW in each official 4CP interval of `result.cp_intervals`: its
    `cp_mw_at_intervals`, or, where those are fewer (a year without a transmission rate is not
    charged, and its intervals are left out of them), its draw in each read off `site_watts`."""
    charged = result.totals[strategy].cp_mw_at_intervals
    if len(charged) == len(result.cp_intervals):
        return charged
    step_s = _interval_s(result)
    watts = result.site_watts[strategy]
    at = [round((t - result.start).total_seconds() / step_s) for t in result.cp_intervals]
    return tuple(float(watts[k]) / 1e6 for k in at)


def programs_table(result: ReplayResult) -> list[str]:
    """The grid programs per strategy, a Markdown table: the 4CP charge, reserves paid (by
    product and in all), failures charged, the net, deployments carried out and failed, hours
    lowered for 4CP, and the site MW at each official 4CP interval (headed by its Central
    start)."""
    products = _products(result)
    heads = [
        "strategy",
        "4CP $",
        *(f"{p} $" for p in products),
        "reserves $",
        "failures $",
        "programs net $",
        "deployments",
        "failed",
        "hours lowered for 4CP",
        *(f"MW {_central(t)}" for t in result.cp_intervals),
    ]
    rows = [
        "| " + " | ".join(heads) + " |",
        "|:--" + "|--:" * (len(heads) - 1) + "|",
    ]
    for name in result.strategies:
        t = result.totals[name]
        cells = [
            name,
            f"{t.transmission_usd:,.0f}",
            *(f"{t.ancillary_by_product_usd.get(p, 0.0):,.0f}" for p in products),
            f"{t.ancillary_usd:,.0f}",
            f"{t.reserve_failure_usd:,.0f}",
            f"{t.programs_usd:,.0f}",
            f"{t.deployments:d}",
            f"{t.failed_deployments:d}",
            f"{t.cp_hours_curtailed:.1f}",
            *(f"{mw:.1f}" for mw in mw_at_cp_intervals(result, name)),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


@dataclass(frozen=True, slots=True)
class CpDay:
    """A Central day that holds official 4CP intervals, and the replay's intervals [first,
    stop) that start in it."""

    day: date
    intervals: tuple[datetime, ...]  # the official intervals' starts in the day, UTC
    first: int
    stop: int


def cp_days(result: ReplayResult) -> tuple[CpDay, ...]:
    """One per Central day that holds an official 4CP interval, in order."""
    if not result.cp_intervals:
        return ()
    clock = _central_clock(result.start, _interval_s(result), result.price_usd_per_mwh.size)
    found: list[CpDay] = []
    for day in sorted({t.astimezone(CENTRAL).date() for t in result.cp_intervals}):
        index = (day - clock.days[0]).days
        found.append(
            CpDay(
                day=day,
                intervals=tuple(
                    t for t in result.cp_intervals if t.astimezone(CENTRAL).date() == day
                ),
                first=int(np.searchsorted(clock.day_index, index)),
                stop=int(np.searchsorted(clock.day_index, index + 1)),
            )
        )
    return tuple(found)


def _cp_day_panel(load: Axes, result: ReplayResult, day: CpDay) -> Axes:
    """ERCOT's load (GW) on `load`, each strategy's site MW on a twin axis (returned), over one
    Central day, its 4CP intervals shaded."""
    import matplotlib.dates as mdates  # noqa: PLC0415

    step_s = _interval_s(result)
    edges = _date_numbers(
        [result.start + timedelta(seconds=k * step_s) for k in range(day.first, day.stop + 1)]
    )
    window = slice(day.first, day.stop)
    site = load.twinx()
    for interval in day.intervals:
        band = _date_numbers([interval, interval + timedelta(seconds=step_s)])
        load.axvspan(band[0], band[1], color="tab:red", alpha=0.3, lw=0, label="4CP interval")
    if result.system_load_mw is not None:
        gw = result.system_load_mw[window] / 1e3
        load.stairs(gw, edges, baseline=None, color="black", lw=1.2, label="ERCOT load, GW")
    for name in result.strategies:
        watts = result.site_watts[name][window]
        site.stairs(watts / 1e6, edges, baseline=None, label=name, **_STYLE.get(name, {}))
    site.set_ylim(bottom=0.0)
    load.set_xlim(*_day_edges((day.day,)))
    hours = mdates.HourLocator(byhour=range(0, 24, 3), tz=CENTRAL)  # type: ignore[no-untyped-call]
    load.xaxis.set_major_locator(hours)
    load.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=CENTRAL))  # type: ignore[no-untyped-call]
    load.grid(True, axis="x", color="0.9", linewidth=0.6)
    load.set_ylabel("ERCOT system load, GW")
    site.set_ylabel("site draw, MW")
    load.set_xlabel("US Central time (America/Chicago)")
    at = ", ".join(f"{t.astimezone(CENTRAL):%H:%M}" for t in day.intervals)
    load.set_title(f"{day.day:%a %d %b %Y}: 4CP interval at {at} Central", fontsize=10)
    return site


def cp_days_plot(result: ReplayResult) -> Figure:
    """One panel per 4CP day (`cp_days`), two abreast: the day's system load and site draws."""
    days = cp_days(result)
    columns = min(2, len(days))
    rows = -(-len(days) // columns)
    figure = _figure(12, 0.8 + 3.4 * rows)
    figure.set_layout_engine("constrained")
    panels = [figure.add_subplot(rows, columns, n + 1) for n in range(len(days))]
    sites = [_cp_day_panel(panel, result, day) for panel, day in zip(panels, days, strict=True)]
    handles, labels = panels[0].get_legend_handles_labels()
    site_handles, site_labels = sites[0].get_legend_handles_labels()
    figure.legend(
        [*handles, *site_handles], [*labels, *site_labels], loc="outside right upper", fontsize=8
    )
    return figure


def _reserves(result: ReplayResult) -> bool:
    """Whether any reserve product was offered in the window (priced and qualified)."""
    return any(result.reserve_mw.values())


def reserve_profile_mw(result: ReplayResult, strategy: str = "agent") -> dict[str, FloatArray]:
    """Per product, `strategy`'s awarded MW by Central hour of day (24 values): the mean over
    the window's intervals that start in the hour, awarded or not (0 in an hour a window
    shorter than a day does not reach)."""
    awards = result.reserve_mw.get(strategy, {})
    clock = _central_clock(result.start, _interval_s(result), result.price_usd_per_mwh.size)
    count = np.bincount(clock.hour, minlength=24)
    profile: dict[str, FloatArray] = {}
    for product, mw in awards.items():
        total = np.bincount(clock.hour, weights=mw, minlength=24)
        profile[product] = np.divide(total, count, out=np.zeros(24), where=count > 0)
    return profile


def reserve_revenue_by_month(result: ReplayResult) -> dict[str, dict[str, float]]:
    """Per strategy, its reserve payments by UTC calendar month, $: each interval's awards
    times their clearing prices times its hours, booked to the month the interval starts in, as
    the replay's ledger books months. A strategy's months add up to its `ancillary_usd`."""
    step_s = _interval_s(result)
    count = result.price_usd_per_mwh.size
    keys = [f"{result.start + timedelta(seconds=k * step_s):%Y-%m}" for k in range(count)]
    months, month_of = np.unique(np.array(keys), return_inverse=True)
    revenue: dict[str, dict[str, float]] = {}
    for name, awards in result.reserve_mw.items():
        usd = np.zeros(count)
        for product, mw in awards.items():
            usd += mw * result.clearing_usd_per_mw_h[product] * step_s / 3_600.0
        by_month = np.bincount(month_of, weights=usd, minlength=months.size)
        revenue[name] = {str(m): float(v) for m, v in zip(months, by_month, strict=True)}
    return revenue


def reserves_plot(result: ReplayResult) -> Figure:
    """The agent's reserve MW by Central hour per product (stacked, left) and each awarded
    strategy's reserve payments by UTC month (right)."""
    import matplotlib.ticker as mticker  # noqa: PLC0415

    figure = _figure(12, 4.2)
    hourly, monthly = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    bottom = np.zeros(24)
    for product, mw in reserve_profile_mw(result).items():
        hourly.bar(np.arange(24) + 0.5, mw, 1.0, bottom=bottom, label=product, edgecolor="white")
        bottom += mw
    hourly.set_xlim(0, 24)
    hourly.set_ylim(0.0, max(float(bottom.max()), 1e-3) * 1.25)  # room for the legend above
    hourly.set_xticks(range(0, 25, 3), [f"{h:02d}:00" for h in range(0, 25, 3)])
    hourly.set_xlabel("hour of day (US Central)")
    hourly.set_ylabel("awarded MW, mean over the window")
    hourly.set_title("Agent's reserve awards by hour of day (Central)", fontsize=10)
    revenue = {n: r for n, r in reserve_revenue_by_month(result).items() if any(r.values())}
    months = sorted({m for r in revenue.values() for m in r})
    width = 0.8 / max(len(revenue), 1)
    for offset, (name, by_month) in enumerate(revenue.items()):
        usd = [by_month.get(m, 0.0) for m in months]
        colour = _STYLE.get(name, {}).get("color")
        x = np.arange(len(months)) + (offset - (len(revenue) - 1) / 2) * width
        monthly.bar(x, usd, width, label=name, color=colour)
    monthly.set_xticks(np.arange(len(months)), months)
    monthly.margins(y=0.2)  # room for the legend above
    monthly.set_xlabel("UTC calendar month")
    monthly.set_ylabel("reserve payments, $")
    monthly.yaxis.set_major_formatter(mticker.StrMethodFormatter("{x:,.0f}"))
    monthly.set_title("Reserve payments by month (UTC)", fontsize=10)
    for axis in (hourly, monthly):
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8, loc="upper center", ncols=3)
    figure.tight_layout()
    return figure


def write_report(result: ReplayResult, folder: Path) -> Path:
    """Markdown with PNG plots; returns the Markdown file's path. A result with the grid
    programs (`has_programs`) gets their section too: a table and two plots more."""
    # matplotlib (half a second to import) is loaded only by the plotting functions, which only
    # a report calls: the command line, and so the daemon, imports this module without it.
    folder.mkdir(parents=True, exist_ok=True)
    week = week_at_stake(result)
    programs = has_programs(result)
    for name, figure in _figures(result, week, programs=programs).items():
        figure.savefig(folder / name, dpi=DPI)
    lines = [*_head(result), *_plots_section(result, week)]
    if programs:
        lines += _programs_section(result)
    markdown = folder / "report.md"
    markdown.write_text("\n".join(lines))
    return markdown


def _figures(result: ReplayResult, week: Week, *, programs: bool) -> dict[str, Figure]:
    months = sorted({m for t in result.totals.values() for m in t.monthly_profit_usd})
    figures = {
        PRICE_HEATMAP: price_heatmap(result),
        CURTAILMENT_HEATMAP: curtailment_heatmap(result),
        WEEK_AT_STAKE: week_plot(result, week),
        MONTHLY_PROFIT: _monthly_profit(result, months),
        ALLOWANCE: _allowance(result, months),
    }
    if programs and result.cp_intervals:
        figures[CP_DAYS] = cp_days_plot(result)
    if programs and _reserves(result):
        figures[RESERVES] = reserves_plot(result)
    return figures


def _head(result: ReplayResult) -> list[str]:
    """The report's title, the summary table, its note and the data's gaps."""
    return [
        "# Replay report",
        "",
        "```",
        *table(result),
        "```",
        "",
        "Capture: the share of the hindsight bound's improvement over always-on that a",
        "strategy achieves, (profit - always_on) / (hindsight - always_on). Months are",
        "UTC calendar months, the AI contracts' billing months.",
        "",
        "## Gaps in the recorded data",
        "",
        *(
            [f"- {describe_gap(series, gap)}" for series, gap in result.data_gaps]
            or ["None in the replayed window or the history before it."]
        ),
        "",
        "```json",
        json.dumps(summary(result), indent=2),
        "```",
        "",
    ]


def _plots_section(result: ReplayResult, week: Week) -> list[str]:
    """The energy plots, each with its caption."""
    low, high = price_colour_range(
        day_hour_grid(result.start, _interval_s(result), result.price_usd_per_mwh)
    )
    step = f"{_interval_s(result) / 60:g}-minute"
    week_span = f"{week.first_day:%a %Y-%m-%d} to {week.last_day:%a %Y-%m-%d}"
    return [
        "## Plots",
        "",
        "Times are US Central (America/Chicago, with daylight saving), ERCOT's operating"
        " time. In the heatmaps each column is a Central day and each cell an hour of it:"
        " the hour skipped when clocks spring forward is grey (no data), and the hour"
        " repeated when they fall back is the mean of both.",
        "",
        f"![real-time price by Central day and hour]({PRICE_HEATMAP})",
        "",
        f"*Hourly mean real-time price at {result.settlement_point}, colour clipped to"
        f" {low:,.0f} to {high:,.0f} $/MWh (1st to 99th percentile of the hours; beyond"
        " them, the end colours): look for when power is dear, by season and by hour.*",
        "",
        f"![agent's curtailed ASIC MW by Central day and hour]({CURTAILMENT_HEATMAP})",
        "",
        "*The agent's curtailed ASIC MW, hourly mean on a linear scale from 0: look for"
        " curtailment in the cells where the price map above is bright, and none where"
        " it is dark.*",
        "",
        f"Value at stake, per {step} interval: the real-time price (its absolute value)"
        " times the spread between the highest and the lowest site draw among the four"
        " strategies, times the interval, i.e. the most by which the strategies' energy"
        " bills for it differ. The week with the most at stake is the seven consecutive"
        f" Central days with the largest sum of it: {week_span}, ${week.stake_usd:,.0f}.",
        "",
        f"![each strategy's site MW against the price, {week_span}]({WEEK_AT_STAKE})",
        "",
        f"*Price above (linear to {PRICE_LINEAR_TO_USD_PER_MWH:g} $/MWh, logarithmic"
        " beyond) and each strategy's site"
        f" MW below, {step} steps, {week_span} (Central): look for the agent stepping"
        " down as the price steps up, as the hindsight bound does.*",
        "",
        f"![monthly profit over always-on]({MONTHLY_PROFIT})",
        "",
        "*Each strategy's profit over always-on per UTC month: look for the agent's bar"
        " close to the hindsight bound's and above the threshold rule's.*",
        "",
        f"![allowance use per contract]({ALLOWANCE})",
        "",
        "*Node-hours of each AI contract's curtailment allowance used per UTC month: look"
        " for the agent spending it as the hindsight bound does, not past it.*",
        "",
    ]


def _deployments_line(result: ReplayResult) -> str:
    """How many deployments the window held, by product and source."""
    if not result.deployments:
        return "No reserve deployments in the window."
    kinds = Counter(f"{d.product} ({d.source})" for d in result.deployments)
    listed = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
    return f"Reserve deployments in the window, the same for every strategy: {listed}."


def _programs_section(result: ReplayResult) -> list[str]:
    """The grid programs' table and plots, each plot with its caption."""
    days = ", ".join(f"{d.day:%a %Y-%m-%d}" for d in cp_days(result)) or "none"
    lines = [
        "## Grid programs",
        "",
        "Each strategy is charged the 4CP transmission cost its own draw sets in the official"
        " 4CP intervals (their starts in Central time head the MW columns) and paid its"
        " reserve awards at their clearing prices; a deployment is carried out by a strategy"
        " holding an award of its product, and failed (its shortfall charged) if the miners it"
        f" drops fall short of the award. {_deployments_line(result)} 4CP days (Central): {days}.",
        "",
        *programs_table(result),
        "",
    ]
    if result.cp_intervals:
        lines += [
            f"![system load and site draw on each 4CP day]({CP_DAYS})",
            "",
            "*ERCOT's system load (GW, left axis, black) and each strategy's site MW (right"
            " axis) through each Central day holding an official 4CP interval, the interval"
            " shaded red: look for whose draw is down in the band (a strategy's MW there sets"
            " its 4CP charge) and who stayed on at the peak.*",
            "",
        ]
    if _reserves(result):
        lines += [
            f"![reserve awards by hour and payments by month]({RESERVES})",
            "",
            "*Left, the agent's awarded reserve MW by Central hour of day per product, the"
            " mean over the window; right, each awarded strategy's reserve payments per UTC"
            " calendar month (as the ledger books months): look for awards in the hours the"
            " miners run, not the afternoon hours they sleep for price or 4CP, and the agent's"
            " bars near the hindsight bound's.*",
            "",
        ]
    return lines
