"""GitHub events through the signed route (D2, D3), with GitHub's own example payloads.

The payloads are the real examples of tests/fixtures/real/github-webhooks (octokit/webhooks);
each test changes only what ties a payload to this test's git repository — the head commit
(a real commit of the test's remote) and, where the scenario needs it, the check's name — and
sends it to ``POST /webhooks/github`` signed with the configured secret.

* A CI that reports through check runs or commit statuses satisfies ``ci.required``.
* ``pull_request`` events set the change's labels (added and removed), so a ``changeControl``
  rule by label matches, and stops matching when the label is removed.
* A pull request's ``updated_at`` is not a delivery time: an event first delivered (or
  redelivered) long after the pull request last changed is accepted.
* A ``workflow_run`` whose ``name`` is ``""`` is named after its ``workflow``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shipwarden.entrypoints.http import create_app
from tests.integration.http.conftest import Clock
from tests.integration.http.hardening import POLICY, InProcess, github_request, make_pipeline

pytestmark = pytest.mark.integration

REAL = Path(__file__).parents[2] / "fixtures" / "real" / "github-webhooks"
LABEL_RULE = """\
  changeControl:
    nonStandard:
      - {{name: bug-fix, labels: [bug], approvers: [cab]}}
"""


def real(name: str) -> dict[str, Any]:
    return dict(json.loads((REAL / name).read_text(encoding="utf-8")))


@pytest.fixture
def gh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[InProcess, TestClient]]:
    policy = POLICY.replace(
        "  ci: {{required: [build-and-test]}}\n", "  ci: {{required: [build-and-test]}}\n" + LABEL_RULE
    )
    assert policy != POLICY
    monkeypatch.setattr("tests.integration.http.hardening.POLICY", policy)
    p = make_pipeline(tmp_path, monkeypatch)
    clock = Clock()
    clock.now = datetime.now(UTC)
    svc = p.services(clock)
    app = create_app(svc)
    with TestClient(app, client=("127.0.0.1", 40000), raise_server_exceptions=False) as client:
        yield InProcess(p, svc, clock), client
    svc.store.engine.dispose()


def send(client: TestClient, event: str, doc: dict[str, Any]) -> Any:
    headers, body = github_request(doc, event=event)
    r = client.post("/webhooks/github", content=body, headers=headers)
    assert r.status_code == 202, r.text
    return r.json()


def change_of(client: TestClient, sha: str) -> Any:
    found = client.app.state.changes.repo.find_change(head_sha=sha)  # type: ignore[attr-defined]
    assert found is not None, f"no change for {sha}"
    return found


def gate(change: Any, name: str) -> dict[str, Any]:
    return next(g for g in change.gates["results"] if g["gate"] == name)


def on_commit(doc: dict[str, Any], sha: str, *, run: str | None = None) -> dict[str, Any]:
    """The payload with its head commit replaced by ``sha`` (and the check renamed ``run``)."""
    doc = copy.deepcopy(doc)
    if "check_run" in doc:
        doc["check_run"]["head_sha"] = doc["check_run"]["check_suite"]["head_sha"] = sha
        if run:
            doc["check_run"]["name"] = run
    if "pull_request" in doc:
        doc["pull_request"]["head"]["sha"] = sha
    if "workflow_run" in doc:
        doc["workflow_run"]["head_sha"] = sha
    return doc


def test_a_check_run_satisfies_ci_required(gh: tuple[InProcess, TestClient]) -> None:
    api, client = gh
    sha = api.pipeline.remote.commit("changes", {"app.py": "print(1)\n"}, "linted")
    res = send(client, "check_run", on_commit(real("check_run.completed.2.json"), sha, run="build-and-test"))
    assert res["outcome"] == "accepted", res
    change = change_of(client, sha)
    assert change.branch == "changes" and change.pr_number == 2
    assert gate(change, "ci:build-and-test")["passed"], change.gates
    # a later failing run of the same check decides
    api.clock.advance(seconds=60)
    send(client, "check_run", on_commit(real("check_run.completed.1.json"), sha, run="build-and-test"))
    failed = gate(change_of(client, sha), "ci:build-and-test")
    assert not failed["passed"] and "'failed'" in failed["detail"]


@pytest.mark.parametrize("branch_listed", [True, False], ids=["branch-head", "no-branch"])
def test_a_commit_status_satisfies_ci_required(gh: tuple[InProcess, TestClient], branch_listed: bool) -> None:
    api, client = gh
    sha = api.pipeline.remote.commit("changes", {"app.py": "print(2)\n"}, "status-reported")
    # the pull request is opened first; its CI reports through the commit status API only
    send(client, "pull_request", on_commit(real("pull_request.opened.0.json"), sha))
    status = real("status.0.json")
    status["sha"] = status["commit"]["sha"] = sha
    status["context"] = "build-and-test"
    if branch_listed:  # GitHub lists the branches that contain the commit; "changes" has it as head
        next(b for b in status["branches"] if b["name"] == "changes")["commit"]["sha"] = sha
    res = send(client, "status", status)
    assert res["outcome"] == "accepted" and res["change_id"] == change_of(client, sha).id, res
    assert gate(change_of(client, sha), "ci:build-and-test")["passed"]


def test_pull_request_labels_added_and_removed_decide_change_control(
    gh: tuple[InProcess, TestClient],
) -> None:
    api, client = gh
    sha = api.pipeline.remote.commit("changes", {"app.py": "print(3)\n"}, "fix a bug")
    send(client, "pull_request", on_commit(real("pull_request.opened.0.json"), sha))
    change = change_of(client, sha)
    assert change.labels == () and change.classification["standard"] is True

    send(client, "pull_request", on_commit(real("pull_request.labeled.8.json"), sha))
    change = change_of(client, sha)
    assert change.labels == ("bug",)
    assert change.classification["required_roles"] == ["cab"]
    assert not gate(change, "change-control")["passed"]
    entry = [e for e in api.services.audit.query(limit=1000) if e["action"] == "change.labels"][-1]
    assert entry["detail"]["labels"] == ["bug"] and entry["detail"]["event"] == "pull_request.labeled"

    # the unlabeled payload still lists "bug" in pull_request.labels; its ``label`` says it went
    send(client, "pull_request", on_commit(real("pull_request.unlabeled.25.json"), sha))
    change = change_of(client, sha)
    assert change.labels == () and change.classification["standard"] is True
    assert gate(change, "change-control")["passed"]


def test_a_pull_request_event_long_after_its_updated_at_is_accepted(gh: tuple[InProcess, TestClient]) -> None:
    api, client = gh
    sha = api.pipeline.remote.commit("changes", {"app.py": "print(4)\n"}, "late")
    doc = on_commit(real("pull_request.synchronize.22.json"), sha)
    updated = datetime.fromisoformat(doc["pull_request"]["updated_at"].replace("Z", "+00:00"))
    assert (api.clock() - updated).days > 365  # far outside the replay window
    res = send(client, "pull_request", doc)
    assert res["outcome"] == "accepted" and change_of(client, sha).labels == ("bug",)
    # the same delivery again is still a replay
    headers, body = github_request(doc, event="pull_request")
    assert client.post("/webhooks/github", content=body, headers=headers).status_code == 409


def test_a_workflow_run_named_empty_is_named_after_its_workflow(gh: tuple[InProcess, TestClient]) -> None:
    api, client = gh
    sha = api.pipeline.remote.commit("changes", {"app.py": "print(5)\n"}, "unnamed workflow")
    doc = on_commit(real("workflow_run.completed.1.json"), sha)
    doc["workflow_run"]["head_branch"] = "changes"
    assert doc["workflow_run"]["name"] == "" and doc["workflow"]["name"] == "test"
    res = send(client, "workflow_run", doc)
    assert res["outcome"] == "accepted", res
    assert gate(change_of(client, sha), "ci:build-and-test")["reason"] == "missing"
    ev = client.app.state.changes.repo.evidence(res["evidence_id"])  # type: ignore[attr-defined]
    assert (ev.report.name, ev.report.status) == ("test", "success")


def test_a_new_head_keeps_the_pull_requests_labels_before_its_pull_request_event(
    gh: tuple[InProcess, TestClient],
) -> None:
    """GitHub does not redeliver a failed delivery by itself: if the synchronize event of a new
    push is lost or late, the CI result of the new head must not make an unlabelled change."""
    api, client = gh
    first = api.pipeline.remote.commit("changes", {"app.py": "print(6)\n"}, "first")
    send(client, "pull_request", on_commit(real("pull_request.labeled.8.json"), first))
    assert change_of(client, first).labels == ("bug",)
    second = api.pipeline.remote.commit("changes", {"app.py": "print(7)\n"}, "second")
    api.clock.advance(seconds=60)
    send(client, "check_run", on_commit(real("check_run.completed.2.json"), second, run="build-and-test"))
    change = change_of(client, second)
    assert change.id != change_of(client, first).id
    assert change.labels == ("bug",) and change.classification["required_roles"] == ["cab"]
    # the pull request's own event still decides: unlabeled on the new head clears it
    send(client, "pull_request", on_commit(real("pull_request.unlabeled.25.json"), second))
    assert change_of(client, second).labels == ()
