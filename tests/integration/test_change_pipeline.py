"""The change pipeline against real git (bare origin + clone) and a real store; deployments captured.

Each test drives ``ChangeService`` the way CI does: evidence uploads for a
commit, then a signed CircleCI ``workflow-completed`` webhook.  Deployments
after a merge are captured (``schedule``) rather than run — the end-to-end
test runs them through nginx.  ``Harness`` is reused by tests/e2e.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shipwarden.adapters.ci.base import hmac_sha256_hex
from shipwarden.adapters.store.engine import make_engine, migrate
from shipwarden.adapters.store.repository import Store
from shipwarden.bootstrap import change_drivers
from shipwarden.domain.policy import load_policy_text
from shipwarden.services.changes import (
    BadRequest,
    ChangeService,
    Forbidden,
    StateConflict,
    Unauthorized,
    Unprocessable,
    render_explanation,
)
from tests.fixtures.ci_contract import GitHubContractServer, PullRequest
from tests.fixtures.git_repos import GitRemote

DATA = Path(__file__).parents[1] / "data" / "evidence"
CIRCLE_SECRET = "circle-webhook-secret"
GITHUB_SECRET = "github-webhook-secret"

GATES = """\
gates:
  suites:
    unit: {minTests: 1}
    integration: {minTests: 1}
    security: {minTests: 1}
  ci: {required: [build-and-test]}
  checklist:
    securityScan: {maxFindings: {critical: 0, high: 0}}
    performance: {p95Ms: 400, p99Ms: 600, maxErrorRate: 0.01}
    backup: {maxAge: 24h}
    rollbackPlan: {requirePreviousVersion: true, requireReversibleMigrations: true}
  changeControl:
    nonStandard:
      - {name: db-migrations, paths: ["migrations/**"], approvers: [cab]}
"""


def delivery_section(repo_url: str, extra: str = "") -> str:
    return f"""\
