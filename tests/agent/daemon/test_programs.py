"""The grid programs' part alone: the load, 4CP alerts, awards and ancillary prices heard, kept
(in the state and the ledger) and turned into the planner's `ProgramView`."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from gridpilot.adapters.grid import read_system_load, read_transmission_rates
from gridpilot.adapters.payloads import Rejected
from gridpilot.agent.bundled import BUNDLED_LOAD, BUNDLED_RATES
from gridpilot.agent.daemon.ledger import Ledger
from gridpilot.agent.daemon.program_state import AncillaryBook, Hold, LoadHistory
from gridpilot.agent.daemon.programs import GridPrograms, transmission_rate
from gridpilot.agent.peaks import PeakModel
from gridpilot.agent.programs import AwardBook
from tests.agent.daemon.parts import Plant, plant, site_settings
from tests.agent.daemon.test_daemon_units import SetClock
from tests.integration.harness import RESERVE_SITE_TOML, SITE_TOML, shared_peak_model

NOON = datetime(2026, 6, 16, 17, 0, tzinfo=UTC)  # 12:00 Central
HOUR = timedelta(hours=1)
INTERVAL_S = 300.0


def _programs(
    tmp_path: Path,
    ledger: Ledger,
    *,
    at: datetime = NOON,
    model: PeakModel | None = None,
    site_toml: str = RESERVE_SITE_TOML,
    programs: str = "",
) -> tuple[GridPrograms, Plant]:
    settings = site_settings(tmp_path, site_toml=site_toml + programs)
    p = plant(settings, SetClock(at), ledger)
    part = GridPrograms(
        settings,
        site=p.site,
        state=p.state,
        recorder=p.recorder,
        triggers=p.triggers,
        metrics=p.metrics,
        clock=p.clock,
        peak_model=model,
    )
    return part, p


def _award(product: str, mw: float, start: datetime, hours: int, price: float = 6.0) -> bytes:
    end = start + hours * HOUR
    award = {"product": product, "start": start.isoformat(), "end": end.isoformat()}
    return json.dumps({**award, "mw": mw, "usd_per_mw_h": price}).encode()


def test_an_award_is_in_the_ledger_and_planned_on_with_its_price(
    tmp_path: Path, ledger: Ledger
) -> None:
    """An award of 40 kW of ECRS for two hours from noon is on disk, moves the awards key and
    asks for a plan; the view holds it in those hours' intervals at its price, and nothing of
    RRS."""
    part, p = _programs(tmp_path, ledger)
    asyncio.run(part.on_award(_award("ECRS", 0.04, NOON, 2, price=7.5), NOON))
    assert ledger.awards(NOON) == [("ECRS", NOON, 0.04, 7.5), ("ECRS", NOON + HOUR, 0.04, 7.5)]
    assert p.triggers.reason == "reserve award ECRS"
    view = part.view(NOON, 36, INTERVAL_S, 0.05)
    assert view is not None
    assert view.awards_key == 1
    ecrs = {r.name: r for r in view.reserves}["ECRS"]
    assert list(ecrs.awarded_mw) == [0.04] * 24 + [0.0] * 12
    assert list(ecrs.max_mw) == list(ecrs.awarded_mw)
    assert list(ecrs.usd_per_mw_h[:24]) == [7.5] * 24
    assert ecrs.failure_usd_per_mw_h == 5_000.0
    assert ecrs.deploy_usd_per_mw_h > 0
    assert not {r.name: r for r in view.reserves}["RRS"].awarded_mw.any()


def test_an_award_of_a_product_no_group_carries_is_rejected_and_not_kept(
    tmp_path: Path, ledger: Ledger
) -> None:
    """NSPIN on a site qualified for RRS and ECRS only is an `unknown_name` reject."""
    part, p = _programs(tmp_path, ledger)
    with pytest.raises(Rejected) as caught:
        asyncio.run(part.on_award(_award("NSPIN", 0.04, NOON, 1), NOON))
    assert caught.value.reason == "unknown_name"
    assert ledger.awards(NOON) == []
    assert p.state.programs.awards_version == 0


def test_deployed_mw_is_not_asked_of_the_miners_still_awake(tmp_path: Path, ledger: Ledger) -> None:
    """While 30 kW of a 40 kW award is deployed (asleep, delivering), the plan must hold only
    the other 10 kW awake."""
    part, p = _programs(tmp_path, ledger)
    asyncio.run(part.on_award(_award("RRS", 0.04, NOON, 1), NOON))
    p.state.programs.holds["d"] = Hold("d", "RRS", 0.03, NOON, {"old-01": 10}, "qse", "r")
    view = part.view(NOON, 12, INTERVAL_S, 0.05)
    assert view is not None
    rrs = {r.name: r for r in view.reserves}["RRS"]
    assert rrs.awarded_mw == pytest.approx(np.full(12, 0.01))


def test_a_4cp_alert_raises_only_the_intervals_it_covers(tmp_path: Path, ledger: Ledger) -> None:
    """Without a model or load, an alert for 16:00-17:00 Central at 0.6 is the chance of the
    twelve intervals of that hour and nothing else; the charge per MWh follows from the rate,
    and the gauges say the chance now."""
    part, p = _programs(tmp_path, ledger)
    start = NOON + 4 * HOUR
    alert = {"start": start.isoformat(), "end": (start + HOUR).isoformat(), "chance": 0.6}
    asyncio.run(part.on_cp_alert(json.dumps(alert).encode(), NOON))
    assert p.triggers.reason == "4CP alert"
    view = part.view(NOON, 72, INTERVAL_S, 0.05)
    assert view is not None
    assert list(np.flatnonzero(view.cp_chance)) == list(range(48, 60))
    assert view.cp_chance[50] == 0.6
    rate = part.rate(NOON)
    assert rate is not None
    charge = view.transmission_usd_per_mwh(72, INTERVAL_S)
    assert charge[50] == pytest.approx(0.6 * rate * 1_000 / 4 / (INTERVAL_S / 3_600))
    assert p.sample("gridpilot_cp_chance") == 0.0
    p.clock.moment = start
    part.refresh(start)
    assert p.sample("gridpilot_cp_chance") == 0.6
    assert p.sample("gridpilot_transmission_charge_usd_per_mwh") == pytest.approx(charge[50])


def test_outside_the_cp_months_no_chance_and_without_months_no_4cp(
    tmp_path: Path, ledger: Ledger
) -> None:
    """An alert in October counts for nothing in a June-September site; a site with no 4CP
    month and no qualified group gets no programs at all."""
    october = datetime(2026, 10, 6, 17, 0, tzinfo=UTC)
    part, _ = _programs(tmp_path, ledger, at=october)
    alert = {"start": october.isoformat(), "end": (october + HOUR).isoformat()}
    asyncio.run(part.on_cp_alert(json.dumps(alert).encode(), october))
    view = part.view(october, 24, INTERVAL_S, 0.05)
    assert view is not None
    assert not view.cp_chance.any()
    none, _ = _programs(
        tmp_path, ledger, site_toml=SITE_TOML, programs="\n[programs]\ncp_months = []\n"
    )
    assert none.view(october, 24, INTERVAL_S, 0.05) is None


def test_the_4cp_chance_comes_from_the_load_heard(tmp_path: Path, ledger: Ledger) -> None:
    """With three weeks of June 2024's hourly load heard up to 14:00 Central on the 20th, the
    calibrated model gives the afternoon ahead a chance and the night none; with the load
    four hours stale it gives none (and an alert still counts)."""
    at = datetime(2024, 6, 20, 19, 0, tzinfo=UTC)  # 14:00 Central
    part, p = _programs(tmp_path, ledger, at=at, model=shared_peak_model())
    load = read_system_load(BUNDLED_LOAD)
    first = load.hourly_index(at - timedelta(days=21))
    last = load.hourly_index(at)
    rows = [(load.start_utc[i], float(load.mw[i]), 1) for i in range(first, last)]
    p.state.programs.system_load.restore(rows)
    chance = part.cp_chance(at, 24 * 12, INTERVAL_S)
    assert chance[:36].sum() > 0  # 14:00-17:00 Central
    assert not chance[12 * 10 : 12 * 16].any()  # midnight to 06:00
    stale = at + 4 * HOUR
    assert not part.cp_chance(stale, 24, INTERVAL_S).any()


def test_awards_and_load_survive_a_restart(tmp_path: Path, ledger: Ledger) -> None:
    """A new part on the same ledger plans on the awards and knows the load hours heard."""
    part, p = _programs(tmp_path, ledger)
    asyncio.run(part.on_award(_award("RRS", 0.02, NOON, 3), NOON))
    for mw in (50_000.0, 52_000.0):
        asyncio.run(part.on_load(json.dumps({"ts": NOON.isoformat(), "mw": mw}).encode(), NOON))
    p.recorder.flush()
    again, q = _programs(tmp_path, ledger)
    asyncio.run(again.restore())
    assert q.state.programs.awards.window("RRS", NOON, 1, 3_600.0)[0] == 0.02
    assert q.state.programs.system_load.latest_mw() == 51_000.0
    assert q.sample("gridpilot_system_load_watts") == 51_000e6


def test_the_rate_is_the_site_files_else_the_files_else_the_latest_recorded() -> None:
    """4CP rates: a configured one wins; 2024's peaks are billed at 2025's recorded rate; for
    a summer whose rate is not set yet, the latest one recorded stands in."""
    rates = read_transmission_rates(BUNDLED_RATES)
    assert transmission_rate(70.0, rates, 2024) == 70.0
    assert transmission_rate(None, rates, 2024) == pytest.approx(68.547301)
    latest = rates.rates[-1].usd_per_kw_year
    assert transmission_rate(None, rates, 2031) == latest


def test_load_history_averages_each_hour_and_fills_short_gaps_only() -> None:
    """Readings average by the hour of their stamps; a missing hour between is interpolated,
    the newest carried forward up to three hours, then the history is stale (None)."""
    history = LoadHistory()
    t0 = datetime(2026, 6, 1, 5, 0, tzinfo=UTC)
    history.add(t0, 40_000.0)
    history.add(t0 + timedelta(minutes=30), 42_000.0)
    history.add(t0 + 2 * HOUR, 45_000.0)
    hourly = history.hourly(t0 + 3 * HOUR)
    assert hourly is not None
    assert hourly.start_utc == t0
    assert list(hourly.mw[:3]) == [41_000.0, 43_000.0, 45_000.0]
    assert np.isnan(hourly.mw[3:]).all()
    carried = history.hourly(t0 + 6 * HOUR)
    assert carried is not None
    assert list(carried.mw[3:6]) == [45_000.0] * 3
    assert history.hourly(t0 + 7 * HOUR) is None
    assert LoadHistory().hourly(t0) is None


def test_published_ancillary_prices_win_over_the_awards_own() -> None:
    """Where both are known the published clearing price is taken; the award's fills the
    hours nothing was published for."""
    book = AncillaryBook()
    t0 = datetime(2026, 6, 1, 5, 0, tzinfo=UTC)
    book.add("RRS", t0, [3.0, 4.0])
    awards = AwardBook().with_day(
        "RRS", {t0: 1.0, t0 + 2 * HOUR: 1.0}, {t0: 9.0, t0 + 2 * HOUR: 9.0}
    )
    prices = book.prices(awards)
    assert prices is not None
    assert list(prices.prices("RRS")) == [3.0, 4.0, 9.0]
    assert AncillaryBook().prices(AwardBook()) is None


def test_the_4cp_model_is_learned_only_once_there_is_load_to_forecast(
    tmp_path: Path, ledger: Ledger
) -> None:
    """Given a model, `calibrate` returns at once; without one it waits (no worker thread
    spent) until the site hears its first system load."""
    given, _ = _programs(tmp_path, ledger, model=shared_peak_model())
    asyncio.run(asyncio.wait_for(given.calibrate(), 1.0))
    waiting, _ = _programs(tmp_path, ledger)

    async def scenario() -> bool:
        task = asyncio.create_task(waiting.calibrate())
        await asyncio.sleep(0.05)
        pending = not task.done()
        task.cancel()
        return pending

    assert asyncio.run(scenario())
