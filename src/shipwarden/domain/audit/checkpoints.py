"""Signed checkpoints: a hash-linked chain of Ed25519-signed statements about the audit chain.

A checkpoint (format v2) says: "entry ``seq`` of the chain has hash ``hash``; the chain then held
``entries`` entries; the next checkpoint comes at most ``every`` entries later; the checkpoint
before me has digest ``prev``" — signed with shipwarden's key, which the database never holds.

* **Chained** (``prev``): deleting any checkpoint but the newest breaks the link of the one after it,
  and a checkpoint cannot be forged or re-linked without the key.
* **On a grid** (``every``): the signed promise "the next checkpoint is at most ``every`` entries
  after me" lets the verifier demand every checkpoint that must exist, so deleting all of them, or
  all after some point, is found as soon as the chain runs past a promised one.  What may lack a
  checkpoint is only the *unsealed tail*: fewer than ``every`` entries after the newest checkpoint.
* **Witnessed**: each checkpoint is also appended, after its transaction commits, to a file outside
  the database (:mod:`shipwarden.adapters.witness`), and printed into every dossier.  A chain cut
  back to an older checkpoint — with the newer checkpoints deleted, which the grid alone cannot
  tell from a quiet period — no longer reaches the head the witness holds.

:class:`Sealer` decides where checkpoints are due and signs them; the store calls it inside every
append's transaction, so an entry on the grid and its checkpoint are stored together.

Format v1 checkpoints (no ``entries``/``prev``/``every``; made before the checkpoint chain existed)
still verify as they always did — signature, and the chain's hash at their seq — but do not link,
and the grid starts after the newest of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shipwarden.domain.audit.canonical import canonical_json
from shipwarden.domain.audit.entries import GENESIS_HASH, AuditEntry, ChainHead, format_ts

_CHECKPOINT_V1 = "shipwarden.audit.checkpoint.v1"
_CHECKPOINT_V2 = "shipwarden.audit.checkpoint.v2"
FIRST_PREV = GENESIS_HASH
"""``prev`` of the first checkpoint of a chain."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement "entry ``seq`` of the chain has hash ``hash``", made at ``ts``.

    ``key_id`` names the signing key (its fingerprint, see ``security.signing.fingerprint``)
    so keys can rotate: verification takes a mapping of key ids to public keys.  ``entries``,
    ``prev`` and ``every`` are ``None`` in a v1 checkpoint (see the module docstring).
    """

    seq: int
    hash: str
    ts: str
    key_id: str
    signature: str  # hex: unlike base64 it has no spare bits, so every character matters
    entries: int | None = None
    prev: str | None = None
    every: int | None = None

    @property
    def chained(self) -> bool:
        """A v2 checkpoint: one link of the checkpoint chain."""
        return self.prev is not None

    @property
    def head(self) -> ChainHead:
        return ChainHead(self.seq, self.hash)

    def payload(self) -> bytes:
        """The signed bytes: canonical JSON of everything but the signature, plus a type tag."""
        return _checkpoint_payload(
            self.seq, self.hash, self.ts, self.key_id, self.entries, self.prev, self.every
        )

    def digest(self) -> str:
        """What the next checkpoint's ``prev`` names: sha256 of the signed bytes, hex."""
        return hashlib.sha256(self.payload()).hexdigest()

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "seq": self.seq,
            "hash": self.hash,
            "ts": self.ts,
            "key_id": self.key_id,
            "signature": self.signature,
        }
        if self.chained:
            row.update(entries=self.entries, prev=self.prev, every=self.every)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Checkpoint:
        """From a store row or its JSON (a witness line, an export manifest, a dossier)."""
        entries, prev, every = row.get("entries"), row.get("prev"), row.get("every")
        return cls(
            seq=int(row["seq"]),
            hash=str(row["hash"]),
            ts=str(row["ts"]),
            key_id=str(row["key_id"]),
            signature=str(row["signature"]),
            entries=None if entries is None else int(entries),
            prev=None if prev is None else str(prev),
            every=None if every is None else int(every),
        )


def _checkpoint_payload(
    seq: int, hash_: str, ts: str, key_id: str, entries: int | None, prev: str | None, every: int | None
) -> bytes:
    doc: dict[str, Any] = {"seq": seq, "hash": hash_, "ts": ts, "key_id": key_id}
    if prev is None:
        doc["type"] = _CHECKPOINT_V1
    else:
        doc.update(type=_CHECKPOINT_V2, entries=entries, prev=prev, every=every)
    return canonical_json(doc).encode("utf-8")


def sign_checkpoint(
    head: ChainHead | AuditEntry,
    ts: datetime,
    key: Ed25519PrivateKey,
    key_id: str,
    *,
    prev: Checkpoint | None = None,
    every: int = 1000,
) -> Checkpoint:
    """Sign the chain head with ``key`` as the checkpoint after ``prev`` (``None``: the first).

    ``prev`` may be a v1 checkpoint only in that it is not chained: the new one then starts the
    chain.  ``key_id`` is stored so verifiers pick the right public key."""
    h = head.head if isinstance(head, AuditEntry) else head
    if every < 1:
        raise ValueError("every must be at least 1")
    link = prev.digest() if prev is not None and prev.chained else FIRST_PREV
    stamp = format_ts(ts)
    sig = key.sign(_checkpoint_payload(h.seq, h.hash, stamp, key_id, h.seq, link, every))
    return Checkpoint(
        seq=h.seq,
        hash=h.hash,
        ts=stamp,
        key_id=key_id,
        signature=sig.hex(),
        entries=h.seq,
        prev=link,
        every=every,
    )


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


def next_due(last: Checkpoint | None, every: int) -> int:
    """The seq at which the next checkpoint is due after ``last`` (``None``: none yet).

    After a v2 checkpoint its own signed ``every`` counts; after a v1 one (or none) ``every``."""
    if last is None:
        return every
    return last.seq + (last.every if last.chained and last.every else every)


class Sealer:
    """Signs the checkpoints the grid requires, with one key; what the store calls in each append.

    ``due(last, head_seq)`` lists the seqs at which checkpoints must be made now that the chain
    reaches ``head_seq`` (usually none, one when an append lands on the grid, several when one
    batch spans several); ``seal`` signs one, chained after ``last``."""

    __slots__ = ("clock", "every", "key", "key_id")

    def __init__(self, key: Ed25519PrivateKey, key_id: str, every: int, clock: Any) -> None:
        if every < 1:
            raise ValueError("checkpoint every must be at least 1")
        self.key, self.key_id, self.every, self.clock = key, key_id, every, clock

    def due(self, last: Checkpoint | None, head_seq: int) -> list[int]:
        out: list[int] = []
        at = next_due(last, self.every)
        while at <= head_seq:
            out.append(at)
            at += self.every
        return out

    def seal(self, head: ChainHead, last: Checkpoint | None) -> Checkpoint:
        return sign_checkpoint(head, self.clock(), self.key, self.key_id, prev=last, every=self.every)
