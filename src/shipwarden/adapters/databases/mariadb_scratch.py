"""Fresh MariaDB instances to restore into (``ports.databases.ScratchInstances``).

``from_snapshot`` unpacks a ``mariadb-backup`` xbstream with ``mbstream``, runs
``--prepare`` (crash recovery of the copied redo log) and starts ``mariadbd`` on the
prepared directory, on a free port.  ``replay`` applies archived binlogs with
``mariadb-binlog`` piped into ONE ``mariadb`` client session, from the snapshot's GTID
(exclusive) to a GTID (inclusive) or a moment: a temporary table created in one binlog
file is still there when the next file uses it (WAL-G #888 replays file by file and
loses it).  ``--stop-datetime`` compares whole seconds of the events' timestamps, in
UTC here; a GTID target is exact.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from shipwarden.adapters.databases.mariadb import MariaDBDriver
from shipwarden.adapters.databases.mariadb_server import MariaDBServer, ensure_template
from shipwarden.adapters.databases.mariadb_tools import option_file
from shipwarden.adapters.net import free_port
from shipwarden.domain.dr.gtid import Gtid, GtidPosition
from shipwarden.domain.dr.topology import Credentials, Endpoint
from shipwarden.ports.databases import DatabaseError, ReplayTarget

__all__ = ["MariaDBScratch", "ScratchServer"]

_BLOCK = 1 << 20
#: mariadb-binlog's comment line before each transaction: "#261203 11:25:33 server id 1 … GTID 0-1-42 trans"
_GTID_LINE = re.compile(rb"^#\d{6}\s+\d+:\d+:\d+ .*?\bGTID (\d+)-(\d+)-(\d+)\b", re.M)


def _run(cmd: list[str], what: str, **kw: object) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise DatabaseError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")


class ScratchServer:
    """A started scratch instance; ``remove`` stops it and deletes its files."""

    def __init__(self, server: MariaDBServer, credentials: Credentials) -> None:
        self.server = server
        self.credentials = credentials
        self.endpoint: Endpoint = server.endpoint

    def replay(
        self,
        binlogs: Sequence[tuple[str, Callable[[], IO[bytes]]]],
        start: GtidPosition,
        target: ReplayTarget,
    ) -> GtidPosition:
        work = Path(tempfile.mkdtemp(prefix="replay-", dir=self.server.root))
        try:
            files = []
            for i, (name, opener) in enumerate(binlogs):
                path = work / f"{i:05d}-{name}"
                with opener() as src, open(path, "wb") as dst:
                    shutil.copyfileobj(src, dst, _BLOCK)
                files.append(str(path))
            if files:
                args = ["mariadb-binlog"]
                if start:
                    args.append(f"--start-position={start}")
                if target.gtid is not None:
                    args.append(f"--stop-position={target.gtid}")
                if target.before is not None:
                    args.append(f"--stop-datetime={target.before.astimezone().strftime('%Y-%m-%d %H:%M:%S')}")
                cnf = option_file(work, self.credentials, self.endpoint)
                seen = self._pipe(args + files, cnf, work)
                return start.merge(seen).merge(self.position())
            return start.merge(self.position())  # the snapshot holds ``start``; nothing to replay
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _pipe(self, reader_cmd: list[str], cnf: Path, work: Path) -> GtidPosition:
        """``mariadb-binlog … | mariadb`` through this process, noting every GTID that goes by
        (a transaction on temporary tables only applies but leaves no GTID in a ROW binlog)."""
        with open(work / "binlog.err", "wb") as errf:
            reader = subprocess.Popen(reader_cmd, stdout=subprocess.PIPE, stderr=errf)
        with open(work / "client.err", "wb") as errf:
            client = subprocess.Popen(
                ["mariadb", f"--defaults-file={cnf}", "--binary-mode"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errf,
            )  # fmt: skip
        assert reader.stdout is not None and client.stdin is not None
        seen: dict[int, Gtid] = {}
        carry = b""
        try:
            while block := reader.stdout.read(_BLOCK):
                try:
                    client.stdin.write(block)
                except BrokenPipeError:
                    break
                text = carry + block
                cut = text.rfind(b"\n") + 1
                carry = text[cut:]
                for m in _GTID_LINE.finditer(text[:cut]):
                    g = Gtid(int(m.group(1)), int(m.group(2)), int(m.group(3)))
                    if g.domain not in seen or seen[g.domain].seq < g.seq:
                        seen[g.domain] = g
        finally:
            client.stdin.close()
            reader.stdout.close()
        rc, crc = reader.wait(), client.wait()
        if crc != 0:
            raise DatabaseError(f"replaying the binlogs failed: {(work / 'client.err').read_text()[-1500:]}")
        if rc != 0:
            raise DatabaseError(f"mariadb-binlog failed: {(work / 'binlog.err').read_text()[-1500:]}")
        return GtidPosition(seen)

    def position(self) -> GtidPosition:
        """Everything the instance holds: the restored snapshot's position plus what was replayed."""
        st = MariaDBDriver(self.credentials).status(self.endpoint)
        return st.gtid_current_pos.merge(st.gtid_binlog_pos)

    def load_dump(self, stream: IO[bytes]) -> None:
        work = Path(tempfile.mkdtemp(prefix="load-", dir=self.server.root))
        try:
            cnf = option_file(work, self.credentials, self.endpoint)
            proc = subprocess.Popen(["mariadb", f"--defaults-file={cnf}", "--binary-mode"],
                                    stdin=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
            assert proc.stdin is not None and proc.stderr is not None
            try:
                while block := stream.read(_BLOCK):
                    proc.stdin.write(block)
            finally:
                proc.stdin.close()
            err = proc.stderr.read().decode(errors="replace")
            if proc.wait() != 0:
                raise DatabaseError(f"loading the dump failed: {err.strip()[-1500:]}")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def stop(self) -> None:
        self.server.stop()

    def remove(self) -> None:
        self.server.remove()


class MariaDBScratch:
    """Makes scratch instances under ``root``; ``credentials`` must exist in the restored data."""

    def __init__(self, root: Path, credentials: Credentials, *, template_cache: Path | None = None,
                 bootstrap_sql: Sequence[str] = ()) -> None:  # fmt: skip
        self.root = Path(root)
        self.credentials = credentials
        self.template_cache = template_cache or self.root / ".template"
        self.bootstrap_sql = tuple(bootstrap_sql)

    def _server(self, name: str) -> MariaDBServer:
        d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self._ensure_root()))
        server_id = 2_000_000 + int.from_bytes(os.urandom(3), "big")
        return MariaDBServer(d, free_port(), server_id)

    def _ensure_root(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.root

    def from_snapshot(self, name: str, snapshot: IO[bytes]) -> ScratchServer:
        server = self._server(name)
        data = server.root / "unpacked"
        data.mkdir()
        try:
            proc = subprocess.Popen(["mbstream", "-x", "-C", str(data)], stdin=subprocess.PIPE,
                                    stderr=subprocess.PIPE)  # fmt: skip
            assert proc.stdin is not None and proc.stderr is not None
            try:
                while block := snapshot.read(_BLOCK):
                    proc.stdin.write(block)
            finally:
                proc.stdin.close()
            err = proc.stderr.read().decode(errors="replace")
            if proc.wait() != 0:
                raise DatabaseError(f"mbstream could not unpack the snapshot: {err.strip()[-1000:]}")
            _run(["mariadb-backup", "--prepare", f"--target-dir={data}"], "mariadb-backup --prepare")
            server.adopt(data).start()
        except BaseException:
            server.remove()
            raise
        return ScratchServer(server, self.credentials)

    def empty(self, name: str) -> ScratchServer:
        server = self._server(name)
        try:
            server.init_from(ensure_template(self.template_cache, self.bootstrap_sql)).start()
        except BaseException:
            server.remove()
            raise
        return ScratchServer(server, self.credentials)
