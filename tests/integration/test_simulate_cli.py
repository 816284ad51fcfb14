"""`gridpilot simulate miners`: a fleet for demos, answering the LuxOS API until interrupted."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest


def _ask(address: str, command: str) -> dict[str, object]:
    with socket.create_connection((address, 4028), timeout=5) as connection:
        connection.sendall(json.dumps({"command": command}).encode())
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    answer: dict[str, object] = json.loads(reply.rstrip(b"\x00"))
    return answer


@pytest.mark.parametrize(
    ("stop_with", "inherit_sigint_ignored"),
    [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["sigint", "sigint-inherited-ignored", "sigterm"],
)
def test_simulate_miners_serves_until_interrupted(
    stop_with: signal.Signals, inherit_sigint_ignored: bool
) -> None:
    """The command prints each miner, answers as LuxOS on each address, and exits 0 on SIGINT
    (also when started in the background with SIGINT ignored) or SIGTERM."""
    # A shell starts a background command (`make test &`) with SIGINT ignored, and an
    # ignored disposition survives exec: Python then never raises KeyboardInterrupt for it.
    # This test's process plays that shell for the one child.
    own = signal.getsignal(signal.SIGINT)
    if inherit_sigint_ignored:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        fleet = _start_fleet()
    finally:
        signal.signal(signal.SIGINT, own)
    try:
        assert fleet.stdout is not None
        lines = [fleet.stdout.readline() for _ in range(4)]
        assert lines[0].startswith("127.0.4.1:4028 S21")
        assert "3 simulated LuxOS miners up" in lines[3]
        version = _ask("127.0.4.3", "version")
        assert "LUXminer" in json.dumps(version)
        fleet.send_signal(stop_with)
        assert fleet.wait(timeout=10) == 0
    finally:
        if fleet.poll() is None:
            fleet.kill()
            fleet.wait()
        if fleet.stdout is not None:
            fleet.stdout.close()


def _start_fleet() -> subprocess.Popen[str]:
    return subprocess.Popen(  # this interpreter, our own module
        [
            sys.executable,
            "-m",
            "gridpilot",
            "simulate",
            "miners",
            "--count",
            "3",
            "--first-ip",
            "127.0.4.1",
            "--model",
            "S21",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_simulate_miners_says_why_it_cannot_serve() -> None:
    """An impossible address range exits 69 with the reason."""
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "gridpilot",
            "simulate",
            "miners",
            "--first-ip",
            "255.255.255.255",
            "--count",
            "2",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert bad.returncode == 69
    assert "run out of range" in bad.stderr
