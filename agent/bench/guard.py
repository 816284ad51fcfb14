"""`gridpilot bench guard`: how long from a meter reading over the limit to the last shed command.

The agent runs as its own process (`python -m agent run`) on a synthetic site of N miner groups
of 100 units (four models, so the merit order matters), with an interconnect 20 % above
everything awake: its first plan wakes every miner. Then each trial publishes one meter reading
over the cap by a random 0.1 to 0.9 of a group's draw, and times it until the last command the
guard sends for it arrives at this process's subscriber. The bench knows which commands to
expect because it tracks the plant from the commands it receives and applies the guard's own
rule (agent.guard.shed) to it; a trial ends when those exact setpoints have arrived.

For the guard alone to be measured, the agent's re-plan after a shed is switched off (a plan
would wake the miners the trials put to sleep) and so is its settling credit (this plant obeys
at once). Beside it, the broker's own publish-to-receive round trip is measured in the same
run with the same client, so a slow machine shows as slow in both.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import aiomqtt
import numpy as np
import numpy.typing as npt

from gridpilot.adapters.broker import LocalBroker
from gridpilot.adapters.mqtt import NO_DELAY
from gridpilot.agent.guard import shed, shed_order
from gridpilot.agent.settings import load_settings
from gridpilot.agent.site import asic_groups
from gridpilot.optimizer.problem import AsicGroup

IntArray = npt.NDArray[np.int64]

UNITS_PER_GROUP = 100
# (model, watts per unit, TH/s per unit): four efficiencies, a quarter of the groups each.
MODELS = (
    ("Antminer S19j Pro", 3050.0, 100.0),
    ("Antminer S19 XP", 3010.0, 140.0),
    ("Antminer S21", 3500.0, 200.0),
    ("Antminer S21 XP", 3645.0, 270.0),
)
OVERHEAD = 1.05
SITE = "bench"


@dataclass(frozen=True, slots=True)
class GuardBench:
    groups: int
    trials: int
    p50_ms: float
    p99_ms: float
    broker_p50_ms: float
    broker_p99_ms: float

    def as_json(self) -> str:
        return json.dumps(asdict(self))

    def as_text(self) -> str:
        return (
            f"guard: meter reading over the cap -> last shed command received, {self.groups}"
            f" groups, {self.trials} trials\n"
            f"  p50 {self.p50_ms:.2f} ms   p99 {self.p99_ms:.2f} ms\n"
            f"broker publish -> receive round trip, same run\n"
            f"  p50 {self.broker_p50_ms:.2f} ms   p99 {self.broker_p99_ms:.2f} ms"
        )


def bench_site(groups: int, port: int, host: str, folder: Path) -> Path:
    """The synthetic site file; its ledger lives in `folder`."""
    entries = []
    full_watts = 0.0
    for index, (model, watts, ths) in enumerate(MODELS):
        count = (groups * (index + 1)) // len(MODELS) - (groups * index) // len(MODELS)
        if count == 0:
            continue
        full_watts += count * UNITS_PER_GROUP * watts * OVERHEAD
        entries.append(
            f'[[asic_groups]]\nname = "m{index}"\nmodel = "{model}"\n'
            f"count = {count * UNITS_PER_GROUP}\nwatts_per_unit = {watts}\n"
            f"ths_per_unit = {ths}\nunits_per_group = {UNITS_PER_GROUP}\n"
        )
    limit = 1.2 * full_watts
    text = (
        f'[site]\nname = "{SITE}"\nsettlement_point = "HB_WEST"\n'
        f"interconnect_watts = {limit}\nmargin_watts = {0.01 * limit}\npool_fee = 0.02\n"
        f"asic_overhead_factor = {OVERHEAD}\n\n" + "\n".join(entries) + "\n"
        f'[mqtt]\nhost = "{host}"\nport = {port}\nclient_id = "gridpilot-bench"\n\n'
        f'[agent]\nledger_path = "{folder / "ledger.sqlite3"}"\nmetrics_port = 0\n'
        "replan_after_guard = false\nguard_settle_s = 0\nplan_interval_s = 86400\n"
    )
    path = folder / "site.toml"
    path.write_text(text)
    return path


def expected_sheds(
    groups: tuple[AsicGroup, ...], units: IntArray, *, reading: float, cap: float, order: list[int]
) -> dict[str, int]:
    """The commands the agent's guard sends for `reading` with `units` awake: group -> units
    left awake, by the guard's own rule (agent.guard.shed); empty when nothing is left to shed."""
    after = shed(groups, units, reading_watts=reading, cap_watts=cap, order=order)
    return {groups[int(i)].name: int(after[i]) for i in np.flatnonzero(after != units)}


def bench_guard(
    groups: int, trials: int, *, broker: tuple[str, int] | None = None, seed: int = 1
) -> GuardBench:
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gridpilot-bench-")))
        if broker is None:
            local = stack.enter_context(LocalBroker())
            broker = (local.host, local.port)
        config = bench_site(groups, broker[1], broker[0], folder)
        log = stack.enter_context((folder / "agent.log").open("wb"))
        agent = subprocess.Popen(  # noqa: S603  # this interpreter, our own module
            [sys.executable, "-m", "gridpilot", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("GRIDPILOT_")},
        )
        try:
            latencies, round_trips = asyncio.run(_trials(config, broker, trials, seed))
        except BaseException:
            log.flush()
            sys.stderr.write((folder / "agent.log").read_text()[-3000:])
            raise
        finally:
            agent.terminate()
            agent.wait(timeout=30)
    return GuardBench(
        groups=groups,
        trials=trials,
        p50_ms=_percentile(latencies, 50),
        p99_ms=_percentile(latencies, 99),
        broker_p50_ms=_percentile(round_trips, 50),
        broker_p99_ms=_percentile(round_trips, 99),
    )


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


