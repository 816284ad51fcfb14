"""MQTT payloads: good shapes decode to UTC values, every bad one is `Rejected` with its reason,
and commands encode to compact, stable JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridpilot.adapters.payloads import (
    DEFAULT_MAX_BYTES,
    REJECT_REASONS,
    AncillaryForecast,
    Award,
    CpAlert,
    Deploy,
    EventCancel,
    FieldMap,
    Forecast,
    Override,
    OverrideClear,
    OverrideMode,
    Reading,
    Recall,
    Rejected,
    decode_ancillary_prices,
    decode_award,
    decode_cp_alert,
    decode_deploy,
    decode_event,
    decode_forecast,
    decode_frequency,
    decode_override,
    decode_reading,
    decode_recall,
    decode_system_load,
    encode_asic_command,
    encode_gpu_command,
)
from gridpilot.optimizer.problem import GridEvent

RECEIVED = datetime(2024, 8, 20, 12, 0, tzinfo=UTC)
RECEIVED_EPOCH_S = 1_724_155_200  # RECEIVED as epoch seconds
WATTS = FieldMap(("watts",))
NESTED_KW = FieldMap(("data", "power", "kw"), scale=1000.0, ts_path=("data", "at"))

FUZZ = settings(max_examples=200, deadline=None, database=None, derandomize=True)

Decoder = Callable[[bytes], object]


def _reading(payload: bytes, mapping: FieldMap = WATTS) -> Reading:
    return decode_reading(payload, mapping, received=RECEIVED)


def _forecast(payload: bytes) -> Forecast:
    return decode_forecast(payload, received=RECEIVED)


def _event(payload: bytes) -> GridEvent | EventCancel:
    return decode_event(payload, received=RECEIVED)


def _override(payload: bytes) -> Override | OverrideClear:
    return decode_override(payload, "row-a", received=RECEIVED)


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _reason(decoder: Decoder, payload: bytes) -> str:
    with pytest.raises(Rejected) as caught:
        decoder(payload)
    return caught.value.reason


FORECAST = {
    "issued": "2024-08-20T11:55:00Z",
    "start": "2024-08-20T12:00:00Z",
    "step_s": 3600,
    "usd_per_mwh": [41.2, 38.0, -3.5],
}
EVENT = {
    "id": "ercot-eea-1",
    "kind": "shed",
    "start": "2024-08-20T18:00:00Z",
    "end": "2024-08-20T20:00:00Z",
    "max_site_watts": 2.5e7,
}
OVERRIDE = {"mode": "cap", "until": "2024-08-20T14:00:00Z", "units_on": 40, "by": "dana"}


# --- readings ---------------------------------------------------------------------------------


def test_reading_takes_the_value_and_its_iso_timestamp() -> None:
    """A contract meter payload gives its watts stamped with its own 'Z' timestamp."""
    reading = _reading(b'{"ts": "2024-08-20T11:59:30Z", "watts": 81234567.0}')
    assert reading == Reading(ts=datetime(2024, 8, 20, 11, 59, 30, tzinfo=UTC), value=81234567.0)


def test_reading_follows_a_nested_path_and_scales_kilowatts() -> None:
    """A gateway's nested kW value is found by its path and converted to watts."""
    payload = _json({"data": {"power": {"kw": 812.5}, "at": RECEIVED_EPOCH_S - 60}})
    reading = _reading(payload, NESTED_KW)
    assert reading.value == pytest.approx(812_500.0)
    assert reading.ts == RECEIVED - timedelta(seconds=60)


def test_reading_accepts_a_bare_number_stamped_on_receipt() -> None:
    """A bare number is the value, scaled, with the broker-receipt time as its timestamp."""
    reading = _reading(b"81.2345670", FieldMap(("ignored",), scale=1e6))
    assert reading.value == pytest.approx(81_234_567.0)
    assert reading.ts == RECEIVED


def test_reading_converts_an_offset_timestamp_to_utc() -> None:
    """A timestamp with a +02:00 offset comes back as the same instant in UTC."""
    reading = _reading(b'{"ts": "2024-08-20T14:00:00+02:00", "watts": 5}')
    assert reading.ts == RECEIVED
    assert reading.ts.tzinfo is UTC


