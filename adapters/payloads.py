"""MQTT payloads: every input decoded and validated at the edge, every command encoded.

The decoders (`decode_*`) take the raw bytes of one message and return a frozen value, or raise
`Rejected` with a `reason` from the fixed set `REJECT_REASONS` (bounded, so it can be a metric
label) and a `detail` naming the field. No other exception escapes a decoder for any bytes
input: a bad message is an expected event, counted and survived by the caller.

Topics and shapes follow the MQTT contract in docs/design.md:

- readings (meter watts, real-time price $/MWh, hashprice $/TH/s/day): `decode_reading`, with a
  `FieldMap` saying where the value and its timestamp sit in a gateway's own JSON, or a bare
  number;
- the price forecast: `decode_forecast`;
- grid events and their cancellation: `decode_event`;
- an operator's override of one group, or its clearing (an empty retained message):
  `decode_override`;
- the grid programs: ERCOT's system load (`decode_system_load`) and frequency
  (`decode_frequency`), a bought 4CP alert (`decode_cp_alert`), a reserve award
  (`decode_award`), a deployment and its recall (`decode_deploy`, `decode_recall`) and the
  day-ahead ancillary prices (`decode_ancillary_prices`).

Timestamps are ISO 8601 with a zone ('Z' or an offset) or epoch seconds, between the years 2000
and 2100; a naive ISO string is rejected, since guessing its zone would shift a schedule by
hours. Every timestamp returned is a timezone-aware UTC datetime. Unknown JSON fields are
ignored, so a gateway may add its own.

Commands are compact JSON with keys in a fixed order, so that an unchanged command is the same
bytes (a retained message then compares equal): `encode_asic_command`, `encode_gpu_command`.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gridpilot.optimizer.problem import GridEvent

RejectReason = Literal[
    "too_large",
    "not_utf8",
    "not_json",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "bad_timestamp",
    "expired",
    "schema",
    "unknown_name",
]

#: Every `Rejected.reason`, in the order a payload meets the checks.
REJECT_REASONS: Final[tuple[RejectReason, ...]] = (
    "too_large",  # longer than `max_bytes`
    "not_utf8",
    "not_json",  # not JSON text (or nested too deep to parse)
    "missing_field",
    "wrong_type",  # e.g. a string or a boolean where a number belongs
    "out_of_range",  # NaN, infinity, a negative cap, an empty forecast, an unknown mode
    "bad_timestamp",  # unparsable, naive, or outside the years 2000..2100
    "expired",  # an override whose `until` has passed
    "schema",  # the payload's shape: not an object, or fields that contradict each other
    "unknown_name",  # a meter or group in the topic that the site file does not know (caller)
)

DEFAULT_MAX_BYTES: Final = 64 * 1024

_YEAR_MIN = 2000
_YEAR_MAX = 2100
_EPOCH_MIN_S: Final = datetime(_YEAR_MIN, 1, 1, tzinfo=UTC).timestamp()
_EPOCH_MAX_S: Final = datetime(_YEAR_MAX + 1, 1, 1, tzinfo=UTC).timestamp()
_MAX_FORECAST_VALUES = 2000
# A forecast step longer than a day is no forecast we plan on, and bounding it keeps
# `start + step_s * n` far inside datetime's range for every consumer.
_MAX_STEP_S = 86_400.0
# No group holds a million miners; the bound keeps a count inside every integer type downstream.
_MAX_UNITS = 1_000_000
# Identifiers end up in logs and notices; a gateway that sends kilobytes of id is broken.
_MAX_NAME_CHARS = 256
_PREVIEW_CHARS = 40


class Rejected(Exception):  # noqa: N818 - a rejected message is an outcome, not an "Error"
    """A payload that cannot be used. `reason` is one of `REJECT_REASONS`; `detail` is for
    people and names the field."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {reason!r}")
        super().__init__(reason, detail)
        self.reason: RejectReason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


