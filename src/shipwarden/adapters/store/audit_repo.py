"""Audit-log storage beyond single appends: batches, checkpoints, streaming reads.

Single entries are appended by :meth:`Store._append_audit` inside the transaction of
the state change they describe.  This module adds what the audit service needs:

* :meth:`AuditRepo.append` links a whole batch (one Kubernetes ``EventList``) after
  the current head and inserts it with one Core ``executemany`` — the same chain, built by
  ``domain.audit``, in one transaction, retried if a concurrent writer took the seq.
  This is the ingest hot path: the rows come from ``AuditChain.rows`` with ``detail``
  already as its canonical JSON text (the fragment that was hashed), bound to the JSON
  column as is (:class:`_JSONText`), so no entry is encoded twice and no ORM object is
  built; the statement is compiled by SQLAlchemy Core once per dialect and handed to the
  driver's ``executemany`` (:class:`_BatchInsert`);
* signed checkpoints (rows of ``audit_checkpoints``);
* streaming reads in seq order for verification and export, in constant memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Column, Connection, Dialect, MetaData, Table, bindparam, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

from shipwarden.adapters.store.models import (
    ApprovalRow,
    AuditCheckpointRow,
    AuditRow,
    ChangeRow,
    EvidenceRow,
)
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.audit import (
    GENESIS_HASH,
    ROW_COLUMNS,
    AuditChain,
    AuditEntry,
    ChainHead,
    Checkpoint,
    EntryDraft,
    K8sBatch,
)

_COLUMNS = (
    AuditRow.seq,
    AuditRow.ts,
    AuditRow.source,
    AuditRow.actor,
    AuditRow.action,
    AuditRow.service,
    AuditRow.deployment_id,
    AuditRow.outcome,
    AuditRow.detail,
    AuditRow.prev_hash,
    AuditRow.hash,
    AuditRow.canonical,
)


class _JSONText(TypeDecorator[Any]):
    """A JSON column bound from text that already is the value's JSON.

    SQLite and MariaDB store the text as given; PostgreSQL casts it (``%(detail)s::JSON``),
    and its ``json`` type keeps the text too.  Reading goes through ``AuditRow``'s plain JSON type."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None


# ``audit_log`` as the batch insert sees it: the same table and columns, ``detail`` bound as JSON text.
_AUDIT_LOG_TEXT = Table(
    AuditRow.__tablename__,
    MetaData(),
    *(
        Column(c.name, _JSONText() if c.name == "detail" else c.type, primary_key=c.primary_key)
        for c in AuditRow.__table__.columns
    ),
)
_INSERT_ROWS = insert(_AUDIT_LOG_TEXT)
_SEQ, _HASH = ROW_COLUMNS.index("seq"), ROW_COLUMNS.index("hash")


class _BatchInsert:
    """``_INSERT_ROWS`` for one dialect: compiled once by SQLAlchemy Core, run by the driver's
    ``executemany`` with the rows of ``AuditChain.rows`` in the driver's parameter style.

    For a 400-row batch SQLAlchemy's per-row parameter handling (``construct_params``, bind
    processors, positional conversion) costs about as much as SQLite's own insert, and here
    it has nothing to do: every value is already what the driver takes.  That is checked
    when compiling — should any column's type ever need a bind processor, or the statement
    need post-compile expansion, the rows go through ``Connection.execute`` instead."""

    def __init__(self, dialect: Dialect) -> None:
        compiled = _INSERT_ROWS.compile(dialect=dialect)
        self.sql = str(compiled)
        self.direct = (
            not compiled._bind_processors
            and not compiled.literal_execute_params
            and not compiled.escaped_bind_names
            and set(compiled.bind_names.values()) == set(ROW_COLUMNS)
        )
        self.positional = bool(compiled.positional)
        order = tuple(compiled.positiontup or ())
        # qmark / format: the rows as they are when the statement's order is ROW_COLUMNS'
        self.reorder = (
            itemgetter(*(ROW_COLUMNS.index(name) for name in order))
            if self.positional and order != ROW_COLUMNS
            else None
        )

    def __call__(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        if not self.direct:
            conn.execute(_INSERT_ROWS, [dict(zip(ROW_COLUMNS, r, strict=True)) for r in rows])
        elif not self.positional:  # pyformat (psycopg): named parameters
            conn.exec_driver_sql(self.sql, [dict(zip(ROW_COLUMNS, r, strict=True)) for r in rows])
        elif self.reorder is not None:
            conn.exec_driver_sql(self.sql, list(map(self.reorder, rows)))
        else:
            conn.exec_driver_sql(self.sql, rows)


_HEAD = select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)
_CHECKPOINT_COLUMNS = (
    AuditCheckpointRow.seq,
    AuditCheckpointRow.hash,
    AuditCheckpointRow.ts,
    AuditCheckpointRow.key_id,
    AuditCheckpointRow.signature,
)
_LAST_CHECKPOINT = select(*_CHECKPOINT_COLUMNS).order_by(AuditCheckpointRow.seq.desc()).limit(1)
_LAST_CHECKPOINT_SEQ = select(AuditCheckpointRow.seq).order_by(AuditCheckpointRow.seq.desc()).limit(1)
_CHECKPOINT_AT = select(AuditCheckpointRow.seq).where(AuditCheckpointRow.seq == bindparam("seq"))


