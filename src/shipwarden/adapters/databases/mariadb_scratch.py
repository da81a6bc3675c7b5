"""Fresh MariaDB instances to restore into (``ports.databases.ScratchInstances``).

``from_snapshot`` unpacks a ``mariadb-backup`` xbstream with ``mbstream``, runs
``--prepare`` (crash recovery of the copied redo log) and starts ``mariadbd`` on the
prepared directory, on a free port.  ``replay`` applies archived binlogs with
``mariadb-binlog`` piped into ONE ``mariadb`` client session, from the snapshot's GTID
(exclusive) to a GTID (inclusive) or a moment: a temporary table created in one binlog
file is still there when the next file uses it (WAL-G #888 replays file by file and
loses it).  Across a failover the files come from successive primaries: each primary's
files are read up to its *fork* (what its successor had received when promoted) and the
next primary's from there, one reader after another into the same session — a
transaction the old primary wrote and no replica got (so never acknowledged with
semi-sync) shares its sequence number with the new primary's next one, and is skipped.
``--stop-datetime`` compares whole seconds of the events' timestamps, in
UTC here; a GTID target is exact.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
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


def _readers(
    files: Sequence[str], start: GtidPosition, target: ReplayTarget, forks: Mapping[int, GtidPosition]
) -> list[list[str]]:
    """One ``mariadb-binlog`` command per timeline segment (files of one primary up to its fork).

    Each segment is read from where the previous ended (the snapshot's position first) and stops
    at its fork, or at the target when the target lies within it (nothing after it is read).  A
    segment wholly behind the starting point (a snapshot taken after that failover) is skipped."""
    out: list[list[str]] = []
    begin = 0
    at = start
    cuts = sorted(i for i in forks if 0 <= i < len(files) - 1)
    for end_index in [*cuts, len(files) - 1]:
        chunk = list(files[begin : end_index + 1])
        begin = end_index + 1
        fork = forks.get(end_index) if end_index in cuts else None
        if fork is not None and at.contains(fork):
            continue  # the starting point is past this primary's history
        stop = target.gtid
        last = fork is None or (stop is not None and fork.contains(stop))
        if not last:
            stop = fork
        args = ["mariadb-binlog"]
        if at:
            args.append(f"--start-position={at}")
        if stop is not None:
            args.append(f"--stop-position={stop}")
        if target.before is not None:
            args.append(f"--stop-datetime={target.before.astimezone().strftime('%Y-%m-%d %H:%M:%S')}")
        out.append(args + chunk)
        if last:
            break
        at = at.merge(fork)  # type: ignore[arg-type]
    return out


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
        forks: Mapping[int, GtidPosition] | None = None,
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
                cnf = option_file(work, self.credentials, self.endpoint)
                seen = self._pipe(_readers(files, start, target, forks or {}), cnf, work)
                return start.merge(seen).merge(self.position())
            return start.merge(self.position())  # the snapshot holds ``start``; nothing to replay
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _pipe(self, readers: list[list[str]], cnf: Path, work: Path) -> GtidPosition:
        """``mariadb-binlog … | mariadb`` through this process, one reader per timeline segment
        after another into the same client session, noting every GTID that goes by (a transaction
        on temporary tables only applies but leaves no GTID in a ROW binlog)."""
        with open(work / "client.err", "wb") as errf:
            client = subprocess.Popen(
                ["mariadb", f"--defaults-file={cnf}", "--binary-mode"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errf,
            )  # fmt: skip
        assert client.stdin is not None
        seen: dict[int, Gtid] = {}
        broken = False
        try:
            for n, reader_cmd in enumerate(readers):
                err_path = work / f"binlog-{n}.err"
                with open(err_path, "wb") as errf:
                    reader = subprocess.Popen(reader_cmd, stdout=subprocess.PIPE, stderr=errf)
                assert reader.stdout is not None
                carry = b""
                try:
                    while not broken and (block := reader.stdout.read(_BLOCK)):
                        try:
                            client.stdin.write(block)
                        except BrokenPipeError:
                            broken = True
                            break
                        text = carry + block
                        cut = text.rfind(b"\n") + 1
                        carry = text[cut:]
                        for m in _GTID_LINE.finditer(text[:cut]):
                            g = Gtid(int(m.group(1)), int(m.group(2)), int(m.group(3)))
                            if g.domain not in seen or seen[g.domain].seq < g.seq:
                                seen[g.domain] = g
                finally:
                    reader.stdout.close()
                if reader.wait() != 0 and not broken:
                    raise DatabaseError(f"mariadb-binlog failed: {err_path.read_text()[-1500:]}")
                if broken:
                    break
        finally:
            try:
                client.stdin.close()
            except BrokenPipeError:
                pass
            crc = client.wait()
        if crc != 0:
            raise DatabaseError(f"replaying the binlogs failed: {(work / 'client.err').read_text()[-1500:]}")
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
