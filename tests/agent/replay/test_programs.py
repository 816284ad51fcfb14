"""The grid programs in a replay: the truth it makes (deployments, the 4CP intervals, the miner
rule's hours), what each strategy is charged and paid, and that the agent still never peeks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pytest

from gridpilot.adapters.grid import (
    RecordedGridEvent,
    read_ancillary_prices,
    read_cp_intervals,
    read_grid_events,
    read_system_load,
    read_transmission_rates,
)
from gridpilot.adapters.plant import SimulatedPlant, SteadyUse
from gridpilot.adapters.recorded import (
    CENTRAL,
    read_bitcoin_daily,
    read_day_ahead_prices,
    read_fee_share,
    read_gpu_trace,
    read_realtime_prices,
)
from gridpilot.agent.bundled import (
    BUNDLED_BTC,
    BUNDLED_CP_INTERVALS,
    BUNDLED_DAY_AHEAD,
    BUNDLED_FEES,
    BUNDLED_GRID_EVENTS,
    BUNDLED_LOAD,
    BUNDLED_PRICES,
    BUNDLED_RATES,
    BUNDLED_TRACE,
    REFERENCE_SITE,
)
from gridpilot.agent.planner import MarketView, Planner
from gridpilot.agent.replay.offers import Offers
from gridpilot.agent.replay.period import ReplayData, ReplayResult, Strategy, make_period
from gridpilot.agent.replay.programs import (
    CP_ALERT_SHARE,
    GridData,
    ProgramTerms,
    cp_alert_hours,
    cp_interval_indices,
    deployments,
    peak_forecaster,
    transmission_usd,
)
from gridpilot.agent.replay.simulation import _run_references, replay
from gridpilot.agent.settings import load_settings
from gridpilot.agent.site import site_problem
from gridpilot.optimizer.problem import Problem

QUARTER_S = 900.0
# A week around the 4CP interval of August 2024 (08-20 16:45 Central).
START = datetime(2024, 8, 17, 5, tzinfo=UTC)
TERMS = ProgramTerms(
    failure_usd_per_mw_h=5_000.0, deploy_chance_per_hour={"RRS": 2e-4, "ECRS": 1e-3, "NSPIN": 2e-3}
)


@pytest.fixture(scope="module")
def grid() -> GridData:
    return GridData(
        load=read_system_load(BUNDLED_LOAD),
        cp=read_cp_intervals(BUNDLED_CP_INTERVALS),
        rates=read_transmission_rates(BUNDLED_RATES),
        ancillary=read_ancillary_prices(BUNDLED_DAY_AHEAD),
        events=read_grid_events(BUNDLED_GRID_EVENTS),
    )


@pytest.fixture(scope="module")
def data(grid: GridData) -> ReplayData:
    return ReplayData(
        prices=read_realtime_prices(BUNDLED_PRICES, "HB_WEST"),
        hashprices=read_bitcoin_daily(BUNDLED_BTC),
        trace=read_gpu_trace(BUNDLED_TRACE),
        day_ahead=read_day_ahead_prices(BUNDLED_DAY_AHEAD, "HB_WEST"),
        fee_share=read_fee_share(BUNDLED_FEES),
        grid=grid,
    )


def _moments(start: datetime, count: int) -> tuple[datetime, ...]:
    return tuple(start + timedelta(seconds=k * QUARTER_S) for k in range(count))


def _site(start: datetime) -> Problem:
    """The reference site as a replay's template from `start`."""
    return site_problem(
        load_settings(REFERENCE_SITE),
        start=start,
        step_s=[QUARTER_S],
        price_usd_per_mwh=[0.0],
        hashprice_usd_per_th_day=0.05,
    )


def _run(data: ReplayData, start: datetime, days: float) -> ReplayResult:
    site = _site(start)
    return replay(
        site, data, start=start, end=start + timedelta(days=days), terms=TERMS, parallel=False
    )


def test_scarcity_deploys_ecrs_for_the_run_and_non_spin_where_it_runs_deep(
    grid: GridData,
) -> None:
    """Prices of 1,500 for 3 intervals then 2,500 for 1: ECRS from the first for the run, Non-Spin
    beside it because the run reaches 2,000; cheaper runs deploy nothing; a 3-hour run holds
    ECRS for ERCOT's two hours at most."""
    start = datetime(2024, 5, 1, tzinfo=UTC)
    price = np.full(40, 30.0)
    price[4:7] = 1_500.0
    price[7] = 2_500.0
    price[20:32] = 1_200.0  # three hours
    found = deployments(
        replace(grid, events=()),
        moments=_moments(start, 40),
        interval_s=QUARTER_S,
        true_price=price,
        products=("ECRS", "NSPIN"),
    )
    by = {(d.product, d.start): d.end - d.start for d in found}
    first = start + timedelta(hours=1)
    assert by[("ECRS", first)] == timedelta(hours=1)
    assert by[("NSPIN", first)] == timedelta(hours=1)
    assert by[("ECRS", start + timedelta(hours=5))] == timedelta(hours=2)
    assert len(found) == 3


