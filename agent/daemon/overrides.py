"""Operators' overrides: a hold on one group until a time, from `override/<group>`.

A hold is checked against the site (a group it has; a cap that says what it caps to; no more
miners than the group has), commanded at once, and planned around: the planning cycle takes
the group out of the problem and its draw off the limit and off every grid event's cap, and
the guard sheds it only when nothing else is left. An empty retained message clears it; on
expiry the agent clears the retained message itself and plans again.
"""

from __future__ import annotations

import structlog

from gridpilot.adapters.payloads import Override, OverrideClear, Rejected
from gridpilot.agent.daemon.commands import Sender
from gridpilot.agent.daemon.publisher import Publisher
from gridpilot.agent.daemon.setpoints import Setpoints
from gridpilot.agent.daemon.state import SiteState
from gridpilot.agent.daemon.triggers import Triggers

_log = structlog.get_logger("gridpilot.daemon")


class Overrides:
    """Keeps `state.overrides`: sets and clears holds as operators send them (`apply`) and
    lifts the expired ones (`expired`)."""

    def __init__(
        self,
        *,
        state: SiteState,
        setpoints: Setpoints,
        commands: Sender,
        publisher: Publisher,
        triggers: Triggers,
    ) -> None:
        self._state = state
        self._setpoints = setpoints
        self._commands = commands
        self._publisher = publisher
        self._triggers = triggers

    async def apply(self, override: Override | OverrideClear) -> None:
        """Set or clear one hold. Raises `Rejected` for a hold the site cannot honour."""
        group = override.group
        if not self._setpoints.knows(group):
            raise Rejected("unknown_name", f"{group!r} is not a group of this site")
        if isinstance(override, OverrideClear):
            if self._state.overrides.pop(group, None) is not None:
                _log.info("override.cleared", group=group)
                self._triggers.request_plan(f"override of {group} cleared")
            return
        self._check(override)
        self._state.overrides[group] = override
        _log.info(
            "override.set",
            group=group,
            mode=override.mode,
            until=override.until.isoformat(),
            by=override.by,
        )
        # Not waited for: this runs in the broker's message loop, which meter readings share.
        await self._commands.send(
            [self._setpoints.override_command(override)], plan="override", wait=False
        )
        self._triggers.request_plan(f"override of {group}")

    def _check(self, override: Override) -> None:
        group, setpoints = override.group, self._setpoints
        miners = group in setpoints.asic_index
        if miners and override.mode == "cap" and override.units_on is None:
            raise Rejected("schema", f"{group} is a miner group: a cap gives units_on")
        if (
            group in setpoints.gpu_index
            and override.mode == "cap"
            and override.power_cap_watts is None
        ):
            raise Rejected("schema", f"{group} is a GPU group: a cap gives power_cap_watts")
        if miners and (override.units_on or 0) > setpoints.asic[setpoints.asic_index[group]].units:
            raise Rejected("out_of_range", f"{group} has fewer than {override.units_on} miners")

    async def expired(self, overrides: list[Override]) -> None:
        """Lift holds that have run out (already dropped from the state): each is logged and
        its retained message cleared."""
        for override in overrides:
            _log.info("override.expired", group=override.group, until=override.until.isoformat())
            await self._publisher.clear_override(override.group)
