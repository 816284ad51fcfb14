"""Housekeeping, once a second: signal ages and safe mode, what has run out, the ledger's care.

Each tick: the money counters (agent.daemon.gauges); each feed's age, and safe mode entered or
left on it (agent.daemon.safemode; a stale forecast is only logged: the planner forecasts on
its own); grid events that have ended and overrides that have expired are dropped (the
overrides cleared on the broker) and a plan asked for; while an event is active the guard
looks again (an announced event's cap applies from its start). Every minute the allowance is
accounted, every day the ledger is pruned of what is older than `ledger_keep_days`, and at
half the unit's WatchdogSec systemd is told the loop is alive: from this loop, so that a loop
stuck anywhere stops the pings.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from datetime import datetime, timedelta

import structlog

from gridpilot.agent.daemon import systemd
from gridpilot.agent.daemon.allowance import Allowance
from gridpilot.agent.daemon.clock import Clock
from gridpilot.agent.daemon.gauges import PlantGauges
from gridpilot.agent.daemon.ledger import LedgerError
from gridpilot.agent.daemon.metrics import Metrics
from gridpilot.agent.daemon.overrides import Overrides
from gridpilot.agent.daemon.recorder import Recorder
from gridpilot.agent.daemon.safemode import SafeMode
from gridpilot.agent.daemon.state import SiteState
from gridpilot.agent.daemon.triggers import Triggers
from gridpilot.agent.settings import Settings

_log = structlog.get_logger("gridpilot.daemon")

ACCOUNT_EVERY_S = 60.0
PRUNE_EVERY_S = 86_400.0


class Housekeeping:
    """The once-a-second loop (`run`) and its tick (`once`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        state: SiteState,
        safe_mode: SafeMode,
        overrides: Overrides,
        allowance: Allowance,
        gauges: PlantGauges,
        triggers: Triggers,
        recorder: Recorder,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        config = settings.agent
        self._meters = config.meters
        self._keep_days = config.ledger_keep_days
        self._stale_after_s = {
            "meter": config.meter_stale_after_s,
            "price": config.price_stale_after_s,
            "hashprice": config.hashprice_stale_after_s,
        }
        self._state = state
        self._safe_mode = safe_mode
        self._overrides = overrides
        self._allowance = allowance
        self._gauges = gauges
        self._triggers = triggers
        self._recorder = recorder
        self._metrics = metrics
        self._clock = clock
        self._forecast_stale_after_s = config.forecast_stale_after_s
        self._forecast_stale = False
        for signal, after in self._stale_after_s.items():
            metrics.signal_stale_after.labels(signal).set(after)
        metrics.signal_stale_after.labels("forecast").set(config.forecast_stale_after_s)

    async def run(self) -> None:
        """Tick once a second of the agent's clock until cancelled; account, prune and ping
        systemd's watchdog when each is due (by the wall, scaled by the clock's speed)."""
        speed = self._clock.speed
        last_account = time.monotonic()
        last_prune = -float("inf")
        watchdog_s = systemd.watchdog_period_s()
        last_watchdog = -float("inf")
        while True:
            await self.once()
            tick = time.monotonic()
            if watchdog_s is not None and tick - last_watchdog >= watchdog_s:
                systemd.notify("WATCHDOG=1")
                last_watchdog = tick
            if tick - last_account >= ACCOUNT_EVERY_S / speed:
                await self._allowance.account_or_say(self._clock.now())
                last_account = tick
            if tick - last_prune >= PRUNE_EVERY_S / speed:
                cutoff = self._clock.now() - timedelta(days=self._keep_days)
                prune = self._recorder.call(self._recorder.ledger.prune, cutoff)
                await self._ledgered("prune", prune)
                last_prune = tick
            await self._clock.sleep(1.0)

    async def _ledgered(self, action: str, work: Awaitable[object]) -> None:
        """`work` on the ledger; a ledger that cannot be written (a full disk, a read-only
        file) is said and counted, and the loop goes on."""
        try:
            await work
        except LedgerError as error:
            self._recorder.failed(action, error)

    async def once(self) -> None:
        """One tick."""
        now = self._clock.now()
        self._gauges.money(now)
        state = self._state
        ages = {
            "meter": state.meter_age_s(self._meters, now),
            "price": state.age_s(state.price, now),
            "hashprice": state.age_s(state.hashprice, now),
        }
        for signal, age in ages.items():
            self._metrics.signal_age.labels(signal).set(age)
        self._forecast_age(now)
        stale = tuple(s for s, age in ages.items() if age > self._stale_after_s[s])
        await self._safe_mode.update(stale, ages)
        ended, expired = state.drop_past(now)
        await self._overrides.expired(expired)
        if ended or expired:
            self._triggers.request_plan("override expired" if expired else "grid event ended")
        if state.active_events(now):
            self._triggers.check_guard()  # an announced event's cap applies from its start

    def _forecast_age(self, now: datetime) -> None:
        """The forecast's age (from its issue), once one has come, and a log line when it goes
        stale and when a new one comes: no safe mode, the planner forecasts on its own."""
        received = self._state.forecast_received
        if received is None:
            return
        age = (now - received).total_seconds()
        self._metrics.signal_age.labels("forecast").set(age)
        stale = age > self._forecast_stale_after_s
        if stale != self._forecast_stale:
            self._forecast_stale = stale
            if stale:
                _log.warning("forecast.stale", age_s=round(age, 1), issued=received.isoformat())
            else:
                _log.info("forecast.fresh", issued=received.isoformat())
