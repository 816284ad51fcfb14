"""The daemon's broker link: adapters.mqtt's `MqttLink`, with one more way to publish.

`publish` (QoS 1, retained by default) is for state a late subscriber must get: commands,
status, the plan, the day-ahead offer. `publish_fleeting` is for what is sent every second and
is stale a second later (the reserve obligation and availability): QoS 0, never retained, so
neither the broker nor a slow subscriber keeps old ones.
"""

from __future__ import annotations

import asyncio
import math

import aiomqtt

from gridpilot.adapters.mqtt import CALL_TIMEOUT_S, MqttLink


class SiteLink(MqttLink):
    async def publish_fleeting(self, topic: str, payload: bytes) -> bool:
        """Publish at QoS 0, not retained. False when there is no connection or it broke."""
        client = self._client
        if client is None:
            return False
        try:
            # Bounded here, unbounded in aiomqtt: see adapters.mqtt on cancellation.
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await client.publish(topic, payload, qos=0, retain=False, timeout=math.inf)
        except aiomqtt.MqttError as exc:
            self.last_error = str(exc)
            return False
        except TimeoutError:
            self.last_error = f"publish not sent within {CALL_TIMEOUT_S:g} s"
            return False
        return True
