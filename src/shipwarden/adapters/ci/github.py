"""GitHub: webhooks (``workflow_run``, ``check_suite``, ``check_run``, ``status``, ``push``,
``pull_request``) and PR merge.

Which events carry a CI result: ``workflow_run`` (an Actions workflow, by its name),
``check_suite`` (one app's suite, by the app's slug), ``check_run`` (one check — an Actions job
or any app's check — by its name) and ``status`` (a commit status, by its ``context``).  A CI
that reports only through commit statuses or check runs can so satisfy ``ci.required``.
``pull_request`` carries no result but the pull request's labels, which change-control rules
match on: the label set after the event is ``pull_request.labels`` with the event's own
``label`` added (``labeled``) or removed (``unlabeled``).  No event's ``updated_at`` is taken
for a delivery time: a redelivery repeats the original body, times and all, and must not be
refused as too old (deduplication is by delivery id and body digest).

Webhook authentication: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the
raw body keyed with the webhook secret>``, compared in constant time.  The
legacy SHA-1 ``X-Hub-Signature`` is never accepted.  GitHub signs no
timestamp, so replay protection relies on deduplicating ``X-GitHub-Delivery``
(see ``shipwarden.domain.webhook_replay``).

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
from pydantic import AfterValidator, Field, StrictStr, StringConstraints

from shipwarden.adapters.ci.base import digest_matches, hmac_sha256_hex, load_body, lower_headers
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
    validate,
)
from shipwarden.domain.gitref import branch_problem
from shipwarden.ports.ci import CiEvent, CiStatus, IgnoredEvent, PayloadError, SignatureError
from shipwarden.ports.ci import (
    HeadMoved as HeadMoved,
)
from shipwarden.ports.ci import (
    MergeError as MergeError,
)
from shipwarden.ports.ci import (
    MergeForbidden as MergeForbidden,
)
from shipwarden.ports.ci import (
    MergeRejected as MergeRejected,
)
from shipwarden.ports.ci import (
    MergeResult as MergeResult,
)
from shipwarden.ports.ci import (
    NotMergeable as NotMergeable,
)
from shipwarden.ports.ci import (
    PullNotFound as PullNotFound,
)

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
"""``workflow_run.status`` / ``check_suite.status`` / ``check_run.status`` (webhook payload schemas)."""
STATUS_STATES = {
    "success": CiStatus.SUCCESS,
    "failure": CiStatus.FAILED,
    "error": CiStatus.FAILED,
    "pending": CiStatus.RUNNING,
}
"""``status.state`` (commit statuses) folded into ``CiStatus``."""
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


_RunName = Annotated[StrictStr, Field(max_length=255), AfterValidator(printable)]
"""``workflow_run.name``: GitHub sends ``""`` for some runs; the workflow's name is then in ``workflow``."""


class _Run(Contract):
    id: LargeId
    name: _RunName
    path: Annotated[StrictStr, Field(max_length=255), AfterValidator(printable)] | None = None
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


class _Workflow(Contract):
    name: _RunName | None = None
    path: _RunName | None = None


class WorkflowRunBody(Contract):
    action: Literal["requested", "in_progress", "completed"]
    workflow_run: _Run
    workflow: _Workflow | None = None
    repository: _Repository | None = None


class _RunSuite(Contract):
    id: LargeId
    head_branch: Branch | None = None
    head_sha: Sha
    app: _App | None = None
    pull_requests: list[_PullRef] = Field(default_factory=list, max_length=100)


class _CheckRun(Contract):
    id: LargeId
    name: Name
    head_sha: Sha
    status: _Status
    conclusion: _Conclusion | None = None
    check_suite: _RunSuite | None = None
    app: _App | None = None
    pull_requests: list[_PullRef] = Field(default_factory=list, max_length=100)


class CheckRunBody(Contract):
    action: Literal["created", "completed", "rerequested", "requested_action"]
    check_run: _CheckRun
    repository: _Repository | None = None


class _BranchHead(Contract):
    sha: Sha


class _StatusBranch(Contract):
    name: Branch
    commit: _BranchHead


