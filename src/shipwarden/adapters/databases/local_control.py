"""Process control of MariaDB instances running on this host (``ports.databases.InstanceControl``).

A drill needs to crash the primary for real (SIGKILL, or SIGSTOP for a hung host), and a
rebuild needs to start an instance again and replace its data.  ``remember`` asks a
running instance for ``@@pid_file`` and ``@@datadir`` and reads its command line and
working directory from ``/proc`` — kept in ``registry.json`` — so the same process can be
killed, frozen, restarted with the same arguments, or re-seeded from a snapshot
(``mbstream`` + ``mariadb-backup --prepare`` into a fresh data directory, the old one
moved aside).  Only loopback instances qualify.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from shipwarden.adapters.databases.mariadb import MariaDBDriver
from shipwarden.domain.dr.topology import Endpoint
from shipwarden.ports.databases import DatabaseError

__all__ = ["LocalInstanceControl"]

_BLOCK = 1 << 20


class LocalInstanceControl:
    def __init__(self, driver: MariaDBDriver, state_dir: Path) -> None:
        self.driver = driver
        self.state_dir = Path(state_dir)
        self.registry = self.state_dir / "registry.json"

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            return dict(json.loads(self.registry.read_text()))
        except (OSError, ValueError):
            return {}

    def _save(self, data: dict[str, dict[str, Any]]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.registry.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.registry)

    def _entry(self, ep: Endpoint) -> dict[str, Any]:
        entry = self._load().get(str(ep))
        if entry is None:
            raise DatabaseError(f"{ep}: not a known local instance (remember it while it runs)")
        return entry

    def remember(self, endpoint: Endpoint) -> None:
        if endpoint.host not in ("127.0.0.1", "localhost", "::1"):
            raise DatabaseError(f"{endpoint}: only instances on this host can be controlled")
        with self.driver._conn(endpoint) as c, c.cursor() as cur:
            cur.execute("SELECT @@pid_file AS pf, @@datadir AS dd, @@socket AS sock")
            row = cur.fetchone()
        pid_file = Path(str(row["pf"]))
        datadir = Path(str(row["dd"]))
        if not pid_file.is_absolute():
            pid_file = datadir / pid_file
        pid = int(pid_file.read_text().strip())
        cmdline = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        cwd = os.readlink(f"/proc/{pid}/cwd")
        data = self._load()
        sock = str(row["sock"] or "")
        if sock and not Path(sock).is_absolute():
            sock = str(Path(cwd) / sock)
        data[str(endpoint)] = {"pid": pid, "cmdline": cmdline, "cwd": cwd, "datadir": str(datadir),
                               "socket": sock}  # fmt: skip
        self._save(data)

    def _sockets(self) -> dict[Endpoint, str]:
        return {Endpoint.parse(k): str(v["socket"]) for k, v in self._load().items() if v.get("socket")}

    def local_driver(self) -> MariaDBDriver:
        return self.driver.over_sockets(self._sockets())

    def is_local(self, endpoint: Endpoint) -> bool:
        return endpoint in self._sockets()

    def _pid(self, ep: Endpoint) -> int | None:
        entry = self._entry(ep)
        pid = int(entry["pid"])
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            return None
        if stat == "Z" or [a.decode() for a in cmd if a] != entry["cmdline"]:
            return None
        return pid

    def _signal(self, ep: Endpoint, sig: signal.Signals) -> None:
        pid = self._pid(ep)
        if pid is None:
            raise DatabaseError(f"{ep}: the remembered process is not running")
        os.kill(pid, sig)

    def kill(self, endpoint: Endpoint) -> None:
        self._signal(endpoint, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self._pid(endpoint) is not None and time.monotonic() < deadline:
            time.sleep(0.01)

    def freeze(self, endpoint: Endpoint) -> None:
        self._signal(endpoint, signal.SIGSTOP)

    def thaw(self, endpoint: Endpoint) -> None:
        self._signal(endpoint, signal.SIGCONT)

    def restart(self, endpoint: Endpoint) -> None:
        if self._pid(endpoint) is not None:
            return
        entry = self._entry(endpoint)
        with open(Path(entry["cwd"]) / "stdout.log", "ab") as log:
            proc = subprocess.Popen(entry["cmdline"], cwd=entry["cwd"], stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        data = self._load()
        data[str(endpoint)]["pid"] = proc.pid
        self._save(data)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DatabaseError(f"{endpoint}: mariadbd exited at restart ({proc.returncode})")
            try:
                with socket.create_connection((endpoint.host, endpoint.port), timeout=0.2) as s:
                    s.settimeout(0.5)
                    if s.recv(1):
                        return
            except OSError:
                time.sleep(0.03)
        raise DatabaseError(f"{endpoint}: did not start in 60 s")

    def reseed(self, endpoint: Endpoint, snapshot: IO[bytes]) -> None:
        entry = self._entry(endpoint)
        pid = self._pid(endpoint)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self._pid(endpoint) is not None and time.monotonic() < deadline:
                time.sleep(0.01)
        datadir = Path(entry["datadir"])
        fresh = datadir.with_name(datadir.name + ".reseed")
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir(parents=True)
        proc = subprocess.Popen(
            ["mbstream", "-x", "-C", str(fresh)], stdin=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdin is not None and proc.stderr is not None
        try:
            while block := snapshot.read(_BLOCK):
                proc.stdin.write(block)
        finally:
            proc.stdin.close()
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise DatabaseError(f"{endpoint}: mbstream failed: {err[-800:]}")
        prep = subprocess.run(
            ["mariadb-backup", "--prepare", f"--target-dir={fresh}"], capture_output=True, text=True
        )
        if prep.returncode != 0:
            raise DatabaseError(f"{endpoint}: mariadb-backup --prepare failed: {prep.stderr[-800:]}")
        old = datadir.with_name(datadir.name + f".replaced-{int(time.time())}")
        os.replace(datadir, old)
        os.replace(fresh, datadir)
        shutil.rmtree(old, ignore_errors=True)
        self.restart(endpoint)
