"""Signed audit export bundles: the audit log as JSON Lines an auditor checks offline.

``shipwarden audit export`` (and ``GET /audit/export``) write, format ``shipwarden.audit-export.v1``::

    {"action":…,"actor":…,…,"seq":1,…,"hash":"…","canonical":"…"}     one line per entry, seq order
    …
    {"manifest":{…},"signature":"<hex Ed25519 over the canonical manifest>"}      the last line

Each entry line carries the queryable fields, the entry's canonical (hashed) text and its hash.
The manifest says what the bundle is and binds every byte before it:

* ``scope``: ``chain`` — the whole chain from its first entry; ``segment`` — every entry after
  ``start`` (``after_seq``); ``selection`` — entries matching ``filters`` (not contiguous);
* ``entries``, ``first_seq``, ``last_seq``; ``start`` (what the first entry links to);
* ``head``: the chain head the export covers, signed by a checkpoint taken for the export;
* ``lines_sha256``: SHA-256 of every byte before the manifest line — an edit, a removed,
  added or reordered line, a changed line ending, all change it;
* ``checkpoints``: for a chain or segment every checkpoint in its range, else the head's;
  ``checkpoint_every``; ``key_fingerprint`` and ``checkpoint_keys`` (PEM of any older key that
  signed an included checkpoint, vouched for by this signature).

:func:`verify_export` needs the file and the public key only (no database): canonical form of the
manifest line, fingerprint, signature, ``lines_sha256``, every line's hash against its canonical
text and its columns against that text, and — for a chain or segment — the chain itself, the
checkpoint chain and grid, and that it ends exactly at the signed head (``domain.audit.verify``).
A selection proves each entry and the head, not what lies between.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shipwarden.domain.audit import (
    GENESIS_HASH,
    Anchor,
    AuditEntry,
    ChainHead,
    Checkpoint,
    canonical_json,
    checkpoint_problem,
    entry_hash,
    format_ts,
    verify,
)
from shipwarden.security.signing import fingerprint, load_public_key

__all__ = ["FORMAT", "ExportError", "ExportReport", "ExportWriter", "verify_export"]

FORMAT = "shipwarden.audit-export.v1"
SCOPES = ("chain", "segment", "selection")


class ExportError(ValueError):
    """The bundle does not verify; the message says which check failed (and where)."""


def entry_line(e: AuditEntry) -> str:
    """One entry as a bundle line: its fields, hash and canonical text, canonical JSON."""
    return canonical_json({**e.fields(), "hash": e.hash, "canonical": e.canonical}) + "\n"


class ExportWriter:
    """Builds a bundle line by line (constant memory), then its signed manifest."""

    def __init__(
        self,
        key: Ed25519PrivateKey,
        *,
        scope: str,
        filters: Mapping[str, Any],
        checkpoint_every: int,
        now: datetime,
        checkpoint_keys: Mapping[str, bytes] | None = None,
    ) -> None:
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}")
        self.key, self.scope, self.filters = key, scope, dict(filters)
        self.every, self.now = checkpoint_every, now
        self.checkpoint_keys = dict(checkpoint_keys or {})
        self._sha = hashlib.sha256()
        self.count = 0
        self.first: AuditEntry | None = None
        self.last_seq = 0

    def line(self, e: AuditEntry) -> str:
        text = entry_line(e)
        self._sha.update(text.encode("utf-8"))
        self.count += 1
        if self.first is None:
            self.first = e
        self.last_seq = e.seq
        return text

    def manifest(self, head: Checkpoint | None, checkpoints: Sequence[Checkpoint]) -> str:
        """The last line: ``head`` is the checkpoint taken for the export (``None``: empty chain)."""
        top = head.head if head is not None else ChainHead(0, GENESIS_HASH)
        if self.scope == "chain":
            start = ChainHead(0, GENESIS_HASH)
        elif self.first is not None:
            start = ChainHead(self.first.seq - 1, self.first.prev_hash)
        else:
            start = top
        fp = fingerprint(self.key.public_key())
        used = {c.key_id for c in checkpoints} - {fp}
        manifest = {
            "format": FORMAT,
            "created_at": format_ts(self.now),
            "scope": self.scope,
            "filters": self.filters,
            "entries": self.count,
            "first_seq": self.first.seq if self.first is not None else None,
            "last_seq": self.last_seq if self.count else None,
            "start": {"seq": start.seq, "hash": start.hash},
            "head": {"seq": top.seq, "hash": top.hash},
            "lines_sha256": self._sha.hexdigest(),
            "checkpoints": [c.to_row() for c in checkpoints],
            "checkpoint_every": self.every,
            "key_fingerprint": fp,
            "checkpoint_keys": {k: v.decode() for k, v in self.checkpoint_keys.items() if k in used},
        }
        sig = self.key.sign(canonical_json(manifest).encode("utf-8")).hex()
        return canonical_json({"manifest": manifest, "signature": sig}) + "\n"


@dataclass(frozen=True, slots=True)
class ExportReport:
    """A verified bundle: what it holds."""

    scope: str
    entries: int
    head: ChainHead
    start: ChainHead
    checkpoints: int
    key_fingerprint: str
    created_at: str
    filters: dict[str, Any] = field(default_factory=dict)


def _manifest(data: bytes) -> tuple[dict[str, Any], str, int]:
    if not data.endswith(b"\n"):
        raise ExportError("the bundle does not end with its manifest line (cut short?)")
    cut = data.rfind(b"\n", 0, len(data) - 1) + 1
    raw = data[cut:-1]
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ExportError(f"the last line is not a manifest: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("manifest"), dict):
        raise ExportError("the last line is not a manifest")
    if canonical_json(doc).encode("utf-8") != raw:
        raise ExportError("the manifest line is not in canonical form: it was edited")
    return doc["manifest"], str(doc.get("signature", "")), cut


def _head(doc: Any, what: str) -> ChainHead:
    try:
        return ChainHead(int(doc["seq"]), str(doc["hash"]))
    except (KeyError, TypeError, ValueError):
        raise ExportError(f"manifest: {what} is malformed") from None


def verify_export(
    data: bytes,
    public_key: Ed25519PublicKey | bytes,
    *,
    expect_head: ChainHead | None = None,
) -> ExportReport:
    """Verify a bundle with the public key alone (a key object or its PEM); raises :class:`ExportError`.

    ``expect_head`` (a head kept elsewhere, e.g. from a dossier) must be on the exported chain."""
    pub = load_public_key(public_key) if isinstance(public_key, bytes) else public_key
    manifest, signature, cut = _manifest(data)
    if manifest.get("format") != FORMAT:
        raise ExportError(f"unknown format {manifest.get('format')!r}")
    fp = fingerprint(pub)
    if manifest.get("key_fingerprint") != fp:
        raise ExportError(f"signed by key {manifest.get('key_fingerprint')!r}, not by the given key {fp}")
    try:
        pub.verify(bytes.fromhex(signature), canonical_json(manifest).encode("utf-8"))
    except (InvalidSignature, ValueError):
        raise ExportError("the manifest's signature does not verify") from None
    # From here the manifest is authentic: check the lines against it.
    if hashlib.sha256(data[:cut]).hexdigest() != manifest.get("lines_sha256"):
        raise ExportError("the entry lines differ from what was signed (edited, added, removed or reordered)")
    scope = manifest.get("scope")
    if scope not in SCOPES:
        raise ExportError(f"manifest: unknown scope {scope!r}")
    head, start = _head(manifest.get("head"), "head"), _head(manifest.get("start"), "start")
    try:
        cps = [Checkpoint.from_row(c) for c in manifest.get("checkpoints") or []]
        keys = {k: load_public_key(v.encode()) for k, v in (manifest.get("checkpoint_keys") or {}).items()}
        every = int(manifest["checkpoint_every"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"manifest: checkpoints are malformed: {exc}") from None
    keys[fp] = pub
    counted = [0]

    def entries() -> Iterator[AuditEntry]:  # streamed: a bundle of millions of entries fits anyway
        pos = 0
        while pos < cut:
            end = data.index(b"\n", pos)
            counted[0] += 1
            try:
                yield AuditEntry.from_row(json.loads(data[pos:end].decode("utf-8")))
            except (UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
                raise ExportError(f"line {counted[0]}: not an audit entry: {exc}") from None
            pos = end + 1

    if scope == "selection":
        if expect_head is not None:
            raise ExportError("a filtered export cannot prove a head: export the whole chain (no filters)")
        _check_selection(entries(), head, cps, keys)
    else:
        anchors = [Anchor(head.seq, head.hash, "the signed head of the export")]
        if expect_head is not None:
            if expect_head.seq <= start.seq:
                raise ExportError(f"--expect-head seq {expect_head.seq} is before this export's first entry")
            anchors.append(Anchor(expect_head.seq, expect_head.hash, "the expected head (--expect-head)"))
        report = verify(entries(), checkpoints=cps, keys=keys, start=start, every=every, anchors=anchors)
        if not report.ok:
            raise ExportError(f"chain: {report.problem} at seq {report.seq}: {report.message}")
        if report.head != head:
            raise ExportError(f"the chain ends at seq {report.head.seq}, not at the signed head {head.seq}")
    if counted[0] != manifest.get("entries"):
        said = manifest.get("entries")
        raise ExportError(f"the bundle holds {counted[0]} entries, the manifest says {said}")
    return ExportReport(
        scope=str(scope),
        entries=counted[0],
        head=head,
        start=start,
        checkpoints=len(cps),
        key_fingerprint=fp,
        created_at=str(manifest.get("created_at")),
        filters=dict(manifest.get("filters") or {}),
    )


def _check_selection(
    entries: Iterable[AuditEntry],
    head: ChainHead,
    cps: list[Checkpoint],
    keys: Mapping[str, Ed25519PublicKey],
) -> None:
    prev = 0
    for e in entries:
        if entry_hash(e.canonical) != e.hash:
            raise ExportError(f"entry {e.seq}: hash does not match its canonical text")
        try:
            hashed = json.loads(e.canonical)
        except ValueError:
            hashed = None
        if hashed != e.fields():
            raise ExportError(f"entry {e.seq}: its fields differ from its canonical text")
        if e.seq <= prev or e.seq > head.seq:
            raise ExportError(f"entry {e.seq}: out of order or beyond the head {head.seq}")
        prev = e.seq
    if head.seq == 0:
        return
    signed = [c for c in cps if c.head == head]
    if not signed:
        raise ExportError("no checkpoint signs the export's head")
    for c in signed:
        why = checkpoint_problem(c, keys)
        if why:
            raise ExportError(f"the head's checkpoint: {why}")
