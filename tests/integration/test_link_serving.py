"""adapters.mqtt's `MqttLink` against a real Mosquitto: messages are served while the connect
handler still runs, and what the handler raises is not lost.

The connect handler republishes the standing commands and waits for the broker's answers, up to
`CALL_TIMEOUT_S` each when the broker falters. Readings heard meanwhile must be handled as
they arrive: held back behind it, a meter reading seconds old would be taken as fresh, and
the guard would not see a reading over the cap until the handler returned.
"""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from gridpilot.adapters.broker import LocalBroker
from gridpilot.adapters.mqtt import BrokerOptions, MqttLink, publish_acked

TOPIC = "gridpilot/test/meter/main"


def _options(broker: LocalBroker) -> BrokerOptions:
    return BrokerOptions(
        host=broker.host,
        port=broker.port,
        client_id="link-serving-test",
        will_topic="gridpilot/test/status",
        will_payload=b"offline",
    )


def test_a_reading_is_handled_while_the_connect_handler_still_waits(
    broker: LocalBroker,
) -> None:
    async def scenario() -> tuple[list[bytes], bool]:
        connected = asyncio.Event()
        release = asyncio.Event()
        heard: list[bytes] = []
        arrived = asyncio.Event()

        async def on_connect() -> None:
            connected.set()
            await release.wait()  # a republish the broker is slow to acknowledge

        async def on_message(_topic: str, payload: bytes) -> None:
            heard.append(payload)
            arrived.set()

        link = MqttLink(
            _options(broker), subscriptions=(TOPIC,), on_message=on_message, on_connect=on_connect
        )
        running = asyncio.create_task(link.run())
        try:
            await asyncio.wait_for(connected.wait(), 10)
            async with aiomqtt.Client(broker.host, broker.port, identifier="meter") as meter:
                await publish_acked(meter, TOPIC, b'{"watts": 1}')
            await asyncio.wait_for(arrived.wait(), 5)
            still_connecting = not release.is_set()
        finally:
            release.set()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        return heard, still_connecting

    heard, still_connecting = asyncio.run(scenario())
    assert heard == [b'{"watts": 1}']
    assert still_connecting


def test_an_error_in_the_connect_handler_ends_the_link(broker: LocalBroker) -> None:
    """A bug in the owner's handler is not swallowed by the link, as it was not when the
    handler ran before the message loop: `run` raises it."""

    async def on_connect() -> None:
        raise RuntimeError("the republish broke")

    async def on_message(_topic: str, _payload: bytes) -> None:
        pass

    async def scenario() -> None:
        link = MqttLink(
            _options(broker), subscriptions=(TOPIC,), on_message=on_message, on_connect=on_connect
        )
        await asyncio.wait_for(link.run(), 10)

    with pytest.raises(RuntimeError, match="the republish broke"):
        asyncio.run(scenario())