# --- decoded values ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldMap:
    """Where one reading sits in a gateway's JSON.

    `value_path` is the chain of object keys down to the number (("watts",), or
    ("data", "power", "w")); `scale` multiplies it into the base unit (1000 for kW to W, 1e6
    for MW); `ts_path` leads to its timestamp, or is None to use the broker-receipt time. A
    payload without a timestamp at `ts_path` is stamped with the receipt time too.
    """

    value_path: tuple[str, ...]
    scale: float = 1.0
    ts_path: tuple[str, ...] | None = ("ts",)

    def __post_init__(self) -> None:
        if not self.value_path:
            raise ValueError("FieldMap.value_path must name at least one field")
        if not math.isfinite(self.scale) or self.scale == 0.0:
            raise ValueError(f"FieldMap.scale must be finite and non-zero, not {self.scale!r}")
        if self.ts_path is not None and not self.ts_path:
            raise ValueError("FieldMap.ts_path must name at least one field, or be None")


@dataclass(frozen=True, slots=True)
class Reading:
    """One value at `ts` (aware UTC), in the base unit its `FieldMap` scales to: watts for a
    meter, $/MWh for a price, $/TH/s/day for hashprice."""

    ts: datetime
    value: float


@dataclass(frozen=True, slots=True)
class Forecast:
    """Prices `usd_per_mwh[i]` for the interval starting `start + i * step_s`, issued at
    `issued` (both aware UTC)."""

    issued: datetime
    start: datetime
    step_s: float
    usd_per_mwh: tuple[float, ...]

    @property
    def end(self) -> datetime:
        """The end of the last interval."""
        return self.start + timedelta(seconds=self.step_s * len(self.usd_per_mwh))


@dataclass(frozen=True, slots=True)
class EventCancel:
    """The grid operator withdrew event `id`."""

    id: str


class OverrideMode(StrEnum):
    """What an operator holds a group at."""

    AWAKE = "awake"  # everything on, whatever the plan says
    ASLEEP = "asleep"  # everything off
    CAP = "cap"  # at most `units_on` miners (ASIC) or `power_cap_watts` per GPU (GPU)


@dataclass(frozen=True, slots=True)
class Override:
    """An operator's hold on `group` until `until` (aware UTC). In mode CAP exactly one of
    `units_on` (ASIC groups) and `power_cap_watts` (GPU groups) is set; otherwise neither.
    `by` names the operator when the payload did."""

    group: str
    mode: OverrideMode
    until: datetime
    units_on: int | None = None
    power_cap_watts: float | None = None
    by: str | None = None


@dataclass(frozen=True, slots=True)
class OverrideClear:
    """The override on `group` was deleted (an empty retained message)."""

    group: str


# --- validation -------------------------------------------------------------------------------


def _preview(value: object) -> str:
    """A short repr for a detail message: payloads are untrusted and may be long."""
    text = repr(value)
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 3] + "..."


def _fail(reason: RejectReason, message: str) -> PydanticCustomError:
    # The message goes through a context variable, not the template, so braces in it are safe.
    return PydanticCustomError(reason, "{detail}", {"detail": message})


