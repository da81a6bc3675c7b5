"""The checkpoint chain, the checkpoint grid and anchors (witness, expected head) — issue 9, class 10.

An attacker with write access to the database but not the signing key nor the witness: each of
the issue's three attacks, and "delete everything", is found.  An attacker with the key too can
rewrite only what lies after the newest witnessed head.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shipwarden.domain.audit import (
    Anchor,
    AuditChain,
    AuditEntry,
    Checkpoint,
    EntryDraft,
    Problem,
    Sealer,
    make_entry,
    verify,
    verify_canonical,
)

T0 = datetime(2025, 3, 1, 8, 0, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()
KEYS = {"k1": KEY.public_key()}
EVERY = 10


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def sealed_chain(n: int, *, every: int = EVERY, key: Ed25519PrivateKey = KEY) -> tuple[
    list[AuditEntry], list[Checkpoint]
]:
    """``n`` entries with the checkpoints a store with a sealer makes: one at every grid point."""
    chain = AuditChain(Clock(), checkpoint_every=every)
    sealer = Sealer(key, "k1", every, chain.clock)
    entries: list[AuditEntry] = []
    cps: list[Checkpoint] = []
    prev: AuditEntry | None = None
    for i in range(n):
        prev = chain.append(prev, {"actor": f"u{i % 3}", "action": "access", "detail": {"i": i}})
        entries.append(prev)
        for seq in sealer.due(cps[-1] if cps else None, prev.seq):
            cps.append(sealer.seal(entries[seq - 1].head, cps[-1] if cps else None))
    return entries, cps


def rewrite_from(entries: list[AuditEntry], k: int) -> list[AuditEntry]:
    """Rewrite entry ``k`` and re-hash every later entry (what DB write access allows)."""
    out = entries[: k - 1]
    prev: AuditEntry | None = out[-1] if out else None
    for e in entries[k - 1 :]:
        actor = "mallory" if e.seq == k else e.actor
        draft = EntryDraft(actor=actor, action=e.action, outcome=e.outcome, detail=e.detail)
        prev = make_entry(prev, draft, e.ts)
        out.append(prev)
    return out


def pairs(entries: list[AuditEntry]) -> list[tuple[str, str]]:
    return [(e.canonical, e.hash) for e in entries]


def both(entries: list[AuditEntry], **kw: object) -> list[object]:
    return [
        verify(entries, keys=KEYS, every=EVERY, **kw),  # type: ignore[arg-type]
        verify_canonical(pairs(entries), keys=KEYS, every=EVERY, **kw),  # type: ignore[arg-type]
    ]


def witness(cps: list[Checkpoint]) -> list[Anchor]:
    return [Anchor(c.seq, c.hash, f"the witness (line {i})", c) for i, c in enumerate(cps, 1)]


class TestCheckpointChain:
    def test_sealed_chain_verifies_with_its_grid_and_witness(self) -> None:
        entries, cps = sealed_chain(35)
        assert [c.seq for c in cps] == [10, 20, 30]
        assert cps[0].prev == "0" * 64
        assert all(b.prev == a.digest() for a, b in zip(cps, cps[1:], strict=False))
        assert all(c.entries == c.seq and c.every == EVERY for c in cps)
        for r in both(entries, checkpoints=cps, anchors=witness(cps)):
            assert r.ok, r  # type: ignore[attr-defined]
            assert (r.checkpoints_checked, r.anchors_checked, r.unsealed) == (3, 3, 5)  # type: ignore[attr-defined]

    def test_deleting_a_middle_checkpoint_breaks_the_checkpoint_chain(self) -> None:
        entries, cps = sealed_chain(35)
        for r in both(entries, checkpoints=[cps[0], cps[2]]):
            assert (r.ok, r.seq, r.problem) == (False, 30, Problem.CHECKPOINT_CHAIN)  # type: ignore[attr-defined]

    def test_attack_1_truncate_the_tail_and_delete_its_checkpoints(self) -> None:
        """Issue: truncating the tail and deleting the checkpoints that cover it verified "ok"."""
        entries, cps = sealed_chain(35)
        cut, kept = entries[:20], cps[:2]
        # From the database alone this is a consistent, shorter chain: the documented limit …
        assert verify(cut, checkpoints=kept, keys=KEYS, every=EVERY).ok
        # … which the witness (or any head kept elsewhere) closes.
        for r in both(cut, checkpoints=kept, anchors=witness(cps)):
            assert (r.ok, r.seq, r.problem) == (False, 21, Problem.TRUNCATED)  # type: ignore[attr-defined]
            assert "witness" in r.message  # type: ignore[attr-defined]
        # Cut inside a grid interval without deleting the checkpoint: the checkpoint says so.
        r = verify(entries[:25], checkpoints=cps, keys=KEYS, every=EVERY)
        assert (r.seq, r.problem) == (26, Problem.TRUNCATED)

    def test_attack_2_rewrite_a_middle_entry_rehash_everything_delete_all_checkpoints(self) -> None:
        entries, cps = sealed_chain(35)
        forged = rewrite_from(entries, 7)
        assert verify(forged).ok  # without checkpoints the chain alone cannot tell
        for r in both(forged, checkpoints=[]):
            assert (r.ok, r.seq, r.problem) == (False, 10, Problem.CHECKPOINT_MISSING)  # type: ignore[attr-defined]
        # keeping the checkpoints instead: they contradict the rewrite
        r = verify(forged, checkpoints=cps, keys=KEYS, every=EVERY)
        assert (r.seq, r.problem) == (10, Problem.CHECKPOINT_MISMATCH)
        # deleting only the checkpoints after the rewrite: the grid still wants one at 10
        r = verify(forged, checkpoints=[], keys=KEYS, every=EVERY, anchors=witness(cps))
        assert (r.seq, r.problem) == (10, Problem.WITNESS_MISMATCH)

    def test_attack_3_delete_everything(self) -> None:
        entries, cps = sealed_chain(35)
        assert verify([], keys=KEYS, every=EVERY).ok  # nothing in the database says anything existed
        for r in both([], checkpoints=[], anchors=witness(cps)):
            assert (r.ok, r.seq, r.problem) == (False, 1, Problem.TRUNCATED)  # type: ignore[attr-defined]
        r = verify([], keys=KEYS, every=EVERY, anchors=[Anchor(35, entries[-1].hash, "--expect-head")])
        assert (r.ok, r.problem) == (False, Problem.TRUNCATED) and "--expect-head" in r.message

    def test_deleting_the_newest_checkpoint_past_the_grid_is_caught(self) -> None:
        entries, cps = sealed_chain(35)
        r = verify(entries, checkpoints=cps[:2], keys=KEYS, every=EVERY)
        assert (r.seq, r.problem) == (30, Problem.CHECKPOINT_MISSING)

    def test_a_witnessed_checkpoint_the_database_lost_is_reported(self) -> None:
        entries, cps = sealed_chain(35)
        on_demand = Sealer(KEY, "k1", EVERY, Clock()).seal(entries[34].head, cps[-1])
        # deleted from the database, the entries intact: no grid point is missed, the witness has it
        r = verify(entries, checkpoints=cps, keys=KEYS, every=EVERY, anchors=witness([*cps, on_demand]))
        assert (r.seq, r.problem) == (35, Problem.CHECKPOINT_MISSING)
        assert verify(entries, checkpoints=[*cps, on_demand], keys=KEYS, every=EVERY,
                      anchors=witness([*cps, on_demand])).ok  # fmt: skip

    def test_expected_head_must_be_on_the_chain(self) -> None:
        entries, cps = sealed_chain(35)
        good = Anchor(17, entries[16].hash, "--expect-head")
        assert verify(entries, checkpoints=cps, keys=KEYS, every=EVERY, anchors=[good]).ok
        bad = dataclasses.replace(good, hash="e" * 64)
        r = verify_canonical(pairs(entries), checkpoints=cps, keys=KEYS, every=EVERY, anchors=[bad])
        assert (r.seq, r.problem) == (17, Problem.WITNESS_MISMATCH)

    def test_a_forged_witness_line_is_refused(self) -> None:
        entries, cps = sealed_chain(35)
        forged = dataclasses.replace(cps[1], hash="a" * 64)
        r = verify(entries, checkpoints=cps, keys=KEYS, every=EVERY, anchors=witness([forged]))
        assert (r.seq, r.problem) == (20, Problem.CHECKPOINT_SIGNATURE) and "witness" in r.message


class TestWhatTheKeyHolderCanDo:
    """An attacker with the database and the signing key, but not the witness (docs/audit.md)."""

    def test_can_rewrite_and_reseal_after_the_last_witnessed_head_only(self) -> None:
        entries, cps = sealed_chain(35)
        seen = witness(cps[:2])  # the witness has the checkpoints up to seq 20
        sealer = Sealer(KEY, "k1", EVERY, Clock())

        def reseal(forged: list[AuditEntry], keep: int) -> list[Checkpoint]:
            out = list(cps[:keep])
            for seq in sealer.due(out[-1] if out else None, len(forged)):
                out.append(sealer.seal(forged[seq - 1].head, out[-1] if out else None))
            return out

        after = rewrite_from(entries, 25)  # after the witnessed head: undetectable
        assert verify(after, checkpoints=reseal(after, 2), keys=KEYS, every=EVERY, anchors=seen).ok
        before = rewrite_from(entries, 15)  # before it: the witness disagrees
        r = verify(before, checkpoints=reseal(before, 1), keys=KEYS, every=EVERY, anchors=seen)
        assert (r.ok, r.problem) == (False, Problem.WITNESS_MISMATCH)


class TestLegacyCheckpoints:
    def test_v1_checkpoints_verify_and_the_grid_starts_at_the_first_chained_one(self) -> None:
        entries, _ = sealed_chain(45)
        v1 = Checkpoint(seq=13, hash=entries[12].hash, ts="2025-03-01T08:00:00.000000Z", key_id="k1",
                        signature="")  # fmt: skip
        v1 = dataclasses.replace(v1, signature=KEY.sign(v1.payload()).hex())
        assert not v1.chained
        # upgraded with the head at 27: the first chained checkpoint is made where the store resumes
        first = Sealer(KEY, "k1", EVERY, Clock()).seal(entries[26].head, v1)
        assert first.prev == "0" * 64 and first.seq == 27
        assert verify(entries[:35], checkpoints=[v1, first], keys=KEYS, every=EVERY).ok
        r = verify(entries, checkpoints=[v1, first], keys=KEYS, every=EVERY)  # the grid holds from 27
        assert (r.seq, r.problem) == (37, Problem.CHECKPOINT_MISSING)
        # the documented limit: deleting every chained checkpoint of an upgraded database leaves only
        # v1 ones, which promised no grid; the witness file holds what was deleted
        assert verify(entries[:35], checkpoints=[v1], keys=KEYS, every=EVERY).ok
        r = verify(entries[:35], checkpoints=[v1], keys=KEYS, every=EVERY, anchors=witness([first]))
        assert (r.seq, r.problem) == (27, Problem.CHECKPOINT_MISSING)
        forged_v1 = dataclasses.replace(v1, hash="b" * 64)
        r = verify(entries, checkpoints=[forged_v1, first], keys=KEYS, every=EVERY)
        assert r.problem == Problem.CHECKPOINT_SIGNATURE

    def test_round_trip_of_both_formats(self) -> None:
        _, cps = sealed_chain(20)
        assert [Checkpoint.from_row(c.to_row()) for c in cps] == cps
        v1 = Checkpoint(5, "a" * 64, "2025-03-01T08:00:00.000000Z", "k1", "00")
        assert Checkpoint.from_row(v1.to_row()) == v1 and "prev" not in v1.to_row()
        assert v1.payload() != dataclasses.replace(cps[0], seq=5, hash="a" * 64).payload()
