"""Run the shipwarden CLI (``serve``, ``deploy`` …) counting the SQL statements it sends.

``python bench/_count_writes.py ARGS…`` is ``shipwarden ARGS…`` with a listener on every
SQLAlchemy engine; the counts (``writes``: INSERT/UPDATE/DELETE/REPLACE, ``statements``: all)
are appended as one JSON line to ``$BENCH_COUNTS`` when the process exits, and on SIGUSR1 (so a
benchmark can read a long-running ``serve``'s counts before and after a batch).
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import signal
import sys
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

COUNTS = {"pid": os.getpid(), "writes": 0, "statements": 0}
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLAC")


@event.listens_for(Engine, "before_cursor_execute")
def _count(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
    COUNTS["statements"] += 1
    if statement.lstrip()[:6].upper() in WRITES:
        COUNTS["writes"] += 1


def _dump(*_: Any) -> None:
    path = os.environ.get("BENCH_COUNTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(COUNTS) + "\n")


atexit.register(_dump)
signal.signal(signal.SIGUSR1, _dump)
sys.argv = ["shipwarden", *sys.argv[1:]]
runpy.run_module("shipwarden.entrypoints.cli", run_name="__main__")
