"""Shared helpers for benchmarks: sample-service processes, wrk runs and parsing, result files.

Benchmarks run as plain scripts (``python bench/x.py``), so this module puts the
repository root and ``src`` on ``sys.path``.  Everything that starts a process
hands it to a :class:`Processes` stack, so a failing benchmark still stops it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
for p in (str(ROOT), str(ROOT / "src")):
    if p not in sys.path:
        sys.path.insert(0, p)

from examples.sample_service import SampleService  # noqa: E402

__all__ = ["ROOT", "RESULTS", "SampleService", "Processes", "WrkResult", "parse_wrk", "run_wrk", "start_wrk",
           "finish_wrk", "machine_info", "write_result"]


class Processes(ExitStack):
    """An ExitStack that also starts sample services and stops them (SIGTERM, then SIGKILL) on exit."""

    def sample_services(self, version: str, count: int, **kw: Any) -> list[SampleService]:
        out = []
        for _ in range(count):
            svc = SampleService(version, **kw)
            self.callback(svc.stop)  # registered before start: a half-started process is stopped too
            out.append(svc.start())
        return out


_ERRORS = ("connect", "read", "write", "timeout")


@dataclass
class WrkResult:
    """wrk's summary: totals, errors and (with ``--latency``) the latency distribution in ms."""

    requests: int = 0
    duration_s: float = 0.0
    rps: float = 0.0
    non_2xx_3xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_ERRORS, 0))
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """Every request that did not succeed: non-2xx/3xx answers plus all socket errors."""
        return self.non_2xx_3xx + sum(self.socket_errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failed": self.failed}


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value.strip())
    if not m:
        raise ValueError(f"unparseable wrk duration {value!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(text: str) -> WrkResult:
    """Parse wrk's stdout.  Raises ValueError if the summary line is missing."""
    res = WrkResult()
    m = re.search(r"(\d+) requests in ([\d.]+\w+),", text)
    if not m:
        raise ValueError(f"no wrk summary in output:\n{text}")
    res.requests, res.duration_s = int(m.group(1)), _ms(m.group(2)) / 1000.0
    if m := re.search(r"Requests/sec:\s+([\d.]+)", text):
        res.rps = float(m.group(1))
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text):
        res.non_2xx_3xx = int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        res.socket_errors = dict(zip(_ERRORS, map(int, m.groups()), strict=True))
    for pct, value in re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)\s*$", text, flags=re.M):
        res.latency_ms[f"p{pct}"] = round(_ms(value), 3)
    if m := re.search(r"Latency\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)", text):
        res.latency_ms["avg"], res.latency_ms["max"] = round(_ms(m.group(1)), 3), round(_ms(m.group(3)), 3)
    return res


def start_wrk(url: str, seconds: float, connections: int = 50, threads: int = 2,
              timeout: str = "5s", extra: Sequence[str] = ()) -> subprocess.Popen[str]:
    """Start wrk in the background (``--latency``); pair with :func:`finish_wrk`."""
    cmd = ["wrk", f"-c{connections}", f"-t{threads}", f"-d{max(1, round(seconds))}s", "--timeout", timeout,
           "--latency", *extra, url]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_wrk(proc: subprocess.Popen[str], grace: float = 60.0) -> WrkResult:
    try:
        out, err = proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited {proc.returncode}: {err}")
    return parse_wrk(out)


def run_wrk(url: str, seconds: float, **kw: Any) -> WrkResult:
    proc = start_wrk(url, seconds, **kw)
    return finish_wrk(proc, grace=seconds + 60)


def _first_line(cmd: Sequence[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (proc.stdout + proc.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def machine_info(nginx_bin: str = "/usr/sbin/nginx") -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release(),
        "python": platform.python_version(), "nginx": _first_line([nginx_bin, "-v"]),
        "wrk": _first_line(["wrk", "--version"]),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path
