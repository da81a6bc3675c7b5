"""Signed deployment dossiers (D11): one file that proves what happened, checkable offline.

A dossier is canonical JSON (see :func:`shipwarden.domain.audit.canonical_json`)::

    {"format": "shipwarden.dossier.v1", "created_at": ..., "deployment_id": ...,
     "record": {...the deployment record: commit, pipeline, evidence, approvals, steps...},
     "audit": {"entries": [{"seq", "hash", "canonical"}...], "checkpoint": {...} | null,
               "head": {"seq", "hash"} | null},
     "key_fingerprint": "sha256:...", "signature": "<hex Ed25519 over the document without signature>"}

An auditor needs only the file and shipwarden's public key.  Verification
checks, in order: the bytes are exactly the canonical encoding of what they
parse to (so no byte can change without changing a value), the key fingerprint
is that of the given key, the signature, and the audit proof — each entry's
hash is the SHA-256 of its canonical text, names this deployment, entries
ascend by seq and link where consecutive, and the signed checkpoint (if any)
covers the last entry.  The signature is hex, not base64, because base64's
padding bits would let a byte change and still decode to the same signature.

Inclusion of the entries in the live chain is proven by running
:func:`shipwarden.domain.audit.verify` over the chain up to the checkpoint.

``audit.head`` is the chain's head when the dossier was made (the one its checkpoint signs).
Each dossier handed out is thereby a witness kept outside the database: ``shipwarden audit
verify --expect-head SEQ:HASH`` later proves the chain still reaches that head unchanged, so
history up to it cannot be rewritten unseen, even by someone holding the database and the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shipwarden.domain.audit import AuditEntry, ChainHead, Checkpoint, canonical_json, format_ts
from shipwarden.security.signing import fingerprint, load_public_key

__all__ = ["FORMAT", "Dossier", "DossierError", "build_dossier", "verify_dossier"]

FORMAT = "shipwarden.dossier.v1"


class DossierError(ValueError):
    """The dossier does not verify; the message says which check failed."""


@dataclass(frozen=True, slots=True)
class Dossier:
    """A verified dossier's content."""

    deployment_id: str
    created_at: str
    record: dict[str, Any]
    entries: list[dict[str, Any]]
    checkpoint: Checkpoint | None
    key_fingerprint: str
    head: ChainHead | None = None


def _signed_bytes(doc: Mapping[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in doc.items() if k != "signature"}).encode("utf-8")


def build_dossier(
    deployment_id: str,
    record: Mapping[str, Any],
    entries: Sequence[AuditEntry],
    checkpoint: Checkpoint | None,
    key: Ed25519PrivateKey,
    now: datetime,
    checkpoint_keys: Mapping[str, Ed25519PublicKey] | None = None,
) -> bytes:
    """Assemble and sign a dossier; ``entries`` are this deployment's audit entries in seq order.

    ``checkpoint`` should be a signed checkpoint at or after the last entry (take one on
    demand when exporting), signed with ``key`` or with one of ``checkpoint_keys``.
    Raises :class:`DossierError` rather than sign a dossier that would not verify.
    """
    doc: dict[str, Any] = {
        "format": FORMAT,
        "created_at": format_ts(now),
        "deployment_id": deployment_id,
        "record": dict(record),
        "audit": {
            "entries": [{"seq": e.seq, "hash": e.hash, "canonical": e.canonical} for e in entries],
            "checkpoint": checkpoint.to_row() if checkpoint else None,
            "head": {"seq": checkpoint.seq, "hash": checkpoint.hash} if checkpoint else None,
        },
        "key_fingerprint": fingerprint(key.public_key()),
    }
    _check_proof(doc, {**(checkpoint_keys or {}), doc["key_fingerprint"]: key.public_key()})
    doc["signature"] = key.sign(_signed_bytes(doc)).hex()
    return canonical_json(doc).encode("utf-8")


