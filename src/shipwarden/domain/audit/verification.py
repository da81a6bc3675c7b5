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
from shipwarden.domain.audit.checkpoints import FIRST_PREV, Checkpoint, _checkpoint_valid
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
    CHECKPOINT_CHAIN = "checkpoint_chain"
    """A checkpoint does not link to the one before it: a checkpoint between them was deleted."""
    CHECKPOINT_MISSING = "checkpoint_missing"
    """No checkpoint where one must be (the grid, or one a witness holds): it was deleted."""
    WITNESS_MISMATCH = "witness_mismatch"
    """The chain disagrees with a head recorded outside the database: history was rewritten."""
    TRUNCATED = "truncated"
    """The chain ends before a signed checkpoint or a witnessed head: its tail was removed."""


@dataclass(frozen=True, slots=True)
class Anchor:
    """A head recorded outside the database that the chain must reach and agree with.

    A line of the witness file carries its signed ``checkpoint`` (which the database must hold
    too); an ``--expect-head SEQ:HASH`` or a dossier's head is a bare ``(seq, hash)``."""

    seq: int
    hash: str
    source: str
    checkpoint: Checkpoint | None = None


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
    anchors_checked: int = 0
    unsealed: int = 0
    """Entries after the newest checkpoint: the tail that only the chain protects."""

    def __bool__(self) -> bool:
        return self.ok


def _fail(start: ChainHead, seq: int, problem: Problem, message: str) -> VerifyReport:
    return VerifyReport(False, 0, start, 0, seq, problem, message)


def _plan(
    checkpoints: Iterable[Checkpoint],
    keys: Mapping[str, Ed25519PublicKey] | None,
    start: ChainHead,
    every: int | None,
    anchors: Iterable[Anchor],
) -> _Cursor | VerifyReport:
    """Check what can be checked before walking (signatures, the checkpoint chain's links) and
    set up the cursor; or the first problem found."""
    cps = sorted((c for c in checkpoints if c.seq > start.seq), key=lambda c: c.seq)
    marks = sorted((a for a in anchors if a.seq > start.seq), key=lambda a: a.seq)
    signed = [a.checkpoint for a in marks if a.checkpoint is not None]
    if (cps or signed) and keys is None:
        raise ValueError("checkpoints given without public keys to check them")
    for cp in cps:
        why = _checkpoint_valid(cp, keys or {})
        if why:
            return _fail(start, cp.seq, Problem.CHECKPOINT_SIGNATURE, why)
    for a in marks:
        if a.checkpoint is not None:
            why = _checkpoint_valid(a.checkpoint, keys or {})
            if why:
                return _fail(start, a.seq, Problem.CHECKPOINT_SIGNATURE, f"{a.source}: {why}")
    prev: Checkpoint | None = None
    for cp in (c for c in cps if c.chained):
        if prev is not None and cp.seq == prev.seq:
            return _fail(
                start, cp.seq, Problem.CHECKPOINT_CHAIN, f"two chained checkpoints at seq {cp.seq}: a fork"
            )
        link = prev.digest() if prev is not None else (FIRST_PREV if start.seq == 0 else cp.prev)
        if cp.prev != link:
            after = f"the checkpoint at seq {prev.seq}" if prev is not None else "the start of the chain"
            return _fail(
                start,
                cp.seq,
                Problem.CHECKPOINT_CHAIN,
                f"the checkpoint at seq {cp.seq} does not link to {after}: a checkpoint between them "
                "was deleted",
            )
        if cp.entries != cp.seq or not cp.every or cp.every < 1:
            return _fail(
                start,
                cp.seq,
                Problem.CHECKPOINT_MISMATCH,
                f"the checkpoint at seq {cp.seq} counts {cp.entries} entries (every {cp.every})",
            )
        prev = cp
    # The grid runs from the start of the chain — or, in a database that still holds v1 checkpoints
    # (made before checkpoints were chained), from its first chained checkpoint, wherever that is.
    legacy = any(not c.chained for c in cps)
    return _Cursor(cps, marks, None if every is None or legacy else start.seq + every, every is not None)


