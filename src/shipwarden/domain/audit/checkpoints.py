"""Signed checkpoints: an Ed25519 signature over the chain head ``{seq, hash, ts}``.

They catch what the chain alone cannot: a cut-off tail, and a rewrite from some point on with
every hash recomputed (see the package docstring).  :mod:`.verification` checks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shipwarden.domain.audit.canonical import canonical_json
from shipwarden.domain.audit.entries import AuditEntry, ChainHead, format_ts

_CHECKPOINT_TYPE = "shipwarden.audit.checkpoint.v1"


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
