"""CircleCI API v2 and GitHub merge clients against local servers that follow the documented contracts."""

from __future__ import annotations

import httpx
import pytest

from shipwarden.adapters.ci.base import CiApiError, CiAuthError, CiNotFound, CiStatus
from shipwarden.adapters.ci.circleci import CircleCiClient, job_tests_report
from shipwarden.adapters.ci.github import (
    GitHubClient,
    HeadMoved,
    MergeForbidden,
    MergeRejected,
    NotMergeable,
    PullNotFound,
)
from tests.fixtures.ci_contract import CircleCiContractServer, GitHubContractServer, PullRequest

pytestmark = pytest.mark.integration

SHA = "9c2ed4b5c0dff8a1a1b2c3d4e5f60718293a4b5c"
SLUG = "gh/acme/payments"


@pytest.fixture
def seeded(circleci_api: CircleCiContractServer) -> CircleCiContractServer:
    api = circleci_api
    api.pipelines["pl-1"] = {
        "id": "pl-1",
        "errors": [],
        "project_slug": SLUG,
        "number": 130,
        "state": "created",
        "created_at": "2026-11-23T11:53:38.901Z",
        "updated_at": "2026-11-23T11:53:38.901Z",
        "trigger": {"received_at": "2026-11-23T11:53:38.800Z", "type": "webhook", "actor": {"login": "dana"}},
        "vcs": {
            "revision": SHA,
            "branch": "feature/refunds",
            "provider_name": "GitHub",
            "commit": {"subject": "x"},
        },
    }
    api.workflows["pl-1"] = [
        {
            "id": f"wf-{i}",
            "name": name,
            "pipeline_id": "pl-1",
            "pipeline_number": 130,
            "project_slug": SLUG,
            "status": status,
            "created_at": "2026-11-23T11:53:39Z",
            "stopped_at": "2026-11-23T11:58:02Z",
        }
        for i, (name, status) in enumerate(
            [
                ("build-and-test", "success"),
                ("security", "failed"),
                ("perf", "on_hold"),
                ("nightly", "not_run"),
                ("deploy-docs", "something-new"),
            ]
        )
    ]
    api.jobs["wf-0"] = [
        {
            "id": "j1",
            "name": "unit",
            "type": "build",
            "status": "success",
            "job_number": 4241,
            "dependencies": [],
        },
        {
            "id": "j2",
            "name": "integration",
            "type": "build",
            "status": "infrastructure_fail",
            "job_number": 4242,
            "dependencies": ["j1"],
        },
        {
            "id": "j3",
            "name": "hold",
            "type": "approval",
            "status": "on_hold",
            "dependencies": ["j2"],
            "approval_request_id": "ap-1",
        },
    ]
    api.tests[(SLUG, 4241)] = [
        {
            "message": "",
            "source": "unknown",
            "run_time": 0.012,
            "file": "tests/test_api.py",
            "result": "success",
            "name": "test_get_ok",
            "classname": "tests.test_api",
        },
        {
            "message": "assert 400 == 422",
            "source": "unknown",
            "run_time": 0.02,
            "file": "tests/test_api.py",
            "result": "failure",
            "name": "test_post",
            "classname": "tests.test_api",
        },
        {
            "message": "needs network",
            "source": "unknown",
            "run_time": 0.0,
            "file": None,
            "result": "skipped",
            "name": "test_slow",
            "classname": "tests.test_api",
        },
    ]
    return api


class TestCircleCi:
    def client(self, api: CircleCiContractServer, token: str | None = None) -> CircleCiClient:
        return CircleCiClient(token or api.token, base_url=api.api_url, client=httpx.Client(timeout=5))

    def test_pipeline(self, seeded: CircleCiContractServer) -> None:
        p = self.client(seeded).get_pipeline("pl-1")
        assert (p.id, p.number, p.project_slug, p.revision, p.branch) == (
            "pl-1",
            130,
            SLUG,
            SHA,
            "feature/refunds",
        )
        assert seeded.requests[-1].headers["Circle-Token"] == seeded.token

    def test_workflows_follow_page_tokens(self, seeded: CircleCiContractServer) -> None:
        workflows = self.client(seeded).list_workflows("pl-1")
        assert [w.name for w in workflows] == ["build-and-test", "security", "perf", "nightly", "deploy-docs"]
        assert [w.status for w in workflows] == [
            CiStatus.SUCCESS,
            CiStatus.FAILED,
            CiStatus.ON_HOLD,
            CiStatus.SKIPPED,
            CiStatus.UNKNOWN,
        ]
        pages = [r for r in seeded.requests if r.path.endswith("/workflow")]
        assert len(pages) == 3  # 5 items, 2 per page
        assert "page-token" not in pages[0].query
        assert all("page-token" in r.query for r in pages[1:])

    def test_jobs(self, seeded: CircleCiContractServer) -> None:
        jobs = self.client(seeded).list_jobs("wf-0")
        assert [(j.name, j.status, j.job_number) for j in jobs] == [
            ("unit", CiStatus.SUCCESS, 4241),
            ("integration", CiStatus.FAILED, 4242),
            ("hold", CiStatus.ON_HOLD, None),
        ]
        assert jobs[2].approval_request_id == "ap-1"

    def test_job_tests_become_a_test_report(self, seeded: CircleCiContractServer) -> None:
        tests = self.client(seeded).list_job_tests(SLUG, 4241)
        assert [t.result for t in tests] == ["success", "failure", "skipped"]
        report = job_tests_report(tests, source=f"circleci:{SLUG}/4241")
        assert (report.tests, report.failures, report.skipped, report.passed) == (3, 1, 1, 1)
        assert report.digest == job_tests_report(tests, source="again").digest

    def test_wrong_token(self, seeded: CircleCiContractServer) -> None:
        with pytest.raises(CiAuthError) as exc:
            self.client(seeded, token="wrong").get_pipeline("pl-1")
        assert exc.value.status == 401 and "log in" in exc.value.message

    def test_unknown_pipeline(self, seeded: CircleCiContractServer) -> None:
        with pytest.raises(CiNotFound):
            self.client(seeded).list_workflows("pl-404")

    def test_ids_cannot_escape_the_path(self, seeded: CircleCiContractServer) -> None:
        with pytest.raises(ValueError):
            self.client(seeded).get_pipeline("../project/x")

    def test_unreachable_server(self) -> None:
        client = CircleCiClient("t", base_url="http://127.0.0.1:9/api/v2", client=httpx.Client(timeout=1))
        with pytest.raises(CiApiError) as exc:
            client.get_pipeline("pl-1")
        assert exc.value.status == 0