def test_reading_accepts_fractional_epoch_seconds() -> None:
    """A float epoch timestamp keeps its fraction of a second."""
    reading = _reading(_json({"ts": RECEIVED_EPOCH_S + 0.25, "watts": 1}))
    assert reading.ts == RECEIVED + timedelta(milliseconds=250)


def test_reading_without_a_timestamp_is_stamped_on_receipt() -> None:
    """No timestamp at the mapped path, or no path at all, means the receipt time."""
    assert _reading(b'{"watts": 3}').ts == RECEIVED
    assert _reading(b'{"data": {"power": {"kw": 1}}}', NESTED_KW).ts == RECEIVED
    untimed = FieldMap(("watts",), ts_path=None)
    assert _reading(b'{"watts": 3, "ts": "garbage"}', untimed).ts == RECEIVED


def test_reading_returns_utc_for_a_receipt_time_in_another_zone() -> None:
    """A receipt time given with an offset is returned in UTC."""
    received = RECEIVED.astimezone(timezone(timedelta(hours=-5)))
    reading = decode_reading(b"7", WATTS, received=received)
    assert reading.ts == RECEIVED
    assert reading.ts.tzinfo is UTC


def test_reading_refuses_a_naive_receipt_time() -> None:
    """A naive `received` is a caller's bug, not a bad payload: ValueError."""
    with pytest.raises(ValueError, match="aware"):
        decode_reading(b"7", WATTS, received=datetime(2024, 8, 20, 12))


def test_field_map_refuses_an_unusable_mapping() -> None:
    """An empty path, or a zero or non-finite scale, is a configuration error."""
    with pytest.raises(ValueError, match="value_path"):
        FieldMap(())
    with pytest.raises(ValueError, match="scale"):
        FieldMap(("w",), scale=0.0)
    with pytest.raises(ValueError, match="scale"):
        FieldMap(("w",), scale=math.nan)
    with pytest.raises(ValueError, match="ts_path"):
        FieldMap(("w",), ts_path=())


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe{}", "not_utf8"),
        (b'{"watts": 1', "not_json"),
        (b"", "not_json"),
        (b"[" * 60_000, "not_json"),  # deeper than the parser recurses
        (b"1" * 5_000, "not_json"),  # more digits than Python converts
        (b'{"ts": 1724155200}', "missing_field"),
        (b'{"watts": true}', "wrong_type"),
        (b'{"watts": "812"}', "wrong_type"),
        (b'{"watts": null}', "wrong_type"),
        (b'{"watts": 1, "ts": null}', "wrong_type"),
        (b'{"watts": 1, "ts": true}', "wrong_type"),
        (b'{"watts": NaN}', "out_of_range"),
        (b'{"watts": -Infinity}', "out_of_range"),
        (b'{"watts": 1e999}', "out_of_range"),
        (b'{"watts": 1' + b"0" * 400 + b"}", "out_of_range"),  # an int no float holds
        (b'{"watts": 1, "ts": NaN}', "out_of_range"),
        (b'{"watts": 1, "ts": "2024-08-20T12:00:00"}', "bad_timestamp"),  # naive
        (b'{"watts": 1, "ts": "2024-08-20"}', "bad_timestamp"),  # a date is naive too
        (b'{"watts": 1, "ts": "yesterday"}', "bad_timestamp"),
        (b'{"watts": 1, "ts": "1724155200"}', "bad_timestamp"),  # epoch as text
        (b'{"watts": 1, "ts": 1724155200000}', "bad_timestamp"),  # milliseconds
        (b'{"watts": 1, "ts": 946684799}', "bad_timestamp"),  # 1999-12-31T23:59:59Z
        (b'{"watts": 1, "ts": "1999-12-31T23:59:59Z"}', "bad_timestamp"),
        (b'{"watts": 1, "ts": "0001-01-01T00:00:00+01:00"}', "bad_timestamp"),
        (b"[1]", "schema"),
        (b'"812"', "schema"),
        (b"true", "schema"),
    ],
)
def test_reading_rejects_a_bad_payload_with_its_reason(payload: bytes, reason: str) -> None:
    """Each kind of bad reading is rejected with the reason that names its fault."""
    assert _reason(_reading, payload) == reason