delivery:
  repository: {{url: {json.dumps(repo_url)}, mainBranch: main}}
  services: [web]
  approvers: {{cab: [carol], qa: [quinn]}}
  webhooks: {{circleci: CIRCLE_SECRET, github: GITHUB_SECRET}}
{extra}"""


def k6_summary(p95: float, p99: float, error_rate: float = 0.001) -> bytes:
    """A k6 ``handleSummary`` document with p(99) in its trend stats."""
    return json.dumps(
        {
            "state": {"testRunDurationMs": 30000},
            "metrics": {
                "http_req_duration": {
                    "type": "trend",
                    "contains": "time",
                    "values": {"avg": p95 / 2, "p(95)": p95, "p(99)": p99, "max": p99 * 1.2},
                },
                "http_req_failed": {"type": "rate", "contains": "default", "values": {"rate": error_rate}},
                "http_reqs": {
                    "type": "counter",
                    "contains": "default",
                    "values": {"count": 3000, "rate": 100},
                },
            },
        }
    ).encode()


def circleci_body(
    sha: str,
    branch: str,
    *,
    status: str = "success",
    event_id: str | None = None,
    happened_at: datetime | None = None,
    workflow: str = "build-and-test",
) -> bytes:
    at = (happened_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    doc = {
        "id": event_id or str(uuid.uuid4()),
        "type": "workflow-completed",
        "happened_at": at,
        "webhook": {"id": "wh-1", "name": "shipwarden"},
        "project": {"id": "p-1", "name": "web", "slug": "github/acme/web"},
        "organization": {"id": "o-1", "name": "acme"},
        "workflow": {
            "id": str(uuid.uuid4()),
            "name": workflow,
            "created_at": at,
            "stopped_at": at,
            "url": "https://app.circleci.com/x",
            "status": status,
        },
        "pipeline": {
            "id": str(uuid.uuid4()),
            "number": 42,
            "created_at": at,
            "trigger": {"type": "webhook"},
            "vcs": {
                "provider_name": "github",
                "origin_repository_url": "https://github.com/acme/web",
                "target_repository_url": "https://github.com/acme/web",
                "revision": sha,
                "branch": branch,
            },
        },
    }
    return json.dumps(doc).encode()


def signed(body: bytes, secret: str = CIRCLE_SECRET) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "circleci-event-type": "workflow-completed",
        "circleci-signature": "v1=" + hmac_sha256_hex(secret, body),
    }


@dataclass
class Harness:
    root: Path
    remote: GitRemote
    store: Store
    service: ChangeService
    deploys: list[Callable[[], None]] = field(default_factory=list)

    # -- CI's side
    def push(self, branch: str, files: dict[str, str | None], message: str = "change") -> str:
        return self.remote.commit(branch, files, message)

    def upload(self, sha: str, kind: str, data: bytes, category: str | None = None, name: str = "") -> Any:
        return self.service.upload_evidence(
            commit_sha=sha,
            kind=kind,
            data=data,
            category=category,
            filename=name or f"{kind}-report",
            actor="ci-bot",
            pipeline={"provider": "circleci", "pipeline_number": 42},
        )

    def green_evidence(
        self,
        sha: str,
        *,
        skip: str | None = None,
        unit: str = "pytest-junit-green.xml",
        sarif: str = "sarif-clean.sarif",
        k6: bytes | None = None,
    ) -> None:
        for cat in ("unit", "integration", "security"):
            if cat != skip:
                src = unit if cat == "unit" else "pytest-junit-green.xml"
                self.upload(sha, "junit", (DATA / src).read_bytes(), cat, f"{cat}-{src}")
        if skip != "sarif":
            self.upload(sha, "sarif", (DATA / sarif).read_bytes(), name=sarif)
        if skip != "k6":
            self.upload(sha, "k6", k6 if k6 is not None else k6_summary(180, 420), name="k6-summary.json")
        backup = {"backupId": "snap-1", "verifiedAt": datetime.now(UTC).isoformat(), "ok": True}
        self.upload(sha, "backup", json.dumps(backup).encode(), name="restore-test.json")

    def webhook(self, sha: str, branch: str, **kw: Any) -> Any:
        body = circleci_body(sha, branch, **kw)
        return self.service.receive_webhook("circleci", signed(body), body)

    def change(self, sha: str) -> Any:
        found = self.service.repo.find_change(head_sha=sha)
        assert found is not None
        return found


SECRETS = {"CIRCLE_SECRET": CIRCLE_SECRET, "GITHUB_SECRET": GITHUB_SECRET, "GH_TOKEN": "ghp_test"}


def build_harness(
    root: Path,
    policy_text: Callable[[str], str],
    *,
    rollout: Any = None,
    schedule: Callable[[Callable[[], None]], None] | None = None,
    secrets: dict[str, str] | None = None,
    store: Store | None = None,
) -> Harness:
    remote = GitRemote(root)
    policy_path = root / "policy.yaml"
    policy_path.write_text(policy_text(remote.url))
    loaded = load_policy_text(policy_path.read_text(), str(policy_path))
    if store is None:
        engine = make_engine(f"sqlite:///{root / 'sw.db'}")
        migrate(engine)
        store = Store(engine)
    deploys: list[Callable[[], None]] = []
    table = {**SECRETS, **(secrets or {})}
    service = ChangeService(
        store,
        rollout,
        loaded,
        state_dir=root / "state",
        drivers=change_drivers(),
        secrets=table.get,
        schedule=schedule or deploys.append,
    )
    return Harness(root, remote, store, service, deploys)


LOCAL_SERVICE = """\
apiVersion: shipwarden/v1
team: test
services:
  - name: web
    run: {command: ["{python}", "start.py"], workdir: "releases/{version}"}
    routing: {port: 1, previewPort: 2}
    strategy: {blueGreen: {}}
