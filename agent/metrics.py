"""Prometheus metrics: one object over an injected registry, served by a small asyncio endpoint.

Base units in names (`_watts`, `_seconds`, `_total`); labels are bounded (groups, contracts,
topics and reasons come from the site file and fixed lists, never from a payload).
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

MODES = ("normal", "safe", "shadow")
SIGNALS = ("meter", "price", "hashprice", "forecast")


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.site_power = Gauge(
            "gridpilot_site_power_watts", "Site draw at the meter", registry=registry
        )
        self.site_limit = Gauge(
            "gridpilot_site_limit_watts",
            "The cap the guard holds the site to: limit less margin, or a grid event's cap",
            registry=registry,
        )
        self.price = Gauge(
            "gridpilot_price_usd_per_mwh", "Latest real-time energy price", registry=registry
        )
        self.hashprice = Gauge(
            "gridpilot_hashprice_usd_per_th_day", "Latest hashprice", registry=registry
        )
        self.signal_age = Gauge(
            "gridpilot_signal_age_seconds",
            "Seconds since each input last arrived",
            ["signal"],
            registry=registry,
        )
        self.mode = Gauge(
            "gridpilot_mode", "1 for the mode the agent is in", ["mode"], registry=registry
        )
        self.asic_units_on = Gauge(
            "gridpilot_asic_units_on", "Miners commanded awake", ["group"], registry=registry
        )
        self.gpu_curtailed_nodes = Gauge(
            "gridpilot_gpu_curtailed_nodes",
            "GPU nodes commanded capped or paused",
            ["group"],
            registry=registry,
        )
        self.allowance_used = Gauge(
            "gridpilot_allowance_used_node_hours",
            "Curtailment allowance used this billing month",
            ["contract"],
            registry=registry,
        )
        self.rejected = Counter(
            "gridpilot_rejected_inputs_total",
            "Input payloads rejected, by topic kind and reason",
            ["topic", "reason"],
            registry=registry,
        )
        self.guard_actions = Counter(
            "gridpilot_guard_actions_total", "Guard sheds", registry=registry
        )
        self.guard_shed_units = Counter(
            "gridpilot_guard_shed_units_total",
            "Miners put to sleep by the guard",
            registry=registry,
        )
        self.plans = Counter(
            "gridpilot_plans_total", "Plans made, by status", ["status"], registry=registry
        )
        self.plan_seconds = Histogram(
            "gridpilot_plan_seconds",
            "Time to build and solve one plan",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=registry,
        )
        self.commands = Counter(
            "gridpilot_commands_total",
            "Commands sent, by kind and result",
            ["kind", "result"],
            registry=registry,
        )
        self.mqtt_connected = Gauge(
            "gridpilot_mqtt_connected", "1 while connected to the broker", registry=registry
        )
        self.mqtt_connects = Counter(
            "gridpilot_mqtt_connects_total", "Connections made to the broker", registry=registry
        )
        for mode in MODES:
            self.mode.labels(mode).set(0)

    def set_mode(self, mode: str) -> None:
        for known in MODES:
            self.mode.labels(known).set(1 if known == mode else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


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
