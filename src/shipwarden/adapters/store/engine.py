"""Engines and migrations.  Built by ``bootstrap`` — never at import time.

Every process that opens the store migrates it first (the CLI's commands, ``serve``), so when
twenty ``shipwarden deploy`` start together on a new state directory, twenty processes would run
the same ``CREATE TABLE`` at once: all but one died with "table audit_log already exists".
:func:`migrate` therefore reads the schema's revision first — a store already at head, the usual
case, costs one query and no lock — and otherwise takes a lock that every process of every host
sees before it runs alembic, then reads the revision again (whoever waited finds the work done):

* SQLite: an ``flock`` on a file beside the database (one host by nature);
* MariaDB/MySQL: ``GET_LOCK()``, a named lock held by a session of its own (DDL commits
  implicitly there, so a transaction could not hold it);
* PostgreSQL: ``pg_advisory_lock`` on a session of its own, per database.

A lock not obtained within ``MIGRATION_LOCK_TIMEOUT_S`` is a :class:`MigrationLockTimeout` (a
``StoreError``: one line from the CLI, never a traceback).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text

from shipwarden.ports.store import StoreError

MIGRATIONS = Path(__file__).parent / "migrations"


POOL_SIZE = 20
"""Connections kept open.  ``serve`` runs request work on up to 40 worker threads (anyio's
default) plus the audit writer and the controller; SQLAlchemy's default of 5 (+10 overflow)
made requests queue for a connection under load, and each overflow connection was opened and
closed per use.  Connections past the pool (``MAX_OVERFLOW``) serve bursts."""
MAX_OVERFLOW = 30


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with a pool sized for ``serve``; SQLite gets WAL and a busy timeout so
    several CLIs can share it."""
    if url.startswith("sqlite"):
        pool = {} if ":memory:" in url or url.rstrip("/") in ("sqlite:", "sqlite://") else {
            "pool_size": POOL_SIZE, "max_overflow": MAX_OVERFLOW
        }  # fmt: skip
        engine = create_engine(url, connect_args={"timeout": 30}, **pool)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before it returns, so a state transition or an access entry
            # that took effect survives a power loss too (NORMAL under WAL may lose the last
            # commits).  It costs one fsync per commit, ~0.25 ms here, one per group commit of
            # access entries (docs/audit.md).
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW, pool_recycle=3600
    )


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


MIGRATION_LOCK_TIMEOUT_S = 300.0
"""How long a process waits for another's migration: the slowest one (0004 rebuilds the audit
table on SQLite) on a large audit log, with room to spare."""


class MigrationLockTimeout(StoreError):
    """Another process held the migration lock for longer than ``MIGRATION_LOCK_TIMEOUT_S``."""


def migrate(
    engine: Engine, revision: str = "heads", *, lock_timeout_s: float = MIGRATION_LOCK_TIMEOUT_S
) -> None:
    """Bring the schema to ``revision`` (idempotent, and safe with any number of processes at once)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    wanted = _wanted(cfg, revision)
    if wanted is not None and _current(engine) == wanted:
        return  # already there: no lock, no alembic run
    with _migration_lock(engine, lock_timeout_s):
        if wanted is not None and _current(engine) == wanted:
            return  # another process migrated it while this one waited
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)


def _wanted(cfg: Config, revision: str) -> frozenset[str] | None:
    """The revisions the schema is at once ``revision`` is reached; None when that takes alembic
    itself to say (a relative or partial revision)."""
    script = ScriptDirectory.from_config(cfg)
    heads = script.get_heads()
    if revision in ("head", "heads"):
        return frozenset(heads)
    known = {r.revision for r in script.walk_revisions()}
    return frozenset([revision]) if revision in known and len(heads) == 1 else None


def _current(engine: Engine) -> frozenset[str]:
    with engine.connect() as conn:
        return frozenset(MigrationContext.configure(conn).get_current_heads())


@contextmanager
def _migration_lock(engine: Engine, timeout_s: float) -> Iterator[None]:
    dialect = engine.dialect.name
    if dialect == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            yield  # a private in-memory database: no other process can see it
            return
        with _file_lock(Path(f"{database}.migrate.lock"), timeout_s):
            yield
        return
    with engine.connect() as conn:  # a session of its own: the lock is the session's
        if dialect in ("mysql", "mariadb"):
            _mysql_lock(conn, engine.url.database or "", timeout_s)
        elif dialect == "postgresql":
            _pg_lock(conn, timeout_s)
        else:
            raise StoreError(
                f"no migration lock for {dialect!r} databases (SQLite, MariaDB, PostgreSQL have one)"
            )
        conn.commit()  # the lock is the session's: no transaction left open while others wait
        try:
            yield
        finally:
            if dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_KEY})
            else:
                conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": _mysql_name(engine.url.database or "")})
            conn.commit()


_PG_KEY = int.from_bytes(hashlib.sha256(b"shipwarden.migrate").digest()[:8], "big", signed=True)
"""The advisory lock's key (advisory locks are per database, so one key serves every store)."""


def _mysql_name(database: str) -> str:
    """``GET_LOCK`` names are server-wide (at most 64 characters): one per database."""
    return f"shipwarden.migrate.{hashlib.sha256(database.encode()).hexdigest()[:40]}"


def _mysql_lock(conn: Connection, database: str, timeout_s: float) -> None:
    got = conn.execute(text("SELECT GET_LOCK(:n, :t)"), {"n": _mysql_name(database), "t": int(timeout_s)})
    if got.scalar() != 1:
        raise MigrationLockTimeout(
            f"another process is migrating the store (GET_LOCK waited {timeout_s:.0f}s); try again"
        )


def _pg_lock(conn: Connection, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _PG_KEY}).scalar():
        if time.monotonic() > deadline:
            raise MigrationLockTimeout(
                f"another process is migrating the store (advisory lock waited {timeout_s:.0f}s); try again"
            )
        time.sleep(0.05)


@contextmanager
def _file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise MigrationLockTimeout(
                        f"another process is migrating the store ({path} locked {timeout_s:.0f}s); try again"
                    ) from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
