"""Prometheus metrics: one object over an injected registry, served by a small asyncio endpoint.

Base units in names (`_watts`, `_seconds`, `_total`); labels are bounded (groups, contracts,
topics and reasons come from the site file and fixed lists, never from a payload).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

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
    "other",
)


def curtailment_reason(reason: str) -> str:
    """The bounded class of a command's free-text reason."""
    text = reason.lower()
    for prefix, kind in (
        ("guard", "guard"),
        ("safe mode", "safe_mode"),
        ("override", "override"),
        ("grid event", "grid_event"),
        ("site limit", "site_limit"),
        ("price", "price"),
    ):
        if text.startswith(prefix):
            return kind
    return "other"


class Metrics:
    """Every metric the agent exports, registered on `registry` (a fresh one per agent, so
    tests and embedders never share global state)."""

    def __init__(self, registry: CollectorRegistry, *, version: str = "") -> None:
        self.registry = registry

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=registry)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        # The site and the market.
        self.site_power = gauge("gridpilot_site_power_watts", "Site draw at the meter")
        self.site_limit = gauge(
            "gridpilot_site_limit_watts",
            "The cap the guard holds the site to now: limit less margin, or a grid event's cap",
        )
        self.interconnect = gauge(
            "gridpilot_site_interconnect_watts", "The grid connection's limit at the meter"
        )
        self.load_power = gauge(
            "gridpilot_load_power_watts",
            "Draw at the meter of each load class as commanded, at nominal power",
            ("load",),
        )
        self.group_power = gauge(
            "gridpilot_group_power_watts",
            "Draw at the meter of each group as commanded, at nominal power",
            ("group", "load"),
        )
        self.price = gauge("gridpilot_price_usd_per_mwh", "Latest real-time energy price")
        self.forecast_price = gauge(
            "gridpilot_forecast_price_usd_per_mwh",
            "The price the current plan expects for the interval now",
        )
        self.hashprice = gauge("gridpilot_hashprice_usd_per_th_day", "Latest hashprice")
        self.breakeven = gauge(
            "gridpilot_breakeven_usd_per_mwh",
            "Power price above which each miner model loses money, at the meter",
            ("model",),
        )
        self.signal_age = gauge(
            "gridpilot_signal_age_seconds", "Seconds since each input last arrived", ("signal",)
        )
        self.signal_stale_after = gauge(
            "gridpilot_signal_stale_after_seconds",
            "Age past which each input counts as stale (safe mode for meter, price, hashprice)",
            ("signal",),
        )
        self.mode = gauge("gridpilot_mode", "1 for the mode the agent is in", ("mode",))
        # Setpoints.
        self.asic_units_on = gauge("gridpilot_asic_units_on", "Miners commanded awake", ("group",))
        self.gpu_curtailed_nodes = gauge(
            "gridpilot_gpu_curtailed_nodes", "GPU nodes commanded capped or paused", ("group",)
        )
        self.gpu_power_cap = gauge(
            "gridpilot_gpu_power_cap_watts", "Per-GPU power cap on the capped nodes", ("group",)
        )
        self.curtailed_power = gauge(
            "gridpilot_curtailed_power_watts",
            "Nominal draw at the meter held off, by load class and reason",
            ("load", "reason"),
        )
        # Contracts.
        self.allowance_total = gauge(
            "gridpilot_allowance_node_seconds",
            "Curtailment allowance per billing month, in node-seconds",
            ("contract",),
        )
        self.allowance_used = gauge(
            "gridpilot_allowance_used_node_seconds",
            "Curtailment allowance used this billing month, in node-seconds",
            ("contract",),
        )
        self.allowance_left = gauge(
            "gridpilot_allowance_left_node_seconds",
            "Curtailment allowance left this billing month, in node-seconds",
            ("contract",),
        )
        # What the agent did.
        self.rejected = counter(
            "gridpilot_rejected_inputs",
            "Input payloads rejected, by topic kind and reason",
            ("topic", "reason"),
        )
        self.guard_actions = counter("gridpilot_guard_actions", "Guard sheds")
        self.guard_shed_units = counter(
            "gridpilot_guard_shed_units", "Miners put to sleep by the guard"
        )
        self.plans = counter("gridpilot_plans", "Plans solved, by status", ("status",))
        self.plan_seconds = Histogram(
            "gridpilot_plan_seconds",
            "Time to build and solve one plan",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=registry,
        )
        self.last_plan = gauge(
            "gridpilot_last_plan_timestamp_seconds", "When the last planning cycle completed"
        )
        self.commands = counter(
            "gridpilot_commands", "Commands sent, by load class and result", ("load", "result")
        )
        self.command_failures = counter(
            "gridpilot_command_failures",
            "Commands a device or gateway did not carry out, by load class and group",
            ("load", "group"),
        )
        self.device_faults = counter(
            "gridpilot_device_faults",
            "Devices that did not do as commanded, by group and kind (no_answer, refused,"
            " not_asleep: answered but kept drawing power)",
            ("group", "fault"),
        )
        self.device_up = gauge(
            "gridpilot_device_up",
            "1 while the agent can drive each group's devices; 0 while the device library of a"
            " group it drives itself (pyasic, NVML) cannot start (always 1 for mqtt, command)",
            ("group", "actuator"),
        )
        # Money, as the agent sees it from its meters, prices and setpoints.
        self.energy = counter("gridpilot_energy_joules", "Energy drawn at the site meter")
        self.energy_cost = counter("gridpilot_energy_cost_usd", "Energy bought at real-time price")
        self.energy_credit = counter(
            "gridpilot_energy_credit_usd", "Paid for drawing energy at negative real-time prices"
        )
        self.hash_revenue = counter(
            "gridpilot_hash_revenue_usd", "Hashing revenue after pool fee, at the hashprice"
        )
        self.ai_revenue = counter("gridpilot_ai_revenue_usd", "AI contract revenue billed")
        # The broker.
        self.mqtt_connected = gauge("gridpilot_mqtt_connected", "1 while connected to the broker")
        self.mqtt_reconnects = counter(
            "gridpilot_mqtt_reconnects", "Connections made again after losing the broker"
        )
        self.build = Info("gridpilot_build", "The running agent's version", registry=registry)
        self.build.info({"version": version or _version(), "python": platform.python_version()})
        for mode in MODES:
            self.mode.labels(mode).set(0)
        for kind in LOAD_CLASSES:
            self.load_power.labels(kind).set(0)
            for reason in CURTAILMENT_REASONS:
                self.curtailed_power.labels(kind, reason).set(0)
        for signal in SIGNALS:
            self.signal_age.labels(signal).set(0)

    def set_mode(self, mode: str) -> None:
        for known in MODES:
            self.mode.labels(known).set(1 if known == mode else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _version() -> str:
    try:
        return importlib.metadata.version("gridpilot")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


async def serve_metrics(metrics: Metrics, host: str, port: int, bound: asyncio.Future[int]) -> None:
    """Answer `GET /metrics` on `host:port` until cancelled; `bound` gets the actual port."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5.0):
                request = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # headers are of no interest
            parts = request.split()
            if len(parts) >= 2 and parts[0] == b"GET" and parts[1].split(b"?")[0] == b"/metrics":
                body, status, kind = metrics.exposition(), b"200 OK", CONTENT_TYPE_LATEST
            else:
                body, status, kind = b"not found; try /metrics\n", b"404 Not Found", "text/plain"
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: "
                + kind.encode()
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # a scraper that hangs up or stalls is its own problem
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(answer, host, port)
    bound.set_result(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()
