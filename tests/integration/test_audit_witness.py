"""Deleting checkpoints no longer defeats `audit verify` (issue 9, class 10).

A real state directory (SQLite file, the witness file ``state/audit.head``, the signing key) is
populated through the services with a checkpoint every 5 entries; each attack is then made with
plain ``sqlite3`` on a copy — as someone with write access to the database but not to the witness
file nor the key would — and ``shipwarden audit verify`` must say where.  The export bundle is
checked offline and refuses any edit.
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

from shipwarden.adapters.witness import HeadFile
from shipwarden.bootstrap import build_service
from shipwarden.domain.audit import canonical_json, entry_hash
from shipwarden.domain.rollout import Phase, Transition
from shipwarden.entrypoints.cli import app as cli
from shipwarden.security.audit_export import ExportError, verify_export
from shipwarden.security.dossier import verify_dossier
from shipwarden.settings import Settings
from tests.integration.http.test_k8s_ingest import event_list

pytestmark = pytest.mark.integration
EVERY = 5


def _settings(state: Path) -> Settings:
    return Settings(state_dir=state, audit_checkpoint_every=EVERY, policy=state.parent / "none.yaml")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """A state dir: a deployment's transitions, access entries, a Kubernetes batch, a dossier."""
    state = tmp_path_factory.mktemp("witness") / "state"
    svc = build_service(_settings(state))
    dep = svc.store.create_deployment(
        service="web", kind="deploy", strategy="blueGreen", from_version="v1", to_version="v2",
        actor="alice", policy_digest="d" * 64, policy_source="p.yaml", plan={},
    )  # fmt: skip
    for p in (Phase.STARTING, Phase.PREVIEW, Phase.PROMOTING, Phase.SUCCEEDED):
        dep = svc.store.transition(dep, Transition(p, p.value), actor="controller")
    for i in range(9):
        svc.audit.access(actor=f"user{i}", allowed=i % 2 == 0, method="GET", path="/deployments",
                         ip="127.0.0.1", via="token", permission="deployment.read")  # fmt: skip
    svc.audit.ingest_k8s(event_list(7))
    (state / "d.dossier.json").write_bytes(svc.audit.dossier(dep.id))
    svc.store.audit(actor="carol", action="login")
    n = svc.store.count_audit()
    svc.audit.close()
    svc.store.engine.dispose()
    return state, n, dep.id


def _copy(base: tuple[Path, int, str], tmp_path: Path) -> Path:
    copy = tmp_path / "state"
    shutil.copytree(base[0], copy)
    return copy


