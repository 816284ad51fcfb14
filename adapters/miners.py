"""Miners driven directly through pyasic: sleep and wake, confirmed by reading power back.

Each group is a list of miner addresses. A command for `units_on = n` keeps the group's first n
miners awake and puts the rest to sleep; only miners whose state must change are spoken to,
many at once (bounded by `concurrency`), each call under `timeout_s`. A miner told to sleep is
read back after `confirm_after_s`: firmware exists that answers "sleeping" and keeps hashing,
so one still drawing more than `asleep_power_share` of its nominal power is told again
(`retries`) and then flagged. Each group's `Outcome` says how many of its miners are really
awake and which failed, and why; the faults are counted by kind.

pyasic finds out what each address is (`get_miner`) once, at start, for all miners at once, so
that a shed does not wait for detection. A start where pyasic is not installed, or where not one
miner answers, raises `DeviceUnavailableError`: nothing could be driven (a miner missing among
others that answer is looked for again when it is next commanded).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from gridpilot.adapters.actuation import (
    INSTALL_DEVICES,
    AsicCommand,
    Command,
    DeviceUnavailableError,
    Outcome,
)

_log = structlog.get_logger("gridpilot.miners")

FAULT_KINDS = ("no_answer", "refused", "not_asleep")


class Miner(Protocol):
    """What the actuator asks of a pyasic miner object."""

    async def stop_mining(self) -> bool: ...

    async def resume_mining(self) -> bool: ...

    async def get_wattage(self) -> int | None: ...


Connect = Callable[[str], Awaitable[Miner | None]]


@dataclass(frozen=True, slots=True)
class MinerGroup:
    addresses: tuple[str, ...]
    watts_per_unit: float  # nominal draw of one miner, to tell asleep from awake


@dataclass(frozen=True, slots=True)
class _Result:
    address: str
    awake: bool | None  # where the miner is now; None: unknown (it did not answer)
    fault: str = ""  # one of FAULT_KINDS, or empty
    detail: str = ""


def _pyasic() -> Any:
    """pyasic, imported on first use: the `devices` extra, needed only by sites that drive
    miners. Importing it warns of its own deprecated dependencies (pydantic-1-style models,
    the `crypt` module), which are not ours to act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module("pyasic")


def require_pyasic() -> None:
    """Raises `DeviceUnavailableError` if pyasic cannot be imported here."""
    try:
        _pyasic()
    except ImportError as error:
        raise DeviceUnavailableError(
            "pyasic",
            f"pyasic cannot be imported: {error}",
            INSTALL_DEVICES,
        ) from error


async def pyasic_connect(address: str) -> Miner | None:
    miner: Any = await _pyasic().get_miner(address)
    return None if miner is None else _as_miner(miner)


def _as_miner(miner: Any) -> Miner:
    result: Miner = miner
    return result


