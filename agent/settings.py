"""The site file: one pydantic-settings model, read from TOML once at start-up.

Values come from the TOML file given to `load_settings`, overridden by `GRIDPILOT_`-prefixed
environment variables with `__` between levels (`GRIDPILOT_SITE__INTERCONNECT_WATTS=7e7`). Every
model forbids unknown keys, so a typo is an error rather than a silently ignored setting. The
site and its loads come first, then the grid programs it takes part in (`[programs]`); `[mqtt]`,
`[agent]` and `[devices]` say how the daemon runs.

Units are in the field names: watts, seconds (`_s`), $/GPU-hour, TH/s per unit, MW and $/MW-h for
grid programs.
"""

from __future__ import annotations

import difflib
import ipaddress
import itertools
import os
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from gridpilot.optimizer.problem import Tier

ENV_PREFIX = "GRIDPILOT_"
EXAMPLE_FILE = "deploy/examples/reference-site.toml"

# Group and contract names end up in MQTT topics, metric labels and ledger keys.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

# The error type of checks that span sections; its context carries (path, message) pairs so each
# problem keeps its own field path instead of pointing at the whole file.
_CROSS_FIELD_ERROR = "gridpilot_cross_field"
_RELATIVE_TOLERANCE = 1e-9


# The reserves a site's loads may carry as ERCOT Load Resources: Responsive Reserve (tripped by
# an under-frequency relay at 59.7 Hz, or deployed by ERCOT), ERCOT Contingency Reserve (10
# minutes) and Non-Spinning Reserve (30 minutes). Regulation needs a Controllable Load Resource
# following ERCOT's 4-second signal, which these loads are not modelled as; Emergency Response
# Service is contracted per period (`[[programs.ers]]`), not carried per group.
ReserveProductName = Literal["RRS", "ECRS", "NSPIN"]
RESERVE_PRODUCTS: tuple[ReserveProductName, ...] = get_args(ReserveProductName)


def _known_reserve_products(value: Any) -> Any:
    """Reject what a group cannot carry with the reason, before the type check's bare list."""
    if not isinstance(value, list | tuple):
        return value
    allowed = f"use one of: {', '.join(RESERVE_PRODUCTS)}"
    seen: set[str] = set()
    for index, product in enumerate(value):
        if not isinstance(product, str):
            continue  # the type check reports it
        where = f"item {index} ({product!r})"
        if product in ("REGUP", "REGDN"):
            raise ValueError(
                f"{where}: Regulation needs a Controllable Load Resource following ERCOT's"
                f" 4-second signal, which these loads are not modelled as; {allowed}"
            )
        if product.upper().startswith("ERS"):
            raise ValueError(
                f"{where}: Emergency Response Service is contracted per period, not carried"
                " per group; give its periods as [[programs.ers]] entries"
            )
        if product not in RESERVE_PRODUCTS:
            close = [p for p in RESERVE_PRODUCTS if p == product.upper().replace("-", "")]
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"{where} is not a reserve product; {hint}{allowed}")
        if product in seen:
            raise ValueError(f"{where} is listed twice")
        seen.add(product)
    return value


# Products a group is qualified to carry: its consuming load may be held ready to drop.
ReserveProducts = Annotated[
    tuple[ReserveProductName, ...], BeforeValidator(_known_reserve_products)
]

Issue = tuple[str, str]  # (field path such as "gpu_groups[0].contract", what is wrong and the fix)


class ConfigError(Exception):
    """A site file that cannot be used: each issue names a field path and what would fix it."""

    def __init__(self, source: Path, issues: Sequence[Issue]) -> None:
        super().__init__(source, tuple(issues))
        self.source = source
        self.issues: list[Issue] = list(issues)

    def __str__(self) -> str:
        count = len(self.issues)
        lines = [f"{self.source}: {count} problem{'s' if count != 1 else ''} in the site file:"]
        lines += [
            f"  {path}: {message}" if path else f"  {message}" for path, message in self.issues
        ]
        if any(path for path, _ in self.issues):
            lines.append(f"(a {ENV_PREFIX}* environment variable, if set, wins over the file)")
        return "\n".join(lines)


