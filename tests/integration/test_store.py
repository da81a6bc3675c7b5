"""The store against real SQLite, MariaDB and PostgreSQL: migrations, transitions, leases, audit chain."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import inspect

from shipwarden.adapters.store.engine import make_engine, migrate
from shipwarden.adapters.store.models import Base
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.audit import ACTION_MAX, ACTOR_MAX, DEPLOYMENT_ID_MAX
from shipwarden.domain.rollout import OperatorRequest, Phase, Transition
from shipwarden.ports.store import NotFound, StoreError
from shipwarden.services.audit import AuditService

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store(database_url: str) -> Store:
    engine = make_engine(database_url)
    migrate(engine)
    migrate(engine)  # idempotent
    yield Store(engine, clock=Clock())
    engine.dispose()


def _new(store: Store, service: str = "hello", **kw: object) -> object:
    args = {
        "service": service,
        "kind": "deploy",
        "strategy": "blueGreen",
        "from_version": "v1",
        "to_version": "v2",
        "actor": "alice",
        "policy_digest": "d" * 64,
        "policy_source": "team.yaml",
        "plan": {"strategy": "blueGreen"},
    }
    args.update(kw)
    return store.create_deployment(**args)  # type: ignore[arg-type]


def test_migrated_schema_matches_models(store: Store) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    for name, table in Base.metadata.tables.items():
        cols = {c["name"] for c in inspect(store.engine).get_columns(name)}
        assert cols == {c.name for c in table.columns}, name


def test_transitions_persist_steps_and_service_state(store: Store) -> None:
    dep = _new(store)
    assert dep.phase is Phase.PENDING and dep.active
    for p in (Phase.STARTING, Phase.PREVIEW, Phase.PROMOTING, Phase.SCALE_DOWN_WAIT, Phase.SCALING_DOWN):
        dep = store.transition(dep, Transition(p, f"to {p}"), actor="controller")
    dep = store.transition(dep, Transition(Phase.SUCCEEDED, "done"), actor="controller", detail={"x": 1})
    assert not dep.active and dep.finished_at is not None
    steps = store.steps(dep.id)
    assert [s.phase for s in steps] == [
        "pending",
        "starting",
        "preview",
        "promoting",
        "scale_down_wait",
        "scaling_down",
        "succeeded",
    ]
    assert all(s.outcome == "ok" for s in steps)
    assert store.stable_version("hello") == ("v2", "v1")
    assert store.history("hello")[0].id == dep.id


def test_deployment_list_is_the_history_newest_first_read_through_an_index(store: Store) -> None:
    """``deployment_list`` (GET /deployments) is ``history``'s list view, and its newest-first
    read walks an index (migration 0017) instead of sorting the whole table (issue 9, class 12)."""
    for i in range(12):
        svc = ("web", "api", "db")[i % 3]
        dep = _new(store, service=svc, to_version=f"v{i}", commit_sha=f"{i:040x}" if i % 2 else None)
        if i != 9:  # the last of each service stays active: pending, starting, starting with a request
            dep = store.transition(dep, Transition(Phase.STARTING, "s"), actor="c")
        if i < 9:
            end = (Phase.FAILED, Phase.SUCCEEDED, Phase.ROLLED_BACK)[i % 3]
            dep = store.transition(dep, Transition(end, f"ended {i}"), actor="c")
        if i == 11:
            store.request(dep.id, OperatorRequest.PAUSE, "bob")
        store._clock.t += 1  # type: ignore[attr-defined]

    def view(d: Any) -> dict[str, Any]:
        return {
            "id": d.id, "service": d.service, "kind": d.kind, "strategy": d.strategy,
            "from_version": d.from_version, "to_version": d.to_version, "commit": d.commit_sha,
            "phase": d.phase.value, "outcome": d.outcome, "paused": d.paused, "actor": d.actor,
            "reason": d.reason, "created_at": d.created_at, "finished_at": d.finished_at,
            "operator_request": d.operator_request.value if d.operator_request else None,
        }  # fmt: skip

    for service, limit in ((None, 20), (None, 5), ("api", 20), ("web", 2), ("nope", 20)):
        got = store.deployment_list(service, limit)
        assert got == [view(d) for d in store.history(service, limit)], (service, limit)
    everything = store.deployment_list(None, 100)
    assert [d["to_version"] for d in everything] == [f"v{i}" for i in range(11, -1, -1)]
    assert {d["outcome"] for d in everything} == {"in progress", "failed", "succeeded", "rolled_back"}
    assert {d["operator_request"] for d in everything} == {None, "pause"}
    assert all(type(d["paused"]) is bool for d in everything)

    indexes = {i["name"]: i["column_names"] for i in inspect(store.engine).get_indexes("deployments")}
    assert indexes["ix_deployments_created_at"] == ["created_at"]
    assert indexes["ix_deployments_service_created_at"] == ["service", "created_at"]
    dialect = store.engine.dialect.name
    if dialect in ("sqlite", "mysql"):  # the plan itself (PostgreSQL rightly sorts a 12-row table)
        explain = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
        for sql in (
            "SELECT id FROM deployments ORDER BY created_at DESC LIMIT 20",
            "SELECT id FROM deployments WHERE service = 'web' ORDER BY created_at DESC LIMIT 20",
        ):
            with store.engine.connect() as conn:
                plan = " ".join(str(v) for row in conn.exec_driver_sql(explain + sql) for v in row)
            assert "ix_deployments_" in plan and "TEMP B-TREE" not in plan and "filesort" not in plan, plan


def test_one_active_deployment_per_service(store: Store) -> None:
    _new(store)
    with pytest.raises(StoreError, match="already has an active deployment"):
        _new(store)
    _new(store, service="other")


def test_stale_transition_is_refused(store: Store) -> None:
    dep = _new(store)
    store.transition(dep, Transition(Phase.STARTING, "a"), actor="c")
    with pytest.raises(StoreError, match="concurrently"):
        store.transition(dep, Transition(Phase.STARTING, "b"), actor="c")


def test_rollback_records_detection_and_restoration_times(store: Store) -> None:
    dep = store.transition(_new(store), Transition(Phase.STARTING, "s"), actor="c")
    store._clock.t += 5  # type: ignore[attr-defined]
    dep = store.transition(dep, Transition(Phase.ROLLING_BACK, "health failed"), actor="c")
    store._clock.t += 2  # type: ignore[attr-defined]
    dep = store.transition(dep, Transition(Phase.ROLLED_BACK, "stopped"), actor="c")
    assert dep.rolled_back_at - dep.detected_at == pytest.approx(2)
    assert [s.outcome for s in store.steps(dep.id)][-3:] == ["failed", "ok", "failed"]
    assert store.stable_version("hello") == (None, None)


def test_leases_exclude_a_second_live_driver(store: Store) -> None:
    dep = _new(store)
    assert store.acquire_lease(dep.id, "a", ttl=5)
    assert not store.acquire_lease(dep.id, "b", ttl=5)
    assert store.acquire_lease(dep.id, "a", ttl=5)  # renew
    store._clock.t += 6  # type: ignore[attr-defined]
    assert store.acquire_lease(dep.id, "b", ttl=5)  # a died: b takes over


def test_operator_requests_are_recorded_and_cleared(store: Store) -> None:
    dep = _new(store)
    dep = store.request(dep.id, OperatorRequest.ROLLBACK, "bob")
    assert dep.operator_request is OperatorRequest.ROLLBACK and dep.operator_actor == "bob"
    dep = store.transition(dep, Transition(Phase.ROLLING_BACK, "operator"), actor="bob")
    assert dep.operator_request is None
    with pytest.raises(NotFound):
        store.request("d-nope", OperatorRequest.ROLLBACK, "bob")


def test_audit_is_hash_chained(store: Store) -> None:
    dep = _new(store)
    store.transition(dep, Transition(Phase.STARTING, "s"), actor="c")
    store.audit(actor="carol", action="login", outcome="denied")
    rows = list(store.audit_entries())
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == "0" * 64
    for prev, row in zip(rows, rows[1:], strict=False):
        assert row.prev_hash == prev.hash
    for row in rows:
        assert hashlib.sha256(row.canonical.encode()).hexdigest() == row.hash
    assert [r.action for r in store.audit_entries(deployment_id=dep.id)] == [
        "deployment.deploy",
        "rollout.starting",
    ]


def test_the_audit_query_is_the_entries_with_their_hashes(store: Store) -> None:
    """``AuditService.query`` (GET /audit: one statement per filter combination, through the driver,
    without the canonical text) gives exactly what the entries themselves say, for every filter."""
    from shipwarden.services.audit import entry_json

    audit = AuditService(store, Ed25519PrivateKey.generate(), lambda: datetime(2031, 3, 4, tzinfo=UTC))
    try:
        dep = _new(store)
        store.transition(dep, Transition(Phase.STARTING, "s"), actor="c")
        for i in range(30):
            audit.access(actor=f"u{i % 3}", allowed=i % 4 != 0, method="GET", path=f"/p/{i}", ip="10.0.0.1",
                         via="token", permission="deployment.read", service="hello" if i % 2 else None,
                         reason="" if i % 4 else "é \u2028 \"q\"", status=None if i % 4 else 403)  # fmt: skip
        audit.ingest_k8s({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                          "items": [_k8s("/api/v1/pods", "alice"), _k8s("/x", "bob")]})  # fmt: skip
        everything = [entry_json(e) for e in audit.repo.entries()]
        assert len(everything) == 34
        ts = sorted({e["ts"] for e in everything})
        cases: list[dict[str, Any]] = [
            {}, {"action": "access"}, {"actor": "u1", "outcome": "denied"}, {"service": "hello"},
            {"source": "kubernetes"}, {"deployment_id": dep.id}, {"after_seq": 10, "seq_to": 20},
            {"action": "access", "after_seq": 25}, {"ts_from": ts[0], "ts_to": ts[-1]},
            {"action_prefix": "rollout."}, {"actor": "nobody"},
        ]  # fmt: skip
        for filters in cases:
            for limit in (1000, 3):
                want = [entry_json(e) for e in audit.repo.entries(limit=limit, **filters)]
                assert audit.query(limit=limit, **filters) == want, (filters, limit)
                assert want or filters == {"actor": "nobody"}
    finally:
        audit.close()


def _k8s(uri: str, user: str, **over: Any) -> dict[str, Any]:
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": f"id-{len(uri)}-{len(user)}",
        "stage": "ResponseComplete",
        "requestURI": uri,
        "verb": "get",
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.7"],
        "responseStatus": {"metadata": {}, "code": 200},
        "stageTimestamp": "2031-03-04T09:00:00.250000Z",
        **over,
    }


def test_long_kubernetes_values_are_stored_and_verify(store: Store) -> None:
    """A very long non-resource URL and a service account's long user name (up to 339
    characters) fit the bounded actor/action columns on every database, the whole values stay
    in the detail, and the stored chain verifies on both paths (batch insert and ORM insert)."""
    audit = AuditService(
        store, Ed25519PrivateKey.generate(), lambda: datetime(2031, 3, 4, 9, tzinfo=UTC), checkpoint_every=3
    )
    path = "/api/v1/namespaces/shop/proxy/" + "ü" * 3000
    user = "system:serviceaccount:" + "n" * 63 + ":" + "s" * 253
    ref = {"resource": "pods", "namespace": "shop", "name": "web-0", "apiVersion": "v1"}
    batch = {
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "items": [
            _k8s(path + "?timeout=30s", "alice@example.com"),
            _k8s("/api/v1/namespaces/shop/pods/web-0", user, objectRef=ref),
            _k8s("/healthz", "bob"),
        ],
    }
    assert audit.ingest_k8s(batch) == 3
    store.audit(actor="a" * ACTOR_MAX, action="b" * ACTION_MAX, deployment_id="d" * DEPLOYMENT_ID_MAX)
    assert audit.ingest_k8s(batch) == 3
    for fast in (False, True):
        report = audit.verify(fast=fast)
        assert report.ok and report.entries_checked == 7, report
        assert report.checkpoints_checked == 2, report  # at seq 3 and seq 6: the grid
    k8s = audit.query(source="kubernetes")
    assert len(k8s) == 6
    long_uri, long_user = k8s[0], k8s[1]
    assert len(long_uri["action"]) == ACTION_MAX and long_uri["action"].endswith("…")
    assert long_uri["detail"]["action"] == "get " + path
    assert long_uri["detail"]["requestURI"] == path + "?timeout=30s"
    assert len(long_user["actor"]) == ACTOR_MAX and long_user["actor"].endswith("…")
    assert long_user["detail"]["actor"] == user and long_user["action"] == "get pods"
    assert [e["seq"] for e in audit.query(actor=long_user["actor"])] == [2, 6]
    [mine] = audit.query(source="shipwarden")
    assert (len(mine["actor"]), len(mine["action"]), len(mine["deployment_id"])) == (256, 256, 64)


def test_widening_migration_keeps_the_chain_and_its_indexes(database_url: str) -> None:
    """0004 widens audit columns on a database holding a chain: every entry still verifies, the
    indexes survive (SQLite rebuilds the table), and the wider values are accepted after it."""
    engine = make_engine(database_url)
    try:
        migrate(engine, "0003_analysis")
        store = Store(engine, clock=Clock())
        for i in range(3):
            store.audit(actor=f"user{i}", action="login", detail={"i": i, "note": "ünïcode"})
        before = [(r.seq, r.hash, r.canonical) for r in store.audit_entries()]
        migrate(engine)
        audit = AuditService(store, Ed25519PrivateKey.generate(), lambda: datetime(2031, 3, 4, tzinfo=UTC))
        assert [(r.seq, r.hash, r.canonical) for r in store.audit_entries()] == before
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("audit_log")}
        assert {f"ix_audit_log_{c}" for c in ("ts", "actor", "action", "service", "deployment_id")} <= indexes
        store.audit(actor="x" * ACTOR_MAX, action="y" * ACTION_MAX, deployment_id="z" * DEPLOYMENT_ID_MAX)
        assert audit.checkpoint() is not None  # the key id (71 characters) fits now
        report = audit.verify()
        assert report.ok and report.entries_checked == 4 and report.checkpoints_checked == 1
    finally:
        engine.dispose()


def test_a_batch_and_its_checkpoint_are_stored_together(store: Store) -> None:
    """The checkpoint a batch makes due is written in the batch's transaction: if signing or
    storing it fails, the batch is not stored either (the apiserver's retry cannot duplicate)."""
    audit = AuditService(
        store, Ed25519PrivateKey.generate(), lambda: datetime(2031, 3, 4, 9, tzinfo=UTC), checkpoint_every=2
    )
    batch = {
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "items": [_k8s(f"/api/v1/namespaces/shop/pods/web-{i}", "alice@example.com") for i in range(3)],
    }

    assert store.seals is not None
    sealer = store.seals.sealer

    class Unavailable:
        every = sealer.every
        due = sealer.due

        def seal(self, *_: object) -> None:
            raise RuntimeError("signing key unavailable")

    store.seals.sealer = Unavailable()  # type: ignore[assignment]
    with pytest.raises(RuntimeError):
        audit.ingest_k8s(batch)
    assert store.count_audit() == 0 and audit.repo.checkpoints() == []
    store.seals.sealer = sealer
    assert audit.ingest_k8s(batch) == 3 and audit.ingest_k8s(batch) == 3
    assert [c.seq for c in audit.repo.checkpoints()] == [2, 4, 6]  # on the grid, inside the batches
    report = audit.verify()
    assert report.ok and report.entries_checked == 6 and report.checkpoints_checked == 3
