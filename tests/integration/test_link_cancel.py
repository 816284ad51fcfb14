"""A task publishing to a real broker stops when it is cancelled, whenever the cancellation
lands: also in the same loop turn as the broker's acknowledgement, where aiomqtt's own wait
(asyncio.wait_for) drops it on Python 3.11 and the task runs on."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiomqtt

from gridpilot.adapters.broker import LocalBroker
from gridpilot.adapters.mqtt import NO_DELAY, publish_acked

ROUNDS = 200


def test_a_publishing_task_always_ends_when_cancelled(broker: LocalBroker) -> None:
    async def scenario() -> int:
        rng = random.Random(7)
        loop = asyncio.get_running_loop()
        async with aiomqtt.Client(
            broker.host, broker.port, identifier="cancel-test", socket_options=(NO_DELAY,)
        ) as client:
            task: asyncio.Task[None] | None = None
            cancelled: set[asyncio.Task[None]] = set()  # one cancellation per task
            # The race made to happen: the cancellation is scheduled from paho's callback for
            # the broker's acknowledgement (reached through aiomqtt's private `_client`), zero
            # to three loop turns after it, so that it lands before, with and after the
            # publishing task's wake-up.
            on_publish: Any = client._client.on_publish

            def cancel_on_ack(*args: Any) -> None:
                on_publish(*args)
                if task is None or task in cancelled:
                    return
                cancelled.add(task)
                target = task

                def hop(left: int) -> None:
                    if left:
                        loop.call_soon(hop, left - 1)
                    else:
                        target.cancel()

                loop.call_soon(hop, rng.randrange(4))

            client._client.on_publish = cancel_on_ack

            async def publish_forever() -> None:
                while True:
                    await publish_acked(client, "gridpilot/test/cancel", b"x")

            stuck = 0
            for _ in range(ROUNDS):
                task = asyncio.create_task(publish_forever())
                done, _ = await asyncio.wait({task}, timeout=1.0)
                if done:
                    assert task.cancelled()
                    continue
                stuck += 1
                task.cancel()  # again, so that the test itself ends
                await asyncio.wait({task}, timeout=1.0)
            return stuck

    assert asyncio.run(scenario()) == 0