class _Section(BaseModel):
    # Frozen so settings can be passed down without defensive copies; NaN and infinity are never a
    # meaningful setting.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class SiteSettings(_Section):
    """The grid connection and what sits between the loads and the meter."""

    name: str = Field(pattern=NAME_PATTERN)
    settlement_point: str = Field(min_length=1)  # ERCOT settlement point, e.g. HB_WEST
    interconnect_watts: float = Field(gt=0)  # the limit the site must never exceed at the meter
    margin_watts: float = Field(ge=0)  # kept free below the limit for meter lag and load swings
    pool_fee: float = Field(ge=0, lt=1)  # share of mining revenue the pool keeps, e.g. 0.02
    asic_overhead_factor: float = Field(default=1.0, ge=1)  # meter watts per miner watt (cooling)
    gpu_overhead_factor: float = Field(default=1.0, ge=1)  # meter watts per GPU-node watt

    @field_validator("margin_watts")
    @classmethod
    def _margin_below_limit(cls, margin_watts: float, info: ValidationInfo) -> float:
        limit = info.data.get("interconnect_watts")
        if limit is not None and margin_watts >= limit:
            raise ValueError(
                f"{margin_watts:,.0f} W is not below interconnect_watts ({limit:,.0f} W);"
                " the margin is headroom kept free under the limit, typically 1-3 % of it"
            )
        return margin_watts


class PowerTargetSettings(_Section):
    """A firmware power-target range; hashrate falls linearly from nominal to the minimum."""

    min_watts_per_unit: float = Field(gt=0)
    hash_fraction_at_min: float = Field(gt=0, le=1)  # share of nominal TH/s kept at the minimum


class AsicGroupSettings(_Section):
    """Identical miners; with `units_per_group` they are split into containers switched apart."""

    name: str = Field(pattern=NAME_PATTERN)
    model: str = Field(min_length=1)  # e.g. "Antminer S21"
    count: int = Field(gt=0)  # miners of this model
    watts_per_unit: float = Field(gt=0)  # nominal draw of one miner
    ths_per_unit: float = Field(gt=0)  # nominal hashrate of one miner, TH/s
    units_per_group: int | None = Field(default=None, gt=0)  # container size; None: one group
    power_target: PowerTargetSettings | None = None
    wake_loss_s: float = Field(default=0.0, ge=0)  # hashing lost by each miner that wakes
    min_off_s: float = Field(default=0.0, ge=0)  # a sleeping miner stays asleep at least this long
    # Who carries the setpoints out: a gateway over MQTT, or the agent itself through pyasic
    # to the `miners` (IP addresses or first-last ranges, one per miner, in container order).
    actuator: Literal["mqtt", "pyasic"] = "mqtt"
    miners: tuple[str, ...] = ()
    # Reserves the miners are qualified for as a Load Resource (RRS needs an under-frequency
    # relay on their feeder); empty: none.
    reserve_products: ReserveProducts = ()

    @model_validator(mode="after")
    def _miners_for_pyasic(self) -> Self:
        if self.actuator == "pyasic":
            try:
                addresses = expand_addresses(self.miners)
            except ValueError as error:
                raise ValueError(f"miners: {error}") from None
            if len(addresses) != self.count:
                raise ValueError(
                    f"actuator 'pyasic' needs one address per miner: {self.count} miners but"
                    f" {len(addresses)} addresses in `miners` (ranges like"
                    " '10.0.1.1-10.0.1.200' count each address)"
                )
        elif self.miners:
            raise ValueError("`miners` is only used with actuator = 'pyasic'; remove it")
        return self

    def addresses(self) -> tuple[tuple[str, ...], ...]:
        """The miners' addresses of each group `split` makes, in the same order."""
        every = expand_addresses(self.miners)
        result, start = [], 0
        for _, units in self.split():
            result.append(every[start : start + units])
            start += units
        return tuple(result)

    @field_validator("power_target")
    @classmethod
    def _target_below_nominal(
        cls, target: PowerTargetSettings | None, info: ValidationInfo
    ) -> PowerTargetSettings | None:
        nominal = info.data.get("watts_per_unit")
        if target is not None and nominal is not None and target.min_watts_per_unit >= nominal:
            raise ValueError(
                f"min_watts_per_unit ({target.min_watts_per_unit:g} W) must be below"
                f" watts_per_unit ({nominal:g} W); remove power_target if the firmware has none"
            )
        return target

    def split(self) -> tuple[tuple[str, int], ...]:
        """The (name, units) of each optimizer group this entry becomes."""
        return _split(self.name, self.count, self.units_per_group)


