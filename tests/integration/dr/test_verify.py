"""Automated backup verification against a real primary, and the gate that reads its result."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from shipwarden.bootstrap import change_drivers
from shipwarden.domain.gates import GatePolicy, evaluate_gates
from shipwarden.services.changes import ChangeService
from shipwarden.services.dr.archiver import BinlogArchiver
from shipwarden.services.dr.backups import BackupService
from shipwarden.services.dr.verify import VerificationService
from tests.fixtures.mariadb import DrEnv

pytestmark = pytest.mark.integration

GATES = GatePolicy.model_validate(
    {"suites": {"unit": {}, "integration": {}, "security": {}},
     "checklist": {"securityScan": None, "rollbackPlan": None, "backup": {"maxAge": "24h"}}}
)  # fmt: skip


def _gate(env: DrEnv) -> object:
    svc = ChangeService(env.store, None, env.policy, state_dir=env.settings.state_dir,  # type: ignore[arg-type, attr-defined]
                        drivers=change_drivers())
    backups = svc._backup_verifications(["hello"])
    now = env.ctx.clock()  # type: ignore[attr-defined]
    return next(r for r in evaluate_gates(GATES, [], [], now, backups=backups) if r.gate == "backup")


def test_verification_restores_and_compares_and_the_gate_reads_it(dr_env: Callable[..., DrEnv]) -> None:
    env = dr_env(replicas=1)
    c = env.cluster
    c.admin_sql(c.primary.endpoint, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, v INT)")
    g = _gate(env)
    assert not g.passed and g.reason == "missing"  # type: ignore[attr-defined]
    stop = threading.Event()
    arch = BinlogArchiver(env.ctx, "hello")  # type: ignore[arg-type]
    t = threading.Thread(target=arch.run, args=(stop, 0.05), daemon=True)
    t.start()
    try:
        conn = c.app_connect(c.primary.endpoint, "app")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO t VALUES (%s, %s)", [(i, i) for i in range(200)])
            BackupService(env.ctx).snapshot("hello")  # type: ignore[arg-type]
            cur.executemany("INSERT INTO t VALUES (%s, %s)", [(i, i) for i in range(200, 300)])
        conn.close()
        c.wait_replicated()
        time.sleep(0.5)  # the archive catches up
        verifier = VerificationService(env.ctx)  # type: ignore[arg-type]
        rec = verifier.verify("hello")
    finally:
        stop.set()
        t.join(10)
    assert rec.ok and rec.tables == 1 and not rec.mismatches, rec.detail
    assert "equal to the source" in rec.detail
    assert env.ctx.catalogue.verifications("hello")[0].id == rec.id  # type: ignore[attr-defined]
    assert _gate(env).passed  # type: ignore[attr-defined]

    # too old: the gate goes stale, though the record says ok
    later = rec.finished_at + timedelta(hours=25)
    env.ctx.clock = lambda: later  # type: ignore[attr-defined]
    g = _gate(env)
    assert not g.passed and g.reason == "stale"  # type: ignore[attr-defined]
    assert verifier.due("hello")


def test_a_corrupted_snapshot_fails_verification_and_the_gate(dr_env: Callable[..., DrEnv]) -> None:
    env = dr_env(replicas=1, extra="")
    c = env.cluster
    c.admin_sql(c.primary.endpoint, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
    snap = BackupService(env.ctx).snapshot("hello")  # type: ignore[arg-type]
    path = env.ctx.blobs_for("hello").root / snap.location  # type: ignore[attr-defined]
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    rec = VerificationService(env.ctx).verify("hello")  # type: ignore[arg-type]
    assert not rec.ok and "corrupt" in rec.detail
    g = _gate(env)
    assert not g.passed and g.reason == "violated" and "corrupt" in g.detail  # type: ignore[attr-defined]
    alerts = [e.detail["key"] for e in env.store.audit_entries(service="hello", action="dr.alert")]  # type: ignore[attr-defined]
    assert "backup-verification" in alerts