def test_reading_rejects_a_non_object_on_the_way_down_its_path() -> None:
    """An intermediate of the value path that is not an object is a wrong type, named."""
    with pytest.raises(Rejected) as caught:
        _reading(b'{"data": {"power": 5}}', NESTED_KW)
    assert caught.value.reason == "wrong_type"
    assert "data.power" in caught.value.detail


def test_reading_rejects_a_value_that_overflows_when_scaled() -> None:
    """A finite value whose scaled size is infinite is out of range."""
    assert _reason(lambda p: _reading(p, FieldMap(("w",), scale=1e6)), b"1e305") == "out_of_range"


def test_rejection_detail_names_the_field() -> None:
    """The human detail of a rejection says which field was wrong."""
    with pytest.raises(Rejected) as caught:
        _reading(b'{"data": {"power": {"kw": "x"}}}', NESTED_KW)
    assert caught.value.detail.startswith("data.power.kw:")
    assert str(caught.value) == f"wrong_type: {caught.value.detail}"


# --- size limit -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "decoder",
    [
        lambda p, n: decode_reading(p, WATTS, received=RECEIVED, max_bytes=n),
        lambda p, n: decode_forecast(p, received=RECEIVED, max_bytes=n),
        lambda p, n: decode_event(p, received=RECEIVED, max_bytes=n),
        lambda p, n: decode_override(p, "row-a", received=RECEIVED, max_bytes=n),
    ],
    ids=["reading", "forecast", "event", "override"],
)
def test_every_decoder_rejects_a_payload_over_its_size_limit(
    decoder: Callable[[bytes, int], object],
) -> None:
    """One byte over `max_bytes` is too large before any parsing; exactly the limit is parsed."""
    payload = b"[" + b" " * 98 + b"]"  # 100 bytes of valid JSON
    assert _reason(lambda p: decoder(p, 99), payload) == "too_large"
    assert _reason(lambda p: decoder(p, 100), payload) == "schema"


@pytest.mark.parametrize("decoder", [_reading, _forecast, _event, _override])
def test_every_decoder_rejects_more_than_64_kib_by_default(decoder: Decoder) -> None:
    """The default limit is 64 KiB, checked before the bytes are read."""
    assert DEFAULT_MAX_BYTES == 65_536
    assert _reason(decoder, b"\xff" * (DEFAULT_MAX_BYTES + 1)) == "too_large"


# --- forecast ---------------------------------------------------------------------------------


def test_forecast_decodes_times_step_and_prices() -> None:
    """A contract forecast keeps its prices in order, negative ones included."""
    forecast = _forecast(_json(FORECAST))
    assert forecast == Forecast(
        issued=datetime(2024, 8, 20, 11, 55, tzinfo=UTC),
        start=RECEIVED,
        step_s=3600.0,
        usd_per_mwh=(41.2, 38.0, -3.5),
    )
    assert forecast.end == RECEIVED + timedelta(hours=3)


def test_forecast_accepts_epoch_and_offset_timestamps() -> None:
    """Epoch seconds and offset ISO times both come back as aware UTC."""
    payload = {**FORECAST, "issued": RECEIVED_EPOCH_S, "start": "2024-08-20T07:00:00-05:00"}
    forecast = _forecast(_json(payload))
    assert forecast.issued == RECEIVED
    assert forecast.start == RECEIVED
    assert forecast.start.tzinfo is UTC


