"""A private Mosquitto on a loopback port, for tests and benchmarks.

`LocalBroker` writes a minimal config (loopback only, anonymous, no persistence), starts the
real `mosquitto` binary, waits until it accepts connections, and can be stopped and started
again on the same port (to test what a lost broker does to the agent).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self


class BrokerError(RuntimeError):
    """Mosquitto is missing or would not start."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def find_mosquitto() -> Path:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise BrokerError(
        "mosquitto is not installed; `make test` installs it (Debian: apt-get install mosquitto)"
    )


def start_mosquitto(
    binary: Path, config: Path, log: Path, address: tuple[str, int], *, timeout_s: float = 10.0
) -> subprocess.Popen[bytes]:
    """Start `binary -c config`, logging to `log`, and return once it accepts connections on
    `address`; BrokerError (with the log's end) if it exits or does not listen in time."""
    with log.open("ab") as sink:
        # The child keeps its own copy of the descriptor.
        process = subprocess.Popen(  # noqa: S603  # a config of ours, a fixed binary
            [str(binary), "-c", str(config)], stdout=sink, stderr=sink
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = log.read_text(errors="replace")[-2000:]
            raise BrokerError(f"mosquitto exited at start:\n{said}")
        try:
            with socket.create_connection(address, timeout=0.2):
                return process
        except OSError:
            time.sleep(0.02)
    stop_mosquitto(process)
    raise BrokerError(f"mosquitto did not listen on {address[0]}:{address[1]} in {timeout_s} s")


def stop_mosquitto(process: subprocess.Popen[bytes]) -> None:
    """A clean stop (mosquitto writes its database), killed after 5 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class LocalBroker:
    def __init__(self, port: int | None = None, *, extra_config: str = "") -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._binary = find_mosquitto()
        self._dir = Path(tempfile.mkdtemp(prefix="gridpilot-mosquitto-"))
        self._config = self._dir / "mosquitto.conf"
        self._config.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "set_tcp_nodelay true\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
            "max_queued_messages 100000\n" + extra_config
        )
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        self._process = start_mosquitto(
            self._binary,
            self._config,
            self._dir / "mosquitto.log",
            (self.host, self.port),
            timeout_s=timeout_s,
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_mosquitto(process)

    def log(self) -> str:
        path = self._dir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
