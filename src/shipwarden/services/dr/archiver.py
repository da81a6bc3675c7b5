"""Continuous transaction-log archiving (E6, E9): the primary's binlog, seconds behind at most.

A copier (``ports.databases.BinlogStreamer``: ``mariadb-binlog --raw --stop-never``) writes
the primary's binlog into a staging directory as it is written.  :meth:`BinlogArchiver.tick`
supervises it:

* **restart** — the copier exits when the primary restarts and never reconnects by itself;
  the archiver starts it again from the last staged file (re-copied from its start, so a
  half-written tail is replaced).  A primary that changed (failover) gets its staged files
  sealed first, marked with the *fork* — the new primary's ``gtid_slave_pos``, the last
  transaction it applied as a replica, so the old primary's history counts only up to
  there (anything after it no replica received: with semi-sync, never acknowledged) —
  then the new primary is followed from the file holding the first GTID the archive
  does not have yet.  Point-in-time recovery reads the archive as successive timelines.
* **seal** — a staged file is complete once a newer one exists; it is then compressed,
  encrypted and catalogued (``kind=binlog``, with the GTID positions before and after it)
  by the backup service, and removed from staging.  The file being written stays staged
  (0700 directory) and is read from there by point-in-time recovery.
* **lag** — each tick samples the primary's (file, position); the lag is how long ago the
  oldest sample the staged copy has not reached was taken.  More than ``lag_alert_s``
  is an alert.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from shipwarden.domain.dr.gtid import GtidPosition
from shipwarden.domain.dr.topology import Endpoint
from shipwarden.ports.databases import BinlogFile, DatabaseError
from shipwarden.services.dr.backups import BackupService
from shipwarden.services.dr.context import DrContext

__all__ = ["ArchiveStatus", "BinlogArchiver"]


def _order(name: str) -> int:
    return int(name.rpartition(".")[2])


@dataclass(frozen=True)
class ArchiveStatus:
    source: Endpoint | None
    running: bool
    staged: tuple[BinlogFile, ...]
    primary_file: str | None
    primary_pos: int | None
    lag_bytes: int | None
    lag_s: float | None
    restarts: int
    sealed: int


class BinlogArchiver:
    def __init__(self, ctx: DrContext, service: str, *, monotonic: Callable[[], float] = time.monotonic,
                 lag_alert_s: float = 5.0) -> None:  # fmt: skip
        self.ctx = ctx
        self.service = service
        self.ports = ctx.db(service)
        self.backups = BackupService(ctx)
        self.monotonic = monotonic
        self.lag_alert_s = lag_alert_s
        self.restarts = 0
        self.sealed = 0
        self._samples: deque[tuple[float, int, int]] = deque()  # (t, file number, position)
        self._lag_alerted = False
        self.last: ArchiveStatus | None = None

    # -- one supervision pass ---------------------------------------------------------------------
    def tick(self) -> ArchiveStatus:
        streamer = self.ports.streamer
        primary = self.ctx.topology(self.service).primary
        staged_from = streamer.source()
        if staged_from is not None and staged_from != primary:
            try:  # where the new primary forked off: the old one's history counts up to here
                fork = self.ports.driver.status(primary).gtid_slave_pos
            except DatabaseError:
                return self._measure(primary, streamer.files())  # not answering yet: next tick
            streamer.stop()
            self._seal(streamer.files(), staged_from, include_last=True, fork=fork, successor=primary)
            self.ctx.catalogue.audit(
                actor=self.ctx.actor, action="dr.archive.follow", service=self.service,
                detail={"from": str(staged_from), "to": str(primary), "fork": str(fork)},
            )  # fmt: skip
        if not streamer.running() and self.ports.driver.ping(primary, 1.0) is None:
            first = self._start_file(primary)
            if first is not None:
                if staged_from == primary and streamer.files():
                    self.restarts += 1
                    self.ctx.catalogue.audit(
                        actor=self.ctx.actor, action="dr.archive.restart", service=self.service,
                        detail={"source": str(primary), "from": first, "copier": streamer.exit_reason()},
                    )  # fmt: skip
                else:
                    self.ctx.catalogue.audit(
                        actor=self.ctx.actor, action="dr.archive.start", service=self.service,
                        detail={"source": str(primary), "from": first},
                    )  # fmt: skip
                streamer.start(primary, first)
        files = streamer.files()
        self._seal(files, primary, include_last=False)
        return self._measure(primary, streamer.files())

    def _start_file(self, primary: Endpoint) -> str | None:
        """Where to (re)start copying from ``primary``: the last staged file, else the file holding
        the first GTID the archive lacks, else the primary's oldest binlog."""
        staged = self.ports.streamer.files()
        if staged and self.ports.streamer.source() == primary:
            return staged[-1].name
        try:
            logs = self.ports.driver.binlogs(primary)
        except DatabaseError:
            return None  # primary unreachable: try again next tick
        if not logs:
            return None
        archived = [r for r in self.ctx.catalogue.backups(self.service, "binlog") if r.status != "deleted"]
        have = GtidPosition({})
        for r in archived:
            have = have.merge(r.end_position)
        if not have:
            return logs[0].name
        chosen = logs[0].name
        for f in logs:
            try:
                start = self.ports.driver.binlog_start(primary, f.name)
            except DatabaseError:
                break
            if have.contains(start):
                chosen = f.name  # the archive has everything before this file
            else:
                break
        return chosen

    def _seal(self, files: list[BinlogFile], source: Endpoint, *, include_last: bool,
              fork: GtidPosition | None = None, successor: Endpoint | None = None) -> None:  # fmt: skip
        complete = files if include_last else files[:-1]
        timeline = {} if fork is None else {"timeline_end": str(fork), "successor": str(successor)}
        for f in complete:
            start = end = ""
            try:
                start = str(self.ports.driver.binlog_start(source, f.name))
                nxt = next((g for g in files if _order(g.name) > _order(f.name)), None)
                if nxt is not None:
                    end = str(self.ports.driver.binlog_start(source, nxt.name))
            except DatabaseError:
                pass  # the source is gone (failover): the range is unknown, the bytes are what count

            def fill(sink: IO[bytes], name: str = f.name) -> None:
                with self.ports.streamer.open(name) as src:
                    while block := src.read(1 << 20):
                        sink.write(block)

            self.backups.add_sealed(
                self.service, "binlog", fill, source=str(source), gtid=start, gtid_end=end,
                binlog_file=f.name,
                detail={"source": str(source), "file": f.name, "staged_size": f.size, **timeline},
            )  # fmt: skip
            self.ports.streamer.remove(f.name)
            self.sealed += 1

    def _measure(self, primary: Endpoint, staged: list[BinlogFile]) -> ArchiveStatus:
        now = self.monotonic()
        pfile = ppos = None
        try:
            st = self.ports.driver.status(primary)
            pfile, ppos = st.binlog_file, st.binlog_pos
        except DatabaseError:
            pass
        if pfile is not None and ppos is not None:
            self._samples.append((now, _order(pfile), ppos))
        reached = (_order(staged[-1].name), staged[-1].size) if staged else (0, 0)
        while self._samples and (self._samples[0][1], self._samples[0][2]) <= reached:
            self._samples.popleft()
        lag_s = (now - self._samples[0][0]) if self._samples else 0.0
        lag_bytes = None
        if pfile is not None and ppos is not None and staged and staged[-1].name == pfile:
            lag_bytes = max(0, ppos - staged[-1].size)
        if lag_s > self.lag_alert_s and not self._lag_alerted:
            self._lag_alerted = True
            self.ctx.alert(self.service, "archive-lag", "failure",
                           f"binlog archive is {lag_s:.1f}s behind the primary {primary}")  # fmt: skip
        elif lag_s <= self.lag_alert_s:
            self._lag_alerted = False
        self.last = ArchiveStatus(
            self.ports.streamer.source(), self.ports.streamer.running(), tuple(staged), pfile, ppos,
            lag_bytes, lag_s, self.restarts, self.sealed,
        )  # fmt: skip
        return self.last

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, stop: threading.Event, interval: float = 0.2) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the archiver must outlive any one failure
                self.ctx.catalogue.audit(
                    actor=self.ctx.actor, action="dr.archive.error", service=self.service, outcome="failed",
                    detail={"error": str(exc)[:500]},
                )  # fmt: skip
            stop.wait(interval)
        self.ports.streamer.stop()
