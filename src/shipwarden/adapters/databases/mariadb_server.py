"""Local ``mariadbd`` processes: a data directory, a port and a socket each, under one directory.

Used for scratch instances (restores, verification, rebuilt replicas) and by the test
fixtures that run a real primary with replicas.  A fresh instance is a copy of a
*template* data directory made once by ``mariadb-install-db`` (4 s) and cached; a copy
starts in about 0.3 s.  Every instance starts ``read_only`` — orchestrator's advice
(#518): only a promotion clears it, so a primary that restarts after a failover comes
back refusing writes.  Settings are small (32 MB buffer pool, 8 MB redo log, no
performance_schema) so several instances fit on a small machine.

Durability: ``innodb_flush_log_at_trx_commit=2`` and ``sync_binlog=0`` survive a killed
*process* (the kernel keeps the written pages), not a power loss; pass ``durable=True``
for fsync at every commit.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from shipwarden.domain.dr.topology import Endpoint

__all__ = ["MariaDBServer", "ServerError", "ensure_template"]

MARIADBD = "mariadbd"
INSTALL_DB = "mariadb-install-db"
CLIENT = "mariadb"

_SMALL = {
    "innodb-buffer-pool-size": "32M",
    "innodb-log-file-size": "8M",
    "skip-name-resolve": None,
    "performance-schema": "0",
}


class ServerError(RuntimeError):
    pass


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no error log)"


def _client(socket_path: Path, sql: str, timeout: float = 30) -> None:
    proc = subprocess.run(
        [CLIENT, "--no-defaults", "-uroot", f"--socket={socket_path}", "-e", sql],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise ServerError(f"bootstrap SQL failed: {proc.stderr.strip()}")


def ensure_template(cache: Path, bootstrap_sql: Sequence[str] = ()) -> Path:
    """A data directory made by ``mariadb-install-db`` plus ``bootstrap_sql`` (users, grants),
    built once per (server version, SQL) and reused; safe when several processes race."""
    version = subprocess.run([MARIADBD, "--version"], capture_output=True, text=True).stdout.strip()
    key = hashlib.sha256("\n".join([version, *bootstrap_sql]).encode()).hexdigest()[:16]
    target = cache / f"mariadb-template-{key}"
    if (target / ".ready").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tmpl-", dir=cache))
    data = work / "data"
    try:
        proc = subprocess.run(
            [INSTALL_DB, "--no-defaults", f"--datadir={data}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db",
             *(f"--{k}={v}" if v is not None else f"--{k}" for k, v in _SMALL.items())],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if proc.returncode != 0:
            raise ServerError(f"mariadb-install-db failed: {proc.stderr.strip()[-2000:]}")
        if bootstrap_sql:
            sock = work / "s.sock"
            server = subprocess.Popen(
                [MARIADBD, "--no-defaults", "--user=root", f"--datadir={data}", "--skip-networking",
                 f"--socket={sock}", f"--pid-file={work / 's.pid'}", f"--log-error={work / 's.err'}",
                 "--skip-log-bin", *(f"--{k}={v}" if v is not None else f"--{k}" for k, v in _SMALL.items())],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 30
                while not sock.exists():
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise ServerError(f"template server did not start:\n{_log_tail(work / 's.err')}")
                    time.sleep(0.05)
                _client(sock, ";\n".join(bootstrap_sql))
            finally:
                server.terminate()
                server.wait(30)
        (data / ".ready").write_text(version)
        try:
            os.rename(data, target)
        except OSError:
            pass  # another process finished the same template first
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not (target / ".ready").exists():
        raise ServerError(f"template {target} was not completed")
    return target


class MariaDBServer:
    """One local instance.  ``start`` blocks until it accepts connections."""

    def __init__(
        self,
        root: Path,
        port: int,
        server_id: int,
        *,
        options: Mapping[str, str | None] | None = None,
        durable: bool = False,
    ) -> None:
        self.root = Path(root)
        self.port = port
        self.server_id = server_id
        self.datadir = self.root / "data"
        self.socket = self.root / "mysqld.sock"
        if len(str(self.socket)) > 100:  # sun_path holds 108 bytes: a deep root gets a short alias
            digest = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]
            self.socket = Path(tempfile.gettempdir()) / f"sw-mariadb-{digest}.sock"
        self.pid_file = self.root / "mysqld.pid"
        self.error_log = self.root / "error.log"
        self.options = dict(options or {})
        self.durable = durable
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port)

    # -- data directory --------------------------------------------------------------------------
    def init_from(self, template: Path) -> MariaDBServer:
        """Make the data directory a copy of ``template`` (a fresh install with users)."""
        if self.datadir.exists():
            raise ServerError(f"{self.datadir} exists already")
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.copytree(template, self.datadir, symlinks=True)
        return self

    def adopt(self, datadir: Path) -> MariaDBServer:
        """Use a prepared data directory (a restored snapshot) as this instance's."""
        self.root.mkdir(parents=True, exist_ok=True)
        if datadir != self.datadir:
            os.replace(datadir, self.datadir)
        return self

    # -- process ---------------------------------------------------------------------------------
    def command(self) -> list[str]:
        opts: dict[str, str | None] = {
            "user": "root",
            "datadir": str(self.datadir),
            "port": str(self.port),
            "bind-address": "127.0.0.1",
            "socket": str(self.socket),
            "pid-file": str(self.pid_file),
            "log-error": str(self.error_log),
            "server-id": str(self.server_id),
            "log-bin": "mariadb-bin",
            "relay-log": "relay-bin",
            "relay-log-recovery": "1",
            "binlog-format": "ROW",
            "log-slave-updates": "1",
            "gtid-strict-mode": "1",
            "read-only": "1",
            "slave-net-timeout": "1",  # as the driver sets it (mariadb.REPLICA_NET_TIMEOUT)
            # only a promotion enables it: a replica applying with it on waits for acks nobody sends
            "rpl-semi-sync-master-enabled": "0",
            "rpl-semi-sync-slave-enabled": "1",
            "rpl-semi-sync-master-wait-point": "AFTER_SYNC",
            "innodb-flush-log-at-trx-commit": "1" if self.durable else "2",
            "sync-binlog": "1" if self.durable else "0",
            "max-connections": "300",
            **_SMALL,
            **self.options,
        }
        args = [MARIADBD, "--no-defaults"]
        for k, v in opts.items():
            args.append(f"--{k}" if v is None else f"--{k}={v}")
        return args

    def start(self, timeout: float = 30.0) -> MariaDBServer:
        if self.running():
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "stdout.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self._proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        import socket

        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerError(f"mariadbd on :{self.port} exited:\n{_log_tail(self.error_log)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.settimeout(0.5)
                    if s.recv(1):  # the server's greeting: accepting and answering
                        return self
            except OSError:
                time.sleep(0.03)
        self.kill()
        raise ServerError(
            f"mariadbd on :{self.port} did not start in {timeout}s:\n{_log_tail(self.error_log)}"
        )

    @property
    def pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        return self.pid is not None

    def stop(self, timeout: float = 30.0) -> None:
        """Clean shutdown (SIGTERM), SIGKILL after ``timeout``; a frozen process is thawed first."""
        pid = self.pid
        if pid is None:
            return
        for sig in (signal.SIGCONT, signal.SIGTERM):
            try:
                os.kill(pid, sig)
            except OSError:
                return
        if not self._wait_gone(pid, timeout):
            self.kill()

    def kill(self) -> None:
        """SIGKILL: a crash, as the failover drills need."""
        pid = self.pid
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            return
        self._wait_gone(pid, 10)

    def freeze(self) -> None:
        """SIGSTOP: alive but answering nothing (a hung host, a long GC pause)."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                if self._proc.poll() is not None:
                    return True
            else:
                try:  # a child of this process started elsewhere (a restart): reap it
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        return True
                except ChildProcessError:
                    pass
                try:
                    os.kill(pid, 0)
                    if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                        return True  # dead, waiting for its parent to reap it
                except OSError:
                    return True
            time.sleep(0.02)
        return False

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        if not self.socket.is_relative_to(self.root):
            self.socket.unlink(missing_ok=True)