def test_an_emergency_deploys_every_product_for_its_span(grid: GridData) -> None:
    """The EEA2 of 2023-09-06 deploys each product from about 19:25 to 20:40 Central."""
    start = datetime(2023, 9, 6, 5, tzinfo=UTC)
    found = deployments(
        grid,
        moments=_moments(start, 96),
        interval_s=QUARTER_S,
        true_price=np.full(96, 30.0),
        products=("RRS", "ECRS"),
        seed=1,
    )
    emergency = [d for d in found if d.source == "emergency"]
    assert {d.product for d in emergency} == {"RRS", "ECRS"}
    local = emergency[0].start.astimezone(CENTRAL)
    assert (local.hour, local.minute) == (19, 25)


def test_frequency_events_are_seeded_and_about_two_a_year(grid: GridData) -> None:
    """The same seed gives the same events; over twenty years they average about two a year."""
    quiet = replace(grid, events=())
    start = datetime(2004, 1, 1, tzinfo=UTC)
    moments = (start, start + timedelta(days=20 * 365))

    def events(seed: int) -> list[datetime]:
        found = deployments(
            quiet,
            moments=moments,
            interval_s=QUARTER_S,
            true_price=np.zeros(2),
            products=("RRS",),
            seed=seed,
        )
        return [d.start for d in found]

    assert events(3) == events(3)
    assert 20 <= len(events(3)) <= 60
    assert events(3) != events(4)


def test_the_2024_intervals_are_found_in_a_window_and_charged_a_quarter_rate_each(
    grid: GridData,
) -> None:
    """A window holding only the August peak finds that one interval; 50 MW drawn in it costs a
    quarter of 50,000 kW x 68.547 $/kW-yr, the rate billed in 2025 for 2024's peaks."""
    moments = _moments(START, 7 * 96)
    intervals = cp_interval_indices(grid.cp, moments, QUARTER_S)
    assert [moments[k] for _, k in intervals] == [datetime(2024, 8, 20, 21, 45, tzinfo=UTC)]
    watts = np.zeros(len(moments))
    watts[intervals[0][1]] = 50e6
    rate = grid.rates.for_peaks_of(2024)
    charged, mw = transmission_usd(watts, intervals, {2024: rate})
    assert mw == (50.0,)
    assert charged == pytest.approx(50.0 * 1_000 * rate / 4)
    assert rate == pytest.approx(68.547, abs=1e-3)


def test_the_miner_rule_sleeps_weekday_afternoons_near_the_months_peak_on_what_has_settled(
    grid: GridData,
) -> None:
    """August 2024: 14:00-19:00 Central on weekdays whose load by 14:00 is within 5 % of the
    month's highest so far, never on the weekend; the 20th is one; changing the load after
    14:00 changes nothing that day."""
    start = datetime(2024, 8, 1, 5, tzinfo=UTC)
    moments = _moments(start, 31 * 96)
    alert = cp_alert_hours(grid.load, moments)
    local = [m.astimezone(CENTRAL) for m in moments]
    on = [(m.date(), m.time()) for m, a in zip(local, alert, strict=True) if a]
    assert (date(2024, 8, 20), time(16, 45)) in on
    assert all(d.weekday() < 5 and time(14) <= t < time(19) for d, t in on)
    assert len({d for d, _ in on}) * 20 == len(on)  # whole windows
    cut = grid.load.hourly_index(datetime(2024, 8, 20, 14, tzinfo=CENTRAL))
    mw = np.asarray(grid.load.mw).copy()
    mw[cut:] *= CP_ALERT_SHARE / 2
    altered = cp_alert_hours(replace(grid.load, mw=mw), moments)
    day = [m.date() == date(2024, 8, 20) for m in local]
    assert np.array_equal(alert[day], altered[day])