def test_forecast_accepts_two_thousand_values() -> None:
    """The longest forecast allowed is 2000 values."""
    payload = {**FORECAST, "step_s": 900.5, "usd_per_mwh": [1.0] * 2000}
    forecast = _forecast(_json(payload))
    assert len(forecast.usd_per_mwh) == 2000
    assert forecast.step_s == 900.5


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"step_s": None}, "wrong_type"),
        ({"step_s": "3600"}, "wrong_type"),
        ({"usd_per_mwh": [1.0, True]}, "wrong_type"),
        ({"usd_per_mwh": 41.2}, "wrong_type"),
        ({"step_s": 0}, "out_of_range"),
        ({"step_s": -900}, "out_of_range"),
        ({"step_s": 86_401}, "out_of_range"),
        ({"usd_per_mwh": []}, "out_of_range"),
        ({"usd_per_mwh": [1.0] * 2001}, "out_of_range"),
        ({"usd_per_mwh": [1.0, math.nan]}, "out_of_range"),
        ({"usd_per_mwh": [math.inf]}, "out_of_range"),
        ({"issued": "2024-08-20T11:55:00"}, "bad_timestamp"),
        ({"start": 1.7e12}, "bad_timestamp"),
    ],
)
def test_forecast_rejects_a_bad_field_with_its_reason(
    change: dict[str, object], reason: str
) -> None:
    """Each bad forecast field is rejected with the reason that names its fault."""
    assert _reason(_forecast, _json({**FORECAST, **change})) == reason


def test_forecast_rejects_a_missing_field() -> None:
    """A forecast without its start is missing a field, and the detail names it."""
    payload = {key: value for key, value in FORECAST.items() if key != "start"}
    with pytest.raises(Rejected) as caught:
        _forecast(_json(payload))
    assert caught.value.reason == "missing_field"
    assert caught.value.detail.startswith("start:")


def test_forecast_rejects_a_payload_that_is_not_an_object() -> None:
    """A JSON list or number is not a forecast."""
    assert _reason(_forecast, b"[41.2, 38.0]") == "schema"
    assert _reason(_forecast, b"41.2") == "schema"


# --- grid events ------------------------------------------------------------------------------


def test_event_decodes_to_the_optimizer_grid_event() -> None:
    """A shed event becomes the optimizer's GridEvent with UTC times."""
    assert _event(_json(EVENT)) == GridEvent(
        id="ercot-eea-1",
        start=datetime(2024, 8, 20, 18, tzinfo=UTC),
        end=datetime(2024, 8, 20, 20, tzinfo=UTC),
        max_site_watts=2.5e7,
        kind="shed",
    )


def test_event_without_a_kind_is_a_shed_and_other_kinds_are_kept() -> None:
    """A missing kind means shed; an unknown kind is still honoured as a cap."""
    untyped = {key: value for key, value in EVENT.items() if key != "kind"}
    assert _event(_json(untyped)) == _event(_json(EVENT))
    emergency = _event(_json({**EVENT, "kind": "eea3", "max_site_watts": 0}))
    assert isinstance(emergency, GridEvent)
    assert (emergency.kind, emergency.max_site_watts) == ("eea3", 0.0)


def test_event_cancel_decodes_to_event_cancel() -> None:
    """`{"id", "cancel": true}` withdraws the event with that id."""
    assert _event(b'{"id": "ercot-eea-1", "cancel": true}') == EventCancel("ercot-eea-1")


def test_event_with_cancel_false_is_an_event() -> None:
    """`"cancel": false` beside a full event is just the event."""
    assert isinstance(_event(_json({**EVENT, "cancel": False})), GridEvent)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"cancel": True}, "missing_field"),
        ({"id": "e", "cancel": False}, "missing_field"),
        ({**EVENT, "max_site_watts": None}, "wrong_type"),
        ({**EVENT, "id": 7}, "wrong_type"),
        ({"id": "e", "cancel": "yes"}, "wrong_type"),
        ({"id": "e", "cancel": 1}, "wrong_type"),
        ({**EVENT, "max_site_watts": -1.0}, "out_of_range"),
        ({**EVENT, "end": EVENT["start"]}, "out_of_range"),
        ({**EVENT, "id": ""}, "out_of_range"),
        ({**EVENT, "id": "e" * 257}, "out_of_range"),
        ({**EVENT, "start": "2024-08-20 18:00"}, "bad_timestamp"),
        ([EVENT], "schema"),
    ],
)
def test_event_rejects_a_bad_payload_with_its_reason(payload: object, reason: str) -> None:
    """Each kind of bad event is rejected with the reason that names its fault."""
    assert _reason(_event, _json(payload)) == reason


def test_event_that_ends_before_it_starts_says_so() -> None:
    """The detail of an inverted event names both ends."""
    with pytest.raises(Rejected) as caught:
        _event(_json({**EVENT, "start": EVENT["end"], "end": EVENT["start"]}))
    assert caught.value.reason == "out_of_range"
    assert "end" in caught.value.detail
    assert "start" in caught.value.detail