class CapLevelSettings(_Section):
    """A GPU power cap and the share of full-power throughput the GPU keeps under it."""

    watts_per_gpu: float = Field(gt=0)
    throughput: float = Field(gt=0, le=1)


class GpuGroupSettings(_Section):
    """GPU nodes serving one contract; with `nodes_per_group` they are split into smaller groups."""

    name: str = Field(pattern=NAME_PATTERN)
    nodes: int = Field(gt=0)
    gpus_per_node: int = Field(gt=0)
    cap_levels: tuple[CapLevelSettings, ...] = Field(min_length=1)  # full power first
    idle_watts_per_gpu: float = Field(ge=0)  # a paused but allocated GPU
    host_watts_per_node: float = Field(ge=0)  # CPUs, memory, NICs, fans of one node
    contract: str  # the name of a [[contracts]] entry
    nodes_per_group: int | None = Field(default=None, gt=0)
    # Who carries the setpoints out: a gateway over MQTT; NVML on this host (caps the local
    # GPUs listed in `gpus`); or commands that pause and resume the group's jobs (`{group}` and
    # `{nodes}` in an argument are filled in; no shell).
    actuator: Literal["mqtt", "nvml", "command"] = "mqtt"
    gpus: tuple[int, ...] = ()
    pause_command: tuple[str, ...] = ()
    resume_command: tuple[str, ...] = ()
    command_timeout_s: float = Field(default=30.0, gt=0)
    # Reserves the nodes are qualified for as a Load Resource: held at full power, ready to drop
    # to the contract's deepest cap (flexible) or to pause (interruptible); empty: none.
    reserve_products: ReserveProducts = ()

    @model_validator(mode="after")
    def _actuator_needs(self) -> Self:
        if self.actuator == "nvml" and not self.gpus:
            raise ValueError("actuator 'nvml' needs `gpus`, the indices of this host's GPUs")
        if self.actuator == "command" and not (self.pause_command and self.resume_command):
            raise ValueError(
                "actuator 'command' needs `pause_command` and `resume_command`, e.g."
                " ['scontrol', 'suspend', '{group}'] and ['scontrol', 'resume', '{group}']"
            )
        if self.actuator == "nvml" and self.nodes_per_group is not None:
            raise ValueError("an NVML group is this host's GPUs: remove nodes_per_group")
        return self

    @field_validator("cap_levels")
    @classmethod
    def _caps_descend(cls, levels: tuple[CapLevelSettings, ...]) -> tuple[CapLevelSettings, ...]:
        for index, (above, below) in enumerate(itertools.pairwise(levels), start=1):
            if below.watts_per_gpu >= above.watts_per_gpu:
                raise ValueError(
                    f"level {index} ({below.watts_per_gpu:g} W) is not below level {index - 1}"
                    f" ({above.watts_per_gpu:g} W); list the caps from full power down, each"
                    " lower than the one before, without repeats"
                )
            if below.throughput > above.throughput:
                raise ValueError(
                    f"level {index} keeps more throughput ({below.throughput:g}) than level"
                    f" {index - 1} ({above.throughput:g}) at higher power; a lower cap cannot be"
                    " faster, so check the measured throughputs"
                )
        return levels

    @field_validator("idle_watts_per_gpu")
    @classmethod
    def _idle_below_caps(cls, idle_watts: float, info: ValidationInfo) -> float:
        levels: tuple[CapLevelSettings, ...] | None = info.data.get("cap_levels")
        if levels and idle_watts >= levels[-1].watts_per_gpu:
            raise ValueError(
                f"{idle_watts:g} W is not below the lowest cap ({levels[-1].watts_per_gpu:g} W);"
                " a paused GPU must draw less than a running one"
            )
        return idle_watts

    def split(self) -> tuple[tuple[str, int], ...]:
        """The (name, nodes) of each optimizer group this entry becomes."""
        return _split(self.name, self.nodes, self.nodes_per_group)


