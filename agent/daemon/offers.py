"""The day-ahead reserve offer, once a day from 10:00 Central, for the market gateway.

ERCOT's day-ahead market takes offers for operating day D until 10:00 Central on D-1
(agent.programs). From then (`next_offer_day`), at the first planning cycle, the agent decides
what it will hold of each product it is qualified for in each hour of tomorrow as the replay
does: its own planner, over the horizon to the day's end, may hold up to the site's
qualification in tomorrow's hours at each product's expected clearing price (the mean of the
same hour over the last 30 days of day-ahead prices heard on `as/prices`, or of its own
awards' prices where none was published) less the expected cost of holding (the price spikes a
held miner cannot sleep through), and offers what that plan holds: per hour the least MW it
holds in any of the hour's intervals, in tenths of a MW, at a price of zero (a price taker).
The offer is published retained on `as/offer`; the day offered is kept in the ledger, so a
restart the same day does not offer again.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

import numpy as np
import structlog

from gridpilot.adapters.actuation import Publish
from gridpilot.agent.daemon.programs import GridPrograms
from gridpilot.agent.daemon.recorder import Recorder
from gridpilot.agent.daemon.state import SiteState
from gridpilot.agent.planner import MarketView, PlantState
from gridpilot.agent.programs import (
    expected_prices,
    holding_breakeven,
    next_offer_day,
    offer_window,
    qualified_mw,
    spike_cost,
)
from gridpilot.optimizer.problem import FloatArray, Problem

_log = structlog.get_logger("gridpilot.daemon")

OFFERED_DAY_KEY = "offered_day"  # ledger meta: the operating day last offered (ISO date)
MW_STEP = 0.1  # ERCOT takes offers in tenths of a MW


class OfferPlanner(Protocol):
    """What the offer asks of the planner (agent.planner.Planner.offer)."""

    def offer(
        self,
        state: PlantState,
        market: MarketView,
        used_node_hours: dict[str, float],
        *,
        horizon_s: float,
        first: int,
        last: int,
    ) -> dict[str, FloatArray]: ...


class DayAheadOffers:
    """Makes the day's offer when it is due (`make_due`, from the planning cycle) and
    publishes it through `publish` on `topic`."""

    def __init__(
        self,
        *,
        site: Problem,
        programs: GridPrograms,
        state: SiteState,
        recorder: Recorder,
        publish: Publish,
        topic: str,
    ) -> None:
        self._site = site
        self._programs = programs
        self._state = state
        self._recorder = recorder
        self._publish = publish
        self._topic = topic
        self._qualified = qualified_mw(site)
        self.offered: date | None = None  # the operating day offered last

    async def restore(self) -> None:
        day = await self._recorder.call(self._recorder.ledger.get_meta, OFFERED_DAY_KEY)
        self.offered = date.fromisoformat(day) if day else None

    async def make_due(
        self,
        planner: OfferPlanner,
        plant: PlantState,
        market: MarketView,
        used_node_hours: dict[str, float],
    ) -> dict[str, list[float]] | None:
        """Offer tomorrow's hours if they are due and not offered yet; returns the offer (MW
        per product and hour), or None. A planner that fails is logged, not raised: the
        agent's plans do not wait on the market's."""
        day = next_offer_day(market.now)
        if day is None or day.date() == self.offered or not self._programs.products:
            return None
        self.offered = day.date()
        ledger = self._recorder.ledger
        await self._recorder.call(ledger.set_meta, OFFERED_DAY_KEY, day.date().isoformat())
        day_start, day_end = offer_window(day)
        interval_s = market.interval_s
        first = round((day_start - market.now).total_seconds() / interval_s)
        last = round((day_end - market.now).total_seconds() / interval_s)
        offer_market = self._market(market, first, last)
        if offer_market is None:
            return None
        try:
            held = await asyncio.to_thread(
                planner.offer,
                plant,
                offer_market,
                used_node_hours,
                horizon_s=last * interval_s,
                first=first,
                last=last,
            )
        except Exception:
            _log.exception("offer.failed", day=day.date().isoformat())
            return None
        hours = round((day_end - day_start).total_seconds() / 3_600.0)
        offer = {p: hourly(mw, interval_s=interval_s, hours=hours) for p, mw in held.items()}
        await self._send(day.date(), day_start, day_end, offer, market.now)
        return offer

    def _market(self, market: MarketView, first: int, last: int) -> MarketView | None:
        """`market` with the programs over the horizon to the day's end, tomorrow's hours
        open to the site's qualification at their expected net prices."""
        view = self._programs.view(
            market.now, last, market.interval_s, market.hashprice_usd_per_th_day
        )
        if view is None:
            return None
        known = self._state.programs.ancillary.prices(self._state.programs.awards)
        day_start = market.now + timedelta(seconds=first * market.interval_s)
        reserves = []
        for r in view.reserves:
            earns = (
                expected_prices(
                    known,
                    r.name,
                    now=market.now,
                    start=day_start,
                    count=last - first,
                    interval_s=market.interval_s,
                )
                if known is not None and r.name in known.products
                else np.zeros(last - first)
            )
            price = r.usd_per_mw_h.copy()
            price[first:] = earns - spike_cost(
                market.history_usd_per_mwh,
                interval_s=market.interval_s,
                offsets=range(first, last),
                breakeven_usd_per_mwh=holding_breakeven(
                    self._site, r.name, market.hashprice_usd_per_th_day
                ),
            )
            max_mw = r.max_mw.copy()
            max_mw[first:] = self._qualified.get(r.name, 0.0)
            reserves.append(replace(r, usd_per_mw_h=price, max_mw=max_mw))
        return replace(market, programs=replace(view, reserves=tuple(reserves)))

    async def _send(
        self,
        day: date,
        start: datetime,
        end: datetime,
        offer: dict[str, list[float]],
        now: datetime,
    ) -> None:
        payload = {
            "day": day.isoformat(),
            "start": start.astimezone(UTC).isoformat(),
            "end": end.astimezone(UTC).isoformat(),
            "step_s": 3_600,
            "usd_per_mw_h": 0.0,
            "mw": offer,
            "at": now.isoformat(),
        }
        await self._publish(self._topic, json.dumps(payload).encode())
        _log.info(
            "offer.made",
            day=day.isoformat(),
            mw_h={p: round(sum(mw), 1) for p, mw in offer.items()},
        )


def hourly(mw: FloatArray, *, interval_s: float, hours: int) -> list[float]:
    """Per hour of `hours` from the first interval of `mw`, the least MW held in any of its
    intervals, rounded down to `MW_STEP` (an award is for a whole hour)."""
    hour_of = np.floor(np.arange(mw.size) * interval_s / 3_600.0 + 1e-9).astype(np.int64)
    offer = []
    for h in range(hours):
        inside = mw[hour_of == h]
        least = float(inside.min()) if inside.size else 0.0
        offer.append(round(math.floor(max(0.0, least) / MW_STEP + 1e-6) * MW_STEP, 1))
    return offer
