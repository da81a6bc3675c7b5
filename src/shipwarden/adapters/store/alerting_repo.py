"""Store access for alerting (tables from migration ``0012_alerting``).

Implements ``ports.alerting.AlertingStore``.  Every batch of alerts is one transaction (the
alerts, the groups they join and the groups' flush times), so an alert acknowledged to its
sender (Alertmanager gets its 200 only after the commit) is never lost by a crash.  A flush
writes the group's notification-log entry, drops the members its notice resolved, queues the
notice in the outbox and appends its ``alert.notice`` audit entry in one transaction: after a
crash either all of it happened (the outbox delivers it) or none (the next flush decides again).
The outbox's unique ``(notice_id, target)`` makes two processes flushing one group at once
queue its notice once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Column,
    MetaData,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipwarden.adapters.store.models import (
    AlertingAlertRow,
    AlertingGroupRow,
    AlertingMemberRow,
    AlertingOutboxRow,
    AlertingSilenceRow,
)
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.alerting import Alert, LogEntry, Matcher, Silence
from shipwarden.ports.alerting import GroupState, OutboxItem, Placement, QueuedNotice

__all__ = ["AlertingRepo", "group_id", "store_counts"]

_CHUNK = 400
A = cast(Table, AlertingAlertRow.__table__)
G = cast(Table, AlertingGroupRow.__table__)
M = cast(Table, AlertingMemberRow.__table__)
O = cast(Table, AlertingOutboxRow.__table__)  # noqa: E741
S = cast(Table, AlertingSilenceRow.__table__)
A_TEXT = Table(
    A.name,
    MetaData(),
    *(
        Column(c.name, Text() if isinstance(c.type, JSON) else c.type, primary_key=c.primary_key)
        for c in A.columns
    ),
)
"""``alerting_alerts`` with its JSON columns as text, for batch updates: the batch serialises
labels and annotations itself (``json.dumps``, what the JSON type stores), so SQLAlchemy
has no per-row, per-column bind processing to run over hundreds of rows."""


@lru_cache(maxsize=16_384)
def group_id(group_key: str, receiver: str) -> str:
    return hashlib.sha256(f"{receiver}\x00{group_key}".encode()).hexdigest()[:32]


_dumps = json.dumps
_MARK = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def _insert_many(s: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """``INSERT INTO table (...) VALUES (...)`` for every row, as one DB-API ``executemany`` in
    the session's transaction (PyMySQL and mysqlclient send it as one multi-row INSERT).

    What this skips is SQLAlchemy's per-row, per-column parameter processing, most of a batch
    write's cost at hundreds of rows; JSON columns are serialised here as the JSON type would
    (``json.dumps``).  A driver with another parameter style gets the Core statement."""
    conn = s.connection()
    mark = _MARK.get(str(conn.dialect.paramstyle))
    if mark is None:
        s.execute(insert(table), list(rows))
        return
    cols = list(rows[0])
    json_cols = {c for c in cols if isinstance(table.c[c].type, JSON)}
    q = conn.dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {q(table.name)} ({', '.join(q(c) for c in cols)}) "
        f"VALUES ({', '.join([mark] * len(cols))})"
    )
    params = [tuple(_dumps(r[c]) if c in json_cols else r[c] for c in cols) for r in rows]
    conn.exec_driver_sql(sql, params)


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _alert(r: Any) -> Alert:
    return Alert(
        labels=dict(r.labels),
        annotations=dict(r.annotations or {}),
        starts_at=r.starts_at,
        ends_at=r.ends_at,
        generator_url=r.generator_url or "",
        fingerprint=r.fingerprint,
    )


@dataclass
class _Group:
    first_at: float
    last_flush_at: float | None
    next_flush_at: float | None


class AlertingRepo:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- ingest ---------------------------------------------------------------------------------
    def ingest(
        self,
        alerts: Sequence[Alert],
        placements: Callable[[Alert], Sequence[Placement]],
        *,
        source: str,
        now: float,
        schedule: Callable[[Placement, float, float | None, float | None, bool], float],
    ) -> int:
        """Store a batch; returns how many alerts changed state (new, fired again, resolved).

        ``schedule(placement, first_at, last_flush_at, scheduled, all_resolved)`` says when a
        group touched by a change is flushed next."""
        latest: dict[str, Alert] = {}
        for a in alerts:  # the last word on a fingerprint within a batch wins
            latest[a.fingerprint] = a

        def tx(s: Session) -> int:
            known: dict[str, tuple[str, float, float | None]] = {}
            fps = list(latest)
            for part in _chunks(fps):
                for r in s.execute(
                    select(A.c.fingerprint, A.c.state, A.c.starts_at, A.c.ends_at).where(
                        A.c.fingerprint.in_(part)
                    )
                ):
                    known[r[0]] = (r[1], r[2], r[3])
            new_rows: list[dict[str, Any]] = []
            upd_rows: list[dict[str, Any]] = []
            changed: list[Alert] = []
            for fp, a in latest.items():
                state = a.status(now)
                row: dict[str, Any] = {
                    "fingerprint": fp,
                    "labels": dict(a.labels),
                    "annotations": dict(a.annotations),
                    "state": state,
                    "starts_at": a.starts_at,
                    "ends_at": a.ends_at,
                    "generator_url": a.generator_url,
                    "source": source,
                    "updated_at": now,
                }
                old = known.get(fp)
                if old is None:
                    if state == "resolved":
                        continue  # a resolve for an alert never seen firing: nothing to tell
                    new_rows.append(row)
                    changed.append(a)
                elif old[0] != state or (state == "firing" and old[1] != a.starts_at):
                    upd_rows.append(row)
                    changed.append(a)
                elif old[2] != a.ends_at:
                    upd_rows.append(row)
            for w in upd_rows:
                w["labels"], w["annotations"] = _dumps(w["labels"]), _dumps(w["annotations"])
            if new_rows:
                _insert_many(s, A, new_rows)
            if upd_rows:
                keyed = [{**u, "fp": u["fingerprint"]} for u in upd_rows]
                cols: dict[str, Any] = {k: bindparam(k) for k in upd_rows[0] if k != "fingerprint"}
                s.execute(
                    update(A_TEXT).where(A_TEXT.c.fingerprint == bindparam("fp")).values(**cols), keyed
                )
            self._touch(s, changed, placements, now, schedule)
            return len(changed)

        return int(self.store._retrying(tx))

    def _touch(
        self,
        s: Session,
        changed: Sequence[Alert],
        placements: Callable[[Alert], Sequence[Placement]],
        now: float,
        schedule: Callable[[Placement, float, float | None, float | None, bool], float],
    ) -> None:
        if not changed:
            return
        places: dict[str, Placement] = {}
        members: set[tuple[str, str]] = set()
        batch_firing: set[str] = set()  # groups this batch has a firing alert in
        for a in changed:
            firing = not a.resolved(now)
            for p in placements(a):
                gid = group_id(p.group_key, p.receiver)
                places[gid] = p
                members.add((gid, a.fingerprint))
                if firing:
                    batch_firing.add(gid)
        gids = list(places)
        groups: dict[str, _Group] = {}
        for part in _chunks(gids):
            for r in s.execute(
                select(G.c.id, G.c.first_at, G.c.last_flush_at, G.c.next_flush_at).where(G.c.id.in_(part))
            ):
                groups[r[0]] = _Group(r[1], r[2], r[3])
        fresh: list[dict[str, Any]] = [
            {
                "id": gid,
                "group_key": p.group_key,
                "receiver": p.receiver,
                "route_id": p.route_id,
                "group_labels": dict(p.group_labels),
                "first_at": now,
                "last_flush_at": None,
                "next_flush_at": None,
                "seq": 0,
                "firing": [],
                "resolved": [],
                "sent_at": None,
                "opened_at": None,
            }
            for gid, p in places.items()
            if gid not in groups
        ]
        if fresh:
            _insert_many(s, G, fresh)
            for f in fresh:
                groups[f["id"]] = _Group(now, None, None)
        # memberships already stored: looked up by the batch's fingerprints (indexed), not by
        # reading every member of a big group
        have: set[tuple[str, str]] = set()
        for part in _chunks(list({fp for _, fp in members})):
            have.update(
                (r[0], r[1])
                for r in s.execute(select(M.c.group_id, M.c.fingerprint).where(M.c.fingerprint.in_(part)))
            )
        add = [{"group_id": g, "fingerprint": f} for g, f in members - have]
        if add:
            _insert_many(s, M, add)
        # "all resolved" matters only for groups this batch only resolved in: count their firing members
        unsure = [gid for gid in gids if gid not in batch_firing]
        still_firing: set[str] = set()
        for gid in unsure:
            q = (
                select(M.c.fingerprint)
                .select_from(M.join(A, A.c.fingerprint == M.c.fingerprint))
                .where(and_(M.c.group_id == gid, A.c.state == "firing"))
                .limit(1)
            )
            if s.execute(q).first() is not None:
                still_firing.add(gid)
        moves = []
        for gid, p in places.items():
            g = groups[gid]
            clear = gid not in batch_firing and gid not in still_firing
            due = schedule(p, g.first_at, g.last_flush_at, g.next_flush_at, clear)
            if due != g.next_flush_at:
                moves.append({"gid": gid, "due": due})
        if moves:
            move = update(G).where(G.c.id == bindparam("gid")).values(next_flush_at=bindparam("due"))
            s.execute(move, moves)

    def sweep(
        self,
        now: float,
        placements: Callable[[Alert], Sequence[Placement]],
        schedule: Callable[[Placement, float, float | None, float | None, bool], float],
    ) -> int:
        """Firing alerts whose ``endsAt`` passed without a resolve (their sender went quiet, as
        Alertmanager's ``resolve_timeout``) become resolved; returns how many."""

        def tx(s: Session) -> int:
            rows = s.execute(
                select(A)
                .where(and_(A.c.state == "firing", A.c.ends_at.is_not(None), A.c.ends_at <= now))
                .limit(5000)
            ).all()
            if not rows:
                return 0
            alerts = [_alert(r) for r in rows]
            for part in _chunks([a.fingerprint for a in alerts]):
                s.execute(update(A).where(A.c.fingerprint.in_(part)).values(state="resolved", updated_at=now))
            self._touch(s, alerts, placements, now, schedule)
            return len(alerts)

        return int(self.store._retrying(tx))

    # -- flushes --------------------------------------------------------------------------------
    def due_groups(self, now: float, limit: int = 200) -> list[GroupState]:
        with self.store._sessions() as s:
            rows = s.execute(
                select(G)
                .where(and_(G.c.next_flush_at.is_not(None), G.c.next_flush_at <= now))
                .order_by(G.c.next_flush_at)
                .limit(limit)
            ).all()
            # the members of every due group in one query per chunk of groups, not one per group
            members: dict[str, list[Alert]] = {r.id: [] for r in rows}
            for part in _chunks([r.id for r in rows]):
                q = (
                    select(M.c.group_id, A)
                    .join(A, A.c.fingerprint == M.c.fingerprint)
                    .where(M.c.group_id.in_(part))
                    .order_by(M.c.group_id, A.c.fingerprint)
                )
                for m in s.execute(q):
                    members[m.group_id].append(_alert(m))
            out = []
            for r in rows:
                alerts = members[r.id]
                entry = None
                if r.sent_at is not None:
                    entry = LogEntry(
                        r.seq, frozenset(r.firing), frozenset(r.resolved), r.sent_at, r.opened_at or r.sent_at
                    )
                out.append(
                    GroupState(
                        id=r.id,
                        key=r.group_key,
                        receiver=r.receiver,
                        route_id=r.route_id,
                        group_labels=dict(r.group_labels),
                        first_at=r.first_at,
                        last_flush_at=r.last_flush_at,
                        next_flush_at=r.next_flush_at,
                        entry=entry,
                        alerts=alerts,
                    )
                )
            return out

    def firing(self) -> list[Alert]:
        """Firing alerts as inhibition reads them: labels, times, fingerprint (no annotations —
        decoding them was a third of a big flush's CPU)."""
        q = select(A.c.fingerprint, A.c.labels, A.c.starts_at, A.c.ends_at).where(A.c.state == "firing")
        with self.store._sessions() as s:
            return [
                Alert(labels=dict(r[1]), starts_at=r[2], ends_at=r[3], fingerprint=r[0]) for r in s.execute(q)
            ]

    def alerts(self, *, state: str | None = None, limit: int = 500) -> list[tuple[Alert, str]]:
        with self.store._sessions() as s:
            q = select(A).order_by(A.c.updated_at.desc()).limit(limit)
            if state:
                q = q.where(A.c.state == state)
            return [(_alert(r), r.state) for r in s.execute(q)]

    def flushed(
        self,
        gid: str,
        *,
        now: float,
        next_flush_at: float | None,
        entry: LogEntry | None = None,
        drop: Sequence[str] = (),
        outbox: Sequence[QueuedNotice] = (),
        audit: Mapping[str, Any] | None = None,
        incident_payloads: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Record a flush; ``False`` if another process queued this notice first (nothing done)."""

        def tx(s: Session) -> bool:
            values: dict[str, Any] = {"last_flush_at": now, "next_flush_at": next_flush_at}
            if entry is not None:
                values.update(
                    seq=entry.seq,
                    firing=sorted(entry.firing),
                    resolved=sorted(entry.resolved),
                    sent_at=entry.sent_at,
                    opened_at=entry.opened_at,
                )
            s.execute(update(G).where(G.c.id == gid).values(**values))
            for part in _chunks(list(drop)):
                s.execute(delete(M).where(and_(M.c.group_id == gid, M.c.fingerprint.in_(part))))
            seq = None
            if audit is not None:
                row = self.store._append_audit(s, **audit)
                seq = row.seq
            rows = [
                {
                    "notice_id": q.notice_id,
                    "target": q.target,
                    "group_id": gid,
                    "receiver": q.receiver,
                    "payload": dict(q.payload),
                    "created_at": now,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "delivered_at": None,
                    "state": "pending",
                    "last_error": "",
                }
                for q in outbox
            ]
            ids = [p["notice_id"] for p in incident_payloads]
            told: set[str] = set()
            for part in _chunks(ids):
                told.update(
                    r[0]
                    for r in s.execute(
                        select(O.c.notice_id).where(and_(O.c.target == "incident:", O.c.notice_id.in_(part)))
                    )
                )
            for p in incident_payloads:
                if p["notice_id"] in told:
                    continue  # the same alert change, reached through another group
                told.add(p["notice_id"])
                rows.append(
                    {
                        "notice_id": p["notice_id"],
                        "target": "incident:",
                        "group_id": gid,
                        "receiver": None,
                        "payload": {**p, "audit_seq": seq},
                        "created_at": now,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "delivered_at": None,
                        "state": "pending",
                        "last_error": "",
                    }
                )
            if rows:
                s.execute(insert(O), rows)
            return True

        try:
            return bool(self.store._retrying(tx, attempts=3))
        except IntegrityError:
            return False

    # -- outbox ---------------------------------------------------------------------------------
    def enqueue(self, items: Sequence[QueuedNotice], *, now: float) -> int:
        """Queue notices that did not come from a flush (on-call, rollout alerts); ``0`` for each
        already queued.  Returns how many were new."""
        n = 0
        for q in items:

            def tx(s: Session, q: QueuedNotice = q) -> None:
                s.execute(
                    insert(O).values(
                        notice_id=q.notice_id,
                        target=q.target,
                        group_id=None,
                        receiver=q.receiver,
                        payload=dict(q.payload),
                        created_at=now,
                        attempts=0,
                        next_attempt_at=now,
                        delivered_at=None,
                        state="pending",
                        last_error="",
                    )
                )

            try:
                self.store._retrying(tx, attempts=3)
                n += 1
            except IntegrityError:
                pass
        return n

    def claim(self, now: float, *, lease: float, limit: int = 50) -> list[OutboxItem]:
        """Due outbox items, each leased for ``lease`` seconds (a crashed sender's item comes back)."""

        def tx(s: Session) -> list[OutboxItem]:
            rows = s.execute(
                select(O)
                .where(and_(O.c.state == "pending", O.c.next_attempt_at <= now))
                .order_by(O.c.next_attempt_at, O.c.id)
                .limit(limit)
            ).all()
            if not rows:
                return []
            for part in _chunks([r.id for r in rows]):
                s.execute(
                    update(O)
                    .where(O.c.id.in_(part))
                    .values(next_attempt_at=now + lease, attempts=O.c.attempts + 1)
                )
            return [
                OutboxItem(
                    r.id, r.notice_id, r.target, r.receiver, dict(r.payload), r.attempts + 1, r.created_at
                )
                for r in rows
            ]

        return list(self.store._retrying(tx))

    def settle(
        self,
        item_id: int,
        *,
        now: float,
        ok: bool,
        detail: str,
        retry_at: float | None,
        audit: Mapping[str, Any] | None = None,
    ) -> None:
        def tx(s: Session) -> None:
            if ok:
                values: dict[str, Any] = {
                    "state": "delivered",
                    "delivered_at": now,
                    "next_attempt_at": None,
                    "last_error": "",
                }
            elif retry_at is None:
                values = {"state": "failed", "next_attempt_at": None, "last_error": detail[:2000]}
            else:
                values = {"next_attempt_at": retry_at, "last_error": detail[:2000]}
            s.execute(update(O).where(O.c.id == item_id).values(**values))
            if audit is not None:
                self.store._append_audit(s, **audit)

        self.store._retrying(tx)

    def outbox_counts(self) -> dict[str, int]:
        with self.store._sessions() as s:
            return {r[0]: int(r[1]) for r in s.execute(select(O.c.state, func.count()).group_by(O.c.state))}

    def next_due(self) -> float | None:
        """The earliest pending flush or delivery."""
        found = [x for x in (self.next_flush(), self.next_delivery()) if x is not None]
        return min(found) if found else None

    def next_flush(self) -> float | None:
        """The earliest group flush, or firing alert's ``endsAt`` (the sweep resolves it)."""
        with self.store._sessions() as s:
            a = s.execute(select(func.min(G.c.next_flush_at))).scalar()
            c = s.execute(select(func.min(A.c.ends_at)).where(A.c.state == "firing")).scalar()
        found = [x for x in (a, c) if x is not None]
        return min(found) if found else None

    def next_delivery(self) -> float | None:
        """The earliest pending outbox attempt (a retry's backoff, a lease that runs out)."""
        with self.store._sessions() as s:
            b = s.execute(select(func.min(O.c.next_attempt_at)).where(O.c.state == "pending")).scalar()
        return None if b is None else float(b)

    def outbox(self, *, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        with self.store._sessions() as s:
            q = select(O).order_by(O.c.id.desc()).limit(limit)
            if state:
                q = q.where(O.c.state == state)
            return [dict(r._mapping) for r in s.execute(q)]

    # -- silences -------------------------------------------------------------------------------
    def add_silence(self, silence: Silence, *, actor: str, now: float) -> None:
        def tx(s: Session) -> None:
            s.execute(
                insert(S).values(
                    id=silence.id,
                    matchers=[_matcher_json(m) for m in silence.matchers],
                    owner=silence.owner,
                    comment=silence.comment,
                    starts_at=silence.starts_at,
                    ends_at=silence.ends_at,
                    created_at=now,
                    created_by=actor,
                    expired_by=None,
                )
            )
            self.store._append_audit(
                s,
                actor=actor,
                action="alert.silence.add",
                detail={
                    "silence": silence.id,
                    "matchers": [str(m) for m in silence.matchers],
                    "owner": silence.owner,
                    "comment": silence.comment,
                    "starts_at": silence.starts_at,
                    "ends_at": silence.ends_at,
                },
            )

        self.store._retrying(tx)

    def silences(self, *, now: float | None = None, include_expired: bool = False) -> list[Silence]:
        with self.store._sessions() as s:
            q = select(S).order_by(S.c.created_at.desc())
            if not include_expired and now is not None:
                q = q.where(S.c.ends_at > now)
            return [_silence(r) for r in s.execute(q)]

    def expire_silence(self, silence_id: str, *, actor: str, now: float) -> Silence | None:
        """End a silence now; ``None`` if there is no such silence.  An expired one stays expired."""

        def tx(s: Session) -> Silence | None:
            r = s.execute(select(S).where(S.c.id == silence_id)).first()
            if r is None:
                return None
            if r.ends_at > now:
                s.execute(update(S).where(S.c.id == silence_id).values(ends_at=now, expired_by=actor))
                self.store._append_audit(
                    s,
                    actor=actor,
                    action="alert.silence.expire",
                    detail={"silence": silence_id, "owner": r.owner},
                )
            r2 = s.execute(select(S).where(S.c.id == silence_id)).one()
            return _silence(r2)

        result: Silence | None = self.store._retrying(tx)
        return result

    def reschedule_all(self, now: float) -> None:
        """Flush every group with members at once (silences or inhibitions changed)."""

        def tx(s: Session) -> None:
            s.execute(
                update(G)
                .where(
                    and_(
                        G.c.id.in_(select(M.c.group_id)),
                        or_(G.c.next_flush_at.is_(None), G.c.next_flush_at > now),
                    )
                )
                .values(next_flush_at=now)
            )

        self.store._retrying(tx)


def _matcher_json(m: Matcher) -> dict[str, Any]:
    return {"name": m.name, "value": m.value, "regex": m.regex, "negate": m.negate}


def _silence(r: Any) -> Silence:
    return Silence(
        id=r.id,
        matchers=tuple(Matcher(**m) for m in r.matchers),
        starts_at=r.starts_at,
        ends_at=r.ends_at,
        owner=r.owner,
        comment=r.comment or "",
    )


def store_counts(store: Store) -> dict[str, Any]:
    """What ``/metrics`` reads from the store at scrape time (three grouped counts)."""
    from shipwarden.adapters.store.models import DeploymentRow, StepRow

    D = cast(Table, DeploymentRow.__table__)
    St = cast(Table, StepRow.__table__)
    with store.engine.connect() as conn:
        phases = {r[0]: int(r[1]) for r in conn.execute(select(D.c.phase, func.count()).group_by(D.c.phase))}
        decisions = {
            (r[0], r[1]): int(r[2])
            for r in conn.execute(
                select(St.c.phase, St.c.outcome, func.count()).group_by(St.c.phase, St.c.outcome)
            )
        }
        outbox = {r[0]: int(r[1]) for r in conn.execute(select(O.c.state, func.count()).group_by(O.c.state))}
    return {"phases": phases, "decisions": decisions, "outbox": outbox}
