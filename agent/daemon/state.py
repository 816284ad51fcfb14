"""What the daemon knows of its site and market right now, and how old each piece is.

Every signal keeps the moment it was received (by the daemon's clock) and the time its payload
was stamped with, so its age is known and a feed that stops is noticed. The age counts from the
earlier of the two: a retained reading the broker hands over again after a reconnect is as old
as its stamp says, not as fresh as its arrival (a stamp ahead of the daemon's clock, a publisher's
skew, counts from the arrival). Real-time prices are also kept as a history of settled intervals,
the shape the planner's forecast reads: one price per planning interval, the mean of what was
published in it, the last known price carried into intervals that had none.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from gridpilot.adapters.payloads import Forecast, Override
from gridpilot.agent.daemon.program_state import ProgramState
from gridpilot.optimizer.problem import FloatArray, GridEvent

# The planner's forecast looks back 30 days (agent.pacing) and a week of daily shape.
HISTORY_DAYS = 40


@dataclass(frozen=True, slots=True)
class Signal:
    value: float
    ts: datetime  # as the publisher stamped it
    received: datetime  # by the daemon's clock


# How many readings the running sum of the meters takes before it is summed afresh, so that
# rounding in its additions and subtractions never builds up (fsum of a thousand meters is
# tens of microseconds; this makes it a few nanoseconds a reading).
RESUM_EVERY = 10_000


class MeterReadings(MutableMapping[str, Signal]):
    """The latest reading of each meter, by name, and their sum (`total`) kept up as they
    arrive: the guard looks at the site's draw on every reading, and summing a thousand meters
    each time was most of the agent's work at 10,000 readings a second."""

    def __init__(self) -> None:
        self._signals: dict[str, Signal] = {}
        self.total = 0.0
        self._since_resum = 0
        self._keys_changed = 0  # counts additions and removals: what `covers` remembers
        self._covered: tuple[str, ...] | None = None  # the names last found exact
        self._covered_at = -1  # and `_keys_changed` then

    def __getitem__(self, name: str) -> Signal:
        return self._signals[name]

    def __setitem__(self, name: str, signal: Signal) -> None:
        old = self._signals.get(name)
        self._signals[name] = signal
        if old is None:
            self._keys_changed += 1
        self._since_resum += 1
        if self._since_resum >= RESUM_EVERY:
            self._resum()
        else:
            self.total += signal.value - (0.0 if old is None else old.value)

    def __delitem__(self, name: str) -> None:
        del self._signals[name]
        self._keys_changed += 1
        self._resum()

    def __iter__(self) -> Iterator[str]:
        return iter(self._signals)

    def __len__(self) -> int:
        return len(self._signals)

    def covers(self, names: tuple[str, ...]) -> bool:
        """Whether these are exactly the meters read so far (each has reported, no other has):
        then `total` is their sum. Remembered for the same tuple (the settings' own, by
        identity) until a meter is added or removed."""
        if names is self._covered and self._covered_at == self._keys_changed:
            return True
        exact = len(names) == len(self._signals) and all(n in self._signals for n in names)
        if exact:
            self._covered, self._covered_at = names, self._keys_changed
        return exact

    def _resum(self) -> None:
        self.total = math.fsum(signal.value for signal in self._signals.values())
        self._since_resum = 0


class PriceHistory:
    """Settled real-time prices per planning interval, aligned to multiples of `interval_s`
    since the epoch, kept for `HISTORY_DAYS`."""

    def __init__(self, interval_s: float, days: float = HISTORY_DAYS) -> None:
        self.interval_s = interval_s
        self._keep = math.ceil(days * 86_400.0 / interval_s)
        self._sums: OrderedDict[int, tuple[float, int]] = OrderedDict()

    def add(self, ts: datetime, usd_per_mwh: float) -> None:
        bucket = math.floor(ts.timestamp() / self.interval_s)
        late = bool(self._sums) and bucket not in self._sums and bucket < next(reversed(self._sums))
        total, count = self._sums.get(bucket, (0.0, 0))
        self._sums[bucket] = (total + usd_per_mwh, count + 1)
        if late:
            # A reading for an older interval that had none: keep the buckets in time order.
            self._sums = OrderedDict(sorted(self._sums.items()))
        while len(self._sums) > self._keep:
            self._sums.popitem(last=False)

    def settled(self, now: datetime) -> FloatArray:
        """One price per interval from the first known up to the one just ended before `now`
        (the current interval is not settled yet); empty when nothing is known."""
        current = math.floor(now.timestamp() / self.interval_s)
        known = [(b, s / n) for b, (s, n) in self._sums.items() if b < current]
        if not known:
            return np.zeros(0)
        first = max(known[0][0], current - self._keep)
        values = np.full(current - first, np.nan)
        for bucket, price in known:
            if bucket >= first:
                values[bucket - first] = price
        # Intervals without a reading carry the last known price forward.
        valid = ~np.isnan(values)
        if not valid.any():
            return np.zeros(0)
        last_valid = np.maximum.accumulate(np.where(valid, np.arange(values.size), 0))
        return values[last_valid][int(np.argmax(valid)) :]


