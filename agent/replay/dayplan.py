"""`gridpilot plan`: one operating day of the site planned on recorded prices, side by side with
the baselines. The day's real-time prices stand in for a perfect forecast, so the agent's figure
here is what the optimizer does with good information; what it earns with the information it
really has is the replay's question.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from gridpilot.adapters.recorded import HashpriceSeries, NotRecordedError, PriceSeries
from gridpilot.agent.settings import Settings
from gridpilot.agent.site import site_problem
from gridpilot.optimizer.merit import always_on, threshold
from gridpilot.optimizer.plan import Plan
from gridpilot.optimizer.problem import AllowanceBudget, Problem
from gridpilot.optimizer.solve import solve

# ERCOT's operating day runs on Central time.
OPERATING_ZONE = ZoneInfo("America/Chicago")


@dataclass(frozen=True, slots=True, eq=False)
class DayPlan:
    day: date
    hashprice_usd_per_th_day: float
    agent: Plan
    always_on: Plan
    threshold: Plan


def plan_day(
    settings: Settings, prices: PriceSeries, hashprices: HashpriceSeries, day: date
) -> DayPlan:
    """Plan `day` (a Central operating day, 92 to 100 quarter hours across DST changes) at the
    previous day's hashprice; the threshold rule reacts to the previous interval's price, and
    each contract may spend its monthly allowance's daily share."""
    start = datetime.combine(day, time(0), OPERATING_ZONE).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), OPERATING_ZONE).astimezone(UTC)
    first = prices.index_of(start)
    count = round((end - start).total_seconds() / prices.interval_s)
    day_prices = prices.usd_per_mwh[first : first + count]
    if day_prices.size != count:
        raise NotRecordedError(f"the recorded prices do not cover {day.isoformat()}")
    hashprice = hashprices.on(day - timedelta(days=1))
    problem: Problem = site_problem(
        settings,
        start=start,
        step_s=[prices.interval_s] * count,
        price_usd_per_mwh=day_prices.tolist(),
        hashprice_usd_per_th_day=hashprice,
    )
    # One day sees none of the rest of its month: give it the day's even share of each
    # contract's monthly allowance, so it cannot spend the month in an afternoon.
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    budgets = tuple(
        AllowanceBudget(c.name, start, end, c.allowance_node_hours / days_in_month)
        for c in problem.contracts
    )
    problem = replace(problem, budgets=budgets)
    known = np.concatenate(([prices.usd_per_mwh[max(first - 1, 0)]], day_prices[:-1]))
    return DayPlan(day, hashprice, solve(problem), always_on(problem), threshold(problem, known))


def render(result: DayPlan, settings: Settings) -> list[str]:
    plan = result.agent
    problem = plan.problem
    lines = [
        f"site {settings.site.name}: plan for {result.day.isoformat()} (Central) at"
        f" {settings.site.settlement_point}, hashprice {result.hashprice_usd_per_th_day:.4f}"
        " $/TH/s/day (previous day's)",
        f"solver {plan.solver}, status {plan.status}, gap {plan.gap:.1e},"
        f" build {plan.build_s:.3f} s, solve {plan.solve_s:.3f} s",
        "",
        f"  {'hour':<5} {'$/MWh':>8} {'site MW':>8}  "
        + "  ".join(f"{m.removeprefix('Antminer '):>10}" for m in _models(problem))
        + f"  {'GPU curtailed':<22} reason",
    ]
    offsets = problem.step_offsets_s()
    for hour in range(int(np.ceil(offsets[-1] / 3600.0 + 1e-9))):
        steps = np.flatnonzero((offsets >= hour * 3600.0) & (offsets < (hour + 1) * 3600.0))
        if not steps.size:
            continue
        first = int(steps[0])
        local = problem.step_start(first).astimezone(OPERATING_ZONE)
        price = float(np.mean(np.asarray(problem.price_usd_per_mwh)[steps]))
        site_mw = float(np.mean(plan.outcome.site_watts[steps])) / 1e6
        units = [
            sum(
                int(plan.schedule.asic_units_on[i, first])
                for i, g in enumerate(problem.asic_groups)
                if g.model == model
            )
            for model in _models(problem)
        ]
        gpu = [
            f"{s.group} {s.paused_nodes}p"
            if s.paused_nodes
            else f"{s.group} {s.capped_nodes}@{s.power_cap_watts:.0f}W"
            for s in plan.gpu_setpoints(first)
            if s.capped_nodes or s.paused_nodes
        ]
        reasons = [s.reason for s in plan.asic_setpoints(first) if s.reason]
        reasons += [s.reason for s in plan.gpu_setpoints(first) if s.reason]
        lines.append(
            f"  {local:%H:%M} {price:8.1f} {site_mw:8.2f}  "
            + "  ".join(f"{u:>10,}" for u in units)
            + f"  {', '.join(gpu) or '-':<22} {reasons[0] if reasons else ''}"
        )
    lines += ["", "  strategy      profit $   hash $       AI $   energy $  penalty $   MWh"]
    for name, candidate in (
        ("agent", result.agent),
        ("always_on", result.always_on),
        ("threshold", result.threshold),
    ):
        o = candidate.outcome
        lines.append(
            f"  {name:<10} {o.profit_usd:11,.0f} {o.hash_revenue_usd:8,.0f}"
            f" {o.ai_revenue_usd:10,.0f} {o.energy_cost_usd:10,.0f} {o.penalty_usd:10,.0f}"
            f" {o.energy_mwh:6,.0f}"
        )
    return lines


def _models(problem: Problem) -> list[str]:
    return list(dict.fromkeys(g.model for g in problem.asic_groups))
