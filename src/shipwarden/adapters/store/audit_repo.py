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
* signed checkpoints (rows of ``audit_checkpoints``): those the grid requires are signed inside
  each append's transaction by the store's ``seals`` (:mod:`.seals`), on-demand ones by
  :meth:`AuditRepo.checkpoint_now`;
* streaming reads in seq order for verification and export, in constant memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Dialect,
    MetaData,
    Table,
    bindparam,
    insert,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

from shipwarden.adapters.store.direct import DirectSelect
from shipwarden.adapters.store.models import (
    AccessGenerationRow,
    ApprovalRow,
    AuditCheckpointRow,
    AuditRow,
    ChangeRow,
    EvidenceRow,
)
from shipwarden.adapters.store.repository import Store
from shipwarden.adapters.store.seals import CHECKPOINT_COLUMNS, CoreTx, checkpoint_of
from shipwarden.domain.access import StaleAccess
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
_LAST = _HEAD.subquery()
_GENERATION_AND_HEAD = (
    select(AccessGenerationRow.value, _LAST.c.seq, _LAST.c.hash)
    .select_from(AccessGenerationRow.__table__.outerjoin(_LAST, true()))
    .where(AccessGenerationRow.id == 1)
)
_CHECKPOINTS = select(*CHECKPOINT_COLUMNS).order_by(AuditCheckpointRow.seq)

_LOG = AuditRow.__table__
_QUERY_COLUMNS = (
    "seq", "ts", "source", "actor", "action", "service", "deployment_id", "outcome", "detail", "prev_hash",
    "hash",
)  # fmt: skip
"""What :meth:`AuditRepo.query` returns of each entry: everything but the canonical text."""
_EQUAL = ("actor", "action", "service", "source", "deployment_id", "outcome")


def _query_statement(shape: tuple[str, ...]) -> Any:
    """The query for one combination of filters (``shape``: the names given), keyset-paged by seq."""
    where = [_LOG.c.seq > bindparam("after_seq")]
    for name in shape:
        if name in _EQUAL:
            where.append(_LOG.c[name] == bindparam(name))
        elif name == "ts_from":
            where.append(_LOG.c.ts >= bindparam(name))
        elif name == "ts_to":
            where.append(_LOG.c.ts <= bindparam(name))
        elif name == "seq_to":
            where.append(_LOG.c.seq <= bindparam(name))
    cols = [_LOG.c[n] for n in _QUERY_COLUMNS]
    return select(*cols).where(*where).order_by(_LOG.c.seq).limit(bindparam("limit"))
_LAST_CHECKPOINT = select(*CHECKPOINT_COLUMNS).order_by(AuditCheckpointRow.seq.desc()).limit(1)


class AuditRepo:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._sessions = store._sessions
        self._insert = _BatchInsert(store.engine.dialect)
        self._generation_and_head = DirectSelect(store.engine, _GENERATION_AND_HEAD)
        self._queries: dict[tuple[str, ...], DirectSelect] = {}

    # -- writing --------------------------------------------------------------------------
    @staticmethod
    def _head(s: Session | CoreTx) -> ChainHead:
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
        access_generation: int | None = None,
    ) -> ChainHead:
        """Link ``drafts`` (or a converted Kubernetes ``EventList``) after the head and insert
        them in one transaction, with the checkpoints they make due (the store's ``seals``): the
        batch and its checkpoints are stored together or not at all.  Returns the new head; the
        batch's entries are the ``len(drafts)`` seqs up to it.

        ``access_generation``: the drafts record decisions made at that access generation (from
        cached credentials); the transaction reads the generation and, if it moved, stores
        nothing and raises ``StaleAccess``."""
        seals = self.store.seals

        def tx(s: CoreTx) -> ChainHead:
            if access_generation is None:
                head = self._head(s)
            else:  # the generation and the head in one statement (one round trip), through the driver
                ((current, seq, hash_),) = self._generation_and_head.on(s.connection())
                if current != access_generation:
                    raise StaleAccess(access_generation, current)
                head = ChainHead(seq, hash_) if seq is not None else ChainHead(0, GENESIS_HASH)
            rows = chain.rows(head, drafts)
            if not rows:
                return head
            self._insert(s.connection(), rows)
            new = ChainHead(rows[-1][_SEQ], rows[-1][_HASH])
            if seals is not None:
                first = rows[0][_SEQ]

                def hashes(seq: int) -> str:
                    return rows[seq - first][_HASH]  # type: ignore[no-any-return]

                seals.after_append(s, new, first, hashes)
            return new

        result: ChainHead = self.store._retrying_core(tx)
        return result

    def checkpoint_now(self) -> Checkpoint | None:
        """Sign the head now, unless it is signed already (``None``: empty chain).  Needs the
        store's ``seals``; a concurrent signer is waited out by the store's retries."""
        seals = self.store.seals
        if seals is None:
            raise RuntimeError("the store has no sealer: attach one (AuditService does) to sign checkpoints")
        result: Checkpoint | None = self.store._retrying(seals.checkpoint_now)
        return result

    # -- reading --------------------------------------------------------------------------
    def checkpoints(self) -> list[Checkpoint]:
        with self._sessions() as s:
            return [checkpoint_of(r) for r in s.connection().execute(_CHECKPOINTS)]

    def last_checkpoint(self) -> Checkpoint | None:
        with self._sessions() as s:
            r = s.connection().execute(_LAST_CHECKPOINT).first()
            return checkpoint_of(r) if r else None

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
        seq_to: int | None = None,
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
        if seq_to is not None:
            filters.append(AuditRow.seq <= seq_to)
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

    def query(self, *, limit: int, after_seq: int = 0, **filters: Any) -> list[dict[str, Any]]:
        """The API's audit query: up to ``limit`` entries after ``after_seq`` in seq order, each as
        a dict of its fields and hash (no canonical text), filtered like :meth:`entries`.

        One statement per combination of filters, compiled once and run through the driver
        (:class:`~shipwarden.adapters.store.direct.DirectSelect`): no ORM, no ``AuditEntry``, the
        large ``canonical`` column not read at all.  ``action_prefix`` goes through :meth:`entries`."""
        given = {k: v for k, v in filters.items() if v is not None}
        if "action_prefix" in given or not set(given) <= {*_EQUAL, "ts_from", "ts_to", "seq_to"}:
            out = []
            for e in self.entries(limit=limit, after_seq=after_seq, **filters):
                out.append({**e.fields(), "hash": e.hash})
            return out
        shape = tuple(sorted(given))
        run = self._queries.get(shape)
        if run is None:
            run = self._queries[shape] = DirectSelect(self.store.engine, _query_statement(shape))
        loads = json.loads
        return [
            {
                "seq": int(r[0]), "ts": r[1], "source": r[2], "actor": r[3], "action": r[4], "service": r[5],
                "deployment_id": r[6], "outcome": r[7],
                "detail": dict(loads(r[8]) if isinstance(r[8], str | bytes) else r[8]),
                "prev_hash": r[9], "hash": r[10],
            }  # fmt: skip
            for r in run(after_seq=after_seq, limit=limit, **given)
        ]

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
