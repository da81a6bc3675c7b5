"""Continuous binlog copying with ``mariadb-binlog --read-from-remote-server --raw --stop-never``.

The copier writes each of the primary's binlog files under its own name in a staging
directory, event by event, as the primary writes them.  It does *not* reconnect when
the primary restarts (MySQL manual, "Using mysqlbinlog to Back Up Binary Log Files"):
it exits, and the archiver service notices (``running()`` is False) and starts it again
from the last staged file, which is re-copied from its start.

Each copier connects as a replica with its own server id (derived from the staging
directory), so two archivers never kick each other off the primary.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import IO

from shipwarden.adapters.databases.mariadb_tools import option_file
from shipwarden.domain.dr.topology import Credentials, Endpoint
from shipwarden.ports.databases import BinlogFile

__all__ = ["MariaDBBinlogStreamer"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.\d{6,}$")


def binlog_order(name: str) -> tuple[str, int]:
    base, _, num = name.rpartition(".")
    return base, int(num)


class MariaDBBinlogStreamer:
    def __init__(self, staging: Path, credentials: Credentials) -> None:
        self.staging = Path(staging)
        self.credentials = credentials
        self._proc: subprocess.Popen[bytes] | None = None
        digest = hashlib.sha256(str(self.staging.resolve()).encode()).digest()
        self.server_id = 1_000_000 + int.from_bytes(digest[:3], "big")

    def start(self, source: Endpoint, first_file: str) -> None:
        if not _NAME.match(first_file):
            raise ValueError(f"not a binlog file name: {first_file!r}")
        self.stop()
        self.staging.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf = self.staging / ".conf"
        for old in conf.glob("client-*.cnf") if conf.exists() else ():
            old.unlink()
        cnf = option_file(conf, self.credentials, source)
        (self.staging / ".source").write_text(str(source))
        log = open(self.staging / ".streamer.log", "wb")  # noqa: SIM115 - handed to the child
        try:
            self._proc = subprocess.Popen(
                ["mariadb-binlog", f"--defaults-extra-file={cnf}", "--read-from-remote-server", "--raw",
                 "--stop-never", f"--stop-never-slave-server-id={self.server_id}",
                 f"--result-file={self.staging}/", first_file],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.staging, start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()

    def source(self) -> Endpoint | None:
        try:
            return Endpoint.parse((self.staging / ".source").read_text())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def exit_reason(self) -> str:
        try:
            text = (self.staging / ".streamer.log").read_text(errors="replace").strip()
        except OSError:
            text = ""
        rc = None if self._proc is None else self._proc.poll()
        return f"exit {rc}: {text[-400:]}" if rc is not None else text[-400:]

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except OSError:
            proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def files(self) -> list[BinlogFile]:
        if not self.staging.exists():
            return []
        out = [BinlogFile(p.name, p.stat().st_size) for p in self.staging.iterdir() if _NAME.match(p.name)]
        return sorted(out, key=lambda f: binlog_order(f.name))

    def open(self, name: str) -> IO[bytes]:
        if not _NAME.match(name):
            raise ValueError(f"not a binlog file name: {name!r}")
        return open(self.staging / name, "rb")  # noqa: SIM115 - the caller closes it

    def remove(self, name: str) -> None:
        if not _NAME.match(name):
            raise ValueError(f"not a binlog file name: {name!r}")
        try:
            (self.staging / name).unlink()
        except FileNotFoundError:
            pass
