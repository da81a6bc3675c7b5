"""Group commit of audit entries that must be stored before a request is answered (E5).

Every access is audited, allowed or denied, and the entry must exist before the request takes
effect: a crash may leave an access audited but unanswered, never answered but unaudited.  With
one transaction per entry that costs a database commit per request, all of them contending for
the head of one hash chain — under concurrency the requests queue behind each other's commits
(SQLite's single writer, retries on the seq a concurrent writer took).

Instead each caller hands its draft to :class:`AuditWriter` and waits for a future; one writer
thread takes everything queued, links it after the chain's head and stores it in *one*
transaction (with any checkpoint it makes due), then resolves every future with its entry's seq.
While a commit runs, the next requests queue up and go together in the next one: batches grow
with the load, without a timer or a linger, so a lone request waits for one commit only.

Durability is unchanged: a caller's future resolves only after the transaction holding its entry
committed; if the commit fails, every caller of that batch gets the exception (the request then
fails rather than proceed unaudited).  A draft the chain refuses (``AuditError``) fails alone:
the batch is retried entry by entry.  :meth:`AuditWriter.close` stops taking drafts and returns
once everything already queued is committed (``serve`` calls it on shutdown; an ``atexit`` hook
covers other processes).

Async callers (every HTTP request: its access entry) use :meth:`AuditWriter.submit_async` and await
an ``asyncio`` future of their own event loop without holding a thread.  The writer settles all
the futures a batch holds for one loop with *one* ``call_soon_threadsafe`` — one wake-up of the
loop per batch, not one per request through a ``concurrent.futures.Future`` chained to an asyncio
one (``asyncio.wrap_future``), which under load was a good part of the event loop's own work.  A
waiter that went away (its request cancelled) is skipped; its entry is committed all the same.

A draft may carry the *access generation* its decision was made at (a request judged from a
cached credential, see ``domain.access.StaleAccess``).  The batch's transaction reads the
generation and commits such drafts only if it is still theirs; otherwise their callers get
``StaleAccess`` (nothing of theirs is stored) and judge the request again from the store, while
the drafts without a generation are committed as usual.  Generations only grow, so within a
batch the drafts of an older generation than the newest one present are stale without asking.
"""

from __future__ import annotations

import asyncio
import atexit
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from shipwarden.domain.access import StaleAccess
from shipwarden.domain.audit import AuditError, ChainHead, EntryDraft, check_draft

__all__ = ["AuditWriter", "Commit"]

class _LoopWaiter:
    """The writer's side of an ``asyncio`` future: settled on its loop, with the rest of its batch."""

    __slots__ = ("fut", "loop", "writer")

    def __init__(
        self, writer: AuditWriter, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[int]
    ) -> None:
        self.writer, self.loop, self.fut = writer, loop, fut

    def set_result(self, seq: int) -> None:
        self.writer._settled.setdefault(self.loop, []).append((self.fut, seq, None))

    def set_exception(self, exc: BaseException) -> None:
        self.writer._settled.setdefault(self.loop, []).append((self.fut, 0, exc))


def _settle(outcomes: list[tuple[asyncio.Future[int], int, BaseException | None]]) -> None:
    """On the event loop: resolve the futures of one batch (skipping any cancelled meanwhile)."""
    for fut, seq, exc in outcomes:
        if fut.done():
            continue
        if exc is None:
            fut.set_result(seq)
        else:
            fut.set_exception(exc)


_Waiter = Any  # Future[int] | _LoopWaiter: set_result(seq) / set_exception(exc)
_Item = tuple[EntryDraft, _Waiter, int | None]

Commit = Callable[[Sequence[EntryDraft], int | None], ChainHead]
"""``commit(drafts, generation)``: link and store ``drafts`` in one transaction and return the new
head; with a ``generation``, first check the access generation is that one (else store nothing and
raise ``StaleAccess``)."""


class AuditWriter:
    """One writer thread committing queued drafts in batches through ``commit`` (:data:`Commit`:
    the drafts are the ``len(drafts)`` entries up to the head it returns)."""

    def __init__(self, commit: Commit, *, max_batch: int = 1000) -> None:
        self._commit = commit
        self.max_batch = max_batch
        self._q: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._settled: dict[asyncio.AbstractEventLoop, list[Any]] = {}  # writer thread only
        self.batches = 0
        """Transactions committed (for tests and benchmarks: entries / batches = mean batch)."""
        self.committed = 0

    def submit(self, draft: EntryDraft, *, generation: int | None = None) -> Future[int]:
        """Queue ``draft``; the future resolves to its seq once committed.  A draft the chain would
        refuse raises ``AuditError`` here, before anything is queued.  With ``generation`` (the
        access generation its decision was made at) it is committed only at that generation, else
        the future raises ``StaleAccess``."""
        fut: Future[int] = Future()
        # RUNNING at once: ``cancel()`` is then refused, so the writer thread can never meet a
        # cancelled future (``set_result`` on one raises InvalidStateError, which would end it).
        fut.set_running_or_notify_cancel()
        self._queue(draft, fut, generation)
        return fut

    def submit_async(self, draft: EntryDraft, *, generation: int | None = None) -> asyncio.Future[int]:
        """:meth:`submit` for a coroutine: a future of the running event loop (await it)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._queue(draft, _LoopWaiter(self, loop, fut), generation)
        return fut

    def _queue(self, draft: EntryDraft, waiter: _Waiter, generation: int | None) -> None:
        check_draft(draft)
        with self._lock:
            if self._closed:
                raise RuntimeError("the audit writer is closed: no more entries are accepted")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()
                atexit.register(self.close)
            self._q.put((draft, waiter, generation))

    def record(self, draft: EntryDraft, timeout: float | None = 60.0) -> int:
        """Queue ``draft`` and wait until it is committed; its seq."""
        return self.submit(draft).result(timeout)

    def close(self, timeout: float = 60.0) -> None:
        """Refuse new drafts, commit everything queued, stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._q.put(None)
        if thread is not None:
            thread.join(timeout)
        atexit.unregister(self.close)

    # -- the writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                self._write(batch)
            finally:
                self._wake_loops()
            if stop:
                return

    def _wake_loops(self) -> None:
        """Hand each event loop the outcomes of its waiters in this batch: one call per loop."""
        settled, self._settled = self._settled, {}
        for loop, outcomes in settled.items():
            try:
                loop.call_soon_threadsafe(_settle, outcomes)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def _write(self, batch: list[_Item]) -> None:
        generation = max((g for _, _, g in batch if g is not None), default=None)
        if generation is not None:
            older = [item for item in batch if item[2] is not None and item[2] < generation]
            for _, fut, g in older:
                fut.set_exception(StaleAccess(g or 0, None))
            if older:
                batch = [item for item in batch if item[2] is None or item[2] >= generation]
        try:
            head = self._commit([d for d, _, _ in batch], generation)
        except StaleAccess as exc:
            for _, fut, g in batch:
                if g is not None:
                    fut.set_exception(exc)
            rest = [item for item in batch if item[2] is None]
            if rest:
                self._write(rest)
            return
        except AuditError as exc:
            if len(batch) > 1:  # one refused draft must not fail the others
                for item in batch:
                    self._write([item])
            else:
                batch[0][1].set_exception(exc)
            return
        except BaseException as exc:  # noqa: BLE001 - every waiter must hear of it, whatever it is
            for _, fut, _ in batch:
                fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        self.committed += len(batch)
        first = head.seq - len(batch) + 1
        for i, (_, fut, _) in enumerate(batch):
            fut.set_result(first + i)
