"""The MQTT actuator, the recording fake, and the link's reconnect backoff."""

from __future__ import annotations

import asyncio
import json
import random

from gridpilot.adapters.actuation import AsicCommand, GpuCommand, MqttActuator, RecordingActuator
from gridpilot.adapters.mqtt import backoff_delays

ASIC = AsicCommand("s21-01", 150, 3500.0, "price above breakeven", "plan-7")
GPU = GpuCommand("h100-flex", 420.0, 10, 0, "capped for price", "plan-7")


def test_mqtt_actuator_publishes_each_command_to_its_topic() -> None:
    """Every command goes to its kind's topic with the group filled in; a publish the broker
    did not take is reported for that group alone."""
    sent: dict[str, dict[str, object]] = {}

    async def publish(topic: str, payload: bytes) -> bool:
        sent[topic] = json.loads(payload)
        return not topic.endswith("h100-flex")

    actuator = MqttActuator(publish, asic_topic="s/cmd/asic/{group}", gpu_topic="s/cmd/gpu/{group}")
    outcomes = asyncio.run(actuator.apply([ASIC, GPU]))
    assert sent["s/cmd/asic/s21-01"] == {
        "plan": "plan-7",
        "units_on": 150,
        "watts_per_unit": 3500.0,
        "reason": "price above breakeven",
    }
    assert sent["s/cmd/gpu/h100-flex"]["capped_nodes"] == 10
    assert [(o.group, o.ok) for o in outcomes] == [("s21-01", True), ("h100-flex", False)]
    assert "reconnect" in outcomes[1].detail


def test_recording_actuator_remembers_and_fails_on_request() -> None:
    """The fake keeps what it was told and fails the groups it is asked to."""
    fake = RecordingActuator(failing=frozenset({"s21-01"}))
    outcomes = asyncio.run(fake.apply([ASIC, GPU]))
    assert fake.applied == [ASIC, GPU]
    assert [o.ok for o in outcomes] == [False, True]


def test_backoff_doubles_to_its_cap_with_jitter() -> None:
    """Reconnect waits double from the first up to the cap, each within its upper half."""
    delay = backoff_delays(0.25, 4.0, random.Random(3))
    waits = [delay(n) for n in range(10)]
    for attempt, wait in enumerate(waits):
        ceiling = min(4.0, 0.25 * 2**attempt)
        assert ceiling / 2 <= wait <= ceiling
    assert max(waits) <= 4.0
    assert delay(10_000) <= 4.0
