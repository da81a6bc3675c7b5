"""The stored audit log: tampering made directly in the SQLite file is found by `audit verify`, and where.

A base database (deployment steps, access entries, a Kubernetes batch, a signed checkpoint at the
head) is built once; each hypothesis example copies the file, applies one edit, deletion, insertion
or reorder with plain ``sqlite3`` — as an attacker with the file would — and verifies.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from shipwarden.bootstrap import build_service
from shipwarden.domain.audit import canonical_json, entry_hash
from shipwarden.domain.rollout import Phase, Transition
from shipwarden.entrypoints.cli import app as cli
from shipwarden.settings import Settings
from tests.integration.http.test_k8s_ingest import event_list

pytestmark = pytest.mark.integration
COLUMNS = [
    "ts",
    "source",
    "actor",
    "action",
    "service",
    "deployment_id",
    "outcome",
    "detail",
    "prev_hash",
    "hash",
    "canonical",
]


def _populate(state: Path) -> int:
    svc = build_service(Settings(state_dir=state))
    dep = svc.store.create_deployment(
        service="web",
        kind="deploy",
        strategy="blueGreen",
        from_version="v1",
        to_version="v2",
        actor="alice",
        policy_digest="d" * 64,
        policy_source="p.yaml",
        plan={},
    )
    for p in (Phase.STARTING, Phase.PREVIEW, Phase.PROMOTING):
        dep = svc.store.transition(dep, Transition(p, f"to {p.value}"), actor="controller")
    svc.audit.access(
        actor="bob",
        allowed=False,
        method="POST",
        path="/users",
        ip="10.0.0.1",
        via="session",
        permission="user.manage",
        reason="no",
    )
    svc.audit.ingest_k8s(event_list(6))
    svc.store.audit(actor="carol", action="login", outcome="ok", detail={"note": "ünïcode"})
    svc.audit.checkpoint()
    n = svc.store.count_audit()
    svc.store.engine.dispose()
    return n


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    state = tmp_path_factory.mktemp("auditbase") / "state"
    return state, _populate(state)


def _verify(state: Path) -> object:
    svc = build_service(Settings(state_dir=state))
    try:
        return svc.audit.verify()
    finally:
        svc.store.engine.dispose()


def _row(db: sqlite3.Connection, seq: int) -> dict[str, object]:
    cur = db.execute(f"SELECT seq, {', '.join(COLUMNS)} FROM audit_log WHERE seq = ?", (seq,))
    return dict(zip(["seq", *COLUMNS], cur.fetchone(), strict=True))


def _tamper(db: sqlite3.Connection, n: int, kind: str, k: int, j: int, col: str) -> set[int]:
    """Apply one change; return the seqs at which verification may legitimately report it."""
    if kind == "edit":
        row = _row(db, k)
        value = {
            "detail": '{"forged":true}',
            "canonical": str(row["canonical"]).replace('"seq"', '"seq" ', 1),
            "hash": "f" * 64,
            "prev_hash": "e" * 64,
        }.get(col, "forged")
        db.execute(f"UPDATE audit_log SET {col} = ? WHERE seq = ?", (value, k))
        return {k}
    if kind == "rehash":  # rewrite an entry consistently and recompute its own hash
        row = _row(db, k)
        doc = json.loads(str(row["canonical"]))
        doc["actor"] = "mallory"
        canonical = canonical_json(doc)
        db.execute(
            "UPDATE audit_log SET actor = 'mallory', canonical = ?, hash = ? WHERE seq = ?",
            (canonical, entry_hash(canonical), k),
        )
        return {k + 1} if k < n else {k}  # the next link breaks; the head contradicts the checkpoint
    if kind == "delete":
        db.execute("DELETE FROM audit_log WHERE seq = ?", (k,))
        return {k}
    if kind == "insert":
        row = _row(db, k)
        db.execute("UPDATE audit_log SET seq = seq + 1000000 WHERE seq >= ?", (k,))
        db.execute("UPDATE audit_log SET seq = seq - 1000000 + 1 WHERE seq >= 1000000")
        db.execute(
            f"INSERT INTO audit_log (seq, {', '.join(COLUMNS)}) VALUES (?, {', '.join('?' * len(COLUMNS))})",
            (k, *[("mallory" if c == "actor" else row[c]) for c in COLUMNS]),
        )
        return {k}
    # reorder: swap the contents of two entries
    a, b = _row(db, k), _row(db, j)
    for seq, src in ((k, b), (j, a)):
        db.execute(
            f"UPDATE audit_log SET {', '.join(c + ' = ?' for c in COLUMNS)} WHERE seq = ?",
            (*[src[c] for c in COLUMNS], seq),
        )
    return {k}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["edit", "rehash", "delete", "insert", "reorder"]),
    pos=st.integers(min_value=0, max_value=10_000),
    other=st.integers(min_value=1, max_value=10_000),
    col=st.sampled_from(COLUMNS),
)
def test_verify_finds_every_tampering(
    base: tuple[Path, int],
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
    pos: int,
    other: int,
    col: str,
) -> None:
    state, n = base
    copy = tmp_path_factory.mktemp("tamper") / "state"
    shutil.copytree(state, copy)
    k = pos % n + 1
    j = (k - 1 + other % (n - 1) + 1) % n + 1  # a different entry
    with sqlite3.connect(copy / "shipwarden.db") as db:
        where = _tamper(db, n, kind, min(k, j) if kind == "reorder" else k, max(k, j), col)
    report = _verify(copy)
    assert not report.ok, (kind, k, col)
    assert report.seq in where, (kind, k, col, report)
    shutil.rmtree(copy.parent)


def test_untouched_log_verifies_and_cli_reports_where(
    base: tuple[Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, n = base
    copy = tmp_path / "state"
    shutil.copytree(state, copy)
    monkeypatch.setenv("SHIPWARDEN_STATE_DIR", str(copy))
    monkeypatch.setenv("SHIPWARDEN_POLICY", str(tmp_path / "none.yaml"))
    monkeypatch.setenv("SHIPWARDEN_ACTOR", "auditor")
    runner = CliRunner()
    r = runner.invoke(cli, ["audit", "verify"])
    assert r.exit_code == 0, r.output
    assert f"{n + 1} entries" in r.output and "1 signed checkpoints" in r.output  # + its own access entry
    out = tmp_path / "log.jsonl"
    r = runner.invoke(cli, ["audit", "export", "--out", str(out), "--source", "kubernetes"])
    assert r.exit_code == 0, r.output
    *lines, manifest = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 6 and all(entry_hash(x["canonical"]) == x["hash"] for x in lines)
    assert manifest["manifest"]["scope"] == "selection" and manifest["manifest"]["entries"] == 6
    pub = copy / "keys" / "signing.pub"
    r = runner.invoke(cli, ["audit", "verify-export", str(out), "--public-key", str(pub)])
    assert r.exit_code == 0 and "valid: selection of 6 entries" in r.output, r.output
    with sqlite3.connect(copy / "shipwarden.db") as db:
        db.execute("DELETE FROM audit_log WHERE seq = 3")
    r = runner.invoke(cli, ["audit", "verify"])
    assert r.exit_code == 1
    assert "TAMPERED at seq 3: seq_gap" in r.output
    # truncating the tail is caught by the signed checkpoint
    trunc = tmp_path / "trunc"
    shutil.copytree(state, trunc)
    with sqlite3.connect(trunc / "shipwarden.db") as db:
        db.execute("DELETE FROM audit_log WHERE seq >= ?", (n - 1,))
    report = _verify(trunc)
    assert not report.ok and report.problem.value == "truncated" and report.seq == n - 1
