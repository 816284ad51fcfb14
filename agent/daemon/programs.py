"""The grid programs as the planner sees them: 4CP and the reserve awards (agent.programs).

- Inputs: `grid/load`, ERCOT's system load, kept as the mean of each hour's readings in the
  site state and in the ledger (the 4CP forecaster reads weeks of it); `grid/cp_alert`, a
  bought 4CP alert whose intervals take at least its chance; `as/award`, the site's reserve
  awards per product and hour, in the ledger before they are planned on, so that a restart
  keeps its obligations; `as/prices`, the day-ahead ancillary prices the offer expects from.
- The 4CP chance (`cp_chance`): a `PeakForecaster` on the load heard, its `PeakModel`
  calibrated once at start (`calibrate`, a task of its own, in a worker thread, as soon as any
  system load is known) on the summers of the bundled system-load file before this year;
  until it is, or while the load feed is stale, the alerts alone. Zero outside the site's
  `cp_months`; not considered at all when the site takes part in no month. The rate: the site
  file's, else the bundled rates file's for this year's peaks, else (the rate is set only
  after the summer it bills) the latest recorded.
- `view`: the `ProgramView` a planning cycle hands the planner: the 4CP chance ahead, the
  awards ahead with their prices (less what is deployed: those MW are delivering, asleep), the
  failure charge and the expected cost of deployments from `[programs]`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import numpy as np
import structlog

from gridpilot.adapters.grid import (
    TransmissionRates,
    read_system_load,
    read_transmission_rates,
)
from gridpilot.adapters.payloads import (
    Rejected,
    decode_ancillary_prices,
    decode_award,
    decode_cp_alert,
    decode_system_load,
)
from gridpilot.adapters.recorded import CENTRAL, NotRecordedError
from gridpilot.agent.bundled import BUNDLED_LOAD, BUNDLED_RATES
from gridpilot.agent.daemon.clock import Clock
from gridpilot.agent.daemon.inputs import InputHandler
from gridpilot.agent.daemon.metrics import Metrics
from gridpilot.agent.daemon.program_state import PRICE_KEEP_DAYS, ProgramState
from gridpilot.agent.daemon.recorder import Recorder
from gridpilot.agent.daemon.state import SiteState
from gridpilot.agent.daemon.triggers import Triggers
from gridpilot.agent.pacing import marginal_hash_value_usd_per_mwh
from gridpilot.agent.peaks import PeakForecaster, PeakModel, as_load, calibrate
from gridpilot.agent.programs import (
    ProgramView,
    ReserveView,
    awards_since,
    qualified_mw,
)
from gridpilot.agent.settings import (
    RESERVE_PRODUCTS,
    ProgramSettings,
    ReserveProductName,
    Settings,
)
from gridpilot.optimizer.problem import FloatArray, Problem

_log = structlog.get_logger("gridpilot.daemon")


def bundled_peak_model(now: datetime) -> PeakModel:
    """The 4CP model learned from the bundled system load's summers before `now`'s year (all
    of them, for a year after the file's end). Takes a few seconds."""
    load = read_system_load(BUNDLED_LOAD)
    start = load.start_utc[0]
    new_year = datetime(now.astimezone(CENTRAL).year, 1, 1, tzinfo=CENTRAL)
    cut = round((new_year - start).total_seconds() / 3_600.0)
    mw = np.asarray(load.mw, dtype=np.float64)[: max(0, cut)]
    return calibrate(as_load(start, mw))


def transmission_rate(
    configured: float | None, rates: TransmissionRates, year: int
) -> float | None:
    """The rate `year`'s 4CP is billed at, $/kW-yr: the site file's (`configured`), else the
    rates file's, else the latest it records (the rate is set only after the summer it
    bills); None for a file without rates."""
    if configured is not None:
        return configured
    try:
        return rates.for_peaks_of(year)
    except NotRecordedError:
        return rates.rates[-1].usd_per_kw_year if rates.rates else None


def reserve_view(
    site: Problem,
    programs: ProgramState,
    config: ProgramSettings,
    product: ReserveProductName,
    *,
    now: datetime,
    count: int,
    interval_s: float,
    hashprice_usd_per_th_day: float,
) -> ReserveView:
    """`product` over the `count` intervals from `now`: the awards at their prices, less what
    is deployed (those MW deliver asleep), the failure charge and the expected cost of
    deployments (their chance per hour times the hash the least efficient miner forgoes)."""
    awards = programs.awards
    held = np.maximum(
        0.0, awards.window(product, now, count, interval_s) - programs.deployed_mw(product)
    )
    hash_value = (
        marginal_hash_value_usd_per_mwh(site, hashprice_usd_per_th_day) if site.asic_groups else 0.0
    )
    return ReserveView(
        name=product,
        usd_per_mw_h=awards.prices(product, now, count, interval_s),
        max_mw=held,
        awarded_mw=held,
        failure_usd_per_mw_h=config.failure_usd_per_mw_h,
        deploy_usd_per_mw_h=config.deploy_chance(product) * hash_value,
    )


class GridPrograms:
    """Keeps what the programs' inputs say in `state.programs` (and the ledger) and turns it
    into the planner's `ProgramView`. `peak_model`: the 4CP model, if already calibrated
    (tests share one); otherwise `calibrate` learns it."""

    def __init__(
        self,
        settings: Settings,
        *,
        site: Problem,
        state: SiteState,
        recorder: Recorder,
        triggers: Triggers,
        metrics: Metrics,
        clock: Clock,
        peak_model: PeakModel | None = None,
    ) -> None:
        self._config = settings.programs
        self._interval_s = settings.agent.plan_interval_s
        self._max_bytes = settings.mqtt.max_payload_bytes
        self._site = site
        self._state = state
        self._programs = state.programs
        self._recorder = recorder
        self._ledger = recorder.ledger
        self._triggers = triggers
        self._metrics = metrics
        self._clock = clock
        self._model = peak_model
        self._heard_load = asyncio.Event()  # set once any system load is known
        self._forecaster: tuple[object, PeakForecaster] | None = None
        self._rates = read_transmission_rates(BUNDLED_RATES)
        qualified = qualified_mw(site)
        self.products: tuple[ReserveProductName, ...] = tuple(
            p for p in RESERVE_PRODUCTS if p in qualified
        )

    # --- inputs ----------------------------------------------------------------------------

    def handlers(self) -> dict[str, InputHandler]:
        """Its inputs by kind (`Topics.programs`), for the inputs part."""
        return {
            "system_load": self.on_load,
            "cp_alert": self.on_cp_alert,
            "award": self.on_award,
            "ancillary_prices": self.on_prices,
        }

    async def on_load(self, payload: bytes, now: datetime) -> None:
        """A system-load reading: counted in its hour, and that hour kept in the ledger."""
        reading = decode_system_load(payload, received=now, max_bytes=self._max_bytes)
        hour, total, count = self._programs.system_load.add(reading.ts, reading.value)
        self._heard_load.set()
        self._recorder.write(self._ledger.record_system_load, hour, total, count)
        latest = self._programs.system_load.latest_mw()
        self._metrics.system_load.set((latest or 0.0) * 1e6)
        self.refresh(now)

    async def on_cp_alert(self, payload: bytes, now: datetime) -> None:
        alert = decode_cp_alert(payload, received=now, max_bytes=self._max_bytes)
        self._programs.cp_alerts.append(alert)
        _log.info(
            "cp.alert",
            start=alert.start.isoformat(),
            end=alert.end.isoformat(),
            chance=alert.chance,
        )
        self.refresh(now)
        self._triggers.request_plan("4CP alert")

    async def on_award(self, payload: bytes, now: datetime) -> None:
        """An award: on disk first (a restart keeps the obligation), then planned on."""
        award = decode_award(payload, received=now, max_bytes=self._max_bytes)
        if award.product not in self.products:
            raise Rejected(
                "unknown_name", f"product {award.product}: no group of the site is qualified"
            )
        hours = award.hours()
        await self._recorder.call(
            self._ledger.record_awards,
            award.product,
            [(h, award.mw, award.usd_per_mw_h) for h in hours],
            now,
        )
        self._add_awards(award.product, dict.fromkeys(hours, (award.mw, award.usd_per_mw_h)), now)
        _log.info(
            "reserve.awarded",
            product=award.product,
            start=award.start.isoformat(),
            end=award.end.isoformat(),
            mw=award.mw,
            usd_per_mw_h=award.usd_per_mw_h,
        )
        self._triggers.request_plan(f"reserve award {award.product}")

    async def on_prices(self, payload: bytes, now: datetime) -> None:
        prices = decode_ancillary_prices(payload, received=now, max_bytes=self._max_bytes)
        self._programs.ancillary.add(prices.product, prices.start, prices.usd_per_mw_h)

    def _add_awards(
        self, product: str, hours: dict[datetime, tuple[float, float]], now: datetime
    ) -> None:
        programs = self._programs
        book = programs.awards.with_day(
            product, {h: mw for h, (mw, _) in hours.items()}, {h: p for h, (_, p) in hours.items()}
        )
        # Past awards stay a month: their prices are what the offer expects when no day-ahead
        # prices are published.
        programs.awards = awards_since(book, now - timedelta(days=PRICE_KEEP_DAYS))
        programs.awards_version += 1

    async def restore(self) -> None:
        """The awards and the system load the ledger kept."""
        now = self._clock.now()
        since = now - timedelta(days=PRICE_KEEP_DAYS)
        rows = await self._recorder.call(self._ledger.awards, since)
        by_product: dict[str, dict[datetime, tuple[float, float]]] = {}
        for product, hour, mw, usd in rows:
            by_product.setdefault(product, {})[hour] = (mw, usd)
        for product, hours in by_product.items():
            self._add_awards(product, hours, now)
        self._programs.system_load.restore(await self._recorder.call(self._ledger.system_load))
        latest = self._programs.system_load.latest_mw()
        if latest is not None:
            self._metrics.system_load.set(latest * 1e6)
            self._heard_load.set()
        self.refresh(now)
        if rows:
            _log.info("programs.restored", award_hours=len(rows), products=sorted(by_product))

    async def calibrate(self) -> None:
        """Learn the 4CP model from the bundled load (a task: the agent serves meanwhile),
        once the site has any system load to forecast from: at start when the ledger kept
        some, else at the first reading (a site without the feed never needs it, and a few
        seconds of a worker thread are spared its guard)."""
        if self._model is not None or not self._config.cp_months:
            return
        await self._heard_load.wait()
        try:
            model = await asyncio.to_thread(bundled_peak_model, self._clock.now())
        except (OSError, ValueError) as error:  # RecordedDataError is a ValueError
            _log.warning("programs.calibration_failed", error=str(error))
            return
        self._model = model
        _log.info("programs.calibrated", scale=round(model.scale, 4))
        self.refresh(self._clock.now())

    # --- what the planner sees -------------------------------------------------------------

    def view(
        self, now: datetime, count: int, interval_s: float, hashprice_usd_per_th_day: float
    ) -> ProgramView | None:
        """The programs over the `count` intervals from `now`; None when the site takes part
        in none (no qualified group, no 4CP month)."""
        chance = self.cp_chance(now, count, interval_s)
        reserves = tuple(
            reserve_view(
                self._site,
                self._programs,
                self._config,
                p,
                now=now,
                count=count,
                interval_s=interval_s,
                hashprice_usd_per_th_day=hashprice_usd_per_th_day,
            )
            for p in self.products
        )
        if not chance.size and not reserves:
            return None
        view = ProgramView(
            cp_chance=chance,
            transmission_usd_per_kw_year=self.rate(now) or 0.0,
            reserves=reserves,
            awards_key=self._programs.awards_version,
        )
        self._gauges(view, interval_s)
        return view

    def refresh(self, now: datetime) -> None:
        """The 4CP gauges as of `now`."""
        chance = self.cp_chance(now, 1, self._interval_s)
        self._gauges(
            ProgramView(cp_chance=chance, transmission_usd_per_kw_year=self.rate(now) or 0.0),
            self._interval_s,
        )

    def _gauges(self, view: ProgramView, interval_s: float) -> None:
        chance = float(view.cp_chance[0]) if view.cp_chance.size else 0.0
        self._metrics.cp_chance.set(chance)
        self._metrics.transmission_charge.set(
            float(view.transmission_usd_per_mwh(1, interval_s)[0])
        )

    def rate(self, now: datetime) -> float | None:
        """The transmission rate `now`'s year's 4CP is billed at, $/kW-yr (None: unknown)."""
        return transmission_rate(self._config.transmission_usd_per_kw_year, self._rates, now.year)

    def cp_chance(self, now: datetime, count: int, interval_s: float) -> FloatArray:
        """Per interval from `now`, the chance that it is its month's coincident peak: the
        forecaster's, raised by any alert, 0 outside `cp_months`; empty when 4CP is not
        considered (no month, no rate)."""
        months = self._config.cp_months
        if not months or self.rate(now) is None:
            return np.zeros(0)
        forecaster = self._forecaster_at(now)
        chance = (
            np.nan_to_num(forecaster.cp_chance(now=now, intervals=count, interval_s=interval_s))
            if forecaster is not None
            else np.zeros(count)
        )
        chance = np.maximum(chance, self._programs.cp_alert_chance(now, count, interval_s))
        step = timedelta(seconds=interval_s)
        inside = np.array(
            [(now + k * step).astimezone(CENTRAL).month in months for k in range(count)]
        )
        return np.asarray(np.where(inside, chance, 0.0), dtype=np.float64) if count else chance

    def _forecaster_at(self, now: datetime) -> PeakForecaster | None:
        """The forecaster on the load as heard by `now`, made again when an hour has ended or
        a reading arrived since the last."""
        if self._model is None:
            return None
        history = self._programs.system_load
        key = (history.version, int(now.timestamp() // 3_600.0))
        if self._forecaster is not None and self._forecaster[0] == key:
            return self._forecaster[1]
        load = history.hourly(now)
        if load is None:
            return None
        forecaster = PeakForecaster(self._model, load)
        self._forecaster = (key, forecaster)
        return forecaster