def _cli(state: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("SHIPWARDEN_STATE_DIR", str(state))
    monkeypatch.setenv("SHIPWARDEN_POLICY", str(state.parent / "none.yaml"))
    monkeypatch.setenv("SHIPWARDEN_ACTOR", "auditor")
    monkeypatch.setenv("SHIPWARDEN_AUDIT_CHECKPOINT_EVERY", str(EVERY))
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


def _db(state: Path) -> sqlite3.Connection:
    return sqlite3.connect(state / "shipwarden.db")


def _rewrite_and_rehash(db: sqlite3.Connection, k: int) -> None:
    """Rewrite entry ``k`` (actor → mallory) and re-hash and re-link every entry after it."""
    rows = db.execute("SELECT seq, canonical FROM audit_log WHERE seq >= ? ORDER BY seq", (k - 1,)).fetchall()
    prev = db.execute("SELECT hash FROM audit_log WHERE seq = ?", (k - 1,)).fetchone()[0]
    for seq, canonical in rows[1:]:
        doc = json.loads(canonical)
        if seq == k:
            doc["actor"] = "mallory"
        doc["prev_hash"] = prev
        text = canonical_json(doc)
        prev = entry_hash(text)
        db.execute(
            "UPDATE audit_log SET actor = ?, prev_hash = ?, canonical = ?, hash = ? WHERE seq = ?",
            (doc["actor"], doc["prev_hash"], text, prev, seq),
        )


def test_every_append_path_seals_the_grid_and_the_witness_holds_every_checkpoint(
    base: tuple[Path, int, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _copy(base, tmp_path)
    with _db(state) as db:
        seqs = [r[0] for r in db.execute("SELECT seq FROM audit_checkpoints ORDER BY seq")]
        prevs = [r[0] for r in db.execute("SELECT prev FROM audit_checkpoints ORDER BY seq")]
    n = base[1]
    grid = list(range(EVERY, n + 1, EVERY))
    assert set(grid) <= set(seqs) and len(set(prevs)) == len(prevs) and prevs[0] == "0" * 64
    assert [c.seq for c in HeadFile(state / "audit.head").read()] == seqs  # witnessed, in order
    code, out = _cli(state, monkeypatch, "audit", "verify")
    assert code == 0 and f"{len(seqs)} witnessed heads" in out, out


def test_attack_truncate_the_tail_and_delete_its_checkpoints(
    base: tuple[Path, int, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's first attack: it verified "ok"; the witness file now says what was cut."""
    state = _copy(base, tmp_path)
    with _db(state) as db:
        db.execute("DELETE FROM audit_log WHERE seq > 12")
        db.execute("DELETE FROM audit_checkpoints WHERE seq > 12")
    # (each command's own access entry is appended first: seq 13 here)
    code, out = _cli(state, monkeypatch, "audit", "verify")
    assert code == 1 and "TAMPERED at seq 14: truncated" in out and "audit.head" in out, out
    # Without the witness this is indistinguishable from a quiet log (docs/audit.md says so) …
    code, out = _cli(state, monkeypatch, "audit", "verify", "--no-witness")
    assert code == 0, out
    # … unless a head was kept elsewhere: a dossier made before the cut.
    pem = (state / "keys" / "signing.pub").read_bytes()
    head = verify_dossier((state / "d.dossier.json").read_bytes(), pem)
    assert head.head is not None and head.head.seq > 15
    code, out = _cli(state, monkeypatch, "audit", "verify", "--no-witness", "--expect-head",
                     f"{head.head.seq}:{head.head.hash}")  # fmt: skip
    assert code == 1 and "truncated" in out and "--expect-head" in out, out


def test_attack_rewrite_a_middle_entry_rehash_all_later_delete_all_checkpoints(
    base: tuple[Path, int, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _copy(base, tmp_path)
    with _db(state) as db:
        _rewrite_and_rehash(db, 7)
        db.execute("DELETE FROM audit_checkpoints")
    # found from the database alone: the grid wants a checkpoint at seq 5 … 10
    code, out = _cli(state, monkeypatch, "audit", "verify", "--no-witness")
    assert code == 1 and "TAMPERED at seq 5: checkpoint_missing" in out, out
    code, out = _cli(state, monkeypatch, "audit", "verify")
    assert code == 1 and "TAMPERED at seq 5: checkpoint_missing" in out, out


def test_attack_delete_everything(
    base: tuple[Path, int, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _copy(base, tmp_path)
    with _db(state) as db:
        db.execute("DELETE FROM audit_log")
        db.execute("DELETE FROM audit_checkpoints")
    code, out = _cli(state, monkeypatch, "audit", "verify")  # its own access entry is seq 1 now
    assert code == 1 and "TAMPERED at seq 2: truncated" in out and "audit.head" in out, out


def test_deleting_one_middle_checkpoint_breaks_the_checkpoint_chain(
    base: tuple[Path, int, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _copy(base, tmp_path)
    with _db(state) as db:
        db.execute("DELETE FROM audit_checkpoints WHERE seq = 10")
    code, out = _cli(state, monkeypatch, "audit", "verify", "--no-witness")
    assert code == 1 and "TAMPERED at seq 15: checkpoint_chain" in out, out


def test_expect_head_must_be_well_formed(
    base: tuple[Path, int, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _copy(base, tmp_path)
    code, out = _cli(state, monkeypatch, "audit", "verify", "--expect-head", "12:nothex")
    assert code == 2 and "SEQ:HASH" in out


def test_cli_export_then_verify_offline(
    base: tuple[Path, int, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _copy(base, tmp_path)
    out_file, pub = tmp_path / "audit.jsonl", tmp_path / "signing.pub"
    code, out = _cli(state, monkeypatch, "audit", "export", "--out", str(out_file))
    assert code == 0 and "entries + signed manifest" in out, out
    shutil.copy(state / "keys" / "signing.pub", pub)
    shutil.rmtree(state)  # offline: no database, no state dir
    args = ["audit", "verify-export", str(out_file), "--public-key", str(pub)]
    code, out = _cli(tmp_path / "gone", monkeypatch, *args)
    head = json.loads(out_file.read_text().splitlines()[-1])["manifest"]["head"]
    assert head["seq"] == base[1] + 1  # + the export's own access entry: the head signed for the export
    assert code == 0 and f"head {head['seq']}:{head['hash']}" in out, out
    assert not (tmp_path / "gone").exists()


@pytest.fixture(scope="module")
def bundle(base: tuple[Path, int, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    state = tmp_path_factory.mktemp("bundle") / "state"
    shutil.copytree(base[0], state)
    svc = build_service(_settings(state))
    data = "".join(svc.audit.export()).encode()
    svc.audit.close()
    svc.store.engine.dispose()
    return data, (state / "keys" / "signing.pub").read_bytes()


def test_bundle_holds_the_whole_chain_and_verifies(
    bundle: tuple[bytes, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, pem = bundle
    r = verify_export(data, pem)
    assert r.scope == "chain" and r.entries == r.head.seq and r.checkpoints >= r.head.seq // EVERY
    (tmp_path / "b.jsonl").write_bytes(data)
    (tmp_path / "k.pub").write_bytes(pem)
    args = ["--public-key", str(tmp_path / "k.pub"), "--expect-head", f"{r.head.seq - 3}:{'0' * 64}"]
    code, out = _cli(tmp_path / "nowhere", monkeypatch, "audit", "verify-export", str(tmp_path / "b.jsonl"),
                     *args)  # fmt: skip
    assert code == 1 and "witness_mismatch" in out, out  # a head the chain does not have
    assert not (tmp_path / "nowhere").exists()  # it never opened a store


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(min_value=0), delta=st.integers(min_value=1, max_value=255))
def test_any_edit_to_the_bundle_fails_verification(bundle: tuple[bytes, bytes], pos: int, delta: int) -> None:
    data, pem = bundle
    i = pos % len(data)
    edited = data[:i] + bytes([(data[i] + delta) % 256]) + data[i + 1 :]
    with pytest.raises(ExportError):
        verify_export(edited, pem)


def test_removed_reordered_or_added_lines_fail(bundle: tuple[bytes, bytes]) -> None:
    data, pem = bundle
    lines = data.splitlines(keepends=True)
    for bad in (
        b"".join(lines[1:]),  # first entry removed
        b"".join([lines[1], lines[0], *lines[2:]]),  # two entries swapped
        b"".join(lines[:-1]),  # manifest removed
        b"".join([*lines[:-1], lines[3], lines[-1]]),  # an entry duplicated
        data + lines[0],  # junk after the manifest
        data[:-1],  # the final newline
    ):
        with pytest.raises(ExportError):
            verify_export(bad, pem)