class ContractSettings(_Section):
    """An AI customer's SLA and what curtailing its GPUs costs."""

    name: str = Field(pattern=NAME_PATTERN)
    tier: Tier
    usd_per_gpu_hour: float = Field(ge=0)
    # Hours per calendar month the whole contract may be curtailed (744 h is a 31-day month).
    allowance_hours_per_month: float = Field(default=0.0, ge=0, le=744)
    max_event_s: float | None = Field(default=None, gt=0)  # longest single curtailment
    notice_s: float = Field(default=0.0, ge=0)  # warning owed to the customer before curtailing
    penalty_usd_per_gpu_hour: float = Field(default=0.0, ge=0)  # beyond the allowance
    # Flexible tier only: the deepest cap allowed, as a share of full GPU power.
    min_power_fraction: float | None = Field(default=None, gt=0, lt=1)
    # Unset: firm and flexible GPU-hours are billed while curtailed, interruptible ones are not.
    billed_when_curtailed: bool = True

    @model_validator(mode="before")
    @classmethod
    def _billing_default_by_tier(cls, data: Any) -> Any:
        if isinstance(data, dict) and "billed_when_curtailed" not in data:
            return {**data, "billed_when_curtailed": data.get("tier") != Tier.INTERRUPTIBLE}
        return data

    @field_validator("min_power_fraction")
    @classmethod
    def _fraction_only_when_flexible(
        cls, fraction: float | None, info: ValidationInfo
    ) -> float | None:
        tier = info.data.get("tier")
        if fraction is not None and tier is not None and tier != Tier.FLEXIBLE:
            raise ValueError(
                f"only a flexible contract is curtailed by power capping, this one is {tier};"
                " remove min_power_fraction or set tier = 'flexible'"
            )
        return fraction


class DeployChanceSettings(_Section):
    """The expected-deployment model of each reserve product: the chance that an hour in which
    a MW is held is an hour it is deployed (expected deployed hours per hour held). The planner
    charges each MW-hour held this chance times what dropping the load for it forgoes.

    The defaults are our assumption, of the order of the few deployments reported (the EEA2 of
    2023-09-06, ECRS deployments in summer 2023, none of RRS or ECRS in June 2024): about 2, 9
    and 18 deployed hours a year of a MW held all year. ERCOT publishes no deployment log that
    we found (deploy/data/SOURCES.md); set them from the site's own record."""

    RRS: float = Field(default=0.0002, ge=0, le=1)  # relay trips and EEA deployments: rare
    ECRS: float = Field(default=0.001, ge=0, le=1)
    NSPIN: float = Field(default=0.002, ge=0, le=1)


class ErsSettings(_Section):
    """An Emergency Response Service obligation for one contract period: `mw` of load to drop
    within 10 (ERS-10) or 30 minutes (ERS-30) when ERCOT deploys it in an emergency, paid
    `usd_per_mw_h` for each MW-hour of availability. From `start` up to `end` (Central operating
    days; `end` is the first day after the period, so consecutive periods share a date)."""

    product: Literal["ERS-10", "ERS-30"]
    start: date
    end: date
    mw: float = Field(gt=0)
    usd_per_mw_h: float = Field(ge=0)

    @field_validator("end")
    @classmethod
    def _after_start(cls, end: date, info: ValidationInfo) -> date:
        start = info.data.get("start")
        if start is not None and end <= start:
            raise ValueError(
                f"{end.isoformat()} is not after start ({start.isoformat()}); end is the first"
                " day after the period"
            )
        return end


# A MW of an award not held, per hour. Our assumption, not ERCOT's settlement formula: ERCOT
# charges a shortfall back at a market price for the service, which in scarcity rises with the
# energy price, and failed deployments can cost a resource its qualification. At the
# 5,000 $/MWh offer cap an award is kept whatever energy costs, as an operator keeps one.
DEFAULT_FAILURE_USD_PER_MW_H = 5_000.0


class ProgramSettings(_Section):
    """The ERCOT grid programs the site takes part in beside energy: 4CP transmission-charge
    avoidance, reserves carried by the qualified groups (their `reserve_products`) and ERS."""

    # The wholesale transmission rate, $/kW-yr. None: the bundled rates file's rate for the
    # year billed (a year's 4CP is billed the year after).
    transmission_usd_per_kw_year: float | None = Field(default=None, gt=0)
    # The months whose system peak sets next year's transmission charge.
    cp_months: tuple[int, ...] = (6, 7, 8, 9)
    failure_usd_per_mw_h: float = Field(default=DEFAULT_FAILURE_USD_PER_MW_H, ge=0)
    deploy_chance_per_hour: DeployChanceSettings = DeployChanceSettings()
    ers: tuple[ErsSettings, ...] = ()

    @field_validator("cp_months")
    @classmethod
    def _months(cls, months: tuple[int, ...]) -> tuple[int, ...]:
        bad = [month for month in months if not 1 <= month <= 12]
        if bad:
            raise ValueError(f"{bad[0]} is not a month; give months as 1 (January) to 12")
        if len(set(months)) != len(months):
            raise ValueError("a month is listed twice")
        return tuple(sorted(months))

    def deploy_chance(self, product: ReserveProductName) -> float:
        """The expected deployed hours per hour held of `product`."""
        chance: float = getattr(self.deploy_chance_per_hour, product)
        return chance