def test_a_week_with_a_4cp_interval_charges_each_strategy_for_its_own_draw(
    data: ReplayData,
) -> None:
    """Around the August peak: always-on draws its full site in the interval and is charged
    for it; the agent lowers its draw there as far as hindsight does (give or take a
    container), and earns reserves; every deployment of an award is met; nobody breaches an
    SLA or the limit; the program baselines run beside."""
    result = _run(data, START, 7)
    totals = result.totals
    assert set(result.strategies) >= {"threshold_4cp", "fixed_reserve"}
    (mw_always,) = totals["always_on"].cp_mw_at_intervals
    (mw_agent,) = totals["agent"].cp_mw_at_intervals
    (mw_bound,) = totals["hindsight"].cp_mw_at_intervals
    assert mw_always > 60
    assert mw_agent <= mw_bound + 1.0
    assert totals["agent"].transmission_usd < 0.3 * totals["always_on"].transmission_usd
    assert totals["agent"].ancillary_usd > 0
    assert totals["fixed_reserve"].ancillary_by_product_usd.get("RRS", 0) > 0
    for name, t in totals.items():
        assert t.failed_deployments == 0, name
        assert t.sla_breaches == 0, name
        assert t.limit_violation_minutes == 0, name
    assert result.capture("agent") > result.capture("threshold_4cp")


def test_no_lookahead_in_the_programs(data: ReplayData, grid: GridData) -> None:
    """Nothing the agent decided up to an interval changes when the system load that settles
    after it, or the ancillary prices not yet published then, change."""
    start = datetime(2024, 8, 19, 5, tzinfo=UTC)
    cut = start + timedelta(hours=14)
    truth = _run(data, start, 1.25)
    rng = np.random.default_rng(2)
    mw = np.asarray(grid.load.mw).copy()
    settled = grid.load.hourly_index(cut)
    mw[settled:] *= rng.uniform(0.8, 1.2, mw.size - settled)
    ancillary = grid.ancillary
    assert ancillary is not None
    published = ancillary.known_until(cut)
    unknown = np.array([s >= published for s in ancillary.start_utc])
    prices = {
        p: np.where(unknown, rng.uniform(0, 500, unknown.size), v)
        for p, v in ancillary.usd_per_mw_h.items()
    }
    altered = replace(
        data,
        grid=replace(
            grid,
            load=replace(grid.load, mw=mw),
            ancillary=replace(ancillary, usd_per_mw_h=prices),
        ),
    )
    changed = _run(altered, start, 1.25)
    decided = round((cut - start).total_seconds() / QUARTER_S) + 1
    assert np.array_equal(truth.agent_decisions[:decided], changed.agent_decisions[:decided])
    # The altered load reaches later decisions (the chance of a peak): the check can fail.
    assert not np.array_equal(truth.agent_decisions[decided:], changed.agent_decisions[decided:])


def test_a_constant_hashprice_replaces_the_recorded_one(data: ReplayData) -> None:
    """With --hashprice 0.02 the miners earn less, and the same for every strategy's day."""
    start = datetime(2024, 8, 19, 5, tzinfo=UTC)
    plain = replace(data, grid=None)
    low = replace(plain, hashprice_usd_per_th_day=0.02)
    site = _site(start)
    day = {"start": start, "end": start + timedelta(days=1), "parallel": False}
    recorded = replay(site, plain, **day)  # type: ignore[arg-type]
    constant = replay(site, low, **day)  # type: ignore[arg-type]
    assert constant.hashprice_usd_per_th_day == 0.02
    assert (
        constant.totals["always_on"].hash_revenue_usd
        < recorded.totals["always_on"].hash_revenue_usd
    )


def test_events_without_times_deploy_nothing(grid: GridData) -> None:
    """A conservation appeal or an event without times is no deployment."""
    start = datetime(2023, 9, 7, 5, tzinfo=UTC)
    appeal = RecordedGridEvent(
        date(2023, 9, 7), "Conservation Appeal (TXANS)", None, None, True, ""
    )
    found = deployments(
        replace(grid, events=(appeal,)),
        moments=_moments(start, 96),
        interval_s=QUARTER_S,
        true_price=np.full(96, 30.0),
        products=("ECRS",),
    )
    assert found == ()


def test_a_perfect_4cp_alert_curtails_at_the_interval_alone(data: ReplayData) -> None:
    """Told the official intervals (the analysis `--perfect-cp-alert`), the agent lowers its
    draw at the August peak as far as hindsight does and for about an hour, not the
    afternoons its own forecast has it curtail."""
    assert data.grid is not None
    told = replace(data, grid=replace(data.grid, perfect_cp_alert=True))
    own, perfect = _run(data, START, 7), _run(told, START, 7)
    (mw_perfect,) = perfect.totals["agent"].cp_mw_at_intervals
    (mw_bound,) = perfect.totals["hindsight"].cp_mw_at_intervals
    assert mw_perfect <= mw_bound + 1.0
    assert perfect.totals["agent"].cp_hours_curtailed <= 1.5
    assert own.totals["agent"].cp_hours_curtailed > 3 * perfect.totals["agent"].cp_hours_curtailed


