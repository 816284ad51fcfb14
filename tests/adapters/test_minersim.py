"""The simulated LuxOS miners: their API on the wire, driven by the real pyasic, and faults."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import time
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from gridpilot.adapters.minersim import (
    DEFAULT_SLEEP_WATTS,
    RPC_PORT,
    S19J_PRO,
    S21,
    MinerFleet,
    MinerSimError,
    MinerState,
    SimulatedMiner,
    run_fleet,
)

# Each test listens on its own /24 of loopback; the second octet follows the process so that
# two test runs on one host do not collide.
SUBNET = f"127.{100 + os.getpid() % 100}"


def _ip(test: int, host: int = 1) -> str:
    return f"{SUBNET}.{test}.{host}"


class ManualClock:
    """Seconds since the epoch that move only when told."""

    def __init__(self) -> None:
        self.now_s = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


async def _exchange(ip: str, *chunks: bytes, pause_s: float = 0.0) -> bytes:
    """Send `chunks` without a terminator and read until the miner closes the connection."""
    reader, writer = await asyncio.open_connection(ip, RPC_PORT)
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(pause_s)
    async with asyncio.timeout(2):
        received = await reader.read()  # returns only once the miner has closed
    writer.close()
    await writer.wait_closed()
    return received


async def _call(ip: str, command: str, parameter: str | None = None) -> dict[str, object]:
    request: dict[str, str] = {"command": command}
    if parameter is not None:
        request["parameter"] = parameter
    reply = json.loads(await _exchange(ip, json.dumps(request).encode()))
    assert isinstance(reply, dict)
    return reply


def _section(reply: dict[str, object], name: str) -> dict[str, object]:
    rows = reply[name]
    assert isinstance(rows, list)
    row = rows[0]
    assert isinstance(row, dict)
    return row


def _curtail(miner: SimulatedMiner, session_id: object, action: str) -> dict[str, object]:
    request = {"command": "curtail", "parameter": f"{session_id},{action}"}
    return miner.answer(json.dumps(request).encode())


def _ok(reply: dict[str, object]) -> bool:
    return _section(reply, "STATUS")["STATUS"] == "S"


@pytest.fixture
def pyasic_lib() -> Iterator[ModuleType]:
    """The real pyasic (the optional `devices` extra); its factory timeout is restored after."""
    with warnings.catch_warnings():
        # Importing pyasic 0.79 warns twice, about neither of our uses: pydantic deprecates its
        # class-based `Config`, and passlib imports the deprecated `crypt` module.
        warnings.simplefilter("ignore", DeprecationWarning)
        lib = pytest.importorskip("pyasic")
    timeout = lib.settings.get("factory_get_timeout")
    yield lib
    lib.settings.update("factory_get_timeout", timeout)


# -- the API on the wire ---------------------------------------------------------------------


def test_version_names_luxminer_and_the_model_then_closes() -> None:
    """A request without terminator gets one JSON reply naming LUXminer and the Antminer model,
    and the miner closes the connection after it."""

    async def scenario() -> bytes:
        async with SimulatedMiner(_ip(1), model=S21):
            return await _exchange(_ip(1), b'{"command": "version"}')

    raw = asyncio.run(scenario())
    reply = json.loads(raw)
    assert _ok(reply)
    assert "LUXminer" in str(_section(reply, "STATUS")["Description"])
    assert _section(reply, "VERSION")["Type"] == "Antminer S21"
    assert _section(reply, "VERSION")["API"] == "3.7"


def test_a_request_split_across_writes_is_answered_once_whole() -> None:
    """The miner waits until the bytes so far form a JSON object, then answers it."""

    async def scenario() -> bytes:
        async with SimulatedMiner(_ip(2)):
            return await _exchange(_ip(2), b'{"command": ', b'"summary"}', pause_s=0.05)

    reply = json.loads(asyncio.run(scenario()))
    assert _section(reply, "SUMMARY")["GHS 5s"] == pytest.approx(S19J_PRO.ths * 1000)


def test_summary_and_power_follow_the_miner_state() -> None:
    """Awake it reports nominal watts and hashrate; asleep a few watts and no hashrate."""

    async def scenario() -> list[dict[str, object]]:
        async with SimulatedMiner(_ip(3)) as miner:
            awake = [await _call(_ip(3), "summary"), await _call(_ip(3), "power")]
            miner.sleep()
            asleep = [await _call(_ip(3), "summary"), await _call(_ip(3), "power")]
            return awake + asleep

    summary, power, slept_summary, slept_power = asyncio.run(scenario())
    assert _section(summary, "SUMMARY")["GHS 5s"] == pytest.approx(104_000)
    assert _section(power, "POWER")["Watts"] == 3068
    assert _section(slept_summary, "SUMMARY")["GHS 5s"] == 0
    assert _section(slept_power, "POWER")["Watts"] == round(DEFAULT_SLEEP_WATTS)


def test_curtail_takes_a_session_from_logon() -> None:
    """Curtail without a session or with a wrong one is refused; logon gives one (only one at a
    time), `session` shows it, and curtail with it puts the miner to sleep."""

    async def scenario() -> SimulatedMiner:
        async with SimulatedMiner(_ip(4)) as miner:
            assert not _ok(await _call(_ip(4), "curtail", "sleep"))
            assert not _ok(await _call(_ip(4), "curtail", "nosuchid,sleep"))
            assert _section(await _call(_ip(4), "session"), "SESSION")["SessionID"] == ""
            logon = await _call(_ip(4), "logon")
            session_id = str(_section(logon, "SESSION")["SessionID"])
            assert _ok(logon)
            assert session_id
            assert not _ok(await _call(_ip(4), "logon"))
            current = await _call(_ip(4), "session")
            assert _section(current, "SESSION")["SessionID"] == session_id
            assert miner.state is MinerState.AWAKE
            curtail = await _call(_ip(4), "curtail", f"{session_id},sleep")
            assert _ok(curtail)
            assert _section(curtail, "CURTAIL")["Action"] == "sleep mode"
            assert not _ok(await _call(_ip(4), "curtail", f"{session_id},nap"))
            return miner

    miner = asyncio.run(scenario())
    assert miner.state is MinerState.ASLEEP
    assert miner.watts == DEFAULT_SLEEP_WATTS


def test_a_session_expires_a_minute_after_its_last_use() -> None:
    """Each use renews the session for 60 s; a minute idle ends it, and logon works again."""
    clock = ManualClock()
    miner = SimulatedMiner(_ip(5), clock=clock)
    logon = miner.answer(b'{"command": "logon"}')
    session_id = _section(logon, "SESSION")["SessionID"]
    clock.advance(59)
    assert _ok(_curtail(miner, session_id, "sleep"))
    clock.advance(59)
    assert _ok(_curtail(miner, session_id, "wakeup"))
    clock.advance(60)
    expired = _curtail(miner, session_id, "sleep")
    assert not _ok(expired)
    assert miner.state is not MinerState.ASLEEP
    assert _section(miner.answer(b'{"command": "session"}'), "SESSION")["SessionID"] == ""
    assert _ok(miner.answer(b'{"command": "logon"}'))


def test_wakeup_draws_power_at_once_and_hashes_after_the_delay() -> None:
    """A woken miner draws nominal watts at once and hashes only after `wake_s`."""
    clock = ManualClock()
    miner = SimulatedMiner(_ip(6), wake_s=30, clock=clock)
    miner.sleep()
    session_id = _section(miner.answer(b'{"command": "logon"}'), "SESSION")["SessionID"]
    wakeup = _curtail(miner, session_id, "wakeup")
    assert _section(wakeup, "CURTAIL")["Action"] == "wake up"
    assert (miner.state, miner.watts, miner.ths) == (MinerState.WAKING, 3068.0, 0.0)
    clock.advance(30)
    assert (miner.state, miner.watts, miner.ths) == (MinerState.AWAKE, 3068.0, 104.0)


def test_unknown_commands_and_bad_json_get_an_error_status() -> None:
    """Unknown commands, broken JSON and requests without a command get cgminer's error
    codes; joined commands get one reply keyed by command."""
    miner = SimulatedMiner(_ip(7))
    unknown = miner.answer(b'{"command": "frobnicate"}')
    assert (_section(unknown, "STATUS")["STATUS"], _section(unknown, "STATUS")["Code"]) == ("E", 14)
    assert _section(miner.answer(b'{"command": "vers'), "STATUS")["Code"] == 23
    assert _section(miner.answer(b'{"cmd": "version"}'), "STATUS")["Code"] == 24
    joined = miner.answer(b'{"command": "summary+power"}')
    assert set(joined) == {"summary", "power", "id"}
    power = joined["power"]
    assert isinstance(power, list)
    assert power[0]["POWER"][0]["Watts"] == 3068
    assert miner.requests == {"frobnicate": 1, "summary": 1, "power": 1}


# -- faults on the wire ----------------------------------------------------------------------


def test_a_slow_miner_answers_after_its_delay() -> None:
    """With `slow_s` set the reply comes that much later, and still comes."""

    async def scenario() -> float:
        async with SimulatedMiner(_ip(8)) as miner:
            miner.faults.slow_s = 0.3
            started = time.monotonic()
            assert _ok(await _call(_ip(8), "power"))
            return time.monotonic() - started

    assert asyncio.run(scenario()) >= 0.3


def test_a_silent_miner_keeps_the_connection_and_recovers_when_cleared() -> None:
    """With `no_answer` the connection is accepted and nothing comes back; cleared, the miner
    answers again, and closing it drops the held connection."""

    async def scenario() -> None:
        async with SimulatedMiner(_ip(9)) as miner:
            miner.faults.no_answer = True
            reader, writer = await asyncio.open_connection(_ip(9), RPC_PORT)
            writer.write(b'{"command": "power"}')
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await reader.read()
            miner.faults.no_answer = False
            assert _ok(await _call(_ip(9), "power"))
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()

    asyncio.run(scenario())


# -- driven by the real pyasic ---------------------------------------------------------------


def test_pyasic_sees_a_luxos_miner_and_reads_its_power_and_hashrate(pyasic_lib: ModuleType) -> None:
    """pyasic identifies each model as its LuxOS class and reads the simulated watts and TH/s,
    detecting through `version`/`devdetails` and reading through one joined request."""

    async def scenario() -> tuple[list[Any], list[Any], list[SimulatedMiner]]:
        async with MinerFleet(2, first_ip=_ip(10), models=(S19J_PRO, S21)) as fleet:
            miners = [await pyasic_lib.get_miner(ip) for ip in fleet.ips]
            data = [await miner.get_data() for miner in miners]
            return miners, data, fleet.miners

    miners, data, simulated = asyncio.run(scenario())
    lux_miner = pyasic_lib.miners.backends.LUXMiner
    assert all(isinstance(miner, lux_miner) for miner in miners)
    assert [type(miner).__name__ for miner in miners] == ["LUXMinerS19jPro", "LUXMinerS21"]
    s19, s21 = data
    assert (s19.wattage, s21.wattage) == (3068, 3500)
    assert float(s19.hashrate) == pytest.approx(104.0)
    assert float(s21.hashrate) == pytest.approx(200.0)
    assert s19.model == "S19j Pro"
    assert {"version", "devdetails"} <= set(simulated[0].requests)
    assert {"summary", "stats", "power", "config"} <= set(simulated[0].requests)


def test_pyasic_stop_and_resume_sleep_and_wake_the_miner(pyasic_lib: ModuleType) -> None:
    """`stop_mining` puts the miner to sleep (power drops to a few watts, no hashrate);
    `resume_mining` wakes it (nominal watts at once, hashrate after the wake delay)."""
    clock = ManualClock()

    async def scenario() -> None:
        async with SimulatedMiner(_ip(11), wake_s=30, clock=clock) as simulated:
            miner = await pyasic_lib.get_miner(_ip(11))
            assert await miner.stop_mining() is True
            assert simulated.state is MinerState.ASLEEP
            asleep = await miner.get_data()
            assert asleep.wattage == round(DEFAULT_SLEEP_WATTS)
            assert float(asleep.hashrate) == 0
            assert await miner.resume_mining() is True
            waking = await miner.get_data()
            assert (simulated.state, waking.wattage, float(waking.hashrate)) == (
                MinerState.WAKING,
                3068,
                0,
            )
            clock.advance(30)
            awake = await miner.get_data()
            assert float(awake.hashrate) == pytest.approx(104.0)
            assert simulated.requests["curtail"] == 2
            assert simulated.requests["logon"] == 1  # pyasic keeps the session it got

    asyncio.run(scenario())


def test_pyasic_reuses_its_session_after_it_expired(pyasic_lib: ModuleType) -> None:
    """pyasic keeps its session id for good: a minute idle later its curtail is refused and
    `resume_mining` reports False, until its cached id is dropped."""
    clock = ManualClock()

    async def scenario() -> None:
        async with SimulatedMiner(_ip(12), wake_s=0, clock=clock) as simulated:
            miner = await pyasic_lib.get_miner(_ip(12))
            assert await miner.stop_mining() is True
            clock.advance(61)
            assert await miner.resume_mining() is False
            assert (simulated.state, simulated.watts) == (MinerState.ASLEEP, DEFAULT_SLEEP_WATTS)
            miner.rpc.session_token = None
            assert await miner.resume_mining() is True
            assert simulated.state is MinerState.AWAKE

    asyncio.run(scenario())


def test_fake_sleep_keeps_drawing_after_pyasic_reports_success(pyasic_lib: ModuleType) -> None:
    """With `fake_sleep`, pyasic's `stop_mining` succeeds and the miner keeps hashing and
    drawing its nominal watts, as pyasic itself reads back."""

    async def scenario() -> None:
        async with SimulatedMiner(_ip(13)) as simulated:
            simulated.faults.fake_sleep = True
            miner = await pyasic_lib.get_miner(_ip(13))
            assert await miner.stop_mining() is True
            data = await miner.get_data()
            assert simulated.state is MinerState.AWAKE
            assert data.wattage == 3068
            assert float(data.hashrate) == pytest.approx(104.0)

    asyncio.run(scenario())


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_silent_miner_is_not_detected_and_stalls_pyasic_calls(pyasic_lib: ModuleType) -> None:
    """A miner with `no_answer` is not detected within pyasic's factory timeout, and a detected
    one that falls silent stalls pyasic's RPC call until the caller's own timeout."""
    # The ResourceWarning filter: pyasic's RPC call leaves its connection open when cancelled.
    pyasic_lib.settings.update("factory_get_timeout", 1)

    async def scenario() -> None:
        async with MinerFleet(2, first_ip=_ip(14)) as fleet:
            fleet.miners[0].faults.no_answer = True
            started = time.monotonic()
            assert await pyasic_lib.get_miner(fleet.ips[0]) is None
            assert time.monotonic() - started < 2.5
            miner = await pyasic_lib.get_miner(fleet.ips[1])
            fleet.miners[1].faults.no_answer = True
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await miner.stop_mining()
            assert time.monotonic() - started < 1.0
            assert fleet.miners[1].state is MinerState.AWAKE

    asyncio.run(scenario())
    gc.collect()


# -- fleets ----------------------------------------------------------------------------------


def test_fifty_miners_are_detected_concurrently_within_seconds(pyasic_lib: ModuleType) -> None:
    """Fifty miners on consecutive loopback addresses are all identified as LuxOS by pyasic at
    once, in a few seconds, and the fleet's draw is the sum of theirs."""

    async def scenario() -> tuple[list[Any], float, MinerFleet]:
        async with MinerFleet(50, first_ip=_ip(15)) as fleet:
            started = time.monotonic()
            miners = await asyncio.gather(*(pyasic_lib.get_miner(ip) for ip in fleet.ips))
            return miners, time.monotonic() - started, fleet

    miners, elapsed_s, fleet = asyncio.run(scenario())
    assert all(isinstance(miner, pyasic_lib.miners.backends.LUXMiner) for miner in miners)
    assert [str(miner.ip) for miner in miners] == fleet.ips
    assert fleet.ips[-1] == _ip(15, 50)
    assert elapsed_s < 5.0
    assert fleet.total_watts() == pytest.approx(50 * 3068.0)
    fleet.miners[0].sleep()
    assert fleet.total_watts() == pytest.approx(49 * 3068.0 + DEFAULT_SLEEP_WATTS)
    assert fleet.total_ths() == pytest.approx(49 * 104.0)


