"""GitHub: webhooks (Actions ``workflow_run``, ``check_suite``, ``push``, ``pull_request``) and PR merge.

Webhook authentication: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the
raw body keyed with the webhook secret>``, compared in constant time.  The
legacy SHA-1 ``X-Hub-Signature`` is never accepted.  GitHub signs no
timestamp, so replay protection relies on deduplicating ``X-GitHub-Delivery``
(see ``shipwarden.domain.replay``).

Merging: ``PUT /repos/{owner}/{repo}/pulls/{n}/merge`` **always with ``sha``**
— the head commit that was approved.  If someone pushed after approval,
GitHub answers 409 instead of merging unreviewed code; that and the other
documented refusals map to typed errors::

    MergeError (CiApiError)
    ├── NotMergeable        405  checks/reviews/conflicts block the merge
    ├── HeadMoved           409  head is no longer the approved sha
    ├── MergeRejected       422  validation failed (e.g. merge method not allowed)
    ├── MergeForbidden      403  token lacks permission (Contents: write)
    └── PullNotFound        404  no such repository/PR (or no access)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import httpx
from pydantic import AfterValidator, Field, StringConstraints

from shipwarden.adapters.ci.base import (
    CiApiError,
    CiAuthError,
    CiEvent,
    CiStatus,
    IgnoredEvent,
    PayloadError,
    SignatureError,
    digest_matches,
    hmac_sha256_hex,
    load_body,
    lower_headers,
)
from shipwarden.adapters.ci.contract import (
    INT32_MAX,
    Branch,
    Contract,
    Count,
    IsoTime,
    LargeId,
    Name,
    Ref,
    Sha,
    check_json_media_type,
    event_header,
    printable,
    time_of,
    validate,
)
from shipwarden.domain.gitref import branch_problem

SIGNATURE_HEADER = "x-hub-signature-256"
EVENT_HEADER = "x-github-event"
DELIVERY_HEADER = "x-github-delivery"
DEFAULT_API_URL = "https://api.github.com"
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")

_CONCLUSION = {
    "success": CiStatus.SUCCESS,
    "failure": CiStatus.FAILED,
    "timed_out": CiStatus.FAILED,
    "startup_failure": CiStatus.FAILED,
    "cancelled": CiStatus.CANCELED,
    "neutral": CiStatus.NEUTRAL,
    "skipped": CiStatus.SKIPPED,
    "action_required": CiStatus.ON_HOLD,
    "stale": CiStatus.UNKNOWN,
}
_IN_FLIGHT = {
    "in_progress": CiStatus.RUNNING,
    "queued": CiStatus.QUEUED,
    "requested": CiStatus.QUEUED,
    "waiting": CiStatus.QUEUED,
    "pending": CiStatus.QUEUED,
}


def github_status(status: str | None, conclusion: str | None) -> CiStatus | None:
    """Fold GitHub's ``status`` + ``conclusion`` into ``CiStatus``; only ``success`` is success."""
    if status is None and conclusion is None:
        return None
    if status == "completed" or (status is None and conclusion is not None):
        return _CONCLUSION.get(conclusion or "", CiStatus.UNKNOWN)
    return _IN_FLIGHT.get(status or "", CiStatus.UNKNOWN)


def verify_github_signature(secret: str | bytes, body: bytes, header: str | None) -> None:
    """Raise ``SignatureError`` unless ``header`` is ``sha256=`` + the body's HMAC-SHA256."""
    if not secret:
        raise SignatureError("no webhook secret is configured; refusing unauthenticated GitHub deliveries")
    if not header or not header.strip():
        raise SignatureError("missing X-Hub-Signature-256 header (the SHA-1 X-Hub-Signature is not accepted)")
    algo, sep, digest = header.strip().partition("=")
    if not sep or algo != "sha256":
        raise SignatureError("malformed X-Hub-Signature-256: expected 'sha256=<hex digest>'")
    if not digest_matches(hmac_sha256_hex(secret, body), digest):
        raise SignatureError("X-Hub-Signature-256 does not match the body")


RUN_STATUSES = ("requested", "in_progress", "completed", "queued", "pending", "waiting")
"""``workflow_run.status`` / ``check_suite.status`` (webhook payload schemas)."""
CONCLUSIONS = (
    "success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required", "stale",
    "startup_failure",
)  # fmt: skip
"""``workflow_run.conclusion`` / ``check_suite.conclusion``; ``null`` until completed."""
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_FullName = Annotated[
    str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
]
_Label = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=100), AfterValidator(printable)
]
_PrNumber = Annotated[int, Field(strict=True, ge=1, le=INT32_MAX)]
_Status = Literal[RUN_STATUSES]  # type: ignore[valid-type]
_Conclusion = Literal[CONCLUSIONS]  # type: ignore[valid-type]


