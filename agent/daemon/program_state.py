"""What the daemon knows of the grid programs, and the miners it holds asleep for them.

Kept in the `SiteState` (its `programs`), beside the market's signals:

- `LoadHistory`: ERCOT's hourly system load as heard on `grid/load`, the mean of each hour's
  readings by their own timestamps, in the shape the 4CP forecaster reads (agent.peaks);
- the bought 4CP alerts (`CpAlert`), until they end;
- the reserve awards (`AwardBook`, agent.programs), and `awards_version`, which moves with
  every award so that the planner plans again;
- `AncillaryBook`: the day-ahead ancillary clearing prices heard on `as/prices`, from which
  the day-ahead offer expects what a MW held will earn (with the awards' own prices where none
  was published);
- the deployments carried out (`Hold`): which miners each holds asleep until it is recalled,
  and the cap on the site's draw while any holds (the rest of the site may not take up what
  the held miners freed: a deployment is measured on the site's draw).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from gridpilot.adapters.grid import AncillaryPrices
from gridpilot.adapters.payloads import CpAlert
from gridpilot.agent.peaks import HourlyLoad
from gridpilot.agent.programs import AwardBook
from gridpilot.optimizer.problem import FloatArray, GridEvent

HOUR_S = 3_600.0
# The 4CP forecaster reads the two weeks before a day and the month so far: two months cover both.
LOAD_KEEP_DAYS = 62
# The newest settled hour may lack readings for this long (a feed that publishes late); beyond
# it the load is stale and the forecaster says nothing rather than guess.
LOAD_STALE_HOURS = 3
# Hours of no value after the last settled one: the forecaster indexes today and tomorrow by
# the load's days, and reads only the hours settled.
_LOAD_PAD_HOURS = 48
PRICE_KEEP_DAYS = 31  # the offer's expected prices look back 30 days (agent.programs)
DEPLOYMENT_CAP_SPAN = timedelta(days=30)  # longer than any horizon: until the recall


class LoadHistory:
    """Hourly system load, MW, by the hour's start (UTC), kept for `keep_days` after the
    newest hour heard. `version` moves with every reading."""

    def __init__(self, keep_days: float = LOAD_KEEP_DAYS) -> None:
        self._keep_hours = math.ceil(keep_days * 24)
        self._sums: dict[int, tuple[float, int]] = {}  # hours since the epoch -> (sum, count)
        self.version = 0

    def add(self, ts: datetime, mw: float) -> tuple[datetime, float, int]:
        """Count one reading in the hour of `ts`; returns that hour's start, sum and count
        (what the ledger keeps)."""
        hour = math.floor(ts.timestamp() / HOUR_S)
        total, count = self._sums.get(hour, (0.0, 0))
        self._sums[hour] = (total + mw, count + 1)
        self._trim()
        self.version += 1
        return _hour_start(hour), total + mw, count + 1

    def restore(self, rows: Iterable[tuple[datetime, float, int]]) -> None:
        """Take the hours a ledger kept: (hour start, sum of readings, readings)."""
        for hour, total, count in rows:
            if count > 0:
                self._sums[math.floor(hour.timestamp() / HOUR_S)] = (total, count)
        self._trim()
        self.version += 1

    def latest_mw(self) -> float | None:
        """The mean of the newest hour heard."""
        if not self._sums:
            return None
        total, count = self._sums[max(self._sums)]
        return total / count

    def hourly(self, now: datetime) -> HourlyLoad | None:
        """Each hour's mean from the first heard to the last ended before `now`: hours without
        a reading in between interpolated, the newest carried forward for at most
        `LOAD_STALE_HOURS`, then hours of no value through tomorrow. None when no hour has
        ended yet or the newest one heard is older than that."""
        ended = math.floor(now.timestamp() / HOUR_S)  # hours before this one have ended
        known = sorted(h for h in self._sums if h < ended)
        if not known or ended - 1 - known[-1] > LOAD_STALE_HOURS:
            return None
        means = np.array([self._sums[h][0] / self._sums[h][1] for h in known])
        settled = np.interp(np.arange(known[0], ended), known, means)
        mw = np.concatenate((settled, np.full(_LOAD_PAD_HOURS, np.nan)))
        return HourlyLoad(_hour_start(known[0]), mw)

    def _trim(self) -> None:
        if self._sums:
            oldest = max(self._sums) - self._keep_hours
            for hour in [h for h in self._sums if h < oldest]:
                del self._sums[hour]


def _hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * HOUR_S, UTC)


class AncillaryBook:
    """Day-ahead ancillary clearing prices per product, $/MW-h, by the hour's start (UTC), as
    published; a later publication for an hour replaces an earlier one. Kept `keep_days`."""

    def __init__(self, keep_days: float = PRICE_KEEP_DAYS) -> None:
        self._keep = timedelta(days=keep_days)
        self._prices: dict[str, dict[datetime, float]] = {}

    def add(self, product: str, start: datetime, usd_per_mw_h: Sequence[float]) -> None:
        prices = self._prices.setdefault(product, {})
        for k, price in enumerate(usd_per_mw_h):
            prices[start + timedelta(hours=k)] = float(price)
        oldest = max(prices) - self._keep
        for hour in [h for h in prices if h < oldest]:
            del prices[hour]

    def prices(self, awards: AwardBook) -> AncillaryPrices | None:
        """What is known of each product's clearing prices: as published, else the prices of
        the site's own awards; None when nothing is known."""
        merged: dict[str, dict[datetime, float]] = {}
        for product in {*self._prices, *awards.usd_per_mw_h}:
            merged[product] = {
                **awards.usd_per_mw_h.get(product, {}),
                **self._prices.get(product, {}),
            }
        hours = [h for prices in merged.values() for h in prices]
        if not hours:
            return None
        first, last = min(hours), max(hours)
        count = round((last - first).total_seconds() / HOUR_S) + 1
        arrays: dict[str, FloatArray] = {}
        for product, prices in merged.items():
            values = np.full(count, np.nan)
            for hour, price in prices.items():
                values[round((hour - first).total_seconds() / HOUR_S)] = price
            arrays[product] = values
        grid = tuple(first + timedelta(hours=k) for k in range(count))
        return AncillaryPrices(start_utc=grid, usd_per_mw_h=arrays, gaps={})


