"""The study file: what a study sweeps, read from TOML once and validated (a pydantic model
like the site file's).

A study names a base site and lists, per axis, the values it sweeps; the scenarios are every
combination of them (`grid`). Business models, contract mixes and hashprice paths are named
tables that the axes refer to by name::

    site = "reference-site.toml"   # default: the bundled reference site; relative to this file

    [axes]
    ai_share = [0.0, 0.5, 1.0]     # share of what the site may draw given to the AI hall, 0..1
    business_model = ["hosting"]   # names of [business_models.NAME] tables
    workload = ["training"]        # training | inference (default: training)
    contract_mix = ["reference"]   # names of [contract_mixes.NAME] tables
    year = [2024]                  # the bundled years, 2023 and 2024
    hub = ["HB_WEST"]              # ERCOT hubs of the price files (default: HB_WEST)
    hashprice = ["recorded"]       # names of [hashprice_paths.NAME]; "recorded" is built in
    strategy = ["agent", "threshold"]

    [business_models.hosting]
    kind = "hosting"               # or "cloud", with usd_per_gpu_hour and utilisation
    usd_per_mw_month = 140_000

    [contract_mixes.reference]
    firm = 0.6                     # shares of the hall's nodes; they sum to 1
    flex = 0.28
    interruptible = 0.12

    [hashprice_paths.low]
    kind = "scaled"                # recorded | scaled (factor) | shifted (years) | constant
    factor = 0.5                   #   (usd_per_th_day, fees included)

    [capex]                        # optional, $/MW; defaults in scenario.Capex
    [window]                       # optional: part of each year, `start` and `end` (exclusive)
    start = 228                    #   as day-of-year numbers (1 = January 1st) or ISO dates
    end = 231                      #   within the study's one year

`load_spec` raises `SpecError`, whose issues each name the field path and what would fix it.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gridpilot.agent.bundled import REFERENCE_SITE
from gridpilot.agent.study.data import PRICES, price_hubs
from gridpilot.agent.study.scenario import (
    BusinessModel,
    Capex,
    ContractMix,
    HashpricePath,
    Scenario,
    Strategy,
    Window,
    Workload,
    year_span,
)

Issue = tuple[str, str]  # (field path such as "axes.year[1]", what is wrong and the fix)
# Shares of a contract mix may miss 1 by rounding in the file, not by more.
_SHARE_TOLERANCE = 1e-6
RECORDED = "recorded"  # the hashprice path every study has without a table


class SpecError(Exception):
    """A study file that cannot be used: each issue names a field path and what would fix
    it."""

    def __init__(self, source: Path, issues: Sequence[Issue]) -> None:
        super().__init__(source, tuple(issues))
        self.source = source
        self.issues: list[Issue] = list(issues)

    def __str__(self) -> str:
        count = len(self.issues)
        lines = [f"{self.source}: {count} problem{'s' if count != 1 else ''} in the study file:"]
        lines += [
            f"  {path}: {message}" if path else f"  {message}" for path, message in self.issues
        ]
        return "\n".join(lines)


class _Table(BaseModel):
    # Frozen, and unknown keys are errors: a misspelt axis must not silently sweep nothing.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class HostingModel(_Table):
    """A tenant pays per MW of IT load a month, whether or not its GPUs run."""

    kind: Literal["hosting"]
    usd_per_mw_month: float = Field(gt=0)


class CloudModel(_Table):
    """GPU-hours sold at a price; `utilisation` of them sell, the rest idle."""

    kind: Literal["cloud"]
    usd_per_gpu_hour: float = Field(gt=0)
    utilisation: float = Field(gt=0, le=1)


class MixTable(_Table):
    """Shares of the hall's nodes under each contract tier."""

    firm: float = Field(ge=0, le=1)
    flex: float = Field(ge=0, le=1)
    interruptible: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> Self:
        total = self.firm + self.flex + self.interruptible
        if abs(total - 1.0) > _SHARE_TOLERANCE:
            raise ValueError(f"firm + flex + interruptible is {total:g}; the shares sum to 1")
        return self


class RecordedPath(_Table):
    kind: Literal["recorded"]


class ScaledPath(_Table):
    kind: Literal["scaled"]
    factor: float = Field(gt=0)


class ShiftedPath(_Table):
    """The hashprice `years` whole years later (negative: earlier), halvings included."""

    kind: Literal["shifted"]
    years: int


class ConstantPath(_Table):
    kind: Literal["constant"]
    usd_per_th_day: float = Field(gt=0)  # fees included