class PyasicActuator:
    """Sleeps and wakes miner groups through pyasic (or any `connect` giving `Miner`s)."""

    def __init__(
        self,
        groups: Mapping[str, MinerGroup],
        *,
        concurrency: int = 100,
        timeout_s: float = 3.0,
        confirm_after_s: float = 1.0,
        asleep_power_share: float = 0.2,
        retries: int = 1,
        connect: Connect = pyasic_connect,
    ) -> None:
        self._groups = dict(groups)
        self._connect = connect
        self._limit = asyncio.Semaphore(concurrency)
        self._timeout_s = timeout_s
        self._confirm_after_s = confirm_after_s
        self._asleep_share = asleep_power_share
        self._retries = retries
        self._miners: dict[str, Miner] = {}
        # Where each miner is believed to be; unknown (absent) until told something.
        self._awake: dict[str, bool] = {}

    async def start(self) -> None:
        """Find every miner now, so that the first shed does not wait for it; a miner not
        found now is looked for again when it is next commanded. Raises
        `DeviceUnavailableError` if pyasic is missing or no miner at all answers."""
        if self._connect is pyasic_connect:
            require_pyasic()
        _tune_pyasic(self._timeout_s)
        addresses = [a for group in self._groups.values() for a in group.addresses]
        found = await asyncio.gather(*(self._find(a) for a in addresses))
        if addresses and not any(miner is not None for miner in found):
            raise DeviceUnavailableError(
                "pyasic",
                f"none of its {len(addresses):,} miners ({addresses[0]} .. {addresses[-1]})"
                f" answered within {self._timeout_s * 2:g} s",
                "check that the miners are powered and reachable from this host (their API"
                " on TCP port 4028) and that `miners` lists their addresses",
            )

    async def close(self) -> None:
        self._miners.clear()

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._group(c) for c in commands)))

    async def _group(self, command: Command) -> Outcome:
        group = self._groups.get(command.group)
        if group is None or not isinstance(command, AsicCommand):
            return Outcome(command.group, False, "not a miner group driven through pyasic")
        wanted_awake = group.addresses[: command.units_on]
        wanted_asleep = group.addresses[command.units_on :]
        work = [self._wake(a) for a in wanted_awake if self._awake.get(a) is not True]
        work += [
            self._sleep(a, group.watts_per_unit)
            for a in wanted_asleep
            if self._awake.get(a) is not False
        ]
        results = await asyncio.gather(*work)
        for result in results:
            if result.awake is None:
                self._awake.pop(result.address, None)  # ask again next time
            else:
                self._awake[result.address] = result.awake
        # A miner of unknown state is counted awake: drawing power is the safe assumption.
        awake = sum(self._awake.get(a, True) for a in group.addresses)
        faults = [r for r in results if r.fault]
        detail = "; ".join(f"{r.address}: {r.detail}" for r in faults[:10])
        if len(faults) > 10:
            detail += f"; and {len(faults) - 10} more"
        return Outcome(
            command.group,
            not faults,
            detail,
            units_on=awake,
            faults=tuple(r.fault for r in faults),
        )

    async def _find(self, address: str) -> Miner | None:
        miner = self._miners.get(address)
        if miner is not None:
            return miner
        async with self._limit:
            try:
                async with asyncio.timeout(self._timeout_s * 2):
                    found = await self._connect(address)
            except (TimeoutError, OSError):
                return None
        if found is not None:
            self._miners[address] = found
        return found

    async def _call(self, address: str, action: str) -> tuple[bool, str]:
        """(answered with success, why not)."""
        miner = await self._find(address)
        if miner is None:
            return False, "no_answer"
        # pyasic keeps a LuxOS session id for the miner object's life, but the firmware ends
        # a session a minute after its last use: ask for the current one each time.
        rpc = getattr(miner, "rpc", None)
        if rpc is not None and hasattr(rpc, "session_token"):
            rpc.session_token = None
        async with self._limit:
            try:
                async with asyncio.timeout(self._timeout_s):
                    done = await getattr(miner, action)()
            except TimeoutError:
                return False, "no_answer"
            except Exception as error:  # pyasic's errors are many and loosely typed
                _log.warning("miner.refused", address=address, action=action, error=repr(error))
                return False, "refused"
        return bool(done), "" if done else "refused"

    async def _wake(self, address: str) -> _Result:
        ok, fault = await self._call(address, "resume_mining")
        if ok:
            return _Result(address, awake=True)
        return _Result(address, None, fault, _explain(fault, "wake", self._timeout_s))

    async def _sleep(self, address: str, nominal_watts: float) -> _Result:
        """Asleep only once its power reading says so. A miner that accepts the stop but
        gives no reading is of unknown state, which counts as awake (it may still draw)."""
        for _ in range(self._retries + 1):
            ok, fault = await self._call(address, "stop_mining")
            if not ok:
                return _Result(address, None, fault, _explain(fault, "sleep", self._timeout_s))
            await asyncio.sleep(self._confirm_after_s)
            watts = await self._power(address)
            if watts is not None and watts <= self._asleep_share * nominal_watts:
                return _Result(address, awake=False)
        tries = self._retries + 1
        if watts is None:
            return _Result(
                address,
                None,
                "no_answer",
                f"accepted the stop but gave no power reading after {tries} tries",
            )
        return _Result(
            address,
            True,
            "not_asleep",
            f"says it sleeps but still draws {watts:,.0f} W after {tries} tries",
        )

    async def _power(self, address: str) -> float | None:
        miner = self._miners.get(address)
        if miner is None:
            return None
        async with self._limit:
            try:
                async with asyncio.timeout(self._timeout_s):
                    watts = await miner.get_wattage()
            except TimeoutError:
                return None
            except Exception as error:  # pyasic's errors are many and loosely typed
                _log.warning("miner.power_unread", address=address, error=repr(error))
                return None
        return None if watts is None else float(watts)


def _explain(fault: str, action: str, timeout_s: float) -> str:
    if fault == "no_answer":
        return f"no answer to {action} within {timeout_s:g} s"
    return f"refused to {action}"


def _tune_pyasic(timeout_s: float) -> None:
    """pyasic's own timeouts, in whole seconds, no longer than ours."""
    with contextlib.suppress(ImportError):
        settings = _pyasic().settings
        seconds = max(1, round(timeout_s))
        for key in ("network_ping_timeout", "factory_get_timeout", "api_function_timeout"):
            settings.update(key, seconds)
