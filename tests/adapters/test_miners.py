"""The pyasic actuator on fake miners: who is spoken to, what is confirmed, what is flagged."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from gridpilot.adapters.actuation import AsicCommand, DeviceUnavailableError, GpuCommand
from gridpilot.adapters.miners import Miner, MinerGroup, PyasicActuator


class FakeMiner:
    def __init__(self, *, lies: bool = False, silent: bool = False, blind: bool = False) -> None:
        self.awake = True
        self.lies = lies  # says it sleeps, keeps hashing
        self.silent = silent
        self.blind = blind  # its power reading fails
        self.calls: list[str] = []

    async def _answer(self, call: str) -> None:
        self.calls.append(call)
        if self.silent:
            await asyncio.sleep(60)

    async def stop_mining(self) -> bool:
        await self._answer("stop")
        if not self.lies:
            self.awake = False
        return True

    async def resume_mining(self) -> bool:
        await self._answer("resume")
        self.awake = True
        return True

    async def get_wattage(self) -> int | None:
        if self.blind:
            raise ConnectionResetError("reading the power failed")
        return 3_250 if self.awake else 12


def _fleet(count: int, **faults: set[int]) -> dict[str, FakeMiner]:
    return {
        f"10.0.0.{i}": FakeMiner(
            lies=i in faults.get("lies", set()),
            silent=i in faults.get("silent", set()),
            blind=i in faults.get("blind", set()),
        )
        for i in range(1, count + 1)
    }


def _actuator(fleet: dict[str, FakeMiner], **options: float) -> PyasicActuator:
    async def connect(address: str) -> Miner | None:
        return fleet.get(address)

    group = MinerGroup(tuple(fleet), 3_250.0)
    return PyasicActuator(
        {"s19-01": group},
        connect=connect,
        timeout_s=options.get("timeout_s", 0.3),
        confirm_after_s=options.get("confirm_after_s", 0.01),
    )


def _shed(units_on: int) -> AsicCommand:
    return AsicCommand("s19-01", units_on, 3_250.0, "price", "plan-1")


def test_sleeps_the_tail_and_confirms_by_power() -> None:
    """units_on = n keeps the first n awake and sleeps the rest, each confirmed by its power."""
    fleet = _fleet(10)
    actuator = _actuator(fleet)

    async def scenario() -> None:
        await actuator.start()
        [outcome] = await actuator.apply([_shed(6)])
        assert outcome.ok, outcome.detail
        assert outcome.units_on == 6
        assert [m.awake for m in fleet.values()] == [True] * 6 + [False] * 4
        # The same command again speaks to nobody who is already where they should be.
        calls = sum(len(m.calls) for m in fleet.values())
        await actuator.apply([_shed(6)])
        assert sum(len(m.calls) for m in fleet.values()) == calls
        [outcome] = await actuator.apply([_shed(10)])
        assert outcome.units_on == 10
        assert all(m.awake for m in fleet.values())

    asyncio.run(scenario())


def test_a_miner_that_lies_about_sleeping_is_retried_then_flagged() -> None:
    """Firmware that answers 'sleeping' and keeps drawing power is told again, then reported
    by address as not asleep, and counted as still awake."""
    fleet = _fleet(4, lies={4})
    [outcome] = asyncio.run(_actuator(fleet).apply([_shed(2)]))
    assert not outcome.ok
    assert outcome.units_on == 3
    assert outcome.faults == ("not_asleep",)
    assert "10.0.0.4: says it sleeps but still draws 3,250 W after 2 tries" in outcome.detail
    assert fleet["10.0.0.4"].calls == ["stop", "stop"]


def test_a_miner_whose_power_cannot_be_read_counts_awake() -> None:
    """A miner that accepts the stop but whose power reading fails is of unknown state: it is
    counted awake (it may still draw), reported, and asked again by the next command. (Before,
    the failed reading counted it asleep.)"""
    fleet = _fleet(4, blind={4})
    actuator = _actuator(fleet)

    async def scenario() -> None:
        [outcome] = await actuator.apply([_shed(2)])
        assert not outcome.ok
        assert outcome.units_on == 3
        assert outcome.faults == ("no_answer",)
        assert "10.0.0.4: accepted the stop but gave no power reading after 2 tries" in (
            outcome.detail
        )
        await actuator.apply([_shed(2)])
        assert fleet["10.0.0.4"].calls == ["stop"] * 4

    asyncio.run(scenario())


def test_a_silent_miner_costs_its_timeout_not_the_shed() -> None:
    """A miner that never answers is reported after the timeout while the others sleep at
    once; the whole shed takes about one timeout."""
    fleet = _fleet(20, silent={3, 17})
    started = time.monotonic()
    [outcome] = asyncio.run(_actuator(fleet, timeout_s=0.3).apply([_shed(0)]))
    elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert outcome.faults == ("no_answer", "no_answer")
    assert outcome.units_on == 2
    assert "no answer to sleep within 0.3 s" in outcome.detail
    assert sum(not m.awake for m in fleet.values()) == 18


def test_unknown_addresses_and_other_groups_are_reported() -> None:
    """An address nobody answers at is a fault of its group; commands for other groups and
    for GPUs are refused, not guessed at."""
    fleet = _fleet(2)
    actuator = _actuator(fleet)

    async def missing(address: str) -> Miner | None:
        return None

    lost = PyasicActuator({"g": MinerGroup(("10.9.9.9",), 3_000.0)}, connect=missing)
    [outcome] = asyncio.run(lost.apply([AsicCommand("g", 0, 3_000.0, "", "")]))
    assert outcome.faults == ("no_answer",)
    outcomes = asyncio.run(
        actuator.apply([AsicCommand("nope", 0, 1.0, "", ""), GpuCommand("s19-01", 1, 1, 0, "", "")])
    )
    assert [o.ok for o in outcomes] == [False, False]


def test_start_fails_when_not_one_miner_answers() -> None:
    """A fleet of which no miner answers detection cannot start: the error names the
    addresses and what to check."""

    async def nobody(address: str) -> Miner | None:
        return None

    group = MinerGroup(("10.9.9.1", "10.9.9.2", "10.9.9.3"), 3_000.0)
    actuator = PyasicActuator({"g": group}, connect=nobody, timeout_s=0.1)
    with pytest.raises(DeviceUnavailableError) as raised:
        asyncio.run(actuator.start())
    assert raised.value.actuator == "pyasic"
    assert "none of its 3 miners (10.9.9.1 .. 10.9.9.3) answered" in raised.value.reason
    assert "port 4028" in raised.value.fix


def test_start_succeeds_when_some_miners_answer() -> None:
    """One miner answering is enough to start; the silent one is a fault of its commands."""
    fleet = _fleet(1)

    async def connect(address: str) -> Miner | None:
        return fleet.get(address)

    group = MinerGroup(("10.0.0.1", "10.0.0.2"), 3_250.0)
    actuator = PyasicActuator({"g": group}, connect=connect, confirm_after_s=0.01)

    async def scenario() -> None:
        await actuator.start()
        [outcome] = await actuator.apply([AsicCommand("g", 0, 3_250.0, "price", "p")])
        assert outcome.faults == ("no_answer",)
        assert outcome.units_on == 1

    asyncio.run(scenario())


def test_start_without_pyasic_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """With pyasic not importable, the real actuator's start fails with the devices extra as
    the fix, before talking to any miner."""
    monkeypatch.setitem(sys.modules, "pyasic", None)
    actuator = PyasicActuator({"g": MinerGroup(("10.9.9.1",), 3_000.0)})
    with pytest.raises(DeviceUnavailableError) as raised:
        asyncio.run(actuator.start())
    assert "pyasic cannot be imported" in raised.value.reason
    assert "pip install 'gridpilot[devices]'" in raised.value.fix
