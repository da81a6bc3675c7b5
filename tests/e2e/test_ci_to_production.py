"""CI to production, end to end: signed CircleCI webhook → gates → approval → merge → deployment via nginx.

One environment for the module (real git origin, real nginx, real sample-service
processes, the HTTP API for webhooks, an Apprise ``json://`` receiver for
stakeholder notifications).  Version v0 (main's head) is deployed first, so
production has something that must keep serving while bad changes are refused.
Tests run in file order: the refused cases, then the non-standard change, then
the standard happy path, then (D9) pushes to main by someone else: one with green evidence
(deployed), one whose evidence is red (not deployed, alerted, a policy violation).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from shipwarden.adapters.net import free_port
from shipwarden.bootstrap import Services, build_service, change_drivers, load_policy
from shipwarden.domain.delivery import version_for
from shipwarden.entrypoints.http import create_app
from shipwarden.services.changes import ChangeService, Forbidden, render_explanation
from shipwarden.settings import Settings
from tests.fixtures.apprise_receiver import Receiver
from tests.fixtures.deploy_env import GOOD
from tests.fixtures.git_repos import GitRemote
from tests.integration.test_change_pipeline import (
    CIRCLE_SECRET,
    DATA,
    GATES,
    GITHUB_SECRET,
    circleci_body,
    k6_summary,
    signed,
)

# The tests share one module-scoped environment and later ones read what earlier ones shipped:
# one xdist worker runs them all, in file order.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ci_to_production")]

POLICY = """\
apiVersion: shipwarden/v1
team: test
services:
  - name: web
    run:
      command: ["{{python}}", "start.py"]
      workdir: "releases/{{version}}"
      instances: 2
      stopTimeout: 5s
    health: {{path: /healthz, interval: 200ms, timeout: 1s, healthyThreshold: 2, unhealthyThreshold: 2,
              startTimeout: 10s}}
    routing: {{port: {port}, previewPort: {preview}}}
    strategy:
      blueGreen: {{preview: {{path: /, requests: 10}}, scaleDownDelay: 1s, verifyRequests: 20}}
{gates}delivery:
  repository: {{url: "{repo}", mainBranch: main}}
  services: [web]
  approvers: {{cab: [carol]}}
  webhooks: {{circleci: CIRCLE_SECRET, github: GITHUB_SECRET}}
  notify: {{urls: [RELEASE_CHANNEL], required: true}}
  postDeployment:
    smoke: [{{path: /healthz}}, {{path: /, contains: '"version"'}}]
    performance: {{path: /, requests: 30, maxRegression: 2.0, slackMs: 50}}
    security: {{requireHeaders: [x-version]}}
    releaseNotes: {{path: "docs/releases/{{service}}.md"}}