"""


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    harness = build_harness(tmp_path, lambda url: LOCAL_SERVICE + GATES + delivery_section(url))
    # a stable version exists (the rollback plan needs one): record it as the store would after a deploy
    with harness.store._sessions.begin() as s:
        from shipwarden.adapters.store.models import ServiceStateRow

        s.add(ServiceStateRow(service="web", stable_version="v0", previous_version=None, updated_at=0.0))
    return harness


def gate(change: Any, name: str) -> dict[str, Any]:
    return next(g for g in change.gates["results"] if g["gate"] == name)


# --- the happy path ----------------------------------------------------------------------------------------


def test_green_standard_change_is_approved_and_merged_exactly(h: Harness) -> None:
    sha = h.push("feature/ok", {"src/app.py": "print('v3')\n"}, "Faster checkout")
    h.green_evidence(sha)
    assert h.service.repo.find_change(head_sha=sha) is None
    res = h.webhook(sha, "feature/ok")
    assert res.status == 202 and res.change_status == "merged", res
    change = h.change(sha)
    assert change.merge_sha == h.remote.head("main")
    assert sha in h.remote.parents(change.merge_sha)  # exactly the evidenced commit was merged
    assert all(g["passed"] for g in change.gates["results"])
    assert change.classification["standard"] is True
    assert len(h.deploys) == 1  # a deployment of the merge commit was scheduled (D9)
    text = render_explanation(h.service.explain(change.id))
    assert "status: merged" in text
    assert "PASS suite:unit: 4 tests, 0 failures" in text
    assert "PASS ci:build-and-test: CI stage 'build-and-test' succeeded (circleci)" in text
    assert "PASS branch-head" in text
    assert f"merged: {change.merge_sha} (git)" in text
    actions = [r.action for r in h.store.audit_entries()]
    assert {
        "evidence.stored",
        "webhook.accepted",
        "change.created",
        "change.approved",
        "change.merged",
    } <= set(actions)


# --- each failure stops at its gate: nothing merged --------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "gate_name", "expect"),
    [
        ("failing-unit-test", "suite:unit", "1 failures (max 0)"),
        ("critical-finding", "security-scan", "critical"),
        ("missing-suite", "suite:integration", "missing: no integration test report"),
        ("p99-over", "performance", "p99"),
        ("ci-failed", "ci:build-and-test", "ended 'failed'"),
    ],
)
def test_failing_evidence_blocks_with_reason(h: Harness, case: str, gate_name: str, expect: str) -> None:
    main_before = h.remote.head("main")
    sha = h.push(f"feature/{case}", {"src/app.py": f"print({case!r})\n"})
    kw: dict[str, Any] = {}
    if case == "failing-unit-test":
        kw["unit"] = "pytest-junit.xml"
    elif case == "critical-finding":
        kw["sarif"] = "codeql.sarif"
    elif case == "missing-suite":
        kw["skip"] = "integration"
    elif case == "p99-over":
        kw["k6"] = k6_summary(180, 950)
    h.green_evidence(sha, **kw)
    res = h.webhook(sha, f"feature/{case}", status="failed" if case == "ci-failed" else "success")
    change = h.change(sha)
    assert change.status in ("blocked", "pending"), change
    g = gate(change, gate_name)
    assert not g["passed"] and expect in g["detail"], g
    assert gate_name in change.reason and expect in change.reason
    assert res.change_status == change.status
    assert h.remote.head("main") == main_before and change.merge_sha is None
    assert h.deploys == []
    text = render_explanation(h.service.explain(change.id))
    assert f"FAIL {gate_name}: " in text and "merged: no" in text and "deployment: none" in text


def test_missing_suite_is_pending_then_passes_when_uploaded(h: Harness) -> None:
    sha = h.push("feature/late", {"src/app.py": "print('late')\n"})
    h.green_evidence(sha, skip="integration")
    h.webhook(sha, "feature/late")
    assert h.change(sha).status == "pending"
    _, change = h.upload(sha, "junit", (DATA / "pytest-junit-green.xml").read_bytes(), "integration")
    assert change.status == "merged"


def test_branch_moved_after_ci_is_not_merged(h: Harness) -> None:
    sha = h.push("feature/moving", {"src/app.py": "print('a')\n"})
    h.green_evidence(sha)
    newer = h.push("feature/moving", {"src/app.py": "print('b, unreviewed')\n"})
    main_before = h.remote.head("main")
    h.webhook(sha, "feature/moving")
    change = h.change(sha)
    assert change.status == "blocked"
    g = gate(change, "branch-head")
    assert not g["passed"] and f"now at {newer[:12]}" in g["detail"] and sha[:12] in g["detail"]
    assert h.remote.head("main") == main_before and h.deploys == []


def test_branch_moving_between_approval_and_merge_is_refused_by_the_merge(h: Harness) -> None:
    """The race: gates passed on the old head, the branch moves, the guarded merge refuses."""
    sha = h.push("feature/race", {"src/app.py": "print('a')\n"})
    h.green_evidence(sha)
    h.webhook(sha, "feature/race", status="failed")  # creates the change, blocked on CI
    h.push("feature/race", {"src/app.py": "print('b')\n"})
    change = h.change(sha)
    h.service.repo.update_change(change.id, actor="t", action="test.force", status="approved")
    main_before = h.remote.head("main")
    merged = h.service.merge(change.id)
    assert merged.status == "blocked" and "moved after CI" in merged.reason
    assert h.remote.head("main") == main_before


# --- webhook authentication and replay ---------------------------------------------------------------------


def test_forged_signature_is_401_and_changes_nothing(h: Harness) -> None:
    sha = h.push("feature/forged", {"src/app.py": "print('x')\n"})
    h.green_evidence(sha)
    body = circleci_body(sha, "feature/forged")
    before = h.store.count_audit()
    with pytest.raises(Unauthorized, match="signature does not match"):
        h.service.receive_webhook("circleci", signed(body, "wrong-secret"), body)
    assert h.service.repo.find_change(head_sha=sha) is None
    assert not [e for e in h.service.repo.evidence_for(sha) if e.kind == "ci"]
    rows = list(h.store.audit_entries(since_seq=before))
    assert [(r.action, r.outcome) for r in rows] == [("webhook.rejected", "denied")]
    assert rows[0].detail["status"] == 401
    with pytest.raises(Unauthorized, match="missing circleci-signature"):
        h.service.receive_webhook("circleci", {"content-type": "application/json"}, body)


def test_unset_secret_refuses_every_delivery(tmp_path: Path) -> None:
    harness = build_harness(
        tmp_path, lambda url: LOCAL_SERVICE + GATES + delivery_section(url), secrets={"CIRCLE_SECRET": ""}
    )
    body = circleci_body("a" * 40, "feature/x")
    with pytest.raises(Unauthorized, match="CIRCLE_SECRET"):
        harness.service.receive_webhook("circleci", signed(body), body)


def test_replayed_event_is_refused_and_changes_nothing(h: Harness) -> None:
    sha = h.push("feature/replay", {"src/app.py": "print('r')\n"})
    h.green_evidence(sha, skip="integration")
    body = circleci_body(sha, "feature/replay", event_id="evt-1")
    assert h.service.receive_webhook("circleci", signed(body), body).status == 202
    ci_before = [e.id for e in h.service.repo.evidence_for(sha) if e.kind == "ci"]
    with pytest.raises(StateConflict, match="duplicate"):
        h.service.receive_webhook("circleci", signed(body), body)
    assert [e.id for e in h.service.repo.evidence_for(sha) if e.kind == "ci"] == ci_before
    old = circleci_body(
        sha, "feature/replay", event_id="evt-2", happened_at=datetime.now(UTC) - timedelta(hours=3)
    )
    with pytest.raises(StateConflict, match="too-old"):
        h.service.receive_webhook("circleci", signed(old), old)
    denied = [r for r in h.store.audit_entries() if r.action == "webhook.rejected"]
    assert [r.detail["status"] for r in denied] == [409, 409]


def test_malformed_payload_is_400(h: Harness) -> None:
    body = b'{"id": "x", "type": "workflow-completed", "happened_at": "2026-01-01T00:00:00Z"}'
    with pytest.raises(BadRequest, match=r"\$\.pipeline"):
        h.service.receive_webhook("circleci", signed(body), body)


# --- evidence upload ---------------------------------------------------------------------------------------


def test_malformed_evidence_is_422_with_location_and_stores_nothing(h: Harness) -> None:
    sha = h.push("feature/bad", {"src/app.py": "print('bad')\n"})
    for name, kind, cat in (
        ("junit-malformed.xml", "junit", "unit"),
        ("sarif-bad-severity.sarif", "sarif", None),
        ("k6-bad-p95.json", "k6", None),
    ):
        with pytest.raises(Unprocessable) as exc:
            h.upload(sha, kind, (DATA / name).read_bytes(), cat, name)
        where = exc.value.extra["where"]
        assert where["source"] == name and (where["line"] or where["path"]), where
    with pytest.raises(BadRequest, match="full 40-hex"):
        h.upload("abc", "junit", b"<testsuite/>", "unit")
    with pytest.raises(BadRequest, match="suite category"):
        h.upload(sha, "junit", (DATA / "pytest-junit-green.xml").read_bytes(), None)
    with pytest.raises(BadRequest, match="unknown evidence kind"):
        h.upload(sha, "pdf", b"%PDF")
    assert h.service.repo.evidence_for(sha) == []
    rejected = [r for r in h.store.audit_entries() if r.action == "evidence.rejected"]
    assert len(rejected) == 6 and all(r.outcome == "denied" for r in rejected)


# --- non-standard changes and roles ------------------------------------------------------------------------


def test_non_standard_change_waits_for_the_named_role(h: Harness) -> None:
    sha = h.push("feature/migrate", {"migrations/0007_add_refunds.sql": "ALTER TABLE x ADD y INT;\n"})
    h.green_evidence(sha)
    main_before = h.remote.head("main")
    h.webhook(sha, "feature/migrate")
    change = h.change(sha)
    assert change.status == "waiting_approval"
    assert "approval still needed from: cab" in change.reason
    assert change.classification["required_roles"] == ["cab"]
    text = render_explanation(h.service.explain(change.id))
    assert "classification: non-standard — db-migrations (touches migrations/0007_add_refunds.sql" in text
    assert "FAIL change-control: non-standard" in text

    with pytest.raises(Forbidden, match="bob does not hold the role 'cab'"):
        h.service.approve(change.id, user="bob", role="cab")
    with pytest.raises(BadRequest, match="roles it needs: cab"):
        h.service.approve(change.id, user="quinn", role="qa")
    with pytest.raises(Forbidden, match="author"):
        h.service.approve(change.id, user="dana", role="cab", extra_roles=frozenset({"cab"}))
    assert h.change(sha).status == "waiting_approval" and h.remote.head("main") == main_before
    denied = [r for r in h.store.audit_entries() if r.action == "change.approve" and r.outcome == "denied"]
    assert len(denied) == 3

    approved = h.service.approve(change.id, user="carol", role="cab", comment="migration reviewed")
    assert approved.status == "merged", approved.reason
    assert sha in h.remote.parents(approved.merge_sha)
    text = render_explanation(h.service.explain(change.id))
    assert "approve by carol as cab" in text and "PASS change-control: non-standard" in text
    with pytest.raises(StateConflict, match="merged"):
        h.service.approve(change.id, user="carol", role="cab")


def test_rbac_role_of_the_same_name_counts(h: Harness) -> None:
    sha = h.push("feature/migrate2", {"migrations/0008.sql": "SELECT 1;\n"})
    h.green_evidence(sha)
    h.webhook(sha, "feature/migrate2")
    change = h.change(sha)
    assert (
        h.service.approve(change.id, user="erin", role="cab", extra_roles=frozenset({"cab"})).status
        == "merged"
    )


def test_rejection_is_final(h: Harness) -> None:
    sha = h.push("feature/nope", {"migrations/0009.sql": "DROP TABLE x;\n"})
    h.green_evidence(sha)
    h.webhook(sha, "feature/nope")
    change = h.service.reject(h.change(sha).id, user="carol", role="cab", comment="drops a table")
    assert change.status == "rejected" and "drops a table" in change.reason
    with pytest.raises(StateConflict):
        h.service.approve(change.id, user="carol", role="cab")
    assert h.remote.head("main") != sha and sha not in h.remote.parents(h.remote.head("main") or "")


def test_irreversible_migration_fails_rollback_plan(h: Harness) -> None:
    sha = h.push("feature/irrev", {"src/app.py": "print('i')\n"})
    h.green_evidence(sha)
    plan = {"migrations": [{"name": "0010_drop_column", "reversible": False}]}
    h.upload(sha, "rollback-plan", json.dumps(plan).encode(), name="rollback.json")
    h.webhook(sha, "feature/irrev")
    g = gate(h.change(sha), "rollback-plan")
    assert not g["passed"] and "0010_drop_column" in g["detail"]


# --- GitHub merge through the REST endpoint (contract server) ----------------------------------------------


def test_github_merge_sends_the_evidenced_sha(tmp_path: Path, github_api: GitHubContractServer) -> None:
    def policy(url: str) -> str:
        text = LOCAL_SERVICE + GATES + delivery_section(url)
        return text.replace(
            "mainBranch: main}",
            "mainBranch: main, github: {owner: acme, repo: web, tokenSecret: GH_TOKEN, "
            f"apiUrl: '{github_api.base}'}}}}",
        )

    harness = build_harness(tmp_path, policy)
    with harness.store._sessions.begin() as s:
        from shipwarden.adapters.store.models import ServiceStateRow

        s.add(ServiceStateRow(service="web", stable_version="v0", previous_version=None, updated_at=0.0))
    sha = harness.push("feature/pr", {"src/app.py": "print('pr')\n"})
    github_api.pulls[("acme", "web", 7)] = PullRequest(head_sha=sha)
    harness.green_evidence(sha)
    change = harness.service.repo.create_change(
        repo="acme/web", branch="feature/pr", head_sha=sha, actor="t", pr_number=7
    )
    harness.webhook(sha, "feature/pr")
    change = harness.service.repo.get_change(change.id)
    assert change.status == "merged", change.reason
    assert github_api.pulls[("acme", "web", 7)].merge_body["sha"] == sha
    assert change.facts["merge"]["via"] == "github PR #7"

    # head moved on GitHub after CI → 409 → blocked, nothing merged
    sha2 = harness.push("feature/pr2", {"src/app.py": "print('pr2')\n"})
    github_api.pulls[("acme", "web", 8)] = PullRequest(head_sha="f" * 40)
    harness.green_evidence(sha2)
    c2 = harness.service.repo.create_change(
        repo="acme/web", branch="feature/pr2", head_sha=sha2, actor="t", pr_number=8
    )
    harness.webhook(sha2, "feature/pr2")
    c2 = harness.service.repo.get_change(c2.id)
    assert c2.status == "blocked" and "moved after CI" in c2.reason
    assert not github_api.pulls[("acme", "web", 8)].merged
