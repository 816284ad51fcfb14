"""One scenario of a study: a site built for its AI share, replayed for a whole year on real
data, and the figures a CFO reads off it.

**The site.** The site keeps its interconnect and margin; `ai_share` of what it may draw (the
limit less the margin, at the meter) goes to an H100 hall and the rest to miners, in the base
site's model mix, whole containers. The hall's nodes are split among a firm, a flexible and an
interruptible contract by the contract mix, on the base site's contract terms (notice,
allowance per node, penalty). What a GPU-hour earns comes from the business model:

- **hosting**: a rate per MW of IT load a month (the tenant's nodes at full power, without
  cooling), paid for every hour whether or not the GPUs run: 1.45-1.9 M$/MW-yr in the public
  deals (Core Scientific-CoreWeave 8.7 B$/12 yr/500 MW, TeraWulf-Fluidstack 3.7 B$/10 yr/200
  MW, Hut 8-Fluidstack 7 B$/15 yr/245 MW), power included;
- **cloud**: a price per GPU-hour sold, times the share of hours sold (`utilisation`); unsold
  GPUs sit at idle draw.

**The load shape.** `training` replays the bundled 8xH100 training trace; `inference` the
Azure request trace through the ML.ENERGY power curve (`gridpilot.adapters.ai`).

**The year.** The Central calendar year (or the part of it a `Window` names) at the hub's
real-time prices, with the day-ahead prices and ancillary prices where they are bundled
(2024), 4CP and deployments as the replay makes them, and the hashprice path: the recorded
one, scaled, shifted by whole years (the 2020-2025 history, halvings included) or constant.

**The figures.** Revenue (hash, AI, reserves), operating profit (the replay's profit: energy,
the 4CP charge, penalties and failures paid), capex (`Capex`: per MW of miners and of AI IT
load, defaults with their sources) and simple payback, the standard deviation and 5 % CVaR
of monthly profit (UTC months, the 4CP charge being a yearly bill left out of them), energy,
CO2 from ERCOT's hourly intensity (average, not marginal, emissions: curtailing in dirty hours
counts), CO2 per dollar of profit, the flexibility value (4CP charge avoided against always-on
plus reserves earned, less failures) and the hours in which load was curtailed. A window's
figures are its own (its profit, its months), except the payback, which is on its profit
scaled to a year.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

import numpy as np

from gridpilot.adapters.recorded import CENTRAL, GpuTrace, HashpriceSeries
from gridpilot.agent.replay.period import ReplayData, ReplayResult, Totals
from gridpilot.agent.replay.programs import ProgramTerms
from gridpilot.agent.replay.simulation import replay
from gridpilot.optimizer.problem import AsicGroup, Contract, GpuGroup, Problem, Tier

Strategy = Literal["agent", "threshold"]
Workload = Literal["training", "inference"]
HOURS_PER_MONTH = 8_760.0 / 12.0
CVAR_SHARE = 0.05


@dataclass(frozen=True, slots=True)
class BusinessModel:
    name: str
    kind: Literal["hosting", "cloud"]
    usd_per_mw_month: float = 0.0  # hosting: per MW of IT load
    usd_per_gpu_hour: float = 0.0  # cloud: per GPU-hour sold
    utilisation: float = 1.0  # cloud: share of GPU-hours sold


@dataclass(frozen=True, slots=True)
class ContractMix:
    name: str
    firm: float
    flex: float
    interruptible: float


@dataclass(frozen=True, slots=True)
class HashpricePath:
    name: str
    kind: Literal["recorded", "scaled", "shifted", "constant"] = "recorded"
    factor: float = 1.0  # scaled
    years: int = 0  # shifted: the hashprice of `years` years later (negative: earlier)
    usd_per_th_day: float = 0.0  # constant, fees included


@dataclass(frozen=True, slots=True)
class Capex:
    """Capital cost, US$. Defaults: mining about 1-2 M$/MW, an AI hall 8-11 M$/MW of IT load
    (the study issue's figures from public filings), their midpoints; and, for the cloud model
    only, where the site owns the GPUs (a hosting tenant brings its own), 30,000 $ per H100: an
    assumption of ours within the 25,000-40,000 $ the press reported for an H100 SXM in
    2023-24, not a quoted price."""

    mining_usd_per_mw: float = 1.5e6
    ai_usd_per_mw: float = 9.5e6
    gpu_usd_per_gpu: float = 30_000.0


@dataclass(frozen=True, slots=True)
class Window:
    """Part of a year: Central calendar days `start_day` up to `end_day` (exclusive), counted
    from 1 for January 1st, so `Window(228, 231)` replays three days from August 15th of a leap
    year. For tests and quick looks; a study's scenarios are whole years by default."""

    start_day: int
    end_day: int

    def __post_init__(self) -> None:
        if not 1 <= self.start_day < self.end_day:
            raise ValueError(f"days {self.start_day} to {self.end_day} are not a window")

    def span(self, year: int) -> tuple[datetime, datetime]:
        """The window of `year` in UTC; `ValueError` if it runs past the year's end."""
        first, after = year_span(year)
        if self.end_day - 1 > (after - first).days:
            raise ValueError(f"day {self.end_day - 1} is past the end of {year}")
        return _central_day(year, self.start_day), _central_day(year, self.end_day)


def year_span(year: int) -> tuple[datetime, datetime]:
    """The Central calendar year in UTC: its first instant and the next year's."""
    return _central_day(year, 1), _central_day(year + 1, 1)


def _central_day(year: int, day: int) -> datetime:
    """Central midnight at the start of day `day` (from 1) of `year`, in UTC."""
    midnight = datetime.combine(date(year, 1, 1) + timedelta(days=day - 1), time(0), CENTRAL)
    return midnight.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Scenario:
    """Every input of one replay, by value: its `key` identifies it across runs."""

    ai_share: float
    business: BusinessModel
    workload: Workload
    mix: ContractMix
    year: int
    hub: str
    hashprice: HashpricePath
    strategy: Strategy
    capex: Capex = field(default_factory=Capex)
    window: Window | None = None  # None: the whole year

    def key(self) -> str:
        """A hash of the inputs (and `SCENARIO_VERSION`): a re-run skips a scenario whose
        key it has results for."""
        inputs = asdict(self)
        if self.window is None:  # a whole year keeps the key it had before windows existed
            del inputs["window"]
        text = json.dumps([SCENARIO_VERSION, inputs], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def span(self) -> tuple[datetime, datetime]:
        """What the scenario replays, in UTC: its year, or the window of it."""
        return year_span(self.year) if self.window is None else self.window.span(self.year)

    def inputs(self) -> dict[str, object]:
        """The scenario's inputs, flat, for its row of results."""
        return {
            "ai_share": self.ai_share,
            "business_model": self.business.name,
            "business_kind": self.business.kind,
            "workload": self.workload,
            "contract_mix": self.mix.name,
            "year": self.year,
            "hub": self.hub,
            "hashprice_path": self.hashprice.name,
            "strategy": self.strategy,
            "window_start_day": self.window.start_day if self.window else 1,
            "window_end_day": self.window.end_day if self.window else _days(self.year) + 1,
        }


def _days(year: int) -> int:
    first, after = year_span(year)
    return (after - first).days


# Changes whenever a change to the code would change a scenario's figures: results keyed by an
# older version are run again.
SCENARIO_VERSION = 3


@dataclass(frozen=True, slots=True, eq=False)
class YearData:
    """What one year of one hub gives every scenario (read once per worker)."""

    replay: ReplayData  # its grid and Bitcoin data included
    co2_kg_per_mwh: np.ndarray  # hourly, from the year's first Central hour
    traces: dict[str, GpuTrace]


def build_site(base: Problem, scenario: Scenario) -> Problem:
    """The base site rebuilt for the scenario's AI share and contracts (module docstring)."""
    drawable = base.site_limit_watts - base.site_margin_watts
    asics = _miners(base.asic_groups, (1.0 - scenario.ai_share) * drawable)
    template = base.gpu_groups[0]
    node_watts = template.full_node_watts * template.overhead_factor
    nodes = int(scenario.ai_share * drawable // node_watts)
    groups, contracts = _hall(base, template, nodes, scenario)
    return replace(base, asic_groups=asics, gpu_groups=groups, contracts=contracts)


def _miners(groups: tuple[AsicGroup, ...], watts: float) -> tuple[AsicGroup, ...]:
    """Whole containers in the base mix, as many as `watts` at the meter allows."""
    base_watts = sum(g.units * g.watts_per_unit * g.overhead_factor for g in groups)
    if base_watts <= 0 or watts <= 0:
        return ()
    by_model: dict[str, list[AsicGroup]] = {}
    for group in groups:
        by_model.setdefault(group.model, []).append(group)
    result: list[AsicGroup] = []
    for members in by_model.values():
        count = int(len(members) * watts / base_watts)
        template = members[0]
        result += [
            replace(
                template, name=f"{template.name.rsplit('-', 1)[0]}-{i + 1:03d}", units_on_now=None
            )
            for i in range(count)
        ]
    return tuple(result)


def _hall(
    base: Problem, template: GpuGroup, nodes: int, scenario: Scenario
) -> tuple[tuple[GpuGroup, ...], tuple[Contract, ...]]:
    """GPU groups and contracts for `nodes` nodes split by the contract mix."""
    if nodes <= 0:
        return (), ()
    rate = _usd_per_gpu_hour(scenario.business, template)
    shares = {Tier.FIRM: scenario.mix.firm, Tier.FLEXIBLE: scenario.mix.flex}
    shares[Tier.INTERRUPTIBLE] = scenario.mix.interruptible
    counts = {tier: round(nodes * share) for tier, share in shares.items()}
    counts[Tier.FIRM] += nodes - sum(counts.values())
    groups: list[GpuGroup] = []
    contracts: list[Contract] = []
    for tier, count in counts.items():
        if count <= 0:
            continue
        terms = next((c for c in base.contracts if c.tier is tier), None)
        base_nodes = sum(g.nodes for g in base.gpu_groups if terms and g.contract == terms.name)
        per_node = terms.allowance_node_hours / base_nodes if terms and base_nodes else 0.0
        name = tier.value
        contracts.append(
            Contract(
                name=name,
                tier=tier,
                usd_per_gpu_hour=rate,
                allowance_node_hours=per_node * count,
                max_event_s=terms.max_event_s if terms else None,
                notice_s=terms.notice_s if terms else 0.0,
                penalty_usd_per_gpu_hour=terms.penalty_usd_per_gpu_hour if terms else 0.0,
                min_power_fraction=terms.min_power_fraction if terms else 0.0,
                billed_when_curtailed=terms.billed_when_curtailed
                if terms
                else tier is not Tier.FIRM,
            )
        )
        groups.append(replace(template, name=f"h100-{name}", contract=name, nodes=count))
    return tuple(groups), tuple(contracts)


def _usd_per_gpu_hour(business: BusinessModel, node: GpuGroup) -> float:
    if business.kind == "hosting":
        it_mw_per_gpu = node.full_node_watts / node.gpus_per_node / 1e6
        return business.usd_per_mw_month / HOURS_PER_MONTH * it_mw_per_gpu
    return business.usd_per_gpu_hour * business.utilisation


def workload_trace(year: YearData, scenario: Scenario, idle_watts: float) -> GpuTrace:
    """The load shape, with unsold cloud hours at idle draw."""
    trace = year.traces[scenario.workload]
    sold = scenario.business.utilisation if scenario.business.kind == "cloud" else 1.0
    if sold >= 1.0:
        return trace
    return GpuTrace(trace.interval_s, sold * trace.gpu_watts + (1.0 - sold) * idle_watts)


def hashprice_series(recorded: HashpriceSeries, path: HashpricePath) -> HashpriceSeries:
    """The recorded series on the path's terms (a constant is set on the replay instead)."""
    if path.kind == "scaled":
        return replace(recorded, usd_per_th_day=recorded.usd_per_th_day * path.factor)
    if path.kind == "shifted" and path.years:
        days = 365 * path.years
        values = recorded.usd_per_th_day
        shifted = np.roll(values, -days)
        # days the shift runs past the record take its last (or first) recorded value
        if days > 0:
            shifted[-days:] = values[-1]
        else:
            shifted[:-days] = values[0]
        return replace(recorded, usd_per_th_day=shifted)
    return recorded


def evaluate(
    scenario: Scenario, base: Problem, year: YearData, terms: ProgramTerms
) -> dict[str, object]:
    """Replay the scenario's year and return its row: inputs, figures, wall time."""
    site = build_site(base, scenario)
    gpu = base.gpu_groups[0]
    data = replace(
        year.replay,
        trace=workload_trace(year, scenario, gpu.idle_watts_per_gpu),
        hashprices=hashprice_series(year.replay.hashprices, scenario.hashprice),
        hashprice_usd_per_th_day=(
            scenario.hashprice.usd_per_th_day if scenario.hashprice.kind == "constant" else None
        ),
    )
    start, end = scenario.span()
    result = replay(
        site,
        data,
        start=start,
        end=end,
        terms=terms,
        parallel=False,
        only=(scenario.strategy, "always_on"),
    )
    return {"key": scenario.key(), **scenario.inputs(), **figures(scenario, site, result, year)}


def figures(
    scenario: Scenario, site: Problem, result: ReplayResult, year: YearData
) -> dict[str, float]:
    """The scenario's figures (module docstring) from its replay."""
    totals: Totals = result.totals[scenario.strategy]
    base: Totals = result.totals["always_on"]
    asic_mw = sum(g.units * g.watts_per_unit for g in site.asic_groups) / 1e6
    it_mw = sum(g.nodes * g.full_node_watts for g in site.gpu_groups) / 1e6
    capex = scenario.capex.mining_usd_per_mw * asic_mw + scenario.capex.ai_usd_per_mw * it_mw
    if scenario.business.kind == "cloud":
        gpus = sum(g.nodes * g.gpus_per_node for g in site.gpu_groups)
        capex += scenario.capex.gpu_usd_per_gpu * gpus
    profit = totals.profit_usd
    monthly = _months(totals, scenario.year)
    worst = np.sort(monthly)[: max(1, int(np.ceil(CVAR_SHARE * monthly.size)))]
    first, after = year_span(scenario.year)
    # the intensity runs from the year's first hour; a window starts later in it
    offset = round((result.start - first).total_seconds() / 3_600.0)
    intensity = year.co2_kg_per_mwh[offset:]
    co2_t = _co2_tonnes(result.site_watts[scenario.strategy], intensity, result)
    yearly = profit * (after - first).total_seconds() / (result.end - result.start).total_seconds()
    curtailed = (
        result.asic_curtailed_watts[scenario.strategy]
        > result.asic_curtailed_watts["always_on"] + 1.0
    )
    interval_h = (result.end - result.start).total_seconds() / 3_600.0 / curtailed.size
    return {
        "asic_mw": asic_mw,
        "ai_it_mw": it_mw,
        "revenue_usd": totals.hash_revenue_usd + totals.ai_revenue_usd + totals.ancillary_usd,
        "hash_revenue_usd": totals.hash_revenue_usd,
        "ai_revenue_usd": totals.ai_revenue_usd,
        "energy_cost_usd": totals.energy_cost_usd,
        "transmission_usd": totals.transmission_usd,
        "ancillary_usd": totals.ancillary_usd,
        "operating_profit_usd": profit,
        "capex_usd": capex,
        "payback_years": capex / yearly if yearly > 0 else float("inf"),
        "monthly_profit_std_usd": float(np.std(monthly)),
        "monthly_profit_cvar5_usd": float(np.mean(worst)),
        "energy_mwh": totals.energy_mwh,
        "co2_t": co2_t,
        "co2_kg_per_mwh": co2_t * 1_000.0 / totals.energy_mwh if totals.energy_mwh else 0.0,
        "co2_t_per_musd_profit": co2_t / (profit / 1e6) if profit > 0 else float("inf"),
        "flexibility_value_usd": base.transmission_usd
        - totals.transmission_usd
        + totals.ancillary_usd
        - totals.reserve_failure_usd,
        "hours_curtailed": float(curtailed.sum()) * interval_h,
        "sla_breaches": float(totals.sla_breaches),
    }


def _months(totals: Totals, year: int) -> np.ndarray:
    """The profit of each UTC month replayed (the twelve of a whole year); the Central year's
    last hours, which fall in the next UTC January, count in December."""
    months: dict[int, float] = {}
    for key, usd in totals.monthly_profit_usd.items():
        y, m = (int(part) for part in key.split("-"))
        month = 12 if y > year else m
        months[month] = months.get(month, 0.0) + usd
    return np.array([months[m] for m in sorted(months)] or [0.0])


def _co2_tonnes(site_watts: np.ndarray, intensity: np.ndarray, result: ReplayResult) -> float:
    """The emissions of the site's draw at each hour's average intensity."""
    per_hour = round(3_600.0 * site_watts.size / (result.end - result.start).total_seconds())
    hours = site_watts.size // per_hour
    mwh = site_watts[: hours * per_hour].reshape(hours, per_hour).mean(axis=1) / 1e6
    return float(np.sum(mwh * intensity[:hours]) / 1_000.0)
