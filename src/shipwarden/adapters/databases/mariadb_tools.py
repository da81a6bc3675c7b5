"""MariaDB's backup tools behind ``ports.databases.BackupTool``: ``mariadb-backup`` and ``mariadb-dump``.

Both stream: the tool's standard output is copied, 1 MiB at a time, into the sink the
caller gives (a sealing writer), so a backup never sits whole in memory or unencrypted
on disk.  Credentials go through a private option file (mode 0600), never the command
line where ``ps`` would show them.

* Snapshot: ``mariadb-backup --backup --stream=xbstream`` (hot, BACKUP STAGE locks); its
  binlog file, position and GTID come from the tool's own report ("MySQL binlog
  position: …, GTID of the last change …"), which is consistent because ``--no-lock``
  is never used (MariaDB KB, "Files Created by mariadb-backup").
* Dump: ``mariadb-dump --single-transaction --master-data=2 --gtid``: one consistent
  read view; the binlog coordinates are in its header and the GTID near its end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from shipwarden.domain.dr.gtid import GtidPosition
from shipwarden.domain.dr.topology import Credentials, Endpoint
from shipwarden.ports.databases import DatabaseError, DumpInfo, SnapshotInfo

__all__ = ["MariaDBBackupTool", "option_file"]

_SNAP = re.compile(
    r"MySQL binlog position: filename '([^']*)', position '(\d+)'(?:, GTID of the last change '([^']*)')?"
)
_DUMP_POS = re.compile(r"CHANGE MASTER TO MASTER_LOG_FILE='([^']+)', MASTER_LOG_POS=(\d+)")
_DUMP_GTID = re.compile(r"gtid_slave_pos='([^']*)'")
_BLOCK = 1 << 20


def option_file(directory: Path, credentials: Credentials, endpoint: Endpoint | None = None) -> Path:
    """A private ``[client]`` option file for the tools (the caller deletes ``directory``)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = ["[client]", f"user={credentials.user}"]
    if credentials.password:
        lines.append(f"password={credentials.password}")
    if endpoint is not None:
        lines += [f"host={endpoint.host}", f"port={endpoint.port}", "protocol=TCP"]
    fd, path = tempfile.mkstemp(prefix="client-", suffix=".cnf", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return Path(path)


def _pump(cmd: list[str], sink: IO[bytes], errfile: Path, cwd: Path) -> str:
    """Run ``cmd``, copying its stdout into ``sink``; returns its stderr; raises on failure."""
    with open(errfile, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=cwd)
        assert proc.stdout is not None
        try:
            while True:
                block = proc.stdout.read(_BLOCK)
                if not block:
                    break
                sink.write(block)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        rc = proc.wait()
    text = errfile.read_text(errors="replace")
    if rc != 0:
        raise DatabaseError(f"{Path(cmd[0]).name} exited {rc}: {text.strip()[-1500:]}")
    return text


class MariaDBBackupTool:
    def __init__(self, credentials: Credentials, workdir: Path) -> None:
        self.credentials = credentials
        self.workdir = Path(workdir)

    def snapshot(self, source: Endpoint, sink: IO[bytes]) -> SnapshotInfo:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        work = Path(tempfile.mkdtemp(prefix="snapshot-", dir=self.workdir))
        try:
            cnf = option_file(work, self.credentials, source)
            cmd = ["mariadb-backup", f"--defaults-file={cnf}", "--backup", "--stream=xbstream",
                   f"--target-dir={work / 'target'}"]  # fmt: skip
            log = _pump(cmd, sink, work / "stderr.log", work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        found = _SNAP.findall(log)
        if not found:
            raise DatabaseError("mariadb-backup did not report the binlog position (is binary logging on?)")
        file, pos, gtid = found[-1]
        return SnapshotInfo(file, int(pos), GtidPosition.parse(gtid), "mariadb-backup")

    def dump(self, source: Endpoint, schemas: Sequence[str], sink: IO[bytes]) -> DumpInfo:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        work = Path(tempfile.mkdtemp(prefix="dump-", dir=self.workdir))
        head = bytearray()
        tail = bytearray()

        class _Tee:
            def write(self, data: bytes) -> int:
                if len(head) < 65536:
                    head.extend(data[: 65536 - len(head)])
                tail.extend(data)
                del tail[:-8192]
                return sink.write(data) or len(data)

        try:
            cnf = option_file(work, self.credentials, source)
            which = ["--databases", *schemas] if schemas else ["--all-databases"]
            cmd = ["mariadb-dump", f"--defaults-file={cnf}", "--single-transaction", "--master-data=2",
                   "--gtid", "--routines", "--triggers", "--events", "--hex-blob", *which]  # fmt: skip
            _pump(cmd, _Tee(), work / "stderr.log", work)  # type: ignore[arg-type]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        pos = _DUMP_POS.search(head.decode(errors="replace"))
        gtid = _DUMP_GTID.findall(tail.decode(errors="replace"))
        if pos is None or not gtid:
            raise DatabaseError("mariadb-dump wrote no binlog coordinates (is binary logging on?)")
        return DumpInfo(GtidPosition.parse(gtid[-1]), pos.group(1), int(pos.group(2)), "mariadb-dump")