@dataclass(slots=True)
class SiteState:
    """The latest of every input, with when it arrived."""

    started: datetime
    interval_s: float
    meters: MeterReadings = field(default_factory=MeterReadings)
    price: Signal | None = None
    hashprice: Signal | None = None
    forecast_received: datetime | None = None  # or when it was issued, if that was earlier
    events: dict[str, GridEvent] = field(default_factory=dict)
    overrides: dict[str, Override] = field(default_factory=dict)
    # The grid programs: system load, 4CP alerts, awards, ancillary prices, deployments.
    programs: ProgramState = field(default_factory=ProgramState)
    prices: PriceHistory = field(init=False)
    day_ahead: DayAheadBook = field(init=False)

    def __post_init__(self) -> None:
        self.prices = PriceHistory(self.interval_s)
        self.day_ahead = DayAheadBook()

    def site_watts(self, meters: tuple[str, ...]) -> float | None:
        """The site's draw: the sum of the latest reading of each configured meter (of every
        meter heard from, when none is configured); None until each has reported."""
        readings = self.meters
        if not meters:
            return readings.total if readings else None
        if readings.covers(meters):
            return readings.total
        if any(name not in readings for name in meters):
            return None
        return math.fsum(readings[name].value for name in meters)

    def age_s(self, signal: Signal | None, now: datetime) -> float:
        """Seconds since `signal` was stamped or arrived, whichever was earlier; for one never
        received, since the daemon started."""
        since = self.started if signal is None else min(signal.received, signal.ts)
        return max(0.0, (now - since).total_seconds())

    def meter_age_s(self, meters: tuple[str, ...], now: datetime) -> float:
        """The age of the oldest configured meter's latest reading."""
        names = meters or tuple(self.meters)
        if not names:
            return self.age_s(None, now)
        return max(self.age_s(self.meters.get(name), now) for name in names)

    def active_events(self, now: datetime) -> list[GridEvent]:
        return [e for e in self.events.values() if e.start <= now < e.end]

    def upcoming_events(self, now: datetime) -> tuple[GridEvent, ...]:
        return tuple(sorted((e for e in self.events.values() if e.end > now), key=_event_key))

    def drop_past(self, now: datetime) -> tuple[list[GridEvent], list[Override]]:
        """Forget events that have ended, 4CP alerts that have ended and overrides that have
        expired; returns the events and the overrides."""
        self.programs.drop_past(now)
        ended = [e for e in self.events.values() if e.end <= now]
        for event in ended:
            del self.events[event.id]
        expired = [o for o in self.overrides.values() if o.until <= now]
        for override in expired:
            del self.overrides[override.group]
        return ended, expired


class DayAheadBook:
    """Every published forecast price kept for `days`, newer publications replacing older ones
    for the same period: the planner's forecast learns from the past month how far real-time
    prices followed the day-ahead ones, so one forecast alone is not enough."""

    def __init__(self, days: float = HISTORY_DAYS) -> None:
        self._keep_s = days * 86_400.0
        self._steps: dict[float, tuple[float, float]] = {}  # start (epoch s) -> (end, price)
        self._starts = np.zeros(0)
        self._ends = np.zeros(0)
        self._prices = np.zeros(0)

    def add(self, forecast: Forecast) -> None:
        first = forecast.start.timestamp()
        last = first + len(forecast.usd_per_mwh) * forecast.step_s
        # What the new publication covers replaces what older ones said of it.
        self._steps = {t: v for t, v in self._steps.items() if not (t < last and v[0] > first)}
        for k, price in enumerate(forecast.usd_per_mwh):
            start = first + k * forecast.step_s
            self._steps[start] = (start + forecast.step_s, price)
        newest = max(end for end, _ in self._steps.values())
        self._steps = {t: v for t, v in self._steps.items() if v[0] > newest - self._keep_s}
        order = sorted(self._steps)
        self._starts = np.array(order, dtype=np.float64)
        self._ends = np.array([self._steps[t][0] for t in order], dtype=np.float64)
        self._prices = np.array([self._steps[t][1] for t in order], dtype=np.float64)

    @property
    def until(self) -> datetime | None:
        """The end of the latest forecast period known (a new publication moves it)."""
        if not self._ends.size:
            return None
        return datetime.fromtimestamp(float(self._ends.max()), tz=UTC)

    def window(self, start_utc: datetime, count: int, interval_s: float) -> FloatArray:
        """The planner's `DayAheadWindow`: each interval takes the forecast step it starts in,
        NaN where none is known."""
        times = start_utc.astimezone(UTC).timestamp() + np.arange(count) * interval_s
        result = np.full(count, np.nan)
        if not self._starts.size:
            return result
        index = np.searchsorted(self._starts, times, side="right") - 1
        inside = index >= 0
        inside[inside] &= times[inside] < self._ends[index[inside]]
        result[inside] = self._prices[index[inside]]
        return result


def _event_key(event: GridEvent) -> tuple[datetime, str]:
    return event.start, event.id