class AuditRepo:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._sessions = store._sessions
        self._insert = _BatchInsert(store.engine.dialect)

    # -- writing --------------------------------------------------------------------------
    @staticmethod
    def _head(s: Session) -> ChainHead:
        last = s.connection().execute(_HEAD).first()
        return ChainHead(last[0], last[1]) if last else ChainHead(0, GENESIS_HASH)

    def head(self) -> ChainHead:
        with self._sessions() as s:
            return self._head(s)

    def append(
        self,
        drafts: Sequence[EntryDraft] | K8sBatch,
        chain: AuditChain,
        *,
        signer: Callable[[ChainHead], Checkpoint] | None = None,
        signed_seq: int | None = None,
    ) -> tuple[ChainHead, int | None]:
        """Link ``drafts`` (or a converted Kubernetes ``EventList``) after the head and insert
        them in one transaction.

        With ``signer``, the new head is signed and its checkpoint stored in the same
        transaction when it is ``chain.checkpoint_every`` or more entries past the newest
        checkpoint: the batch and its checkpoint are stored together or not at all.
        ``signed_seq`` is the newest checkpoint's seq as far as the caller knows (a lower
        bound; ``None``: unknown) — the store is asked only when a checkpoint looks due.
        Returns the new head and the newest checkpoint's seq now known (``signed_seq`` if
        the store was not asked)."""

        def tx(s: Session) -> tuple[ChainHead, int | None]:
            head = self._head(s)
            rows = chain.rows(head, drafts)
            if not rows:
                return head, signed_seq
            conn = s.connection()
            self._insert(conn, rows)
            new = ChainHead(rows[-1][_SEQ], rows[-1][_HASH])
            every, signed = chain.checkpoint_every, signed_seq
            if signer is not None and (signed is None or new.seq - signed >= every):
                signed = conn.execute(_LAST_CHECKPOINT_SEQ).scalar() or 0
                if new.seq - signed >= every:
                    cp = signer(new)
                    conn.execute(insert(AuditCheckpointRow), cp.to_row())
                    signed = cp.seq
            return new, signed

        result: tuple[ChainHead, int | None] = self.store._retrying(tx)
        return result

    def add_checkpoint(self, cp: Checkpoint) -> None:
        """Store ``cp`` unless the head at its seq is signed already (by another process, say)."""
        try:
            with self._sessions.begin() as s:
                conn = s.connection()
                if conn.execute(_CHECKPOINT_AT, {"seq": cp.seq}).first() is None:
                    conn.execute(insert(AuditCheckpointRow), cp.to_row())
        except IntegrityError:
            # A concurrent writer signed the same head between our look and our insert.
            with self._sessions() as s:
                if s.connection().execute(_CHECKPOINT_AT, {"seq": cp.seq}).first() is None:
                    raise

    # -- reading --------------------------------------------------------------------------
    def checkpoints(self) -> list[Checkpoint]:
        with self._sessions() as s:
            rows = s.scalars(select(AuditCheckpointRow).order_by(AuditCheckpointRow.seq))
            return [
                Checkpoint(seq=r.seq, hash=r.hash, ts=r.ts, key_id=r.key_id, signature=r.signature)
                for r in rows
            ]

    def last_checkpoint(self) -> Checkpoint | None:
        with self._sessions() as s:
            r = s.connection().execute(_LAST_CHECKPOINT).first()
            return Checkpoint(r.seq, r.hash, r.ts, r.key_id, r.signature) if r else None

    def entries(
        self,
        *,
        after_seq: int = 0,
        actor: str | None = None,
        action: str | None = None,
        action_prefix: str | None = None,
        service: str | None = None,
        source: str | None = None,
        deployment_id: str | None = None,
        outcome: str | None = None,
        ts_from: str | None = None,
        ts_to: str | None = None,
        limit: int | None = None,
        batch: int = 5000,
    ) -> Iterator[AuditEntry]:
        """Entries in seq order, filtered; streamed ``batch`` rows at a time (keyset paging)."""
        filters: list[Any] = []
        for col, val in (
            (AuditRow.actor, actor),
            (AuditRow.action, action),
            (AuditRow.service, service),
            (AuditRow.source, source),
            (AuditRow.deployment_id, deployment_id),
            (AuditRow.outcome, outcome),
        ):
            if val is not None:
                filters.append(col == val)
        if action_prefix:
            filters.append(AuditRow.action.startswith(action_prefix, autoescape=True))
        if ts_from:
            filters.append(AuditRow.ts >= ts_from)
        if ts_to:
            filters.append(AuditRow.ts <= ts_to)
        last, left = after_seq, limit
        while left is None or left > 0:
            n = batch if left is None else min(batch, left)
            q = select(*_COLUMNS).where(AuditRow.seq > last, *filters).order_by(AuditRow.seq).limit(n)
            with self._sessions() as s:
                rows = s.execute(q).mappings().all()
            for r in rows:
                yield AuditEntry.from_row(r)
            if len(rows) < n:
                return
            last = rows[-1]["seq"]
            if left is not None:
                left -= len(rows)

    def pairs(self, batch: int = 20000) -> Iterator[tuple[str, str]]:
        """``(canonical, hash)`` in seq order — all the fast verifier needs."""
        last = 0
        while True:
            q = (
                select(AuditRow.seq, AuditRow.canonical, AuditRow.hash)
                .where(AuditRow.seq > last)
                .order_by(AuditRow.seq)
                .limit(batch)
            )
            with self._sessions() as s:
                rows = s.execute(q).all()
            for _, canonical, digest in rows:
                yield canonical, digest
            if len(rows) < batch:
                return
            last = rows[-1][0]

    # -- deployment context for dossiers --------------------------------------------------
    def evidence_for(self, commit_sha: str | None) -> list[dict[str, Any]]:
        if not commit_sha:
            return []
        with self._sessions() as s:
            rows = s.scalars(
                select(EvidenceRow).where(EvidenceRow.commit_sha == commit_sha).order_by(EvidenceRow.id)
            )
            return [
                {
                    "id": r.id,
                    "kind": r.kind,
                    "category": r.category,
                    "digest": r.digest,
                    "summary": r.summary,
                    "pipeline": r.pipeline,
                    "source_name": r.source_name,
                }
                for r in rows
            ]

    def approvals_for(self, deployment_id: str, commit_sha: str | None) -> list[dict[str, Any]]:
        with self._sessions() as s:
            cond = [ChangeRow.deployment_id == deployment_id]
            if commit_sha:
                cond.append(ChangeRow.merge_sha == commit_sha)
            change_ids = list(s.scalars(select(ChangeRow.id).where(or_(*cond))))
            if not change_ids:
                return []
            rows = s.scalars(
                select(ApprovalRow).where(ApprovalRow.change_id.in_(change_ids)).order_by(ApprovalRow.id)
            )
            return [
                {
                    "change_id": r.change_id,
                    "commit": r.commit_sha,
                    "user": r.user,
                    "role": r.role,
                    "decision": r.decision,
                    "comment": r.comment,
                    "at": r.at,
                }
                for r in rows
            ]