def _timestamp(value: object) -> datetime:
    """An aware UTC datetime from ISO 8601 with a zone, or from epoch seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _fail(
            "wrong_type", f"a timestamp is ISO 8601 text or epoch seconds, not {_preview(value)}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail("out_of_range", f"timestamp {value!r} is not finite")
    if isinstance(value, int | float):
        # Compared before conversion: a huge int would overflow float(). Milliseconds since
        # the epoch (a common gateway slip) land here too, far past 2100.
        if not _EPOCH_MIN_S <= value < _EPOCH_MAX_S:
            raise _fail(
                "bad_timestamp",
                f"epoch seconds {_preview(value)} are outside the years {_YEAR_MIN}..{_YEAR_MAX}",
            )
        return datetime.fromtimestamp(value, UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _fail("bad_timestamp", f"{_preview(value)} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _fail("bad_timestamp", f"{_preview(value)} has no zone ('Z' or an offset)")
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset, say
        raise _fail("bad_timestamp", f"{_preview(value)} is out of range") from None
    if not _YEAR_MIN <= utc.year <= _YEAR_MAX:
        raise _fail(
            "bad_timestamp", f"{_preview(value)} is outside the years {_YEAR_MIN}..{_YEAR_MAX}"
        )
    return utc


_Timestamp = Annotated[datetime, PlainValidator(_timestamp)]
_Name = Annotated[str, Field(min_length=1, max_length=_MAX_NAME_CHARS)]

# strict: no coercion, so "12" is not a number and true is not 1; allow_inf_nan=False: NaN and
# infinity (which Python's json accepts, and which 1e999 parses to) are out of range.
_STRICT = ConfigDict(
    strict=True, allow_inf_nan=False, extra="ignore", frozen=True, hide_input_in_errors=True
)

_FINITE_FLOAT: TypeAdapter[float] = TypeAdapter(float, config=_STRICT)
_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(_Timestamp)


class _ForecastIn(BaseModel):
    model_config = _STRICT

    issued: _Timestamp
    start: _Timestamp
    step_s: Annotated[float, Field(gt=0.0, le=_MAX_STEP_S)]
    usd_per_mwh: Annotated[list[float], Field(min_length=1, max_length=_MAX_FORECAST_VALUES)]


class _EventIn(BaseModel):
    model_config = _STRICT

    id: _Name
    # Any kind is taken as a cap on the site's draw: ignoring an event of a kind we have not
    # heard of is the worse failure. A payload without one is a shed, as in the contract.
    kind: Annotated[str, Field(min_length=1, max_length=64)] = "shed"
    start: _Timestamp
    end: _Timestamp
    max_site_watts: Annotated[float, Field(ge=0.0)]

    @model_validator(mode="after")
    def _ends_after_start(self) -> Self:
        if self.end <= self.start:
            raise _fail("out_of_range", "end: must be after start")
        return self


class _CancelIn(BaseModel):
    model_config = _STRICT

    id: _Name
    cancel: bool


class _OverrideIn(BaseModel):
    model_config = _STRICT

    mode: str
    until: _Timestamp
    units_on: Annotated[int, Field(ge=0, le=_MAX_UNITS)] | None = None
    power_cap_watts: Annotated[float, Field(gt=0.0)] | None = None
    by: _Name | None = None

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, mode: str) -> str:
        if mode not in {m.value for m in OverrideMode}:
            raise _fail("out_of_range", f"{_preview(mode)} is not one of awake, asleep, cap")
        return mode

    @model_validator(mode="after")
    def _limit_matches_mode(self) -> Self:
        limits = (self.units_on is not None) + (self.power_cap_watts is not None)
        if self.mode == OverrideMode.CAP and limits != 1:
            raise _fail("schema", "mode cap needs exactly one of units_on and power_cap_watts")
        if self.mode != OverrideMode.CAP and limits:
            raise _fail("schema", f"mode {self.mode} takes neither units_on nor power_cap_watts")
        return self


# pydantic error types (https://docs.pydantic.dev/latest/errors/validation_errors/) by reason;
# our own validators raise errors typed with the reason itself. Other "*_type" and "*_parsing"
# errors are wrong types, anything else a schema problem.
_REASON_BY_ERROR_TYPE: Final[dict[str, RejectReason]] = {
    **{reason: reason for reason in REJECT_REASONS},
    "missing": "missing_field",
    "model_type": "schema",
    **dict.fromkeys(
        (
            "finite_number",
            "greater_than",
            "greater_than_equal",
            "less_than",
            "less_than_equal",
            "too_short",
            "too_long",
            "string_too_short",
            "string_too_long",
        ),
        "out_of_range",
    ),
}


def _reason(error: Mapping[str, Any]) -> RejectReason:
    """The reject reason for one pydantic error."""
    kind: str = error["type"]
    if kind == "float_type" and type(error.get("input")) is int:
        return "out_of_range"  # an integer too large for a float
    if kind in _REASON_BY_ERROR_TYPE:
        return _REASON_BY_ERROR_TYPE[kind]
    return "wrong_type" if kind.endswith(("_type", "_parsing")) else "schema"


def _rejected(error: ValidationError, where: str = "") -> Rejected:
    """Translate pydantic's first complaint; the detail names the field (or `where`)."""
    errors = error.errors(include_url=False)
    first = errors[0]
    reason = _reason(first)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if not first["loc"] and first["type"] == reason:
        # A whole-model check of ours: its message names the fields it compared.
        return Rejected(reason, f"{first['msg']}{more}")
    field = ".".join(str(part) for part in first["loc"]) or where or "payload"
    if first["type"] == "model_type":
        message = "must be a JSON object"
    elif first["type"] == "float_type" and reason == "out_of_range":
        message = "integer too large for a float"
    else:
        message = first["msg"]
    return Rejected(reason, f"{field}: {message}{more}")