# --- overrides --------------------------------------------------------------------------------


def test_override_caps_an_asic_group_by_units() -> None:
    """A cap override with units_on holds the topic's group until its expiry."""
    assert _override(_json(OVERRIDE)) == Override(
        group="row-a",
        mode=OverrideMode.CAP,
        until=datetime(2024, 8, 20, 14, tzinfo=UTC),
        units_on=40,
        by="dana",
    )


def test_override_caps_a_gpu_group_by_watts() -> None:
    """A cap override may instead carry a per-GPU power cap (an int is a number of watts)."""
    payload = {"mode": "cap", "until": RECEIVED_EPOCH_S + 600, "power_cap_watts": 450}
    override = _override(_json(payload))
    assert isinstance(override, Override)
    assert (override.units_on, override.power_cap_watts, override.by) == (None, 450.0, None)
    assert override.until == RECEIVED + timedelta(minutes=10)


@pytest.mark.parametrize("mode", ["awake", "asleep"])
def test_override_holds_a_group_awake_or_asleep(mode: str) -> None:
    """Modes awake and asleep take no limit; an offset expiry is converted to UTC."""
    payload = {"mode": mode, "until": "2024-08-20T09:00:00-04:00"}
    override = _override(_json(payload))
    assert isinstance(override, Override)
    assert override.mode == OverrideMode(mode)
    assert override.until == datetime(2024, 8, 20, 13, tzinfo=UTC)


def test_empty_override_clears_the_group() -> None:
    """An empty payload (a deleted retained message) clears the topic's group."""
    assert _override(b"") == OverrideClear("row-a")


def test_override_that_has_expired_is_rejected() -> None:
    """An override whose until is at or before receipt is expired."""
    assert _reason(_override, _json({**OVERRIDE, "until": "2024-08-20T11:00:00Z"})) == "expired"
    assert _reason(_override, _json({**OVERRIDE, "until": RECEIVED_EPOCH_S})) == "expired"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"mode": None}, "wrong_type"),
        ({"mode": 1}, "wrong_type"),
        ({"units_on": 40.0}, "wrong_type"),
        ({"units_on": True}, "wrong_type"),
        ({"by": 3}, "wrong_type"),
        ({"mode": "off"}, "out_of_range"),
        ({"units_on": -1}, "out_of_range"),
        ({"units_on": 10**7}, "out_of_range"),
        ({"units_on": None, "power_cap_watts": 0}, "out_of_range"),
        ({"units_on": None, "power_cap_watts": math.inf}, "out_of_range"),
        ({"until": "2024-08-20T14:00:00"}, "bad_timestamp"),
        ({"units_on": None}, "schema"),  # cap without a limit
        ({"power_cap_watts": 450.0}, "schema"),  # cap with both limits
        ({"mode": "awake"}, "schema"),  # awake with a limit
    ],
)
def test_override_rejects_a_bad_field_with_its_reason(
    change: dict[str, object], reason: str
) -> None:
    """Each bad override field is rejected with the reason that names its fault."""
    assert _reason(_override, _json({**OVERRIDE, **change})) == reason


def test_override_rejects_a_missing_expiry() -> None:
    """An override must say when it ends."""
    assert _reason(_override, b'{"mode": "asleep"}') == "missing_field"


def test_override_with_units_on_zero_is_a_valid_cap() -> None:
    """units_on 0 is a cap of zero miners, not a missing limit."""
    override = _override(_json({**OVERRIDE, "units_on": 0}))
    assert isinstance(override, Override)
    assert override.units_on == 0


# --- reasons ----------------------------------------------------------------------------------


def test_reject_reasons_are_the_fixed_set() -> None:
    """The reasons are a fixed, duplicate-free set, usable as a bounded metric label."""
    assert set(REJECT_REASONS) == {
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
    }
    assert len(REJECT_REASONS) == len(set(REJECT_REASONS))


def test_rejected_refuses_a_reason_outside_the_set() -> None:
    """A Rejected can only carry one of REJECT_REASONS."""
    with pytest.raises(ValueError, match="unknown reject reason"):
        Rejected("bad", "x")  # type: ignore[arg-type]