class DeviceSettings(_Section):
    """How the agent drives devices itself (groups with actuator 'pyasic', 'nvml')."""

    concurrency: int = Field(default=100, gt=0)  # miners talked to at once
    timeout_s: float = Field(default=3.0, gt=0)  # per miner and request
    # A miner said to sleep must read below this share of its nominal power within
    # `confirm_after_s`, or it is flagged (firmware that reports success without sleeping).
    confirm_after_s: float = Field(default=2.0, ge=0)
    asleep_power_share: float = Field(default=0.2, gt=0, lt=1)
    retries: int = Field(default=1, ge=0)
    restore_gpu_defaults_on_exit: bool = True


class FieldMapSettings(_Section):
    """Where one input's value sits in its payload: a dotted JSON path (empty for a bare number),
    the factor to base units (1000 for a gateway that publishes kW) and the timestamp's path
    (empty: the time the broker delivered it)."""

    value: str = ""
    scale: float = Field(default=1.0, gt=0)
    ts: str = "ts"


class TopicSettings(_Section):
    """Every topic the agent reads and writes. `{site}` is the site's name; `{group}` and
    `{contract}` are filled per message; `+` is the meter's or group's name on input."""

    meter: str = "gridpilot/{site}/meter/+"
    price: str = "gridpilot/{site}/price/realtime"
    forecast: str = "gridpilot/{site}/price/forecast"
    hashprice: str = "gridpilot/{site}/hashprice"
    event: str = "gridpilot/{site}/grid/event"
    override: str = "gridpilot/{site}/override/+"
    asic_command: str = "gridpilot/{site}/cmd/asic/{group}"
    gpu_command: str = "gridpilot/{site}/cmd/gpu/{group}"
    notice: str = "gridpilot/{site}/notice/{contract}"
    plan: str = "gridpilot/{site}/plan"
    mode: str = "gridpilot/{site}/mode"
    status: str = "gridpilot/{site}/status"
    # The grid programs: ERCOT's system load and frequency, bought 4CP alerts, and the reserve
    # awards, deployments, recalls and day-ahead ancillary prices from the site's QSE; out, the
    # day-ahead offer (retained) and, every second, the MW held and available per product.
    system_load: str = "gridpilot/{site}/grid/load"
    frequency: str = "gridpilot/{site}/grid/frequency"
    cp_alert: str = "gridpilot/{site}/grid/cp_alert"
    award: str = "gridpilot/{site}/as/award"
    deploy: str = "gridpilot/{site}/as/deploy"
    recall: str = "gridpilot/{site}/as/recall"
    ancillary_prices: str = "gridpilot/{site}/as/prices"
    offer: str = "gridpilot/{site}/as/offer"
    obligation: str = "gridpilot/{site}/as/obligation"
    available: str = "gridpilot/{site}/as/available"

    @field_validator("meter", "override")
    @classmethod
    def _one_wildcard_last(cls, topic: str) -> str:
        if not topic.endswith("/+") or "+" in topic[:-1] or "#" in topic:
            raise ValueError(
                f"{topic!r} must end in '/+' (the meter's or group's name) and hold no other"
                " wildcard"
            )
        return topic


class TlsSettings(_Section):
    """TLS to the broker: the CA that signed its certificate, and a client certificate where the
    broker asks for one."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file for a client certificate, or none")
        return self


class MqttSettings(_Section):
    """The site's broker and the shape of what arrives on it."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, gt=0, lt=65_536)
    client_id: str = ""  # empty: gridpilot-<site name>
    username: str | None = None
    password: SecretStr | None = None  # never logged; better from GRIDPILOT_MQTT__PASSWORD
    tls: TlsSettings | None = None
    keepalive_s: int = Field(default=30, ge=5)
    # Reconnect waits double from the first to the cap, each drawn between half and all of it
    # so that many agents restarted together do not reconnect in step.
    reconnect_first_s: float = Field(default=0.25, gt=0)
    reconnect_max_s: float = Field(default=4.0, gt=0)
    max_payload_bytes: int = Field(default=65_536, gt=0)
    topics: TopicSettings = TopicSettings()
    meter_fields: FieldMapSettings = FieldMapSettings(value="watts")
    price_fields: FieldMapSettings = FieldMapSettings(value="usd_per_mwh")
    hashprice_fields: FieldMapSettings = FieldMapSettings(value="usd_per_th_day")


