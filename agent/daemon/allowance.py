"""Each AI contract's curtailment allowance, kept against the SLA ledger.

An interruption opens in the ledger when a GPU group is first commanded to cap or pause nodes
and closes when it runs at full power again; its length, from its real start also across a
restart, is what the planner holds against the contract's longest event. The allowance is
charged with the node-hours curtailed since the last accounting (a mark kept in the ledger),
split at a billing month's end when the interval crosses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gridpilot.adapters.actuation import Command, GpuCommand
from gridpilot.agent.daemon.ledger import LedgerError
from gridpilot.agent.daemon.metrics import Metrics
from gridpilot.agent.daemon.recorder import Recorder
from gridpilot.agent.daemon.setpoints import Setpoints
from gridpilot.optimizer.economics import SECONDS_PER_HOUR
from gridpilot.optimizer.problem import Problem


class Allowance:
    """Interruptions and allowance of `site`'s contracts, from the GPU setpoints, written
    through `recorder`."""

    def __init__(
        self, *, site: Problem, setpoints: Setpoints, recorder: Recorder, metrics: Metrics
    ) -> None:
        self._site = site
        self._setpoints = setpoints
        self._recorder = recorder
        self._ledger = recorder.ledger
        self._metrics = metrics
        self.interruptions: dict[str, tuple[int, datetime]] = {}  # group -> (ledger id, start)
        for contract in site.contracts:
            total_s = contract.allowance_node_hours * SECONDS_PER_HOUR  # base units
            metrics.allowance_total.labels(contract.name).set(total_s)
            metrics.allowance_used.labels(contract.name).set(0.0)
            metrics.allowance_left.labels(contract.name).set(total_s)

    async def restore(self) -> None:
        """Take up the interruptions the ledger says are still running."""
        for interruption in await self._recorder.call(self._ledger.open_interruptions):
            if interruption.group in self._setpoints.gpu_index:
                self.interruptions[interruption.group] = (interruption.id, interruption.start)

    async def track(self, commands: Sequence[Command], now: datetime) -> None:
        """Open or close the interruption of each GPU group `commands` curtail or release. One
        the ledger cannot take is said and counted, and tried again with the group's next
        command (its allowance is charged by `account` from the setpoints all the same)."""
        for command in commands:
            if not isinstance(command, GpuCommand):
                continue
            try:
                await self._track(command, now)
            except LedgerError as error:
                self._recorder.failed(
                    "interruption", error, event="interruption.not_recorded", group=command.group
                )

    async def _track(self, command: GpuCommand, now: datetime) -> None:
        nodes = command.capped_nodes + command.paused_nodes
        running = self.interruptions.get(command.group)
        if nodes and running is None:
            gpu = self._site.gpu_groups[self._setpoints.gpu_index[command.group]]
            event_id = await self._recorder.call(
                self._ledger.open_interruption,
                gpu.contract,
                command.group,
                now,
                nodes,
                command.reason,
            )
            self.interruptions[command.group] = (event_id, now)
        elif not nodes and running is not None:
            await self._recorder.call(self._ledger.close_interruption, running[0], now)
            del self.interruptions[command.group]

    def curtailed_for_s(self, group: str, now: datetime) -> float:
        """How long `group` has been curtailed without a break (0 when it is not)."""
        running = self.interruptions.get(group)
        return 0.0 if running is None else max(0.0, (now - running[1]).total_seconds())

    async def account(self, now: datetime) -> None:
        """Charge each contract's allowance with the node-hours curtailed since the last
        accounting, split at the month's end when the interval crosses it (in one ledger
        transaction with the mark: `Ledger.account_allowance`)."""
        curtailed: dict[str, int] = {}
        for i, group in enumerate(self._site.gpu_groups):
            count = self._setpoints.curtailed_nodes(i)
            if count:
                curtailed[group.contract] = curtailed.get(group.contract, 0) + count
        await self._recorder.call(self._ledger.account_allowance, curtailed, now)
        used = await self._recorder.call(self._ledger.used_node_hours, now)
        for contract in self._site.contracts:
            spent = used.get(contract.name, 0.0)
            left = max(0.0, contract.allowance_node_hours - spent)
            self._metrics.allowance_used.labels(contract.name).set(spent * SECONDS_PER_HOUR)
            self._metrics.allowance_left.labels(contract.name).set(left * SECONDS_PER_HOUR)

    async def account_or_say(self, now: datetime) -> bool:
        """`account`; a ledger that cannot take it (a full disk, a read-only file) is said and
        counted, and False. The mark has not moved: the next accounting that succeeds charges
        the whole span."""
        try:
            await self.account(now)
        except LedgerError as error:
            self._recorder.failed("account", error)
            return False
        return True

    async def used_node_hours(self, now: datetime) -> dict[str, float]:
        """Node-hours each contract has used in the billing month of `now`."""
        return await self._recorder.call(self._ledger.used_node_hours, now)
