"""Hot reads run straight through the DB-API driver (issue 9, class 12).

A request to ``GET /deployments`` used to spend more CPU in SQLAlchemy's execution machinery —
checking out a ``Connection``, generating the statement's cache key, building the result's row
processors, ``Row`` objects — than the database spent answering.  :class:`DirectSelect` is a
statement built with SQLAlchemy Core (so each dialect quotes and paginates it its own way),
compiled *once* for the engine's dialect, then executed with the pooled DB-API connection's own
cursor: one checkout from the same pool (pre-ping, recycling and the reset on return as for any
other use), one ``execute``, ``fetchall``.  Rows are plain tuples as the driver returns them.

It is only for statements whose parameters and columns need no conversion by SQLAlchemy (str,
int and float in; str, int, float and None out): that is checked when compiling — a bind
processor or a post-compile parameter would make it fall back to ``Connection.execute``, which
gives the same tuples.  A boolean column comes back as the driver has it (``0``/``1`` from SQLite
and MariaDB): callers convert.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.sql import Select

__all__ = ["DirectSelect"]


class DirectSelect:
    """``stmt`` (with named ``bindparam``s) compiled for ``engine``'s dialect, run by its driver."""

    def __init__(self, engine: Engine, stmt: Select[Any]) -> None:
        self.engine = engine
        self.stmt = stmt
        compiled = stmt.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self.defaults = dict(compiled.params)  # e.g. the OFFSET 0 some dialects add to a LIMIT
        self.positional = bool(compiled.positional)
        self.order = tuple(compiled.positiontup or ())
        self.direct = not compiled._bind_processors and not compiled.literal_execute_params

    def on(self, conn: Connection, **params: Any) -> list[tuple[Any, ...]]:
        """Run on ``conn`` (inside its transaction), through its driver connection's cursor."""
        if not self.direct:
            return [tuple(r) for r in conn.execute(self.stmt, params)]
        values = {**self.defaults, **params}
        args: Any = [values[name] for name in self.order] if self.positional else values
        cur = conn.connection.cursor()
        try:
            cur.execute(self.sql, args)
            return list(cur.fetchall())
        finally:
            cur.close()

    def __call__(self, **params: Any) -> list[tuple[Any, ...]]:
        values = {**self.defaults, **params}
        if not self.direct:
            with self.engine.connect() as conn:
                return [tuple(r) for r in conn.execute(self.stmt, params)]
        args: Any = [values[name] for name in self.order] if self.positional else values
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            try:
                cur.execute(self.sql, args)
                return list(cur.fetchall())
            finally:
                cur.close()
        finally:
            raw.close()  # back to the pool, which resets (rolls back) it as after any use
