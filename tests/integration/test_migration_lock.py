"""Many processes opening a new store at once (twenty ``shipwarden deploy`` on a new state
directory): each migrates it, and none may fail for it — SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from sqlalchemy import inspect

from shipwarden.adapters.store.engine import MigrationLockTimeout, _migration_lock, make_engine, migrate
from shipwarden.adapters.store.models import Base

pytestmark = pytest.mark.integration

PROCESSES = 8

MIGRATE = """
import sys
from shipwarden.adapters.store.engine import make_engine, migrate
engine = make_engine(sys.argv[1])
sys.stdin.readline()  # the test releases every process at once
migrate(engine)
engine.dispose()
"""


def test_processes_migrating_a_new_store_at_once_all_succeed(database_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, database_url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for _ in range(PROCESSES)
    ]
    for p in procs:  # every one imported and connected: now all migrate together
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [p.communicate(timeout=300) for p in procs]
    failed = [(p.returncode, err[-800:]) for p, (_, err) in zip(procs, results, strict=True) if p.returncode]
    assert not failed, failed
    engine = make_engine(database_url)
    try:
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
        migrate(engine)  # at head: nothing to do
    finally:
        engine.dispose()


def test_a_migration_waits_for_the_lock_another_process_holds(database_url: str) -> None:
    """While the lock is held (here: by this test, as another process's migration would), a new
    store is not touched; once released, the waiting migration completes."""
    holder, engine = make_engine(database_url), make_engine(database_url)
    try:
        with _migration_lock(holder, 10):
            with pytest.raises(MigrationLockTimeout, match="another process is migrating"):
                migrate(engine, lock_timeout_s=0.5)
            assert "alembic_version" not in inspect(engine).get_table_names()
            done = threading.Event()
            waiter = threading.Thread(target=lambda: (migrate(engine), done.set()))
            waiter.start()
            assert not done.wait(1.0)  # still waiting for the lock
        waiter.join(120)
        assert done.is_set()
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        holder.dispose()
        engine.dispose()
