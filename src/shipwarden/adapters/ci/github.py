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
from typing import Any, Literal

import httpx

from shipwarden.adapters.ci.base import (
    CiApiError,
    CiAuthError,
    CiEvent,
    CiStatus,
    IgnoredEvent,
    PayloadError,
    SignatureError,
    digest_matches,
    get_path,
    hmac_sha256_hex,
    load_body,
    lower_headers,
    opt_str,
    parse_time,
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


def _pr_numbers(prs: Any, path: str) -> tuple[int, ...]:
    if prs is None:
        return ()
    if not isinstance(prs, list):
        raise PayloadError("expected an array", path)
    return tuple(p["number"] for p in prs if isinstance(p, dict) and isinstance(p.get("number"), int))


def _require(doc: Any, path: str, *keys: str) -> str:
    value = opt_str(doc, path, *keys)
    if value is None:
        raise PayloadError("missing", path + "".join(f".{k}" for k in keys))
    return value


def parse_github_event(body: bytes, headers: Mapping[str, str]) -> CiEvent:
    """Normalise a (verified) GitHub delivery.  Raises ``PayloadError`` / ``IgnoredEvent``."""
    h = lower_headers(headers)
    event = h.get(EVENT_HEADER)
    delivery = h.get(DELIVERY_HEADER)
    if not event:
        raise PayloadError("missing X-GitHub-Event header")
    if not delivery:
        raise PayloadError("missing X-GitHub-Delivery header (needed to deduplicate redeliveries)")
    if event == "ping":
        raise IgnoredEvent("GitHub ping")
    doc = load_body(body)
    repo = opt_str(doc, "$", "repository", "full_name")
    action = doc.get("action") if isinstance(doc.get("action"), str) else None
    event_type = f"{event}.{action}" if action else event

    if event == "workflow_run":
        run = doc.get("workflow_run")
        if not isinstance(run, dict):
            raise PayloadError("missing workflow_run object", "$.workflow_run")
        status = opt_str(run, "$.workflow_run", "status")
        conclusion = opt_str(run, "$.workflow_run", "conclusion")
        run_id = run.get("id")
        return CiEvent(
            provider="github",
            event_id=delivery,
            event_type=event_type,
            delivered_at=None,
            commit_sha=_require(run, "$.workflow_run", "head_sha"),
            branch=opt_str(run, "$.workflow_run", "head_branch"),
            repository=repo,
            pipeline_id=str(run["check_suite_id"]) if isinstance(run.get("check_suite_id"), int) else None,
            pipeline_number=run.get("run_number") if isinstance(run.get("run_number"), int) else None,
            workflow_id=str(run_id) if run_id is not None else None,
            workflow_name=_require(run, "$.workflow_run", "name"),
            status=github_status(status, conclusion),
            pull_requests=_pr_numbers(run.get("pull_requests"), "$.workflow_run.pull_requests"),
            raw_status=conclusion or status,
        )
    if event == "check_suite":
        suite = doc.get("check_suite")
        if not isinstance(suite, dict):
            raise PayloadError("missing check_suite object", "$.check_suite")
        status = opt_str(suite, "$.check_suite", "status")
        conclusion = opt_str(suite, "$.check_suite", "conclusion")
        app = get_path(suite, "app", "slug") or get_path(suite, "app", "name")
        return CiEvent(
            provider="github",
            event_id=delivery,
            event_type=event_type,
            delivered_at=None,
            commit_sha=_require(suite, "$.check_suite", "head_sha"),
            branch=opt_str(suite, "$.check_suite", "head_branch"),  # null on forks
            repository=repo,
            pipeline_id=str(suite["id"]) if suite.get("id") is not None else None,
            workflow_id=str(suite["id"]) if suite.get("id") is not None else None,
            workflow_name=app if isinstance(app, str) else None,
            status=github_status(status, conclusion),
            pull_requests=_pr_numbers(suite.get("pull_requests"), "$.check_suite.pull_requests"),
            raw_status=conclusion or status,
        )
    if event == "push":
        after = _require(doc, "$", "after")
        if doc.get("deleted") is True or set(after) == {"0"}:
            raise IgnoredEvent("branch deletion")
        ref = _require(doc, "$", "ref")
        return CiEvent(
            provider="github",
            event_id=delivery,
            event_type="push",
            delivered_at=None,
            commit_sha=after,
            branch=ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None,
            repository=repo,
        )
    if event == "pull_request":
        pr = doc.get("pull_request")
        if not isinstance(pr, dict):
            raise PayloadError("missing pull_request object", "$.pull_request")
        number = doc.get("number", pr.get("number"))
        if not isinstance(number, int):
            raise PayloadError("missing pull request number", "$.number")
        labels = pr.get("labels") or []
        if not isinstance(labels, list):
            raise PayloadError("expected an array", "$.pull_request.labels")
        return CiEvent(
            provider="github",
            event_id=delivery,
            event_type=event_type,
            delivered_at=parse_time(pr.get("updated_at"), "$.pull_request.updated_at"),
            commit_sha=_require(pr, "$.pull_request", "head", "sha"),
            branch=_require(pr, "$.pull_request", "head", "ref"),
            repository=repo,
            pull_requests=(number,),
            labels=tuple(x["name"] for x in labels if isinstance(x, dict) and isinstance(x.get("name"), str)),
        )
    raise IgnoredEvent(f"GitHub event {event!r} carries no CI result")


@dataclass(frozen=True)
class GitHubWebhook:
    """Verify, then normalise: the one call an HTTP route makes for a GitHub delivery."""

    secret: str | bytes

    def receive(self, headers: Mapping[str, str], body: bytes) -> CiEvent:
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
