"""The decision problem: plain values in, validated once.

Everything the optimizer needs arrives in a `Problem`; nothing here reads a clock, a file or the
environment. Units are in the field names: watts, seconds (`_s`), $/MWh, $/TH/s/day, node-hours.
Times inside the horizon are measured in seconds from `Problem.start`.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from itertools import pairwise

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class ProblemError(ValueError):
    """A problem that cannot be planned as given: names the field and what is wrong with it."""


class Tier(StrEnum):
    """How an AI contract may be curtailed."""

    FIRM = "firm"  # only in grid emergencies, every curtailed GPU-hour penalised
    FLEXIBLE = "flexible"  # power capping within a monthly allowance
    INTERRUPTIBLE = "interruptible"  # pausing nodes within a monthly allowance, with notice


@dataclass(frozen=True, slots=True)
class PowerTarget:
    """A firmware power-target range: per-unit watts may go down to `min_watts_per_unit`,
    keeping `hash_fraction_at_min` of the nominal hashrate (linear in between)."""

    min_watts_per_unit: float
    hash_fraction_at_min: float


@dataclass(frozen=True, slots=True)
class AsicGroup:
    """Identical miners switched together (a container, a rack row)."""

    name: str
    model: str
    units: int
    watts_per_unit: float
    ths_per_unit: float
    overhead_factor: float = 1.0
    wake_loss_s: float = 0.0  # hashing lost by each unit that wakes
    min_off_s: float = 0.0  # a unit put to sleep stays asleep at least this long
    power_target: PowerTarget | None = None
    units_on_now: int | None = None  # None: all awake
    units_locked_off: int = 0  # asleep now and not allowed to wake before `locked_off_until_s`
    locked_off_until_s: float = 0.0
    # Reserve products (`ReserveProduct.name`) the group is qualified to carry: its awake units
    # may be held ready to sleep on a deployment.
    reserve_products: frozenset[str] = frozenset()

    @property
    def joules_per_th(self) -> float:
        return self.watts_per_unit / self.ths_per_unit

    @property
    def on_now(self) -> int:
        return self.units if self.units_on_now is None else self.units_on_now


@dataclass(frozen=True, slots=True)
class CapLevel:
    """A GPU power cap: the draw reserved per GPU and the share of full throughput it keeps."""

    watts_per_gpu: float
    throughput: float


@dataclass(frozen=True, slots=True)
class Contract:
    """An AI customer's SLA. Allowances are node-hours per calendar month."""

    name: str
    tier: Tier
    usd_per_gpu_hour: float
    allowance_node_hours: float = 0.0
    max_event_s: float | None = None
    notice_s: float = 0.0
    penalty_usd_per_gpu_hour: float = 0.0
    min_power_fraction: float = 0.0  # flexible tier: deepest cap, as a share of full GPU power
    billed_when_curtailed: bool = True


@dataclass(frozen=True, slots=True)
class GpuGroup:
    """GPU nodes serving one contract. `cap_levels[0]` is full power."""

    name: str
    contract: str
    nodes: int
    gpus_per_node: int
    cap_levels: tuple[CapLevel, ...]
    idle_watts_per_gpu: float
    host_watts_per_node: float
    overhead_factor: float = 1.0
    curtailed_nodes_now: int = 0  # nodes capped or paused right now
    curtailed_for_s: float = 0.0  # how long the current curtailment has run
    # Reserve products the group is qualified to carry: its nodes at full power may be held
    # ready to drop to its contract's deepest usable cap (flexible) or to pause
    # (interruptible) on a deployment.
    reserve_products: frozenset[str] = frozenset()

    @property
    def full_node_watts(self) -> float:
        return self.gpus_per_node * self.cap_levels[0].watts_per_gpu + self.host_watts_per_node

    @property
    def paused_node_watts(self) -> float:
        return self.gpus_per_node * self.idle_watts_per_gpu + self.host_watts_per_node

    def node_watts(self, level: int) -> float:
        return self.gpus_per_node * self.cap_levels[level].watts_per_gpu + self.host_watts_per_node


@dataclass(frozen=True, slots=True)
class GridEvent:
    """A grid operator's or utility's cap on the site's draw from `start` to `end`."""

    id: str
    start: datetime
    end: datetime
    max_site_watts: float
    kind: str = "shed"


@dataclass(frozen=True, slots=True)
class AllowanceBudget:
    """What the ledger says is left of one contract's allowance in one billing period."""

    contract: str
    period_start: datetime
    period_end: datetime
    node_hours_left: float


