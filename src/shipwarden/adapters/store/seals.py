"""Checkpoints signed inside the transaction of the append that makes them due.

Every path that appends to the audit chain — one entry in a state change's transaction
(``Store._append_audit``), a batch (``AuditRepo.append``) — ends with :meth:`Seals.after_append`.
When the new head has reached the seq at which the next checkpoint is due (the checkpoint grid,
``domain.audit.checkpoints``), the checkpoint is signed and inserted right there, chained after the
newest one, so an entry on the grid never exists without its checkpoint; an append that does not
reach it costs one integer comparison.

The seq at which the next checkpoint is due is remembered between transactions (a lower bound:
it only grows as checkpoints are added, and is raised only after a commit, so a rolled-back seal
never makes it skip one).  When the head reaches it, the newest checkpoint is read again, which
also picks up checkpoints signed by other processes.

After the commit, the checkpoints a transaction stored are handed to ``on_sealed`` (the witness
file): a crash between the two leaves the witness one checkpoint behind, never ahead.  ORM
sessions are watched through their events; a Core transaction (:class:`CoreTx`, the group
commit's) calls :meth:`Seals.committed` itself once its commit returned.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, event, insert, select
from sqlalchemy.orm import Session, sessionmaker

from shipwarden.adapters.store.models import AuditCheckpointRow, AuditRow
from shipwarden.domain.audit import ChainHead, Checkpoint, Sealer, next_due

__all__ = ["CHECKPOINT_COLUMNS", "CoreTx", "Seals", "Tx", "checkpoint_of"]

CHECKPOINT_COLUMNS = (
    AuditCheckpointRow.seq,
    AuditCheckpointRow.hash,
    AuditCheckpointRow.ts,
    AuditCheckpointRow.key_id,
    AuditCheckpointRow.signature,
    AuditCheckpointRow.entries,
    AuditCheckpointRow.prev,
    AuditCheckpointRow.every,
)
_LAST = select(*CHECKPOINT_COLUMNS).order_by(AuditCheckpointRow.seq.desc()).limit(1)
_HEAD = select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)
_SEALED, _NEXT = "shipwarden.sealed", "shipwarden.seal_next"


class Tx(Protocol):
    """What sealing needs of a transaction: its connection, and a dict living as long as it."""

    @property
    def info(self) -> dict[Any, Any]: ...

    def connection(self) -> Connection: ...


class CoreTx:
    """A Core transaction (``engine.begin()``) as :class:`Seals` sees it: cheaper than an ORM
    ``Session`` for a write that needs no objects.  Whoever commits it calls
    :meth:`Seals.committed` afterwards."""

    __slots__ = ("_info", "conn")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._info: dict[Any, Any] = {}

    @property
    def info(self) -> dict[Any, Any]:
        return self._info

    def connection(self) -> Connection:
        return self.conn


def checkpoint_of(row: Any) -> Checkpoint:
    """A checkpoint from a row of :data:`CHECKPOINT_COLUMNS`."""
    return Checkpoint(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7])


class Seals:
    """The store's sealing: a :class:`~shipwarden.domain.audit.Sealer` (key, interval) and the
    sessions whose commits it watches."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        sealer: Sealer,
        on_sealed: Callable[[Sequence[Checkpoint]], None] | None = None,
    ) -> None:
        self.sealer = sealer
        self.on_sealed = on_sealed
        self.next_due: int | None = None  # unknown until the first append reads it
        self._sessions = sessions
        event.listen(sessions, "after_commit", self._committed)
        event.listen(sessions, "after_rollback", self._rolled_back)

    def detach(self) -> None:
        event.remove(self._sessions, "after_commit", self._committed)
        event.remove(self._sessions, "after_rollback", self._rolled_back)

    # -- inside a transaction -------------------------------------------------------------------
    def after_append(
        self,
        s: Tx,
        head: ChainHead,
        first: int | None = None,
        hashes: Callable[[int], str] | None = None,
    ) -> None:
        """Seal what the append of entries ``first``..``head.seq`` makes due (``first`` defaults
        to the head: one entry).  ``hashes(seq)`` gives the hash of any entry of this append.

        Only entries of this append are ever signed: a grid point *before* it without its
        checkpoint (deleted, or written by a process without a sealer) is left missing for
        ``audit verify`` to report — signing it now would sign whatever the table holds, and
        launder a rewrite.  The chain of checkpoints then resumes at this append's head."""
        due = s.info.get(_NEXT, self.next_due)  # this transaction's own seals count first
        if due is not None and head.seq < due:
            return
        lo = head.seq if first is None else first
        conn = s.connection()
        row = conn.execute(_LAST).first()
        last = checkpoint_of(row) if row else None
        made: list[Checkpoint] = []
        wanted = self.sealer.due(last, head.seq)
        mine = [seq for seq in wanted if seq >= lo]
        if wanted and not mine:
            mine = [head.seq]  # overdue: resume at the head
        for seq in mine:
            digest = head.hash if seq == head.seq or hashes is None else hashes(seq)
            last = self.sealer.seal(ChainHead(seq, digest), last)
            conn.execute(insert(AuditCheckpointRow), last.to_row())
            made.append(last)
        self._note(s, made, last)

    def checkpoint_now(self, s: Session) -> Checkpoint | None:
        """Sign the head now (on demand, off the grid) unless it is signed already; ``None`` for an
        empty chain."""
        conn = s.connection()
        h = conn.execute(_HEAD).first()
        if h is None:
            return None
        head = ChainHead(h[0], h[1])
        row = conn.execute(_LAST).first()
        last = checkpoint_of(row) if row else None
        if last is not None and last.seq >= head.seq:
            return last
        cp = self.sealer.seal(head, last)
        conn.execute(insert(AuditCheckpointRow), cp.to_row())
        self._note(s, [cp], cp)
        return cp

    def _note(self, s: Tx, made: list[Checkpoint], last: Checkpoint | None) -> None:
        if made:
            s.info.setdefault(_SEALED, []).extend(made)
        s.info[_NEXT] = next_due(last, self.sealer.every)

    # -- after the transaction ------------------------------------------------------------------
    def committed(self, s: Tx) -> None:
        """After ``s`` committed: raise the next due seq, hand its checkpoints to ``on_sealed``."""
        self._committed(s)

    def _committed(self, s: Tx) -> None:
        made = s.info.pop(_SEALED, None)
        nxt = s.info.pop(_NEXT, None)
        if nxt is not None:
            self.next_due = max(self.next_due or 0, nxt)
        if made and self.on_sealed is not None:
            try:
                self.on_sealed(made)
            except OSError as exc:  # the checkpoint is stored; only the witness is behind
                sys.stderr.write(f"audit witness not written ({exc}): checkpoint at seq {made[-1].seq}\n")

    def _rolled_back(self, s: Tx) -> None:
        s.info.pop(_SEALED, None)
        s.info.pop(_NEXT, None)