async def _trials(
    config: Path, broker: tuple[str, int], trials: int, seed: int
) -> tuple[list[float], list[float]]:
    async with aiomqtt.Client(
        broker[0], broker[1], identifier="gridpilot-bench-client", socket_options=(NO_DELAY,)
    ) as client:
        bench = _Bench(client, config, seed)
        await bench.start()
        try:
            await bench.wake_all()
            latencies: list[float] = []
            round_trips: list[float] = []
            for _ in range(trials):
                latency = await bench.trial()
                if latency is None:
                    break  # every miner is asleep: nothing left to shed
                latencies.append(latency)
                round_trips.append(await bench.ping())
        finally:
            await bench.close()
    if not latencies:
        raise RuntimeError("no trial completed")
    return latencies, round_trips


class _Bench:
    """The bench's side: a meter, a market feed and a subscriber to the agent's commands."""

    def __init__(self, client: aiomqtt.Client, config: Path, seed: int) -> None:
        settings = load_settings(config)
        self.client = client
        self.groups = asic_groups(settings)
        self.order = shed_order(self.groups)
        self.index = {g.name: i for i, g in enumerate(self.groups)}
        self.cap = settings.site.interconnect_watts - settings.site.margin_watts
        self.rng = random.Random(seed)  # noqa: S311  # trial sizes, not secrets
        self.prefix = f"gridpilot/{SITE}"
        self.units = np.zeros(len(self.groups), dtype=np.int64)
        self.arrivals: asyncio.Queue[tuple[str, dict[str, object], float]] = asyncio.Queue()
        self._receiver: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.client.pending_calls_threshold = 100_000
        for topic in ("cmd/asic/+", "bench/ping", "status"):
            await self.client.subscribe(f"{self.prefix}/{topic}", qos=1)
        self._receiver = asyncio.create_task(self._receive())
        async with asyncio.timeout(60):
            while (await self.arrivals.get())[0] != f"{self.prefix}/status":
                pass

    async def close(self) -> None:
        if self._receiver is not None:
            self._receiver.cancel()
            await asyncio.gather(self._receiver, return_exceptions=True)
        # Leave no retained commands behind on a broker that may not be ours.
        for name in self.index:
            await self.client.publish(f"{self.prefix}/cmd/asic/{name}", b"", qos=1, retain=True)

    async def _receive(self) -> None:
        async for message in self.client.messages:
            stamp = time.perf_counter()
            body = message.payload
            text = body.decode() if isinstance(body, bytes) else str(body or "")
            data = json.loads(text) if text.startswith("{") else {}
            await self.arrivals.put((message.topic.value, data, stamp))

    def _track(self, topic: str, data: dict[str, object]) -> str | None:
        if "/cmd/asic/" not in topic:
            return None
        name = topic.rsplit("/", 1)[1]
        self.units[self.index[name]] = int(str(data["units_on"]))
        return name

    async def wake_all(self) -> None:
        """The first plan: cheap power and a good hashprice wake every miner. Then wait for a
        quiet moment, since a second plan may follow the first."""
        for topic, payload in (
            ("meter/main", b"0"),
            ("hashprice", b'{"usd_per_th_day": 0.06}'),
            ("price/realtime", b'{"usd_per_mwh": 10}'),
        ):
            await self.client.publish(f"{self.prefix}/{topic}", payload, qos=1)
        async with asyncio.timeout(120):
            while int(self.units.sum()) < UNITS_PER_GROUP * len(self.groups):
                topic, data, _ = await self.arrivals.get()
                self._track(topic, data)
        while True:
            try:
                topic, data, _ = await asyncio.wait_for(self.arrivals.get(), 2.0)
            except TimeoutError:
                return
            self._track(topic, data)

    async def trial(self) -> float | None:
        """Seconds from publishing one over-cap reading to the last resulting command."""
        unit_watts = self.groups[self.order[0]].watts_per_unit * OVERHEAD
        reading = self.cap + self.rng.uniform(0.1, 0.9) * UNITS_PER_GROUP * unit_watts
        waiting = expected_sheds(
            self.groups, self.units, reading=reading, cap=self.cap, order=self.order
        )
        if not waiting:
            return None
        started = time.perf_counter()
        await self.client.publish(f"{self.prefix}/meter/main", str(reading).encode(), qos=1)
        last = started
        while waiting:
            topic, data, stamp = await asyncio.wait_for(self.arrivals.get(), 10)
            name = self._track(topic, data)
            if name is not None and waiting.get(name) == data.get("units_on"):
                del waiting[name]
                last = stamp
        return last - started

    async def ping(self) -> float:
        """Seconds from publishing to receiving one message through the same broker."""
        started = time.perf_counter()
        await self.client.publish(f"{self.prefix}/bench/ping", b"{}", qos=1)
        while True:
            topic, _, stamp = await asyncio.wait_for(self.arrivals.get(), 10)
            if topic.endswith("/bench/ping"):
                return stamp - started
