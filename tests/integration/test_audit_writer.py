"""The group commit of access entries (issue 9, class 12): nothing lost, nothing unaudited.

Against the real store (SQLite file, MariaDB, PostgreSQL): many threads record entries at once,
the writer is held inside a commit while they queue, and is closed with entries still queued.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shipwarden.adapters.store.access_repo import bump_generation
from shipwarden.adapters.store.engine import make_engine, migrate
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.access import StaleAccess
from shipwarden.domain.audit import AuditError, ChainHead, EntryDraft
from shipwarden.services.audit import AuditService

pytestmark = pytest.mark.integration


@pytest.fixture
def audit(database_url: str) -> Iterator[AuditService]:
    engine = make_engine(database_url)
    migrate(engine)
    svc = AuditService(Store(engine), Ed25519PrivateKey.generate(), lambda: datetime(2031, 3, 4, tzinfo=UTC),
                       checkpoint_every=7)  # fmt: skip
    yield svc
    svc.close()
    engine.dispose()


class Gate:
    """Holds the writer inside its first commit until released, so the next entries queue up."""

    def __init__(self, svc: AuditService) -> None:
        self.open, self.entered = threading.Event(), threading.Event()
        self.real = svc.writer._commit
        self.first = True
        svc.writer._commit = self  # type: ignore[assignment]

    def __call__(self, drafts: Sequence[EntryDraft], generation: int | None) -> ChainHead:
        if self.first:
            self.first = False
            self.entered.set()
            assert self.open.wait(30)
        return self.real(drafts, generation)


def _access(svc: AuditService, i: int) -> None:
    svc.access(actor=f"user{i}", allowed=i % 3 != 0, method="GET", path=f"/x/{i}", ip="127.0.0.1",
               via="token", permission="deployment.read")  # fmt: skip


def test_concurrent_accesses_share_transactions_and_all_are_committed(audit: AuditService) -> None:
    gate = Gate(audit)
    n = 60
    threads = [threading.Thread(target=_access, args=(audit, i)) for i in range(n)]
    threads[0].start()
    assert gate.entered.wait(30)
    for t in threads[1:]:
        t.start()
    while audit.writer._q.qsize() < n - 1:  # everyone else is waiting for the commit in progress
        threading.Event().wait(0.01)
    gate.open.set()
    for t in threads:
        t.join(30)
    assert audit.writer.committed == n and audit.writer.batches == 2  # the first, then all the others
    entries = audit.query(action="access", limit=1000)
    assert sorted(e["actor"] for e in entries) == sorted(f"user{i}" for i in range(n))
    assert sum(e["outcome"] == "denied" for e in entries) == 20
    report = audit.verify()
    assert report.ok and report.entries_checked == n and report.checkpoints_checked == n // 7, report


def test_close_commits_everything_queued_then_refuses(audit: AuditService) -> None:
    gate = Gate(audit)
    futures = [audit.writer.submit(audit.access_draft(actor=f"u{i}", allowed=True, method="GET", path="/",
                                                      ip="::1", via="token", permission=None))
               for i in range(25)]  # fmt: skip
    assert gate.entered.wait(30)
    closer = threading.Thread(target=audit.close)
    closer.start()  # shutdown begins with 24 entries still queued behind the commit in progress
    gate.open.set()
    closer.join(30)
    assert not closer.is_alive()
    assert [f.result(0) for f in futures] == list(range(1, 26))  # every one committed, in order
    assert audit.store.count_audit() == 25 and audit.verify().ok
    with pytest.raises(RuntimeError, match="closed"):
        audit.writer.submit(EntryDraft(actor="late", action="access"))


def test_a_waiter_that_gives_up_cannot_stop_the_writer(audit: AuditService) -> None:
    """A caller that cancels its future while the entry is queued: the entry is committed all the
    same, and the writer thread goes on (``set_result`` on a cancelled future used to raise in it)."""
    gate = Gate(audit)
    first = audit.writer.submit(EntryDraft(actor="a", action="access"))
    assert gate.entered.wait(30)
    quitter = audit.writer.submit(EntryDraft(actor="b", action="access"))
    assert not quitter.cancel()  # once queued, the entry will be stored: cancelling is refused
    gate.open.set()
    assert first.result(30) == 1 and quitter.result(30) == 2
    assert audit.writer.record(EntryDraft(actor="c", action="access")) == 3
    assert audit.store.count_audit() == 3 and audit.verify().ok


def test_a_refused_draft_fails_alone_and_a_failed_commit_fails_its_waiters(audit: AuditService) -> None:
    with pytest.raises(AuditError):
        audit.writer.submit(EntryDraft(actor="", action="access"))  # refused before it is queued
    gate = Gate(audit)
    good = [audit.writer.submit(EntryDraft(actor=f"a{i}", action="access")) for i in range(3)]
    assert gate.entered.wait(30)
    bad = audit.writer.submit(EntryDraft(actor="b", action="access", detail={"x": float("nan")}))
    after = [audit.writer.submit(EntryDraft(actor=f"c{i}", action="access")) for i in range(3)]
    gate.open.set()
    with pytest.raises(AuditError, match="JSON"):
        bad.result(30)
    assert [f.result(30) for f in good + after] == [1, 2, 3, 4, 5, 6]

    def broken(drafts: Sequence[EntryDraft], generation: int | None) -> ChainHead:
        raise ConnectionError("database gone")

    audit.writer._commit = broken  # type: ignore[assignment]
    waiting = [audit.writer.submit(EntryDraft(actor="d", action="access")) for _ in range(2)]
    for f in waiting:
        with pytest.raises(ConnectionError):
            f.result(30)  # the caller's request fails: it does not go on unaudited
    assert audit.store.count_audit() == 6


def test_decisions_of_a_stale_access_generation_are_not_committed(audit: AuditService) -> None:
    """A draft made from a cached credential names the access generation it was judged at; the
    batch's transaction stores it only at that generation.  The drafts beside it are unaffected."""

    def bump() -> None:  # what a revocation or a role change does in its own transaction
        with audit.store._sessions.begin() as s:
            bump_generation(s)

    gate = Gate(audit)
    first = audit.writer.submit(EntryDraft(actor="first", action="access"), generation=0)
    assert gate.entered.wait(30)
    bump()  # generation 1 from now on
    current = audit.writer.submit(EntryDraft(actor="current", action="access"), generation=1)
    older = audit.writer.submit(EntryDraft(actor="older", action="access"), generation=0)
    plain = audit.writer.submit(EntryDraft(actor="plain", action="access"))
    gate.open.set()
    # the first batch was judged at 0 and its transaction read 1: refused, though it was in flight
    with pytest.raises(StaleAccess) as stale:
        first.result(30)
    assert stale.value.current == 1
    with pytest.raises(StaleAccess):
        older.result(30)
    assert [current.result(30), plain.result(30)] == [1, 2]

    gate = Gate(audit)  # hold the next commit, so the two below go in one batch
    blocker = audit.writer.submit(EntryDraft(actor="blocker", action="access"))
    assert gate.entered.wait(30)
    stale_alone = audit.writer.submit(EntryDraft(actor="stale", action="access"), generation=0)
    beside = audit.writer.submit(EntryDraft(actor="beside", action="access"))
    gate.open.set()
    assert blocker.result(30) == 3
    with pytest.raises(StaleAccess):
        stale_alone.result(30)
    assert beside.result(30) == 4
    stored = [e["actor"] for e in audit.query(action="access", limit=100)]
    assert stored == ["current", "plain", "blocker", "beside"]
    assert audit.verify().ok


