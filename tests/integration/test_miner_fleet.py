"""The agent driving 200 simulated LuxOS miners through the real pyasic, with 5 % of them
faulty: the shed, the faults it reports, and the wake-up after."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from gridpilot.adapters.actuation import Command
from gridpilot.adapters.broker import LocalBroker
from gridpilot.adapters.minersim import S19J_PRO, MinerFleet, MinerState
from gridpilot.agent.daemon.daemon import Daemon
from gridpilot.agent.settings import load_settings
from tests.integration.harness import PREFIX, Observer, observing, running

MINERS = 200
PER_GROUP = 20
FIRST_IP = "127.0.2.1"
OVERHEAD = 1.05

SITE = f"""
[site]
name = "testsite"
settlement_point = "HB_WEST"
interconnect_watts = 1e6
margin_watts = 10e3
pool_fee = 0.02
asic_overhead_factor = {OVERHEAD}

[[asic_groups]]
name = "s19"
model = "Antminer S19j Pro"
count = {MINERS}
watts_per_unit = {S19J_PRO.watts}
ths_per_unit = {S19J_PRO.ths}
units_per_group = {PER_GROUP}
actuator = "pyasic"
miners = ["{FIRST_IP}-127.0.2.{MINERS}"]

[devices]
timeout_s = 2.0
confirm_after_s = 0.5
retries = 1
"""


@contextlib.asynccontextmanager
async def metering(observer: Observer, fleet: MinerFleet) -> AsyncIterator[None]:
    """The site meter: the fleet's real draw with cooling, four times a second."""

    async def publish() -> None:
        while True:
            watts = fleet.total_watts() * OVERHEAD
            await observer.publish(f"{PREFIX}/meter/main", json.dumps({"watts": watts}))
            await asyncio.sleep(0.25)

    task = asyncio.create_task(publish())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _faults(daemon: Daemon) -> dict[tuple[str, str], float]:
    return {
        (s.labels["group"], s.labels["fault"]): s.value
        for metric in daemon.metrics.device_faults.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    }


def _count_awake_after_each_command(daemon: Daemon) -> list[int]:
    """The miners the agent counts awake each time it has carried out commands and read their
    outcomes, appended as it happens."""
    counts: list[int] = []

    def counting(_sent: Sequence[Command]) -> None:
        counts.append(int(daemon.setpoints.units_on.sum()))

    daemon.commands.observers.append(counting)
    return counts


# pyasic leaves the socket of a request it was waiting on open when the wait is cancelled (a
# miner that never answers); the garbage collector then warns about it.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_shed_and_wake_200_miners_through_pyasic_with_faults(
    tmp_path: Path, broker: LocalBroker
) -> None:
    """A grid event's cap makes the guard sleep all 200 miners through pyasic: the healthy 190
    are asleep and every faulty one is reported by group and counted within 5 s; when the event
    ends the planner wakes them all."""
    path = tmp_path / "site.toml"
    path.write_text(
        SITE
        + f"\n[mqtt]\nport = {broker.port}\n\n[agent]\n"
        + f'ledger_path = "{tmp_path / "ledger.sqlite3"}"\nmetrics_port = 0\n'
        + "replan_min_gap_s = 0\nguard_settle_s = 3\n"
    )
    settings = load_settings(path)

    async def scenario() -> None:
        async with (
            MinerFleet(MINERS, first_ip=FIRST_IP, wake_s=1.0) as fleet,
            observing(broker) as observer,
            running(settings) as daemon,
        ):
            awake_after_commands = _count_awake_after_each_command(daemon)
            await observer.publish(f"{PREFIX}/hashprice", b'{"usd_per_th_day": 0.05}')
            await observer.publish(f"{PREFIX}/price/realtime", b'{"usd_per_mwh": 20}')
            async with metering(observer, fleet):
                await observer.wait_for(lambda: daemon.cycle.plans_made >= 1, 30)
                # 5 %: four never answer, three answer only after the timeout, three say
                # they sleep and keep hashing.
                faulty = {
                    "no_answer": fleet.miners[7:11],
                    "slow": fleet.miners[45:48],
                    "fake_sleep": fleet.miners[120:123],
                }
                for miner in faulty["no_answer"]:
                    miner.faults.no_answer = True
                for miner in faulty["slow"]:
                    miner.faults.slow_s = 10.0
                for miner in faulty["fake_sleep"]:
                    miner.faults.fake_sleep = True
                bad = {m.ip for group in faulty.values() for m in group}
                healthy = [m for m in fleet.miners if m.ip not in bad]
                # The grid operator sheds the whole site from now for 8 s.
                start = daemon.clock.now()
                event = {
                    "id": "eea-test",
                    "start": start.isoformat(),
                    "end": (start + timedelta(seconds=8)).isoformat(),
                    "max_site_watts": 0.0,
                }
                began = time.monotonic()
                await observer.publish(f"{PREFIX}/grid/event", json.dumps(event))
                expected = {("s19-01", "no_answer"), ("s19-03", "no_answer")}
                expected |= {("s19-07", "not_asleep")}

                def shed_done() -> bool:
                    asleep = all(m.state is MinerState.ASLEEP for m in healthy)
                    return asleep and expected <= set(_faults(daemon))

                await observer.wait_for(shed_done, 10.0)
                shed_s = time.monotonic() - began
                assert shed_s <= 5.0, f"the shed took {shed_s:.2f} s"
                faults = _faults(daemon)
                assert faults[("s19-01", "no_answer")] >= 4
                assert faults[("s19-03", "no_answer")] >= 3
                assert faults[("s19-07", "not_asleep")] >= 3
                failed = {
                    s.labels["group"]
                    for metric in daemon.metrics.command_failures.collect()
                    for s in metric.samples
                    if s.name.endswith("_total")
                }
                assert failed == {"s19-01", "s19-03", "s19-07"}
                # The faulty miners still draw, and the agent knows they are awake once each
                # command's outcome is in. The guard, still over the event's cap, tells them
                # again when its settling credit runs out and counts them asleep until that
                # outcome returns, so the count after each carried-out command is what shows it
                # (the state between two sheds can last a millisecond, too short to poll).
                await observer.wait_for(lambda: len(bad) in awake_after_commands, 10.0)
                for miner in fleet.miners:
                    miner.faults.no_answer = False
                    miner.faults.slow_s = 0.0
                    miner.faults.fake_sleep = False
                # The event ends: the planner wakes everything again.
                await observer.wait_for(
                    lambda: all(m.state is not MinerState.ASLEEP for m in fleet.miners), 30
                )
                assert int(daemon.setpoints.units_on.sum()) == MINERS
        print(f"shed of {MINERS} miners with {len(bad)} faulty: {shed_s:.2f} s")

    asyncio.run(scenario())
