"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``) without a dependency.

The unit (docker/systemd/mia-executor.service) starts the process with ``NOTIFY_SOCKET`` set;
the executor sends ``READY=1`` once recovered and warm, ``WATCHDOG=1`` from the loop (a hung
loop stops the pings and systemd restarts the service), ``STOPPING=1`` on a graceful stop.
Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op.
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send one notification (e.g. ``"READY=1"``). :return: whether it was sent."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(state.encode())
        except OSError:
            return False
    return True


def watchdog_interval_s() -> float | None:
    """:return: half of systemd's watchdog timeout (how often to ping), or None when unset."""
    usec = os.environ.get("WATCHDOG_USEC")
    return int(usec) / 2e6 if usec and usec.isdigit() else None
