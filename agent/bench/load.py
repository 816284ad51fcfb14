"""The load trial: many meters at a high rate for minutes, and the guard timed throughout.

The agent runs as its own process on the guard bench's synthetic site (`bench.guard.bench_site`,
1,000 miner groups so that every trial has miners left to shed) with `meters` meters configured;
the site's draw is their sum. A publisher of our own sends every meter's reading `rate_hz`
times a second, spread evenly over each period, on one connection at QoS 0 (as a gateway
forwarding Modbus polls would), each stamped with its own time. Once a second or so one
reading carries the site over its cap by 0.1-0.5 of a group's draw, the next reading of that
meter is back to normal, and the time from the over-cap reading leaving this process to the
last shed command for it arriving back is the guard's latency under the load. Which commands
to expect follows from the guard's own rule (agent.guard.shed) on the setpoints this process
has seen; the settle credit (1 s here) keeps the readings between the spike and the shed from
being shed again.

The publisher is a few lines of MQTT 3.1.1 on a raw socket rather than a client library: at
10,000 readings a second a Python MQTT client would take a core of the machine's two for
itself, and the figure would be of the bench. What the agent did with each reading comes from
its own metrics (`gridpilot_inputs_total`, `gridpilot_rejected_inputs_total`); its resident
memory from /proc at the start and end (and its peak).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import struct
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from gridpilot.adapters.broker import LocalBroker, free_port
from gridpilot.adapters.mqtt import NO_DELAY
from gridpilot.agent.bench.agent_process import PREFIX, resident_mb, start_agent
from gridpilot.agent.bench.guard import OVERHEAD, UNITS_PER_GROUP, bench_site, expected_sheds
from gridpilot.agent.guard import shed_order
from gridpilot.agent.settings import load_settings
from gridpilot.agent.site import asic_groups

GROUPS = 1_000
SETTLE_S = 1.0  # the guard's settle credit on the bench site
TICKS_PER_PERIOD = 10  # each period's readings go out in this many even slices
FEED_EVERY_S = 30.0  # price and hashprice again, so that neither goes stale in a long run


@dataclass(frozen=True, slots=True)
class LoadBench:
    meters: int
    rate_hz: float
    seconds: float
    readings_sent: int
    sent_per_s: float
    readings_taken: int  # what the agent counted as taken, meters only
    rejected: dict[str, int] = field(default_factory=dict)  # by reason, meters only
    trials: int = 0
    guard_p50_ms: float = 0.0
    guard_p99_ms: float = 0.0
    guard_max_ms: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_peak_mb: float = 0.0
    behind_s: float = 0.0  # after the last reading, until the agent had counted every one
    # Where the agent's metrics endpoint listens, by default (the kernel's own table).
    metrics_bound_to: list[str] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps(asdict(self))

    def unaccounted(self) -> int:
        """Readings sent that the agent neither took nor rejected under a counted reason."""
        return self.readings_sent - self.readings_taken - sum(self.rejected.values())

    def as_text(self) -> str:
        rejected = ", ".join(f"{k} {v:,}" for k, v in sorted(self.rejected.items())) or "none"
        return (
            f"{self.meters:,} meters at {self.rate_hz:g} Hz for {self.seconds:g} s:"
            f" {self.readings_sent:,} readings sent ({self.sent_per_s:,.0f}/s),"
            f" {self.readings_taken:,} taken, rejected {rejected}, unaccounted"
            f" {self.unaccounted():,} (counted {self.behind_s:.1f} s after the last); guard"
            f" over {self.trials} sheds p50 {self.guard_p50_ms:.1f} ms, p99"
            f" {self.guard_p99_ms:.1f} ms, max {self.guard_max_ms:.1f} ms;"
            f" RSS {self.rss_start_mb:.1f} -> {self.rss_end_mb:.1f} MB"
            f" (peak {self.rss_peak_mb:.1f}); metrics listening on"
            f" {', '.join(self.metrics_bound_to) or 'nothing'}"
        )


def meter_names(count: int) -> list[str]:
    return [f"meter{i:04d}" for i in range(count)]


def load_site(meters: int, broker: LocalBroker, folder: Path, metrics_port: int) -> Path:
    """The guard bench's site with `meters` meters, a metrics port and a short settle."""
    config = bench_site(GROUPS, broker.port, broker.host, folder)
    names = ", ".join(f'"{name}"' for name in meter_names(meters))
    text = config.read_text().replace(
        "metrics_port = 0\n", f"metrics_port = {metrics_port}\nmeters = [{names}]\n"
    )
    text = text.replace("guard_settle_s = 0\n", f"guard_settle_s = {SETTLE_S}\n")
    config.write_text(text)
    return config