def _check_proof(
    doc: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]
) -> tuple[list[dict[str, Any]], Checkpoint | None]:
    audit = doc.get("audit")
    if not isinstance(audit, dict) or not isinstance(audit.get("entries"), list):
        raise DossierError("audit proof missing")
    entries: list[dict[str, Any]] = []
    prev: tuple[int, str] | None = None
    for i, item in enumerate(audit["entries"]):
        where = f"audit.entries[{i}]"
        try:
            seq, digest, canonical = item["seq"], item["hash"], item["canonical"]
            body = json.loads(canonical)
        except (KeyError, TypeError, ValueError) as exc:
            raise DossierError(f"{where}: malformed entry") from exc
        if hashlib.sha256(canonical.encode("utf-8")).hexdigest() != digest:
            raise DossierError(f"{where}: hash does not match the canonical text")
        if not isinstance(body, dict) or body.get("seq") != seq:
            raise DossierError(f"{where}: seq does not match the canonical text")
        if body.get("deployment_id") != doc.get("deployment_id"):
            raise DossierError(f"{where}: entry belongs to deployment {body.get('deployment_id')!r}")
        if prev is not None:
            if seq <= prev[0]:
                raise DossierError(f"{where}: entries must ascend by seq")
            if seq == prev[0] + 1 and body.get("prev_hash") != prev[1]:
                raise DossierError(f"{where}: does not link to the entry before it")
        prev = (seq, digest)
        entries.append(body)
    cp_row = audit.get("checkpoint")
    checkpoint = None
    if cp_row is not None:
        try:
            checkpoint = Checkpoint.from_row(cp_row)
            pub = keys[checkpoint.key_id]
            pub.verify(bytes.fromhex(checkpoint.signature), checkpoint.payload())
        except KeyError as exc:
            raise DossierError("audit checkpoint is malformed or signed by an unknown key") from exc
        except (InvalidSignature, ValueError, TypeError) as exc:
            raise DossierError("audit checkpoint signature does not verify") from exc
        if prev is not None and checkpoint.seq < prev[0]:
            raise DossierError("audit checkpoint does not cover the last entry")
        if prev is not None and checkpoint.seq == prev[0] and checkpoint.hash != prev[1]:
            raise DossierError("audit checkpoint contradicts the last entry")
    head = audit.get("head")
    if "head" in audit and head != ({"seq": checkpoint.seq, "hash": checkpoint.hash} if checkpoint else None):
        raise DossierError("audit head is not the head the checkpoint signs")
    return entries, checkpoint


def verify_dossier(
    blob: bytes,
    public_key: Ed25519PublicKey | bytes,
    checkpoint_keys: Mapping[str, Ed25519PublicKey] | None = None,
) -> Dossier:
    """Verify ``blob`` with the public key alone (a key object or its PEM).  Raises :class:`DossierError`.

    ``checkpoint_keys`` adds keys (by fingerprint) for checkpoints signed before a key rotation.
    """
    pub = load_public_key(public_key) if isinstance(public_key, bytes) else public_key
    try:
        doc = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DossierError("not a JSON document") from exc
    if not isinstance(doc, dict):
        raise DossierError("not a dossier")
    try:
        canonical = canonical_json(doc).encode("utf-8")
    except ValueError as exc:
        raise DossierError("not canonical JSON") from exc
    if canonical != blob:
        raise DossierError("not in canonical form: the file was edited")
    if doc.get("format") != FORMAT:
        raise DossierError(f"unknown format {doc.get('format')!r}")
    fp = fingerprint(pub)
    if doc.get("key_fingerprint") != fp:
        raise DossierError(f"signed by key {doc.get('key_fingerprint')!r}, not by the given key {fp}")
    try:
        pub.verify(bytes.fromhex(str(doc.get("signature", ""))), _signed_bytes(doc))
    except (InvalidSignature, ValueError) as exc:
        raise DossierError("signature does not verify") from exc
    entries, checkpoint = _check_proof(doc, {**(checkpoint_keys or {}), fp: pub})
    record = doc.get("record")
    if not isinstance(record, dict) or not isinstance(doc.get("deployment_id"), str):
        raise DossierError("record missing")
    return Dossier(
        deployment_id=doc["deployment_id"],
        created_at=str(doc.get("created_at")),
        record=record,
        entries=entries,
        checkpoint=checkpoint,
        key_fingerprint=fp,
        head=checkpoint.head if checkpoint is not None else None,
    )
