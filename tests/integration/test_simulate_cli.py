"""`gridpilot simulate miners`: a fleet for demos, answering the LuxOS API until interrupted."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys


def _ask(address: str, command: str) -> dict[str, object]:
    with socket.create_connection((address, 4028), timeout=5) as connection:
        connection.sendall(json.dumps({"command": command}).encode())
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    answer: dict[str, object] = json.loads(reply.rstrip(b"\x00"))
    return answer


def test_simulate_miners_serves_until_interrupted() -> None:
    """The command prints each miner, answers as LuxOS on each address, and exits 0 on SIGINT;
    an impossible address range exits 69 with the reason."""
    fleet = subprocess.Popen(  # this interpreter, our own module
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
    try:
        assert fleet.stdout is not None
        lines = [fleet.stdout.readline() for _ in range(4)]
        assert lines[0].startswith("127.0.4.1:4028 S21")
        assert "3 simulated LuxOS miners up" in lines[3]
        version = _ask("127.0.4.3", "version")
        assert "LUXminer" in json.dumps(version)
        fleet.send_signal(signal.SIGINT)
        assert fleet.wait(timeout=10) == 0
    finally:
        if fleet.poll() is None:
            fleet.kill()
            fleet.wait()
        if fleet.stdout is not None:
            fleet.stdout.close()
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
