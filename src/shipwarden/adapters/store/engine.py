"""Engines and migrations.  Built by ``bootstrap`` — never at import time."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event

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
            cur.execute("PRAGMA synchronous=NORMAL")
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


def migrate(engine: Engine, revision: str = "heads") -> None:
    """Bring the schema to ``revision`` (idempotent)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