class TestGitHubMerge:
    def client(self, api: GitHubContractServer, token: str | None = None) -> GitHubClient:
        return GitHubClient(token or api.token, base_url=api.base, client=httpx.Client(timeout=5))

    def test_merge_always_sends_sha(self, github_api: GitHubContractServer) -> None:
        github_api.pulls[("acme", "payments", 17)] = PullRequest(head_sha=SHA)
        result = self.client(github_api).merge_pull_request(
            "acme", "payments", 17, sha=SHA, merge_method="squash"
        )
        assert result.merged and result.sha == github_api.pulls[("acme", "payments", 17)].merge_sha
        sent = github_api.requests[-1]
        assert sent.method == "PUT" and sent.path == "/repos/acme/payments/pulls/17/merge"
        assert github_api.pulls[("acme", "payments", 17)].merge_body == {"sha": SHA, "merge_method": "squash"}
        assert sent.headers["Authorization"] == f"Bearer {github_api.token}"
        assert sent.headers["Accept"] == "application/vnd.github+json"

    def test_head_moved_after_approval(self, github_api: GitHubContractServer) -> None:
        github_api.pulls[("acme", "payments", 18)] = PullRequest(head_sha="f" * 40)
        with pytest.raises(HeadMoved) as exc:
            self.client(github_api).merge_pull_request("acme", "payments", 18, sha=SHA)
        assert exc.value.status == 409 and "modified" in exc.value.message
        assert not github_api.pulls[("acme", "payments", 18)].merged

    def test_not_mergeable(self, github_api: GitHubContractServer) -> None:
        github_api.pulls[("acme", "payments", 19)] = PullRequest(head_sha=SHA, mergeable=False)
        with pytest.raises(NotMergeable, match="not mergeable"):
            self.client(github_api).merge_pull_request("acme", "payments", 19, sha=SHA)

    def test_method_not_allowed_is_422(self, github_api: GitHubContractServer) -> None:
        github_api.pulls[("acme", "payments", 20)] = PullRequest(head_sha=SHA, allowed_methods=("squash",))
        with pytest.raises(MergeRejected) as exc:
            self.client(github_api).merge_pull_request("acme", "payments", 20, sha=SHA, merge_method="rebase")
        assert exc.value.status == 422

    def test_read_only_token(self, github_api: GitHubContractServer) -> None:
        github_api.pulls[("acme", "payments", 21)] = PullRequest(head_sha=SHA)
        with pytest.raises(MergeForbidden) as exc:
            self.client(github_api, token="ghp_readonly").merge_pull_request("acme", "payments", 21, sha=SHA)
        assert isinstance(exc.value, CiAuthError) and exc.value.status == 403

    def test_unknown_pull(self, github_api: GitHubContractServer) -> None:
        with pytest.raises(PullNotFound):
            self.client(github_api).merge_pull_request("acme", "payments", 999, sha=SHA)

    def test_bad_token(self, github_api: GitHubContractServer) -> None:
        github_api.pulls[("acme", "payments", 22)] = PullRequest(head_sha=SHA)
        with pytest.raises(MergeForbidden) as exc:
            self.client(github_api, token="nope").merge_pull_request("acme", "payments", 22, sha=SHA)
        assert exc.value.status == 401

    @pytest.mark.parametrize("sha", ["", "HEAD", "abc123", SHA.upper()])
    def test_sha_is_mandatory_and_full(self, github_api: GitHubContractServer, sha: str) -> None:
        with pytest.raises(ValueError, match="sha"):
            self.client(github_api).merge_pull_request("acme", "payments", 17, sha=sha)
        assert github_api.requests == []

    @pytest.mark.parametrize(("owner", "repo"), [("acme/..", "x"), ("acme", "../../user"), ("", "x")])
    def test_owner_repo_validated(self, github_api: GitHubContractServer, owner: str, repo: str) -> None:
        with pytest.raises(ValueError):
            self.client(github_api).merge_pull_request(owner, repo, 1, sha=SHA)