# --- fuzz -------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["2024-08-20T12:00:00Z", "2024-08-20T12:00:00", "cap", "awake", "shed"]),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
KEYS = sorted(
    {"ts", "watts", "data", "power", "kw", "at", "cancel", "power_cap_watts"}
    | {"mw", "hz", "chance", "product", "usd_per_mw_h"}
    | set(FORECAST)
    | set(EVENT)
    | set(OVERRIDE)
)
# Objects built from the contract's own keys, so the fuzz reaches past "missing_field".
CONTRACT_LIKE = st.dictionaries(st.sampled_from(KEYS), JSON_VALUES, max_size=8)
DECODERS: list[Decoder] = [
    _reading,
    lambda payload: _reading(payload, NESTED_KW),
    _forecast,
    _event,
    _override,
    *(
        lambda payload, decode=decode: decode(payload, received=RECEIVED)
        for decode in (
            decode_system_load,
            decode_frequency,
            decode_cp_alert,
            decode_award,
            decode_deploy,
            decode_recall,
            decode_ancillary_prices,
        )
    ),
]


def _only_rejected(payload: bytes) -> None:
    for decoder in DECODERS:
        try:
            decoder(payload)
        except Rejected as exc:
            assert exc.reason in REJECT_REASONS


@FUZZ
@given(st.binary(max_size=200))
def test_decoders_only_ever_reject_arbitrary_bytes(payload: bytes) -> None:
    """Any bytes decode or raise Rejected, never anything else."""
    _only_rejected(payload)


@FUZZ
@given(JSON_VALUES | CONTRACT_LIKE)
def test_decoders_only_ever_reject_arbitrary_json(value: object) -> None:
    """Any JSON document, including NaN and huge numbers, decodes or raises Rejected."""
    _only_rejected(json.dumps(value).encode())


# --- commands ---------------------------------------------------------------------------------


def test_asic_command_round_trips_in_contract_order() -> None:
    """An ASIC command is compact JSON with the contract's keys in order."""
    payload = encode_asic_command(
        plan="2024-08-20T12:00Z#7", units_on=120, watts_per_unit=3250, reason="price"
    )
    assert payload == (
        b'{"plan":"2024-08-20T12:00Z#7","units_on":120,"watts_per_unit":3250.0,"reason":"price"}'
    )
    assert json.loads(payload) == {
        "plan": "2024-08-20T12:00Z#7",
        "units_on": 120,
        "watts_per_unit": 3250.0,
        "reason": "price",
    }


def test_gpu_command_round_trips_in_contract_order() -> None:
    """A GPU command is compact JSON with the contract's keys in order."""
    payload = encode_gpu_command(
        plan="p7", power_cap_watts=560.0, capped_nodes=3, paused_nodes=1, reason="grid event é"
    )
    decoded = json.loads(payload)
    assert list(decoded) == ["plan", "power_cap_watts", "capped_nodes", "paused_nodes", "reason"]
    assert decoded == {
        "plan": "p7",
        "power_cap_watts": 560.0,
        "capped_nodes": 3,
        "paused_nodes": 1,
        "reason": "grid event é",
    }
    assert payload == json.dumps(decoded, separators=(",", ":")).encode()


def test_commands_take_numpy_numbers_and_encode_identically() -> None:
    """Counts and watts straight from a numpy plan encode to the same bytes as Python ones."""
    # The API is typed int, but a count read out of a plan's arrays is a numpy integer, which
    # json.dumps alone would refuse; the ignores below are that deliberate mismatch.
    plain = encode_asic_command(plan="p", units_on=5, watts_per_unit=3000.0, reason="r")
    from_numpy = encode_asic_command(
        plan="p",
        units_on=np.int64(5),  # type: ignore[arg-type]
        watts_per_unit=np.float64(3000.0),
        reason="r",
    )
    assert plain == from_numpy
    gpu = encode_gpu_command(
        plan="p",
        power_cap_watts=np.float64(400.0),
        capped_nodes=np.int32(2),  # type: ignore[arg-type]
        paused_nodes=np.int64(0),  # type: ignore[arg-type]
        reason="r",
    )
    assert json.loads(gpu)["capped_nodes"] == 2


