"""The binlog archiver against a real primary: copies as written, seals rotated files, and starts
the copier again after the primary restarts (``mariadb-binlog --stop-never`` does not)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from shipwarden.services.dr.archiver import BinlogArchiver
from shipwarden.services.dr.backups import BackupService
from tests.fixtures.mariadb import DrEnv

pytestmark = pytest.mark.integration


def _write(env: DrEnv, start: int, n: int) -> None:
    conn = env.cluster.app_connect(env.cluster.primary.endpoint, "app")
    with conn.cursor() as cur:
        for i in range(start, start + n):
            cur.execute("INSERT INTO t VALUES (%s, REPEAT('x', 200))", (i,))
    conn.close()


def _until(archiver: BinlogArchiver, cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        archiver.tick()
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"archiver did not get there: {archiver.last}")


def test_archive_follows_rotation_and_primary_restart(dr_env: Callable[..., DrEnv]) -> None:
    env = dr_env(replicas=1)
    p = env.cluster.primary
    env.cluster.admin_sql(
        p.endpoint, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT)"
    )
    arch = BinlogArchiver(env.ctx, "hello")  # type: ignore[arg-type]
    arch.tick()
    assert arch.last is not None and arch.last.running
    _write(env, 0, 50)
    _until(arch, lambda: arch.last is not None and arch.last.lag_s == 0 and arch.last.lag_bytes == 0)

    env.cluster.admin_sql(p.endpoint, "FLUSH BINARY LOGS")
    _write(env, 50, 10)
    _until(arch, lambda: arch.sealed == 1)
    (rec,) = env.ctx.catalogue.backups("hello", "binlog")  # type: ignore[attr-defined]
    assert rec.binlog_file == "mariadb-bin.000001" and rec.gtid_end.startswith("0-1-")
    original = (p.datadir / "mariadb-bin.000001").read_bytes()
    assert BackupService(env.ctx).open(rec).read() == original  # type: ignore[arg-type]

    p.stop()  # the copier loses its connection and exits
    _until(arch, lambda: arch.last is not None and not arch.last.running, 10)
    p.start()
    env.cluster.driver.promote(p.endpoint, semi_sync=False, semi_sync_timeout=10)
    _write(env, 60, 10)
    _until(arch, lambda: arch.restarts == 1 and arch.last is not None and arch.last.lag_s == 0)
    restarts = list(env.store.audit_entries(service="hello", action="dr.archive.restart"))  # type: ignore[attr-defined]
    assert len(restarts) == 1 and restarts[0].detail["from"] == "mariadb-bin.000002"
    # the restart rotated the primary's binlog: 000002 is complete and sealed, 000003 is being copied
    _until(arch, lambda: arch.sealed == 2)
    staged = [f.name for f in arch.last.staged]  # type: ignore[union-attr]
    assert staged == ["mariadb-bin.000003"]
    files = [r.binlog_file for r in env.ctx.catalogue.backups("hello", "binlog")]  # type: ignore[attr-defined]
    assert files == ["mariadb-bin.000001", "mariadb-bin.000002"]
    arch.ports.streamer.stop()


def test_archive_follows_the_new_primary_after_a_failover(dr_env: Callable[..., DrEnv]) -> None:
    from shipwarden.services.dr.failover import DatabaseMonitor

    env = dr_env(replicas=1)
    c = env.cluster
    old = c.primary
    c.admin_sql(old.endpoint, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT)")
    arch = BinlogArchiver(env.ctx, "hello")  # type: ignore[arg-type]
    _write(env, 0, 20)
    _until(arch, lambda: arch.last is not None and arch.last.lag_bytes == 0)
    c.wait_replicated()
    old.kill()
    DatabaseMonitor(env.ctx, "hello").failover(reason="test")  # type: ignore[arg-type]
    new = env.ctx.topology("hello").primary  # type: ignore[attr-defined]
    conn = c.app_connect(new, "app")
    with conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (1000, 'after')")
    conn.close()
    _until(arch, lambda: arch.last is not None and arch.last.source == new and arch.last.lag_bytes == 0)
    sealed = env.ctx.catalogue.backups("hello", "binlog")  # type: ignore[attr-defined]
    assert [r.detail["source"] for r in sealed] == [str(old.endpoint)]  # the old primary's file, sealed
    assert sealed[0].gtid_end == ""  # its end was not knowable: the primary was gone
    starts = list(env.store.audit_entries(service="hello", action="dr.archive.start"))  # type: ignore[attr-defined]
    assert starts[-1].detail["source"] == str(new)
    arch.ports.streamer.stop()
