"""SQLite WAL checkpoints off the commit path, for ``serve`` (issue 9, class 12: the SQLite tail).

By default SQLite checkpoints the write-ahead log inside the ``COMMIT`` that takes it past
``wal_autocheckpoint`` pages (1000): that commit copies every page of the log into the database
file and syncs both.  In ``serve`` the commits are the audit writer's group commits, which every
request waits for (its access entry), and an access entry touches a few pages — so under load one
batch in a few hundred paid for a checkpoint of tens of milliseconds, and every request queued
behind it with it: the tail of the authenticated read on SQLite.

:class:`WalCheckpoints` switches the automatic checkpoint off on the engine's connections and runs
``PRAGMA wal_checkpoint(PASSIVE)`` from a thread of its own, every ``every_s``: it copies what it
can without waiting for (or blocking) any reader or writer.  Durability is unchanged: a commit is
durable when it is in the log, checkpointed or not; the checkpoint only moves pages into the
database file.  A passive checkpoint that copied the whole log lets the next writer start the
log over; under constant writes the log may never be copied whole at that moment, so when it has
grown past ``truncate_bytes`` the thread runs a ``TRUNCATE`` checkpoint instead, which waits for
the writer in flight (the busy timeout) and empties the file — a rare, bounded pause, off any
request's own thread.  Other processes (the CLI) keep SQLite's automatic checkpoints.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

__all__ = ["WalCheckpoints"]

MiB = 1024 * 1024


class WalCheckpoints:
    """The WAL of ``engine``'s SQLite database checkpointed by a thread, not by commits."""

    def __init__(self, engine: Engine, *, every_s: float = 0.2, truncate_bytes: int = 32 * MiB) -> None:
        if engine.dialect.name != "sqlite" or not engine.url.database or engine.url.database == ":memory:":
            raise ValueError("WAL checkpoints are for a SQLite database file")
        self.engine = engine
        self.every_s = every_s
        self.truncate_bytes = truncate_bytes
        self.wal = Path(f"{engine.url.database}-wal")
        self.runs = 0
        self.truncations = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> WalCheckpoints:
        """No more checkpoints in this engine's commits (connections open now are replaced); this
        object's thread does them."""
        event.listen(self.engine, "connect", _no_autocheckpoint)
        self.engine.dispose()  # pooled connections were opened with the automatic checkpoint
        self._thread = threading.Thread(target=self._run, name="wal-checkpoints", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)

    def run_once(self) -> tuple[int, int, int]:
        """One checkpoint: ``TRUNCATE`` if the log is over ``truncate_bytes``, else ``PASSIVE``.
        SQLite's answer: (busy, frames in the log, frames checkpointed)."""
        try:
            size = self.wal.stat().st_size
        except FileNotFoundError:
            size = 0
        mode = "TRUNCATE" if size > self.truncate_bytes else "PASSIVE"
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})").one()
        self.runs += 1
        self.truncations += mode == "TRUNCATE"
        return int(row[0]), int(row[1]), int(row[2])

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - keep checkpointing; the next run retries
                sys.stderr.write(f"WAL checkpoint failed: {type(exc).__name__}: {exc}\n")


def _no_autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA wal_autocheckpoint=0")
    cur.close()
