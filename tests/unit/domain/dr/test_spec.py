"""The policy's ``databases`` section: valid declarations load, mistakes name file, line and field."""

from __future__ import annotations

import pytest

from shipwarden.domain.dr.topology import Endpoint
from shipwarden.domain.policy import PolicyError, load_policy_text

BASE = """\
apiVersion: shipwarden/v1
team: demo
services:
  - name: hello
    run: {command: ["app"]}
    routing: {port: 18080, previewPort: 18081}
    strategy: {blueGreen: {}}
"""

DB = """\
databases:
  - service: hello
    schemas: [app]
    primary: 127.0.0.1:3307
    replicas: [127.0.0.1:3308, "127.0.0.1:3309"]
    credentials: {user: shipwarden, passwordSecret: DB_ADMIN_PASSWORD}
    replication: {mode: semiSync, user: repl, passwordSecret: DB_REPL_PASSWORD}
    listener: {port: 3310}
    backup:
      snapshot: {every: 1h}
      retention: {snapshots: 3, maxAge: 48h}
    objectives: {rpo: 0s, rto: 10s}
"""


def test_databases_section_loads() -> None:
    policy = load_policy_text(BASE + DB).policy
    (db,) = policy.databases
    assert db.service == "hello" and db.engine == "mariadb"
    assert db.primary == Endpoint("127.0.0.1", 3307) and db.replicas[1] == Endpoint("127.0.0.1", 3309)
    assert db.replication.mode == "semiSync" and db.replication.semi_sync_timeout == 10.0
    assert db.backup.snapshot is not None and db.backup.snapshot.every == 3600
    assert db.backup.retention.snapshots == 3 and db.objectives.rto == 10.0
    assert db.failover.automatic and db.failover.confirmations == 2


def test_the_guard_fences_before_the_semi_sync_fall_back() -> None:
    (db,) = load_policy_text(BASE + DB).policy.databases
    assert db.replication.self_fence_after is None and db.replication.guard_after == 2.5
    short = DB.replace("user: repl,", "user: repl, semiSyncTimeout: 2s,")
    assert load_policy_text(BASE + short).policy.databases[0].replication.guard_after == 0.5
    explicit = DB.replace("user: repl,", "user: repl, selfFenceAfter: 500ms,")
    assert load_policy_text(BASE + explicit).policy.databases[0].replication.guard_after == 0.5


def test_no_databases_is_fine() -> None:
    assert load_policy_text(BASE).policy.databases == []


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (("service: hello", "service: nope"), "", "not declared under 'services'"),
        (("listener: {port: 3310}", "listener: {port: 18081}"), "", "also used by 'hello'"),
        (("primary: 127.0.0.1:3307", "primary: 127.0.0.1:3308"), "databases[0]", "distinct"),
        (("primary: 127.0.0.1:3307", "primary: localhost"), "databases[0].primary", "host:port"),
        (("mode: semiSync", "mode: async"), "databases[0]", "rpo 0 needs replication.mode semiSync"),
        (("schemas: [app]", "schemas: [mysql]"), "databases[0].schemas", "system schema"),
        (
            ("user: repl,", "user: repl, semiSyncTimeout: 10s, selfFenceAfter: 10s,"),
            "databases[0].replication",
            "selfFenceAfter must be shorter than semiSyncTimeout",
        ),
        (
            ("passwordSecret: DB_ADMIN_PASSWORD", "password: hunter2"),
            "databases[0].credentials.password",
            "Extra inputs",
        ),
    ],
)
def test_mistakes(change: tuple[str, str], field: str, message: str) -> None:
    with pytest.raises(PolicyError) as exc:
        load_policy_text(BASE + DB.replace(*change), "team.yaml")
    issues = exc.value.issues
    assert any(i.field == field and message in i.message for i in issues), issues
    assert all(i.line for i in issues)
