"""The database endpoint the application connects to: HAProxy in TCP mode, driven by its Runtime API.

One HAProxy process per listener name (a service's database), in ``state_dir/<name>/``,
with one backend server.  Failover repoints it *without a reload*: over the admin
socket the server is put in maintenance (no new connections), every session to it is
shut down (so no client keeps writing to the old primary through us), its address is
changed, and it is made ready again.  The configuration file is rewritten with the
new address at each change, so a restarted HAProxy comes back pointing where the last
change left it — never at a fenced instance.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from shipwarden.domain.dr.topology import Endpoint

__all__ = ["HaproxyTcpListener", "ListenerError"]

HAPROXY = "haproxy"
_BLOCKED = Endpoint("127.0.0.1", 9)  # discard port: never a database


class ListenerError(RuntimeError):
    pass


def _config(name: str, bind: Endpoint, backend: Endpoint | None, sock: Path) -> str:
    target = backend or _BLOCKED
    state = "" if backend else " disabled"
    return f"""# written by shipwarden: the database listener of {name}
global
    stats socket {sock} mode 600 level admin
    maxconn 4000

defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h

frontend fe_db
    bind {bind.host}:{bind.port}
    default_backend be_db

backend be_db
    server primary {target.host}:{target.port}{state}
"""


class HaproxyTcpListener:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- files ------------------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        return self.state_dir / name

    def _sock(self, name: str) -> Path:
        """The admin socket; a deep state directory gets a short alias (sun_path is 108 bytes)."""
        path = self._dir(name) / "admin.sock"
        if len(str(path)) <= 90:
            return path
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"sw-haproxy-{digest}.sock"

    def _state(self, name: str) -> dict[str, str | None]:
        try:
            data = json.loads((self._dir(name) / "state.json").read_text())
            return dict(data)
        except (OSError, ValueError):
            return {}

    def _write(self, name: str, bind: Endpoint, backend: Endpoint | None) -> None:
        d = self._dir(name)
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        for fname, text in (
            ("haproxy.cfg", _config(name, bind, backend, self._sock(name))),
            ("state.json", json.dumps({"bind": str(bind), "backend": str(backend) if backend else None})),
        ):
            tmp = d / (fname + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, d / fname)

    def _pid(self, name: str) -> int | None:
        proc = self._procs.get(name)
        if proc is not None:
            return proc.pid if proc.poll() is None else None
        try:
            pid = int((self._dir(name) / "haproxy.pid").read_text())
            os.kill(pid, 0)
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            return pid if str(self._dir(name)).encode() in cmd else None
        except (OSError, ValueError):
            return None

    # -- runtime API ------------------------------------------------------------------------------
    def _api(self, name: str, command: str) -> str:
        path = str(self._sock(name))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            try:
                s.connect(path)
            except OSError as exc:
                raise ListenerError(f"listener {name}: admin socket {path}: {exc}") from exc
            s.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        out = b"".join(chunks).decode(errors="replace").strip()
        # success is silence, or "IP changed from ... to ..."; failures are one sentence
        if out and not out.startswith(("IP changed", "no need to change", "#")):
            raise ListenerError(f"listener {name}: {command!r}: {out}")
        return out

    # -- the port ---------------------------------------------------------------------------------
    def ensure(self, name: str, bind: Endpoint, backend: Endpoint | None) -> None:
        if self._pid(name) is not None:
            return
        current = self._state(name)
        if current.get("bind") == str(bind):
            stored = current.get("backend")
            backend = Endpoint.parse(stored) if stored else None  # keep what the last change set
        self._write(name, bind, backend)
        d = self._dir(name)
        check = subprocess.run(
            [HAPROXY, "-c", "-q", "-f", str(d / "haproxy.cfg")], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise ListenerError(f"listener {name}: invalid configuration: {check.stderr.strip()}")
        log = open(d / "haproxy.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [HAPROXY, "-db", "-f", str(d / "haproxy.cfg")],
                stdout=log, stderr=subprocess.STDOUT, cwd=d, start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        self._procs[name] = proc
        (d / "haproxy.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 10
        while not self._sock(name).exists() or not self._accepting(bind):
            if proc.poll() is not None:
                tail = (d / "haproxy.log").read_text(errors="replace")[-1500:]
                raise ListenerError(f"listener {name}: haproxy exited: {tail}")
            if time.monotonic() > deadline:
                raise ListenerError(f"listener {name}: haproxy did not start listening on {bind}")
            time.sleep(0.02)

    @staticmethod
    def _accepting(bind: Endpoint) -> bool:
        try:
            with socket.create_connection((bind.host, bind.port), timeout=0.2):
                return True
        except OSError:
            return False

    def point(self, name: str, backend: Endpoint) -> None:
        state = self._state(name)
        if not state.get("bind"):
            raise ListenerError(f"listener {name} was never set up")
        bind = Endpoint.parse(str(state["bind"]))
        self._write(name, bind, backend)  # a restart from here on points at the new backend
        if self._pid(name) is None:
            return
        self._api(name, "set server be_db/primary state maint")
        self._api(name, "shutdown sessions server be_db/primary")
        self._api(name, f"set server be_db/primary addr {backend.host} port {backend.port}")
        self._api(name, "set server be_db/primary state ready")

    def block(self, name: str) -> None:
        state = self._state(name)
        if not state.get("bind"):
            raise ListenerError(f"listener {name} was never set up")
        self._write(name, Endpoint.parse(str(state["bind"])), None)
        if self._pid(name) is None:
            return
        self._api(name, "set server be_db/primary state maint")
        self._api(name, "shutdown sessions server be_db/primary")

    def backend(self, name: str) -> Endpoint | None:
        stored = self._state(name).get("backend")
        return Endpoint.parse(stored) if stored else None

    def running(self, name: str) -> bool:
        return self._pid(name) is not None

    def stop(self) -> None:
        if not self.state_dir.exists():
            return
        for d in sorted(p for p in self.state_dir.iterdir() if p.is_dir()):
            self.stop_one(d.name)

    def stop_one(self, name: str) -> None:
        pid = self._pid(name)
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return
        deadline = time.monotonic() + 5
        proc = self._procs.pop(name, None)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                return
            try:
                os.kill(pid, 0)
            except OSError:
                return
            if Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
