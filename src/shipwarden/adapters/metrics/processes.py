"""Real Prometheus and Alertmanager processes on free loopback ports (the demo's monitoring stack).

Debian's ``prometheus`` and ``prometheus-alertmanager`` binaries, each with its own working
directory, a generated configuration file and a log file there (quoted when it fails to start).
Readiness is polled (``/-/ready``) with a deadline; :meth:`MonitoringProcess.stop` sends SIGTERM,
then SIGKILL.  Short intervals are the caller's choice: the demo evaluates every second and
Alertmanager groups with ``group_wait: 0s`` so that a page follows a threshold crossing within
seconds instead of Alertmanager's 30 s default.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from shipwarden.adapters.net import free_port

__all__ = ["BINARIES", "MonitoringProcess", "missing_binaries", "start_alertmanager", "start_prometheus"]

BINARIES = {
    "prometheus": os.environ.get("SHIPWARDEN_PROMETHEUS_BIN", "/usr/bin/prometheus"),
    "alertmanager": os.environ.get("SHIPWARDEN_ALERTMANAGER_BIN", "/usr/bin/prometheus-alertmanager"),
}


def missing_binaries(*names: str) -> list[str]:
    """The binaries among ``names`` (keys of :data:`BINARIES`) that are not installed."""
    return [BINARIES[n] for n in names if shutil.which(BINARIES[n]) is None]


@dataclass
class MonitoringProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _wait_ready(p: MonitoringProcess, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if p.process.poll() is not None:
                raise RuntimeError(f"{p.name} exited {p.process.returncode}:\n{p.log_tail()}")
            try:
                if client.get(p.url + path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"{p.name} not ready after {timeout:g}s:\n{p.log_tail()}")


def _start(name: str, workdir: Path, args: Callable[[int], list[str]], timeout: float) -> MonitoringProcess:
    binary = shutil.which(BINARIES[name])
    if binary is None:
        raise FileNotFoundError(f"{BINARIES[name]} is not installed (Debian package of {name})")
    workdir.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    for _ in range(3):  # a free port can be taken between choosing and binding it
        port = free_port()
        log_path = workdir / f"{name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [binary, *args(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                start_new_session=True,
            )
        p = MonitoringProcess(name, port, proc, log_path, workdir)
        try:
            _wait_ready(p, "/-/ready", timeout)
            return p
        except RuntimeError as exc:
            p.stop()
            last = exc
            if "address already in use" not in p.log_tail(100):
                break
    raise RuntimeError(f"could not start {name}: {last}")


def start_alertmanager(
    workdir: Path,
    webhook_url: str,
    token: str,
    *,
    group_by: Sequence[str] = ("alertname", "service"),
    group_wait: str = "0s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
    timeout: float = 60.0,
) -> MonitoringProcess:
    """Alertmanager routing everything to one webhook receiver (``send_resolved``, bearer token)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "alertmanager.yml"
    doc = {
        "route": {
            "receiver": "shipwarden",
            "group_by": list(group_by),
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [
            {
                "name": "shipwarden",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
                    }
                ],
            }
        ],
    }
    cfg.write_text(json.dumps(doc))  # JSON is YAML
    cfg.chmod(0o600)  # it holds the webhook token
    return _start(
        "alertmanager",
        workdir,
        lambda port: [
            f"--config.file={cfg}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port: one instance
        ],
        timeout,
    )


def start_prometheus(
    workdir: Path,
    scrape_configs: Sequence[dict[str, Any]],
    *,
    rule_files: Sequence[Path] = (),
    alertmanager: str | None = None,
    interval: str = "1s",
    timeout: float = 60.0,
) -> MonitoringProcess:
    """Prometheus scraping ``scrape_configs`` and evaluating ``rule_files`` every ``interval``,
    sending to ``alertmanager`` (``host:port``); ``/-/reload`` enabled for rules changes."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "prometheus.yml"
    doc: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "scrape_configs": list(scrape_configs),
        "rule_files": [str(p) for p in rule_files],
    }
    if alertmanager:
        doc["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    cfg.write_text(json.dumps(doc))
    return _start(
        "prometheus",
        workdir,
        lambda port: [
            f"--config.file={cfg}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--query.max-concurrency=2",
            f"--rules.alert.resend-delay={interval}",
        ],
        timeout,
    )