@pytest.mark.parametrize(
    "build",
    [
        lambda: encode_asic_command(plan="p", units_on=-1, watts_per_unit=3000.0, reason="r"),
        lambda: encode_asic_command(plan="p", units_on=True, watts_per_unit=3000.0, reason="r"),
        lambda: encode_asic_command(plan="p", units_on=5, watts_per_unit=math.nan, reason="r"),
        lambda: encode_asic_command(plan="p", units_on=5, watts_per_unit=-1.0, reason="r"),
        lambda: encode_gpu_command(
            plan="p", power_cap_watts=0.0, capped_nodes=0, paused_nodes=0, reason="r"
        ),
        lambda: encode_gpu_command(
            plan="p", power_cap_watts=math.inf, capped_nodes=0, paused_nodes=0, reason="r"
        ),
        lambda: encode_gpu_command(
            plan="p", power_cap_watts=400.0, capped_nodes=0, paused_nodes=-2, reason="r"
        ),
    ],
)
def test_commands_refuse_values_no_device_could_take(build: Callable[[], bytes]) -> None:
    """A negative count, a boolean count or a non-finite or negative wattage is a ValueError."""
    with pytest.raises(ValueError, match=r"units_on|watts|nodes"):
        build()


def test_commands_refuse_a_fractional_count() -> None:
    """A count must be an integer; 2.5 miners is a caller's bug."""
    with pytest.raises(TypeError):
        encode_asic_command(plan="p", units_on=2.5, watts_per_unit=3000.0, reason="r")  # type: ignore[arg-type]


# --- the grid programs ------------------------------------------------------------------------

HOUR_ISO = "2024-08-20T12:00:00Z"
NEXT_HOUR_ISO = "2024-08-20T13:00:00Z"


def _json_bytes(value: object) -> bytes:
    return json.dumps(value).encode()


def test_system_load_and_frequency_read_as_numbers_or_objects() -> None:
    """System load in MW and frequency in Hz decode from an object with a timestamp or from a
    bare number stamped on receipt."""
    load = decode_system_load(b'{"ts": 1724155200, "mw": 71234.5}', received=RECEIVED)
    assert load == Reading(ts=RECEIVED, value=71234.5)
    assert decode_frequency(b"59.61", received=RECEIVED) == Reading(ts=RECEIVED, value=59.61)


@pytest.mark.parametrize(
    ("decode", "payload", "reason"),
    [
        (decode_system_load, b'{"mw": 71.2}', "out_of_range"),  # GW for MW
        (decode_system_load, b'{"mw": 7.1e9}', "out_of_range"),  # W for MW
        (decode_system_load, b'{"watts": 1}', "missing_field"),
        (decode_frequency, b'{"hz": 600}', "out_of_range"),
        (decode_frequency, b'{"hz": "60"}', "wrong_type"),
    ],
)
def test_load_and_frequency_out_of_any_grid_are_rejected(
    decode: Callable[..., Reading], payload: bytes, reason: str
) -> None:
    """A load or frequency no grid could have is a unit slip or a broken feed."""
    assert _reason(lambda p: decode(p, received=RECEIVED), payload) == reason


def test_a_cp_alert_takes_its_chance_or_certainty() -> None:
    """An alert's chance defaults to 1; its span comes back in UTC."""
    alert = decode_cp_alert(
        _json_bytes({"start": HOUR_ISO, "end": NEXT_HOUR_ISO}), received=RECEIVED
    )
    assert alert == CpAlert(RECEIVED, RECEIVED + timedelta(hours=1), 1.0)
    half = decode_cp_alert(
        _json_bytes({"start": HOUR_ISO, "end": NEXT_HOUR_ISO, "chance": 0.5}), received=RECEIVED
    )
    assert half.chance == 0.5


