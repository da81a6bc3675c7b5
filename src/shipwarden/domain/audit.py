"""The audit chain: an append-only, hash-linked log that proves its own integrity.

Why a hash chain
----------------
Requirement D6 asks for an audit store that is *tamper-evident*: nobody, not
even someone with write access to the database, should be able to edit,
delete, insert or reorder a record without the next verification noticing and
saying where.  A plain table cannot promise that.  A hash chain can: every
entry carries the hash of the entry before it (``prev_hash``) and a hash of its
own content (``hash``), so changing any byte of entry *k* changes its hash,
which no longer matches the ``prev_hash`` stored in entry *k+1*, and so on to
the head.  The first entry links to the genesis value, 64 zeros.

What is hashed — the canonical encoding
---------------------------------------
``hash = sha256(canonical).hexdigest()`` where ``canonical`` is the JSON text of
every field except ``hash`` itself (``seq, ts, source, actor, action, service,
deployment_id, outcome, detail, prev_hash``) encoded as:

* a JSON object, keys sorted by code point at every depth;
* no insignificant whitespace (separators ``,`` and ``:``);
* non-ASCII characters written as themselves, the text encoded as UTF-8;
* ``NaN``/``Infinity`` refused; ``null`` for absent ``service``/``deployment_id``.

The canonical *text* is stored beside the entry (the ``canonical`` column) and
is the authoritative record; the other columns are an index over it for
queries.  Verification therefore hashes the stored bytes and never needs to
re-serialise a dict, which has two payoffs: it is fast (one sha256 over a few
hundred bytes per entry), and a verifier written in another language needs only
sha256 and a JSON parser, not a byte-exact re-implementation of Python's
``json.dumps`` (float formatting being the usual trap).

Writing is the hot path for Kubernetes audit batches (bench/audit.py, goal 20,000
events/s through the store), so the text is not made by encoding the whole entry
dict: the top-level keys are written in their fixed sorted order around the detail's
own canonical JSON (:func:`_encode`), and a Kubernetes detail, which the converter
builds already sorted and float-free, is encoded by a faster order-keeping encoder
(:func:`_make_sorted_object_encoder`).  The bytes are exactly ``canonical_json`` of
the entry: the unit tests hold every path to it on generated input.  The detail's
JSON text is also what the store writes to its ``detail`` column
(:meth:`AuditChain.rows`), so nothing is encoded twice.

Two verification paths
----------------------
* :func:`verify_canonical` — the fast path — streams ``(canonical, hash)``
  pairs.  Per entry it does one sha256 and one string comparison: the
  top-level ``"prev_hash":"…","seq":N,`` fragment must name the previous hash
  and the next sequence number.  With sorted keys those two fields are adjacent,
  and the *last* occurrence of ``"prev_hash":"`` is the top-level one (only
  ``seq``, ``service``, ``source`` and ``ts`` follow it, none of which can hold
  an unescaped quote), so no JSON parsing is needed unless something is wrong.
  A few microseconds per entry, most of it sha256: bench/audit.py measures a
  million entries in about 2.5 s of CPU.  The store streams the two columns
  ``SELECT canonical, hash ... ORDER BY seq``.
* :func:`verify` — the full path — also parses each canonical text and checks
  that the queryable columns still say what was hashed, so an edit to the
  ``actor`` column alone (leaving ``canonical`` intact) is reported too.  The JSON
  parse makes it several times slower; run it on a schedule or on export, and the
  fast path on every read of the trail.

Both run in constant memory (the previous hash and a cursor into the sorted
checkpoints) and stop at the first problem, reporting its sequence number and
kind (:class:`Problem`).  "Where" is the position at which the chain stops
being consistent: for a deleted entry it is the seq that is missing, for an
entry rewritten with a recomputed hash it is the *next* entry, whose link no
longer matches.

Why signed checkpoints
----------------------
A chain alone cannot detect two attacks: cutting off the tail (the remaining
prefix is perfectly consistent) and rewriting everything from some point on
while recomputing every hash.  Both are caught by *checkpoints*: every
``checkpoint_every`` entries (and on demand, e.g. when a dossier is exported)
the head ``{seq, hash, ts}`` is signed with shipwarden's Ed25519 key, whose
private half the database never sees.  Verification checks each signature and
that the chain, when it reaches a checkpoint's ``seq``, has exactly that hash;
a chain that ends before a signed checkpoint was truncated.  Entries after the
last checkpoint are protected by the chain only, which is why checkpoints are
cheap and frequent.

This module does no I/O.  Time comes from an injected clock; keys are passed in.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "ACTION_MAX",
    "ACTOR_MAX",
    "DEPLOYMENT_ID_MAX",
    "GENESIS_HASH",
    "AuditChain",
    "AuditEntry",
    "AuditError",
    "ChainHead",
    "Checkpoint",
    "EntryDraft",
    "K8sAuditError",
    "K8sBatch",
    "ROW_COLUMNS",
    "K8sProblem",
    "Problem",
    "VerifyReport",
    "canonical_json",
    "entry_hash",
    "format_ts",
    "k8s_batch",
    "k8s_event_list_to_drafts",
    "make_entry",
    "sign_checkpoint",
    "verify",
    "verify_canonical",
]

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first entry."""

