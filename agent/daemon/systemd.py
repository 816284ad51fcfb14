"""systemd's notify protocol, spoken directly (a datagram to $NOTIFY_SOCKET; see sd_notify(3)).

`Type=notify` units are told READY=1 once the agent serves, WATCHDOG=1 from its loop at half
the unit's WatchdogSec (so a hung loop stops the pings and systemd restarts the service), and
STOPPING=1 on the way out. Outside systemd (no $NOTIFY_SOCKET) every call does nothing.
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send `message` ("READY=1", "WATCHDOG=1", ...) to systemd; False when not under it or
    when the socket cannot be reached (the service runs on; systemd notices what it must)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError:
        return False
    return True


def watchdog_period_s() -> float | None:
    """How often to send WATCHDOG=1 (half of WatchdogSec), or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6