def load_trial(
    *, meters: int = 1_000, rate_hz: float = 10.0, seconds: float = 600.0, seed: int = 1
) -> LoadBench:
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gridpilot-load-")))
        broker = stack.enter_context(LocalBroker())
        metrics_port = free_port()
        config = load_site(meters, broker, folder, metrics_port)
        agent = start_agent(config, folder)
        try:
            run = _LoadRun(config, broker, meters=meters, rate_hz=rate_hz, seed=seed, pid=agent.pid)
            asyncio.run(run.run(seconds))
            if agent.poll() is not None:
                raise RuntimeError(f"the agent exited ({agent.returncode}) under the load")
            rss_end, rss_peak = resident_mb(agent.pid)
            bound_to = listening_addresses(metrics_port)
            taken, rejected, behind_s = _caught_up(metrics_port, run.publisher.sent)
        finally:
            agent.terminate()
            agent.wait(timeout=30)
    latencies = np.asarray(run.latencies) * 1e3
    return LoadBench(
        meters=meters,
        rate_hz=rate_hz,
        seconds=seconds,
        readings_sent=run.publisher.sent,
        sent_per_s=run.load_sent / max(run.publisher.elapsed_s, 1e-9),
        readings_taken=taken,
        rejected=rejected,
        trials=len(run.latencies),
        guard_p50_ms=float(np.percentile(latencies, 50)) if latencies.size else float("nan"),
        guard_p99_ms=float(np.percentile(latencies, 99)) if latencies.size else float("nan"),
        guard_max_ms=float(latencies.max()) if latencies.size else float("nan"),
        rss_start_mb=run.rss_start_mb,
        rss_end_mb=rss_end,
        rss_peak_mb=rss_peak,
        behind_s=behind_s,
        metrics_bound_to=bound_to,
    )


class MeterPublisher:
    """MQTT 3.1.1 on a raw socket: CONNECT with a clean session, then PUBLISH at QoS 0."""

    def __init__(self, host: str, port: int, names: list[str]) -> None:
        self.host = host
        self.port = port
        # Each meter's fixed topic, encoded once.
        self._topics = [_utf8(f"{PREFIX}/meter/{name}") for name in names]
        self._writer: asyncio.StreamWriter | None = None
        self.sent = 0
        self.elapsed_s = 0.0

    async def connect(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        # Protocol "MQTT" level 4, clean session, no keepalive (this client never goes quiet).
        variable = _utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0)
        writer.write(_packet(0x10, variable + _utf8("gridpilot-load-meters")))
        await writer.drain()
        connack = await asyncio.wait_for(reader.readexactly(4), 10)
        if connack[0] != 0x20 or connack[3] != 0:
            raise RuntimeError(f"the broker refused the meters' connection: {connack!r}")
        self._writer = writer

    def publish(self, meter: int, payload: bytes) -> None:
        assert self._writer is not None
        self._writer.write(_packet(0x30, self._topics[meter] + payload))
        self.sent += 1

    async def drain(self) -> None:
        assert self._writer is not None
        await self._writer.drain()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.write(b"\xe0\x00")  # DISCONNECT
            self._writer.close()
            await self._writer.wait_closed()


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _packet(kind: int, body: bytes) -> bytes:
    length = len(body)
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([kind]) + bytes(encoded) + body