class _Repository(Contract):
    full_name: _FullName | None = None


class _PullRef(Contract):
    number: _PrNumber


class _Run(Contract):
    id: LargeId
    name: Name
    head_branch: Branch | None = None
    head_sha: Sha
    status: _Status | None = None
    conclusion: _Conclusion | None = None
    run_number: Count | None = None
    check_suite_id: LargeId | None = None
    pull_requests: list[_PullRef] = Field(default_factory=list, max_length=100)


class _App(Contract):
    slug: Name | None = None
    name: Name | None = None


class _Suite(Contract):
    id: LargeId
    head_branch: Branch | None = None  # null for suites on forks
    head_sha: Sha
    status: _Status | None = None
    conclusion: _Conclusion | None = None
    app: _App | None = None
    pull_requests: list[_PullRef] = Field(default_factory=list, max_length=100)


class WorkflowRunBody(Contract):
    action: Literal["requested", "in_progress", "completed"]
    workflow_run: _Run
    repository: _Repository | None = None


class CheckSuiteBody(Contract):
    action: Literal["requested", "rerequested", "completed"]
    check_suite: _Suite
    repository: _Repository | None = None


class PushBody(Contract):
    ref: Ref
    before: Sha
    after: Sha
    deleted: bool | None = Field(default=None, strict=True)
    repository: _Repository | None = None


class _Head(Contract):
    sha: Sha
    ref: Branch


class _LabelRef(Contract):
    name: _Label


class _Pull(Contract):
    number: _PrNumber | None = None
    head: _Head
    labels: list[_LabelRef] = Field(default_factory=list, max_length=100)
    updated_at: IsoTime | None = None


class PullRequestBody(Contract):
    action: Annotated[str, StringConstraints(strict=True, pattern=r"^[a-z_]{1,40}$")]
    number: _PrNumber
    pull_request: _Pull
    repository: _Repository | None = None


def _delivery_id(headers: Mapping[str, str]) -> str:
    delivery = lower_headers(headers).get(DELIVERY_HEADER)
    if not delivery:
        raise PayloadError("missing X-GitHub-Delivery header (needed to deduplicate redeliveries)")
    if not _GUID.match(delivery):
        raise PayloadError(f"X-GitHub-Delivery is not a GUID: {delivery[:64]!r}")
    return delivery


def parse_github_event(body: bytes, headers: Mapping[str, str]) -> CiEvent:
    """Normalise a (verified) GitHub delivery.  Raises ``PayloadError`` / ``IgnoredEvent``.

    The body is validated whole against the documented payload of its event (``WorkflowRunBody``,
    ``CheckSuiteBody``, ``PushBody``, ``PullRequestBody``) before anything is read from it."""
    event = event_header(headers, "X-GitHub-Event")
    delivery = _delivery_id(headers)
    if event == "ping":
        raise IgnoredEvent("GitHub ping")
    if event not in ("workflow_run", "check_suite", "push", "pull_request"):
        raise IgnoredEvent(f"GitHub event {event!r} carries no CI result")
    doc = load_body(body)
    common: dict[str, Any] = {"provider": "github", "event_id": delivery, "delivered_at": None}

    if event == "workflow_run":
        wr: WorkflowRunBody = validate(WorkflowRunBody, doc)
        run = wr.workflow_run
        return CiEvent(
            **common,
            event_type=f"workflow_run.{wr.action}",
            commit_sha=run.head_sha,
            branch=run.head_branch,
            repository=_repo(wr.repository),
            pipeline_id=str(run.check_suite_id) if run.check_suite_id is not None else None,
            pipeline_number=run.run_number,
            workflow_id=str(run.id),
            workflow_name=run.name,
            status=github_status(run.status, run.conclusion),
            pull_requests=tuple(p.number for p in run.pull_requests),
            raw_status=run.conclusion or run.status,
        )
    if event == "check_suite":
        cs: CheckSuiteBody = validate(CheckSuiteBody, doc)
        suite = cs.check_suite
        app = (suite.app.slug or suite.app.name) if suite.app else None
        return CiEvent(
            **common,
            event_type=f"check_suite.{cs.action}",
            commit_sha=suite.head_sha,
            branch=suite.head_branch,
            repository=_repo(cs.repository),
            pipeline_id=str(suite.id),
            workflow_id=str(suite.id),
            workflow_name=app,
            status=github_status(suite.status, suite.conclusion),
            pull_requests=tuple(p.number for p in suite.pull_requests),
            raw_status=suite.conclusion or suite.status,
        )
    if event == "push":
        push: PushBody = validate(PushBody, doc)
        if push.deleted is True or set(push.after) == {"0"}:
            raise IgnoredEvent("branch deletion")
        branch = push.ref.removeprefix("refs/heads/") if push.ref.startswith("refs/heads/") else None
        if branch is not None and (problem := branch_problem(branch)):
            raise PayloadError(f"not a valid git branch name: it {problem}", "$.ref")
        return CiEvent(
            **common,
            event_type="push",
            commit_sha=push.after,
            branch=branch,
            repository=_repo(push.repository),
        )
    pr: PullRequestBody = validate(PullRequestBody, doc)
    return CiEvent(
        **{**common, "delivered_at": time_of(pr.pull_request.updated_at)},
        event_type=f"pull_request.{pr.action}",
        commit_sha=pr.pull_request.head.sha,
        branch=pr.pull_request.head.ref,
        repository=_repo(pr.repository),
        pull_requests=(pr.number,),
        labels=tuple(label.name for label in pr.pull_request.labels),
    )