# --- decoding ---------------------------------------------------------------------------------


def _aware_utc(received: datetime) -> datetime:
    if received.tzinfo is None or received.utcoffset() is None:
        raise ValueError("received must be a timezone-aware datetime")
    return received.astimezone(UTC)


def _json(payload: bytes, max_bytes: int) -> object:
    """The JSON value in `payload`, after the size and encoding checks every decoder shares."""
    if len(payload) > max_bytes:
        raise Rejected("too_large", f"payload: {len(payload)} bytes, more than {max_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("not_utf8", f"payload: invalid UTF-8 at byte {exc.start}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Rejected("not_json", f"payload: {exc.msg} at character {exc.pos}") from exc
    except RecursionError as exc:  # brackets nested deeper than the parser recurses
        raise Rejected("not_json", "payload: nested too deeply") from exc
    except ValueError as exc:  # an integer literal longer than Python's digit limit
        raise Rejected("not_json", "payload: an integer literal has too many digits") from exc


_ABSENT: Final = object()


def _lookup(obj: Mapping[str, object], path: tuple[str, ...]) -> object:
    """The value at `path`, or `_ABSENT` where a key is missing; an intermediate that is not an
    object is a wrong type."""
    node: object = obj
    for depth, key in enumerate(path):
        if not isinstance(node, dict):
            raise Rejected("wrong_type", f"{'.'.join(path[:depth])}: must be a JSON object")
        if key not in node:
            return _ABSENT
        node = node[key]
    return node


def decode_reading(
    payload: bytes, mapping: FieldMap, *, received: datetime, max_bytes: int = DEFAULT_MAX_BYTES
) -> Reading:
    """One reading: the number at `mapping.value_path` times `mapping.scale`, stamped with the
    timestamp at `mapping.ts_path` or, failing one, with `received`. A bare JSON number is
    accepted as the value, stamped `received`."""
    received = _aware_utc(received)
    data = _json(payload, max_bytes)
    where = ".".join(mapping.value_path)
    raw: object
    if isinstance(data, int | float) and not isinstance(data, bool):
        raw, ts = data, received
    elif isinstance(data, dict):
        raw = _lookup(data, mapping.value_path)
        if raw is _ABSENT:
            raise Rejected("missing_field", f"{where}: required")
        ts = received if mapping.ts_path is None else _reading_ts(data, mapping.ts_path, received)
    else:
        raise Rejected("schema", "payload: must be a JSON object or a bare number")
    try:
        value = _FINITE_FLOAT.validate_python(raw)
    except ValidationError as exc:
        raise _rejected(exc, where) from exc
    scaled = value * mapping.scale
    if not math.isfinite(scaled):
        raise Rejected("out_of_range", f"{where}: {value!r} * {mapping.scale!r} overflows")
    return Reading(ts=ts, value=scaled)


def _reading_ts(data: Mapping[str, object], path: tuple[str, ...], received: datetime) -> datetime:
    stamp = _lookup(data, path)
    if stamp is _ABSENT:
        return received
    try:
        return _TIMESTAMP.validate_python(stamp)
    except ValidationError as exc:
        raise _rejected(exc, ".".join(path)) from exc


def decode_forecast(
    payload: bytes, *, received: datetime, max_bytes: int = DEFAULT_MAX_BYTES
) -> Forecast:
    """A price forecast: `{"issued", "start", "step_s", "usd_per_mwh": [...]}` with a positive
    step of at most a day and 1..2000 finite prices."""
    _aware_utc(received)  # unused beyond the check: a forecast carries its own times
    data = _json(payload, max_bytes)
    try:
        model = _ForecastIn.model_validate(data)
    except ValidationError as exc:
        raise _rejected(exc) from exc
    return Forecast(
        issued=model.issued,
        start=model.start,
        step_s=model.step_s,
        usd_per_mwh=tuple(model.usd_per_mwh),
    )


def decode_event(
    payload: bytes, *, received: datetime, max_bytes: int = DEFAULT_MAX_BYTES
) -> GridEvent | EventCancel:
    """A grid event `{"id", "kind", "start", "end", "max_site_watts"}` (end after start, a cap
    of at least 0 W), or its cancellation `{"id", "cancel": true}`."""
    _aware_utc(received)
    data = _json(payload, max_bytes)
    try:
        if isinstance(data, dict) and "cancel" in data:
            cancel = _CancelIn.model_validate(data)
            if cancel.cancel:
                return EventCancel(id=cancel.id)
        event = _EventIn.model_validate(data)
    except ValidationError as exc:
        raise _rejected(exc) from exc
    return GridEvent(
        id=event.id,
        start=event.start,
        end=event.end,
        max_site_watts=event.max_site_watts,
        kind=event.kind,
    )


def decode_override(
    payload: bytes, group: str, *, received: datetime, max_bytes: int = DEFAULT_MAX_BYTES
) -> Override | OverrideClear:
    """An operator's override of `group` (the topic's last level):
    `{"mode": "awake"|"asleep"|"cap", "until", "units_on" | "power_cap_watts", "by"}`, or
    `OverrideClear` for an empty payload (the retained override was deleted). An override whose
    `until` is not after `received` is rejected as "expired"."""
    received = _aware_utc(received)
    if not payload:
        return OverrideClear(group=group)
    data = _json(payload, max_bytes)
    try:
        model = _OverrideIn.model_validate(data)
    except ValidationError as exc:
        raise _rejected(exc) from exc
    if model.until <= received:
        raise Rejected(
            "expired", f"until: {model.until.isoformat()} is not after {received.isoformat()}"
        )
    return Override(
        group=group,
        mode=OverrideMode(model.mode),
        until=model.until,
        units_on=model.units_on,
        power_cap_watts=model.power_cap_watts,
        by=model.by,
    )


# --- the grid programs ------------------------------------------------------------------------
#
# ERCOT's system load and frequency, 4CP alerts bought from a forecaster, and the reserve
# awards, deployments and recalls a QSE (the site's market participant) sends, with the
# day-ahead ancillary prices. Products are the reserves a Load Resource carries.

RESERVE_PRODUCTS: Final = ("RRS", "ECRS", "NSPIN")
# ERCOT's system load has stayed between about 25 and 90 GW; a reading outside these bounds is a
# unit slip (kW or GW for MW) or a broken feed, not a grid.
_LOAD_MW_RANGE: Final = (1_000.0, 500_000.0)
# A 60 Hz grid outside this band has collapsed or the meter is broken.
_FREQUENCY_HZ_RANGE: Final = (45.0, 65.0)
_MAX_AWARD_S: Final = 7 * 86_400.0  # a week of hours: day-ahead awards cover one day
_MAX_SITE_MW: Final = 100_000.0


@dataclass(frozen=True, slots=True)
class CpAlert:
    """A bought 4CP alert: the intervals in [`start`, `end`) are the month's coincident peak
    with a chance of at least `chance`."""

    start: datetime
    end: datetime
    chance: float


@dataclass(frozen=True, slots=True)
class Award:
    """An award of `mw` of reserve `product` over the whole hours [`start`, `end`), paid
    `usd_per_mw_h` per MW and hour held."""

    product: str
    start: datetime
    end: datetime
    mw: float
    usd_per_mw_h: float

    def hours(self) -> tuple[datetime, ...]:
        """The start of each hour the award covers."""
        count = round((self.end - self.start).total_seconds() / 3_600.0)
        return tuple(self.start + timedelta(hours=k) for k in range(count))


@dataclass(frozen=True, slots=True)
class Deploy:
    """An instruction to drop `mw` of the load held for `product` from `start`, until it is
    recalled by `id`."""

    id: str
    product: str
    mw: float
    start: datetime


@dataclass(frozen=True, slots=True)
class Recall:
    """The end of deployment `id`: the load may come back."""

    id: str


@dataclass(frozen=True, slots=True)
class AncillaryForecast:
    """Day-ahead clearing prices of `product`, `usd_per_mw_h[i]` for the hour starting
    `start + i` hours."""

    product: str
    start: datetime
    usd_per_mw_h: tuple[float, ...]


def _on_the_hour(moment: datetime, name: str) -> datetime:
    if (moment.minute, moment.second, moment.microsecond) != (0, 0, 0):
        raise _fail("out_of_range", f"{name}: {moment.isoformat()} is not on a whole hour")
    return moment


def _known_product(product: str) -> str:
    if product not in RESERVE_PRODUCTS:
        raise _fail(
            "out_of_range", f"{_preview(product)} is not one of {', '.join(RESERVE_PRODUCTS)}"
        )
    return product


_Product = Annotated[str, Field(min_length=1, max_length=16)]
_M = TypeVar("_M", bound=BaseModel)


class _CpAlertIn(BaseModel):
    model_config = _STRICT

    start: _Timestamp
    end: _Timestamp
    chance: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0

    @model_validator(mode="after")
    def _ends_after_start(self) -> Self:
        if self.end <= self.start:
            raise _fail("out_of_range", "end: must be after start")
        return self


class _AwardIn(BaseModel):
    model_config = _STRICT

    product: _Product
    start: _Timestamp
    end: _Timestamp
    mw: Annotated[float, Field(ge=0.0, le=_MAX_SITE_MW)]
    usd_per_mw_h: Annotated[float, Field(ge=0.0)]

    @field_validator("product")
    @classmethod
    def _product(cls, product: str) -> str:
        return _known_product(product)

    @model_validator(mode="after")
    def _whole_hours(self) -> Self:
        _on_the_hour(self.start, "start")
        _on_the_hour(self.end, "end")
        span_s = (self.end - self.start).total_seconds()
        if not 0 < span_s <= _MAX_AWARD_S:
            raise _fail("out_of_range", "end: must be after start, and within a week of it")
        return self


class _DeployIn(BaseModel):
    model_config = _STRICT

    id: _Name
    product: _Product
    mw: Annotated[float, Field(gt=0.0, le=_MAX_SITE_MW)]
    start: _Timestamp | None = None

    @field_validator("product")
    @classmethod
    def _product(cls, product: str) -> str:
        return _known_product(product)


class _RecallIn(BaseModel):
    model_config = _STRICT

    id: _Name


class _AncillaryIn(BaseModel):
    model_config = _STRICT

    start: _Timestamp
    step_s: float
    product: _Product
    usd_per_mw_h: Annotated[
        list[Annotated[float, Field(ge=0.0)]],
        Field(min_length=1, max_length=_MAX_FORECAST_VALUES),
    ]

    @field_validator("product")
    @classmethod
    def _product(cls, product: str) -> str:
        return _known_product(product)

    @model_validator(mode="after")
    def _hourly(self) -> Self:
        if self.step_s != 3_600.0:
            raise _fail("out_of_range", "step_s: day-ahead ancillary prices are hourly (3600)")
        _on_the_hour(self.start, "start")
        return self


def _model(model: type[_M], payload: bytes, received: datetime, max_bytes: int) -> _M:
    _aware_utc(received)
    data = _json(payload, max_bytes)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _rejected(exc) from exc


def _ranged(reading: Reading, name: str, bounds: tuple[float, float], unit: str) -> Reading:
    low, high = bounds
    if not low <= reading.value <= high:
        raise Rejected(
            "out_of_range", f"{name}: {reading.value:g} {unit} is outside {low:g}..{high:g}"
        )
    return reading


def decode_system_load(
    payload: bytes, *, received: datetime, max_bytes: int = DEFAULT_MAX_BYTES
) -> Reading:
    """ERCOT's system load, MW: `{"ts", "mw"}` or a bare number (stamped `received`)."""
    reading = decode_reading(payload, FieldMap(("mw",)), received=received, max_bytes=max_bytes)
    return _ranged(reading, "mw", _LOAD_MW_RANGE, "MW")


def decode_frequency(
    payload: bytes, *, received: datetime, max_bytes: int = DEFAULT_MAX_BYTES
) -> Reading:
    """The grid's frequency at the site's meter, Hz: `{"ts", "hz"}` or a bare number."""
    reading = decode_reading(payload, FieldMap(("hz",)), received=received, max_bytes=max_bytes)
    return _ranged(reading, "hz", _FREQUENCY_HZ_RANGE, "Hz")


def decode_cp_alert(
    payload: bytes, *, received: datetime, max_bytes: int = DEFAULT_MAX_BYTES
) -> CpAlert:
    """A 4CP alert `{"start", "end", "chance"}`: end after start, chance in [0, 1] (1 when
    not given)."""
    model = _model(_CpAlertIn, payload, received, max_bytes)
    return CpAlert(start=model.start, end=model.end, chance=model.chance)


def decode_award(
    payload: bytes, *, received: datetime, max_bytes: int = DEFAULT_MAX_BYTES
) -> Award:
    """A reserve award `{"product", "start", "end", "mw", "usd_per_mw_h"}` over whole hours
    (at most a week of them), `mw` and the price at least 0."""
    model = _model(_AwardIn, payload, received, max_bytes)
    return Award(
        product=model.product,
        start=model.start,
        end=model.end,
        mw=model.mw,
        usd_per_mw_h=model.usd_per_mw_h,
    )


def decode_deploy(
    payload: bytes, *, received: datetime, max_bytes: int = DEFAULT_MAX_BYTES
) -> Deploy:
    """A deployment `{"id", "product", "mw", "start"}` of more than 0 MW; without a `start`, from
    `received`."""
    model = _model(_DeployIn, payload, received, max_bytes)
    start = model.start if model.start is not None else _aware_utc(received)
    return Deploy(id=model.id, product=model.product, mw=model.mw, start=start)


def decode_recall(
    payload: bytes, *, received: datetime, max_bytes: int = DEFAULT_MAX_BYTES
) -> Recall:
    """A recall `{"id"}` of a deployment."""
    return Recall(id=_model(_RecallIn, payload, received, max_bytes).id)


def decode_ancillary_prices(
    payload: bytes, *, received: datetime, max_bytes: int = DEFAULT_MAX_BYTES
) -> AncillaryForecast:
    """Day-ahead ancillary prices `{"start", "step_s": 3600, "product", "usd_per_mw_h": [...]}`
    from a whole hour, 1..2000 prices of at least 0."""
    model = _model(_AncillaryIn, payload, received, max_bytes)
    return AncillaryForecast(
        product=model.product, start=model.start, usd_per_mw_h=tuple(model.usd_per_mw_h)
    )


# --- encoding ---------------------------------------------------------------------------------


def _count(name: str, value: int) -> int:
    # operator.index takes numpy integers too (json.dumps does not) and refuses floats.
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, not a boolean")
    count = operator.index(value)
    if count < 0:
        raise ValueError(f"{name} must be at least 0, not {count}")
    return count


def _watts(name: str, value: float, *, positive: bool) -> float:
    watts = float(value)
    if not math.isfinite(watts) or watts < 0.0 or (positive and watts == 0.0):
        bound = "positive" if positive else "at least 0"
        raise ValueError(f"{name} must be finite and {bound}, not {value!r}")
    return watts


def _encode(fields: dict[str, object]) -> bytes:
    # Insertion order is the contract's field order; compact separators and allow_nan=False keep
    # the bytes valid, minimal JSON that is identical for an identical command.
    return json.dumps(fields, separators=(",", ":"), allow_nan=False).encode("ascii")


def encode_asic_command(*, plan: str, units_on: int, watts_per_unit: float, reason: str) -> bytes:
    """`{"plan", "units_on", "watts_per_unit", "reason"}` for `cmd/asic/<group>`. Raises
    ValueError for a negative count or a non-finite or negative wattage."""
    return _encode(
        {
            "plan": plan,
            "units_on": _count("units_on", units_on),
            "watts_per_unit": _watts("watts_per_unit", watts_per_unit, positive=False),
            "reason": reason,
        }
    )


def encode_gpu_command(
    *,
    plan: str,
    power_cap_watts: float,
    capped_nodes: int,
    paused_nodes: int,
    reason: str,
) -> bytes:
    """`{"plan", "power_cap_watts", "capped_nodes", "paused_nodes", "reason"}` for
    `cmd/gpu/<group>`. Raises ValueError for a cap that is not positive and finite, or a negative
    node count."""
    return _encode(
        {
            "plan": plan,
            "power_cap_watts": _watts("power_cap_watts", power_cap_watts, positive=True),
            "capped_nodes": _count("capped_nodes", capped_nodes),
            "paused_nodes": _count("paused_nodes", paused_nodes),
            "reason": reason,
        }
    )
