"""Inputs: each message from the broker decoded, validated and folded into the `SiteState`.

Every payload is decoded at the edge (adapters.payloads), stamped with its arrival by the
agent's clock and, once taken, counted in `gridpilot_inputs_total{topic}`. A bad one
(malformed, oversized, out of range, for a meter or group the site does not have) is dropped,
counted in `gridpilot_rejected_inputs_total{topic,reason}` and logged, never fatal; so is one
whose handling fails, as `internal_error`. What an input changes wakes whom it concerns: a
meter reading or a grid event the guard; a forecast, an event, an override, and a price or
hashprice before the first plan, the planner. The grid programs' inputs (system load,
frequency, 4CP alerts, reserve awards, deployments, recalls, ancillary prices) go to the parts
that keep them (agent.daemon.programs, .reserves), which decode them and raise `Rejected` the
same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

import structlog

from gridpilot.adapters.payloads import (
    EventCancel,
    Override,
    OverrideClear,
    Rejected,
    decode_event,
    decode_forecast,
    decode_override,
    decode_reading,
)
from gridpilot.agent.daemon.clock import Clock
from gridpilot.agent.daemon.gauges import PlantGauges
from gridpilot.agent.daemon.metrics import Metrics
from gridpilot.agent.daemon.state import Signal, SiteState
from gridpilot.agent.daemon.topics import Topics, field_map
from gridpilot.agent.daemon.triggers import Triggers
from gridpilot.agent.settings import Settings
from gridpilot.optimizer.problem import GridEvent

_log = structlog.get_logger("gridpilot.daemon")

# Sets or clears an operator's hold; raises `Rejected` for one the site cannot honour.
OverrideHandler = Callable[[Override | OverrideClear], Awaitable[None]]
# Decodes and keeps one grid-program message (its payload, its arrival); raises `Rejected`.
InputHandler = Callable[[bytes, datetime], Awaitable[None]]


class Inputs:
    """`on_message` is the broker link's message handler. Overrides go to `on_override`
    (the overrides part's `apply`); each hashprice to `gauges` for the breakevens; the grid
    programs' messages to `handlers`, by kind (`Topics.programs`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        topics: Topics,
        state: SiteState,
        clock: Clock,
        metrics: Metrics,
        triggers: Triggers,
        gauges: PlantGauges,
        on_override: OverrideHandler,
        handlers: Mapping[str, InputHandler] | None = None,
    ) -> None:
        self._topics = topics
        self._handlers = dict(handlers or {})
        self._program_kinds = {t: k for k, t in topics.programs().items() if k in self._handlers}
        self._meters = settings.agent.meters
        self._max_bytes = settings.mqtt.max_payload_bytes
        self._fields = {
            "meter": field_map(settings.mqtt.meter_fields),
            "price": field_map(settings.mqtt.price_fields),
            "hashprice": field_map(settings.mqtt.hashprice_fields),
        }
        self._state = state
        self._clock = clock
        self._metrics = metrics
        self._triggers = triggers
        self._gauges = gauges
        self._on_override = on_override

    async def on_message(self, topic: str, payload: bytes) -> None:
        """Fold one message into the state, or count and log why it was not."""
        kind = self.kind(topic)
        now = self._clock.now()
        limit = self._max_bytes
        try:
            if kind == "meter":
                self._meter(topic[len(self._topics.meter_prefix) :], payload, now)
            elif kind in ("price", "hashprice"):
                self._market(kind, payload, now)
            elif kind == "forecast":
                forecast = decode_forecast(payload, received=now, max_bytes=limit)
                self._state.day_ahead.add(forecast)
                self._state.forecast_received = min(now, forecast.issued)
                self._triggers.request_plan("new forecast")
            elif kind == "event":
                self._event(decode_event(payload, received=now, max_bytes=limit))
            elif kind == "override":
                group = topic[len(self._topics.override_prefix) :]
                await self._on_override(
                    decode_override(payload, group, received=now, max_bytes=limit)
                )
            elif kind in self._handlers:
                await self._handlers[kind](payload, now)
            else:
                return  # not an input of this agent (none of its subscriptions brings one)
            self._metrics.inputs.labels(kind).inc()
        except Rejected as rejected:
            self._metrics.rejected.labels(kind, rejected.reason).inc()
            _log.warning(
                "input.rejected", topic=topic, reason=rejected.reason, detail=rejected.detail[:200]
            )
        except Exception:
            # A bug in handling one message must not take the site's agent down with it.
            self._metrics.rejected.labels(kind, "internal_error").inc()
            _log.exception("input.failed", topic=topic)

    def kind(self, topic: str) -> str:
        """The kind of input a topic carries (the `topic` label of rejects), or "unknown"."""
        t = self._topics
        if topic.startswith(t.meter_prefix):
            return "meter"
        if topic.startswith(t.override_prefix):
            return "override"
        exact = {
            t.price: "price",
            t.forecast: "forecast",
            t.hashprice: "hashprice",
            t.event: "event",
            **self._program_kinds,
        }
        return exact.get(topic, "unknown")

    def _meter(self, name: str, payload: bytes, now: datetime) -> None:
        meters = self._meters
        if meters and name not in meters:
            raise Rejected("unknown_name", f"meter {name!r} is not one of {', '.join(meters)}")
        reading = decode_reading(
            payload, self._fields["meter"], received=now, max_bytes=self._max_bytes
        )
        if reading.value < 0:
            raise Rejected("out_of_range", f"meter {name!r} read {reading.value} W")
        self._state.meters[name] = Signal(reading.value, reading.ts, now)
        self._triggers.check_guard()

    def _market(self, kind: str, payload: bytes, now: datetime) -> None:
        """A real-time price or a hashprice."""
        reading = decode_reading(
            payload, self._fields[kind], received=now, max_bytes=self._max_bytes
        )
        signal = Signal(reading.value, reading.ts, now)
        if kind == "price":
            self._state.price = signal
            self._state.prices.add(reading.ts, reading.value)
            self._metrics.price.set(reading.value)
        else:
            self._state.hashprice = signal
            self._metrics.hashprice.set(reading.value)
            self._gauges.breakeven(reading.value)
        self._triggers.request_first_plan()  # the inputs it lacked may be here now

    def _event(self, event: GridEvent | EventCancel) -> None:
        if isinstance(event, EventCancel):
            if self._state.events.pop(event.id, None) is not None:
                _log.info("event.cancelled", grid_event=event.id)
                self._triggers.request_plan(f"grid event {event.id} cancelled")
            return
        self._state.events[event.id] = event
        _log.info(
            "event.received",
            grid_event=event.id,
            start=event.start.isoformat(),
            end=event.end.isoformat(),
            max_site_watts=event.max_site_watts,
        )
        self._triggers.check_guard()
        self._triggers.request_plan(f"grid event {event.id}")