def test_async_waiters_are_settled_on_their_loop_once_per_batch(audit: AuditService) -> None:
    """``submit_async`` (every HTTP request's access entry): each coroutine gets its entry's seq, a
    refusal of its batch (stale generation) or its commit's failure, and the loop is woken once per
    batch, not once per waiter.  A waiter cancelled meanwhile is skipped; its entry is stored."""
    import asyncio

    gate = Gate(audit)
    wakeups = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        real = loop.call_soon_threadsafe

        def counting(cb, *args):  # type: ignore[no-untyped-def]
            wakeups.append(len(args[0]) if args else 0)
            return real(cb, *args)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        first = audit.writer.submit_async(EntryDraft(actor="first", action="access"))
        while not gate.entered.is_set():
            await asyncio.sleep(0.01)
        many = [audit.writer.submit_async(EntryDraft(actor=f"a{i}", action="access")) for i in range(30)]
        stale = audit.writer.submit_async(EntryDraft(actor="stale", action="access"), generation=-1)
        gone = audit.writer.submit_async(EntryDraft(actor="gone", action="access"))
        gone.cancel()
        gate.open.set()
        assert await first == 1
        assert await asyncio.gather(*many) == list(range(2, 32))
        with pytest.raises(StaleAccess):
            await stale
        while audit.writer.committed < 32:  # "gone" is committed though nobody waits for it
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert audit.writer.batches == 2 and wakeups == [1, 32], wakeups  # stale + 30 + gone in one wake-up
    actors = [e["actor"] for e in audit.query(action="access", limit=100)]
    assert actors == ["first", *(f"a{i}" for i in range(30)), "gone"]
    assert audit.verify().ok
