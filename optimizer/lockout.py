"""Minimum off time across plans: when each group's sleeping miners went to sleep.

The solver keeps a miner asleep for its group's `min_off_s` within one plan; across plans, the
plant's own record of when its units went to sleep says which may wake. `SleepRecord` is that
record, kept by the simulated plant (which refuses a wake too soon, as a controller's lockout
would) and by the daemon's setpoints, and handed to the planner as each group's locked units
(`AsicGroup.units_locked_off` until `locked_off_until_s`).

Times are seconds on any one clock (a replay's seconds since its start, the daemon's epoch
seconds). Units asleep when the record starts are free to wake: nothing says when they went
to sleep.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from gridpilot.optimizer.problem import FloatArray

IntArray = npt.NDArray[np.int64]


class SleepRecord:
    """Per group (`units` each, `min_off_s` each), its recorded sleepers as [time they went
    to sleep, how many], oldest first."""

    def __init__(self, units: Sequence[int], min_off_s: Sequence[float]) -> None:
        self._units = [int(u) for u in units]
        self._min_off_s = [float(s) for s in min_off_s]
        self._asleep: list[list[list[float]]] = [[] for _ in self._units]
        # Per group, the latest moment any recorded sleeper's minimum off time ends (-inf:
        # none recorded). It only grows while the group has sleepers, so a moment past it
        # has none locked: `locked` skips such groups, as it runs every interval of a replay.
        self._locked_until = [-np.inf for _ in self._units]

    def change(
        self, before: IntArray, wanted: IntArray, at_s: float, *, force: bool = False
    ) -> IntArray:
        """Units awake from `at_s` on when `wanted` follows `before`: units that go to sleep
        are recorded; a wake takes only units free to wake (those asleep from before the
        record, then the longest asleep), so a group wakes fewer than wanted while the rest
        are locked. Returns the units awake. With `force` (an operator's override) every
        wanted unit wakes, the locked ones last."""
        result = np.asarray(wanted, dtype=np.int64).copy()
        for i in np.flatnonzero(result != before).tolist():
            cohorts = self._asleep[i]
            change = int(result[i]) - int(before[i])
            if change < 0:
                cohorts.append([at_s, float(-change)])
                self._locked_until[i] = max(self._locked_until[i], at_s + self._min_off_s[i])
                continue
            # Sleepers the record does not know (asleep from before it) go first.
            unknown = self._units[i] - int(before[i]) - int(sum(n for _, n in cohorts))
            woken = min(change, max(unknown, 0))
            while (
                woken < change
                and cohorts
                and (force or cohorts[0][0] + self._min_off_s[i] <= at_s + 1e-9)
            ):
                take = min(int(cohorts[0][1]), change - woken)
                cohorts[0][1] -= take
                woken += take
                if cohorts[0][1] == 0:
                    cohorts.pop(0)
            if not cohorts:
                self._locked_until[i] = -np.inf
            result[i] = int(before[i]) + woken
        return result

    def locked(self, at_s: float) -> tuple[IntArray, FloatArray]:
        """Per group, the units that may not wake at `at_s` and the seconds until the last of
        them may (0 where none is locked)."""
        counts = np.zeros(len(self._units), dtype=np.int64)
        for_s = np.zeros(len(self._units))
        if max(self._locked_until, default=-np.inf) - at_s <= 1e-9:
            return counts, for_s  # none locked, as most of the time
        for i, cohorts in enumerate(self._asleep):
            if self._locked_until[i] - at_s <= 1e-9:
                continue
            waits = [(since + self._min_off_s[i] - at_s, n) for since, n in cohorts]
            locked = [(wait, n) for wait, n in waits if wait > 1e-9]
            counts[i] = int(sum(n for _, n in locked))
            for_s[i] = max((wait for wait, _ in locked), default=0.0)
        return counts, for_s
