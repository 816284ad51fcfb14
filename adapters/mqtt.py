"""The broker connection: one aiomqtt client at a time, reconnected for as long as it runs.

`MqttLink.run()` connects, subscribes, hands every message to the owner's callback and, when the
connection drops, waits a capped, jittered backoff and does it all again. After every connect
it runs the owner's `on_connect` beside the message loop (messages do not wait for it): that
is where retained state (status, setpoints) is republished, since a broker restarted without
persistence has forgotten it.

Publishing while disconnected does not queue: it returns False, and the owner's `on_connect`
republishes the current state once the broker is back. Commands are state, not events, so the
latest one is all a device gateway needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import socket
import ssl
from asyncio import FIRST_EXCEPTION
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

# paho's own logger is noisy at DEBUG and says nothing the link does not log itself.
_LOG = logging.getLogger("gridpilot.mqtt")

# How long one broker round trip (connect, subscribe, publish) may take before the connection
# is given up and made again.
CALL_TIMEOUT_S = 5.0

# aiomqtt bounds its waits with asyncio.wait_for, which on Python 3.11 drops a cancellation that
# lands in the same loop turn as the broker's answer; the cancelled task then carries on, and
# an agent told to stop never stops (seen under load, on a QoS 1 publish). So aiomqtt is told
# to wait without a bound, and every wait is bounded here with asyncio.timeout, which is
# cancellation-safe.
_UNBOUNDED = math.inf

NO_DELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    """Where the broker is and how to log in. `will_*`: what the broker publishes for us if the
    connection dies without a clean goodbye."""

    host: str
    port: int
    client_id: str
    will_topic: str
    will_payload: bytes
    username: str | None = None
    password: str | None = None
    tls: TlsFiles | None = None
    keepalive_s: int = 30
    reconnect_first_s: float = 0.25
    reconnect_max_s: float = 4.0


MessageHandler = Callable[[str, bytes], Awaitable[None]]
ConnectHandler = Callable[[], Awaitable[None]]
StateHandler = Callable[[bool], None]


def backoff_delays(first_s: float, max_s: float, rng: random.Random) -> Callable[[int], float]:
    """The wait before reconnect attempt `n` (from 0): doubling from `first_s` up to `max_s`,
    each drawn uniformly from its upper half so that agents restarted together spread out."""

    def delay(attempt: int) -> float:
        ceiling = min(max_s, first_s * 2.0 ** min(attempt, 30))
        return rng.uniform(ceiling / 2.0, ceiling)

    return delay


class MqttLink:
    """A self-healing broker connection. Construct, then `await run()` inside a task."""

    def __init__(
        self,
        options: BrokerOptions,
        *,
        subscriptions: Sequence[str],
        on_message: MessageHandler,
        on_connect: ConnectHandler,
        on_state: StateHandler | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.options = options
        self._subscriptions = tuple(subscriptions)
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_state = on_state or (lambda _connected: None)
        self._delay = backoff_delays(
            options.reconnect_first_s,
            options.reconnect_max_s,
            rng or random.Random(),  # noqa: S311  # jitter, not a secret
        )
        self._client: aiomqtt.Client | None = None
        self._served = False  # whether the last session got as far as serving messages
        self.connects = 0
        self.last_error = ""

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def run(self) -> None:
        """Connect and serve until cancelled; never returns otherwise."""
        failures = 0
        while True:
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                self.last_error = str(exc)
            except TimeoutError:
                self.last_error = f"no answer from the broker within {CALL_TIMEOUT_S:g} s"
            # A session ends only by an error: the broker went away or refused us.
            self._set_client(None)
            wait = self._delay(failures)
            failures = 0 if self._served else failures + 1
            _LOG.warning(
                "broker %s:%s unreachable (%s); retrying in %.2f s",
                self.options.host,
                self.options.port,
                self.last_error or "connection lost",
                wait,
            )
            await asyncio.sleep(wait)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = True) -> bool:
        """Publish at QoS 1 and wait for the broker's acknowledgement. False when there is no
        connection or it broke meanwhile: the caller's state is republished on reconnect."""
        client = self._client
        if client is None:
            return False
        try:
            await publish_acked(client, topic, payload, retain=retain)
        except aiomqtt.MqttError as exc:
            self.last_error = str(exc)
            return False
        except TimeoutError:
            self.last_error = f"publish not acknowledged within {CALL_TIMEOUT_S:g} s"
            return False
        return True

    async def _session(self) -> None:
        self._served = False
        options = self.options
        client = aiomqtt.Client(
            options.host,
            options.port,
            identifier=options.client_id,
            username=options.username,
            password=options.password,
            will=aiomqtt.Will(options.will_topic, options.will_payload, qos=1, retain=True),
            keepalive=options.keepalive_s,
            timeout=_UNBOUNDED,
            tls_context=_tls_context(options.tls) if options.tls else None,
            # A fresh session each time: subscriptions are made again below, and a backlog of
            # stale readings queued while we were away is worth less than the current ones.
            clean_session=True,
            # Commands are small and urgent: without this, Nagle's algorithm and delayed ACKs
            # hold a guard's shed back by tens of milliseconds.
            socket_options=(NO_DELAY,),
        )
        # aiomqtt warns past ten unacknowledged publishes; a guard shed sends one per group.
        client.pending_calls_threshold = 100_000
        # Entered and left by hand, not with `async with`, so that the connect and the goodbye
        # each get their own bound (see `_UNBOUNDED`).
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await client.__aenter__()
        try:
            await self._serve(client)
        finally:
            # A clean goodbye where the broker still listens; an exception already on its way
            # (the broker gone, a cancellation) goes on unchanged.
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    await client.__aexit__(None, None, None)

    async def _serve(self, client: aiomqtt.Client) -> None:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            for topic in self._subscriptions:
                await client.subscribe(topic, qos=1, timeout=_UNBOUNDED)
        self.connects += 1
        self._set_client(client)
        # The connect handler runs beside the message loop, not before it: it republishes and
        # waits for the broker's answers (up to CALL_TIMEOUT_S each when the broker falters),
        # and a reading held back behind it would be taken as fresh when handled seconds
        # later, and one over the cap would reach the guard only then. Its publishes are
        # written to the socket as it starts, before anything the messages lead to.
        greeting = asyncio.create_task(self._greet(), name="mqtt-connected")
        receiving = asyncio.create_task(self._receive(client), name="mqtt-messages")
        try:
            # Ends only by an error: the connection's, the handler's or the owner's.
            done, _ = await asyncio.wait((greeting, receiving), return_when=FIRST_EXCEPTION)
            for task in done:
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    raise error
        finally:
            for task in (greeting, receiving):
                task.cancel()
            await asyncio.gather(greeting, receiving, return_exceptions=True)

    async def _greet(self) -> None:
        await self._on_connect()
        self._served = True

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, bytes | bytearray):
                data = bytes(payload)
            elif isinstance(payload, str):
                data = payload.encode()
            else:  # an empty payload arrives as None
                data = b"" if payload is None else str(payload).encode()
            await self._on_message(message.topic.value, data)

    def _set_client(self, client: aiomqtt.Client | None) -> None:
        was = self._client is not None
        self._client = client
        if was != (client is not None):
            self._on_state(client is not None)


async def publish_acked(
    client: aiomqtt.Client,
    topic: str,
    payload: bytes | str,
    *,
    retain: bool = False,
    timeout_s: float = CALL_TIMEOUT_S,
) -> None:
    """Publish at QoS 1 and wait for the broker's acknowledgement, at most `timeout_s`
    (TimeoutError), in a way that a cancellation always ends (see `_UNBOUNDED`)."""
    async with asyncio.timeout(timeout_s):
        await client.publish(topic, payload, qos=1, retain=retain, timeout=_UNBOUNDED)


def _tls_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca_file))
    if files.cert_file is not None and files.key_file is not None:
        context.load_cert_chain(str(files.cert_file), str(files.key_file))
    return context
