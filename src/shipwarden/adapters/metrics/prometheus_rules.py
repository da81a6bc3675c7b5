"""Prometheus rules file: validate with ``promtool check rules``, replace atomically, reload.

Prometheus reloads its configuration (and so its rule files) on ``SIGHUP`` or on
``POST /-/reload`` when started with ``--web.enable-lifecycle`` (Prometheus docs,
"Configuration": "A configuration reload is triggered by sending a SIGHUP to the Prometheus
process or sending a HTTP POST request to the /-/reload endpoint").  A file that fails
``promtool`` never replaces the serving one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import httpx

__all__ = ["PrometheusRules"]

PROMTOOL = os.environ.get("SHIPWARDEN_PROMTOOL_BIN", "/usr/bin/promtool")


class PrometheusRules:
    def __init__(
        self,
        path: Path,
        *,
        reload_url: str | None = None,
        pid_file: Path | None = None,
        promtool: str = PROMTOOL,
    ) -> None:
        self.path, self.reload_url, self.pid_file, self.promtool = path, reload_url, pid_file, promtool

    def check(self, file: Path) -> None:
        tool = shutil.which(self.promtool) or (self.promtool if Path(self.promtool).exists() else None)
        if tool is None:
            return  # nothing to check with: Prometheus itself refuses a bad file on reload
        r = subprocess.run([tool, "check", "rules", str(file)], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise ValueError(f"promtool check rules failed: {(r.stdout + r.stderr).strip()[-2000:]}")

    def apply(self, text: str) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.read_text() == text:
            return f"unchanged; {self.reload()}"  # a reload is harmless, and a missed one is repaired
        fd, tmp = tempfile.mkstemp(prefix=".rules-", suffix=".yml", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            self.check(Path(tmp))
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return f"written; {self.reload()}"

    def reload(self) -> str:
        if self.reload_url:
            try:
                r = httpx.post(self.reload_url, timeout=30.0)
            except httpx.HTTPError as exc:
                return f"reload failed: {type(exc).__name__}"
            return "reloaded" if r.status_code == 200 else f"reload answered {r.status_code}: {r.text[:200]}"
        if self.pid_file is not None:
            try:
                pid = int(self.pid_file.read_text().strip())
                os.kill(pid, signal.SIGHUP)
            except (OSError, ValueError) as exc:
                return f"SIGHUP failed: {exc}"
            return f"SIGHUP sent to {pid}"
        return "not reloaded (no reload URL or pid file configured)"
