"""What every CI provider adapter shares: the normalised event, errors, HMAC checks.

Inbound webhooks are the only way CI reaches shipwarden (D2), so each one is
authenticated before its body is even parsed: the signature is an HMAC-SHA256
of the **raw** body bytes (re-serialised JSON would not match), compared with
``hmac.compare_digest`` so the comparison time leaks nothing about the
expected value.  Then the provider's payload is normalised into one
``CiEvent`` so the service layer never looks at provider JSON.

Exceptions (all ``CiError``)::

    CiError
    ├── WebhookError            inbound delivery rejected (→ HTTP 4xx)
    │   ├── SignatureError      missing / malformed / wrong signature (→ 401)
    │   ├── PayloadError        body is not the documented shape (→ 400); says where
    │   └── IgnoredEvent        authentic but not something we act on (ping, …) (→ 2xx, no-op)
    └── CiApiError              outbound API call failed; ``status`` and ``message``
        ├── CiAuthError         401/403
        └── CiNotFound          404
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from shipwarden.domain.evidence.model import CiCheck
from shipwarden.domain.jsonlimits import JsonLimitError, loads_bounded

#: the deepest nesting a webhook body may have (GitHub's payloads nest about 6 levels)
MAX_JSON_DEPTH = 32


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


def hmac_sha256_hex(secret: str | bytes, body: bytes) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def digest_matches(expected_hex: str, given_hex: str) -> bool:
    """Constant-time compare of two hex digests (case-insensitive, as providers send lower case)."""
    given = given_hex.strip().lower().encode("ascii", "replace")
    return hmac.compare_digest(expected_hex.encode("ascii"), given)


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def parse_time(value: Any, path: str) -> datetime | None:
    """ISO 8601 (``Z`` suffix allowed) → aware datetime; ``None`` stays ``None``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError("expected an ISO 8601 timestamp string", path)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError(f"{value!r} is not an ISO 8601 timestamp", path) from None
    if parsed.tzinfo is None:
        raise PayloadError(f"{value!r} has no timezone", path)
    return parsed


def get_path(doc: Any, *keys: str) -> Any:
    """``doc[k1][k2]…`` or ``None`` if any level is missing or not an object."""
    for k in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(k)
    return doc


def opt_str(doc: Any, path: str, *keys: str) -> str | None:
    value = get_path(doc, *keys)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError("expected a string", path + "".join(f".{k}" for k in keys))
    return value


def load_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a webhook body, within ``domain.jsonlimits``' bounds (``PayloadError`` if not)."""
    try:
        doc = loads_bounded(body, max_depth=MAX_JSON_DEPTH)
    except JsonLimitError as exc:
        raise PayloadError(f"body is {exc}" if str(exc).startswith("not ") else str(exc)) from None
    if not isinstance(doc, dict):
        raise PayloadError("expected a JSON object", "$")
    return doc