def test_a_fleet_that_cannot_bind_releases_what_it_took() -> None:
    """A taken address fails the fleet with an error naming it, and the miners already started
    are closed again; a range past the last address is refused up front."""

    async def scenario() -> None:
        async with SimulatedMiner(_ip(16, 2)):
            with pytest.raises(MinerSimError, match=_ip(16, 2)):
                await MinerFleet(3, first_ip=_ip(16)).start()
        async with MinerFleet(3, first_ip=_ip(16)) as fleet:
            assert _ok(await _call(fleet.ips[0], "version"))

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="out of range"):
        MinerFleet(2, first_ip="255.255.255.255")


def test_run_fleet_prints_the_addresses_and_serves_until_cancelled() -> None:
    """`run_fleet` prints every miner's address, serves until cancelled, then lets go."""

    async def scenario() -> str:
        out = io.StringIO()
        task = asyncio.create_task(run_fleet(3, _ip(17), wake_s=0, out=out))
        async with asyncio.timeout(5):
            while "miners up" not in out.getvalue():
                await asyncio.sleep(0.01)
        assert _ok(await _call(_ip(17, 3), "power"))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(_ip(17, 3), RPC_PORT)
        return out.getvalue()

    printed = asyncio.run(scenario())
    assert [line.split()[0] for line in printed.splitlines()[:3]] == [
        f"{_ip(17, host)}:{RPC_PORT}" for host in (1, 2, 3)
    ]
    assert "3 simulated LuxOS miners up, 9204 W in all" in printed
