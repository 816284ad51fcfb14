"""The agent's day-ahead reserve offers and what it knows of 4CP as a replay goes (see
`Offers`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from gridpilot.adapters.recorded import day_ahead_published_at
from gridpilot.agent.planner import (
    MarketView,
    Planner,
)
from gridpilot.agent.programs import (
    ProgramView,
    ReserveView,
    expected_prices,
    holding_breakeven,
    next_offer_day,
    offer_window,
    spike_cost,
)
from gridpilot.agent.replay.period import (
    Period,
    ReplayData,
    Strategy,
    month_key,
)
from gridpilot.optimizer.problem import (
    FloatArray,
    Problem,
)


class Offers:
    """The agent's day-ahead reserve offers and what it knows of 4CP, as the replay goes: at
    10:00 Central each day it offers the next day's hours, decided by its own planner over the
    horizon to that day's end at the prices it expects; what it offers it is awarded, and it
    knows so from 13:30 Central, when the market publishes its results."""

    def __init__(self, planner: Planner, site: Problem, data: ReplayData, period: Period) -> None:
        assert period.programs is not None and data.grid is not None
        self.planner = planner
        self.site = site
        self.period = period
        self.programs = period.programs
        self.ancillary = data.grid.ancillary
        self.offered: set[datetime] = set()
        # The last day offered: when its awards are published, and its intervals. Before then
        # the agent does not know them: they come out of the same market clearing as the
        # day-ahead prices (13:30 Central on the day before).
        self._unpublished: tuple[datetime, int, int] | None = None
        self.solves = 0
        self._cp: tuple[datetime, FloatArray] | None = None  # hour -> chance from its start
        self._perfect: FloatArray | None = None
        if data.grid.perfect_cp_alert:
            self._perfect = np.zeros(len(period.moments))
            self._perfect[[k for _, k in period.programs.cp_intervals]] = 1.0

    def make_due(self, k: int, strategy: Strategy, market: MarketView) -> None:
        day = next_offer_day(market.now)
        if day is None or day in self.offered or self.ancillary is None:
            return
        self.offered.add(day)
        day_start, day_end = offer_window(day)
        interval_s = self.period.interval_s
        first = round((day_start - market.now).total_seconds() / interval_s)
        last = round((day_end - market.now).total_seconds() / interval_s)
        view = self.view(k, strategy, last)
        reserves = []
        for r in view.reserves:
            price = r.usd_per_mw_h.copy()
            # What a MW held is expected to earn, less what holding it is expected to cost.
            price[first:] = expected_prices(
                self.ancillary,
                r.name,
                now=market.now,
                start=day_start,
                count=last - first,
                interval_s=interval_s,
            ) - spike_cost(
                market.history_usd_per_mwh,
                interval_s=interval_s,
                offsets=range(first, last),
                breakeven_usd_per_mwh=holding_breakeven(
                    self.site, r.name, market.hashprice_usd_per_th_day
                ),
            )
            max_mw = r.max_mw.copy()
            max_mw[first:] = self.programs.qualified_mw[r.name]
            reserves.append(replace(r, usd_per_mw_h=price, max_mw=max_mw))
        offer_market = replace(market, programs=replace(view, reserves=tuple(reserves)))
        held = self.planner.offer(
            strategy.state(),
            offer_market,
            strategy.used(month_key(market.now)),
            horizon_s=last * interval_s,
            first=first,
            last=last,
        )
        self.solves += 1
        per_hour = round(3_600.0 / interval_s)
        begin = k + first
        self._unpublished = (
            day_ahead_published_at(day_start.astimezone(UTC)),
            begin,
            min(begin + (last - first), len(self.period.moments)),
        )
        for product, mw in held.items():
            # an award is for a whole hour: the least the plan holds in any of its intervals
            hourly = np.repeat(
                np.floor(10.0 * mw.reshape(-1, per_hour).min(axis=1)) / 10.0, per_hour
            )
            end = min(begin + hourly.size, len(self.period.moments))
            if end > begin:
                cleared = self.programs.clearing[product][begin:end] > 0
                strategy.awards[product][begin:end] = np.where(cleared, hourly[: end - begin], 0.0)

    def view(self, k: int, strategy: Strategy, count: int) -> ProgramView:
        """The programs as the agent knows them at interval `k`, for `count` intervals."""
        period, programs = self.period, self.programs
        now = period.moments[k]
        rate = programs.rate_for_peaks_of.get(now.year, 0.0)
        unknown = slice(0, 0)  # the intervals of awards not yet published, in the view
        if self._unpublished is not None and now < self._unpublished[0]:
            _, begin, end = self._unpublished
            unknown = slice(max(begin - k, 0), max(end - k, 0))
        reserves = []
        for p in programs.products:
            awarded = _ahead(strategy.awards[p], k, count)
            if unknown.stop > unknown.start:
                awarded = awarded.copy()  # the strategy's own, read through
                awarded[unknown] = 0.0
            reserves.append(
                ReserveView(
                    name=p,
                    usd_per_mw_h=_ahead(programs.clearing[p], k, count),
                    max_mw=awarded,
                    awarded_mw=awarded,
                    failure_usd_per_mw_h=programs.failure_usd_per_mw_h,
                    deploy_usd_per_mw_h=programs.deploy_usd_per_mw_h.get(p, 0.0),
                )
            )
        return ProgramView(
            cp_chance=self._cp_chance(now, count) if rate > 0 else np.zeros(0),
            transmission_usd_per_kw_year=rate,
            reserves=tuple(reserves),
            awards_key=len(self.offered) - (1 if unknown.stop > unknown.start else 0),
        )

    def _cp_chance(self, now: datetime, count: int) -> FloatArray:
        """The 4CP chance per interval from `now`, worked out once an hour (the load settles
        hourly) for the longest span asked and sliced; with a perfect alert, the truth."""
        if self._perfect is not None:
            k = round((now - self.period.moments[0]).total_seconds() / self.period.interval_s)
            return _ahead(self._perfect, k, count)
        hour = now.replace(minute=0, second=0, microsecond=0)
        interval_s = self.period.interval_s
        offset = round((now - hour).total_seconds() / interval_s)
        cached = self._cp
        if cached is None or cached[0] != hour or cached[1].size < offset + count:
            forecaster = self.programs.forecasters.get(now.year)
            if forecaster is None:
                return np.zeros(count)
            span = max(offset + count, round(2 * 86_400.0 / interval_s))
            cached = (hour, forecaster.cp_chance(now=hour, intervals=span, interval_s=interval_s))
            self._cp = cached
        return cached[1][offset : offset + count]


def _ahead(values: FloatArray, k: int, count: int) -> FloatArray:
    """`count` of `values` from `k` (zeros past their end): a read-only view where they
    reach that far, as they do but at a replay's end (this runs every interval)."""
    chunk = values[k : k + count]
    if chunk.size == count:
        view = chunk.view()
        view.flags.writeable = False
        return view
    out = np.zeros(count)
    out[: chunk.size] = chunk
    return out
