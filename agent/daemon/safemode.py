"""Safe mode: what the agent does while a feed it decides on has gone stale.

When the meter (`meter_stale_after_s`), the real-time price (`price_stale_after_s`) or the
hashprice (`hashprice_stale_after_s`) is stale, the agent makes no plan; GPUs stay as they are;
ASICs are held to `safe_asic_share` of the limit less margin, and never to more than the GPUs
leave under it at their commanded draw (at full power for nodes not curtailed: with the meter
stale, the commands are all the agent knows), most efficient first, never woken, groups under
an operator's override left as they are held. It is announced on the
mode topic (`{"mode": "safe", "stale": [...]}`), in the log (`mode.safe`) and in
`gridpilot_mode`, and left, with a fresh plan on a fresh horizon, as soon as every feed is
fresh again. The guard keeps running in safe mode whenever the meter is fresh.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from gridpilot.adapters.actuation import AsicCommand, Command
from gridpilot.agent.daemon.commands import Sender
from gridpilot.agent.daemon.metrics import Metrics
from gridpilot.agent.daemon.mode import Mode
from gridpilot.agent.daemon.setpoints import Setpoints
from gridpilot.agent.daemon.state import SiteState
from gridpilot.agent.guard import shed_order
from gridpilot.agent.settings import Settings
from gridpilot.optimizer.problem import AsicGroup

_log = structlog.get_logger("gridpilot.daemon")


class SafeMode:
    """Enters and leaves safe mode as `update` is told which feeds are stale. `announce`
    publishes the mode (the publisher's); `replan_afresh(reason)` asks for a plan on a fresh
    horizon (the planning cycle's)."""

    def __init__(
        self,
        settings: Settings,
        *,
        mode: Mode,
        state: SiteState,
        setpoints: Setpoints,
        commands: Sender,
        announce: Callable[[], Awaitable[None]],
        replan_afresh: Callable[[str], None],
        metrics: Metrics,
    ) -> None:
        self._share = settings.agent.safe_asic_share
        self._shadow = settings.agent.shadow
        self._limit_watts = settings.site.interconnect_watts - settings.site.margin_watts
        self.mode = mode
        self._state = state
        self._setpoints = setpoints
        self._commands = commands
        self._announce = announce
        self._replan_afresh = replan_afresh
        self._metrics = metrics
        metrics.set_mode("shadow" if self._shadow else "normal")

    async def update(self, stale: tuple[str, ...], ages_s: dict[str, float]) -> None:
        """Safe while any feed is `stale` (`ages_s`: each feed's age, for the log)."""
        if stale and not self.mode.safe:
            await self._enter(stale, ages_s)
        elif stale and stale != self.mode.stale:
            self.mode.stale = stale
            await self._announce()
        elif not stale and self.mode.safe:
            await self._leave()

    async def _enter(self, stale: tuple[str, ...], ages_s: dict[str, float]) -> None:
        self.mode.name, self.mode.stale = "safe", stale
        self._metrics.set_mode("safe")
        _log.warning(
            "mode.safe",
            stale=list(stale),
            ages_s={k: round(v, 1) for k, v in ages_s.items()},
            asic_share=self._share,
        )
        await self._announce()
        await self._commands.send(self._holds(stale), plan="safe", wait=False)

    def _holds(self, stale: tuple[str, ...]) -> list[Command]:
        """The miners held to the safe share of the limit, or what the GPUs leave under it if
        that is less, most efficient first: the miners worth the most per watt keep running;
        none is woken."""
        asic: tuple[AsicGroup, ...] = self._setpoints.asic
        units_on = self._setpoints.units_on
        gpu_watts = sum(self._setpoints.gpu_power(i).watts for i in range(len(self._setpoints.gpu)))
        budget = min(self._share * self._limit_watts, self._limit_watts - gpu_watts)
        commands: list[Command] = []
        for i in reversed(shed_order(asic)):
            group = asic[i]
            unit_watts = group.watts_per_unit * group.overhead_factor
            keep = min(int(units_on[i]), max(0, int(budget // unit_watts)))
            budget -= keep * unit_watts
            if group.name in self._state.overrides:
                continue
            if keep != units_on[i]:
                commands.append(
                    AsicCommand(
                        group.name,
                        keep,
                        self._setpoints.asic_watts_per_unit(i),
                        f"safe mode: {', '.join(stale)} stale",
                        "safe",
                    )
                )
        return commands

    async def _leave(self) -> None:
        self.mode.name, self.mode.stale = "normal", ()
        self._metrics.set_mode("shadow" if self._shadow else "normal")
        _log.info("mode.normal")
        await self._announce()
        self._replan_afresh("fresh data after safe mode")
