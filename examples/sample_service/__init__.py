"""Start and stop sample-service processes (used by test fixtures, benchmarks and demos).

The service itself is ``app.py`` beside this file and runs as a plain script;
this module only manages processes, so tests and benches start real backends
the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

APP = Path(__file__).resolve().parent / "app.py"


@dataclass
class SampleService:
    """One sample-service process on a loopback port; ``start()`` waits until /healthz answers."""

    version: str = "v1"
    error_rate: float = 0.0
    latency_ms: float = 0.0
    port: int = 0
    host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/"

    def start(self, timeout: float = 10.0) -> SampleService:
        if self.port == 0:
            from shipwarden.adapters.net import free_port

            self.port = free_port(self.host)
        env = {
            **os.environ, **self.env, "PORT": str(self.port), "SAMPLE_HOST": self.host,
            "SAMPLE_VERSION": self.version, "SAMPLE_ERROR_RATE": str(self.error_rate),
            "SAMPLE_LATENCY_MS": str(self.latency_ms),
        }
        self.proc = subprocess.Popen([sys.executable, str(APP)], env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sample service {self.version} exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"sample service {self.version} on {self.address} did not become healthy")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Send ``sig`` and wait; SIGKILL if it does not exit in time.  Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode
