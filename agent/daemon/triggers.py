"""What wakes the daemon's two decision loops: a plan wanted (and why), and a look by the guard.

Every part that learns something the planner or the guard must act on (a new input, an
override, a shed, a command the plant did not follow, safe mode left) asks here; the planning
cycle and the guard loop wait here. Nothing else is shared between them.
"""

from __future__ import annotations

import asyncio


class Triggers:
    """The planner's and the guard's wake-ups. `replan` is set while a plan is wanted, with
    `reason` saying why (the latest request's); `guard_check` while the guard should look."""

    def __init__(self) -> None:
        self.replan = asyncio.Event()
        self.reason = "first plan"
        self.guard_check = asyncio.Event()
        self.planned = False  # whether any plan has been made yet

    def request_plan(self, reason: str) -> None:
        """Ask the planning cycle for a plan now."""
        self.reason = reason
        self.replan.set()

    def request_first_plan(self) -> None:
        """Ask for a plan if none has been made yet: the inputs it lacked may be here now."""
        if not self.planned:
            self.request_plan("first plan")

    def interval_due(self) -> None:
        """The planning interval passed with no request: the next plan is for the interval."""
        self.reason = "interval"

    def take_reason(self) -> str:
        """Why the plan about to be made is made; the next one is for the interval, unless
        asked for again."""
        reason, self.reason = self.reason, "interval"
        return reason

    def plan_made(self) -> None:
        """Said by the planning cycle once a plan is made."""
        self.planned = True

    def check_guard(self) -> None:
        """Ask the guard to look at the site's draw against its cap."""
        self.guard_check.set()
