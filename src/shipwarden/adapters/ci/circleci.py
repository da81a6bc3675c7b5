"""CircleCI: outbound webhooks in, API v2 out.

Webhooks (``workflow-completed``, ``job-completed``): the ``circleci-signature``
header is a comma-separated list of ``version=hexdigest`` pairs (``v1=…,v2=…``).
Only the newest version we support (``v1`` = hex HMAC-SHA256 of the raw body
keyed with the webhook secret) is checked, so an attacker cannot downgrade us
to a weaker scheme by adding pairs.  Payloads come in two shapes: GitHub OAuth
and Bitbucket Cloud projects carry ``pipeline.vcs`` (commit in ``revision``);
GitLab, GitHub App and Bitbucket DC projects carry no ``vcs`` but
``pipeline.trigger_parameters.git.checkout_sha``.  Both are read; unknown keys
are ignored (CircleCI adds fields over time).  ``happened_at`` is inside the
signed body, so it is a trustworthy delivery time for replay checks.

API v2 (``https://circleci.com/api/v2``, header ``Circle-Token``): lists are
``{items, next_page_token}`` pages, the next one requested with
``?page-token=``.  The client is a thin typed wrapper; callers inject an
``httpx.Client`` (tests point it at a local contract server).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import httpx
from pydantic import StringConstraints

from shipwarden.adapters.ci.base import digest_matches, hmac_sha256_hex, load_body, lower_headers
from shipwarden.adapters.ci.contract import (
    Branch,
    Contract,
    Count,
    Ident,
    IsoTime,
    Name,
    Sha,
    check_json_media_type,
    event_header,
    time_of,
    validate,
)
from shipwarden.domain.evidence.model import SuiteResult, TestCaseResult, TestReport, sha256_digest
from shipwarden.ports.ci import (
    CiApiError,
    CiAuthError,
    CiEvent,
    CiNotFound,
    CiStatus,
    IgnoredEvent,
    PayloadError,
    SignatureError,
)

SIGNATURE_HEADER = "circleci-signature"
EVENT_HEADER = "circleci-event-type"
SUPPORTED_SIGNATURE_VERSIONS = ("v1",)  # newest first
DEFAULT_BASE_URL = "https://circleci.com/api/v2"

_STATUS = {
    "success": CiStatus.SUCCESS,
    "failed": CiStatus.FAILED,
    "error": CiStatus.FAILED,
    "failing": CiStatus.FAILED,
    "infrastructure_fail": CiStatus.FAILED,
    "timedout": CiStatus.FAILED,
    "unauthorized": CiStatus.FAILED,
    "terminated-unknown": CiStatus.FAILED,
    "canceled": CiStatus.CANCELED,
    "running": CiStatus.RUNNING,
    "queued": CiStatus.QUEUED,
    "not_running": CiStatus.QUEUED,
    "blocked": CiStatus.QUEUED,
    "on_hold": CiStatus.ON_HOLD,
    "not_run": CiStatus.SKIPPED,
}


def circleci_status(raw: str | None) -> CiStatus | None:
    """Map a CircleCI workflow/job status; unknown values become ``UNKNOWN`` (never success)."""
    if raw is None:
        return None
    return _STATUS.get(raw, CiStatus.UNKNOWN)


# --- webhooks ----------------------------------------------------------------------------------------------


def verify_circleci_signature(secret: str | bytes, body: bytes, header: str | None) -> None:
    """Raise ``SignatureError`` unless ``header`` holds a valid signature of the newest supported version."""
    if not secret:
        raise SignatureError("no webhook secret is configured; refusing unauthenticated CircleCI deliveries")
    if not header or not header.strip():
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    pairs: dict[str, list[str]] = {}
    for part in header.split(","):
        version, sep, digest = part.strip().partition("=")
        if not sep or not version:
            entry = part.strip()
            raise SignatureError(f"malformed {SIGNATURE_HEADER} entry {entry!r}: expected version=hexdigest")
        pairs.setdefault(version, []).append(digest)
    for version in SUPPORTED_SIGNATURE_VERSIONS:
        if version in pairs:
            expected = hmac_sha256_hex(secret, body)
            # Evaluate every candidate so timing does not reveal which one matched.
            results = [digest_matches(expected, d) for d in pairs[version]]
            if any(results):
                return
            raise SignatureError(f"{SIGNATURE_HEADER} {version} signature does not match the body")
    got = ", ".join(sorted(pairs)) or "none"
    raise SignatureError(f"no supported signature version in {SIGNATURE_HEADER} (got {got}; supported: v1)")


WORKFLOW_STATUSES = ("success", "failed", "error", "canceled", "unauthorized")
"""``workflow.status`` of ``workflow-completed`` (the webhooks reference: terminal states only)."""
JOB_STATUSES = (
    "success", "failed", "canceled", "unauthorized",  # the webhooks reference
    "infrastructure_fail", "timedout", "terminated-unknown", "not_run",  # terminal job states of API v2
)  # fmt: skip
"""``job.status`` of ``job-completed``."""
_Slug = Annotated[str, StringConstraints(strict=True, pattern=r"^[^/\s]{1,80}/[^/\s]{1,80}/[^/\s]{1,80}$")]


class _Git(Contract):
    checkout_sha: Sha | None = None
    branch: Branch | None = None


class _GitLab(Contract):
    commit_sha: Sha | None = None
    branch: Branch | None = None


class _TriggerParameters(Contract):
    git: _Git | None = None
    gitlab: _GitLab | None = None


class _Vcs(Contract):
    revision: Sha | None = None
    branch: Branch | None = None


class _Pipeline(Contract):
    id: Ident
    number: Count | None = None
    vcs: _Vcs | None = None
    trigger_parameters: _TriggerParameters | None = None


class _Workflow(Contract):
    id: Ident | None = None
    name: Name
    status: Literal[WORKFLOW_STATUSES] | None = None  # type: ignore[valid-type]


class _Job(Contract):
    id: Ident | None = None
    number: Count | None = None
    name: Name
    status: Literal[JOB_STATUSES]  # type: ignore[valid-type]


class _Project(Contract):
    slug: _Slug | None = None


class CircleCiEventBody(Contract):
    """A ``workflow-completed`` / ``job-completed`` body as the webhooks reference documents it."""

    id: Ident
    type: Literal["workflow-completed", "job-completed"]
    happened_at: IsoTime
    project: _Project | None = None
    pipeline: _Pipeline
    workflow: _Workflow
    job: _Job | None = None


def parse_circleci_event(body: bytes, headers: Mapping[str, str] | None = None) -> CiEvent:
    """Normalise a (verified) CircleCI webhook body.  Raises ``PayloadError`` / ``IgnoredEvent``.

    With ``headers`` (every HTTP delivery), ``circleci-event-type`` is required and must name the
    body's ``type``; without (tests, replays from the store) the body's ``type`` decides.
    """
    doc = load_body(body)
    header_type = event_header(headers, EVENT_HEADER) if headers is not None else None
    event_type = doc.get("type", header_type)
    if header_type is not None and event_type != header_type:
        raise PayloadError(f"does not match the {EVENT_HEADER} header {header_type!r}", "$.type")
    if event_type not in ("workflow-completed", "job-completed"):
        shown = event_type[:64] if isinstance(event_type, str) else event_type
        raise IgnoredEvent(f"CircleCI event type {shown!r} carries no CI result")
    ev: CircleCiEventBody = validate(CircleCiEventBody, doc)
    pipeline, workflow = ev.pipeline, ev.workflow
    commit, branch = (pipeline.vcs.revision, pipeline.vcs.branch) if pipeline.vcs else (None, None)
    tp = pipeline.trigger_parameters
    for alt in (tp.git, tp.gitlab) if tp else ():
        if commit is None and alt is not None:
            commit = alt.checkout_sha if isinstance(alt, _Git) else alt.commit_sha
            branch = branch or alt.branch
    if commit is None:
        raise PayloadError(
            "no commit: neither vcs.revision nor trigger_parameters.git.checkout_sha is present", "$.pipeline"
        )
    job = ev.job
    if ev.type == "job-completed":
        if job is None:
            raise PayloadError("missing job object on a job-completed event", "$.job")
    elif workflow.status is None:
        raise PayloadError("missing workflow status on a workflow-completed event", "$.workflow.status")
    else:
        job = None  # a workflow event's stage is the workflow
    return CiEvent(
        provider="circleci",
        event_id=ev.id,
        event_type=ev.type,
        delivered_at=time_of(ev.happened_at),
        commit_sha=commit,
        branch=branch,
        repository=ev.project.slug if ev.project else None,
        pipeline_id=pipeline.id,
        pipeline_number=pipeline.number,
        workflow_id=workflow.id,
        workflow_name=workflow.name,
        status=circleci_status(workflow.status),
        job_name=job.name if job else None,
        job_status=circleci_status(job.status) if job else None,
        job_number=job.number if job else None,
        raw_status=job.status if job else workflow.status,
    )


@dataclass(frozen=True)
class CircleCiWebhook:
    """Verify, then normalise: the one call an HTTP route makes for a CircleCI delivery."""

    secret: str | bytes

    def receive(self, headers: Mapping[str, str], body: bytes) -> CiEvent:
        check_json_media_type(headers)
        verify_circleci_signature(self.secret, body, lower_headers(headers).get(SIGNATURE_HEADER))
        return parse_circleci_event(body, headers)


# --- API v2 ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pipeline:
    id: str
    number: int | None
    project_slug: str | None
    state: str | None
    created_at: datetime | None
    revision: str | None
    branch: str | None
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class Workflow:
    id: str
    name: str
    status: CiStatus | None
    raw_status: str | None
    pipeline_id: str | None
    created_at: datetime | None
    stopped_at: datetime | None


@dataclass(frozen=True)
class Job:
    id: str | None  # approval jobs that never ran may lack some fields
    name: str
    type: str | None
    status: CiStatus | None
    raw_status: str | None
    job_number: int | None
    approval_request_id: str | None = None


@dataclass(frozen=True)
class JobTest:
    name: str
    classname: str
    file: str | None
    result: str  # success | failure | skipped
    message: str | None
    run_time: float


class CircleCiClient:
    """CircleCI API v2: pipeline → workflows → jobs → tests."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        client: httpx.Client | None = None,
        timeout: float = 10.0,
        max_pages: int = 100,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._client = client or httpx.Client(timeout=timeout)
        self._headers = {"Circle-Token": token, "Accept": "application/json"}
        self._max_pages = max_pages

    def close(self) -> None:
        self._client.close()

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        url = f"{self._base}{path}"
        try:
            resp = self._client.get(url, headers=self._headers, params=params)
        except httpx.HTTPError as exc:
            raise CiApiError(0, f"request failed: {exc}", url) from exc
        if resp.status_code >= 400:
            try:
                message = str(resp.json().get("message", resp.text))
            except (ValueError, AttributeError):
                message = resp.text[:200]
            if resp.status_code in (401, 403):
                raise CiAuthError(resp.status_code, message, url)
            if resp.status_code == 404:
                raise CiNotFound(resp.status_code, message, url)
            raise CiApiError(resp.status_code, message, url)
        try:
            doc = resp.json()
        except json.JSONDecodeError:
            raise CiApiError(resp.status_code, "response is not JSON", url) from None
        if not isinstance(doc, dict):
            raise CiApiError(resp.status_code, "response is not a JSON object", url)
        return doc

    def _pages(self, path: str) -> Iterator[dict[str, Any]]:
        token: str | None = None
        seen: set[str] = set()
        for _ in range(self._max_pages):
            doc = self._get(path, {"page-token": token} if token else None)
            items = doc.get("items")
            if not isinstance(items, list):
                raise CiApiError(200, "list response has no 'items' array", f"{self._base}{path}")
            for item in items:
                if isinstance(item, dict):
                    yield item
            token = doc.get("next_page_token")
            if not token:
                return
            if token in seen:
                raise CiApiError(200, f"pagination loop: token {token!r} repeated", f"{self._base}{path}")
            seen.add(token)
        raise CiApiError(200, f"more than {self._max_pages} pages", f"{self._base}{path}")

    def get_pipeline(self, pipeline_id: str) -> Pipeline:
        d = self._get(f"/pipeline/{_seg(pipeline_id)}")
        raw_vcs = d.get("vcs")
        vcs: dict[str, Any] = raw_vcs if isinstance(raw_vcs, dict) else {}
        return Pipeline(
            id=str(d.get("id")),
            number=d.get("number") if isinstance(d.get("number"), int) else None,
            project_slug=d.get("project_slug"),
            state=d.get("state"),
            created_at=_time(d.get("created_at")),
            revision=vcs.get("revision"),
            branch=vcs.get("branch"),
            raw=d,
        )

    def list_workflows(self, pipeline_id: str) -> list[Workflow]:
        return [
            Workflow(
                id=str(w.get("id")),
                name=str(w.get("name")),
                status=circleci_status(w.get("status")),
                raw_status=w.get("status"),
                pipeline_id=w.get("pipeline_id"),
                created_at=_time(w.get("created_at")),
                stopped_at=_time(w.get("stopped_at")),
            )
            for w in self._pages(f"/pipeline/{_seg(pipeline_id)}/workflow")
        ]

    def list_jobs(self, workflow_id: str) -> list[Job]:
        return [
            Job(
                id=j.get("id"),
                name=str(j.get("name")),
                type=j.get("type"),
                status=circleci_status(j.get("status")),
                raw_status=j.get("status"),
                job_number=j.get("job_number") if isinstance(j.get("job_number"), int) else None,
                approval_request_id=j.get("approval_request_id"),
            )
            for j in self._pages(f"/workflow/{_seg(workflow_id)}/job")
        ]

    def list_job_tests(self, project_slug: str, job_number: int) -> list[JobTest]:
        slug = "/".join(_seg(p) for p in project_slug.split("/"))
        out = []
        for t in self._pages(f"/project/{slug}/{int(job_number)}/tests"):
            run_time = t.get("run_time")
            out.append(
                JobTest(
                    name=str(t.get("name", "")),
                    classname=str(t.get("classname", "")),
                    file=t.get("file"),
                    result=str(t.get("result", "")),
                    message=t.get("message"),
                    run_time=float(run_time) if isinstance(run_time, int | float) else 0.0,
                )
            )
        return out