def _repo(repository: _Repository | None) -> str | None:
    return repository.full_name if repository else None


@dataclass(frozen=True)
class GitHubWebhook:
    """Verify, then normalise: the one call an HTTP route makes for a GitHub delivery."""

    secret: str | bytes

    def receive(self, headers: Mapping[str, str], body: bytes) -> CiEvent:
        check_json_media_type(headers)
        verify_github_signature(self.secret, body, lower_headers(headers).get(SIGNATURE_HEADER))
        return parse_github_event(body, headers)


# --- merge -------------------------------------------------------------------------------------------------


class MergeError(CiApiError):
    pass


class NotMergeable(MergeError):
    pass


class HeadMoved(MergeError):
    pass


class MergeRejected(MergeError):
    pass


class MergeForbidden(MergeError, CiAuthError):
    pass


class PullNotFound(MergeError):
    pass


_MERGE_ERRORS: dict[int, type[MergeError]] = {
    405: NotMergeable,
    409: HeadMoved,
    422: MergeRejected,
    401: MergeForbidden,
    403: MergeForbidden,
    404: PullNotFound,
}


@dataclass(frozen=True)
class MergeResult:
    sha: str
    merged: bool
    message: str


class GitHubClient:
    """The GitHub REST calls shipwarden makes (currently: merge an approved PR)."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_API_URL,
        client: httpx.Client | None = None,
        timeout: float = 15.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._client = client or httpx.Client(timeout=timeout)
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "shipwarden",
        }

    def close(self) -> None:
        self._client.close()

    def merge_pull_request(
        self,
        owner: str,
        repo: str,
        number: int,
        *,
        sha: str,
        merge_method: Literal["merge", "squash", "rebase"] = "merge",
        commit_title: str | None = None,
        commit_message: str | None = None,
    ) -> MergeResult:
        """Merge PR ``number`` only if its head is still ``sha`` (required, never omitted)."""
        for label, value in (("owner", owner), ("repo", repo)):
            if not _NAME.match(value) or value in (".", ".."):
                raise ValueError(f"invalid {label} {value!r}")
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValueError(f"invalid pull request number {number!r}")
        if not isinstance(sha, str) or not _SHA.match(sha):
            raise ValueError(f"sha must be the full hex head commit the approval was for, got {sha!r}")
        if merge_method not in ("merge", "squash", "rebase"):
            raise ValueError(f"invalid merge method {merge_method!r}")
        body: dict[str, Any] = {"sha": sha, "merge_method": merge_method}
        if commit_title is not None:
            body["commit_title"] = commit_title
        if commit_message is not None:
            body["commit_message"] = commit_message
        url = f"{self._base}/repos/{owner}/{repo}/pulls/{number}/merge"
        try:
            resp = self._client.put(url, headers=self._headers, json=body)
        except httpx.HTTPError as exc:
            raise MergeError(0, f"request failed: {exc}", url) from exc
        try:
            doc = resp.json()
        except ValueError:
            doc = {}
        message = str(doc.get("message", "")) if isinstance(doc, dict) else ""
        if resp.status_code == 200 and isinstance(doc, dict):
            merged_sha = doc.get("sha")
            if doc.get("merged") is not True or not isinstance(merged_sha, str):
                raise MergeError(200, f"GitHub answered 200 but did not report a merge: {doc!r}", url)
            return MergeResult(merged_sha, True, message)
        cls = _MERGE_ERRORS.get(resp.status_code, MergeError)
        raise cls(resp.status_code, message or resp.reason_phrase, url)


__all__ = [
    "GitHubClient",
    "GitHubWebhook",
    "HeadMoved",
    "MergeError",
    "MergeForbidden",
    "MergeRejected",
    "MergeResult",
    "NotMergeable",
    "PullNotFound",
    "github_status",
    "parse_github_event",
    "verify_github_signature",
]
