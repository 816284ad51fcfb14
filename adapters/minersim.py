"""Simulated LuxOS miners: the cgminer-style JSON API on TCP, one listener per loopback address.

Each `SimulatedMiner` listens on its own `ip:4028` (all of 127.0.0.0/8 is loopback on Linux, so
127.0.1.1 .. 127.0.1.200 need no setup) and speaks the LUXminer dialect well enough that the real
`pyasic` recognises it as a LuxOS miner and drives it; a `MinerFleet` starts many on consecutive
addresses, and `run_fleet` serves one until told to stop (the `simulate miners` command, until
SIGINT or SIGTERM).

The protocol, as LuxOS documents it (docs.luxor.tech/firmware/api) on cgminer's API:

- A request is one JSON object, ``{"command": "summary"}`` or with ``"parameter": "a,b"``, sent
  without a terminator; the miner replies with one JSON object and closes the connection.
  Commands joined by ``+`` (``"summary+power"``) get one reply keyed by command, as in cgminer.
- Every reply carries ``STATUS`` (``"S"`` success, ``"E"`` error) with a ``Code``, a ``Msg`` and
  the firmware in ``Description``. Codes follow cgminer's API (7 pools, 9 devs, 11 summary,
  14 invalid command, 22 version, 23 invalid JSON, 24 missing command, 33 config) and LuxOS'
  documentation (316 logon, 319 session, 335 curtail); the other codes are the simulator's own.
- Commands that change the miner take a session id as their first parameter
  (``"parameter": "yJN2nlj1,sleep"``). ``logon`` creates the session, only if none is active;
  ``session`` returns the active one or ``""``. A session expires one minute after its last use
  (docs.luxor.tech/firmware/api/sessions).
- ``curtail`` with ``sleep`` turns the hashboards and the power supply off; with ``wakeup`` it
  turns them on and ramps the boards (docs.luxor.tech/firmware/api/luxminer/curtail).

What pyasic 0.79 relies on: detection sends ``version`` and ``devdetails`` to port 4028 and takes
any reply naming "LUXminer" as LuxOS; the model is ``VERSION[0].Type`` ("Antminer S19j Pro",
which must be one of pyasic's LuxOS models or it warns). It also probes HTTP on ports 80 and 443,
which nothing serves on these addresses, so those probes are refused at once. ``get_data`` joins
config, summary, stats, power, profiles, fans, pools and version in one request; wattage is
``POWER[0].Watts`` and the hashrate the sum of ``STATS[1].chain_rate1..3``.
``stop_mining``/``resume_mining`` send ``session`` (then ``logon`` if it was empty) and
``curtail`` with ``<id>,sleep`` or ``<id>,wakeup``.

Power, as `adapters.plant` models a unit: awake, a miner draws its model's nominal watts; asleep,
`sleep_watts` (the control board; 12 W is an assumption). On wake-up it draws nominal watts at
once but hashes nothing for `wake_s` seconds. Time comes from `clock` (seconds since the epoch),
so tests can move it.

Faults, settable at any time through `SimulatedMiner.faults`: `no_answer` (the connection is
accepted and the request read, and nothing is ever sent back), `slow_s` (the reply, and what the
command does, wait that long) and `fake_sleep` (``curtail sleep`` reports success and the miner
keeps hashing and drawing power).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Final, Self, TextIO

RPC_PORT: Final = 4028
SESSION_TTL_S: Final = 60.0
DEFAULT_WAKE_S: Final = 60.0
DEFAULT_SLEEP_WATTS: Final = 12.0
LUXMINER_VERSION: Final = "2024.5.1.155002-gridpilot-sim"

# A request that has not arrived whole by then is dropped, as a real miner would drop it.
REQUEST_TIMEOUT_S: Final = 10.0
MAX_REQUEST_BYTES: Final = 65_536

# Commands that change the miner and so take a session id first (LuxOS' session rule).
SESSION_COMMANDS: Final = frozenset({"curtail", "logoff"})

Reply = dict[str, object]


class MinerSimError(Exception):
    """A simulated miner could not start: its address is taken or not on this host."""

    def __init__(self, ip: str, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on {ip}:{port}: {reason}")
        self.ip = ip
        self.port = port
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MinerModel:
    """A miner model at its nominal operating point.

    `name` is what LuxOS reports after "Antminer " (pyasic knows S9, S19, S19 Pro, S19j Pro,
    S19j Pro+, S19k Pro, S19 XP, T19, S21, S21 Pro and T21 under LuxOS).
    """

    name: str
    watts: float
    """Nominal draw at the wall, in watts."""
    ths: float
    """Nominal hashrate, in TH/s."""
    hashboards: int = 3
    chips_per_board: int = 126
    fans: int = 4


# Nameplate figures: S19j Pro 104 TH/s at 29.5 J/TH, S21 200 TH/s at 17.5 J/TH (Bitmain).
S19J_PRO: Final = MinerModel("S19j Pro", watts=3068.0, ths=104.0, chips_per_board=126)
S21: Final = MinerModel("S21", watts=3500.0, ths=200.0, chips_per_board=108)


@dataclass(slots=True)
class MinerFaults:
    """Faults a miner shows from now on; change the fields at any time."""

    no_answer: bool = False
    """Accept each connection and read the request, and never reply."""
    slow_s: float = 0.0
    """Wait this long, in seconds, before carrying out each request and replying."""
    fake_sleep: bool = False
    """Acknowledge ``curtail sleep`` and keep hashing and drawing power."""


class MinerState(StrEnum):
    """What the miner is doing: hashing, woken but not hashing yet, or asleep."""

    AWAKE = "awake"
    WAKING = "waking"
    ASLEEP = "asleep"


class SimulatedMiner:
    """One LuxOS miner: its power state and session, and its API listener on `ip:port`.

    An async context manager: the listener runs inside the ``async with``. `answer` is the
    protocol without the network, for one request's bytes.
    """

    def __init__(
        self,
        ip: str,
        *,
        model: MinerModel = S19J_PRO,
        port: int = RPC_PORT,
        wake_s: float = DEFAULT_WAKE_S,
        sleep_watts: float = DEFAULT_SLEEP_WATTS,
        clock: Callable[[], float] = time.time,
        faults: MinerFaults | None = None,
    ) -> None:
        if wake_s < 0 or sleep_watts < 0:
            raise ValueError(f"wake_s and sleep_watts must be >= 0, got {wake_s}, {sleep_watts}")
        self.ip = str(ipaddress.ip_address(ip))
        self.port = port
        self.model = model
        self.wake_s = wake_s
        self.sleep_watts = sleep_watts
        self.faults = MinerFaults() if faults is None else faults
        self.requests: Counter[str] = Counter()
        """How many times each command was carried out (each part of a joined request counts)."""
        self._clock = clock
        self._started_at = clock()
        self._asleep = False
        self._hashing_from = self._started_at
        self._session_id = ""
        self._session_used_at = 0.0
        self._handlers: dict[str, Callable[[list[str]], Reply]] = {
            "version": self._version,
            "devdetails": self._devdetails,
            "devs": self._devs,
            "summary": self._summary,
            "stats": self._stats,
            "power": self._power,
            "config": self._config,
            "profiles": self._profiles,
            "pools": self._pools,
            "groups": self._groups,
            "fans": self._fans,
            "temps": self._temps,
            "tempctrl": self._tempctrl,
            "atm": self._atm,
            "session": self._session,
            "logon": self._logon,
            "logoff": self._logoff,
            "kill": self._kill,
            "curtail": self._curtail,
        }
        self._server: asyncio.Server | None = None
        self._closing = asyncio.Event()
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    def __repr__(self) -> str:
        return f"SimulatedMiner({self.ip}:{self.port}, {self.model.name}, {self.state})"

    # -- the miner ------------------------------------------------------------------------

    @property
    def state(self) -> MinerState:
        """Asleep, waking (drawing power, not hashing yet) or awake."""
        if self._asleep:
            return MinerState.ASLEEP
        if self._clock() < self._hashing_from:
            return MinerState.WAKING
        return MinerState.AWAKE

    @property
    def watts(self) -> float:
        """The draw now, in watts."""
        return self.sleep_watts if self._asleep else self.model.watts

    @property
    def ths(self) -> float:
        """The hashrate now, in TH/s."""
        return self.model.ths if self.state is MinerState.AWAKE else 0.0

    def sleep(self) -> None:
        """Turn the hashboards and the power supply off (the miner itself; faults do not apply)."""
        self._asleep = True

    def wake(self) -> None:
        """Turn them on; hashing starts `wake_s` later. Waking an awake miner does nothing."""
        if self._asleep:
            self._asleep = False
            self._hashing_from = self._clock() + self.wake_s

    # -- the protocol ---------------------------------------------------------------------

    def answer(self, request: bytes) -> Reply:
        """The reply to one request, as the miner would send it, and its effect on the miner."""
        try:
            message = json.loads(request.rstrip(b"\x00").decode())
        except (UnicodeDecodeError, json.JSONDecodeError):
            return self._status(23, "Invalid JSON", ok=False)
        if not isinstance(message, dict) or not isinstance(message.get("command"), str):
            return self._status(24, "Missing JSON 'command'", ok=False)
        raw = message.get("parameter", "")
        params = str(raw).split(",") if raw not in ("", None) else []
        command: str = message["command"]
        if "+" not in command:
            return self._dispatch(command, params)
        joined: Reply = {part: [self._dispatch(part, [])] for part in command.split("+")}
        joined["id"] = 1
        return joined

    def _dispatch(self, command: str, params: list[str]) -> Reply:
        self.requests[command] += 1
        handler = self._handlers.get(command)
        if handler is None:
            return self._status(14, "Invalid command", ok=False)
        if command in SESSION_COMMANDS:
            if not params or not self._session_valid(params[0]):
                return self._status(320, "Invalid session id", ok=False)
            self._session_used_at = self._clock()
            params = params[1:]
        return handler(params)

    def _session_valid(self, session_id: str) -> bool:
        self._expire_session()
        return session_id != "" and session_id == self._session_id

    def _expire_session(self) -> None:
        if self._session_id and self._clock() - self._session_used_at >= SESSION_TTL_S:
            self._session_id = ""

    def _status(self, code: int, msg: str, *, ok: bool = True) -> Reply:
        return {
            "STATUS": [
                {
                    "Code": code,
                    "Description": f"LUXminer {LUXMINER_VERSION}",
                    "Msg": msg,
                    "STATUS": "S" if ok else "E",
                    "When": int(self._clock()),
                }
            ],
            "id": 1,
        }

    def _version(self, _: list[str]) -> Reply:
        return {
            **self._status(22, "LUXminer versions"),
            "VERSION": [
                {
                    "API": "3.7",
                    "CompileTime": "Wed May 1 15:50:02 UTC 2024",
                    "LUXminer": LUXMINER_VERSION,
                    "Miner": LUXMINER_VERSION.split("-", 1)[0],
                    "Type": f"Antminer {self.model.name}",
                }
            ],
        }

    def _board_ghs(self) -> float:
        return self.ths * 1000.0 / self.model.hashboards

    def _devdetails(self, _: list[str]) -> Reply:
        boards = [
            {
                "ASC": board,
                "Chips": self.model.chips_per_board,
                "Cores": self.model.chips_per_board,
                "DEVDETAILS": board,
                "Driver": "luxminer",
                "Kernel": "",
                "Model": f"Antminer {self.model.name}",
                "Name": "ASC",
                "ID": board,
            }
            for board in range(self.model.hashboards)
        ]
        return {**self._status(69, "Device Details"), "DEVDETAILS": boards}

    def _devs(self, _: list[str]) -> Reply:
        hashing = self.state is MinerState.AWAKE
        boards = [
            {
                "ASC": board,
                "Name": "ASC",
                "ID": board,
                "Enabled": "Y",
                "Status": "Alive" if hashing else "Disabled",
                "Temperature": self._board_temp(),
                "MHS 5s": self._board_ghs() * 1000.0,
                "MHS av": self._board_ghs() * 1000.0,
                "Hardware Errors": 0,
            }
            for board in range(self.model.hashboards)
        ]
        return {**self._status(9, f"{self.model.hashboards} ASC(s)"), "DEVS": boards}

    def _elapsed_s(self) -> int:
        return int(self._clock() - self._started_at)

    def _summary(self, _: list[str]) -> Reply:
        ghs = self.ths * 1000.0
        return {
            **self._status(11, "Summary"),
            "SUMMARY": [
                {
                    "Elapsed": self._elapsed_s(),
                    "GHS 5s": ghs,
                    "GHS av": ghs,
                    "GHS 30m": ghs,
                    "Accepted": 0,
                    "Rejected": 0,
                    "Hardware Errors": 0,
                    "Utility": 0.0,
                    "Best Share": 0,
                }
            ],
        }

    def _board_temp(self) -> int:
        return 62 if self.state is MinerState.AWAKE else 30

    def _stats(self, _: list[str]) -> Reply:
        temp = self._board_temp()
        chips = "-".join([str(temp + 12)] * 4)
        pcb = "-".join([str(temp)] * 4)
        boards: dict[str, object] = {}
        for board in range(1, self.model.hashboards + 1):
            boards[f"chain_rate{board}"] = self._board_ghs()
            boards[f"chain_acn{board}"] = self.model.chips_per_board
            boards[f"temp_chip{board}"] = chips
            boards[f"temp_pcb{board}"] = pcb
        for fan in range(1, self.model.fans + 1):
            boards[f"fan{fan}"] = self._fan_rpm()
        return {
            **self._status(70, "CGMiner stats"),
            "STATS": [
                {
                    "BMMiner": "1.0.0",
                    "Miner": LUXMINER_VERSION.split("-", 1)[0],
                    "CompileTime": "Wed May 1 15:50:02 UTC 2024",
                    "Type": f"Antminer {self.model.name}",
                },
                {
                    "STATS": 0,
                    "ID": "BC50",
                    "Elapsed": self._elapsed_s(),
                    "GHS 5s": self.ths * 1000.0,
                    "GHS av": self.ths * 1000.0,
                    "total_rateideal": self.model.ths * 1000.0,
                    "rate_unit": "GH",
                    "miner_count": self.model.hashboards,
                    "fan_num": self.model.fans,
                    **boards,
                },
            ],
        }

    def _power(self, _: list[str]) -> Reply:
        return {
            **self._status(300, "Power"),
            "POWER": [{"PSU": not self._asleep, "Watts": round(self.watts)}],
        }

    def _mac(self) -> str:
        octets = ipaddress.ip_address(self.ip).packed[-4:]
        return "02:00:" + ":".join(f"{octet:02X}" for octet in octets)

    def _config(self, _: list[str]) -> Reply:
        return {
            **self._status(33, "CGMiner config"),
            "CONFIG": [
                {
                    "ASC Count": self.model.hashboards,
                    "PGA Count": 0,
                    "Pool Count": 1,
                    "Strategy": "Failover",
                    "Log Interval": 5,
                    "OS": "Linux",
                    "Hotplug": "None",
                    "MACAddr": self._mac(),
                    "Profile": "default",
                    "RedLed": "off",
                    "GreenLed": "on",
                    "IsAtmEnabled": False,
                    "CurtailMode": "Sleep" if self._asleep else "None",
                }
            ],
        }

    def _profiles(self, _: list[str]) -> Reply:
        return {
            **self._status(329, "Profiles"),
            "PROFILES": [
                {
                    "Profile Name": "default",
                    "Watts": round(self.model.watts),
                    "Hashrate": self.model.ths,
                    "IsTuned": False,
                    "Frequency": 525,
                    "Voltage": 13.4,
                    "Step": "0",
                }
            ],
        }

    def _pools(self, _: list[str]) -> Reply:
        hashing = self.state is MinerState.AWAKE
        return {
            **self._status(7, "1 Pool(s)"),
            "POOLS": [
                {
                    "POOL": 0,
                    "GROUP": 0,
                    "URL": "stratum+tcp://pool.invalid:3333",
                    "User": f"gridpilot.{self.ip.replace('.', 'x')}",
                    "Status": "Alive" if hashing else "Dead",
                    "Stratum Active": hashing,
                    "Priority": 0,
                    "Quota": 1,
                    "Accepted": 0,
                    "Rejected": 0,
                    "Get Failures": 0,
                    "Remote Failures": 0,
                }
            ],
        }

    def _groups(self, _: list[str]) -> Reply:
        return {
            **self._status(328, "Pool groups"),
            "GROUPS": [{"GROUP": 0, "Name": "default", "Quota": 1}],
        }

    def _fan_rpm(self) -> int:
        return 4800 if self.state is MinerState.AWAKE else 0

    def _fans(self, _: list[str]) -> Reply:
        rpm = self._fan_rpm()
        return {
            **self._status(202, f"{self.model.fans} Fan(s)"),
            "FANS": [
                {"ID": fan, "RPM": rpm, "Speed": 80 if rpm else 0} for fan in range(self.model.fans)
            ],
            "FANCTRL": [{"Mode": "Auto", "MinFans": 1, "Speed": -1}],
        }

    def _temps(self, _: list[str]) -> Reply:
        temp = self._board_temp()
        return {
            **self._status(201, f"{self.model.hashboards} Temp(s)"),
            "TEMPS": [
                {
                    "ID": board,
                    "Board": temp,
                    "TopLeft": temp,
                    "TopRight": temp,
                    "BottomLeft": temp,
                    "BottomRight": temp,
                }
                for board in range(self.model.hashboards)
            ],
        }

    def _tempctrl(self, _: list[str]) -> Reply:
        return {
            **self._status(325, "Temperature control"),
            "TEMPCTRL": [{"Mode": "Auto", "Target": 75, "Hot": 90, "Dangerous": 100}],
        }

    def _atm(self, _: list[str]) -> Reply:
        return {**self._status(339, "ATM configuration"), "ATM": [{"Enabled": False}]}

    def _session(self, _: list[str]) -> Reply:
        self._expire_session()
        return {
            **self._status(319, "Session information"),
            "SESSION": [{"SessionID": self._session_id}],
        }

    def _logon(self, _: list[str]) -> Reply:
        self._expire_session()
        if self._session_id:
            return self._status(317, "Another session is active", ok=False)
        self._session_id = secrets.token_urlsafe(6)
        self._session_used_at = self._clock()
        return {
            **self._status(316, "Session created"),
            "SESSION": [{"SessionID": self._session_id}],
        }

    def _logoff(self, _: list[str]) -> Reply:
        self._session_id = ""
        return self._status(318, "Session removed")

    def _kill(self, _: list[str]) -> Reply:
        self._session_id = ""
        return self._status(318, "Session killed")

    def _curtail(self, params: list[str]) -> Reply:
        action = params[0] if params else ""
        if action == "sleep":
            if not self.faults.fake_sleep:
                self.sleep()
            done = "sleep mode"
        elif action == "wakeup":
            self.wake()
            done = "wake up"
        else:
            return self._status(336, f"Invalid curtail action {action!r}", ok=False)
        return {**self._status(335, "Curtailment command sent"), "CURTAIL": [{"Action": done}]}

    # -- the network ----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on `ip:port`; `MinerSimError` if the address is taken or not on this host."""
        if self._server is not None:
            return
        self._closing = asyncio.Event()
        try:
            self._server = await asyncio.start_server(self._serve, self.ip, self.port)
        except OSError as error:
            raise MinerSimError(self.ip, self.port, error.strerror or str(error)) from error

    async def close(self) -> None:
        """Stop listening and drop every open connection, held ones unanswered."""
        if self._server is None:
            return
        self._server.close()
        self._closing.set()
        for writer in self._connections.values():
            # Dropped unanswered: a client still waiting reads the end of the stream.
            writer.transport.abort()
        # Each handler ends on its own once its connection is gone (cancelling one instead
        # would make asyncio log the cancellation as an error).
        await asyncio.gather(*self._connections)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # a connection callback always runs in its own task
        self._connections[task] = writer
        try:
            request = await _read_request(reader)
            if self.faults.no_answer:
                await reader.read()  # hold the connection until the client gives up
                return
            if self.faults.slow_s > 0 and await self._closes_within(self.faults.slow_s):
                return
            writer.write(json.dumps(self.answer(request)).encode())
            await writer.drain()
        except (ConnectionError, TimeoutError):
            pass  # the client left, or never finished its request: nothing to answer
        finally:
            del self._connections[task]
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    async def _closes_within(self, seconds: float) -> bool:
        """Wait `seconds`, or less if the miner is closing; whether it is."""
        with suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closing.wait()
        return self._closing.is_set()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """Read until the bytes so far parse as JSON (there is no terminator), or the client stops."""
    received = b""
    async with asyncio.timeout(REQUEST_TIMEOUT_S):
        while len(received) < MAX_REQUEST_BYTES:
            chunk = await reader.read(4096)
            if not chunk:
                break
            received += chunk
            try:
                json.loads(received.rstrip(b"\x00").decode())
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            break
    return received