class _Cursor:
    """Walks the sorted checkpoints, anchors and the checkpoint grid alongside the chain.

    The walk compares ``seq`` with ``next_seq`` only — the nearest seq at which anything is to be
    checked — so the per-entry cost does not grow with what is checked."""

    __slots__ = ("anchors", "cps", "digests", "due", "grid", "i", "j", "last_seq", "next_seq")

    def __init__(self, cps: list[Checkpoint], anchors: list[Anchor], due: int | None, grid: bool) -> None:
        self.cps, self.anchors, self.due, self.grid = cps, anchors, due, grid
        self.digests = {c.digest() for c in cps if c.chained} if any(a.checkpoint for a in anchors) else set()
        self.i = self.j = 0
        self.last_seq = 0
        self.next_seq = -1
        self._advance()

    def _advance(self) -> None:
        nxt = [
            x
            for x in (
                self.cps[self.i].seq if self.i < len(self.cps) else None,
                self.anchors[self.j].seq if self.j < len(self.anchors) else None,
                self.due,
            )
            if x is not None
        ]
        self.next_seq = min(nxt) if nxt else -1

    def check(self, seq: int, digest: str) -> tuple[Problem, str] | None:
        """Everything due at ``seq``, whose hash is ``digest``."""
        sealed: Checkpoint | None = None
        while self.i < len(self.cps) and self.cps[self.i].seq == seq:
            cp = self.cps[self.i]
            self.i += 1
            self.last_seq = seq
            if cp.hash != digest:
                self.next_seq = -1
                return Problem.CHECKPOINT_MISMATCH, (
                    f"entry {seq} hashes to {digest[:12]}… but the checkpoint signed at {cp.ts} "
                    f"says {cp.hash[:12]}…: the chain was rewritten"
                )
            if cp.chained:
                sealed = cp
        while self.j < len(self.anchors) and self.anchors[self.j].seq == seq:
            a = self.anchors[self.j]
            self.j += 1
            if a.hash != digest:
                self.next_seq = -1
                return Problem.WITNESS_MISMATCH, (
                    f"entry {seq} hashes to {digest[:12]}… but {a.source} says {a.hash[:12]}…: "
                    "the chain was rewritten"
                )
            held = a.checkpoint
            if held is not None and held.chained and held.digest() not in self.digests:
                self.next_seq = -1
                return Problem.CHECKPOINT_MISSING, (
                    f"{a.source} holds the checkpoint signed at {held.ts} for seq {seq}, "
                    "which the database does not: it was deleted or replaced"
                )
        if seq == self.due and sealed is None:
            self.next_seq = -1
            return Problem.CHECKPOINT_MISSING, (
                f"no signed checkpoint at seq {seq}, where the checkpoint grid requires one "
                f"(the previous checkpoint promised the next within its interval): it was deleted"
            )
        if sealed is not None and self.grid:
            self.due = seq + int(sealed.every or 1)
        self._advance()
        return None

    def finish(self, entries: int, head: ChainHead) -> VerifyReport:
        checked = self.i
        if self.i < len(self.cps):
            cp = self.cps[-1]
            return VerifyReport(
                False,
                entries,
                head,
                checked,
                head.seq + 1,
                Problem.TRUNCATED,
                f"the chain ends at seq {head.seq} but a checkpoint signed at {cp.ts} "
                f"covers seq {cp.seq}: the tail was removed",
                self.j,
            )
        if self.j < len(self.anchors):
            a = self.anchors[-1]
            return VerifyReport(
                False,
                entries,
                head,
                checked,
                head.seq + 1,
                Problem.TRUNCATED,
                f"the chain ends at seq {head.seq} but {a.source} records seq {a.seq}: "
                "the tail was removed (with the checkpoints that covered it)",
                self.j,
            )
        return VerifyReport(
            True,
            entries,
            head,
            checked,
            anchors_checked=self.j,
            unsealed=head.seq - max(self.last_seq, 0) if head.seq else 0,
        )


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
    every: int | None = None,
    anchors: Iterable[Anchor] = (),
) -> VerifyReport:
    """Fast path: verify a stream of ``(canonical, hash)`` pairs in seq order.

    Proves the canonical records form an unbroken, unaltered chain from ``start``
    and agree with every signed checkpoint and every anchor (a head recorded outside
    the database), that the checkpoints link, and — given ``every``, the interval
    checkpoints are made at — that none is missing.  It does not look at the queryable
    columns; :func:`verify` does.  Memory: the checkpoints and anchors; stops at the
    first problem.
    """
    cursor = _plan(checkpoints, keys, start, every, anchors)
    if isinstance(cursor, VerifyReport):
        return cursor
    prev, seq, n = start.hash, start.seq, 0
    sha256 = hashlib.sha256
    for canonical, stored in pairs:
        seq += 1
        frag = f'"prev_hash":"{prev}","seq":{seq},'
        if not canonical.startswith(frag, canonical.rfind(_PREV_MARK)):
            kind, msg = _diagnose(canonical, seq, prev)
            return VerifyReport(False, n, ChainHead(seq - 1, prev), cursor.i, seq, kind, msg, cursor.j)
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
            bad = cursor.check(seq, digest)
            if bad:
                return VerifyReport(False, n, ChainHead(seq, digest), cursor.i, seq, *bad, cursor.j)
        prev = digest
    return cursor.finish(n, ChainHead(seq, prev))


def verify(
    entries: Iterable[AuditEntry],
    *,
    checkpoints: Iterable[Checkpoint] = (),
    keys: Mapping[str, Ed25519PublicKey] | None = None,
    start: ChainHead = GENESIS,
    columns: bool = True,
    every: int | None = None,
    anchors: Iterable[Anchor] = (),
) -> VerifyReport:
    """Full path: everything :func:`verify_canonical` checks, plus that each entry's columns
    still equal its hashed canonical text.  Entries must come in stored (seq) order.

    ``columns=False`` skips the column comparison (one JSON parse per entry, most of the
    cost) and runs the fast path over the entries' canonical text and hash.
    """
    if not columns:
        pairs = ((e.canonical, e.hash) for e in entries)
        return verify_canonical(
            pairs, checkpoints=checkpoints, keys=keys, start=start, every=every, anchors=anchors
        )
    cursor = _plan(checkpoints, keys, start, every, anchors)
    if isinstance(cursor, VerifyReport):
        return cursor
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
            return VerifyReport(False, n, ChainHead(seq - 1, prev), cursor.i, seq, kind, msg, cursor.j)
        n += 1
        if seq == cursor.next_seq:
            bad = cursor.check(seq, digest)
            if bad:
                return VerifyReport(False, n, ChainHead(seq, digest), cursor.i, seq, *bad, cursor.j)
        prev = digest
    return cursor.finish(n, ChainHead(seq, prev))
