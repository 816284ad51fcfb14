"""What the agent says on the broker, and the canonical line it logs for each plan.

`status` (`online`; `offline` on a clean stop, and the broker's last will otherwise), `mode`,
the `plan` summary, each contract's `notice` of the next planned pause, and the clearing of
an expired override's retained message; all retained, through the link's `publish`. Each plan
also gets one `plan.made` line in the log: why it was made, what was decided and why groups
are curtailed (the audit a person reads).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import structlog

from gridpilot.adapters.actuation import Publish
from gridpilot.agent.daemon.clock import Clock
from gridpilot.agent.daemon.mode import Mode
from gridpilot.agent.daemon.setpoints import Setpoints
from gridpilot.agent.daemon.topics import Topics
from gridpilot.optimizer.plan import Plan
from gridpilot.optimizer.problem import Problem

_log = structlog.get_logger("gridpilot.daemon")


@dataclass(frozen=True, slots=True)
class PlanMade:
    """One planning cycle's outcome, as it is published and logged."""

    plan: Plan
    label: str  # "plan-<ledger id>"
    at: datetime
    reason: str  # why the cycle ran
    decision: str  # why the planner solved again, or did not
    fresh: bool
    step: int  # the plan's step that covers `at`
    price_usd_per_mwh: float  # the latest settled price the plan started from
    changed: int  # commands sent
    gpu_rows: tuple[int, ...]  # the site's GPU groups the plan decided, in its order


class Publisher:
    """Publishes through `publish` (the broker link's) on `topics`; reads the setpoints and
    the mode it reports from the parts that keep them."""

    def __init__(
        self,
        publish: Publish,
        *,
        topics: Topics,
        site: Problem,
        setpoints: Setpoints,
        mode: Mode,
        clock: Clock,
        shadow: bool,
    ) -> None:
        self._publish = publish
        self._topics = topics
        self._site = site
        self._setpoints = setpoints
        self._mode = mode
        self._clock = clock
        self._shadow = shadow
        self._notices: dict[str, tuple[str | None, int]] = {}  # contract -> (start, nodes)

    async def connected(self) -> None:
        """On every connect: status `online` and the mode."""
        await self._publish(self._topics.status, b"online")
        await self.mode()

    async def offline(self) -> None:
        """The will fires only on an unclean end: on a clean one the agent says it itself."""
        await self._publish(self._topics.status, b"offline")

    async def mode(self) -> None:
        """The mode now: `safe` (with the stale feeds), `shadow` or `normal`."""
        shown = "safe" if self._mode.safe else ("shadow" if self._shadow else "normal")
        at = self._clock.now().isoformat()
        payload = {"mode": shown, "stale": list(self._mode.stale), "at": at}
        await self._publish(self._topics.mode, json.dumps(payload).encode())

    async def clear_override(self, group: str) -> None:
        """Clear `group`'s retained override, so that a restarted agent does not see it again."""
        await self._publish(self._topics.override_prefix + group, b"")

    async def plan_made(self, made: PlanMade) -> None:
        """The plan's summary, the notices it changes, and its `plan.made` line."""
        plan, setpoints = made.plan, self._setpoints
        summary = {
            "plan": made.label,
            "at": made.at.isoformat(),
            "reason": made.reason,
            "fresh": made.fresh,
            "status": plan.status.value,
            "solver": plan.solver,
            "solve_s": round(plan.total_s, 3),
            "profit_usd": round(float(plan.outcome.profit_usd), 2),
            "asic_units_on": int(setpoints.units_on.sum()),
            "gpu_capped_nodes": int(setpoints.gpu_capped.sum()),
            "gpu_paused_nodes": int(setpoints.gpu_paused.sum()),
            "shadow": self._shadow,
        }
        await self._publish(self._topics.plan, json.dumps(summary).encode())
        await self._publish_notices(plan, made.gpu_rows, made.label)
        _log.info(
            "plan.made",
            plan=made.label,
            reason=made.reason,
            decision=made.decision,
            fresh=made.fresh,
            status=plan.status.value,
            solve_s=round(plan.total_s, 3),
            profit_usd=round(float(plan.outcome.profit_usd), 2),
            price_usd_per_mwh=round(made.price_usd_per_mwh, 2),
            asic_units_on=int(setpoints.units_on.sum()),
            gpu_curtailed_nodes=int((setpoints.gpu_capped + setpoints.gpu_paused).sum()),
            changed=made.changed,
            curtailed_because=_reasons(plan, made.step),
        )

    async def _publish_notices(self, plan: Plan, gpu_rows: tuple[int, ...], label: str) -> None:
        """Tell each contract with a notice period when the plan next pauses its nodes, each
        time that changes (retained: a customer's scheduler that subscribes late still sees it)."""
        gpu = self._site.gpu_groups
        for contract in self._site.contracts:
            if contract.notice_s <= 0:
                continue
            rows = [k for k, i in enumerate(gpu_rows) if gpu[i].contract == contract.name]
            paused = plan.schedule.gpu_paused_nodes[rows].sum(axis=0) if rows else np.zeros(1)
            upcoming = np.flatnonzero(paused > 0)
            first = int(upcoming[0]) if upcoming.size else None
            start = plan.problem.step_start(first).isoformat() if first is not None else None
            nodes = int(paused[first]) if first is not None else 0
            if self._notices.get(contract.name) == (start, nodes):
                continue
            payload = {
                "plan": label,
                "start": start,
                "paused_nodes": nodes,
                "notice_s": contract.notice_s,
            }
            topic = self._topics.notice.format(contract=contract.name)
            if await self._publish(topic, json.dumps(payload).encode()):
                self._notices[contract.name] = (start, nodes)


def _reasons(plan: Plan, step: int, most: int = 4) -> dict[str, int]:
    """Why groups are curtailed in `step`: each distinct reason and how many groups it holds
    (the `most` commonest, so the line stays one line on a site of a thousand groups)."""
    counts: dict[str, int] = {}
    texts = [a.reason for a in plan.asic_setpoints(step)]
    texts += [g.reason for g in plan.gpu_setpoints(step)]
    for text in texts:
        if text:
            counts[text] = counts.get(text, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1])[:most])