class _LoadRun:
    def __init__(
        self, config: Path, broker: LocalBroker, *, meters: int, rate_hz: float, seed: int, pid: int
    ) -> None:
        settings = load_settings(config)
        self.groups = asic_groups(settings)
        self.order = shed_order(self.groups)
        self.index = {g.name: i for i, g in enumerate(self.groups)}
        self.cap = settings.site.interconnect_watts - settings.site.margin_watts
        self.broker = broker
        self.meters = meters
        self.rate_hz = rate_hz
        self.rng = random.Random(seed)  # noqa: S311  # trial sizes, not secrets
        self.pid = pid
        self.publisher = MeterPublisher(broker.host, broker.port, meter_names(meters))
        self.units = np.zeros(len(self.groups), dtype=np.int64)
        self.latencies: list[float] = []
        self.rss_start_mb = 0.0
        # Readings under the cap: 2 % below it in all, shared evenly; a value its text
        # carries exactly, so that the agent's sum is the bench's.
        self.baseline = float(f"{0.98 * self.cap / meters:.1f}")
        self._waiting: dict[str, int] = {}
        self._spike_sent = 0.0
        self._last_arrival = 0.0
        self._changed = asyncio.Event()
        self.online = False
        self.load_sent = 0  # readings sent in the load itself, after the first round

    async def run(self, seconds: float) -> None:
        async with aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            identifier="gridpilot-load-watcher",
            socket_options=(NO_DELAY,),
        ) as client:
            await client.subscribe(f"{PREFIX}/cmd/asic/+", qos=1)
            await client.subscribe(f"{PREFIX}/status", qos=1)
            receiver = asyncio.create_task(self._receive(client))
            try:
                await self.publisher.connect()
                await self._wake_all(client)
                await self._load(client, seconds)
            finally:
                receiver.cancel()
                await asyncio.gather(receiver, return_exceptions=True)
                await self.publisher.close()

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            stamp = time.perf_counter()
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if topic.endswith("/status"):
                self.online = payload == b"online"
            if "/cmd/asic/" not in topic or not payload:
                self._changed.set()
                continue
            name = topic.rsplit("/", 1)[1]
            units = int(json.loads(payload)["units_on"])
            self.units[self.index[name]] = units
            if self._waiting.get(name) == units:
                del self._waiting[name]
                self._last_arrival = stamp
            self._changed.set()

    async def _wake_all(self, client: aiomqtt.Client) -> None:
        """Once the agent is online, its first plan wakes every miner (cheap power, a good
        hashprice)."""
        async with asyncio.timeout(60):
            while not self.online:
                self._changed.clear()
                await self._changed.wait()
        await self._feed(client)
        for meter in range(self.meters):
            self.publisher.publish(meter, b"0")
        await self.publisher.drain()
        async with asyncio.timeout(300):
            while int(self.units.sum()) < UNITS_PER_GROUP * len(self.groups):
                self._changed.clear()
                await self._changed.wait()

    async def _feed(self, client: aiomqtt.Client) -> None:
        await client.publish(f"{PREFIX}/hashprice", b'{"usd_per_th_day": 0.06}', qos=1)
        await client.publish(f"{PREFIX}/price/realtime", b'{"usd_per_mwh": 10}', qos=1)

    async def _load(self, client: aiomqtt.Client, seconds: float) -> None:
        per_tick = self.meters / TICKS_PER_PERIOD
        tick_s = 1.0 / (self.rate_hz * TICKS_PER_PERIOD)
        ticks = round(seconds / tick_s)
        # The first 10 s (less in a short run) are a warm-up: no trials, RSS read after them.
        warmup_s = min(10.0, seconds / 5)
        warmup = round(warmup_s / tick_s)
        sent_before = self.publisher.sent
        started = time.perf_counter()
        next_trial = started + warmup_s + 1.0
        next_feed = started + FEED_EVERY_S
        spiking: int | None = None  # the meter that read over the cap, until its next reading
        for tick in range(ticks):
            due = started + tick * tick_s
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
            normal = f'{{"ts": "{stamp}", "watts": {self.baseline!r}}}'.encode()
            first = round((tick % TICKS_PER_PERIOD) * per_tick)
            last = round((tick % TICKS_PER_PERIOD + 1) * per_tick)
            spike = None
            if spiking is None and not self._waiting and time.perf_counter() >= next_trial:
                spike = self._trial(first, stamp)
            for meter in range(first, last):
                if meter == spiking:
                    spiking = None  # back to normal with this reading
                if spike is not None and meter == spike[0]:
                    self.publisher.publish(meter, spike[1])
                else:
                    self.publisher.publish(meter, normal)
            await self.publisher.drain()
            if spike is not None:
                self._spike_sent = time.perf_counter()
                spiking = spike[0]
                next_trial = self._spike_sent + SETTLE_S + self.rng.uniform(0.1, 0.4)
            elif self._spike_sent and not self._waiting and self._last_arrival:
                self.latencies.append(self._last_arrival - self._spike_sent)
                self._spike_sent = self._last_arrival = 0.0
            if tick == warmup:
                self.rss_start_mb = resident_mb(self.pid)[0]
            if time.perf_counter() >= next_feed:
                await self._feed(client)
                next_feed += FEED_EVERY_S
        self.publisher.elapsed_s = time.perf_counter() - started
        self.load_sent = self.publisher.sent - sent_before

    def _trial(self, meter: int, stamp: str) -> tuple[int, bytes] | None:
        """The over-cap reading for `meter`, with the commands it must bring; None when every
        miner is asleep already."""
        unit_watts = self.groups[self.order[0]].watts_per_unit * OVERHEAD
        reading = self.cap + self.rng.uniform(0.1, 0.5) * UNITS_PER_GROUP * unit_watts
        waiting = expected_sheds(
            self.groups, self.units, reading=reading, cap=self.cap, order=self.order
        )
        if not waiting:
            return None
        self._waiting = waiting
        # The others read `baseline` each: this one makes the sum `reading`.
        watts = reading - self.baseline * (self.meters - 1)
        return meter, f'{{"ts": "{stamp}", "watts": {watts!r}}}'.encode()


