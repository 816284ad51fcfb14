"""deploy/mosquitto/ against a real Mosquitto: TLS, logins, and who may publish and read what.

The broker runs the shipped mosquitto.conf as a conf.d drop-in under a main file like Debian's,
changed only where it must be (port, certificate and password paths); the ACL is the shipped
file itself. Mosquitto drops a denied publish without telling an MQTT 3.1.1 client, so each
"may not" is watched by a subscriber that may read everything (the operator): the denied
messages are published first and an allowed one after them on the same connection; the broker
keeps one connection's messages in order, so the allowed one arriving without the denied ones
before it shows they were dropped, with no waiting for something not to happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

from gridpilot.adapters.broker import (
    BrokerError,
    find_mosquitto,
    free_port,
    start_mosquitto,
    stop_mosquitto,
)
from gridpilot.adapters.mqtt import BrokerOptions, MqttLink, TlsFiles

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
SITE = "gridpilot/west-texas/"
PASSWORDS = {
    "gridpilot": "agent-secret",
    "s21-01": "gateway-secret",  # gateways are named after the group they serve
    "h100-flex": "gpu-gateway-secret",
    "market": "market-secret",
    "operator": "operator-secret",
    "qse": "qse-secret",
}
# What the test changes in the shipped file, each exactly as it stands there.
SHIPPED_LISTENER = "\nlistener 8883\n"
SHIPPED_CERTS = "/etc/mosquitto/certs/"
SHIPPED_PASSWD = "password_file /etc/mosquitto/gridpilot.passwd\n"  # noqa: S105  # a path
SHIPPED_ACL = "acl_file /etc/mosquitto/gridpilot.acl\n"


def _tool(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/bin/{name}", f"/usr/sbin/{name}"):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip(
        f"{name} is not installed (`make test` installs mosquitto; Debian: apt install {name})"
    )


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)  # noqa: S603  # fixed tools


def _make_certificates(openssl: str, out: Path) -> None:
    """A CA, a server certificate for localhost and 127.0.0.1, and a client certificate for the
    agent (CN=gridpilot), all EC P-256: quick to make."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _run(openssl, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
         "-subj", "/CN=gridpilot test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-addext", "subjectKeyIdentifier=hash", cwd=out)  # fmt: skip
    for serial, (name, subject, usage) in enumerate(
        (
            ("server", "/CN=localhost",
             "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
            ("agent", "/CN=gridpilot", "extendedKeyUsage=clientAuth\n"),
        ),
        start=2,
    ):  # fmt: skip
        (out / f"{name}.ext").write_text(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n" + usage
        )
        _run(openssl, "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", subject, cwd=out)  # fmt: skip
        _run(openssl, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-set_serial", str(serial), "-days", "2", "-extfile", f"{name}.ext",
             "-out", f"{name}.crt", cwd=out)  # fmt: skip


def _drop_in(port: int, certs: Path, passwd: Path) -> str:
    """The shipped mosquitto.conf with this test's port and file paths, and nothing else."""
    text = (DEPLOY / "mosquitto.conf").read_text()
    for shipped in (SHIPPED_LISTENER, SHIPPED_PASSWD, SHIPPED_ACL):
        assert text.count(shipped) == 1, f"the shipped config no longer has {shipped!r}"
    assert SHIPPED_CERTS in text
    return (
        text.replace(SHIPPED_LISTENER, f"\nlistener {port} 127.0.0.1\n")
        .replace(SHIPPED_CERTS, f"{certs}/")
        .replace(SHIPPED_PASSWD, f"password_file {passwd}\n")
        .replace(SHIPPED_ACL, f"acl_file {DEPLOY / 'gridpilot.acl'}\n")
    )


def _mqtt_string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


def _connect_packet(username: str, will: tuple[str, bytes] | None = None) -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session, a password and optionally a QoS 1 will."""
    flags = 0xC2 | (0x0C if will else 0)  # username, password, clean session; will, QoS 1
    body = _mqtt_string("MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big")
    body += _mqtt_string("raw")
    if will:
        body += _mqtt_string(will[0]) + _mqtt_string(will[1])
    body += _mqtt_string(username) + _mqtt_string(PASSWORDS[username])
    length, remaining = b"", len(body)
    while True:
        remaining, digit = divmod(remaining, 128)
        length += bytes([digit | (0x80 if remaining else 0)])
        if not remaining:
            return b"\x10" + length + body


@dataclass
class Broker:
    """The shipped configuration in a private Mosquitto on a loopback port."""

    binary: str
    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def certs(self) -> Path:
        return self.directory / "certs"

    def start(self, timeout_s: float = 10.0) -> None:
        self.process = start_mosquitto(
            Path(self.binary),
            self.directory / "mosquitto.conf",
            self.directory / "mosquitto.log",
            ("127.0.0.1", self.port),
            timeout_s=timeout_s,
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_mosquitto(process)

    def log(self) -> str:
        return (self.directory / "mosquitto.log").read_text(errors="replace")

    def tls(self, *, client_certificate: bool = False) -> ssl.SSLContext:
        """What the agent's [mqtt.tls] makes: trust the site's CA, check the server's name."""
        context = ssl.create_default_context(cafile=str(self.certs / "ca.crt"))
        if client_certificate:
            context.load_cert_chain(self.certs / "agent.crt", self.certs / "agent.key")
        return context

    def client(
        self,
        username: str | None,
        *,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        identifier: str | None = None,
        will: aiomqtt.Will | None = None,
    ) -> aiomqtt.Client:
        if password is None and username is not None:
            password = PASSWORDS[username]
        return aiomqtt.Client(
            "127.0.0.1",
            self.port,
            username=username,
            password=password,
            identifier=identifier,
            will=will,
            tls_context=tls or self.tls(),
            timeout=5,
        )

    def raw_session(self, username: str, will: tuple[str, bytes]) -> ssl.SSLSocket:
        """A bare MQTT session over TLS with a last will, connected and left open."""
        sock = self.tls().wrap_socket(
            socket.create_connection(("127.0.0.1", self.port), timeout=5),
            server_hostname="localhost",
        )
        sock.sendall(_connect_packet(username, will))
        assert sock.recv(4) == b"\x20\x02\x00\x00", "CONNACK: accepted"
        return sock


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    try:
        mosquitto = str(find_mosquitto())
    except BrokerError as missing:
        pytest.skip(str(missing))
    openssl, mosquitto_passwd = _tool("openssl"), _tool("mosquitto_passwd")
    directory = tmp_path_factory.mktemp("mosquitto")
    running = Broker(mosquitto, directory, free_port())
    running.certs.mkdir()
    _make_certificates(openssl, running.certs)
    passwd = directory / "gridpilot.passwd"
    for i, (user, password) in enumerate(PASSWORDS.items()):
        create = ("-c",) if i == 0 else ()
        _run(mosquitto_passwd, *create, "-b", str(passwd), user, password, cwd=directory)
    (directory / "conf.d").mkdir()
    drop_in = _drop_in(running.port, running.certs, passwd)
    (directory / "conf.d" / "gridpilot.conf").write_text(drop_in)
    (directory / "data").mkdir()
    # Like Debian's /etc/mosquitto/mosquitto.conf, which sets these and then includes conf.d;
    # `user` is whoever runs the test, so that a run as root does not switch to the mosquitto
    # user, who could not read this directory.
    (directory / "mosquitto.conf").write_text(
        f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
        "persistence true\n"
        f"persistence_location {directory / 'data'}/\n"
        "log_dest stderr\n"
        "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
        f"include_dir {directory / 'conf.d'}\n"
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _bytes(message: aiomqtt.Message) -> bytes:
    payload = message.payload
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


async def _until(
    client: aiomqtt.Client, topic: str, payload: bytes, timeout_s: float = 5.0
) -> list[tuple[str, bytes]]:
    """Everything the client is sent up to and including `payload` on `topic`."""
    seen: list[tuple[str, bytes]] = []
    async with asyncio.timeout(timeout_s):
        async for message in client.messages:
            seen.append((message.topic.value, _bytes(message)))
            if seen[-1] == (topic, payload):
                break
    return seen


@contextlib.asynccontextmanager
async def _watching(broker: Broker, user: str, topic: str) -> AsyncIterator[aiomqtt.Client]:
    async with broker.client(user) as client:
        await client.subscribe(topic, qos=1)
        yield client


def _fresh(text: str) -> bytes:
    """A payload seen nowhere before: what a subscriber is sent first is what the broker has
    retained, and an old message must not pass for the one a test waits for."""
    return f"{text} {uuid.uuid4().hex[:8]}".encode()


async def _forged_seen(
    publisher: aiomqtt.Client, topics: list[str], last: tuple[str, bytes], watcher: aiomqtt.Client
) -> list[str]:
    """Publish a forged, retained message on each topic, then `last`; return the topics of the
    forged messages the watcher was sent before `last`."""
    forged = _fresh("forged")
    for topic in topics:
        await publisher.publish(SITE + topic, forged, qos=1, retain=True)
    await publisher.publish(*last, qos=1)
    return [topic for topic, payload in await _until(watcher, *last) if payload == forged]


def test_anonymous_clients_are_refused(broker: Broker) -> None:
    """A client without a username is not let in."""

    async def scenario() -> None:
        with pytest.raises(aiomqtt.MqttCodeError, match="Not authori"):
            async with broker.client(None):
                pass

    asyncio.run(scenario())


def test_a_wrong_password_is_refused(broker: Broker) -> None:
    """A known username with a wrong password is not let in."""

    async def scenario() -> None:
        with pytest.raises(aiomqtt.MqttCodeError, match="Not authori"):
            async with broker.client("gridpilot", password=PASSWORDS["gridpilot"] + "x"):
                pass

    asyncio.run(scenario())


def test_plain_mqtt_to_the_tls_port_is_cut_off(broker: Broker) -> None:
    """MQTT without TLS on the TLS port, with the right password, gets no CONNACK."""
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as plain:
        plain.sendall(_connect_packet("gridpilot"))
        try:
            answer = plain.recv(16)
        except ConnectionResetError:
            answer = b""
    assert answer[:1] != b"\x20"


def test_tls_1_2_and_a_client_certificate_are_accepted(broker: Broker) -> None:
    """A TLS 1.2-only client (an embedded gateway) and the agent with its client certificate
    both connect and publish."""

    async def scenario() -> None:
        tls_1_2 = broker.tls()
        tls_1_2.maximum_version = ssl.TLSVersion.TLSv1_2
        price = (SITE + "price/realtime", _fresh("41.2"))
        async with _watching(broker, "gridpilot", SITE + "price/realtime") as agent:
            async with broker.client("market", tls=tls_1_2) as market:
                await market.publish(*price, qos=1)
            assert await _until(agent, *price) == [price]
        status = (SITE + "status", _fresh("online"))
        async with (
            _watching(broker, "operator", SITE + "status") as operator,
            broker.client("gridpilot", tls=broker.tls(client_certificate=True)) as agent,
        ):
            await agent.publish(*status, qos=1, retain=True)
            assert (await _until(operator, *status))[-1] == status

    asyncio.run(scenario())


def test_a_gateway_publishes_its_reading_and_reads_only_its_own_commands(
    broker: Broker,
) -> None:
    """The agent hears a gateway's meter reading; the gateway, subscribed to everything, is
    sent its own group's command, retained and live, and nothing else."""

    async def scenario() -> None:
        async with (
            _watching(broker, "gridpilot", SITE + "meter/+") as agent,
            broker.client("s21-01") as gateway,
        ):
            reading = (SITE + "meter/s21-01", b'{"ts": 1735689600, "watts": 3250000.0}')
            await gateway.publish(*reading, qos=1)
            assert await _until(agent, *reading) == [reading]
            for topic, payload in (
                ("cmd/asic/s21-01", b'{"units_on": 120}'),
                ("cmd/asic/s21-02", b'{"units_on": 80}'),
                ("cmd/gpu/h100-flex", b'{"power_cap_watts": 560}'),
                ("notice/flex", b"{}"),
                ("plan", b"{}"),
                ("mode", b'{"mode": "normal"}'),
                ("status", b"online"),
            ):
                await agent.publish(SITE + topic, payload, qos=1, retain=True)
            await gateway.subscribe("gridpilot/#", qos=1)
            await agent.publish(SITE + "cmd/asic/s21-02", b'{"units_on": 0}', qos=1)
            await agent.publish(SITE + "cmd/gpu/h100-flex", b'{"power_cap_watts": 0}', qos=1)
            await agent.publish(SITE + "cmd/asic/s21-01", b'{"units_on": 60}', qos=1)
            assert await _until(gateway, SITE + "cmd/asic/s21-01", b'{"units_on": 60}') == [
                (SITE + "cmd/asic/s21-01", b'{"units_on": 120}'),  # retained, sent on subscribe
                (SITE + "cmd/asic/s21-01", b'{"units_on": 60}'),
            ]
        async with broker.client("h100-flex") as gpu_gateway:  # a GPU group's gateway
            await gpu_gateway.subscribe("gridpilot/#", qos=1)
            command = (SITE + "cmd/gpu/h100-flex", b'{"power_cap_watts": 560}')
            assert await _until(gpu_gateway, *command) == [command]

    asyncio.run(scenario())


def test_a_gateway_cannot_command_or_speak_for_the_agent(broker: Broker) -> None:
    """A gateway's publishes to commands (its own group's too), a notice, plan, mode, status, an
    override, prices and another meter reach nobody and overwrite no retained command."""

    async def scenario() -> None:
        command = (SITE + "cmd/asic/s21-01", _fresh('{"units_on": 100}'))
        async with broker.client("gridpilot") as agent:
            await agent.publish(*command, qos=1, retain=True)
        async with (
            _watching(broker, "operator", SITE + "#") as operator,
            broker.client("s21-01") as gateway,
        ):
            denied = ["cmd/asic/s21-01", "cmd/asic/s21-02", "cmd/gpu/h100-flex", "notice/flex",
                      "plan", "mode", "status", "override/s21-01", "price/realtime",
                      "price/forecast", "hashprice", "grid/event", "meter/main",
                      "meter/s21-02"]  # fmt: skip
            reading = (SITE + "meter/s21-01", _fresh("3250000"))
            assert await _forged_seen(gateway, denied, reading, operator) == []
            # A gateway that subscribes now is sent the agent's command, not the forgery.
            await gateway.subscribe(command[0], qos=1)
            assert await _until(gateway, *command) == [command]

    asyncio.run(scenario())


def test_a_gateway_cannot_leave_a_last_will_on_status(broker: Broker) -> None:
    """A gateway session whose will is on the agent's status ends without the will reaching
    anyone; a will on its own meter does reach them."""

    async def scenario() -> None:
        async with _watching(broker, "operator", SITE + "#") as operator:
            for topic, delivered in (("status", False), ("meter/s21-01", True)):
                will = (SITE + topic, b"will of s21-01 on " + topic.encode())
                with broker.raw_session("s21-01", will):
                    # The same user again takes the session over, and the old one's will fires.
                    async with broker.client("s21-01") as gateway:
                        reading = (SITE + "meter/s21-01", b"after the will on " + topic.encode())
                        await gateway.publish(*reading, qos=1)
                        assert (will in await _until(operator, *reading)) is delivered

    asyncio.run(scenario())


def test_the_market_feed_publishes_prices_and_nothing_else(broker: Broker) -> None:
    """The agent hears the market user's real-time price; its publishes to commands, plan,
    status, a meter and an override reach nobody."""

    async def scenario() -> None:
        async with (
            _watching(broker, "operator", SITE + "#") as operator,
            _watching(broker, "gridpilot", SITE + "price/realtime") as agent,
            broker.client("market") as market,
        ):
            price = (SITE + "price/realtime", _fresh('{"ts": 1735689600, "usd_per_mwh": 41.2}'))
            denied = ["cmd/asic/s21-01", "cmd/gpu/h100-flex", "status", "plan", "meter/main",
                      "override/s21-01"]  # fmt: skip
            assert await _forged_seen(market, denied, price, operator) == []
            assert await _until(agent, *price) == [price]
            for topic in ("price/forecast", "hashprice", "grid/event"):
                payload = _fresh(topic)
                await market.publish(SITE + topic, payload, qos=1)
                await _until(operator, SITE + topic, payload)

    asyncio.run(scenario())


def test_the_qse_relays_awards_and_deployments_and_commands_nothing(broker: Broker) -> None:
    """The agent hears the QSE's award, deployment and recall and the market's system load;
    the QSE reads the agent's offer; the QSE's publishes to commands, a meter, frequency and
    the agent's own reserve reports reach nobody."""

    async def scenario() -> None:
        async with (
            _watching(broker, "operator", SITE + "#") as operator,
            _watching(broker, "gridpilot", SITE + "as/#") as agent,
            broker.client("qse") as qse,
            broker.client("market") as market,
        ):
            award = (SITE + "as/award", _fresh('{"product": "ECRS", "mw": 5}'))
            denied = ["cmd/asic/s21-01", "meter/main", "grid/frequency", "as/obligation",
                      "as/offer", "grid/load"]  # fmt: skip
            assert await _forged_seen(qse, denied, award, operator) == []
            assert await _until(agent, *award) == [award]
            for topic in ("as/deploy", "as/recall"):
                payload = _fresh(topic)
                await qse.publish(SITE + topic, payload, qos=1)
                await _until(agent, SITE + topic, payload)
            load = _fresh("load")
            await agent.subscribe(SITE + "grid/load", qos=1)
            await market.publish(SITE + "grid/load", load, qos=1)
            await _until(agent, SITE + "grid/load", load)
            offer = _fresh("offer")
            await qse.subscribe(SITE + "as/offer", qos=1)
            await agent.publish(SITE + "as/offer", offer, qos=1)
            await _until(qse, SITE + "as/offer", offer)

    asyncio.run(scenario())


def test_an_operator_sets_an_override_and_commands_nothing(broker: Broker) -> None:
    """The agent hears an operator's override; the operator's publishes to a command, status,
    mode, a meter and a price reach nobody."""

    async def scenario() -> None:
        hold = _fresh('{"mode": "asleep", "until": "2030-01-01T00:00:00Z", "by": "alice"}')
        override = (SITE + "override/s19jpro-07", hold)
        async with (
            _watching(broker, "gridpilot", SITE + "override/+") as agent,
            _watching(broker, "operator", SITE + "#") as operator,
        ):
            denied = ["cmd/asic/s19jpro-07", "status", "mode", "meter/main", "price/realtime"]
            assert await _forged_seen(operator, denied, override, operator) == []
            assert (await _until(agent, *override))[-1] == override

    asyncio.run(scenario())


def test_the_agent_publishes_every_output_and_clears_an_override(broker: Broker) -> None:
    """With its last will on status, the agent's commands, notice, plan, mode, status and an
    empty retained override all reach an operator."""

    async def scenario() -> None:
        will = aiomqtt.Will(SITE + "status", b"offline", qos=1, retain=True)
        outputs = [
            (SITE + "cmd/asic/s19jpro-01", b'{"units_on": 40, "reason": "test"}'),
            (SITE + "cmd/gpu/h100-flex", b'{"power_cap_watts": 560, "reason": "test"}'),
            (SITE + "notice/flex", b'{"pause_at": "2030-01-01T00:00:00Z"}'),
            (SITE + "plan", _fresh("plan")),
            (SITE + "mode", b'{"mode": "normal"}'),
            (SITE + "status", b"online"),
            (SITE + "override/s19jpro-07", b""),
        ]
        async with (
            _watching(broker, "operator", SITE + "#") as operator,
            broker.client("gridpilot", will=will) as agent,
        ):
            for output in outputs:
                await agent.publish(*output, qos=1, retain=True)
            seen = await _until(operator, *outputs[-1])
            assert seen[-len(outputs) :] == outputs  # after the retained messages of before

    asyncio.run(scenario())


def test_the_agent_cannot_forge_its_own_inputs(broker: Broker) -> None:
    """The agent's publishes to meters (also one named after its own user), prices and a grid
    event reach nobody."""

    async def scenario() -> None:
        async with (
            _watching(broker, "operator", SITE + "#") as operator,
            broker.client("gridpilot") as agent,
        ):
            denied = ["meter/main", "meter/gridpilot", "price/realtime", "price/forecast",
                      "hashprice", "grid/event"]  # fmt: skip
            status = (SITE + "status", _fresh("online"))
            assert await _forged_seen(agent, denied, status, operator) == []

    asyncio.run(scenario())


def test_no_client_can_take_over_the_agents_session(broker: Broker) -> None:
    """A gateway that connects with the agent's client id leaves the agent connected."""

    async def scenario() -> None:
        plan = (SITE + "plan", _fresh("after the impostor"))
        async with (
            _watching(broker, "operator", SITE + "#") as operator,
            broker.client("gridpilot", identifier="gridpilot-west-texas") as agent,
            broker.client("s21-01", identifier="gridpilot-west-texas"),
        ):
            await agent.publish(*plan, qos=1)
            assert (await _until(operator, *plan))[-1] == plan

    asyncio.run(scenario())


def test_retained_commands_survive_a_broker_restart(broker: Broker) -> None:
    """A retained command published before the broker restarts is sent to its gateway after."""
    command = (SITE + "cmd/asic/s21-01", _fresh('{"units_on": 77}'))

    async def publish() -> None:
        async with broker.client("gridpilot") as agent:
            await agent.publish(*command, qos=1, retain=True)

    async def receive() -> list[tuple[str, bytes]]:
        async with _watching(broker, "s21-01", command[0]) as gateway:
            return await _until(gateway, *command)

    asyncio.run(publish())
    broker.stop()
    assert (broker.directory / "data" / "mosquitto.db").is_file()
    broker.start()
    assert asyncio.run(receive()) == [command]


def test_the_agents_own_link_connects_with_tls_a_password_and_its_certificate(
    broker: Broker,
) -> None:
    """The agent's broker link, configured as `[mqtt]` and `[mqtt.tls]` say, logs in over TLS
    with its client certificate, receives its inputs and publishes its status."""

    async def scenario() -> None:
        received: list[tuple[str, bytes]] = []
        connected = asyncio.Event()

        async def on_message(topic: str, payload: bytes) -> None:
            received.append((topic, payload))

        async def on_connect() -> None:
            await link.publish(SITE + "status", b"online")
            connected.set()

        link = MqttLink(
            BrokerOptions(
                host="127.0.0.1",
                port=broker.port,
                client_id="gridpilot",
                will_topic=SITE + "status",
                will_payload=b"offline",
                username="gridpilot",
                password=PASSWORDS["gridpilot"],
                tls=TlsFiles(
                    broker.certs / "ca.crt", broker.certs / "agent.crt", broker.certs / "agent.key"
                ),
            ),
            subscriptions=[SITE + "price/realtime"],
            on_message=on_message,
            on_connect=on_connect,
        )
        price = (SITE + "price/realtime", _fresh("33.0"))
        async with _watching(broker, "operator", SITE + "status") as operator:
            task = asyncio.create_task(link.run())
            try:
                async with asyncio.timeout(10):
                    await connected.wait()
                assert (await _until(operator, SITE + "status", b"online"))[-1][1] == b"online"
                async with broker.client("market") as market:
                    await market.publish(*price, qos=1)
                async with asyncio.timeout(5):
                    while price not in received:
                        await asyncio.sleep(0.02)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    asyncio.run(scenario())
