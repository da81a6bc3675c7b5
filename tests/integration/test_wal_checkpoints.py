"""``serve`` checkpoints SQLite's write-ahead log from a thread of its own, never inside a commit a
request waits for (``adapters/store/wal.py``; issue 9, class 12)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from shipwarden.adapters.store.engine import make_engine
from shipwarden.adapters.store.wal import WalCheckpoints

pytestmark = pytest.mark.integration


def _engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
    return engine


def _write(engine: Engine, rows: int) -> None:
    for i in range(rows):
        with engine.begin() as conn:  # one commit each, as the audit writer's batches
            conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": f"{i:04d}" * 256})


def test_commits_leave_the_log_to_the_checkpoint_thread(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    checkpoints = WalCheckpoints(engine, every_s=3600)  # the thread never runs in this test
    checkpoints.start()
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        _write(engine, 1500)  # ~1500 pages: SQLite's own checkpoint would have run in a commit
        wal = Path(f"{engine.url.database}-wal")
        grown = wal.stat().st_size
        assert grown > 1000 * 4096  # nothing copied the log back to the start
        busy, log, copied = checkpoints.run_once()
        assert busy == 0 and log > 1000 and copied == log  # the whole log, by the thread's run
        _write(engine, 1)  # the next writer starts the log over
        _, log, _ = checkpoints.run_once()
        assert log < 10
    finally:
        checkpoints.stop()
        engine.dispose()


def test_a_log_past_the_bound_is_truncated(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    checkpoints = WalCheckpoints(engine, every_s=3600, truncate_bytes=64 * 1024)
    checkpoints.start()
    try:
        _write(engine, 50)
        wal = Path(f"{engine.url.database}-wal")
        assert wal.stat().st_size > 64 * 1024
        checkpoints.run_once()
        assert checkpoints.truncations == 1
        assert wal.stat().st_size == 0
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM t").scalar() == 50
    finally:
        checkpoints.stop()
        engine.dispose()


def test_only_for_a_sqlite_file() -> None:
    with pytest.raises(ValueError):
        WalCheckpoints(make_engine("sqlite://"))
