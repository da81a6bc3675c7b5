"""Verification: the fast path over ``(canonical, hash)`` pairs and the full path over entries.

Both walk the chain in constant memory alongside the sorted signed checkpoints and stop at
the first problem, reporting its seq and kind (:class:`Problem`); see the package docstring
for what each path proves and what it costs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shipwarden.domain.audit.canonical import entry_hash
from shipwarden.domain.audit.checkpoints import Checkpoint, _checkpoint_valid
from shipwarden.domain.audit.entries import GENESIS, AuditEntry, ChainHead

_PREV_MARK = '"prev_hash":"'


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