@dataclass(frozen=True, slots=True)
class Hold:
    """A deployment carried out: `units` miners per group put to sleep for `product` from
    `start`, held asleep until the deployment `id` is recalled. `source`: "qse" (an
    instruction on `as/deploy`) or "frequency" (the site's own under-frequency relay)."""

    id: str
    product: str
    mw: float
    start: datetime
    units: Mapping[str, int]
    source: str
    reason: str  # the commands' reason, also for the plans that keep them asleep
    dropped_watts: float = 0.0  # what the miners put to sleep drew, at the meter


@dataclass(slots=True)
class ProgramState:
    """The grid programs as heard, and the holds of the deployments carried out."""

    system_load: LoadHistory = field(default_factory=LoadHistory)
    cp_alerts: list[CpAlert] = field(default_factory=list)
    awards: AwardBook = field(default_factory=AwardBook)
    awards_version: int = 0
    ancillary: AncillaryBook = field(default_factory=AncillaryBook)
    holds: dict[str, Hold] = field(default_factory=dict)
    # While deployments hold, the site's commanded draw may not rise above what it was when
    # they were carried out: the rest of the site must not fill what the held miners freed.
    deploy_cap_watts: float | None = None
    frequency_hz: float | None = None

    def held_units(self) -> dict[str, int]:
        """Miners held asleep per group, over every deployment."""
        held: dict[str, int] = {}
        for hold in self.holds.values():
            for group, units in hold.units.items():
                held[group] = held.get(group, 0) + units
        return held

    def hold_reason(self, group: str) -> str:
        """Why `group`'s held miners are asleep (the latest deployment's reason)."""
        reasons = [h.reason for h in self.holds.values() if h.units.get(group, 0) > 0]
        return reasons[-1] if reasons else ""

    def deployment_event(self) -> GridEvent | None:
        """The deployments' cap on the site's draw, as the planner takes grid events: from
        the first deployment holding until well past any horizon (the recall ends it)."""
        if self.deploy_cap_watts is None or not self.holds:
            return None
        start = min(h.start for h in self.holds.values())
        return GridEvent(
            id="reserve-deployment",
            start=start,
            end=start + DEPLOYMENT_CAP_SPAN,
            max_site_watts=max(0.0, self.deploy_cap_watts),
            kind="reserve",
        )

    def hold(self, hold: Hold, draw_before: float) -> None:
        """Hold `hold`'s miners asleep and cap the site's draw: the deployments' cap, or
        `draw_before` (the commanded draw before this one), less what it drops."""
        cap = self.deploy_cap_watts if self.holds else None
        self.deploy_cap_watts = (draw_before if cap is None else cap) - hold.dropped_watts
        self.holds[hold.id] = hold

    def carried_out(self, hold: Hold, planned: Hold) -> None:
        """`hold` as the devices carried it out, in place of `planned` (they may have put
        fewer to sleep, or more were asleep already), the cap corrected by the difference."""
        if self.deploy_cap_watts is not None:
            self.deploy_cap_watts += planned.dropped_watts - hold.dropped_watts
        self.holds[hold.id] = hold

    def release(self, deployment: str) -> Hold:
        """End the hold of `deployment`: the site may take up again what it dropped, and no
        cap remains once nothing holds."""
        hold = self.holds.pop(deployment)
        cap = self.deploy_cap_watts
        self.deploy_cap_watts = cap + hold.dropped_watts if self.holds and cap is not None else None
        return hold

    def deployed_mw(self, product: str) -> float:
        return sum(h.mw for h in self.holds.values() if h.product == product)

    def cp_alert_chance(self, start: datetime, count: int, interval_s: float) -> FloatArray:
        """Per interval from `start`, the least chance the alerts give it (0 where none)."""
        chance = np.zeros(count)
        for alert in self.cp_alerts:
            first = (alert.start - start).total_seconds() / interval_s
            last = (alert.end - start).total_seconds() / interval_s
            # An interval takes the alert where they overlap at all.
            inside = (np.arange(count) + 1 > first) & (np.arange(count) < last)
            chance[inside] = np.maximum(chance[inside], alert.chance)
        return chance

    def drop_past(self, now: datetime) -> None:
        """Forget the alerts that have ended."""
        self.cp_alerts = [a for a in self.cp_alerts if a.end > now]
