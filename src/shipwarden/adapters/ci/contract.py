"""Field types shared by the providers' webhook contracts (Pydantic), and their error mapping.

Each provider module declares its documented payload as Pydantic models built from these types;
a body is validated whole before anything is stored, and the first violation becomes a
``PayloadError`` naming its JSON path (``$.workflow_run.head_sha``).  The types encode what the
rest of shipwarden relies on: a commit is 40 lower-case hex digits, a branch is a name git
accepts (``domain.gitref``), ids and names fit their columns and contain nothing non-printable,
and every integer fits the column it is stored in.  Types are strict (no ``"1"`` → ``1``
coercion); unknown keys are ignored because the providers add fields over time.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from shipwarden.adapters.ci.base import lower_headers, parse_time
from shipwarden.domain.gitref import branch_problem, ref_problem
from shipwarden.ports.ci import PayloadError
from shipwarden.ports.ci import (
    UnsupportedMediaType as UnsupportedMediaType,
)

__all__ = [
    "INT32_MAX",
    "Branch",
    "Contract",
    "Count",
    "Ident",
    "IsoTime",
    "LargeId",
    "Name",
    "Ref",
    "Sha",
    "UnsupportedMediaType",
    "check_json_media_type",
    "event_header",
    "payload_error",
    "printable",
    "time_of",
    "validate",
]

INT32_MAX = 2**31 - 1  # the INTEGER columns (changes.pr_number)
_SHA = re.compile(r"^[0-9a-f]{40}$")
_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_EVENT = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def _sha(value: str) -> str:
    if not _SHA.match(value):
        raise ValueError("expected a full commit sha: 40 lower-case hex digits")
    return value


def _branch(value: str) -> str:
    problem = branch_problem(value)
    if problem:
        raise ValueError(f"not a valid git branch name: it {problem}")
    return value


def _ref(value: str) -> str:
    problem = ref_problem(value)
    if problem:
        raise ValueError(f"not a valid git ref: it {problem}")
    return value


def printable(value: str) -> str:
    for ch in value:
        if not ch.isprintable() or unicodedata.category(ch) == "Cf":
            raise ValueError(f"contains the non-printable character U+{ord(ch):04X}")
    return value


def _ident(value: str) -> str:
    if not _IDENT.match(value):
        raise ValueError("expected an id of 1-128 letters, digits, '.', '_', ':' or '-'")
    return value


def _iso_time(value: str) -> str:
    try:
        parse_time(value, "")
    except PayloadError:
        raise ValueError("expected an ISO 8601 timestamp with a time zone") from None
    return value


Sha = Annotated[StrictStr, AfterValidator(_sha)]
Branch = Annotated[StrictStr, AfterValidator(_branch)]
Ref = Annotated[StrictStr, AfterValidator(_ref)]
Ident = Annotated[StrictStr, AfterValidator(_ident)]
Name = Annotated[StrictStr, Field(min_length=1, max_length=255), AfterValidator(printable)]
IsoTime = Annotated[StrictStr, Field(max_length=64), AfterValidator(_iso_time)]
Count = Annotated[StrictInt, Field(ge=0, le=INT32_MAX)]
"""Run, pipeline, job and pull-request numbers: small counters; stored in INTEGER columns."""
LargeId = Annotated[StrictInt, Field(ge=0, le=2**53)]
"""Provider-wide numeric ids (GitHub run and suite ids): JSON-safe integers."""


class Contract(BaseModel):
    """A documented payload object: unknown keys ignored, known ones validated, immutable."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def payload_error(exc: ValidationError) -> PayloadError:
    """The first violation as a ``PayloadError`` with its JSON path (``$.a.b[0].c``)."""
    err = exc.errors(include_url=False, include_input=False)[0]
    path = "$"
    for part in err["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    message = str(err["msg"]).removeprefix("Value error, ")
    return PayloadError(message[:300], path)


def check_json_media_type(headers: Mapping[str, str]) -> None:
    """Raise ``UnsupportedMediaType`` unless ``Content-Type`` is ``application/json`` (charset utf-8)."""
    raw = lower_headers(headers).get("content-type")
    if raw is None:
        raise UnsupportedMediaType("missing Content-Type header: webhook bodies are application/json")
    media, _, params = raw.partition(";")
    if media.strip().lower() != "application/json":
        raise UnsupportedMediaType(f"Content-Type must be application/json, not {media.strip()[:64]!r}")
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"charset must be utf-8, not {value.strip()[:32]!r}")


def event_header(headers: Mapping[str, str], name: str) -> str:
    """The event-type header's value; ``PayloadError`` when it is missing or not an event name."""
    value = lower_headers(headers).get(name.lower())
    if not value:
        raise PayloadError(f"missing {name} header")
    if not _EVENT.match(value):
        raise PayloadError(f"{name} header is not an event name: {value[:64]!r}")
    return value


def validate(model: type[Contract], doc: Any) -> Any:
    """``model.model_validate(doc)``; a violation raises ``PayloadError`` with its JSON path."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise payload_error(exc) from None


def time_of(value: str | None) -> datetime | None:
    return parse_time(value, "") if value is not None else None
