"""Many processes appending to the audit chain at the same moment (a hundred ``shipwarden
deploy`` started together each audit their access check first): every append must land — the
losers of each round retry — and the chain stay whole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shipwarden.adapters.store.engine import make_engine, migrate
from shipwarden.adapters.store.repository import Store

pytestmark = pytest.mark.integration

PROCESSES, APPENDS = 24, 25

APPEND = """
import sys
from shipwarden.adapters.store.engine import make_engine
from shipwarden.adapters.store.repository import Store
store = Store(make_engine(sys.argv[1]))
sys.stdin.readline()  # the test releases every process at once
for i in range(int(sys.argv[2])):
    store.audit(actor=f"p{sys.argv[3]}", action="access", detail={"i": i})
store.engine.dispose()
"""


def test_processes_appending_at_once_all_land_in_one_chain(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sw.db'}"
    engine = make_engine(url)
    migrate(engine)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPEND, url, str(APPENDS), str(i)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for i in range(PROCESSES)
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [p.communicate(timeout=300) for p in procs]
    failed = [(p.returncode, e[-600:]) for p, (_, e) in zip(procs, results, strict=True) if p.returncode]
    assert not failed, failed
    store = Store(engine)
    try:
        entries = list(store.audit_entries())
        assert len(entries) == PROCESSES * APPENDS
        assert [e.seq for e in entries] == list(range(1, PROCESSES * APPENDS + 1))
        assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))
    finally:
        engine.dispose()