Source = Literal["shipwarden", "kubernetes"]
SOURCES: frozenset[str] = frozenset({"shipwarden", "kubernetes"})
_OUTCOME = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHECKPOINT_TYPE = "shipwarden.audit.checkpoint.v1"
_PREV_MARK = '"prev_hash":"'
_TS_FORM = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class AuditError(ValueError):
    """An entry could not be built: a field is missing, of the wrong type, or not JSON-encodable."""


# ---------------------------------------------------------------------------------------------
# Canonical encoding


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(obj: Any) -> str:
    """Encode ``obj`` canonically: sorted keys, no spaces, non-ASCII kept (UTF-8 when hashed), no NaN."""
    return _ENCODER.encode(obj)


def _make_object_encoder() -> Callable[[Any], str]:
    """``canonical_json`` for JSON objects (entry details), minus the per-call set-up.

    ``JSONEncoder.encode`` builds a fresh C encoder on every call and tracks containers to
    refuse circular references; on the ingest path that overhead is a fifth of encoding a
    Kubernetes event's detail.  This is the same C encoder, with the same settings, built
    once; a circular structure ends in ``RecursionError`` instead of ``ValueError``.  Falls
    back to ``canonical_json`` where the C accelerator is missing or disagrees on a sample."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return canonical_json
    enc = make(None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", True, False, False)

    def encode_object(obj: Any) -> str:
        return "".join(enc(obj, 0))

    sample = {"z": [1, 2.5, None, True], "é": {"b": '\u2028"\n', "a": -0.0}, "1": 10**20}
    return encode_object if encode_object(sample) == canonical_json(sample) else canonical_json


_encode_object = _make_object_encoder()


def _make_sorted_object_encoder() -> Callable[[Any], str]:
    """``canonical_json`` for a JSON object whose every dict is already in sorted key order and
    that holds only str, int, bool, None, lists and such dicts — the Kubernetes converter builds
    its details so (:func:`_k8s_event`).  pydantic_core's encoder (Rust, a pinned dependency)
    writes it in about half the time of the stdlib's C encoder; it keeps key order, escapes
    exactly as ``json`` does with ``ensure_ascii=False`` and refuses lone surrogates.  It is used
    only if it agrees with ``canonical_json`` on a sample that exercises all of that (the unit
    tests hold the two together on generated input); otherwise this is ``_encode_object``."""
    try:
        from pydantic_core import PydanticSerializationError, to_json
    except ImportError:  # pragma: no cover - pydantic is a dependency
        return _encode_object

    def encode_sorted(obj: Any) -> str:
        try:
            return to_json(obj).decode()
        except PydanticSerializationError as exc:  # e.g. a lone surrogate: what json would refuse
            raise ValueError(str(exc)) from None

    sample = {
        "": None,
        "a": ['"\\/\b\f\n\r\t\x00\x1f\x7f', "é\u2028\u2029\ufeff😀", "", True, False],
        "b": {"k": -(10**30), "l": [[], {}, 0, 2**63]},
        "é": "\u00e9 text",
    }
    try:
        agrees = encode_sorted(sample) == canonical_json(sample)
    except ValueError:  # pragma: no cover
        agrees = False
    return encode_sorted if agrees else _encode_object


_encode_sorted_object = _make_sorted_object_encoder()


def entry_hash(canonical: str) -> str:
    """The chain hash of one entry: hex sha256 of its canonical text's UTF-8 bytes.

    Text that is not valid Unicode (a lone surrogate) hashes to ``""``, which matches no
    stored hash: :func:`make_entry` refuses such text, so only tampering can produce it.
    """
    try:
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    except UnicodeEncodeError:
        return ""


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


# ---------------------------------------------------------------------------------------------
# Entries


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

ROW_COLUMNS = (
    "seq",
    "ts",
    "source",
    "actor",
    "action",
    "service",
    "deployment_id",
    "outcome",
    "detail",
    "prev_hash",
    "hash",
    "canonical",
)
"""The order of the values in a row from :meth:`AuditChain.rows` (the ``audit_log`` columns)."""

_json_str = json.encoder.encode_basestring
"""The string encoder ``_ENCODER`` uses (``ensure_ascii=False``): the same bytes for every str."""


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


# ---------------------------------------------------------------------------------------------
# Checkpoints


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement "entry ``seq`` of the chain has hash ``hash``", made at ``ts``.

    ``key_id`` names the signing key (its fingerprint, see ``security.signing.fingerprint``)
    so keys can rotate: verification takes a mapping of key ids to public keys.
    """

    seq: int
    hash: str
    ts: str
    key_id: str
    signature: str  # hex: unlike base64 it has no spare bits, so every character matters

    def payload(self) -> bytes:
        """The signed bytes: canonical JSON of everything but the signature, plus a type tag."""
        return _checkpoint_payload(self.seq, self.hash, self.ts, self.key_id)

    def to_row(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "ts": self.ts,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Checkpoint:
        return cls(
            seq=int(row["seq"]),
            hash=str(row["hash"]),
            ts=str(row["ts"]),
            key_id=str(row["key_id"]),
            signature=str(row["signature"]),
        )


def _checkpoint_payload(seq: int, hash_: str, ts: str, key_id: str) -> bytes:
    doc = {"type": _CHECKPOINT_TYPE, "seq": seq, "hash": hash_, "ts": ts, "key_id": key_id}
    return canonical_json(doc).encode("utf-8")


def sign_checkpoint(
    head: ChainHead | AuditEntry, ts: datetime, key: Ed25519PrivateKey, key_id: str
) -> Checkpoint:
    """Sign the chain head with ``key``; ``key_id`` is stored so verifiers pick the right public key."""
    h = head.head if isinstance(head, AuditEntry) else head
    stamp = format_ts(ts)
    sig = key.sign(_checkpoint_payload(h.seq, h.hash, stamp, key_id))
    return Checkpoint(seq=h.seq, hash=h.hash, ts=stamp, key_id=key_id, signature=sig.hex())


def _checkpoint_valid(cp: Checkpoint, keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    """``None`` if the signature is good, else why not."""
    pub = keys.get(cp.key_id)
    if pub is None:
        return f"checkpoint at seq {cp.seq} is signed by unknown key {cp.key_id!r}"
    try:
        pub.verify(bytes.fromhex(cp.signature), cp.payload())
    except (InvalidSignature, ValueError):
        return f"checkpoint at seq {cp.seq} has an invalid signature"
    return None


# ---------------------------------------------------------------------------------------------
# Verification


class Problem(StrEnum):
    """What verification found wrong, at ``VerifyReport.seq``."""

    SEQ_GAP = "seq_gap"
    """The entry at this position does not carry this seq: one was deleted, inserted or moved."""
    HASH_MISMATCH = "hash_mismatch"
    """The stored hash is not the sha256 of the stored canonical text: one of them was edited."""
    CONTENT_MISMATCH = "content_mismatch"
    """The queryable columns differ from the canonical (hashed) text: a column was edited."""
    BROKEN_LINK = "broken_link"
    """``prev_hash`` differs from the previous entry's hash: that entry was rewritten, or this link."""
    MALFORMED = "malformed"
    """The canonical text is not a well-formed entry."""
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    """The chain's hash at a signed checkpoint differs: the chain was rewritten and re-hashed."""
    CHECKPOINT_SIGNATURE = "checkpoint_signature"
    """A checkpoint's signature does not verify (or its key is unknown): the checkpoint is forged."""
    TRUNCATED = "truncated"
    """The chain ends before a signed checkpoint: its tail was removed."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Outcome of a verification: ``ok``, or the first bad ``seq`` and the kind of problem."""

    ok: bool
    entries_checked: int
    head: ChainHead
    checkpoints_checked: int = 0
    seq: int | None = None
    problem: Problem | None = None
    message: str = ""

    def __bool__(self) -> bool:
        return self.ok


def _prepare_checkpoints(
    checkpoints: Iterable[Checkpoint], keys: Mapping[str, Ed25519PublicKey] | None, start: ChainHead
) -> tuple[list[Checkpoint], VerifyReport | None]:
    cps = sorted((c for c in checkpoints if c.seq > start.seq), key=lambda c: c.seq)
    if cps and keys is None:
        raise ValueError("checkpoints given without public keys to check them")
    for cp in cps:
        why = _checkpoint_valid(cp, keys or {})
        if why:
            return cps, VerifyReport(False, 0, start, 0, cp.seq, Problem.CHECKPOINT_SIGNATURE, why)
    return cps, None


class _Cursor:
    """Walks the sorted checkpoints alongside the chain; constant work per entry."""

    __slots__ = ("cps", "i", "next_seq")

    def __init__(self, cps: list[Checkpoint]) -> None:
        self.cps = cps
        self.i = 0
        self.next_seq = cps[0].seq if cps else -1

    def check(self, seq: int, digest: str) -> str | None:
        """Compare every checkpoint at ``seq`` (there may be several, e.g. one per key)."""
        while self.i < len(self.cps) and self.cps[self.i].seq == seq:
            cp = self.cps[self.i]
            self.i += 1
            if cp.hash != digest:
                self.next_seq = -1
                return (
                    f"entry {seq} hashes to {digest[:12]}… but the checkpoint signed at {cp.ts} "
                    f"says {cp.hash[:12]}…: the chain was rewritten"
                )
        self.next_seq = self.cps[self.i].seq if self.i < len(self.cps) else -1
        return None

    def finish(self, entries: int, head: ChainHead) -> VerifyReport:
        if self.i < len(self.cps):
            cp = self.cps[-1]
            return VerifyReport(
                False,
                entries,
                head,
                self.i,
                head.seq + 1,
                Problem.TRUNCATED,
                f"the chain ends at seq {head.seq} but a checkpoint signed at {cp.ts} "
                f"covers seq {cp.seq}: the tail was removed",
            )
        return VerifyReport(True, entries, head, self.i)


def _diagnose(canonical: str, expected_seq: int, prev: str) -> tuple[Problem, str]:
    """Slow path for the fast verifier: say why a canonical text did not fit the chain."""
    try:
        doc = json.loads(canonical)
        seq, link = doc["seq"], doc["prev_hash"]
    except (ValueError, TypeError, KeyError):
        return Problem.MALFORMED, f"entry at seq {expected_seq}: canonical text is not a valid entry"
    if seq != expected_seq:
        return Problem.SEQ_GAP, f"expected seq {expected_seq}, found {seq!r}"
    if link != prev:
        return Problem.BROKEN_LINK, (
            f"entry {expected_seq} links to {str(link)[:12]}… but entry "
            f"{expected_seq - 1} hashes to {prev[:12]}…"
        )
    return Problem.MALFORMED, f"entry {expected_seq}: canonical text is not in canonical form"


def verify_canonical(
    pairs: Iterable[tuple[str, str]],
    *,
    checkpoints: Iterable[Checkpoint] = (),
    keys: Mapping[str, Ed25519PublicKey] | None = None,
    start: ChainHead = GENESIS,
) -> VerifyReport:
    """Fast path: verify a stream of ``(canonical, hash)`` pairs in seq order.

    Proves the canonical records form an unbroken, unaltered chain from ``start``
    and agree with every signed checkpoint.  It does not look at the queryable
    columns; :func:`verify` does.  Constant memory; stops at the first problem.
    """
    cps, bad = _prepare_checkpoints(checkpoints, keys, start)
    if bad is not None:
        return bad
    cursor = _Cursor(cps)
    prev, seq, n = start.hash, start.seq, 0
    sha256 = hashlib.sha256
    for canonical, stored in pairs:
        seq += 1
        frag = f'"prev_hash":"{prev}","seq":{seq},'
        if not canonical.startswith(frag, canonical.rfind(_PREV_MARK)):
            kind, msg = _diagnose(canonical, seq, prev)
            return VerifyReport(False, n, ChainHead(seq - 1, prev), cursor.i, seq, kind, msg)
        try:
            digest = sha256(canonical.encode()).hexdigest()
        except UnicodeEncodeError:  # a lone surrogate: nothing make_entry could have written
            digest = ""
        if digest != stored:
            return VerifyReport(
                False,
                n,
                ChainHead(seq - 1, prev),
                cursor.i,
                seq,
                Problem.HASH_MISMATCH,
                f"entry {seq}: stored hash {stored[:12]}… is not the hash of its "
                f"canonical text ({digest[:12]}…)",
            )
        n += 1
        if seq == cursor.next_seq:
            why = cursor.check(seq, digest)
            if why:
                return VerifyReport(
                    False, n, ChainHead(seq, digest), cursor.i, seq, Problem.CHECKPOINT_MISMATCH, why
                )
        prev = digest
    return cursor.finish(n, ChainHead(seq, prev))


def verify(
    entries: Iterable[AuditEntry],
    *,
    checkpoints: Iterable[Checkpoint] = (),
    keys: Mapping[str, Ed25519PublicKey] | None = None,
    start: ChainHead = GENESIS,
    columns: bool = True,
) -> VerifyReport:
    """Full path: everything :func:`verify_canonical` checks, plus that each entry's columns
    still equal its hashed canonical text.  Entries must come in stored (seq) order.

    ``columns=False`` skips the column comparison (one JSON parse per entry, most of the
    cost) and runs the fast path over the entries' canonical text and hash.
    """
    if not columns:
        pairs = ((e.canonical, e.hash) for e in entries)
        return verify_canonical(pairs, checkpoints=checkpoints, keys=keys, start=start)
    cps, bad = _prepare_checkpoints(checkpoints, keys, start)
    if bad is not None:
        return bad
    cursor = _Cursor(cps)
    prev, seq, n = start.hash, start.seq, 0
    for e in entries:
        seq += 1
        kind: Problem | None = None
        digest = ""
        if e.seq != seq:
            kind, msg = Problem.SEQ_GAP, f"expected seq {seq}, found {e.seq}"
        elif (digest := entry_hash(e.canonical)) != e.hash:
            kind, msg = (
                Problem.HASH_MISMATCH,
                (
                    f"entry {seq}: stored hash {e.hash[:12]}… is not the hash "
                    f"of its canonical text ({digest[:12]}…)"
                ),
            )
        else:
            try:
                hashed = json.loads(e.canonical)
            except ValueError:
                hashed = None
            stored = e.fields()
            if hashed != stored:
                got = hashed if isinstance(hashed, dict) else {}
                differ = sorted(k for k, v in stored.items() if got.get(k, ...) != v)
                kind, msg = (
                    Problem.CONTENT_MISMATCH,
                    (f"entry {seq}: column(s) {', '.join(differ)} differ from the hashed record"),
                )
            elif e.prev_hash != prev:
                kind, msg = (
                    Problem.BROKEN_LINK,
                    (f"entry {seq} links to {e.prev_hash[:12]}… but entry {seq - 1} hashes to {prev[:12]}…"),
                )
        if kind is not None:
            return VerifyReport(False, n, ChainHead(seq - 1, prev), cursor.i, seq, kind, msg)
        n += 1
        if seq == cursor.next_seq:
            why = cursor.check(seq, digest)
            if why:
                return VerifyReport(
                    False, n, ChainHead(seq, digest), cursor.i, seq, Problem.CHECKPOINT_MISMATCH, why
                )
        prev = digest
    return cursor.finish(n, ChainHead(seq, prev))


# ---------------------------------------------------------------------------------------------
# The helper services call


class AuditChain:
    """Builds entries and checkpoints with an injected clock; verifies with the module functions.

    The store holds the head; this object holds only policy (clock, checkpoint interval),
    so one instance serves every request.
    """

    def __init__(self, clock: Callable[[], datetime], *, checkpoint_every: int = 1000) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.clock = clock
        self.checkpoint_every = checkpoint_every

    def stamp(self, when: datetime | str | None) -> str:
        """The stored form of an entry's time: ``when``, or the clock's now when it is ``None``."""
        if when is None:
            when = self.clock()
        if isinstance(when, str):
            # Already in the stored form (Kubernetes sends exactly this): keep the text as is.
            return when if _TS_FORM.match(when) and _parse_ts(when) else format_ts(_parse_ts(when))
        return format_ts(when)

    def append(
        self, prev: ChainHead | AuditEntry | None, fields: EntryDraft | Mapping[str, Any]
    ) -> AuditEntry:
        """The entry that follows ``prev`` (``None`` = first entry).  ``fields`` is a draft or its kwargs."""
        draft = fields if isinstance(fields, EntryDraft) else EntryDraft(**fields)
        return make_entry(prev, draft, self.stamp(draft.ts))

    def extend(
        self, prev: ChainHead | AuditEntry | None, drafts: Iterable[EntryDraft | Mapping[str, Any]]
    ) -> Iterator[AuditEntry]:
        """Append several entries in order (e.g. one Kubernetes ``EventList``)."""
        for d in drafts:
            prev = self.append(prev, d)
            yield prev

    def rows(
        self,
        prev: ChainHead | AuditEntry | None,
        drafts: Iterable[EntryDraft | Mapping[str, Any]] | K8sBatch,
    ) -> list[tuple[Any, ...]]:
        """What :meth:`extend` links, as the store's column values: per entry a tuple in
        :data:`ROW_COLUMNS` order holding :meth:`AuditEntry.to_row`'s values, except that
        ``detail`` is its canonical JSON text, the very fragment that was hashed, so the store
        writes it to its JSON column without encoding the detail a second time.

        This is the batch ingest path: same validation, same canonical text and hash as
        :func:`make_entry`, no :class:`AuditEntry` objects.  A :class:`K8sBatch` (one
        Kubernetes ``EventList``, converted by :func:`k8s_batch`) is linked without building
        drafts, as what the converter guarantees need not be checked again."""
        if isinstance(drafts, K8sBatch):
            return self._k8s_rows(prev, drafts)
        head = GENESIS if prev is None else (prev.head if isinstance(prev, AuditEntry) else prev)
        seq, prev_hash = int(head.seq), head.hash
        stamp, link = self.stamp, _link
        out: list[tuple[Any, ...]] = []
        append = out.append
        for d in drafts:
            draft = d if isinstance(d, EntryDraft) else EntryDraft(**d)
            ts = stamp(draft.ts)
            seq += 1
            detail_text, canonical, digest = link(seq, prev_hash, draft, ts)
            append(
                (
                    seq,
                    ts,
                    draft.source,
                    draft.actor,
                    draft.action,
                    draft.service,
                    draft.deployment_id,
                    draft.outcome,
                    detail_text,
                    prev_hash,
                    digest,
                    canonical,
                )
            )
            prev_hash = digest
        return out

    def _k8s_rows(self, prev: ChainHead | AuditEntry | None, batch: K8sBatch) -> list[tuple[Any, ...]]:
        if batch._sealed is not _SEALED:
            return self.rows(prev, batch.drafts())
        head = GENESIS if prev is None else (prev.head if isinstance(prev, AuditEntry) else prev)
        seq, prev_hash = int(head.seq), head.hash
        enc, encode_object, sha256 = _json_str, _encode_sorted_object, hashlib.sha256
        out: list[tuple[Any, ...]] = []
        append = out.append
        for actor, action, outcome, detail, when in batch.events:
            # The converter made sure of all this; the cheap part is checked again all the same,
            # as the store's columns must hold the values.
            if (
                type(actor) is not str
                or not 0 < len(actor) <= ACTOR_MAX
                or type(action) is not str
                or not 0 < len(action) <= ACTION_MAX
                or outcome not in _K8S_OUTCOMES
                or type(detail) is not dict
            ):
                raise AuditError(f"not a converted Kubernetes event: {(actor, action, outcome)!r}")
            # A str time is the event's own, already in the stored form (k8s_batch checks it).
            ts = when if isinstance(when, str) else format_ts(when)
            seq += 1
            # _encode for source "kubernetes", no service or deployment, an outcome from a fixed
            # set of plain words (inlined: this loop runs for every event; a test holds the two
            # together).
            try:
                detail_text = encode_object(detail)
                canonical = (
                    f'{{"action":{enc(action)},"actor":{enc(actor)},"deployment_id":null,'
                    f'"detail":{detail_text},"outcome":"{outcome}","prev_hash":{enc(prev_hash)},'
                    f'"seq":{seq},"service":null,"source":"kubernetes","ts":{enc(ts)}}}'
                )
                digest = sha256(canonical.encode("utf-8")).hexdigest()
            except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as exc:
                raise AuditError(f"detail is not JSON-encodable: {exc}") from exc
            append(
                (
                    seq,
                    ts,
                    "kubernetes",
                    actor,
                    action,
                    None,
                    None,
                    outcome,
                    detail_text,
                    prev_hash,
                    digest,
                    canonical,
                )
            )
            prev_hash = digest
        return out

    def checkpoint_due(self, head: ChainHead | AuditEntry) -> bool:
        """True when ``head`` is on the periodic checkpoint grid."""
        return head.seq > 0 and head.seq % self.checkpoint_every == 0

    def checkpoint(self, head: ChainHead | AuditEntry, key: Ed25519PrivateKey, key_id: str) -> Checkpoint:
        """Sign ``head`` now (periodic or on demand)."""
        return sign_checkpoint(head, self.clock(), key, key_id)

    verify = staticmethod(verify)
    verify_canonical = staticmethod(verify_canonical)


# ---------------------------------------------------------------------------------------------
# Kubernetes audit events (audit.k8s.io/v1, as the webhook backend POSTs them)

_K8S_STAGES = frozenset({"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"})
_K8S_LEVELS = frozenset({"None", "Metadata", "Request", "RequestResponse"})
_OBJECT_REF_KEYS = ("apiGroup", "apiVersion", "name", "namespace", "subresource")  # sorted
_ONLY_STR = frozenset({str})
_K8S_OUTCOMES = frozenset({"ok", "denied", "failed", "pending"})
_SEALED = object()


@dataclass(frozen=True, slots=True)
class K8sProblem:
    """One thing wrong with an ``EventList``: a JSON path (``items[3].user.username``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class K8sAuditError(ValueError):
    """The batch is malformed; nothing from it may be stored.  ``problems`` lists every issue."""

    def __init__(self, problems: Sequence[K8sProblem]) -> None:
        self.problems = list(problems)
        shown = "; ".join(map(str, self.problems[:10]))
        more = f" (and {len(self.problems) - 10} more)" if len(self.problems) > 10 else ""
        super().__init__(f"invalid Kubernetes audit EventList: {shown}{more}")


def _k8s_outcome(stage: str, code: int | None) -> str:
    if stage == "Panic":
        return "failed"
    if code is None:
        return "pending"  # RequestReceived / ResponseStarted: the answer is not known yet
    if code in (401, 403):
        return "denied"
    return "ok" if code < 400 else "failed"


def _need_str(
    ev: dict[str, Any], key: str, at: str, problems: list[K8sProblem], allowed: frozenset[str] | None = None
) -> str:
    v = ev.get(key)
    if type(v) is not str or not v:
        got = " (missing)" if v is None else f", got {v!r}"
        problems.append(K8sProblem(f"{at}.{key}", f"required non-empty string{got}"))
        return ""
    if allowed is not None and v not in allowed:
        problems.append(K8sProblem(f"{at}.{key}", f"must be one of {sorted(allowed)}, got {v!r}"))
    return v


def _bounded(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the last one ``…``, if it is longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sorted_keys(d: dict[str, Any]) -> bool:
    keys = list(d)
    return all(a < b for a, b in zip(keys, keys[1:], strict=False))


_K8sEvent = tuple[str, str, str, dict[str, Any], datetime | str]
"""A converted event: ``(actor, action, outcome, detail, when)`` — source is ``kubernetes``, and
there is no service or deployment; ``when`` is a str only if it is in the stored form."""


def _k8s_event(ev: Any, i: int, received_at: datetime, problems: list[K8sProblem]) -> _K8sEvent | None:
    """One Event → one converted event, or ``None`` with its problems appended.  This is the ingest hot
    path (a webhook batch is 400 events), hence exact ``type(...) is`` checks on parsed JSON,
    each field tested inline and :func:`_need_str` called only to describe a failure (``i`` is the
    event's index in ``items``: its path is spelled out only for a problem)."""
    if type(ev) is not dict:
        problems.append(K8sProblem(f"items[{i}]", "each item must be an audit Event object"))
        return None
    before = len(problems)
    get: Callable[[str], Any] = ev.get
    kind = get("kind")
    if kind is not None and kind != "Event":
        problems.append(K8sProblem(f"items[{i}].kind", f"must be 'Event', got {kind!r}"))
    level = get("level")
    if type(level) is not str or level not in _K8S_LEVELS:
        _need_str(ev, "level", f"items[{i}]", problems, _K8S_LEVELS)
    audit_id = get("auditID")
    if type(audit_id) is not str or not audit_id:
        _need_str(ev, "auditID", f"items[{i}]", problems)
    stage = get("stage")
    if type(stage) is not str or stage not in _K8S_STAGES:
        _need_str(ev, "stage", f"items[{i}]", problems, _K8S_STAGES)
    uri = get("requestURI")
    if type(uri) is not str or not uri:
        _need_str(ev, "requestURI", f"items[{i}]", problems)
    verb = get("verb")
    if type(verb) is not str or not verb:
        _need_str(ev, "verb", f"items[{i}]", problems)
    user = get("user")
    username = ""
    if type(user) is not dict:
        problems.append(K8sProblem(f"items[{i}].user", "required UserInfo object"))
    else:
        username = user.get("username")  # type: ignore[assignment]
        if type(username) is not str or not username:
            problems.append(K8sProblem(f"items[{i}].user.username", "required non-empty string"))
    ips = get("sourceIPs")
    if ips is None:
        ips = []
    elif type(ips) is not list or not _ONLY_STR.issuperset(map(type, ips)):
        problems.append(K8sProblem(f"items[{i}].sourceIPs", "must be a list of strings"))
    code: int | None = None
    status = get("responseStatus")
    if status is not None:
        c = status.get("code") if type(status) is dict else None
        if type(status) is not dict or (c is not None and (type(c) is not int or not 0 < c < 1000)):
            problems.append(
                K8sProblem(f"items[{i}].responseStatus.code", f"must be an HTTP status, got {c!r}")
            )
        else:
            code = c
    ref = get("objectRef")
    if ref is not None and (type(ref) is not dict or type(ref.get("resource", "")) is not str):
        problems.append(K8sProblem(f"items[{i}].objectRef", "must be an ObjectReference object"))
    when: datetime | str = received_at
    ts_key = "stageTimestamp" if get("stageTimestamp") else "requestReceivedTimestamp"
    ts_raw = get(ts_key)
    if ts_raw is not None:
        try:
            if type(ts_raw) is not str:
                raise AuditError(f"must be an RFC 3339 string, got {ts_raw!r}")
            parsed = _parse_ts(ts_raw)  # validates even when the text is kept as is
            when = ts_raw if _TS_FORM.match(ts_raw) else parsed
        except AuditError as exc:
            problems.append(K8sProblem(f"items[{i}].{ts_key}", str(exc)))
    if len(problems) > before:
        return None

    # Request/response bodies are deliberately dropped: they can hold Secret data, and the
    # chain must never become the place where credentials leak to every auditor.
    # The detail is built with its keys in sorted order at every level, which is what lets
    # AuditChain.rows encode it with _encode_sorted_object.
    target = None
    obj = None
    if ref:
        target = ref.get("resource") or None
        sub = ref.get("subresource")
        if target and sub and type(sub) is str:
            target = f"{target}/{sub}"
        obj = {k: v for k in _OBJECT_REF_KEYS if type(v := ref.get(k)) is str and v}
    agent, imp, ann = get("userAgent"), get("impersonatedUser"), get("annotations")
    groups = user.get("groups")
    # The payload's own lists and dicts are used as they are when they already have the
    # right form (the apiserver writes map keys sorted): fewer objects per event means less
    # garbage-collector work, which on this path costs as much as some of the encoding.
    # K8sBatch.drafts() copies them, so drafts never share objects with the payload.
    detail: dict[str, Any] = {}
    if type(ann) is dict:
        if not (_ONLY_STR.issuperset(map(type, ann.values())) and _ONLY_STR.issuperset(map(type, ann))):
            ann = {k: v for k, v in ann.items() if type(k) is str and type(v) is str}
        if len(ann) > 1 and not _sorted_keys(ann):
            ann = dict(sorted(ann.items()))
        detail["annotations"] = ann
    detail["auditID"] = audit_id
    detail["code"] = code
    if type(groups) is list:
        detail["groups"] = (
            groups if _ONLY_STR.issuperset(map(type, groups)) else [g for g in groups if type(g) is str]
        )
    if type(imp) is dict and type(imp.get("username")) is str:
        detail["impersonatedUser"] = imp["username"]
    detail["level"] = level
    if obj:
        detail["objectRef"] = obj
    detail["requestURI"] = uri
    detail["sourceIPs"] = ips
    detail["stage"] = stage
    if type(agent) is str:
        detail["userAgent"] = agent
    # The actor and action columns are bounded (ACTOR_MAX, ACTION_MAX characters); a longer
    # user name or derived action — a long non-resource URL, say — is cut with "…" and kept
    # whole in the detail, so the hashed record loses nothing.
    action = f"{verb} {target or uri.split('?', 1)[0]}"
    if len(action) > ACTION_MAX or len(username) > ACTOR_MAX:
        if len(action) > ACTION_MAX:
            detail["action"] = action
            action = _bounded(action, ACTION_MAX)
        if len(username) > ACTOR_MAX:
            detail["actor"] = username
            username = _bounded(username, ACTOR_MAX)
        detail = dict(sorted(detail.items()))
    return username, action, _k8s_outcome(stage, code), detail, when


@dataclass(frozen=True, slots=True)
class K8sBatch:
    """One ``audit.k8s.io/v1`` ``EventList``, checked and converted by :func:`k8s_batch`, in batch
    order: per event the fields of its entry (:data:`_K8sEvent`).  :meth:`AuditChain.rows` links
    it directly — the ingest hot path, no :class:`EntryDraft` per event; :meth:`drafts` gives the
    same entries as drafts (what :func:`k8s_event_list_to_drafts` returns)."""

    events: tuple[_K8sEvent, ...]
    _sealed: object = field(default=None, repr=False, compare=False)
    """``_SEALED`` when made by :func:`k8s_batch`: only then are the events trusted to be what
    the converter makes (a batch built by hand is linked through its drafts, fully checked)."""

    def __len__(self) -> int:
        return len(self.events)

    def drafts(self) -> list[EntryDraft]:
        """The events as drafts; each detail a fresh copy (the batch's may share the payload's
        lists and dicts)."""
        return [
            EntryDraft(
                actor=actor,
                action=action,
                outcome=outcome,
                source="kubernetes",
                detail=json.loads(_encode_sorted_object(detail)),
                ts=when,
                detail_is_json=True,
            )
            for actor, action, outcome, detail, when in self.events
        ]


def k8s_batch(payload: Any, *, received_at: datetime) -> K8sBatch:
    """Check and convert an ``audit.k8s.io/v1`` ``EventList``, in batch order.

    ``received_at`` stands in for events that carry neither ``stageTimestamp`` nor
    ``requestReceivedTimestamp``.  A malformed batch raises :class:`K8sAuditError`
    listing every problem with its path; nothing is returned, so nothing is stored.
    One ``auditID`` may appear at several stages; each stage is its own entry.
    """
    if type(payload) is not dict:
        raise K8sAuditError([K8sProblem("$", "body must be a JSON object (an EventList)")])
    problems: list[K8sProblem] = []
    if payload.get("apiVersion") != "audit.k8s.io/v1":
        got = payload.get("apiVersion")
        problems.append(K8sProblem("apiVersion", f"must be 'audit.k8s.io/v1', got {got!r}"))
    if payload.get("kind") != "EventList":
        problems.append(K8sProblem("kind", f"must be 'EventList', got {payload.get('kind')!r}"))
    items = payload.get("items")
    if not isinstance(items, list):
        problems.append(K8sProblem("items", "required list of Events"))
        raise K8sAuditError(problems)
    events = [_k8s_event(ev, i, received_at, problems) for i, ev in enumerate(items)]
    if problems:
        raise K8sAuditError(problems)
    return K8sBatch(tuple(e for e in events if e is not None), _SEALED)


def k8s_event_list_to_drafts(payload: Any, *, received_at: datetime) -> list[EntryDraft]:
    """Convert an ``audit.k8s.io/v1`` ``EventList`` into chain drafts, in batch order
    (:func:`k8s_batch`, as drafts)."""
    return k8s_batch(payload, received_at=received_at).drafts()
