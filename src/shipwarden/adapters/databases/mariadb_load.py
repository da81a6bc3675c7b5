"""A steady write load through the database listener, counting what was acknowledged (drills, bench).

Each writer inserts ``(id, @@server_id, now)`` into ``shipwarden_drill.writes`` with
autocommit: a write is *acknowledged* when the server's OK reached us — with
semi-synchronous replication, only after a replica has it.  A failed write (connection
lost, time-out, read-only) is not acknowledged: it may or may not have committed, so it
is never counted as lost.  After a failover, :meth:`missing` asks the new primary which
acknowledged ids it lacks: that is the RPO in writes.  The row's ``sid`` says which
instance committed it, so a write accepted by a fenced primary would show.

The account must be the application's, not an administrator's: ``read_only`` — the
fence — does not stop an account holding ``READ_ONLY ADMIN`` (or ``SUPER`` before 10.11).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence

import pymysql

from shipwarden.domain.dr.topology import Credentials, Endpoint
from shipwarden.ports.databases import LoadResult, WriteAck

__all__ = ["MariaDBWriteLoad", "DRILL_SCHEMA"]

DRILL_SCHEMA = "shipwarden_drill"


class MariaDBWriteLoad:
    def __init__(self, credentials: Credentials, target: Endpoint, *, rate: float = 200.0, writers: int = 2,
                 timeout: float = 2.0, source_address: str | None = None,
                 schema: str = DRILL_SCHEMA) -> None:  # fmt: skip
        self.credentials = credentials
        self.target = target
        #: the local address connections come from (a client on one side of a partition drill)
        self.source_address = source_address
        self.schema = schema
        self.rate = rate
        self.writers = writers
        self.timeout = timeout
        self._ids = itertools.count(int(time.time() * 1000) * 1000)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._acks: list[WriteAck] = []
        self._errors: list[tuple[float, str]] = []
        self._attempts = 0
        self._threads: list[threading.Thread] = []

    def _connect(self, ep: Endpoint) -> pymysql.connections.Connection:
        t = self.timeout
        return pymysql.connect(
            host=ep.host, port=ep.port, user=self.credentials.user, password=self.credentials.password or "",
            connect_timeout=t, read_timeout=t, write_timeout=t, autocommit=True,
            bind_address=self.source_address,
        )  # fmt: skip

    def prepare(self) -> None:
        conn = self._connect(self.target)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {self.schema}")
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.schema}.writes "
                    "(id BIGINT PRIMARY KEY, sid INT NOT NULL, at DOUBLE NOT NULL)"
                )
        finally:
            conn.close()

    def start(self) -> None:
        self.prepare()
        self._stop.clear()
        for _ in range(self.writers):
            t = threading.Thread(target=self._writer, daemon=True)
            t.start()
            self._threads.append(t)

    def _writer(self) -> None:
        conn = None
        sid = 0
        insert = f"INSERT INTO {self.schema}.writes VALUES (%s, @@server_id, UNIX_TIMESTAMP(NOW(6)))"
        interval = self.writers / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            next_at += interval
            wid = next(self._ids)
            with self._lock:
                self._attempts += 1
            try:
                if conn is None:
                    conn = self._connect(self.target)
                    with conn.cursor() as cur:
                        cur.execute("SELECT @@server_id")  # the listener pins a session to one instance
                        row = cur.fetchone()
                        sid = int(row[0]) if row else 0
                with conn.cursor() as cur:
                    cur.execute(insert, (wid,))
                ack = WriteAck(wid, time.monotonic(), sid)
                with self._lock:
                    self._acks.append(ack)
            except (pymysql.MySQLError, OSError) as exc:
                with self._lock:
                    self._errors.append((time.monotonic(), str(exc)[:200]))
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001 - already broken
                        pass
                conn = None
                next_at = time.monotonic() + 0.02
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()
        if conn is not None:
            conn.close()

    def acknowledged_so_far(self) -> int:
        with self._lock:
            return len(self._acks)

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self._threads.clear()
        with self._lock:
            return LoadResult(list(self._acks), list(self._errors), self._attempts)

    def probe(self, endpoint: Endpoint) -> str | None:
        try:
            conn = self._connect(endpoint)
        except (pymysql.MySQLError, OSError) as exc:
            return f"cannot connect: {exc}"
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"INSERT INTO {self.schema}.writes VALUES (%s, @@server_id, UNIX_TIMESTAMP(NOW(6)))",
                    (next(self._ids),),
                )
            return None
        except (pymysql.MySQLError, OSError) as exc:
            return str(exc)[:300]
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a killed session: nothing to close
                pass

    def missing(self, endpoint: Endpoint, ids: Sequence[int]) -> list[int]:
        conn = self._connect(endpoint)
        found: set[int] = set()
        try:
            with conn.cursor() as cur:
                for i in range(0, len(ids), 5000):
                    chunk = list(ids[i : i + 5000])
                    if not chunk:
                        continue
                    marks = ",".join(["%s"] * len(chunk))
                    cur.execute(f"SELECT id FROM {self.schema}.writes WHERE id IN ({marks})", chunk)
                    found.update(int(r[0]) for r in cur.fetchall())
        finally:
            conn.close()
        return [i for i in ids if i not in found]