@pytest.mark.parametrize(
    ("alert", "reason"),
    [
        ({"start": HOUR_ISO, "end": HOUR_ISO}, "out_of_range"),
        ({"start": HOUR_ISO, "end": NEXT_HOUR_ISO, "chance": 1.5}, "out_of_range"),
        ({"start": HOUR_ISO, "end": NEXT_HOUR_ISO, "chance": True}, "wrong_type"),
        ({"start": HOUR_ISO}, "missing_field"),
    ],
)
def test_a_bad_cp_alert_is_rejected_with_its_reason(alert: object, reason: str) -> None:
    """An alert that ends before it starts, or with a chance that is none, is rejected."""
    assert _reason(lambda p: decode_cp_alert(p, received=RECEIVED), _json_bytes(alert)) == reason


AWARD = {
    "product": "ECRS",
    "start": HOUR_ISO,
    "end": "2024-08-20T15:00:00Z",
    "mw": 4.5,
    "usd_per_mw_h": 8.28,
}


def test_an_award_covers_its_whole_hours() -> None:
    """An award of 4.5 MW of ECRS over three hours lists the hours it covers."""
    award = decode_award(_json_bytes(AWARD), received=RECEIVED)
    assert award == Award("ECRS", RECEIVED, RECEIVED + timedelta(hours=3), 4.5, 8.28)
    assert award.hours() == tuple(RECEIVED + timedelta(hours=k) for k in range(3))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"product": "REGUP"}, "out_of_range"),
        ({"start": "2024-08-20T12:30:00Z"}, "out_of_range"),
        ({"end": HOUR_ISO}, "out_of_range"),
        ({"end": "2024-09-20T12:00:00Z"}, "out_of_range"),  # more than a week
        ({"mw": -1}, "out_of_range"),
        ({"usd_per_mw_h": "8"}, "wrong_type"),
        ({"product": None}, "wrong_type"),
    ],
)
def test_a_bad_award_is_rejected_with_its_reason(change: dict[str, object], reason: str) -> None:
    """An award of a product a Load Resource cannot carry, off the hour, empty, longer than a
    week or with a negative MW is rejected."""
    payload = _json_bytes({**AWARD, **change})
    assert _reason(lambda p: decode_award(p, received=RECEIVED), payload) == reason


def test_a_deployment_starts_on_receipt_unless_it_says_when() -> None:
    """A deployment without a start applies from its receipt; a recall names its id."""
    deploy = decode_deploy(b'{"id": "q-1", "product": "RRS", "mw": 2}', received=RECEIVED)
    assert deploy == Deploy("q-1", "RRS", 2.0, RECEIVED)
    later = decode_deploy(
        _json_bytes({"id": "q-2", "product": "NSPIN", "mw": 1, "start": NEXT_HOUR_ISO}),
        received=RECEIVED,
    )
    assert later.start == RECEIVED + timedelta(hours=1)
    assert decode_recall(b'{"id": "q-1"}', received=RECEIVED) == Recall("q-1")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"id": "q", "product": "RRS", "mw": 0}', "out_of_range"),
        (b'{"id": "", "product": "RRS", "mw": 1}', "out_of_range"),
        (b'{"id": "q", "product": "ERS-10", "mw": 1}', "out_of_range"),
        (b'{"product": "RRS", "mw": 1}', "missing_field"),
    ],
)
def test_a_bad_deployment_is_rejected_with_its_reason(payload: bytes, reason: str) -> None:
    """A deployment of nothing, without an id or of an unknown product is rejected."""
    assert _reason(lambda p: decode_deploy(p, received=RECEIVED), payload) == reason


def test_ancillary_prices_are_hourly_from_a_whole_hour() -> None:
    """Day-ahead ancillary prices decode hourly; another step or a start off the hour is out
    of range."""
    prices = {"start": HOUR_ISO, "step_s": 3600, "product": "RRS", "usd_per_mw_h": [1.0, 5.71]}
    decoded = decode_ancillary_prices(_json_bytes(prices), received=RECEIVED)
    assert decoded == AncillaryForecast("RRS", RECEIVED, (1.0, 5.71))
    for change in ({"step_s": 900}, {"start": "2024-08-20T12:15:00Z"}, {"usd_per_mw_h": [-1]}):
        payload = _json_bytes({**prices, **change})
        decoded_reason = _reason(lambda p: decode_ancillary_prices(p, received=RECEIVED), payload)
        assert decoded_reason == "out_of_range"