LEDGER_FILE = "ledger.sqlite3"


def default_ledger_path(environ: Mapping[str, str], euid: int) -> Path:
    """Where the ledger lives when the site file does not say: the service's state directory
    under systemd (`StateDirectory=gridpilot` sets `$STATE_DIRECTORY`), `/var/lib/gridpilot`
    for root, and the user's own state directory (`$XDG_STATE_HOME`, by default
    `~/.local/state`) for anyone else, so that trying the agent needs no root."""
    service = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if service:
        return Path(service) / LEDGER_FILE
    if euid == 0:
        return Path("/var/lib/gridpilot") / LEDGER_FILE
    state = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")) / ".local/state")
    return Path(state).expanduser() / "gridpilot" / LEDGER_FILE


class AgentSettings(_Section):
    """How the daemon runs: its loops, its safety rules and where it keeps its state."""

    # Meters whose latest readings sum to the site's draw. Empty: every meter that reports.
    meters: tuple[str, ...] = ("main",)
    plan_interval_s: float = Field(default=300.0, ge=10)
    # A guard shed asks for a new plan; requests closer together than this wait for each other.
    replan_min_gap_s: float = Field(default=10.0, ge=0)
    replan_after_guard: bool = True
    solve_time_limit_s: float = Field(default=10.0, gt=0)
    horizon_s: float = Field(default=86_400.0, ge=3_600)
    # Miners take seconds to sleep: for this long after a shed the guard credits what it shed
    # against readings that do not show it yet, so one excursion is not shed twice.
    guard_settle_s: float = Field(default=5.0, ge=0)
    meter_stale_after_s: float = Field(default=30.0, gt=0)
    price_stale_after_s: float = Field(default=1_800.0, gt=0)
    hashprice_stale_after_s: float = Field(default=3 * 86_400.0, gt=0)
    # The day-ahead forecast comes once a day (ERCOT posts the day-ahead market's results in the
    # early afternoon, Central): older than a day and a half, a publication was missed. No safe
    # mode: past the last period published the planner forecasts from the settled prices alone.
    forecast_stale_after_s: float = Field(default=36 * 3_600.0, gt=0)
    # Safe mode (a stale meter or price): planning stops, GPUs stay as they are and the ASICs
    # are held to this share of the limit less margin (or what the GPUs' commanded draw leaves
    # under it, if less), most efficient first.
    safe_asic_share: float = Field(default=0.5, ge=0, le=1)
    shadow: bool = False  # decide and publish plans, command nothing
    ledger_path: Path = Field(default_factory=lambda: default_ledger_path(os.environ, os.geteuid()))
    ledger_keep_days: float = Field(default=90.0, gt=0)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9108, ge=0, lt=65_536)  # 0: any free port