def listening_addresses(port: int) -> list[str]:
    """The IPv4 and IPv6 addresses with a TCP socket listening on `port`, from the kernel's
    tables (/proc/net/tcp and tcp6): what the agent bound, not what it was told to bind."""
    found: list[str] = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] == "0A" and int(hex_port, 16) == port and len(address) == width:
                found.append(_address(address))
    return sorted(found)


def _address(hex_address: str) -> str:
    """A /proc/net address: 32-bit words, each in the host's (little-endian) byte order."""
    words = [bytes.fromhex(hex_address[i : i + 8])[::-1] for i in range(0, len(hex_address), 8)]
    return str(ipaddress.ip_address(b"".join(words)))


def _caught_up(port: int, sent: int, timeout_s: float = 60.0) -> tuple[int, dict[str, int], float]:
    """The agent's counts once it has counted all `sent` readings (or `timeout_s` has passed),
    and how long that took: the backlog it had at the end."""
    started = time.perf_counter()
    while True:
        taken, rejected = _meter_counts(port)
        waited = time.perf_counter() - started
        if taken + sum(rejected.values()) >= sent or waited >= timeout_s:
            return taken, rejected, waited
        time.sleep(0.1)


def _meter_counts(port: int) -> tuple[int, dict[str, int]]:
    """From the agent's metrics: meter readings taken, and rejected by reason."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    taken = 0
    rejected: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("topic") != "meter":
                continue
            if sample.name == "gridpilot_inputs_total":
                taken = int(sample.value)
            elif sample.name == "gridpilot_rejected_inputs_total":
                rejected[sample.labels["reason"]] = int(sample.value)
    return taken, rejected
