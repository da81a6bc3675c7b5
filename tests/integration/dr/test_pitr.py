"""Point-in-time recovery against a real primary under a write load with DDL and temporary tables:
snapshot + archived binlog replayed as ONE session gives table checksums equal to the source at
each chosen moment (E9)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pymysql
import pytest

from shipwarden.domain.dr.gtid import GtidPosition
from shipwarden.services.dr.archiver import BinlogArchiver
from shipwarden.services.dr.backups import BackupService
from shipwarden.services.dr.context import DrError
from shipwarden.services.dr.restore import RestoreService
from tests.fixtures.mariadb import DrEnv

pytestmark = pytest.mark.integration

MIXED = {"binlog-format": "MIXED", "max-binlog-size": "65536"}


class Workload:
    """Inserts, updates, deletes, DDL and temporary tables whose life spans a binlog rotation."""

    def __init__(self, env: DrEnv, *, ddl_every: int = 50, temp_every: int = 80) -> None:
        self.env = env
        self.ddl_every = ddl_every
        self.temp_every = temp_every
        self.stop = threading.Event()
        self.pause = threading.Event()
        self.idle = threading.Event()
        self.errors: list[str] = []
        self.n = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        ep = self.env.cluster.primary.endpoint
        conn = self.env.cluster.app_connect(ep, "app")
        rnd = random.Random(7)
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    if self.pause.is_set():
                        self.idle.set()
                        time.sleep(0.01)
                        continue
                    self.idle.clear()
                    self.n += 1
                    i = self.n
                    cur.execute("INSERT INTO t (id, v) VALUES (%s, %s)", (i, f"v{i}"))
                    if i % 3 == 0:
                        cur.execute("UPDATE t SET v = CONCAT(v, '+') WHERE id = %s", (rnd.randint(1, i),))
                    if i % 7 == 0:
                        cur.execute("DELETE FROM t WHERE id = %s", (rnd.randint(1, i),))
                    if i % self.ddl_every == 0:
                        cur.execute(f"CREATE TABLE IF NOT EXISTS d{i} (k INT PRIMARY KEY, x INT)")
                        cur.execute(f"INSERT INTO d{i} VALUES (1, {i})")
                        cur.execute(f"ALTER TABLE d{i} ADD COLUMN y INT DEFAULT {i % 13}")
                    if i % self.temp_every == 0:
                        cur.execute(
                            "CREATE TEMPORARY TABLE tmp AS SELECT id, v FROM t WHERE id > %s", (i - 20,)
                        )
                        self.env.cluster.admin_sql(ep, "FLUSH BINARY LOGS")  # the temp table spans two files
                        cur.execute("INSERT INTO agg (n, total) SELECT %s, COUNT(*) FROM tmp", (i,))
                        cur.execute("DROP TEMPORARY TABLE tmp")
        except pymysql.MySQLError as exc:
            self.errors.append(str(exc))
        finally:
            conn.close()


def test_pitr_is_checksum_exact_at_chosen_moments(dr_env: Callable[..., DrEnv]) -> None:
    env = dr_env(replicas=1, options=MIXED)
    c = env.cluster
    p = c.primary.endpoint
    c.admin_sql(p, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(200))",
                "CREATE TABLE app.agg (n INT PRIMARY KEY, total INT)")  # fmt: skip
    stop_archiver = threading.Event()
    arch = BinlogArchiver(env.ctx, "hello")  # type: ignore[arg-type]
    archiver = threading.Thread(target=arch.run, args=(stop_archiver, 0.05), daemon=True)
    archiver.start()
    load = Workload(env)
    load.thread.start()
    try:
        time.sleep(1.0)
        snap = BackupService(env.ctx).snapshot("hello")  # type: ignore[arg-type]
        moments: list[tuple[GtidPosition, dict[str, int | None]]] = []
        for _ in range(3):
            time.sleep(random.uniform(0.8, 1.5))
            moments.append(c.driver.consistent_checksums(c.replicas[0].endpoint, ["app"]))  # applier paused
        # a moment in time: writes pause across a whole second, so "before S" is unambiguous
        load.pause.set()
        load.idle.wait(5)
        time.sleep(1.05 - (time.time() % 1.0))
        at_second = datetime.fromtimestamp(int(time.time()), tz=UTC)
        c.wait_replicated()
        time_reference = c.driver.consistent_checksums(c.replicas[0].endpoint, ["app"])
        time.sleep(1.05)
        load.pause.clear()
        time.sleep(1.0)
    finally:
        load.stop.set()
        load.thread.join(10)
    assert not load.errors and load.n > 300
    end = c.driver.status(p)
    deadline = time.monotonic() + 60  # bounded wait: a loaded machine is slow to drain
    while arch.last is None or arch.last.lag_s or arch.last.primary_pos != end.binlog_pos:
        assert time.monotonic() < deadline, arch.last
        time.sleep(0.05)
    stop_archiver.set()
    archiver.join(10)
    assert arch.sealed >= 3  # rotations happened: the replay crosses files

    restore = RestoreService(env.ctx)  # type: ignore[arg-type]
    for gtid, reference in moments:
        assert snap.position.seq(0) < gtid.seq(0)
        r = restore.restore("hello", gtid=gtid, verify=True, keep=False)
        assert r.reached.contains(gtid) and gtid.contains(r.reached), (r.reached, gtid)
        assert r.checksums == reference, r.detail
        assert len(reference) >= 3  # t, agg and tables created by DDL after the snapshot
    r = restore.restore("hello", before=at_second, verify=True, keep=False)
    assert r.checksums == time_reference[1] and r.reached == time_reference[0]
    latest = restore.restore("hello", latest=True, verify=True, keep=False)
    assert latest.verified and not latest.mismatches, latest.detail
    audited = [e.detail for e in env.store.audit_entries(service="hello", action="dr.restore")]  # type: ignore[attr-defined]
    assert len(audited) == 5 and all(d["snapshot"] == snap.id for d in audited)


def test_restore_refuses_a_target_before_any_snapshot(dr_env: Callable[..., DrEnv]) -> None:
    env = dr_env(replicas=1)
    with pytest.raises(DrError, match="no good snapshot"):
        RestoreService(env.ctx).restore("hello", gtid=GtidPosition.parse("0-1-5"))  # type: ignore[arg-type]
    with pytest.raises(DrError, match="exactly one target"):
        RestoreService(env.ctx).restore("hello")  # type: ignore[arg-type]


def test_pitr_before_and_after_a_failover_follows_the_new_primary(dr_env: Callable[..., DrEnv]) -> None:
    """The archive follows the new primary after a failover; a restore to a moment before it and to
    one after it are both checksum-exact.  The old primary wrote one transaction no replica got
    (it is in the archive: the archiver saw it) — the new primary's next transaction takes the same
    sequence number in domain 0, and the restore after the failover must have the new primary's,
    never the orphan."""
    from shipwarden.services.dr.failover import DatabaseMonitor

    env = dr_env(replicas=2)
    c, d = env.cluster, env.cluster.driver
    old, (r1, r2) = c.primary, c.replicas
    p = old.endpoint
    c.admin_sql(p, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(40))")
    stop_archiver = threading.Event()
    arch = BinlogArchiver(env.ctx, "hello")  # type: ignore[arg-type]
    archiver = threading.Thread(target=arch.run, args=(stop_archiver, 0.05), daemon=True)
    archiver.start()

    def write(ep: object, first: int, n: int) -> None:
        conn = c.app_connect(ep, "app")  # type: ignore[arg-type]
        with conn.cursor() as cur:
            for i in range(first, first + n):
                cur.execute("INSERT INTO t VALUES (%s, %s)", (i, f"v{i}"))
            cur.execute("UPDATE t SET v = CONCAT(v, '+') WHERE id %% 5 = 0 AND id >= %s", (first,))
        conn.close()

    def archived_to(ep: object) -> None:
        end = d.status(ep)  # type: ignore[arg-type]
        deadline = time.monotonic() + 60
        while arch.last is None or arch.last.source != ep or arch.last.primary_pos != end.binlog_pos:
            assert time.monotonic() < deadline, arch.last
            time.sleep(0.05)

    try:
        write(p, 1, 100)
        snap = BackupService(env.ctx).snapshot("hello")  # type: ignore[arg-type]
        write(p, 101, 100)
        c.wait_replicated()
        before = d.consistent_checksums(r2.endpoint, ["app"])
        # the orphan: replicas stop receiving, the primary goes asynchronous and commits one more
        for r in (r1, r2):
            c.admin_sql(r.endpoint, "STOP SLAVE IO_THREAD")
        c.admin_sql(
            p, "SET GLOBAL rpl_semi_sync_master_enabled = OFF", "INSERT INTO app.t VALUES (-1, 'orphan')"
        )
        orphan = d.status(p).gtid_binlog_pos
        archived_to(p)
        old.kill()
        report = DatabaseMonitor(env.ctx, "hello").failover(reason="test", candidate=r1.endpoint)  # type: ignore[arg-type]
        new = r1.endpoint
        assert report.new_primary == new
        write(new, 1001, 100)
        c.wait_replicated_from(new, [r2.endpoint])
        after = d.consistent_checksums(r2.endpoint, ["app"])
        archived_to(new)
    finally:
        stop_archiver.set()
        archiver.join(10)
    new_sid = d.status(new).server_id
    # GTIDs: the orphan 0-1-N and the new primary's 0-2-N share domain 0 and N
    (o,) = list(orphan)
    assert o.server_id == old.server_id and d.status(new).gtid_binlog_pos.seq(0) > o.seq
    assert {g.server_id for g in after[0]} == {new_sid}
    follow = [e.detail for e in env.store.audit_entries(service="hello", action="dr.archive.follow")]  # type: ignore[attr-defined]
    assert follow and follow[-1]["to"] == str(new) and follow[-1]["fork"] == str(before[0])

    restore = RestoreService(env.ctx)  # type: ignore[arg-type]
    r = restore.restore("hello", gtid=before[0], verify=True, keep=False)
    assert r.reached == before[0] and r.checksums == before[1], r.detail
    assert {g.server_id for g in r.reached} == {old.server_id}
    r = restore.restore("hello", gtid=after[0], verify=True, keep=True)
    try:
        assert r.reached == after[0] and r.checksums == after[1], r.detail
        assert r.instance is not None
        rows = c.admin_sql(r.instance.endpoint, "SELECT COUNT(*), SUM(id = -1) FROM app.t")
        assert rows[0][0] == 300 and not rows[0][1]  # every write of both timelines, never the orphan
    finally:
        assert r.instance is not None
        r.instance.remove()
    assert snap.position.seq(0) < before[0].seq(0) < after[0].seq(0)