class MinerFleet:
    """`count` simulated miners on consecutive addresses from `first_ip`, all on `port`.

    An async context manager: every miner listens inside the ``async with``. `models` are
    assigned in turn (the first miner gets the first model); the other settings apply to all.
    """

    def __init__(
        self,
        count: int,
        *,
        first_ip: str = "127.0.1.1",
        models: Sequence[MinerModel] = (S19J_PRO,),
        port: int = RPC_PORT,
        wake_s: float = DEFAULT_WAKE_S,
        sleep_watts: float = DEFAULT_SLEEP_WATTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if count < 1 or not models:
            raise ValueError(f"a fleet needs at least one miner and one model, got {count}")
        first = ipaddress.ip_address(first_ip)
        try:
            addresses = [str(first + offset) for offset in range(count)]
        except ipaddress.AddressValueError as error:
            raise ValueError(f"{count} addresses from {first_ip} run out of range") from error
        self.miners: list[SimulatedMiner] = [
            SimulatedMiner(
                address,
                model=models[index % len(models)],
                port=port,
                wake_s=wake_s,
                sleep_watts=sleep_watts,
                clock=clock,
            )
            for index, address in enumerate(addresses)
        ]

    @property
    def ips(self) -> list[str]:
        """The miners' addresses, in order."""
        return [miner.ip for miner in self.miners]

    def total_watts(self) -> float:
        """The fleet's draw now, in watts."""
        return sum(miner.watts for miner in self.miners)

    def total_ths(self) -> float:
        """The fleet's hashrate now, in TH/s."""
        return sum(miner.ths for miner in self.miners)

    async def start(self) -> None:
        """Start every miner; if one cannot listen, close those started and raise its error."""
        try:
            for miner in self.miners:
                await miner.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop every miner."""
        async with asyncio.TaskGroup() as group:
            for miner in self.miners:
                group.create_task(miner.close())

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def run_fleet(
    count: int,
    first_ip: str = "127.0.1.1",
    *,
    models: Sequence[MinerModel] = (S19J_PRO,),
    port: int = RPC_PORT,
    wake_s: float = DEFAULT_WAKE_S,
    out: TextIO | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve a fleet until `stop` is set (or until cancelled), having printed each miner's
    address, model and draw."""
    stream = sys.stdout if out is None else out
    async with MinerFleet(
        count, first_ip=first_ip, models=models, port=port, wake_s=wake_s
    ) as fleet:
        for miner in fleet.miners:
            model = miner.model
            print(f"{miner.ip}:{miner.port} {model.name} {model.watts:.0f} W", file=stream)
        print(
            f"{count} simulated LuxOS miners up, {fleet.total_watts():.0f} W in all",
            file=stream,
            flush=True,
        )
        await (asyncio.Event() if stop is None else stop).wait()