"""


@dataclass
class Env:
    root: Path
    remote: GitRemote
    services: Services
    svc: ChangeService
    http: TestClient
    port: int
    receiver: Receiver
    v0: str

    def production_version(self) -> str:
        r = httpx.get(f"http://127.0.0.1:{self.port}/", timeout=5)
        assert r.status_code == 200
        return str(r.json()["version"])

    def deployments(self) -> int:
        return len(self.services.store.history("web", limit=1000))

    def evidence(
        self,
        sha: str,
        *,
        unit: str = "pytest-junit-green.xml",
        sarif: str = "sarif-clean.sarif",
        k6: bytes | None = None,
        skip: str | None = None,
    ) -> None:
        for cat in ("unit", "integration", "security"):
            if cat != skip:
                src = unit if cat == "unit" else "pytest-junit-green.xml"
                self.svc.upload_evidence(
                    commit_sha=sha,
                    kind="junit",
                    category=cat,
                    data=(DATA / src).read_bytes(),
                    filename=src,
                    actor="ci-bot",
                    pipeline={"provider": "circleci", "pipeline_number": 42},
                )
        self.svc.upload_evidence(
            commit_sha=sha, kind="sarif", data=(DATA / sarif).read_bytes(), filename=sarif, actor="ci-bot"
        )
        self.svc.upload_evidence(
            commit_sha=sha,
            kind="k6",
            data=k6 or k6_summary(180, 420),
            filename="k6-summary.json",
            actor="ci-bot",
        )
        from datetime import UTC, datetime

        backup = {"backupId": "nightly-1", "verifiedAt": datetime.now(UTC).isoformat(), "ok": True}
        self.svc.upload_evidence(
            commit_sha=sha,
            kind="backup",
            data=json.dumps(backup).encode(),
            filename="restore-test.json",
            actor="backup-bot",
        )

    def webhook(
        self,
        sha: str,
        branch: str,
        *,
        secret: str = CIRCLE_SECRET,
        event_id: str | None = None,
        status: str = "success",
    ) -> Any:
        body = circleci_body(sha, branch, event_id=event_id, status=status)
        return self.http.post("/webhooks/circleci", content=body, headers=signed(body, secret))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("cd")
    remote = GitRemote(root)
    remote.commit("main", {"start.py": GOOD}, "Add start script")
    port, preview = free_port(), free_port()
    policy_path = root / "policy.yaml"
    policy_path.write_text(POLICY.format(port=port, preview=preview, repo=remote.url, gates=GATES))
    loaded = load_policy(policy_path)
    settings = Settings(state_dir=root / "state", policy=policy_path, actor="tester", tick_s=0.1)
    services = build_service(settings, loaded)
    receiver = Receiver()
    secrets = {
        "CIRCLE_SECRET": CIRCLE_SECRET,
        "GITHUB_SECRET": GITHUB_SECRET,
        "RELEASE_CHANNEL": f"json://notifier:topsecret@127.0.0.1:{receiver.port}/notify",
    }
    assert services.rollout is not None
    svc = ChangeService(
        services.store, services.rollout, loaded, state_dir=settings.state_dir, secrets=secrets.get,
        drivers=change_drivers(),
    )
    app = create_app(services)
    app.state.changes = svc  # deployments run inline, so a test sees their outcome when the call returns
    # production starts at v0 = main's head, deployed from its release directory
    sha0 = remote.head("main")
    assert sha0 is not None
    v0 = version_for("{short}", sha0)
    svc.export_release(sha0, v0)
    first = services.rollout.run(services.rollout.start("web", v0, actor="bootstrap", commit_sha=sha0).id)
    assert first.phase.value == "succeeded", first.reason
    e = Env(root, remote, services, svc, TestClient(app, client=("127.0.0.1", 40000)), port, receiver, v0)
    try:
        yield e
    finally:
        rollout = services.rollout
        rollout.platform.stop(rollout.platform.instances("web"), 3)
        rollout.router.stop()
        receiver.close()
        assert not rollout.platform.instances("web"), "instances left running"
        pid = rollout.router.pid()
        if pid is not None:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                pass
            else:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError("nginx still running after stop")


# --- refused: each stops at its gate, nothing merged, nothing deployed -------------------------------------


@pytest.mark.parametrize(
    ("case", "gate", "expect"),
    [
        ("failing-unit-test", "suite:unit", "1 failures (max 0)"),
        ("critical-finding", "security-scan", "1 critical"),
        ("missing-suite", "suite:integration", "missing: no integration test report"),
        ("p99-over", "performance", "p99"),
        ("branch-moved", "branch-head", "moved after CI"),
    ],
)
def test_bad_change_stops_at_its_gate(env: Env, case: str, gate: str, expect: str) -> None:
    main_before, deps_before = env.remote.head("main"), env.deployments()
    branch = f"feature/{case}"
    sha = env.remote.commit(branch, {"src/app.py": f"print({case!r})\n"}, f"Try {case}")
    kw: dict[str, Any] = {
        "failing-unit-test": {"unit": "pytest-junit.xml"},
        "critical-finding": {"sarif": "codeql.sarif"},
        "missing-suite": {"skip": "integration"},
        "p99-over": {"k6": k6_summary(180, 950)},
    }.get(case, {})
    env.evidence(sha, **kw)
    if case == "branch-moved":
        env.remote.commit(branch, {"src/app.py": "print('pushed after CI')\n"}, "Unreviewed push")
    r = env.webhook(sha, branch)
    assert r.status_code == 202, r.text
    change = env.svc.repo.find_change(head_sha=sha)
    assert change is not None and change.status in ("blocked", "pending")
    assert gate in change.reason and expect in change.reason, change.reason
    assert r.json()["change_status"] == change.status
    assert env.remote.head("main") == main_before, "nothing may be merged"
    assert env.deployments() == deps_before, "nothing may be deployed"
    assert env.production_version() == env.v0
    out = render_explanation(env.svc.explain(change.id))
    assert f"FAIL {gate}: " in out and expect in out
    assert "merged: no" in out and "deployment: none" in out


def test_forged_signature_is_401_and_changes_nothing(env: Env) -> None:
    sha = env.remote.commit("feature/forged", {"src/app.py": "print('forged')\n"}, "Forged")
    env.evidence(sha)
    main_before, deps_before = env.remote.head("main"), env.deployments()
    r = env.webhook(sha, "feature/forged", secret="not-the-secret")
    assert r.status_code == 401 and "signature" in r.json()["detail"]
    assert env.svc.repo.find_change(head_sha=sha) is None
    assert env.remote.head("main") == main_before and env.deployments() == deps_before


def test_replayed_event_is_409_and_changes_nothing(env: Env) -> None:
    sha = env.remote.commit("feature/replayed", {"src/app.py": "print('replay')\n"}, "Replay")
    env.evidence(sha, skip="integration")  # stays pending, so a replay could not sneak it through either
    r = env.webhook(sha, "feature/replayed", event_id="evt-replay-1")
    assert r.status_code == 202
    change_before = env.svc.repo.find_change(head_sha=sha)
    deps_before = env.deployments()
    again = env.webhook(sha, "feature/replayed", event_id="evt-replay-1")
    assert again.status_code == 409 and again.json()["detail"]["reason"] == "duplicate"
    assert env.svc.repo.find_change(head_sha=sha) == change_before
    assert env.deployments() == deps_before and env.production_version() == env.v0


# --- a non-standard change waits for its role --------------------------------------------------------------


def test_non_standard_change_waits_then_deploys_when_the_role_approves(env: Env) -> None:
    branch = "feature/add-refunds-table"
    sha = env.remote.commit(
        branch, {"migrations/0007_refunds.sql": "CREATE TABLE refunds (id INT);\n"}, "Add refunds table"
    )
    env.evidence(sha)
    env.svc.upload_evidence(
        commit_sha=sha,
        kind="rollback-plan",
        actor="ci-bot",
        filename="rollback.json",
        data=json.dumps({"migrations": [{"name": "0007_refunds", "reversible": True}]}).encode(),
    )
    main_before = env.remote.head("main")
    r = env.webhook(sha, branch)
    assert r.status_code == 202 and r.json()["change_status"] == "waiting_approval"
    change = env.svc.repo.find_change(head_sha=sha)
    assert change is not None and "approval still needed from: cab" in change.reason
    with pytest.raises(Forbidden, match="bob does not hold the role 'cab'"):
        env.svc.approve(change.id, user="bob", role="cab")
    assert env.remote.head("main") == main_before and env.production_version() == env.v0

    done = env.svc.approve(change.id, user="carol", role="cab", comment="schema change reviewed")
    assert done.status == "deployed", done.reason
    assert done.merge_sha is not None and sha in env.remote.parents(done.merge_sha)
    assert env.production_version() == version_for("{short}", done.merge_sha)
    out = render_explanation(env.svc.explain(done.deployment_id or ""))
    assert "approve by carol as cab" in out and "PASS change-control: non-standard (db-migrations" in out
    assert "post_deployment: ok" in out


# --- the standard happy path -------------------------------------------------------------------------------


def test_green_change_goes_from_webhook_to_production(env: Env) -> None:
    before = len(env.receiver.messages)
    branch = "feature/faster-checkout"
    sha = env.remote.commit(branch, {"src/app.py": "print('fast')\n"}, "Make checkout faster")
    env.evidence(sha)
    r = env.webhook(sha, branch)
    assert r.status_code == 202, r.text
    assert r.json()["change_status"] == "deployed", r.json()
    change = env.svc.repo.find_change(head_sha=sha)
    assert change is not None and change.merge_sha and change.deployment_id
    assert sha in env.remote.parents(change.merge_sha), "exactly the evidenced commit was merged"
    version = version_for("{short}", change.merge_sha)
    assert env.production_version() == version

    rec = env.http.get(f"/deliveries/{change.deployment_id}")
    assert rec.status_code == 401  # the API needs a token; the record itself comes from the service
    record = env.svc.delivery_record(change.deployment_id)
    assert record["commit"] == change.merge_sha and record["merge_commit"] == change.merge_sha
    assert record["outcome"] == "succeeded" and record["to_version"] == version
    kinds = {(e["kind"], e["category"]) for e in record["evidence"]}
    assert {
        ("junit", "unit"),
        ("junit", "integration"),
        ("junit", "security"),
        ("sarif", "security-scan"),
        ("k6", "performance"),
        ("ci", "ci"),
        ("backup", "backup"),
    } <= kinds
    assert all(g["passed"] for g in record["gates"])
    assert record["change"]["classification"]["standard"] is True
    assert record["pipeline"] and record["pipeline"][0]["provider"] == "circleci"
    phases = record["phases"]
    assert set(phases) == {"preparation", "execution", "post_deployment"}
    assert all(p["ok"] for p in phases.values()), phases
    prep = {c["check"]: c for c in phases["preparation"]["checks"]}
    assert prep["approval"]["detail"].startswith("standard change, approved automatically")
    assert prep["notification"]["ok"] and "RELEASE_CHANNEL" in prep["notification"]["detail"]
    assert {"resources:disk", "resources:memory", "release", "backup", "performance-baseline"} <= set(prep)
    post = {c["check"]: c for c in phases["post_deployment"]["checks"]}
    assert {"smoke:/healthz", "smoke:/", "performance", "security", "release-notes"} <= set(post)
    assert "not exposed over HTTPS" in post["security"]["detail"]
    notes = phases["post_deployment"]["release_notes"]
    assert "Make checkout faster" in notes["markdown"]
    assert "Add refunds table" not in notes["markdown"]  # only commits since the previous deployment
    doc = (env.root / "docs" / "releases" / "web.md").read_text()
    assert doc.startswith("# Release notes — web") and f"## web {version}" in doc
    if "Add refunds table" in doc:  # an earlier release section exists: newest comes first
        assert doc.index(f"## web {version}") < doc.index("Add refunds table")
    # stakeholders heard about the start and the end; the URL's secrets never reached the record
    titles = [m["title"] for m in env.receiver.messages[before:]]
    assert any("starting" in t for t in titles) and any("succeeded" in t for t in titles)
    assert "topsecret" not in json.dumps(record) and "notifier:****@" in json.dumps(record)
    actions = [a["action"] for a in record["audit"]]
    assert actions.index("delivery.preparation") < actions.index("delivery.execution")
    assert actions.index("delivery.execution") < actions.index("delivery.post_deployment")

    out = render_explanation(env.svc.explain(change.id))
    for line in (
        "status: deployed",
        "PASS suite:unit: 4 tests, 0 failures",
        "PASS security-scan",
        "PASS performance",
        f"merged: {change.merge_sha} (git)",
        "preparation: ok",
        "execution: ok",
        "post_deployment: ok",
        "PASS release-notes",
    ):
        assert line in out, (line, out)


def test_cli_explain_and_refused_approval(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from shipwarden.entrypoints.cli import app

    monkeypatch.setenv("SHIPWARDEN_STATE_DIR", str(env.services.settings.state_dir))
    monkeypatch.setenv("SHIPWARDEN_POLICY", str(env.root / "policy.yaml"))
    deployed = env.svc.repo.list_changes(status="deployed")[0]
    blocked = env.svc.repo.list_changes(status="blocked")[0]
    runner = CliRunner()
    out = runner.invoke(app, ["explain", deployed.deployment_id or ""])
    assert out.exit_code == 0, out.output
    assert f"change {deployed.id}" in out.output and "status: deployed" in out.output
    assert "post_deployment: ok" in out.output
    out = runner.invoke(app, ["explain", blocked.id])
    assert out.exit_code == 0 and "FAIL " in out.output and "merged: no" in out.output
    monkeypatch.setenv("SHIPWARDEN_ACTOR", "mallory")
    out = runner.invoke(app, ["approve", blocked.id, "--role", "cab"])
    assert out.exit_code == 2 and "role 'cab' is not asked to approve" in out.output, out.output
    out = runner.invoke(app, ["explain", "c-nope"])
    assert out.exit_code == 2 and "no change or deployment 'c-nope'" in out.output


# --- any push to main (D9): someone else pushes, the evidence decides --------------------------------


def test_a_push_to_main_by_someone_else_is_deployed_once_its_evidence_is_green(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from shipwarden.entrypoints.cli import app
    from tests.integration.test_mainline import Outsider, github_headers, push_body

    deps_before, serving = env.deployments(), env.production_version()
    before = env.remote.head("main")
    assert before is not None
    oscar = Outsider(env.remote.url, env.root / "oscar-green")
    oscar.sync()
    sha = oscar.commit({"src/app.py": "print('pushed by oscar')\n"}, "Small fix straight to main")
    oscar.push_main()
    body = push_body(before, sha)
    r = env.http.post("/webhooks/github", content=body, headers=github_headers(body))
    assert r.status_code == 202, r.text
    assert f"{sha[:12]} awaiting (awaiting-evidence)" in r.json()["detail"]
    # not deployed yet: it waits for its evidence, and explain says which
    assert env.deployments() == deps_before and env.production_version() == serving
    monkeypatch.setenv("SHIPWARDEN_STATE_DIR", str(env.services.settings.state_dir))
    monkeypatch.setenv("SHIPWARDEN_POLICY", str(env.root / "policy.yaml"))
    out = CliRunner().invoke(app, ["explain", sha[:10]])
    assert out.exit_code == 0, out.output
    assert f"waiting for evidence on {sha[:12]}" in out.output, out.output
    # CI runs on main: its reports, then its signed result — through the same gates and phases
    env.evidence(sha)
    assert env.deployments() == deps_before  # CI's own result (the ci gate) is still missing
    r = env.webhook(sha, "main")
    assert r.status_code == 202 and r.json()["change_status"] == "deployed", r.json()
    change = env.svc.repo.find_change(head_sha=sha)
    assert change is not None and change.branch == "main" and change.merge_sha == sha
    assert env.remote.head("main") == sha, "nothing is merged again"
    assert env.production_version() == version_for("{short}", sha)
    record = env.svc.delivery_record(change.deployment_id or "")
    assert record["outcome"] == "succeeded" and set(record["phases"]) == {
        "preparation",
        "execution",
        "post_deployment",
    }
    text = render_explanation(env.svc.explain(sha))
    assert "DEPLOYED through the gates [approved-change]" in text and "then its evidence arrived" in text
    assert not [
        e for e in env.services.store.audit_entries(action="policy.violation") if e.detail["commit"] == sha
    ]


def test_an_ungated_push_to_main_is_not_deployed(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from shipwarden.entrypoints.cli import app
    from tests.integration.test_mainline import Outsider, github_headers, push_body

    before_msgs, deps_before = len(env.receiver.messages), env.deployments()
    serving = env.production_version()
    before = env.remote.head("main")
    assert before is not None
    oscar = Outsider(env.remote.url, env.root / "oscar-red")
    oscar.sync()
    sha = oscar.commit({"start.py": "raise SystemExit('not reviewed')\n"}, "Hotfix straight to main")
    oscar.push_main()
    body = push_body(before, sha)
    r = env.http.post("/webhooks/github", content=body, headers=github_headers(body))
    assert r.status_code == 202, r.text
    assert f"{sha[:12]} awaiting (awaiting-evidence)" in r.json()["detail"]
    # CI on main goes red (its signed result says the workflow failed): a gate fails, never deployed
    r = env.webhook(sha, "main", status="failed")
    assert r.status_code == 202 and r.json()["change_status"] == "blocked", r.json()
    # not deployed: production still serves what it served, no deployment was started
    assert env.deployments() == deps_before and env.production_version() == serving
    # alerted (the stakeholder channel, as no ops target is configured) and recorded as a violation
    titles = [m["title"] for m in env.receiver.messages[before_msgs:]]
    assert any(f"main: {sha[:12]} NOT deployed (gates-failed)" in t for t in titles), titles
    (v,) = [
        e for e in env.services.store.audit_entries(action="policy.violation") if e.detail["commit"] == sha
    ]
    assert v.outcome == "denied" and v.detail["author"] == "Oscar Outsider <oscar@example.com>"
    monkeypatch.setenv("SHIPWARDEN_STATE_DIR", str(env.services.settings.state_dir))
    monkeypatch.setenv("SHIPWARDEN_POLICY", str(env.root / "policy.yaml"))
    out = CliRunner().invoke(app, ["explain", sha[:10]])
    assert out.exit_code == 0, out.output
    assert "NOT DEPLOYED — policy violation [gates-failed]" in out.output
    assert "reached main before its gates passed, and then they failed" in out.output
    assert "build-and-test" in out.output and "RELEASE_CHANNEL (ok)" in out.output
    # a redelivery of the same push is refused and judges nothing twice
    again = env.http.post("/webhooks/github", content=body, headers=github_headers(body))
    assert again.status_code == 409
    # the poll (the webhook's fallback) finds it judged already
    out = CliRunner().invoke(app, ["main", "watch"])
    assert out.exit_code == 0 and "nothing new on main" in out.output, out.output


def test_a_gated_merge_after_the_violation_is_reviewed_is_deployed(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from shipwarden.entrypoints.cli import app

    monkeypatch.setenv("SHIPWARDEN_STATE_DIR", str(env.services.settings.state_dir))
    monkeypatch.setenv("SHIPWARDEN_POLICY", str(env.root / "policy.yaml"))
    (bad,) = [e.detail["commit"] for e in env.services.store.audit_entries(action="policy.violation")]
    # the next gated merge would ship the unreviewed commit too: it is held back ...
    branch = "feature/fix-start"
    sha = env.remote.commit(branch, {"start.py": GOOD}, "Restore the start script")
    env.evidence(sha)
    r = env.webhook(sha, branch)
    assert r.status_code == 202 and r.json()["change_status"] == "not_deployed", r.json()
    held = env.svc.repo.find_change(head_sha=sha)
    assert held is not None and held.merge_sha and bad[:12] in held.reason
    assert env.production_version() != version_for("{short}", held.merge_sha)
    # ... until someone reviews it and accepts it; then the next gated merge deploys
    out = CliRunner().invoke(app, ["main", "accept", bad[:12], "--reason", "reviewed, reverted by the fix"])
    assert out.exit_code == 0, out.output
    branch = "feature/after-review"
    sha2 = env.remote.commit(branch, {"src/app.py": "print('after review')\n"}, "After review")
    env.evidence(sha2)
    r = env.webhook(sha2, branch)
    assert r.status_code == 202 and r.json()["change_status"] == "deployed", r.json()
    change = env.svc.repo.find_change(head_sha=sha2)
    assert change is not None and change.merge_sha
    assert env.production_version() == version_for("{short}", change.merge_sha)
    text = render_explanation(env.svc.explain(change.merge_sha))
    assert "DEPLOYED through the gates [shipwarden-merge]" in text
