"""Traffic router driver for a private nginx that shipwarden runs itself.

* ``nginx -s reload`` drops requests under load (883 socket errors in 395k
  requests over 40 reloads), so routing tables never touch the nginx config:
  a Lua balancer (``shipwarden_balancer.lua``) reads them from a shared dict
  that ``apply`` replaces through a loopback admin port.  No reload.
* The config (``nginx.conf.tmpl`` + ``server.conf.tmpl``) changes only with
  listeners; it passes ``nginx -t`` before it replaces the serving one and is
  reloaded only if it differs (else :class:`ConfigRejected`, old one serving).
* Tables are also written atomically to ``routes.json``, which nginx loads at
  start: a restarted nginx serves the last table without the controller.
* Any number of processes (twenty ``shipwarden deploy`` at once, ``serve``) and threads drive
  one nginx: every change — start, listeners, tables — runs under the driver's lock and an
  ``flock`` on ``router.lock`` (:meth:`_exclusive`), and re-reads ``state.json`` first; the admin
  port is chosen under the same flock, so every process talks to the nginx that runs.

State dir: ``conf/nginx.conf``, ``routes.json``, ``state.json`` (admin port,
listeners: a new controller process takes over), ``logs/``, ``nginx.pid``.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from shipwarden.adapters.net import free_port, wait_for_port
from shipwarden.adapters.routers.base import (
    ConfigRejected,
    HistoryQueries,
    Listener,
    ProbeResult,
    RouteCounts,
    RouterError,
    Routes,
)
from shipwarden.adapters.routers.common import (
    NAME_RE,
    PROMETHEUS_HISTORY,
    ROUTES,
    file_lock,
    parse_counts,
    pid_alive,
    routes_from_json,
    routes_to_json,
    validate_routes,
)
from shipwarden.adapters.routers.common import atomic_write as _atomic_write
from shipwarden.adapters.routers.common import probe as _probe

__all__ = ["NginxRouter", "pid_alive", "routes_from_json", "routes_to_json", "validate_routes"]

HERE = Path(__file__).resolve().parent


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b"shutting down"  # gone


class NginxRouter:
    """A :class:`~shipwarden.adapters.routers.base.TrafficRouter` backed by a private nginx.

    ``state_dir`` holds everything of this instance (config, pid, logs, tables).
    ``admin_port`` defaults to the one saved in the state dir, else a free port.
    ``extra_http`` is a list of raw directives appended inside ``http {}``: an
    escape hatch for tuning, and how tests force a config nginx rejects.
    When the controller runs as root, workers run as the same user (they need
    the state dir, which may be private); run shipwarden unprivileged in production.
    """

    def __init__(
        self,
        state_dir: str | Path,
        *,
        admin_port: int | None = None,
        nginx_bin: str = "/usr/sbin/nginx",
        modules_dir: str | Path = "/usr/share/nginx/modules",
        workers: int = 2,
        access_log: bool = True,
        extra_http: Sequence[str] = (),
        timeout: float = 10.0,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        for sub in ("conf", "logs", "tmp"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.nginx_bin, self.modules_dir = nginx_bin, Path(modules_dir)
        self.workers, self.access_log, self.timeout = workers, access_log, timeout
        self.extra_http = list(extra_http)
        self.conf_path = self.state_dir / "conf" / "nginx.conf"
        self.routes_path = self.state_dir / "routes.json"
        self.pid_path = self.state_dir / "nginx.pid"
        self.error_log = self.state_dir / "logs" / "error.log"
        self._state_path = self.state_dir / "state.json"
        self._lock_path = self.state_dir / "router.lock"
        self._lock = threading.RLock()
        self._client: httpx.Client | None = None  # reused: a new client costs ~60 ms (TLS context)
        with file_lock(self._lock_path):  # the first of many processes picks the admin port
            saved = self._saved()
            self.admin_port: int = admin_port or saved.get("admin_port") or free_port()
            self._listeners = {d["service"]: Listener(**d) for d in saved.get("listeners", [])}
            self._save_state()

    def _saved(self) -> dict[str, Any]:
        return dict(json.loads(self._state_path.read_text())) if self._state_path.exists() else {}

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One change at a time: threads on the lock, processes on the state dir's flock; the
        listeners another process added meanwhile are read again first."""
        with self._lock, file_lock(self._lock_path):
            saved = self._saved()
            self._listeners = {d["service"]: Listener(**d) for d in saved.get("listeners", [])}
            yield

    # ------------------------------------------------------------ config
    @property
    def listeners(self) -> dict[str, Listener]:
        return dict(self._listeners)

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def render_config(self, listeners: Sequence[Listener] | None = None) -> str:
        """The full nginx.conf for ``listeners`` (default: the registered ones)."""
        items = sorted(self._listeners.values() if listeners is None else listeners, key=lambda x: x.service)
        server_tmpl = (HERE / "server.conf.tmpl").read_text()
        servers = []
        for lst in items:
            for route, port in (("production", lst.port), ("preview", lst.preview_port)):
                values = {"SERVICE": lst.service, "ROUTE": route, "HOST": lst.host, "PORT": str(port)}
                servers.append(self._fill(server_tmpl, values))
        user = ""
        if os.geteuid() == 0:
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
        log = f"access_log {self.state_dir}/logs/access.log shipwarden buffer=256k flush=1s;"
        return self._fill(
            (HERE / "nginx.conf.tmpl").read_text(),
            {
                "MODULES_DIR": str(self.modules_dir),
                "USER": user,
                "WORKERS": str(self.workers),
                "STATE_DIR": str(self.state_dir),
                "LUA_DIR": str(HERE),
                "ROUTES_FILE": str(self.routes_path),
                "ACCESS_LOG": log if self.access_log else "access_log off;",
                "ADMIN_PORT": str(self.admin_port),
                "SERVERS": "\n".join(servers),
                "EXTRA_HTTP": "\n".join(f"    {d}" for d in self.extra_http),
            },
        )

    @staticmethod
    def _fill(template: str, values: dict[str, str]) -> str:
        return re.sub(r"@@([A-Z_]+)@@", lambda m: values[m.group(1)], template)

    def validate_config(self, text: str) -> None:
        """Run ``nginx -t`` on ``text``; raise :class:`ConfigRejected` with nginx's message."""
        candidate = self.state_dir / "conf" / f"nginx.conf.candidate.{os.getpid()}.{threading.get_ident()}"
        candidate.write_text(text)
        try:
            proc = subprocess.run(
                [self.nginx_bin, "-t", "-q", "-p", str(self.state_dir), "-c", str(candidate)],
                capture_output=True,
                text=True,
                timeout=30,
            )
        finally:
            candidate.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise ConfigRejected(f"nginx rejected the generated config: {proc.stderr.strip()}")

    def _save_state(self) -> None:
        state = {"admin_port": self.admin_port, "listeners": [vars(x) for x in self._listeners.values()]}
        _atomic_write(self._state_path, json.dumps(state, indent=2))

    # ------------------------------------------------------------ process
    def pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and pid_alive(pid)

    def worker_pids(self, serving_only: bool = True) -> set[int]:
        """Worker PIDs of the master; ``serving_only`` leaves out old workers still shutting down."""
        pid = self.pid()
        try:
            kids = {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
        except (OSError, ValueError):
            return set()
        if not serving_only:
            return kids
        # An exited worker not yet reaped (a zombie) has an empty cmdline: only a
        # live "worker process" title that is not "shutting down" is serving.
        titles = {k: _read(f"/proc/{k}/cmdline") for k in kids}
        return {k for k, t in titles.items() if b"worker process" in t and b"shutting down" not in t}

    def start(self) -> None:
        """Start the nginx master (daemonised) with the registered listeners; no-op if running
        (whoever of many callers comes first starts it, the others find it running)."""
        if self.running():
            return
        with self._exclusive():
            if self.running():
                return
            text = self.render_config()
            self.validate_config(text)
            _atomic_write(self.conf_path, text)
            proc = subprocess.run(
                [self.nginx_bin, "-p", str(self.state_dir), "-c", str(self.conf_path)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if proc.returncode != 0:
                raise RouterError(f"nginx failed to start: {proc.stderr.strip()}")
            if not wait_for_port("127.0.0.1", self.admin_port, self.timeout) or not self.running():
                raise RouterError(f"nginx did not come up; see {self.error_log}")

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful quit (SIGQUIT: finish in-flight requests); SIGKILL after ``timeout``."""
        with self._exclusive():
            if self._client is not None:
                self._client.close()
                self._client = None
            pid = self.pid()
            if pid is None or not pid_alive(pid):
                return
            workers = self.worker_pids(serving_only=False)
            os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(pid_alive(p) for p in workers | {pid}):
                time.sleep(0.02)
            for p in workers | {pid}:
                if pid_alive(p):
                    os.kill(p, signal.SIGKILL)

    def _reload(self, text: str) -> None:
        """Install ``text`` and SIGHUP; wait for new workers, or roll back if the master refused it."""
        old = self.conf_path.read_text()
        _atomic_write(self.conf_path, text)
        offset = self.error_log.stat().st_size if self.error_log.exists() else 0
        before = self.worker_pids()
        os.kill(self.pid() or 0, signal.SIGHUP)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with open(self.error_log, "rb") as f:
                f.seek(offset)
                errors = [ln for ln in f.read().decode(errors="replace").splitlines() if "[emerg]" in ln]
            if errors:
                _atomic_write(self.conf_path, old)
                raise ConfigRejected(f"nginx refused the reload, old config keeps serving: {errors[-1]}")
            serving = self.worker_pids()
            if serving and not serving & before and len(serving) >= self.workers:
                return
            time.sleep(0.02)
        raise RouterError("nginx did not start new workers after reload")

    # ------------------------------------------------------------ port
    def ensure_listener(self, listener: Listener) -> None:
        """Expose ``listener``; validate, then reload only if the rendered config changed."""
        self.ensure_listeners([listener])

    def ensure_listeners(self, listeners: Sequence[Listener]) -> None:
        """Expose all of ``listeners`` with one config change: validate, then reload only if the
        rendered config changed.  A reload is graceful, but a client that reuses an idle
        keep-alive connection just as an old worker closes it sees a reset — so the rollout
        service exposes every service of the policy at once, and a later first deployment of
        another service changes nothing."""
        for listener in listeners:
            if not NAME_RE.match(listener.service):
                raise RouterError(f"invalid service name {listener.service!r}")
        with self._exclusive():
            wanted = {**self._listeners, **{x.service: x for x in listeners}}
            ports = [(x.host, p) for x in wanted.values() for p in (x.port, x.preview_port)]
            if len(set(ports)) != len(ports) or any(p == self.admin_port for _, p in ports):
                raise RouterError(f"port conflict among listeners: {sorted(ports)}")
            text = self.render_config(list(wanted.values()))
            current = self.conf_path.read_text() if self.conf_path.exists() else None
            if text != current:
                self.validate_config(text)
                if self.running():
                    self._reload(text)
                    for listener in listeners:
                        for port in (listener.port, listener.preview_port):
                            if not wait_for_port(listener.host, port, self.timeout):
                                raise RouterError(
                                    f"nginx not listening on {listener.host}:{port}; see error.log"
                                )
                else:
                    _atomic_write(self.conf_path, text)
            self._listeners = wanted
            self._save_state()

    def _admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        if not self.running():
            raise RouterError("nginx is not running")
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout, trust_env=False)
            try:
                return self._client.request(method, self.admin_url + path, json=body)
            except httpx.HTTPError as exc:
                raise RouterError(f"admin port unreachable: {exc}") from exc

    def apply(self, service: str, routes: Routes) -> None:
        """Replace the service's table in nginx (no reload), then persist it for restarts."""
        validate_routes(service, routes)
        payload = routes_to_json(routes)
        with self._exclusive():
            resp = self._admin("PUT", f"/routes/{service}", payload)
            if resp.status_code != 200:
                raise RouterError(f"nginx refused the routing table: {resp.text.strip()}")
            saved = {**self._load_routes(), service: payload}
            _atomic_write(self.routes_path, json.dumps({"version": 1, "services": saved}, indent=1))

    def _load_routes(self) -> dict[str, Any]:
        exists = self.routes_path.exists()
        return dict(json.loads(self.routes_path.read_text())["services"]) if exists else {}

    def current(self, service: str) -> Routes | None:
        """The table nginx serves now, read back from the admin port."""
        resp = self._admin("GET", f"/routes/{service}")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise RouterError(f"admin port answered {resp.status_code}: {resp.text.strip()}")
        return routes_from_json(resp.json())

    def metrics_text(self) -> str:
        """Prometheus text from the admin port (``shipwarden_router_requests_total`` etc.)."""
        return self._admin("GET", "/metrics").text

    def version_counts(self, service: str, zone: str | None = None) -> RouteCounts:
        """Per-route, per-version counters of ``service`` (of ``zone``'s instances, if given)
        from the admin port's ``/metrics``."""
        return parse_counts(self.metrics_text(), service, zone)

    history_queries: HistoryQueries | None = PROMETHEUS_HISTORY
    """What Prometheus reads when it scrapes ``admin_url + "/metrics"``."""

    def url(self, service: str, route: str = "production") -> str:
        lst = self._listeners.get(service)
        if lst is None or route not in ROUTES:
            raise RouterError(f"no listener for {service!r} route {route!r}")
        return f"http://{lst.host}:{lst.port if route == 'production' else lst.preview_port}/"

    def probe(self, service: str, route: str, requests: int) -> ProbeResult:
        """Send real requests through the route; count ``X-Shipwarden-Version`` per version."""
        return _probe(self.url(service, route), requests, self.timeout)