class Settings(BaseSettings):
    """Everything the agent is told about its site. Build it with `load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
    )

    site: SiteSettings
    contracts: tuple[ContractSettings, ...] = ()
    asic_groups: tuple[AsicGroupSettings, ...] = ()
    gpu_groups: tuple[GpuGroupSettings, ...] = ()
    programs: ProgramSettings = ProgramSettings()
    mqtt: MqttSettings = MqttSettings()
    # A factory, not one shared instance: its default ledger path reads the environment.
    agent: AgentSettings = Field(default_factory=AgentSettings)
    devices: DeviceSettings = DeviceSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest priority first: the environment overrides the file. No .env or secrets
        # directory: the site file is the one record of the site. The TOML path comes from
        # `model_config["toml_file"]`, set per load by `load_settings`.
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)

    @model_validator(mode="after")
    def _cross_check(self) -> Self:
        issues = [
            *_duplicate_names(self),
            *_contract_references(self),
            *_flexible_caps(self),
            *_reserves_on_firm_contracts(self),
            *_ers_overlaps(self),
        ]
        if issues:
            summary = "; ".join(f"{path}: {message}" for path, message in issues)
            raise PydanticCustomError(
                _CROSS_FIELD_ERROR, "{summary}", {"summary": summary, "issues": tuple(issues)}
            )
        return self


def load_settings(path: Path) -> Settings:
    """Read the site file at `path`, apply `GRIDPILOT_*` environment overrides and validate.

    Raises `ConfigError` for a missing or unreadable file, a TOML syntax error or an invalid value.
    """
    try:
        # Checked here because the TOML source silently skips a file that does not exist.
        with path.open("rb"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        fix = f"pass the path of a site file such as {EXAMPLE_FILE}"
        raise ConfigError(path, [("", f"cannot read the site file ({reason}); {fix}")]) from exc

    # pydantic-settings takes the TOML path from the class config only (pydantic-settings#259),
    # so each load uses a throwaway subclass rather than mutating `Settings`.
    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    try:
        loaded = _FromFile()  # type: ignore[call-arg]  # the sources supply every field
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [("", f"TOML syntax error: {exc}")]) from exc
    except OSError as exc:
        raise ConfigError(path, [("", f"cannot read the site file: {exc}")]) from exc
    except SettingsError as exc:
        # An environment override of a whole section or list that is not valid JSON.
        fix = f"give a whole section as JSON, or set one key as {ENV_PREFIX}<SECTION>__<KEY>"
        raise ConfigError(path, [("", f"{exc}; {fix}")]) from exc
    except ValidationError as exc:
        raise ConfigError(path, _issues(exc)) from exc
    # Already validated: hand back a plain `Settings` so equality and pickling behave.
    return Settings.model_construct(_fields_set=loaded.model_fields_set, **dict(loaded))


def expand_addresses(entries: Sequence[str]) -> tuple[str, ...]:
    """IP addresses from single addresses and inclusive 'first-last' ranges, in order."""
    result: list[str] = []
    for entry in entries:
        first, _, last = entry.partition("-")
        try:
            start = ipaddress.ip_address(first.strip())
            end = ipaddress.ip_address(last.strip()) if last else start
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or a first-last range") from None
        if end.version != start.version or int(end) < int(start):
            raise ValueError(f"{entry!r} ends before it starts")
        kind = type(start)
        result.extend(str(kind(int(start) + k)) for k in range(int(end) - int(start) + 1))
    if len(set(result)) != len(result):
        raise ValueError("an address is listed twice")
    return tuple(result)


def _split(name: str, total: int, per_group: int | None) -> tuple[tuple[str, int], ...]:
    if per_group is None:
        return ((name, total),)
    full, remainder = divmod(total, per_group)
    sizes = [per_group] * full + ([remainder] if remainder else [])
    width = max(2, len(str(len(sizes))))
    return tuple((f"{name}-{index:0{width}d}", size) for index, size in enumerate(sizes, start=1))


def _duplicate_names(settings: Settings) -> Iterator[Issue]:
    seen: dict[str, str] = {}
    for index, contract in enumerate(settings.contracts):
        path = f"contracts[{index}].name"
        if contract.name in seen:
            yield path, f"{contract.name!r} is also {seen[contract.name]}; rename one of them"
        seen.setdefault(contract.name, path)
    # Group names share one namespace across ASICs and GPUs, after containers are expanded.
    entries = [(f"asic_groups[{i}].name", g.split()) for i, g in enumerate(settings.asic_groups)]
    entries += [(f"gpu_groups[{i}].name", g.split()) for i, g in enumerate(settings.gpu_groups)]
    seen = {}
    for path, groups in entries:
        repeated = [name for name, _ in groups if name in seen]
        if repeated:
            yield path, f"group {repeated[0]!r} is also named by {seen[repeated[0]]}; rename one"
        seen.update((name, path) for name, _ in groups if name not in seen)


def _contract_references(settings: Settings) -> Iterator[Issue]:
    names = [contract.name for contract in settings.contracts]
    known = f"use one of: {', '.join(names)}" if names else "none is defined yet"
    for index, group in enumerate(settings.gpu_groups):
        if group.contract not in names:
            yield (
                f"gpu_groups[{index}].contract",
                f"{group.contract!r} is not a contract; define it under [[contracts]] or {known}",
            )


def _flexible_caps(settings: Settings) -> Iterator[Issue]:
    """A flexible contract is curtailed by capping: each of its groups needs a cap it may use."""
    for c_index, contract in enumerate(settings.contracts):
        if contract.tier != Tier.FLEXIBLE:
            continue
        fraction = contract.min_power_fraction or 0.0
        for g_index, group in enumerate(settings.gpu_groups):
            if group.contract != contract.name:
                continue
            full = group.cap_levels[0].watts_per_gpu
            below_full = group.cap_levels[1:]
            if not below_full:
                yield (
                    f"gpu_groups[{g_index}].cap_levels",
                    f"only full power is listed, but contract {contract.name!r} is flexible"
                    " (curtailed by capping); add the cap levels below full power",
                )
            elif below_full[0].watts_per_gpu / full < fraction * (1 - _RELATIVE_TOLERANCE):
                highest = below_full[0].watts_per_gpu / full
                yield (
                    f"contracts[{c_index}].min_power_fraction",
                    f"{fraction:g} leaves no cap level of gpu_groups[{g_index}] ({group.name!r})"
                    f" usable: its highest cap below full is {below_full[0].watts_per_gpu:g} W,"
                    f" {highest:.3f} of {full:g} W; lower min_power_fraction to at most"
                    f" {highest:.3f} or add a cap level between",
                )


def _reserves_on_firm_contracts(settings: Settings) -> Iterator[Issue]:
    """A firm contract's GPUs are never dropped for a deployment, so they can carry nothing."""
    firm = {c.name for c in settings.contracts if c.tier == Tier.FIRM}
    for index, group in enumerate(settings.gpu_groups):
        if group.reserve_products and group.contract in firm:
            yield (
                f"gpu_groups[{index}].reserve_products",
                f"contract {group.contract!r} is firm, so its GPUs are never dropped for a"
                " deployment and carry no reserve; remove reserve_products or qualify a group"
                " of a flexible or interruptible contract",
            )


