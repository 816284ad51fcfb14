"""The day-ahead offer alone, over a planner that records what it is asked: when it is made,
what it may hold at what price, and what is published."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import structlog

from gridpilot.agent.daemon.ledger import Ledger
from gridpilot.agent.daemon.offers import DayAheadOffers, hourly
from gridpilot.agent.daemon.programs import GridPrograms
from gridpilot.agent.planner import MarketView, PlantState
from gridpilot.optimizer.problem import FloatArray
from tests.agent.daemon.parts import FakeLink, Plant, plant, site_settings
from tests.agent.daemon.test_daemon_units import SetClock
from tests.integration.harness import RESERVE_SITE_TOML

BEFORE_TEN = datetime(2026, 6, 16, 14, 55, tzinfo=UTC)  # 09:55 Central
TEN = datetime(2026, 6, 16, 15, 0, tzinfo=UTC)  # 10:00 Central
INTERVAL_S = 300.0
QUALIFIED_MW = 40 * 3000 * 1.05 / 1e6


class FakePlanner:
    """Holds `held` MW of each product in every interval asked about; remembers the asks."""

    def __init__(self, held: dict[str, float], *, failing: bool = False) -> None:
        self.held = held
        self.failing = failing
        self.asked: list[tuple[MarketView, float, int, int]] = []

    def offer(
        self,
        state: PlantState,
        market: MarketView,
        used_node_hours: dict[str, float],
        *,
        horizon_s: float,
        first: int,
        last: int,
    ) -> dict[str, FloatArray]:
        self.asked.append((market, horizon_s, first, last))
        if self.failing:
            raise RuntimeError("solver exploded")
        return {p: np.full(last - first, mw) for p, mw in self.held.items()}


class Setup:
    def __init__(self, tmp_path: Path, ledger: Ledger) -> None:
        settings = site_settings(tmp_path, site_toml=RESERVE_SITE_TOML)
        self.p: Plant = plant(settings, SetClock(BEFORE_TEN), ledger)
        self.link = FakeLink()
        self.programs = GridPrograms(
            settings,
            site=self.p.site,
            state=self.p.state,
            recorder=self.p.recorder,
            triggers=self.p.triggers,
            metrics=self.p.metrics,
            clock=self.p.clock,
        )
        self.offers = self.build()

    def build(self) -> DayAheadOffers:
        return DayAheadOffers(
            site=self.p.site,
            programs=self.programs,
            state=self.p.state,
            recorder=self.p.recorder,
            publish=self.link.publish,
            topic="as/offer",
        )

    def make_due(self, planner: FakePlanner, now: datetime) -> dict[str, list[float]] | None:
        market = MarketView(
            now=now,
            history_usd_per_mwh=np.full(12, 30.0),
            interval_s=INTERVAL_S,
            hashprice_usd_per_th_day=0.05,
        )
        plant_state = PlantState((10,) * 6, (0,), (0.0,))
        return asyncio.run(self.offers.make_due(planner, plant_state, market, {}))


def test_the_offer_is_made_from_ten_central_once_a_day(tmp_path: Path, ledger: Ledger) -> None:
    """At 09:55 Central nothing is offered; at 10:00 tomorrow's hours are, once; later the
    same day nothing more; the day offered is in the ledger."""
    s = Setup(tmp_path, ledger)
    planner = FakePlanner({"RRS": 0.05, "ECRS": 0.0})
    assert s.make_due(planner, BEFORE_TEN) is None
    assert s.make_due(planner, TEN) is not None
    assert s.make_due(planner, TEN + timedelta(hours=3)) is None
    assert len(planner.asked) == 1
    assert ledger.get_meta("offered_day") == "2026-06-17"


def test_tomorrows_hours_may_hold_the_qualification_at_the_expected_prices(
    tmp_path: Path, ledger: Ledger
) -> None:
    """The planner is asked over the horizon to tomorrow's end (38 h from 10:00), tomorrow's
    intervals opened to the 126 kW the old miners qualify and priced at the mean of the same
    hour over the days of as/prices heard; today's stay as the awards have them."""
    s = Setup(tmp_path, ledger)
    for days, price in ((1, 4.0), (2, 8.0)):
        start = datetime(2026, 6, 17, 5, 0, tzinfo=UTC) - timedelta(days=days)  # 00:00 Central
        payload = {"start": start.isoformat(), "step_s": 3600, "product": "RRS"}
        body = json.dumps({**payload, "usd_per_mw_h": [price] * 24}).encode()
        asyncio.run(s.programs.on_prices(body, TEN))
    planner = FakePlanner({"RRS": 0.05})
    s.make_due(planner, TEN)
    [(market, horizon_s, first, last)] = planner.asked
    assert (first, last, horizon_s) == (14 * 12, 38 * 12, 38 * 3_600.0)
    assert market.programs is not None
    reserves = {r.name: r for r in market.programs.reserves}
    rrs, ecrs = reserves["RRS"], reserves["ECRS"]
    assert not rrs.max_mw[:first].any()
    assert np.allclose(rrs.max_mw[first:last], QUALIFIED_MW)
    assert np.allclose(rrs.usd_per_mw_h[first:last], 6.0)  # no price spikes in the history
    assert not ecrs.usd_per_mw_h.any()  # nothing heard of ECRS: nothing expected


def test_the_offer_goes_out_per_product_and_hour_in_tenths_of_a_mw(
    tmp_path: Path, ledger: Ledger
) -> None:
    """The published offer says the day, its hours in UTC, a price of zero and per product
    the MW of each of its 24 hours, rounded down to a tenth; `offer.made` is logged."""
    s = Setup(tmp_path, ledger)
    with structlog.testing.capture_logs() as logs:
        s.make_due(FakePlanner({"RRS": 0.1199, "ECRS": 0.05}), TEN)
    [payload] = s.link.on("as/offer")
    offer = json.loads(payload)
    assert (offer["day"], offer["start"], offer["end"]) == (
        "2026-06-17",
        "2026-06-17T05:00:00+00:00",
        "2026-06-18T05:00:00+00:00",
    )
    assert offer["usd_per_mw_h"] == 0.0
    assert offer["mw"] == {"RRS": [0.1] * 24, "ECRS": [0.0] * 24}
    assert [e["event"] for e in logs] == ["offer.made"]


def test_a_failing_planner_is_logged_and_the_day_not_tried_again(
    tmp_path: Path, ledger: Ledger
) -> None:
    """A planner that raises leaves no offer and an `offer.failed` line; the day counts as
    offered (the market closed at 10:00), and a restart knows it."""
    s = Setup(tmp_path, ledger)
    with structlog.testing.capture_logs() as logs:
        assert s.make_due(FakePlanner({}, failing=True), TEN) is None
    assert [e["event"] for e in logs] == ["offer.failed"]
    assert s.link.on("as/offer") == []
    again = s.build()
    asyncio.run(again.restore())
    assert again.offered == date(2026, 6, 17)


def test_an_hours_offer_is_the_least_held_in_any_of_its_intervals() -> None:
    """Of an hour's twelve 5-minute intervals the least MW counts, floored to a tenth; hours
    past the intervals given offer nothing."""
    mw = np.concatenate((np.full(11, 0.35), [0.21], np.full(12, 0.3)))
    assert hourly(mw, interval_s=300.0, hours=3) == [0.2, 0.3, 0.0]
