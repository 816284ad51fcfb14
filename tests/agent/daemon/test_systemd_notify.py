"""The notify protocol: what systemd receives, and silence outside systemd."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from gridpilot.agent.daemon.systemd import notify, watchdog_period_s


def test_notify_sends_a_datagram_to_the_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With $NOTIFY_SOCKET set, each message arrives at it as one datagram."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert notify("READY=1")
        assert server.recv(64) == b"READY=1"


def test_notify_is_silent_outside_systemd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without $NOTIFY_SOCKET, or with one nobody listens on, notify does nothing and says so."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody.sock"))
    assert not notify("WATCHDOG=1")


def test_watchdog_period_is_half_the_unit_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """WatchdogSec=30s asks for a ping every 15 s, for this process only."""
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_period_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_period_s() is None
    monkeypatch.delenv("WATCHDOG_PID")
    monkeypatch.setenv("WATCHDOG_USEC", "0")
    assert watchdog_period_s() is None
