"""A bounded load generator for loopback zero-downtime checks (tests and the demo).

Threads send GET requests in a loop until stopped or until ``max_seconds``
passes, and count every failure: connection errors, timeouts and non-2xx.
Only for targets on this machine; it stops by itself.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadResult:
    requests: int = 0
    failures: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


class Load:
    def __init__(self, url: str, concurrency: int = 6, max_seconds: float = 120.0) -> None:
        host = httpx.URL(url).host
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"load generation targets loopback only, not {host!r}")
        self.url, self.concurrency, self.max_seconds = url, concurrency, max_seconds
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _worker(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:  # bounded in time
                version, error = None, None
                try:
                    r = client.get(self.url)
                    if 200 <= r.status_code < 300:
                        version = r.headers.get("x-version", "?")
                    else:
                        error = f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                with self._lock:
                    self.result.requests += 1
                    if error:
                        self.result.failures += 1
                        self.result.errors[error] += 1
                    else:
                        self.result.versions[version or "?"] += 1

    def __enter__(self) -> Load:
        for _ in range(self.concurrency):
            t = threading.Thread(target=self._worker, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