def _ers_overlaps(settings: Settings) -> Iterator[Issue]:
    """One product's ERS periods do not overlap (each `end` is exclusive)."""
    periods = sorted(enumerate(settings.programs.ers), key=lambda item: item[1].start)
    for product in ("ERS-10", "ERS-30"):
        reaching: tuple[int, ErsSettings] | None = None  # the period that ends last so far
        for index, entry in periods:
            if entry.product != product:
                continue
            if reaching is not None and entry.start < reaching[1].end:
                before, earlier = reaching
                yield (
                    f"programs.ers[{index}].start",
                    f"{product} from {entry.start.isoformat()} overlaps programs.ers[{before}]"
                    f" ({earlier.start.isoformat()} up to {earlier.end.isoformat()}); periods"
                    " of one product must not overlap (end is the first day after a period)",
                )
            if reaching is None or entry.end > reaching[1].end:
                reaching = (index, entry)


def _issues(error: ValidationError) -> list[Issue]:
    issues: list[Issue] = []
    for detail in error.errors(include_url=False):
        if detail["type"] == _CROSS_FIELD_ERROR:
            issues.extend(detail.get("ctx", {})["issues"])
        else:
            issues.append((_path(detail["loc"]), _message(detail)))
    return issues


def _path(loc: tuple[int | str, ...]) -> str:
    """("gpu_groups", 0, "contract") -> "gpu_groups[0].contract", as the TOML reads."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(f".{part}" if parts else part)
    return "".join(parts)


def _message(detail: ErrorDetails) -> str:
    kind = detail["type"]
    if kind == "missing":
        return f"required but missing; add it (see {EXAMPLE_FILE})"
    if kind == "extra_forbidden":
        return _unknown_key_message(detail["loc"])
    if kind == "value_error":
        return str(detail.get("ctx", {}).get("error", detail["msg"]))
    value = detail["input"]
    if isinstance(value, dict | list | tuple):
        return detail["msg"]
    return f"{detail['msg']} (got {value!r})"


def _unknown_key_message(loc: tuple[int | str, ...]) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return "not a known setting; remove it or check the spelling"
    known = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"not a known setting; did you mean {close[0]!r}?"
    return f"not a known setting; remove it or use one of: {', '.join(known)}"


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose fields are valid keys at `loc` (list indices are skipped)."""
    model: type[BaseModel] = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        nested = None if field is None else _nested_model(field.annotation)
        if nested is None:
            return None
        model = nested
    return model


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) is None and isinstance(annotation, type):
        return annotation if issubclass(annotation, BaseModel) else None
    for argument in get_args(annotation):
        found = _nested_model(argument)
        if found is not None:
            return found
    return None
