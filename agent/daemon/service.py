"""`gridpilot run` around the daemon: the ledger opened, signals wired, a clean exit.

The first SIGTERM or SIGINT asks the daemon to stop cleanly (status `offline`, allowance
accounted, devices left in their last commanded state); a second one exits at once.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys

import structlog
from prometheus_client import CollectorRegistry

from gridpilot.agent.daemon.clock import Clock, ScaledClock, SystemClock
from gridpilot.agent.daemon.daemon import Daemon
from gridpilot.agent.daemon.ledger import Ledger, LedgerError
from gridpilot.agent.daemon.metrics import Metrics
from gridpilot.agent.settings import Settings

# sysexits.h EX_CANTCREAT: the ledger cannot be opened or created.
EX_CANTCREAT = 73
# What a second signal exits with: 128 + SIGINT, as a shell reports an interrupted command.
EXIT_AT_ONCE = 130

_log = structlog.get_logger("gridpilot.service")


def serve(settings: Settings, *, time_scale: float = 1.0) -> int:
    """Run the agent until a signal; returns the process's exit code."""
    try:
        ledger = Ledger.open(settings.agent.ledger_path)
    except LedgerError as error:
        print(f"gridpilot: {error}", file=sys.stderr)
        return EX_CANTCREAT
    clock: Clock = SystemClock() if time_scale == 1.0 else ScaledClock(time_scale)
    try:
        asyncio.run(_serve(settings, ledger, clock))
    finally:
        ledger.close()
    return 0


async def _serve(settings: Settings, ledger: Ledger, clock: Clock) -> None:
    daemon = Daemon(settings, ledger=ledger, clock=clock, metrics=Metrics(CollectorRegistry()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(number: int) -> None:
        if stop.is_set():
            _log.warning("agent.exit_now", signal=signal.Signals(number).name)
            os._exit(EXIT_AT_ONCE)
        _log.info("agent.stopping", signal=signal.Signals(number).name)
        stop.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal, number)
    # What is loaded by now (modules, settings, the site) is most of the heap and lives as long
    # as the process. A full collection walks all of it, 11-13 ms on the reference machine, and
    # at thousands of readings a second one came often enough to set the guard's p99 (the
    # load trial of `bench reliability`). Frozen, collections walk only what was made since.
    gc.collect()
    gc.freeze()
    await daemon.run(stop)