def test_the_agents_awards_are_known_when_the_day_ahead_market_publishes_them(
    data: ReplayData,
) -> None:
    """Offered at 10:00 Central on 08-19 for 08-20, the awards come out of the market that
    publishes at 13:30 with the day-ahead prices: at 13:15 the agent's view holds none of
    08-20's and its awards have not changed for its plans; from 13:30 it holds them."""
    start = datetime(2024, 8, 19, 5, tzinfo=UTC)  # midnight Central
    site = _site(start)
    period = make_period(data, start, start + timedelta(days=2), site=site, terms=TERMS)
    assert period.programs is not None
    offers = Offers(Planner(site), site, data, period)
    strategy = Strategy(site, data.trace, seed=0)
    strategy.awards = {p: np.zeros(len(period.moments)) for p in period.programs.products}

    def at(local: time) -> int:
        moment = datetime.combine(date(2024, 8, 19), local, CENTRAL)
        return round((moment - start).total_seconds() / QUARTER_S)

    def market(k: int) -> MarketView:
        index = period.first + k
        return MarketView(
            now=period.moments[k],
            history_usd_per_mwh=data.prices.usd_per_mwh[index - 40 * 96 : index],
            interval_s=QUARTER_S,
            hashprice_usd_per_th_day=period.known_hashprice[period.moments[k].date()],
        )

    before = offers.view(at(time(9, 45)), strategy, 96)
    offers.make_due(at(time(10, 0)), strategy, market(at(time(10, 0))))
    tomorrow = slice(at(time(0)) + 96, at(time(0)) + 192)
    assert sum(float(strategy.awards[p][tomorrow].sum()) for p in strategy.awards) > 0
    for moment in (time(10, 0), time(13, 15)):
        k = at(moment)
        view = offers.view(k, strategy, 96)
        assert view.awards_key == before.awards_key
        assert all(r.awarded_mw.sum() == 0 for r in view.reserves)
    k = at(time(13, 30))
    published = offers.view(k, strategy, 96)
    assert published.awards_key != before.awards_key
    for r in published.reserves:
        np.testing.assert_array_equal(r.awarded_mw, strategy.awards[r.name][k : k + 96])


def test_a_years_forecaster_is_learned_once_per_load(grid: GridData) -> None:
    """A study's scenarios of a year share one forecaster; a load changed in any way (a new
    object) gets its own, learned from it."""
    first = peak_forecaster(grid.load, 2024)
    assert peak_forecaster(grid.load, 2024) is first
    assert peak_forecaster(grid.load, 2023) is not first
    changed = replace(grid.load, mw=np.asarray(grid.load.mw) * 1.1)
    other = peak_forecaster(changed, 2024)
    assert other is not first
    assert other.days.peaks[-1] == pytest.approx(1.1 * first.days.peaks[-1])


def test_the_references_accounted_in_bulk_earn_what_they_earn_interval_by_interval(
    data: ReplayData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over four days of August with an emergency that deploys every reserve (19:25-20:40
    Central), most of the references' intervals are accounted in steady stretches, and every
    total, series and decision is the same to the last bit as through the plant one by one:
    the deployments, the schedule's changes and the 4CP hours go through it interval by
    interval either way."""
    emergency = RecordedGridEvent(
        date(2024, 8, 19),
        "EEA Level 2 (Emergency Operations)",
        datetime(2024, 8, 20, 0, 25, tzinfo=UTC),
        datetime(2024, 8, 20, 1, 40, tzinfo=UTC),
        False,
        "",
    )
    assert data.grid is not None
    with_emergency = replace(data, grid=replace(data.grid, events=(emergency,)))
    site = _site(START)
    period = make_period(with_emergency, START, START + timedelta(days=4), site=site, terms=TERMS)
    wanted = frozenset(("always_on", "threshold", "hindsight", "threshold_4cp", "fixed_reserve"))
    in_bulk: list[int] = []
    steady = SimulatedPlant.advance_steady

    def counted(plant: SimulatedPlant, *args: Any, **kwargs: Any) -> SteadyUse:
        use = steady(plant, *args, **kwargs)
        in_bulk.append(use.count)
        return use

    monkeypatch.setattr(SimulatedPlant, "advance_steady", counted)
    bulk = _run_references(site, with_emergency, period, wanted)
    one_by_one = _run_references(site, with_emergency, period, wanted, in_bulk=False)
    assert sum(in_bulk) > 0.7 * len(wanted) * len(period.moments)
    assert bulk["fixed_reserve"].totals.deployments > 0
    assert bulk["threshold_4cp"].totals.cp_hours_curtailed > 0
    for name in wanted:
        assert bulk[name].totals == one_by_one[name].totals, name
        for series in ("site_watts", "asic_curtailed_watts", "decisions"):
            assert np.array_equal(getattr(bulk[name], series), getattr(one_by_one[name], series))
        assert bulk[name].awards.keys() == one_by_one[name].awards.keys()