class CapexTable(_Table):
    mining_usd_per_mw: float = Field(default=Capex().mining_usd_per_mw, gt=0)
    ai_usd_per_mw: float = Field(default=Capex().ai_usd_per_mw, gt=0)
    gpu_usd_per_gpu: float = Field(default=Capex().gpu_usd_per_gpu, ge=0)  # cloud only


class WindowTable(_Table):
    """`start` and `end` (exclusive): day-of-year numbers from 1, or dates."""

    start: int | date
    end: int | date


def _distinct(values: list[Any]) -> list[Any]:
    """An axis lists each value once: a repeat would only run the same scenario twice."""
    seen = [value for index, value in enumerate(values) if value in values[:index]]
    if seen:
        raise ValueError(f"{seen[0]!r} is listed twice")
    return values


class Axes(_Table):
    ai_share: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=1)]
    business_model: Annotated[list[str], Field(min_length=1)]
    workload: Annotated[list[Workload], Field(min_length=1)] = ["training"]
    contract_mix: Annotated[list[str], Field(min_length=1)]
    year: Annotated[list[int], Field(min_length=1)]
    hub: Annotated[list[str], Field(min_length=1)] = ["HB_WEST"]
    hashprice: Annotated[list[str], Field(min_length=1)] = [RECORDED]
    strategy: Annotated[list[Strategy], Field(min_length=1)]

    @field_validator("*")
    @classmethod
    def _each_once(cls, values: list[Any]) -> list[Any]:
        return _distinct(values)


BusinessTable = Annotated[HostingModel | CloudModel, Field(discriminator="kind")]
PathTable = Annotated[
    RecordedPath | ScaledPath | ShiftedPath | ConstantPath, Field(discriminator="kind")
]


class _SpecFile(_Table):
    site: Path | None = None
    axes: Axes
    business_models: dict[str, BusinessTable] = {}
    contract_mixes: dict[str, MixTable] = {}
    hashprice_paths: dict[str, PathTable] = {}
    capex: CapexTable = CapexTable()
    window: WindowTable | None = None


@dataclass(frozen=True, slots=True)
class StudySpec:
    """A validated study: the base site's file and every scenario of the grid."""

    source: Path  # the study file
    site: Path  # the base site file, absolute
    scenarios: tuple[Scenario, ...]
    axes: dict[str, tuple[object, ...]]  # each axis's values, in the file's order


def load_spec(path: Path) -> StudySpec:
    """Read and validate the study file at `path`; `SpecError` names every problem."""
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise SpecError(path, [("", f"TOML syntax error: {error}")]) from error
    except OSError as error:
        raise SpecError(path, [("", f"cannot read the study file: {error}")]) from error
    try:
        parsed = _SpecFile.model_validate(raw)
    except ValidationError as error:
        raise SpecError(path, _issues(error)) from error
    issues = _references(parsed)
    window: Window | None = None
    if parsed.window is not None:
        window, more = _window(parsed.window, parsed.axes.year)
        issues += more
    site = REFERENCE_SITE if parsed.site is None else (path.parent / parsed.site).resolve()
    if not site.is_file():
        issues.append(("site", f"no site file at {site}"))
    if issues:
        raise SpecError(path, issues)
    axes = parsed.axes
    values: dict[str, tuple[object, ...]] = {
        name: tuple(getattr(axes, name)) for name in type(axes).model_fields
    }
    return StudySpec(
        source=path,
        site=site,
        scenarios=grid(parsed, window),
        axes=values,
    )


def grid(parsed: _SpecFile, window: Window | None) -> tuple[Scenario, ...]:
    """Every combination of the axes' values, the first axis slowest."""
    axes = parsed.axes
    capex = Capex(
        parsed.capex.mining_usd_per_mw, parsed.capex.ai_usd_per_mw, parsed.capex.gpu_usd_per_gpu
    )
    businesses = [_business(name, parsed.business_models[name]) for name in axes.business_model]
    mixes = [_mix(name, parsed.contract_mixes[name]) for name in axes.contract_mix]
    paths = [_path(name, parsed.hashprice_paths.get(name)) for name in axes.hashprice]
    return tuple(
        Scenario(
            ai_share=share,
            business=business,
            workload=workload,
            mix=mix,
            year=year,
            hub=hub,
            hashprice=hashprice,
            strategy=strategy,
            capex=capex,
            window=window,
        )
        for share, business, workload, mix, year, hub, hashprice, strategy in itertools.product(
            axes.ai_share,
            businesses,
            axes.workload,
            mixes,
            axes.year,
            axes.hub,
            paths,
            axes.strategy,
        )
    )


