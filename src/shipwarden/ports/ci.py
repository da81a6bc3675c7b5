"""The CI port: what a webhook delivery becomes (``CiEvent``), the errors of receiving one and of
merging a pull request, and the Protocols of the drivers (``adapters/ci/circleci.py``,
``adapters/ci/github.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol

from shipwarden.domain.evidence.model import CiCheck

__all__ = [
    "CiApiError",
    "CiAuthError",
    "CiError",
    "CiEvent",
    "CiNotFound",
    "CiStatus",
    "HeadMoved",
    "IgnoredEvent",
    "MergeError",
    "MergeForbidden",
    "MergeRejected",
    "MergeResult",
    "NotMergeable",
    "PayloadError",
    "PullNotFound",
    "PullRequestMerger",
    "SignatureError",
    "UnsupportedMediaType",
    "WebhookError",
    "WebhookReceiver",
]


class CiError(Exception):
    pass


class WebhookError(CiError):
    pass


class SignatureError(WebhookError):
    pass


class PayloadError(WebhookError):
    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class IgnoredEvent(WebhookError):
    """An authentic delivery that carries no CI result (e.g. ping); answer 2xx and do nothing."""


class CiApiError(CiError):
    def __init__(self, status: int, message: str, url: str = "") -> None:
        self.status = status
        self.message = message
        self.url = url
        super().__init__(f"{status} from {url}: {message}" if url else f"{status}: {message}")


class CiAuthError(CiApiError):
    pass


class CiNotFound(CiApiError):
    pass


class CiStatus(StrEnum):
    """Provider statuses folded into one vocabulary; only ``SUCCESS`` ever satisfies a gate."""

    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"
    RUNNING = "running"
    QUEUED = "queued"
    ON_HOLD = "on_hold"
    SKIPPED = "skipped"
    NEUTRAL = "neutral"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CiEvent:
    """One CI webhook delivery, provider-neutral.

    ``event_id`` is the dedupe key (CircleCI body ``id``, GitHub
    ``X-GitHub-Delivery``).  ``delivered_at`` is a provider-signed time when
    there is one (CircleCI ``happened_at``), else ``None``.  ``workflow_*``
    describe the pipeline stage (CircleCI workflow, GitHub workflow run or
    check suite); ``job_*`` are set for job-level events only (CircleCI job, GitHub
    check run or commit status).  ``before_sha``/``forced`` describe a push.  ``labels`` is the
    pull request's label set after the event (possibly empty) for the events that carry one,
    ``None`` for the others.
    """

    provider: str
    event_id: str
    event_type: str
    delivered_at: datetime | None
    commit_sha: str | None
    branch: str | None
    repository: str | None = None
    pipeline_id: str | None = None
    pipeline_number: int | None = None
    workflow_id: str | None = None
    workflow_name: str | None = None
    status: CiStatus | None = None
    job_name: str | None = None
    job_status: CiStatus | None = None
    job_number: int | None = None
    pull_requests: tuple[int, ...] = ()
    labels: tuple[str, ...] | None = None
    raw_status: str | None = None
    #: a push: the branch's head before it, and whether the pusher forced it (GitHub ``push``)
    before_sha: str | None = None
    forced: bool | None = None

    @property
    def stage_name(self) -> str | None:
        """The name a policy's ``ci.required`` list refers to: the job if any, else the workflow."""
        return self.job_name or self.workflow_name

    @property
    def stage_status(self) -> CiStatus | None:
        return self.job_status if self.job_name else self.status

    def as_check(self) -> CiCheck | None:
        """The gate-facing fact (``CiCheck``) this event proves, or ``None`` if it carries no stage result.

        Store it as ``Evidence(category="ci", commit_sha=self.commit_sha, ...)``.
        """
        name, status = self.stage_name, self.stage_status
        if name is None or status is None:
            return None
        return CiCheck(self.provider, name, status.value, self.pipeline_id)


class UnsupportedMediaType(PayloadError):
    """The delivery is not ``application/json`` (→ 415)."""


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




@dataclass(frozen=True)
class MergeResult:
    sha: str
    merged: bool
    message: str


class WebhookReceiver(Protocol):
    """One CI provider's webhook: verify the signature (the secret it was built with), check the
    documented payload, and say what happened (``CiEvent``), or raise ``SignatureError``,
    ``PayloadError`` (``UnsupportedMediaType``) or ``IgnoredEvent``."""

    def receive(self, headers: Mapping[str, str], body: bytes) -> CiEvent: ...


class PullRequestMerger(Protocol):
    """A code host that merges a pull request only while its head is still ``sha``."""

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
    ) -> MergeResult: ...

    def close(self) -> None: ...
