"""The guard's loop: the site kept under its cap within the reading that calls for it.

Woken by each meter reading and grid event (and once a second while an event is active, for an
event announced ahead whose cap applies from its start), it compares the site's draw (the sum
of its meters) with its cap: the interconnect less margin, or an active event's lower cap. Over
it, miners are put to sleep at once along the merit order (agent.guard), least efficient first,
groups under an operator's override last, without the solver; then a new plan is asked for
(unless `replan_after_guard` is off). For `guard_settle_s` of wall time after a shed, what it
shed is credited against readings that do not show it yet, so one excursion is not shed twice.
In shadow mode the commands are remembered, not carried out (agent.daemon.commands).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import numpy as np
import structlog

from gridpilot.adapters.actuation import AsicCommand, Command
from gridpilot.agent.daemon.clock import Clock
from gridpilot.agent.daemon.commands import Sender
from gridpilot.agent.daemon.metrics import Metrics
from gridpilot.agent.daemon.setpoints import IntArray, Setpoints
from gridpilot.agent.daemon.state import SiteState
from gridpilot.agent.daemon.triggers import Triggers
from gridpilot.agent.guard import shed, shed_order
from gridpilot.agent.settings import Settings

_log = structlog.get_logger("gridpilot.daemon")


class GuardLoop:
    """Sheds miners through `commands` whenever `triggers.guard_check` is set and the site is
    over its cap. `actions` counts the sheds; `shed_credit` holds (monotonic s, watts) of the
    recent ones. `monotonic` is the wall's settling clock (injectable for tests)."""

    def __init__(
        self,
        settings: Settings,
        *,
        state: SiteState,
        setpoints: Setpoints,
        commands: Sender,
        triggers: Triggers,
        metrics: Metrics,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit_watts = settings.site.interconnect_watts - settings.site.margin_watts
        self._meters = settings.agent.meters
        self._settle_s = settings.agent.guard_settle_s
        self._replan = settings.agent.replan_after_guard
        self._shadow = settings.agent.shadow
        self._state = state
        self._setpoints = setpoints
        self._commands = commands
        self._triggers = triggers
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self.actions = 0
        self.shed_credit: list[tuple[float, float]] = []
        metrics.site_limit.set(self.cap_watts(clock.now()))

    async def run(self) -> None:
        """Look each time the guard is asked to, until cancelled."""
        check = self._triggers.guard_check
        while True:
            await check.wait()
            check.clear()
            await self.once()

    def cap_watts(self, now: datetime) -> float:
        """The cap now: the limit less margin, or an active grid event's lower cap."""
        cap = self._limit_watts
        for event in self._state.active_events(now):
            cap = min(cap, event.max_site_watts)
        return cap

    async def once(self) -> None:
        """Shed miners if the latest reading is over the cap; does nothing otherwise."""
        reading = self._state.site_watts(self._meters)
        if reading is None:
            return
        cap = self.cap_watts(self._clock.now())
        self._metrics.site_power.set(reading)
        self._metrics.site_limit.set(cap)
        tick = self._monotonic()
        self.shed_credit = [(t, w) for t, w in self.shed_credit if tick - t < self._settle_s]
        credit = sum(w for _, w in self.shed_credit)
        if reading - credit <= cap:
            return
        units_on = self._setpoints.units_on
        after = shed(
            self._setpoints.asic,
            units_on,
            reading_watts=reading - credit,
            cap_watts=cap,
            order=self._order(),
        )
        changed = np.flatnonzero(after != units_on)
        shed_watts = self._watts(units_on - after, changed)
        self.actions += 1
        self._metrics.guard_actions.inc()
        self._metrics.guard_shed_units.inc(int((units_on - after).sum()))
        _log.warning(
            "guard.shed",
            reading_watts=reading,
            cap_watts=cap,
            credit_watts=credit,
            groups=len(changed),
            shed_watts=shed_watts,
            shadow=self._shadow,
        )
        if not changed.size:
            return  # nothing left awake to shed
        self.shed_credit.append((tick, shed_watts))
        label = f"guard-{self.actions}"
        reason = f"guard: site at {reading / 1e6:.3f} MW over its cap of {cap / 1e6:.3f} MW"
        # Handed to the devices' task, not waited for: the next reading is looked at at once.
        await self._commands.send(self._shed(after, changed, reason, label), plan=label, wait=False)
        if self._replan:
            self._triggers.request_plan("guard shed")

    def _order(self) -> list[int]:
        """Least efficient first; groups an operator holds only when nothing else is left."""
        setpoints = self._setpoints
        held = [setpoints.asic_index[g] for g in self._state.overrides if g in setpoints.asic_index]
        return [i for i in shed_order(setpoints.asic) if i not in held] + held

    def _watts(self, fewer: IntArray, changed: IntArray) -> float:
        """What `fewer` miners per group drew at the meter, over the `changed` groups."""
        asic = self._setpoints.asic
        return float(
            sum(fewer[i] * asic[i].watts_per_unit * asic[i].overhead_factor for i in changed)
        )

    def _shed(self, after: IntArray, changed: IntArray, reason: str, label: str) -> list[Command]:
        setpoints = self._setpoints
        return [
            AsicCommand(
                setpoints.asic[i].name,
                int(after[i]),
                setpoints.asic_watts_per_unit(int(i)),
                reason,
                label,
            )
            for i in changed
        ]