@dataclass(frozen=True, slots=True)
class ReserveProduct:
    """An ancillary service the site may carry as a Load Resource: MW of consuming load held
    ready to drop within `response_s` when the grid operator deploys it, paid per MW held.

    Per step: `usd_per_mw_h` is what a MW held earns (the clearing price, or its forecast),
    `max_mw` how much may be held (an award already made fixes it), `awarded_mw` what the site
    is already obliged to hold; a MW of the award not held costs `failure_usd_per_mw_h`. Holding
    a MW costs `deploy_usd_per_mw_h` in expectation: the chance of a deployment times what
    dropping the load for it forgoes."""

    name: str
    response_s: float
    usd_per_mw_h: tuple[float, ...]
    max_mw: tuple[float, ...]
    awarded_mw: tuple[float, ...]
    failure_usd_per_mw_h: float = 0.0
    deploy_usd_per_mw_h: float = 0.0


@dataclass(frozen=True, slots=True)
class Programs:
    """The grid programs a plan takes part in, beside energy.

    `reserves`: the ancillary products offered or awarded. `transmission_usd_per_mwh`: per step,
    the expected transmission (4CP) charge of each MWh the site draws in it, the chance that
    its interval is one of the year's four coincident peaks times the charge per MW of
    average peak demand; empty when the plan ignores 4CP."""

    reserves: tuple[ReserveProduct, ...] = ()
    transmission_usd_per_mwh: tuple[float, ...] = ()

    def transmission(self, steps: int) -> FloatArray:
        """The transmission charge per step, zero where none is given."""
        if not self.transmission_usd_per_mwh:
            return np.zeros(steps)
        return np.asarray(self.transmission_usd_per_mwh, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class SolveOptions:
    """How hard to try. `solver` is an OR-Tools backend name; see `optimizer.model`."""

    time_limit_s: float = 10.0
    relative_gap: float = 1e-4
    solver: str = "auto"
    integer_max_units: int = 64  # ASIC classes at most this large get true integer unit counts
    # GPU classes at most this large get true integer node counts (and, at negative prices, the
    # choice of a shallower cap); larger ones, and by default all, are solved as LP and rounded.
    integer_max_nodes: int = 0
    # Move blocking, as (from_s, block_s): decisions from `from_s` on are held for `block_s`.
    # Empty: every step decided on its own (the hindsight bound runs so).
    blocking: tuple[tuple[float, float], ...] = ((3_600.0, 900.0), (6 * 3_600.0, 3_600.0))


@dataclass(frozen=True, slots=True)
class Problem:
    """One planning question: the site, its state, and what is known of the horizon ahead."""

    start: datetime
    step_s: tuple[float, ...]
    price_usd_per_mwh: tuple[float, ...]
    hashprice_usd_per_th_day: tuple[float, ...]
    site_limit_watts: float
    site_margin_watts: float
    asic_groups: tuple[AsicGroup, ...]
    gpu_groups: tuple[GpuGroup, ...] = ()
    contracts: tuple[Contract, ...] = ()
    events: tuple[GridEvent, ...] = ()
    budgets: tuple[AllowanceBudget, ...] = ()
    pool_fee: float = 0.0
    # The price below which one node-hour of allowance is better kept for later (online pacing).
    allowance_value_usd_per_node_hour: Mapping[str, float] = field(default_factory=dict)
    programs: Programs = field(default_factory=Programs)
    options: SolveOptions = field(default_factory=SolveOptions)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def steps(self) -> int:
        return len(self.step_s)

    def step_offsets_s(self) -> FloatArray:
        """Start of each step, in seconds from `start` (read-only: shared between calls)."""
        return _offsets(self.step_s)

    def step_start(self, step: int) -> datetime:
        return self.start + timedelta(seconds=float(self.step_offsets_s()[step]))

    def contract(self, name: str) -> Contract:
        for contract in self.contracts:
            if contract.name == name:
                return contract
        raise ProblemError(f"contract {name!r} is not defined")

    def cap_watts(self) -> FloatArray:
        """The site's allowed draw in each step: the limit less its margin, or a grid event's cap
        where an event overlaps any part of the step."""
        offsets = self.step_offsets_s()
        ends = offsets + np.asarray(self.step_s)
        cap = np.full(self.steps, self.site_limit_watts - self.site_margin_watts)
        for event in self.events:
            event_start = (event.start - self.start).total_seconds()
            event_end = (event.end - self.start).total_seconds()
            overlaps = (offsets < event_end) & (ends > event_start)
            cap[overlaps] = np.minimum(cap[overlaps], event.max_site_watts)
        return cap

    def event_active(self) -> npt.NDArray[np.bool_]:
        offsets = self.step_offsets_s()
        ends = offsets + np.asarray(self.step_s)
        active = np.zeros(self.steps, dtype=bool)
        for event in self.events:
            event_start = (event.start - self.start).total_seconds()
            event_end = (event.end - self.start).total_seconds()
            active |= (offsets < event_end) & (ends > event_start)
        return active


@lru_cache(maxsize=64)
def _offsets(step_s: tuple[float, ...]) -> FloatArray:
    # Asked for many times per plan (model building, reading the plan, re-plan checks), for a
    # few distinct step layouts: computed once each.
    offsets = np.concatenate(([0.0], np.cumsum(np.asarray(step_s, dtype=np.float64))[:-1]))
    offsets.setflags(write=False)
    return offsets


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ProblemError(message)


def validate(problem: Problem) -> None:
    """Reject a problem the model cannot represent, naming the offending field."""
    _require(problem.start.tzinfo is not None, "start: must be timezone-aware (UTC)")
    steps = len(problem.step_s)
    _require(steps > 0, "step_s: at least one step is needed")
    _require(all(s > 0 for s in problem.step_s), "step_s: every step must be longer than 0 s")
    _require(
        len(problem.price_usd_per_mwh) == steps,
        f"price_usd_per_mwh: {len(problem.price_usd_per_mwh)} prices for {steps} steps",
    )
    _require(
        len(problem.hashprice_usd_per_th_day) == steps,
        f"hashprice_usd_per_th_day: {len(problem.hashprice_usd_per_th_day)} values"
        f" for {steps} steps",
    )
    _require(
        _finite(problem.price_usd_per_mwh),
        "price_usd_per_mwh: every price must be a finite number",
    )
    _require(
        _finite(problem.hashprice_usd_per_th_day),
        "hashprice_usd_per_th_day: every value must be a finite number",
    )
    _require(problem.site_limit_watts > 0, "site_limit_watts: must be positive")
    _require(
        0 <= problem.site_margin_watts < problem.site_limit_watts,
        "site_margin_watts: must be at least 0 and below the site limit",
    )
    _require(0 <= problem.pool_fee < 1, "pool_fee: must be a share in [0, 1)")
    contract_names = {c.name for c in problem.contracts}
    _validate_groups(problem.asic_groups, problem.gpu_groups, contract_names)
    for budget in problem.budgets:
        _require(
            budget.contract in contract_names,
            f"budgets: contract {budget.contract!r} is not defined",
        )
        _require(budget.node_hours_left >= 0, f"budgets[{budget.contract}]: negative allowance")
    for event in problem.events:
        _require(event.end > event.start, f"events[{event.id}]: end must be after start")
        _require(event.max_site_watts >= 0, f"events[{event.id}]: max_site_watts must be >= 0")
    _validate_programs(problem.programs, steps)


def _finite(values: tuple[float, ...]) -> bool:
    # On the tuples as they are: a conversion to an array each would cost more than the test.
    return all(map(math.isfinite, values))


# The group tuples validated last, held so that their ids stay theirs: a problem re-made from
# another's groups (coarsened for the solver, re-timed) does not check its ~100 groups again.
_CHECKED_GROUPS: deque[tuple[tuple[AsicGroup, ...], tuple[GpuGroup, ...], frozenset[str]]] = deque(
    maxlen=8
)


def _validate_groups(
    asic_groups: tuple[AsicGroup, ...],
    gpu_groups: tuple[GpuGroup, ...],
    contract_names: set[str],
) -> None:
    contracts = frozenset(contract_names)
    for asics, gpus, known in tuple(_CHECKED_GROUPS):  # a copy: another thread may append
        if asics is asic_groups and gpus is gpu_groups and known == contracts:
            return
    names = [g.name for g in asic_groups] + [g.name for g in gpu_groups]
    duplicated = sorted(name for name, count in Counter(names).items() if count > 1)
    _require(not duplicated, f"groups: names must be unique, repeated: {duplicated}")
    for asic in asic_groups:
        _validate_asic(asic)
    for gpu in gpu_groups:
        _validate_gpu(gpu, contract_names)
    _CHECKED_GROUPS.append((asic_groups, gpu_groups, contracts))


def _validate_programs(programs: Programs, steps: int) -> None:
    charge = programs.transmission_usd_per_mwh
    _require(
        not charge or len(charge) == steps,
        f"programs.transmission_usd_per_mwh: {len(charge)} values for {steps} steps",
    )
    _require(
        _finite(charge) and min(charge, default=0.0) >= 0,
        "programs.transmission_usd_per_mwh: every value must be finite and >= 0",
    )
    names = [r.name for r in programs.reserves]
    _require(len(set(names)) == len(names), f"programs.reserves: repeated products {names}")
    for reserve in programs.reserves:
        where = f"programs.reserves[{reserve.name}]"
        _require(reserve.response_s > 0, f"{where}.response_s: must be positive")
        for field_name in ("usd_per_mw_h", "max_mw", "awarded_mw"):
            values = getattr(reserve, field_name)
            _require(len(values) == steps, f"{where}.{field_name}: {len(values)} for {steps} steps")
            _require(_finite(values), f"{where}.{field_name}: must be finite numbers")
        _require(
            min(reserve.max_mw, default=0.0) >= 0 and min(reserve.awarded_mw, default=0.0) >= 0,
            f"{where}: max_mw and awarded_mw must be >= 0",
        )
        _require(
            reserve.failure_usd_per_mw_h >= 0 and reserve.deploy_usd_per_mw_h >= 0,
            f"{where}: failure and deployment costs must be >= 0",
        )


@lru_cache(maxsize=4_096)  # a site's groups are checked on every re-plan: once each is enough
def _validate_asic(asic: AsicGroup) -> None:
    where = f"asic_groups[{asic.name}]"
    _require(asic.units >= 0, f"{where}.units: must be >= 0")
    _require(asic.watts_per_unit > 0, f"{where}.watts_per_unit: must be positive")
    _require(asic.ths_per_unit > 0, f"{where}.ths_per_unit: must be positive")
    _require(asic.overhead_factor >= 1, f"{where}.overhead_factor: must be >= 1")
    _require(asic.wake_loss_s >= 0, f"{where}.wake_loss_s: must be >= 0")
    _require(asic.min_off_s >= 0, f"{where}.min_off_s: must be >= 0")
    _require(0 <= asic.on_now <= asic.units, f"{where}.units_on_now: must be within 0..units")
    _require(
        0 <= asic.units_locked_off <= asic.units - asic.on_now,
        f"{where}.units_locked_off: must be within the units asleep now",
    )
    target = asic.power_target
    if target is not None:
        _require(
            0 < target.min_watts_per_unit < asic.watts_per_unit,
            f"{where}.power_target.min_watts_per_unit: must be between 0 and watts_per_unit",
        )
        _require(
            0 < target.hash_fraction_at_min <= 1,
            f"{where}.power_target.hash_fraction_at_min: must be in (0, 1]",
        )


def _validate_gpu(gpu: GpuGroup, contract_names: set[str]) -> None:
    where = f"gpu_groups[{gpu.name}]"
    _require(gpu.contract in contract_names, f"{where}.contract: {gpu.contract!r} is not defined")
    _require(gpu.nodes >= 0, f"{where}.nodes: must be >= 0")
    _require(gpu.gpus_per_node > 0, f"{where}.gpus_per_node: must be positive")
    _require(len(gpu.cap_levels) >= 1, f"{where}.cap_levels: at least full power is needed")
    watts = [level.watts_per_gpu for level in gpu.cap_levels]
    _require(
        all(a > b for a, b in pairwise(watts)),
        f"{where}.cap_levels: must be sorted from full power down, without repeats",
    )
    _require(
        0 <= gpu.idle_watts_per_gpu < watts[-1],
        f"{where}.idle_watts_per_gpu: must be below the lowest cap",
    )
    _require(gpu.host_watts_per_node >= 0, f"{where}.host_watts_per_node: must be >= 0")
    _require(gpu.overhead_factor >= 1, f"{where}.overhead_factor: must be >= 1")
    _require(
        0 <= gpu.curtailed_nodes_now <= gpu.nodes,
        f"{where}.curtailed_nodes_now: must be within 0..nodes",
    )


def uniform_steps(count: int, step_s: float) -> tuple[float, ...]:
    """`count` steps of `step_s` seconds each."""
    return (float(step_s),) * count


def lengthening_steps(
    horizon_s: float = 86_400.0,
    tiers: tuple[tuple[float, float], ...] = ((3_600.0, 300.0), (6 * 3_600.0, 900.0)),
    tail_step_s: float = 3_600.0,
) -> tuple[float, ...]:
    """Steps that lengthen further out: each `(until_s, step_s)` tier covers the horizon up to
    `until_s`, the rest is cut in `tail_step_s`. Decisions far ahead only need to be roughly
    right; the first steps are what gets applied."""
    steps: list[float] = []
    elapsed = 0.0
    for until_s, step_s in (*tiers, (horizon_s, tail_step_s)):
        while elapsed < min(until_s, horizon_s) - 1e-9:
            length = min(step_s, horizon_s - elapsed)
            steps.append(length)
            elapsed += length
    return tuple(steps)
