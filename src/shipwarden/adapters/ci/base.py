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
from datetime import datetime
from typing import Any

from shipwarden.domain.jsonlimits import JsonLimitError, loads_bounded
from shipwarden.ports.ci import (
    CiApiError as CiApiError,
)
from shipwarden.ports.ci import (
    CiAuthError as CiAuthError,
)
from shipwarden.ports.ci import (
    CiError as CiError,
)
from shipwarden.ports.ci import (
    CiEvent as CiEvent,
)
from shipwarden.ports.ci import (
    CiNotFound as CiNotFound,
)
from shipwarden.ports.ci import (
    CiStatus as CiStatus,
)
from shipwarden.ports.ci import (
    IgnoredEvent as IgnoredEvent,
)
from shipwarden.ports.ci import (
    PayloadError as PayloadError,
)
from shipwarden.ports.ci import (
    SignatureError as SignatureError,
)
from shipwarden.ports.ci import (
    WebhookError as WebhookError,
)

#: the deepest nesting a webhook body may have (GitHub's payloads nest about 6 levels)
MAX_JSON_DEPTH = 32


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