class StatusBody(Contract):
    id: LargeId
    sha: Sha
    context: Name
    state: Literal["pending", "success", "failure", "error"]
    branches: list[_StatusBranch] = Field(default_factory=list, max_length=100)
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
    forced: bool | None = Field(default=None, strict=True)
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
    label: _LabelRef | None = None  # the label added or removed (``labeled`` / ``unlabeled``)
    repository: _Repository | None = None

    def labels_after(self) -> tuple[str, ...]:
        """The label set after this event: ``pull_request.labels`` with ``label`` added or removed."""
        names = [label.name for label in self.pull_request.labels]
        if self.label is not None and self.action == "unlabeled":
            names = [n for n in names if n != self.label.name]
        elif self.label is not None and self.action == "labeled" and self.label.name not in names:
            names.append(self.label.name)
        return tuple(names)


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
    ``CheckSuiteBody``, ``CheckRunBody``, ``StatusBody``, ``PushBody``, ``PullRequestBody``) before
    anything is read from it."""
    event = event_header(headers, "X-GitHub-Event")
    delivery = _delivery_id(headers)
    if event == "ping":
        raise IgnoredEvent("GitHub ping")
    if event not in ("workflow_run", "check_suite", "check_run", "status", "push", "pull_request"):
        raise IgnoredEvent(f"GitHub event {event!r} carries no CI result")
    doc = load_body(body)
    common: dict[str, Any] = {"provider": "github", "event_id": delivery, "delivered_at": None}

    if event == "workflow_run":
        wr: WorkflowRunBody = validate(WorkflowRunBody, doc)
        run = wr.workflow_run
        workflow = wr.workflow or _Workflow()
        name = run.name or workflow.name or run.path or workflow.path
        if not name:
            raise PayloadError("the run has no name (nor has its workflow)", "$.workflow_run.name")
        return CiEvent(
            **common,
            event_type=f"workflow_run.{wr.action}",
            commit_sha=run.head_sha,
            branch=run.head_branch,
            repository=_repo(wr.repository),
            pipeline_id=str(run.check_suite_id) if run.check_suite_id is not None else None,
            pipeline_number=run.run_number,
            workflow_id=str(run.id),
            workflow_name=name,
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
    if event == "check_run":
        cr: CheckRunBody = validate(CheckRunBody, doc)
        check = cr.check_run
        run_suite = check.check_suite
        run_app = check.app or (run_suite.app if run_suite else None)
        prs = check.pull_requests or (run_suite.pull_requests if run_suite else [])
        return CiEvent(
            **common,
            event_type=f"check_run.{cr.action}",
            commit_sha=check.head_sha,
            branch=run_suite.head_branch if run_suite else None,
            repository=_repo(cr.repository),
            pipeline_id=str(run_suite.id) if run_suite else None,
            workflow_id=str(run_suite.id) if run_suite else None,
            workflow_name=(run_app.slug or run_app.name) if run_app else None,
            job_name=check.name,
            job_status=github_status(check.status, check.conclusion),
            pull_requests=tuple(p.number for p in prs),
            raw_status=check.conclusion or check.status,
        )
    if event == "status":
        st: StatusBody = validate(StatusBody, doc)
        # ``branches`` lists branches that contain the commit; only one whose head it is names it
        heads = [b.name for b in st.branches if b.commit.sha == st.sha]
        return CiEvent(
            **common,
            event_type=f"status.{st.state}",
            commit_sha=st.sha,
            branch=heads[0] if len(heads) == 1 else None,
            repository=_repo(st.repository),
            pipeline_id=str(st.id),
            job_name=st.context,
            job_status=STATUS_STATES[st.state],
            raw_status=st.state,
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
            before_sha=push.before,
            forced=push.forced,
        )
    pr: PullRequestBody = validate(PullRequestBody, doc)
    return CiEvent(
        **common,  # ``updated_at`` is when the pull request last changed, not when this was sent
        event_type=f"pull_request.{pr.action}",
        commit_sha=pr.pull_request.head.sha,
        branch=pr.pull_request.head.ref,
        repository=_repo(pr.repository),
        pull_requests=(pr.number,),
        labels=pr.labels_after(),
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


_MERGE_ERRORS: dict[int, type[MergeError]] = {
    405: NotMergeable,
    409: HeadMoved,
    422: MergeRejected,
    401: MergeForbidden,
    403: MergeForbidden,
    404: PullNotFound,
}


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
