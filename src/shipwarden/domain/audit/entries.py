"""Entries: what a caller drafts, what the chain stores, and how one entry is linked after another.

:func:`make_entry` checks a draft and links it after a chain head: the entry's canonical text
(:func:`_encode`, assembled from its parts) and its hash.  The field limits are the store's
column widths.  Timestamps are stored as fixed-width ISO-8601 UTC text (:func:`format_ts`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from shipwarden.domain.audit.canonical import _encode_object, _json_str

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first entry."""

Source = Literal["shipwarden", "kubernetes"]
SOURCES: frozenset[str] = frozenset({"shipwarden", "kubernetes"})
_OUTCOME = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
_TS_FORM = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class AuditError(ValueError):
    """An entry could not be built: a field is missing, of the wrong type, or not JSON-encodable."""


def format_ts(when: datetime) -> str:
    """ISO-8601 UTC with microseconds and ``Z`` — fixed width, so text order is time order."""
    if when.tzinfo is None:
        raise AuditError("timestamps must be timezone-aware (UTC)")
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _parse_ts(value: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise AuditError(f"invalid timestamp {value!r}: expected RFC 3339 / ISO-8601") from exc
    if dt.tzinfo is None:
        raise AuditError(f"timestamp {value!r} has no time zone")
    return dt


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """What a caller supplies for a new entry; the chain adds ``seq``, ``prev_hash``, ``hash``.

    ``ts`` defaults to the chain's clock; Kubernetes events bring their own time.
    """

    actor: str
    action: str
    outcome: str = "ok"
    source: Source = "shipwarden"
    service: str | None = None
    deployment_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    ts: datetime | str | None = None
    detail_is_json: bool = False
    """Promise that ``detail`` holds only str-keyed dicts, lists, str, int, finite float, bool, None, so
    its JSON image is itself and the decode step can be skipped (the Kubernetes converter
    builds such details).  A broken promise is not silent: verify reports content_mismatch."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One link of the chain, exactly as stored (one row per entry, plus ``canonical``)."""

    seq: int
    ts: str
    source: str
    actor: str
    action: str
    service: str | None
    deployment_id: str | None
    outcome: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str
    canonical: str

    def fields(self) -> dict[str, Any]:
        """The hashed fields (everything but ``hash`` and ``canonical``)."""
        return {
            "seq": self.seq,
            "ts": self.ts,
            "source": self.source,
            "actor": self.actor,
            "action": self.action,
            "service": self.service,
            "deployment_id": self.deployment_id,
            "outcome": self.outcome,
            "detail": self.detail,
            "prev_hash": self.prev_hash,
        }

    def to_row(self) -> dict[str, Any]:
        """Column values for the store (``detail`` as a dict; a JSON column takes it as is)."""
        return {**self.fields(), "hash": self.hash, "canonical": self.canonical}

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | Any) -> AuditEntry:
        """Rebuild from a store row: a mapping or any object with the column attributes.

        ``detail`` may be a dict or its JSON text.  Nothing is checked here —
        that is :func:`verify`'s job, and it must see the row as stored.
        """
        get: Callable[[str], Any]
        get = row.__getitem__ if isinstance(row, Mapping) else (lambda name: getattr(row, name))
        detail = get("detail")
        if isinstance(detail, str | bytes):
            detail = json.loads(detail)
        return cls(
            seq=int(get("seq")),
            ts=str(get("ts")),
            source=str(get("source")),
            actor=str(get("actor")),
            action=str(get("action")),
            service=get("service"),
            deployment_id=get("deployment_id"),
            outcome=str(get("outcome")),
            detail=dict(detail),
            prev_hash=str(get("prev_hash")),
            hash=str(get("hash")),
            canonical=str(get("canonical")),
        )

    @property
    def head(self) -> ChainHead:
        return ChainHead(self.seq, self.hash)


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The position a chain (or a segment being verified) continues from."""

    seq: int
    hash: str


GENESIS = ChainHead(0, GENESIS_HASH)


ACTOR_MAX = 256
"""Longest ``actor`` an entry may carry (the ``audit_log.actor`` column holds this many characters)."""
ACTION_MAX = 256
"""Longest ``action`` an entry may carry (the ``audit_log.action`` column holds this many characters)."""
SERVICE_MAX = 64
DEPLOYMENT_ID_MAX = 64


def _check_text(name: str, value: Any, *, nullable: bool = False, max_len: int = 256) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str) or not value or len(value) > max_len:
        what = "a non-empty string" + (" or null" if nullable else "")
        raise AuditError(f"{name} must be {what} of at most {max_len} characters, got {value!r}")


def _check_ts(ts: Any) -> None:
    if type(ts) is not str or not _TS_FORM.match(ts):
        raise AuditError(f"ts must look like 2024-05-01T12:00:00.000000Z, got {ts!r}")


def _check_draft(draft: EntryDraft) -> None:
    """Refuse a draft the chain must not hold (or the store cannot: the limits are its columns')."""
    source, actor, action, outcome = draft.source, draft.actor, draft.action, draft.outcome
    if source not in SOURCES:
        raise AuditError(f"source must be one of {sorted(SOURCES)}, got {source!r}")
    if type(actor) is not str or not 0 < len(actor) <= ACTOR_MAX:
        _check_text("actor", actor, max_len=ACTOR_MAX)
    if type(action) is not str or not 0 < len(action) <= ACTION_MAX:
        _check_text("action", action, max_len=ACTION_MAX)
    if draft.service is not None:
        _check_text("service", draft.service, nullable=True, max_len=SERVICE_MAX)
    if draft.deployment_id is not None:
        _check_text("deployment_id", draft.deployment_id, nullable=True, max_len=DEPLOYMENT_ID_MAX)
    if not isinstance(outcome, str) or not _OUTCOME.match(outcome):
        raise AuditError(
            f"outcome must be a short lower-case word such as 'ok', 'denied', 'failed', got {outcome!r}"
        )
    if type(draft.detail) is not dict and not isinstance(draft.detail, Mapping):
        raise AuditError(f"detail must be a JSON object, got {type(draft.detail).__name__}")


def _encode(
    seq: int,
    prev_hash: str,
    source: str,
    actor: str,
    action: str,
    service: str | None,
    deployment_id: str | None,
    outcome: str,
    detail: Mapping[str, Any],
    ts: str,
) -> tuple[str, str, str]:
    """Entry ``seq`` after ``prev_hash`` from checked fields: ``(detail_text, canonical, hash)``.

    The canonical text is assembled from its parts, top-level keys in their sorted order
    (action, actor, deployment_id, detail, outcome, prev_hash, seq, service, source, ts),
    every string through the canonical encoder's own string encoder and the detail through
    the canonical encoder: byte for byte ``canonical_json(fields)`` (the unit tests hold the
    two together), for about half the work.  ``detail_text`` — the detail's canonical JSON,
    exactly the fragment that is hashed — is what the store writes to its JSON column.

    The Kubernetes ingest loop (:meth:`.chain.AuditChain._k8s_rows`) has this encoding inlined
    for its fixed fields; a unit test holds the two together, and a change here goes there too.
    """
    enc = _json_str
    try:
        detail_text = _encode_object(detail)
        canonical = (
            f'{{"action":{enc(action)},"actor":{enc(actor)},"deployment_id":'
            f'{"null" if deployment_id is None else enc(deployment_id)},"detail":{detail_text},'
            f'"outcome":{enc(outcome)},"prev_hash":{enc(prev_hash)},"seq":{int.__repr__(seq)},'
            f'"service":{"null" if service is None else enc(service)},"source":{enc(source)},'
            f'"ts":{enc(ts)}}}'
        )
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as exc:
        raise AuditError(f"detail is not JSON-encodable: {exc}") from exc
    return detail_text, canonical, digest


def _link(seq: int, prev_hash: str, draft: EntryDraft, ts: str) -> tuple[str, str, str]:
    """Check ``draft`` and encode it as entry ``seq`` after ``prev_hash`` (:func:`_encode`).
    ``ts`` must be in the stored form already (:func:`_check_ts`; ``AuditChain.stamp`` makes it so)."""
    _check_draft(draft)
    return _encode(
        seq,
        prev_hash,
        draft.source,
        draft.actor,
        draft.action,
        draft.service,
        draft.deployment_id,
        draft.outcome,
        draft.detail,
        ts,
    )


def make_entry(prev: ChainHead | AuditEntry | None, draft: EntryDraft, ts: str) -> AuditEntry:
    """Validate ``draft`` and link it after ``prev`` (``None`` = genesis)."""
    head = GENESIS if prev is None else (prev.head if isinstance(prev, AuditEntry) else prev)
    seq = int(head.seq) + 1
    _check_ts(ts)
    detail_text, canonical, digest = _link(seq, head.hash, draft, ts)
    # The stored detail is the JSON image of what was hashed (tuples become lists, integer
    # keys become strings), so the columns and the canonical text can never disagree.
    detail = draft.detail if draft.detail_is_json else json.loads(detail_text)
    return AuditEntry(
        seq=seq,
        ts=ts,
        source=draft.source,
        actor=draft.actor,
        action=draft.action,
        service=draft.service,
        deployment_id=draft.deployment_id,
        outcome=draft.outcome,
        detail=detail,  # type: ignore[arg-type]
        prev_hash=head.hash,
        hash=digest,
        canonical=canonical,
    )
