"""Small network helpers shared by adapters (free ports, waiting for a port)."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in _RANGE.read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999  # Linux default


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now, chosen *below* the kernel's ephemeral range.

    A port from the ephemeral range (what ``bind(0)`` returns) can be handed to any outgoing
    connection between this check and the moment the instance binds it; ports below the range
    are never auto-assigned, so only another explicit listener can take them.
    """
    lo, _ = _ephemeral_range()
    floor = 10_000 if lo > 12_000 else 1_024
    for _ in range(200):
        port = random.randint(floor, lo - 1)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # crowded: let the OS pick
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> bool:
    """True once something accepts TCP connections on host:port, False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False
