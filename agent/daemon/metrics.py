"""Prometheus metrics: one object over an injected registry, declared as a table, served by
prometheus_client's own HTTP server.

Base units in names (`_watts`, `_seconds`, `_total`); labels are bounded (groups, contracts,
topics and reasons come from the site file and fixed lists, never from a payload).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import platform
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    start_http_server,
)
from prometheus_client.metrics import MetricWrapperBase

MODES = ("normal", "safe", "shadow")
SIGNALS = ("meter", "price", "hashprice", "forecast")
LOAD_CLASSES = ("asic", "gpu")
# Why load is curtailed, in a fixed set of classes: the reasons themselves are free text.
CURTAILMENT_REASONS = (
    "price",
    "site_limit",
    "grid_event",
    "guard",
    "safe_mode",
    "override",
    "reserve",
    "other",
)
# Why a reserve deployment failed: the MW the commands dropped fell short, the commands went
# out after the product's response time, or the site's meter did not show the drop in time.
RESERVE_FAILURES = ("short", "late", "meter")
# What the agent failed to write to its ledger (a full disk, a read-only file): the command
# records queued by the guard and the commands part, a plan (not carried out), the
# allowance's accounting (charged at the next that succeeds), the daily prune, a GPU
# interruption's start or end.
LEDGER_ACTIONS = ("write", "plan", "account", "prune", "interruption")


def curtailment_reason(reason: str) -> str:
    """The bounded class of a command's free-text reason."""
    text = reason.lower()
    for prefix, kind in (
        ("guard", "guard"),
        ("safe mode", "safe_mode"),
        ("override", "override"),
        ("reserve", "reserve"),
        ("grid event", "grid_event"),
        ("site limit", "site_limit"),
        ("price", "price"),
    ):
        if text.startswith(prefix):
            return kind
    return "other"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: the `Metrics` attribute it is kept in, its kind, exported name, help text,
    label names and (histograms only) buckets."""

    attribute: str
    kind: type[MetricWrapperBase]
    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    def build(self, registry: CollectorRegistry) -> MetricWrapperBase:
        if self.kind is Histogram:
            return Histogram(
                self.name, self.help, self.labels, registry=registry, buckets=self.buckets
            )
        return self.kind(self.name, self.help, self.labels, registry=registry)


SPECS = (
    # The site and the market.
    MetricSpec("site_power", Gauge, "gridpilot_site_power_watts", "Site draw at the meter"),
    MetricSpec(
        "site_limit",
        Gauge,
        "gridpilot_site_limit_watts",
        "The cap the guard holds the site to now: limit less margin, or a grid event's cap",
    ),
    MetricSpec(
        "interconnect",
        Gauge,
        "gridpilot_site_interconnect_watts",
        "The grid connection's limit at the meter",
    ),
    MetricSpec(
        "load_power",
        Gauge,
        "gridpilot_load_power_watts",
        "Draw at the meter of each load class as commanded, at nominal power",
        ("load",),
    ),
    MetricSpec(
        "group_power",
        Gauge,
        "gridpilot_group_power_watts",
        "Draw at the meter of each group as commanded, at nominal power",
        ("group", "load"),
    ),
    MetricSpec("price", Gauge, "gridpilot_price_usd_per_mwh", "Latest real-time energy price"),
    MetricSpec(
        "forecast_price",
        Gauge,
        "gridpilot_forecast_price_usd_per_mwh",
        "The price the current plan expects for the interval now",
    ),
    MetricSpec("hashprice", Gauge, "gridpilot_hashprice_usd_per_th_day", "Latest hashprice"),
    MetricSpec(
        "breakeven",
        Gauge,
        "gridpilot_breakeven_usd_per_mwh",
        "Power price above which each miner model loses money, at the meter",
        ("model",),
    ),
    MetricSpec(
        "signal_age",
        Gauge,
        "gridpilot_signal_age_seconds",
        "Seconds since each input last arrived",
        ("signal",),
    ),
    MetricSpec(
        "signal_stale_after",
        Gauge,
        "gridpilot_signal_stale_after_seconds",
        "Age past which each input counts as stale (safe mode for meter, price, hashprice)",
        ("signal",),
    ),
    MetricSpec("mode", Gauge, "gridpilot_mode", "1 for the mode the agent is in", ("mode",)),
    # Setpoints.
    MetricSpec(
        "asic_units_on", Gauge, "gridpilot_asic_units_on", "Miners commanded awake", ("group",)
    ),
    MetricSpec(
        "gpu_curtailed_nodes",
        Gauge,
        "gridpilot_gpu_curtailed_nodes",
        "GPU nodes commanded capped or paused",
        ("group",),
    ),
    MetricSpec(
        "gpu_power_cap",
        Gauge,
        "gridpilot_gpu_power_cap_watts",
        "Per-GPU power cap on the capped nodes",
        ("group",),
    ),
    MetricSpec(
        "curtailed_power",
        Gauge,
        "gridpilot_curtailed_power_watts",
        "Nominal draw at the meter held off, by load class and reason",
        ("load", "reason"),
    ),
    # Contracts.
    MetricSpec(
        "allowance_total",
        Gauge,
        "gridpilot_allowance_node_seconds",
        "Curtailment allowance per billing month, in node-seconds",
        ("contract",),
    ),
    MetricSpec(
        "allowance_used",
        Gauge,
        "gridpilot_allowance_used_node_seconds",
        "Curtailment allowance used this billing month, in node-seconds",
        ("contract",),
    ),
    MetricSpec(
        "allowance_left",
        Gauge,
        "gridpilot_allowance_left_node_seconds",
        "Curtailment allowance left this billing month, in node-seconds",
        ("contract",),
    ),
    # What the agent did.
    MetricSpec(
        "inputs",
        Counter,
        "gridpilot_inputs",
        "Input payloads taken, by topic kind",
        ("topic",),
    ),
    MetricSpec(
        "rejected",
        Counter,
        "gridpilot_rejected_inputs",
        "Input payloads rejected, by topic kind and reason",
        ("topic", "reason"),
    ),
    MetricSpec(
        "ledger_failures",
        Counter,
        "gridpilot_ledger_failures",
        "Ledger writes that failed, by what was being written",
        ("action",),
    ),
    MetricSpec("guard_actions", Counter, "gridpilot_guard_actions", "Guard sheds"),
    MetricSpec(
        "guard_shed_units",
        Counter,
        "gridpilot_guard_shed_units",
        "Miners put to sleep by the guard",
    ),
    MetricSpec("plans", Counter, "gridpilot_plans", "Plans solved, by status", ("status",)),
    MetricSpec(
        "plan_seconds",
        Histogram,
        "gridpilot_plan_seconds",
        "Time to build and solve one plan",
        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
    ),
    MetricSpec(
        "last_plan",
        Gauge,
        "gridpilot_last_plan_timestamp_seconds",
        "When the last planning cycle completed",
    ),
    MetricSpec(
        "commands",
        Counter,
        "gridpilot_commands",
        "Commands sent, by load class and result",
        ("load", "result"),
    ),
    MetricSpec(
        "command_failures",
        Counter,
        "gridpilot_command_failures",
        "Commands a device or gateway did not carry out, by load class and group",
        ("load", "group"),
    ),
    MetricSpec(
        "device_faults",
        Counter,
        "gridpilot_device_faults",
        "Devices that did not do as commanded, by group and kind (no_answer, refused,"
        " not_asleep: answered but kept drawing power)",
        ("group", "fault"),
    ),
    MetricSpec(
        "device_up",
        Gauge,
        "gridpilot_device_up",
        "1 while the agent can drive each group's devices; 0 while the device library of a"
        " group it drives itself (pyasic, NVML) cannot start (always 1 for mqtt, command)",
        ("group", "actuator"),
    ),
    # Money, as the agent sees it from its meters, prices and setpoints.
    MetricSpec("energy", Counter, "gridpilot_energy_joules", "Energy drawn at the site meter"),
    MetricSpec(
        "energy_cost", Counter, "gridpilot_energy_cost_usd", "Energy bought at real-time price"
    ),
    MetricSpec(
        "energy_credit",
        Counter,
        "gridpilot_energy_credit_usd",
        "Paid for drawing energy at negative real-time prices",
    ),
    MetricSpec(
        "hash_revenue",
        Counter,
        "gridpilot_hash_revenue_usd",
        "Hashing revenue after pool fee, at the hashprice",
    ),
    MetricSpec("ai_revenue", Counter, "gridpilot_ai_revenue_usd", "AI contract revenue billed"),
    # The grid programs (labels: the reserve products the site is qualified for).
    MetricSpec(
        "reserve_obligation",
        Gauge,
        "gridpilot_reserve_obligation_watts",
        "Reserve awarded for the hour now, per product: what the site must hold ready to drop",
        ("product",),
    ),
    MetricSpec(
        "reserve_available",
        Gauge,
        "gridpilot_reserve_available_watts",
        "Draw of the awake miners qualified for each product, at the meter: what a deployment"
        " could drop now (a miner qualified for two products counts in both)",
        ("product",),
    ),
    MetricSpec(
        "reserve_deployed",
        Gauge,
        "gridpilot_reserve_deployed_watts",
        "Reserve deployed now and not yet recalled, per product",
        ("product",),
    ),
    MetricSpec(
        "reserve_headroom",
        Gauge,
        "gridpilot_reserve_headroom_watts",
        "Available plus deployed less the obligation, per product: below 0 the award is not"
        " covered",
        ("product",),
    ),
    MetricSpec(
        "reserve_deployments",
        Counter,
        "gridpilot_reserve_deployments",
        "Reserve deployments carried out, per product",
        ("product",),
    ),
    MetricSpec(
        "reserve_failures",
        Counter,
        "gridpilot_reserve_failures",
        "Deployments not met within the product's response time, per product and reason"
        " (short, late, meter)",
        ("product", "reason"),
    ),
    MetricSpec(
        "cp_chance",
        Gauge,
        "gridpilot_cp_chance",
        "Chance that the interval now is its month's coincident peak (4CP), with any alert",
    ),
    MetricSpec(
        "transmission_charge",
        Gauge,
        "gridpilot_transmission_charge_usd_per_mwh",
        "Expected 4CP transmission charge of a MWh drawn now",
    ),
    MetricSpec(
        "system_load",
        Gauge,
        "gridpilot_system_load_watts",
        "ERCOT's system load, the mean of the latest hour heard",
    ),
    MetricSpec(
        "grid_frequency",
        Gauge,
        "gridpilot_grid_frequency_hertz",
        "The grid's frequency at the site, as last read",
    ),
    # The broker.
    MetricSpec(
        "mqtt_connected", Gauge, "gridpilot_mqtt_connected", "1 while connected to the broker"
    ),
    MetricSpec(
        "mqtt_reconnects",
        Counter,
        "gridpilot_mqtt_reconnects",
        "Connections made again after losing the broker",
    ),
    MetricSpec("build", Info, "gridpilot_build", "The running agent's version"),
)


class Metrics:
    """Every metric the agent exports, registered on `registry` (a fresh one per agent, so
    tests and embedders never share global state). The attributes below are declared for
    their callers' types and built from `SPECS`, one row each (a test holds the two to each
    other)."""

    site_power: Gauge
    site_limit: Gauge
    interconnect: Gauge
    load_power: Gauge
    group_power: Gauge
    price: Gauge
    forecast_price: Gauge
    hashprice: Gauge
    breakeven: Gauge
    signal_age: Gauge
    signal_stale_after: Gauge
    mode: Gauge
    asic_units_on: Gauge
    gpu_curtailed_nodes: Gauge
    gpu_power_cap: Gauge
    curtailed_power: Gauge
    allowance_total: Gauge
    allowance_used: Gauge
    allowance_left: Gauge
    inputs: Counter
    rejected: Counter
    ledger_failures: Counter
    guard_actions: Counter
    guard_shed_units: Counter
    plans: Counter
    plan_seconds: Histogram
    last_plan: Gauge
    commands: Counter
    command_failures: Counter
    device_faults: Counter
    device_up: Gauge
    energy: Counter
    energy_cost: Counter
    energy_credit: Counter
    hash_revenue: Counter
    ai_revenue: Counter
    reserve_obligation: Gauge
    reserve_available: Gauge
    reserve_deployed: Gauge
    reserve_headroom: Gauge
    reserve_deployments: Counter
    reserve_failures: Counter
    cp_chance: Gauge
    transmission_charge: Gauge
    system_load: Gauge
    grid_frequency: Gauge
    mqtt_connected: Gauge
    mqtt_reconnects: Counter
    build: Info

    def __init__(self, registry: CollectorRegistry, *, version: str = "") -> None:
        self.registry = registry
        for spec in SPECS:
            setattr(self, spec.attribute, spec.build(registry))
        self.build.info({"version": version or _version(), "python": platform.python_version()})
        # Series with fixed labels exist from the start, at zero.
        for mode in MODES:
            self.mode.labels(mode).set(0)
        for action in LEDGER_ACTIONS:
            self.ledger_failures.labels(action)
        for signal in SIGNALS:
            self.signal_age.labels(signal).set(0)
        for kind in LOAD_CLASSES:
            self.load_power.labels(kind).set(0)
            for reason in CURTAILMENT_REASONS:
                self.curtailed_power.labels(kind, reason).set(0)

    def set_mode(self, mode: str) -> None:
        for known in MODES:
            self.mode.labels(known).set(1 if known == mode else 0)


def _version() -> str:
    try:
        return importlib.metadata.version("gridpilot")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


async def serve_metrics(
    registry: CollectorRegistry, host: str, port: int, bound: asyncio.Future[int]
) -> None:
    """Serve `registry` on `http://host:port/metrics` until cancelled; `bound` gets the port
    it listens on (a free one for port 0).

    The server is prometheus_client's own (`start_http_server`): a WSGI server in a thread of
    its own, one more thread per scrape, so a slow scraper never holds up the event loop; the
    metrics it reads are guarded by the library's locks. Cancelled, it stops serving (its
    loop notices within half a second), closes its socket and its thread ends.
    """
    starting = asyncio.ensure_future(asyncio.to_thread(start_http_server, port, host, registry))
    try:
        server, thread = await asyncio.shield(starting)
    except asyncio.CancelledError:
        # Cancelled while the thread was starting it (a part crashed at once): the server
        # comes up all the same, so wait for it and stop it, or its thread would serve on.
        server, thread = await starting
        await asyncio.to_thread(_stop, server, thread)
        raise
    try:
        bound.set_result(server.server_port)
        await asyncio.Event().wait()  # until cancelled
    finally:
        await asyncio.to_thread(_stop, server, thread)


def _stop(server: WSGIServer, thread: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join()
