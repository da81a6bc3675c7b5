"""GitHub webhooks: X-Hub-Signature-256 (spec vector), event normalisation, status folding."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shipwarden.adapters.ci.base import CiStatus, IgnoredEvent, PayloadError, SignatureError, hmac_sha256_hex
from shipwarden.adapters.ci.github import (
    GitHubWebhook,
    github_status,
    parse_github_event,
    verify_github_signature,
)

SECRET = "gh-webhook-secret"
SHA = "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c"


def deliver(event: str, doc: dict[str, Any], delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958"):
    body = json.dumps(doc).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": "sha256=" + hmac_sha256_hex(SECRET, body),
        "User-Agent": "GitHub-Hookshot/044aadd",
        "Content-Type": "application/json",
    }
    return headers, body


REPO = {"id": 1, "full_name": "acme/payments", "name": "payments", "owner": {"login": "acme"}}


def workflow_run(conclusion: str | None = "success", status: str = "completed") -> dict[str, Any]:
    return {
        "action": "completed" if status == "completed" else "in_progress",
        "workflow_run": {
            "id": 30433642,
            "name": "CI",
            "head_branch": "feature/refunds",
            "head_sha": SHA,
            "status": status,
            "conclusion": conclusion,
            "event": "pull_request",
            "run_number": 562,
            "run_attempt": 1,
            "workflow_id": 159038,
            "check_suite_id": 414944374,
            "pull_requests": [{"number": 17, "head": {"sha": SHA, "ref": "feature/refunds"}}],
            "created_at": "2026-11-23T11:50:00Z",
            "updated_at": "2026-11-23T11:58:00Z",
        },
        "repository": REPO,
    }


class TestSignature:
    def test_documented_vector(self) -> None:
        expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        verify_github_signature("It's a Secret to Everybody", b"Hello, World!", expected)

    def test_wrong_secret(self) -> None:
        with pytest.raises(SignatureError, match="does not match"):
            verify_github_signature(
                "wrong",
                b"Hello, World!",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            )

    @pytest.mark.parametrize("header", [None, "", "sha1=abc", "757107ea", "sha256"])
    def test_missing_or_wrong_scheme(self, header: str | None) -> None:
        with pytest.raises(SignatureError):
            verify_github_signature(SECRET, b"x", header)

    def test_receive_rejects_tampered_body(self) -> None:
        headers, body = deliver("workflow_run", workflow_run())
        with pytest.raises(SignatureError):
            GitHubWebhook(SECRET).receive(headers, body + b" ")


class TestEvents:
    def test_workflow_run_completed(self) -> None:
        headers, body = deliver("workflow_run", workflow_run())
        e = GitHubWebhook(SECRET).receive(headers, body)
        assert (e.provider, e.event_id, e.event_type) == (
            "github",
            "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "workflow_run.completed",
        )
        assert (e.commit_sha, e.branch, e.repository) == (SHA, "feature/refunds", "acme/payments")
        assert (e.workflow_name, e.workflow_id, e.status) == ("CI", "30433642", CiStatus.SUCCESS)
        assert e.pull_requests == (17,)
        assert e.delivered_at is None  # GitHub signs no timestamp

    @pytest.mark.parametrize(
        ("status", "conclusion", "expected"),
        [
            ("completed", "failure", CiStatus.FAILED),
            ("completed", "neutral", CiStatus.NEUTRAL),
            ("completed", "cancelled", CiStatus.CANCELED),
            ("completed", "timed_out", CiStatus.FAILED),
            ("completed", "action_required", CiStatus.ON_HOLD),
            ("completed", "something-new", CiStatus.UNKNOWN),
            ("in_progress", None, CiStatus.RUNNING),
            ("queued", None, CiStatus.QUEUED),
        ],
    )
    def test_status_folding(self, status: str, conclusion: str | None, expected: CiStatus) -> None:
        assert github_status(status, conclusion) is expected

    def test_check_suite_on_fork_has_no_branch(self) -> None:
        doc = {
            "action": "completed",
            "check_suite": {
                "id": 118578147,
                "head_branch": None,
                "head_sha": SHA,
                "status": "completed",
                "conclusion": "success",
                "pull_requests": [],
                "app": {"slug": "github-actions", "name": "GitHub Actions"},
            },
            "repository": REPO,
        }
        e = parse_github_event(*reversed(deliver("check_suite", doc)))
        assert (e.branch, e.commit_sha, e.status, e.workflow_name) == (
            None,
            SHA,
            CiStatus.SUCCESS,
            "github-actions",
        )

    def test_push(self) -> None:
        doc = {
            "ref": "refs/heads/main",
            "before": "0" * 40,
            "after": SHA,
            "repository": REPO,
            "deleted": False,
        }
        e = parse_github_event(*reversed(deliver("push", doc)))
        assert (e.event_type, e.branch, e.commit_sha, e.status) == ("push", "main", SHA, None)

    def test_branch_deletion_ignored(self) -> None:
        doc = {"ref": "refs/heads/x", "before": SHA, "after": "0" * 40, "repository": REPO, "deleted": True}
        with pytest.raises(IgnoredEvent):
            parse_github_event(*reversed(deliver("push", doc)))

    def test_pull_request_labels(self) -> None:
        doc = {
            "action": "labeled",
            "number": 17,
            "pull_request": {
                "number": 17,
                "head": {"sha": SHA, "ref": "feature/refunds"},
                "labels": [{"name": "risk:high"}, {"name": "payments"}],
                "updated_at": "2026-11-23T11:00:00Z",
            },
            "repository": REPO,
        }
        e = parse_github_event(*reversed(deliver("pull_request", doc)))
        assert (e.event_type, e.pull_requests, e.labels) == (
            "pull_request.labeled",
            (17,),
            ("risk:high", "payments"),
        )

    def test_check_run_is_a_stage_named_after_the_check(self) -> None:
        doc = {
            "action": "completed",
            "check_run": {
                "id": 128620228,
                "name": "build-and-test",
                "head_sha": SHA,
                "status": "completed",
                "conclusion": "failure",
                "check_suite": {"id": 118578147, "head_branch": "feature/refunds", "head_sha": SHA},
                "app": {"slug": "github-actions"},
                "pull_requests": [{"number": 17}],
            },
            "repository": REPO,
        }
        e = parse_github_event(*reversed(deliver("check_run", doc)))
        assert (e.event_type, e.stage_name, e.stage_status) == (
            "check_run.completed",
            "build-and-test",
            CiStatus.FAILED,
        )
        assert (e.branch, e.pipeline_id, e.workflow_name, e.pull_requests) == (
            "feature/refunds", "118578147", "github-actions", (17,),
        )  # fmt: skip

    @pytest.mark.parametrize(
        ("state", "heads", "branch", "status"),
        [
            ("success", {"feature/refunds": SHA, "main": "1" * 40}, "feature/refunds", CiStatus.SUCCESS),
            (
                "failure",
                {"feature/refunds": SHA, "other": SHA},
                None,
                CiStatus.FAILED,
            ),  # two heads: ambiguous
            ("error", {"main": "1" * 40}, None, CiStatus.FAILED),  # contained, not the head
            ("pending", {}, None, CiStatus.RUNNING),
        ],
    )
    def test_commit_status_is_a_stage_named_after_its_context(
        self, state: str, heads: dict[str, str], branch: str | None, status: CiStatus
    ) -> None:
        doc = {
            "id": 6805126730,
            "sha": SHA,
            "name": "acme/payments",
            "context": "ci/circleci: build",
            "state": state,
            "branches": [{"name": n, "commit": {"sha": s}} for n, s in heads.items()],
            "repository": REPO,
        }
        e = parse_github_event(*reversed(deliver("status", doc)))
        assert (e.stage_name, e.stage_status, e.branch, e.commit_sha) == (
            "ci/circleci: build",
            status,
            branch,
            SHA,
        )

    @pytest.mark.parametrize(
        ("action", "label", "listed", "after"),
        [
            ("labeled", "risk:high", ["payments"], ("payments", "risk:high")),  # label not yet in the list
            ("labeled", "risk:high", ["risk:high"], ("risk:high",)),
            ("unlabeled", "risk:high", ["risk:high", "payments"], ("payments",)),  # list still has it
            ("unlabeled", "risk:high", [], ()),
            ("synchronize", None, ["payments"], ("payments",)),
        ],
    )
    def test_pull_request_labels_after_the_event(
        self, action: str, label: str | None, listed: list[str], after: tuple[str, ...]
    ) -> None:
        doc: dict[str, Any] = {
            "action": action,
            "number": 17,
            "pull_request": {
                "head": {"sha": SHA, "ref": "feature/refunds"},
                "labels": [{"name": n} for n in listed],
                "updated_at": "2019-05-15T15:20:33Z",
            },
            "repository": REPO,
        }
        if label:
            doc["label"] = {"name": label}
        e = parse_github_event(*reversed(deliver("pull_request", doc)))
        assert e.labels == after
        assert e.delivered_at is None  # updated_at is when the PR changed, not when this was sent

    def test_workflow_run_without_a_name_takes_its_workflows(self) -> None:
        doc = workflow_run()
        doc["workflow_run"]["name"] = ""
        doc["workflow"] = {"name": "test", "path": ".github/workflows/test.yml"}
        assert parse_github_event(*reversed(deliver("workflow_run", doc))).workflow_name == "test"
        del doc["workflow"]
        doc["workflow_run"]["path"] = ".github/workflows/test.yml"
        assert (
            parse_github_event(*reversed(deliver("workflow_run", doc))).workflow_name
            == ".github/workflows/test.yml"
        )

    def test_ping_ignored(self) -> None:
        with pytest.raises(IgnoredEvent):
            parse_github_event(*reversed(deliver("ping", {"zen": "Keep it logically awesome."})))

    def test_missing_delivery_id(self) -> None:
        headers, body = deliver("workflow_run", workflow_run())
        del headers["X-GitHub-Delivery"]
        with pytest.raises(PayloadError, match="X-GitHub-Delivery"):
            parse_github_event(body, headers)

    def test_missing_head_sha_names_path(self) -> None:
        doc = workflow_run()
        del doc["workflow_run"]["head_sha"]
        with pytest.raises(PayloadError) as exc:
            parse_github_event(*reversed(deliver("workflow_run", doc)))
        assert exc.value.path == "$.workflow_run.head_sha"


def test_real_push_deliveries_say_where_the_branch_was_and_whether_it_was_forced() -> None:
    """GitHub's example push deliveries (tests/fixtures/real/github-webhooks): the D9 watch reads
    ``before`` (where to judge from) and ``forced`` from them; a deletion is ignored."""
    from pathlib import Path

    real = Path(__file__).parents[3] / "fixtures" / "real" / "github-webhooks"
    seen = 0
    for path in sorted(real.glob("push.*.json")):
        doc = json.loads(path.read_bytes())
        headers, body = deliver("push", doc)
        if doc["deleted"]:
            with pytest.raises(IgnoredEvent, match="deletion"):
                parse_github_event(body, headers)
            continue
        ev = parse_github_event(body, headers)
        assert (ev.event_type, ev.commit_sha, ev.before_sha) == ("push", doc["after"], doc["before"]), path
        assert ev.forced is doc["forced"] is False
        branch = doc["ref"].removeprefix("refs/heads/") if doc["ref"].startswith("refs/heads/") else None
        assert ev.branch == branch, path
        seen += 1
    assert seen == 2  # a tag push and a branch creation (refs/heads/master, before = 40 zeros)