def job_tests_report(tests: list[JobTest], *, source: str) -> TestReport:
    """CircleCI test metadata → a ``TestReport`` (digest over the canonical JSON of the items).

    Results other than ``success``/``skipped`` count as failures: an unknown
    result must not pass a gate.
    """
    cases = []
    for t in tests:
        outcome = {"success": "passed", "skipped": "skipped"}.get(t.result, "failed")
        cases.append(TestCaseResult(t.classname, t.name, outcome, t.run_time, t.message or None))  # type: ignore[arg-type]
    suite = SuiteResult(
        name=source,
        tests=len(cases),
        failures=sum(c.outcome == "failed" for c in cases),
        errors=0,
        skipped=sum(c.outcome == "skipped" for c in cases),
        time_s=sum(c.time_s for c in cases),
        cases=tuple(cases),
    )
    canonical = json.dumps([t.__dict__ for t in tests], sort_keys=True, separators=(",", ":"))
    return TestReport((suite,), sha256_digest(canonical), source=source, format="circleci-tests")


def _seg(value: str) -> str:
    """One URL path segment; refuses separators so an id cannot redirect the request elsewhere."""
    if not value or "/" in value or value in (".", "..") or any(c in value for c in "?#% \\"):
        raise ValueError(f"invalid path segment {value!r}")
    return value


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


__all__ = [
    "CircleCiClient",
    "CircleCiWebhook",
    "Job",
    "JobTest",
    "Pipeline",
    "Workflow",
    "circleci_status",
    "job_tests_report",
    "parse_circleci_event",
    "verify_circleci_signature",
]