def _business(name: str, table: HostingModel | CloudModel) -> BusinessModel:
    if isinstance(table, HostingModel):
        return BusinessModel(name, "hosting", usd_per_mw_month=table.usd_per_mw_month)
    return BusinessModel(
        name, "cloud", usd_per_gpu_hour=table.usd_per_gpu_hour, utilisation=table.utilisation
    )


def _mix(name: str, table: MixTable) -> ContractMix:
    return ContractMix(name, table.firm, table.flex, table.interruptible)


def _path(
    name: str, table: RecordedPath | ScaledPath | ShiftedPath | ConstantPath | None
) -> HashpricePath:
    if table is None or isinstance(table, RecordedPath):
        return HashpricePath(name)
    if isinstance(table, ScaledPath):
        return HashpricePath(name, "scaled", factor=table.factor)
    if isinstance(table, ShiftedPath):
        return HashpricePath(name, "shifted", years=table.years)
    return HashpricePath(name, "constant", usd_per_th_day=table.usd_per_th_day)


def _references(parsed: _SpecFile) -> list[Issue]:
    """Axis values that name no table, years without bundled prices, hubs not in them."""
    axes = parsed.axes
    issues: list[Issue] = []
    for axis, section, defined in (
        ("business_model", "business_models", set(parsed.business_models)),
        ("contract_mix", "contract_mixes", set(parsed.contract_mixes)),
        ("hashprice", "hashprice_paths", {*parsed.hashprice_paths, RECORDED}),
    ):
        for index, name in enumerate(getattr(axes, axis)):
            if name not in defined:
                known = ", ".join(sorted(defined)) or "none"
                issues.append(
                    (
                        f"axes.{axis}[{index}]",
                        f"{name!r} is no [{section}.NAME] table (defined: {known})",
                    )
                )
    years = ", ".join(str(year) for year in sorted(PRICES))
    for index, year in enumerate(axes.year):
        if year not in PRICES:
            issues.append((f"axes.year[{index}]", f"no bundled prices for {year}; use {years}"))
    for index, hub in enumerate(axes.hub):
        for year in (y for y in axes.year if y in PRICES):
            hubs = price_hubs(year)
            if hub not in hubs:
                issues.append(
                    (
                        f"axes.hub[{index}]",
                        f"{hub!r} is not in the {year} prices; use one of {', '.join(hubs)}",
                    )
                )
                break
    return issues


def _window(table: WindowTable, years: list[int]) -> tuple[Window | None, list[Issue]]:
    """The window as day-of-year numbers valid in every year of the study."""
    days: dict[str, int] = {}
    issues: list[Issue] = []
    for name in ("start", "end"):
        value = getattr(table, name)
        if isinstance(value, int):
            days[name] = value
        elif len(years) != 1 or value.year != years[0]:
            issues.append(
                (
                    f"window.{name}",
                    f"the date {value.isoformat()} is not in the study's one year"
                    f" ({', '.join(map(str, years))}); give day-of-year numbers for a study of"
                    " several years",
                )
            )
        else:
            days[name] = (value - date(value.year, 1, 1)).days + 1
    if issues:
        return None, issues
    start, end = days["start"], days["end"]
    if not 1 <= start < end:
        return None, [("window", f"start {start} up to end {end} (exclusive) is not a window")]
    for year in years:
        first, after = year_span(year)
        last = (after - first).days
        if end - 1 > last:
            message = f"day {end - 1} is past the end of {year} ({last} days); end is exclusive"
            return None, [("window.end", message)]
    return Window(start, end), []


def _issues(error: ValidationError) -> list[Issue]:
    issues: list[Issue] = []
    for detail in error.errors(include_url=False):
        loc = list(detail["loc"])
        message = detail["msg"].removeprefix("Value error, ")
        if loc and loc[0] in _TAGGED and len(loc) > 3:
            del loc[2]  # pydantic names the kind it tried; the path names the table
        if loc and loc[0] == "window" and len(loc) > 2:
            del loc[2:]  # one of the union's members; say what either may be
            message = "a day-of-year number (1 = January 1st) or a date (YYYY-MM-DD)"
        if detail["type"] == "extra_forbidden":
            message = "unknown key (a typo?)"
        elif detail["type"] == "union_tag_not_found":
            message = "needs a kind"
        path = ""
        for part in loc:
            path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
        if (path, message) not in issues:
            issues.append((path, message))
    return issues


# Sections whose entries are tagged unions: pydantic puts the tag in the error's location.
_TAGGED = ("business_models", "hashprice_paths")
