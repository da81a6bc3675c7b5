"""Backups against a real primary: sealed, checksummed, catalogued; corruption and loss are alerts;
retention and KEK rotation (E6, E9)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from shipwarden.security.envelope import Envelope, generate_kek
from shipwarden.services.dr.backups import CONFIG_SERVICE, BackupService
from tests.fixtures.mariadb import DrEnv

pytestmark = pytest.mark.integration


def _seed(env: DrEnv, rows: int = 100) -> None:
    p = env.cluster.primary.endpoint
    env.cluster.admin_sql(p, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(64))")
    conn = env.cluster.app_connect(p, "app")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO t VALUES (%s, %s)", [(i, f"secret-value-{i}") for i in range(rows)])
    conn.close()


def test_snapshot_and_dump_are_sealed_and_catalogued(dr_env: Callable[..., DrEnv]) -> None:
    env = dr_env(replicas=1)
    _seed(env)
    svc = BackupService(env.ctx)  # type: ignore[arg-type]
    snap = svc.snapshot("hello")
    dump = svc.dump("hello")
    assert snap.kind == "snapshot" and snap.status == "ok" and snap.gtid.startswith("0-1-")
    assert snap.binlog_file and snap.binlog_pos and snap.size > 0 and len(snap.sha256) == 64
    assert dump.gtid == env.cluster.driver.status(env.cluster.primary.endpoint).gtid_binlog_pos.__str__()
    blobs = env.ctx.blobs_for("hello")  # type: ignore[attr-defined]
    with blobs.reader(dump.location) as f:
        stored = f.read()
    assert b"secret-value-42" not in stored and stored.startswith(b"SWB1")
    text = svc.open(dump).read()
    assert b"secret-value-42" in text and b"CREATE TABLE `t`" in text
    assert svc.open(snap).read(8)  # the xbstream comes back
    catalogued = env.ctx.catalogue.backups("hello")  # type: ignore[attr-defined]
    assert [r.id for r in catalogued] == [snap.id, dump.id]
    actions = [e.action for e in env.store.audit_entries(service="hello")]  # type: ignore[attr-defined]
    assert "dr.backup.snapshot" in actions and "dr.backup.logical" in actions
    assert svc.check("hello") == []


def test_a_corrupted_or_missing_backup_is_detected_and_alerted(dr_env: Callable[..., DrEnv]) -> None:
    env = dr_env(replicas=1)
    _seed(env, 10)
    svc = BackupService(env.ctx)  # type: ignore[arg-type]
    first, second = svc.dump("hello"), svc.dump("hello")
    blobs = env.ctx.blobs_for("hello")  # type: ignore[attr-defined]
    path = blobs.root / first.location
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit, same size
    path.write_bytes(bytes(data))
    (blobs.root / second.location).unlink()
    alerts = svc.check("hello")
    keys = {a.key for a in alerts}
    assert f"corrupt:{first.id}" in keys and f"missing:{second.id}" in keys
    by_id = {r.id: r for r in env.ctx.catalogue.backups("hello")}  # type: ignore[attr-defined]
    assert by_id[first.id].status == "corrupt" and by_id[second.id].status == "missing"
    audited = list(env.store.audit_entries(service="hello", action="dr.alert"))  # type: ignore[attr-defined]
    assert {e.detail["key"] for e in audited} >= {f"corrupt:{first.id}", f"missing:{second.id}"}
    with pytest.raises(Exception, match="corrupt"):
        svc.open(by_id[first.id])


def test_tampering_is_caught_by_decryption_too(dr_env: Callable[..., DrEnv]) -> None:
    env = dr_env(replicas=1)
    _seed(env, 10)
    svc = BackupService(env.ctx)  # type: ignore[arg-type]
    rec = svc.dump("hello")
    path = env.ctx.blobs_for("hello").root / rec.location  # type: ignore[attr-defined]
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x80
    path.write_bytes(bytes(data))
    with pytest.raises(Exception, match="authenticate"):
        svc.open(rec).read()


def test_retention_keeps_the_newest_and_deletes_files(dr_env: Callable[..., DrEnv]) -> None:
    extra = ""
    env = dr_env(replicas=1, extra=extra)
    _seed(env, 5)
    svc = BackupService(env.ctx)  # type: ignore[arg-type]
    dumps = [svc.dump("hello") for _ in range(9)]  # retention: logical 7
    deleted = svc.enforce_retention("hello")
    assert {r.id for r in deleted} == {dumps[0].id, dumps[1].id}
    blobs = env.ctx.blobs_for("hello")  # type: ignore[attr-defined]
    assert not blobs.exists(dumps[0].location) and blobs.exists(dumps[-1].location)
    assert {r.status for r in env.ctx.catalogue.backups("hello") if r.id == dumps[0].id} == {"deleted"}  # type: ignore[attr-defined]
    assert svc.due("hello") == ["snapshot"]  # no snapshot yet; the newest dump is fresh
    assert svc.due("hello", dumps[-1].created_at + timedelta(hours=25)) == ["snapshot", "logical"]
    env.ctx.clock = lambda: dumps[-1].created_at + timedelta(days=30)  # type: ignore[attr-defined]
    deleted = svc.enforce_retention("hello")
    assert {r.id for r in deleted} == {d.id for d in dumps[2:-1]}  # too old, except the newest


def test_kek_rotation_rewraps_keys_not_payloads(dr_env: Callable[..., DrEnv]) -> None:
    env = dr_env(replicas=1)
    _seed(env, 5)
    svc = BackupService(env.ctx)  # type: ignore[arg-type]
    rec = svc.dump("hello")
    blobs = env.ctx.blobs_for("hello")  # type: ignore[attr-defined]
    payload = (blobs.root / rec.location).read_bytes()
    old = env.ctx.envelope.keyring  # type: ignore[attr-defined]
    env.ctx.envelope = Envelope(old.with_primary("kek-2", generate_kek()))  # type: ignore[attr-defined]
    assert svc.rewrap(["hello"]) == 1
    assert (blobs.root / rec.location).read_bytes() == payload
    (after,) = env.ctx.catalogue.backups("hello")  # type: ignore[attr-defined]
    assert after.key_id == "kek-2"
    env.ctx.envelope = Envelope(env.ctx.envelope.keyring.without(old.primary))  # type: ignore[attr-defined]
    assert b"secret-value-1" in svc.open(after).read()
    assert [a.key for a in svc.check("hello")] == ["snapshot-missing"]  # intact; only no snapshot yet


def test_configuration_backup(dr_env: Callable[..., DrEnv], tmp_path: Path) -> None:
    from shipwarden.adapters.storage.config_export import config_items

    env = dr_env(replicas=1)
    env.store.audit(actor="t", action="x", service="hello")  # type: ignore[attr-defined]
    repo = tmp_path / "repo"
    for cmd in (
        ["init", "-q", "-b", "main", str(repo)],
        ["-C", str(repo), "commit", "-q", "--allow-empty", "-m", "x"],
    ):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@x", *cmd], check=True)
    items = config_items(env.store, env.settings.policy, [str(repo)])  # type: ignore[arg-type, attr-defined]
    svc = BackupService(env.ctx)  # type: ignore[arg-type]
    rec = svc.config(items)
    assert rec.service == CONFIG_SERVICE
    assert rec.detail["items"] == [
        "policy/policy.yaml", "secrets.json", "audit/log.jsonl", "audit/checkpoints.json",
        "repositories/repo.bundle",
    ]  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(svc.open(rec).read())) as tar:
        assert tar.extractfile("policy/policy.yaml").read() == env.settings.policy.read_bytes()  # type: ignore[union-attr, attr-defined]
        assert b'"action":"x"' in tar.extractfile("audit/log.jsonl").read()  # type: ignore[union-attr]
        bundle = tar.extractfile("repositories/repo.bundle").read()  # type: ignore[union-attr]
    assert bundle.startswith(b"# v2 git bundle")
