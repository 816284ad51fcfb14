"""What a replay shows: the summary table, the JSON document, and a folder of Markdown and PNGs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gridpilot.adapters.recorded import Gap
from gridpilot.agent.replay import STRATEGIES, ReplayResult


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
    for name in STRATEGIES:
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
            "capture": round(result.capture(name), 4),
        }
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


def table(result: ReplayResult) -> list[str]:
    lines = [
        f"replay {result.start:%Y-%m-%d %H:%M} to {result.end:%Y-%m-%d %H:%M} UTC at"
        f" {result.settlement_point}, {result.wall_s:.1f} s",
        "",
        f"  {'strategy':<10} {'profit $':>14} {'hash $':>12} {'AI $':>13} {'energy $':>12}"
        f" {'penalty $':>10} {'MWh':>9} {'capture':>8} {'SLA':>4} {'over min':>8}",
    ]
    for name in STRATEGIES:
        t = result.totals[name]
        lines.append(
            f"  {name:<10} {t.profit_usd:14,.0f} {t.hash_revenue_usd:12,.0f}"
            f" {t.ai_revenue_usd:13,.0f} {t.energy_cost_usd:12,.0f} {t.penalty_usd:10,.0f}"
            f" {t.energy_mwh:9,.0f} {result.capture(name):8.3f} {t.sla_breaches:4d}"
            f" {t.limit_violation_minutes:8.1f}"
        )
    return lines


def write_report(result: ReplayResult, folder: Path) -> Path:
    """Markdown with PNG plots; returns the Markdown file's path."""
    # Loaded here: matplotlib costs half a second, and only a report needs it.
    import matplotlib as mpl  # noqa: PLC0415

    mpl.use("Agg")  # files only: no display on a site controller or in CI
    import matplotlib.pyplot as plt  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    hours = np.arange(result.price_usd_per_mwh.size) * (
        (result.end - result.start).total_seconds() / 3600.0 / max(result.price_usd_per_mwh.size, 1)
    )

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    top.plot(hours, result.price_usd_per_mwh, linewidth=0.6, color="black")
    top.set_ylabel("price $/MWh")
    top.set_yscale("symlog", linthresh=100)
    for name in ("agent", "threshold", "hindsight"):
        bottom.plot(hours, result.site_watts[name] / 1e6, linewidth=0.6, label=f"{name} site MW")
    bottom.plot(
        hours,
        result.asic_curtailed_watts["agent"] / 1e6,
        linewidth=0.6,
        label="agent ASIC curtailed MW",
    )
    bottom.set_ylabel("MW")
    bottom.set_xlabel("hours since start")
    bottom.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(folder / "price_and_power.png", dpi=110)
    plt.close(figure)

    months = sorted({m for t in result.totals.values() for m in t.monthly_profit_usd})
    base = np.array([result.totals["always_on"].monthly_profit_usd.get(m, 0.0) for m in months])
    figure, axis = plt.subplots(figsize=(12, 4))
    width = 0.27
    for offset, name in enumerate(("agent", "threshold", "hindsight")):
        gain = np.array([result.totals[name].monthly_profit_usd.get(m, 0.0) for m in months]) - base
        axis.bar(np.arange(len(months)) + (offset - 1) * width, gain, width, label=name)
    axis.set_xticks(np.arange(len(months)), months, rotation=45)
    axis.set_ylabel("profit over always-on, $")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(folder / "monthly_profit.png", dpi=110)
    plt.close(figure)

    contracts = sorted(
        {c for t in result.totals.values() for u in t.allowance_used.values() for c in u}
    )
    figure, axis = plt.subplots(figsize=(12, 4))
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
    figure.savefig(folder / "allowance.png", dpi=110)
    plt.close(figure)

    markdown = folder / "report.md"
    markdown.write_text(
        "\n".join(
            [
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
                "![price and site power](price_and_power.png)",
                "",
                "![monthly profit over always-on](monthly_profit.png)",
                "",
                "![allowance use per contract](allowance.png)",
                "",
            ]
        )
    )
    return markdown
