"""Store access for escalations (tables from migration ``0013_oncall``).

Implements ``ports.oncall.EscalationStore``.  Every change is one transaction with its
hash-chained audit entry (``escalation.*``, ``detail.escalation`` = the id): the new state, the
pages a step sends (unique per dedupe key, so a step retried after a crash pages nobody twice)
and, for a signed link, its spent nonce.  :meth:`OnCallRepo.apply` reads the row ``FOR UPDATE``
and bumps ``version``, so two engines (or an engine and a person acknowledging) are serialised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipwarden.adapters.store.models import (
    OnCallEscalationRow,
    OnCallFeedTokenRow,
    OnCallLinkNonceRow,
    OnCallOverrideRow,
    OnCallPageRow,
)
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.oncall.escalation import Escalation, EscalationError, Snapshot, Status
from shipwarden.domain.oncall.page import RecentChange
from shipwarden.ports.oncall import (
    Change,
    Contact,
    Delivery,
    EscalationNotFound,
    FeedToken,
    LinkSpent,
    PageDraft,
    PendingPage,
    StoredOverride,
)

__all__ = ["OnCallRepo", "RotaRepo", "StoreRecentChanges"]


def _esc(r: OnCallEscalationRow) -> Escalation:
    return Escalation(
        id=r.id,
        key=r.group_key,
        service=r.service,
        title=r.title,
        body=r.body or "",
        snapshot=Snapshot.from_json(r.snapshot),
        status=Status(r.status),
        step=r.step,
        due=r.next_due,
        opened_at=r.opened_at,
        acked_at=r.acked_at,
        acked_by=r.acked_by,
        resolved_at=r.resolved_at,
        resolved_by=r.resolved_by,
        version=r.version,
    )


def _put(row: OnCallEscalationRow, e: Escalation) -> None:
    row.status, row.step, row.next_due = e.status.value, e.step, e.due
    row.open_key = e.key if e.open else None
    row.acked_at, row.acked_by, row.resolved_at, row.resolved_by = (
        e.acked_at,
        e.acked_by,
        e.resolved_at,
        e.resolved_by,
    )


class OnCallRepo:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _audit(
        self,
        s: Session,
        e: Escalation,
        *,
        actor: str,
        action: str,
        detail: Mapping[str, Any],
        outcome: str = "ok",
    ) -> None:
        self.store._append_audit(
            s,
            actor=actor,
            action=action,
            outcome=outcome,
            service=e.service,
            detail={"escalation": e.id, "group": e.key[:255], **dict(detail)},
        )

    def create(self, e: Escalation, *, actor: str, detail: Mapping[str, Any]) -> tuple[Escalation, bool]:
        def tx(s: Session) -> tuple[Escalation, bool]:
            existing = s.scalars(
                select(OnCallEscalationRow).where(OnCallEscalationRow.open_key == e.key)
            ).first()
            if existing is not None:
                return _esc(existing), False
            row = OnCallEscalationRow(
                id=e.id,
                group_key=e.key,
                open_key=e.key,
                service=e.service,
                title=e.title,
                body=e.body,
                snapshot=e.snapshot.to_json(),
                status=e.status.value,
                step=e.step,
                next_due=e.due,
                opened_at=e.opened_at,
                version=1,
            )
            s.add(row)
            s.flush()
            self._audit(s, e, actor=actor, action="escalation.opened", detail=detail)
            return _esc(row), True

        try:
            result: tuple[Escalation, bool] = self.store._retrying(tx, attempts=5)
        except IntegrityError:  # another process opened it at the same moment
            found = self.open_for(e.key)
            if found is None:
                raise
            return found, False
        return result

    def get(self, escalation_id: str) -> Escalation:
        with self.store._tx() as s:
            row = s.get(OnCallEscalationRow, escalation_id)
            if row is None:
                raise EscalationNotFound(f"no escalation {escalation_id!r}")
            return _esc(row)

    def open_for(self, key: str) -> Escalation | None:
        with self.store._tx() as s:
            row = s.scalars(select(OnCallEscalationRow).where(OnCallEscalationRow.open_key == key)).first()
            return None if row is None else _esc(row)

    def find(
        self, *, open_only: bool = False, service: str | None = None, limit: int = 50
    ) -> list[Escalation]:
        q = select(OnCallEscalationRow).order_by(OnCallEscalationRow.opened_at.desc()).limit(limit)
        if open_only:
            q = q.where(OnCallEscalationRow.status != Status.RESOLVED.value)
        if service is not None:
            q = q.where(OnCallEscalationRow.service == service)
        with self.store._tx() as s:
            return [_esc(r) for r in s.scalars(q)]

    def due(self, now: float, limit: int = 100) -> list[Escalation]:
        q = (
            select(OnCallEscalationRow)
            .where(OnCallEscalationRow.next_due <= now)
            .order_by(OnCallEscalationRow.next_due)
            .limit(limit)
        )
        with self.store._tx() as s:
            return [_esc(r) for r in s.scalars(q)]

    def next_due(self) -> float | None:
        q = select(OnCallEscalationRow.next_due).where(OnCallEscalationRow.next_due.is_not(None))
        with self.store._tx() as s:
            return s.scalars(q.order_by(OnCallEscalationRow.next_due).limit(1)).first()

    def apply(
        self, escalation_id: str, change: Change, *, actor: str, action: str, nonce: str | None = None
    ) -> Escalation:
        def tx(s: Session) -> Escalation:
            row = s.get(OnCallEscalationRow, escalation_id, with_for_update=True)
            if row is None:
                raise EscalationNotFound(f"no escalation {escalation_id!r}")
            if nonce is not None:
                if s.get(OnCallLinkNonceRow, nonce) is not None:
                    raise LinkSpent("this link was used already: a link acts once")
                s.add(
                    OnCallLinkNonceRow(nonce=nonce, escalation_id=escalation_id, used_at=self.store._clock())
                )
            return self._change(s, row, change(_esc(row)), actor=actor, action=action)

        result: Escalation = self.store._retrying(tx)
        return result

    def apply_many(
        self, changes: Sequence[tuple[str, Change]], *, actor: str, action: str
    ) -> list[Escalation]:
        """:meth:`apply` for several escalations in one transaction (one commit for all the steps
        due at once): an escalation whose ``change`` raises ``EscalationError`` (acknowledged or
        fired meanwhile) or that is gone is skipped, the others are stored.  The moved ones."""

        def tx(s: Session) -> list[Escalation]:
            moved = []
            for escalation_id, change in changes:
                row = s.get(OnCallEscalationRow, escalation_id, with_for_update=True)
                if row is None:
                    continue
                try:
                    result = change(_esc(row))
                except EscalationError:
                    continue
                moved.append(self._change(s, row, result, actor=actor, action=action))
            return moved

        done: list[Escalation] = self.store._retrying(tx)
        return done

    def _change(
        self,
        s: Session,
        row: OnCallEscalationRow,
        result: tuple[Escalation, Sequence[PageDraft], dict[str, Any]],
        *,
        actor: str,
        action: str,
    ) -> Escalation:
        escalation_id = row.id
        after, pages, detail = result
        _put(row, after)
        row.version += 1
        now = self.store._clock()
        keys = [p.dedupe_key for p in pages]
        seen = (
            set(s.scalars(select(OnCallPageRow.dedupe_key).where(OnCallPageRow.dedupe_key.in_(keys))))
            if keys
            else set()
        )
        for p in pages:
            if p.dedupe_key in seen:
                continue
            seen.add(p.dedupe_key)
            s.add(
                OnCallPageRow(
                    escalation_id=escalation_id,
                    step=after.step - 1,
                    person=p.contact.person,
                    kind=p.contact.kind,
                    address=p.contact.address[:320],
                    subject=p.subject[:300],
                    body=p.body,
                    dedupe_key=p.dedupe_key,
                    status="pending",
                    attempts=0,
                    created_at=now,
                    next_attempt_at=now,
                    detail="",
                )
            )
        s.flush()
        self._audit(s, after, actor=actor, action=action, detail=detail)
        return _esc(row)

    def pending(self, now: float, limit: int = 50) -> list[PendingPage]:
        q = (
            select(OnCallPageRow)
            .where(OnCallPageRow.status == "pending", OnCallPageRow.next_attempt_at <= now)
            .order_by(OnCallPageRow.id)
            .limit(limit)
        )
        with self.store._tx() as s:
            return [
                PendingPage(
                    r.id,
                    r.escalation_id,
                    r.step,
                    Contact(r.kind, r.address, r.person),  # type: ignore[arg-type]
                    r.subject,
                    r.body,
                    r.dedupe_key,
                    r.attempts,
                )
                for r in s.scalars(q)
            ]

    def delivered(self, page_id: int, delivery: Delivery, *, retry_at: float | None) -> None:
        def tx(s: Session) -> None:
            row = s.get(OnCallPageRow, page_id, with_for_update=True)
            if row is None or row.status != "pending":
                return
            row.attempts += 1
            row.detail = delivery.detail[:500]
            if delivery.ok:
                row.status, row.sent_at, row.next_attempt_at = "sent", self.store._clock(), None
            elif retry_at is None:
                row.status, row.next_attempt_at = "failed", None
            else:
                row.next_attempt_at = retry_at
            if delivery.ok or retry_at is None:
                esc = s.get(OnCallEscalationRow, row.escalation_id)
                assert esc is not None
                self._audit(
                    s,
                    _esc(esc),
                    actor="shipwarden:oncall",
                    action="escalation.page",
                    outcome="ok" if delivery.ok else "failed",
                    detail={
                        "step": row.step,
                        "person": row.person,
                        "kind": row.kind,
                        "to": row.address if row.kind == "email" else row.address,
                        "attempts": row.attempts,
                        "detail": row.detail[:200],
                    },
                )

        self.store._retrying(tx)

    def pages(self, escalation_id: str) -> list[dict[str, Any]]:
        q = (
            select(OnCallPageRow)
            .where(OnCallPageRow.escalation_id == escalation_id)
            .order_by(OnCallPageRow.id)
        )
        with self.store._tx() as s:
            return [
                {
                    "step": r.step,
                    "person": r.person,
                    "kind": r.kind,
                    "to": r.address,
                    "status": r.status,
                    "attempts": r.attempts,
                    "created_at": r.created_at,
                    "sent_at": r.sent_at,
                    "detail": r.detail,
                }
                for r in s.scalars(q)
            ]


class StoreRecentChanges:
    """``ports.oncall.RecentChanges``: a service's last deployments and merged changes, newest first."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def recent(self, service: str | None, limit: int = 5) -> list[RecentChange]:
        out = [
            RecentChange(
                d.created_at,
                "deployment",
                d.id,
                f"{d.from_version or '(none)'} -> {d.to_version} {d.phase.value} by {d.actor}",
            )
            for d in self.store.history(service, limit)
        ]
        if service is not None:
            merged = list(self.store.audit_entries(action="change.merged", service=service))[-limit:]
            for e in merged:
                detail = e.detail or {}
                ref = str(detail.get("change") or detail.get("change_id") or e.seq)
                when = datetime.fromisoformat(e.ts.replace("Z", "+00:00")).timestamp()
                out.append(RecentChange(when, "change.merged", ref, str(detail.get("sha", ""))[:12]))
        return sorted(out, key=lambda c: c.at, reverse=True)[:limit]


def _override(r: OnCallOverrideRow) -> StoredOverride:
    return StoredOverride(
        r.id, r.schedule, r.person, r.start_at, r.end_at, r.reason, r.created_at, r.created_by,
        r.removed_at, r.removed_by,
    )  # fmt: skip


def _token(r: OnCallFeedTokenRow) -> FeedToken:
    return FeedToken(r.id, r.person, r.secret_sha256, r.created_at, r.created_by, r.revoked_at, r.revoked_by)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


class RotaRepo:
    """``ports.oncall.RotaStore``: overrides and feed tokens, each change audited in its
    transaction (``oncall.override.*``, ``oncall.feed.*``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add_override(self, o: StoredOverride) -> None:
        def tx(s: Session) -> None:
            s.add(
                OnCallOverrideRow(
                    id=o.id, schedule=o.schedule, person=o.person, start_at=o.start, end_at=o.end,
                    reason=o.reason, created_at=o.created_at, created_by=o.created_by,
                )
            )  # fmt: skip
            s.flush()
            detail = {"override": o.id, "schedule": o.schedule, "person": o.person,
                      "start": _iso(o.start), "end": _iso(o.end), "reason": o.reason}  # fmt: skip
            self.store._append_audit(s, actor=o.created_by, action="oncall.override.add", detail=detail)

        self.store._retrying(tx)

    def remove_override(self, override_id: str, *, actor: str, now: float) -> StoredOverride | None:
        def tx(s: Session) -> StoredOverride | None:
            row = s.get(OnCallOverrideRow, override_id, with_for_update=True)
            if row is None or row.removed_at is not None:
                return None
            row.removed_at, row.removed_by = now, actor
            s.flush()
            detail = {"override": row.id, "schedule": row.schedule, "person": row.person,
                      "start": _iso(row.start_at), "end": _iso(row.end_at)}  # fmt: skip
            self.store._append_audit(s, actor=actor, action="oncall.override.remove", detail=detail)
            return _override(row)

        result: StoredOverride | None = self.store._retrying(tx)
        return result

    def overrides(self, *, schedule: str | None = None, removed: bool = False) -> list[StoredOverride]:
        q = select(OnCallOverrideRow).order_by(OnCallOverrideRow.created_at, OnCallOverrideRow.id)
        if schedule is not None:
            q = q.where(OnCallOverrideRow.schedule == schedule)
        if not removed:
            q = q.where(OnCallOverrideRow.removed_at.is_(None))
        with self.store._tx() as s:
            return [_override(r) for r in s.scalars(q)]

    def add_feed_token(self, t: FeedToken) -> None:
        def tx(s: Session) -> None:
            s.add(
                OnCallFeedTokenRow(
                    id=t.id, person=t.person, secret_sha256=t.secret_sha256, created_at=t.created_at,
                    created_by=t.created_by,
                )
            )  # fmt: skip
            s.flush()
            self.store._append_audit(s, actor=t.created_by, action="oncall.feed.create",
                                     detail={"token": t.id, "person": t.person})  # fmt: skip

        self.store._retrying(tx)

    def revoke_feed_token(self, token_id: str, *, actor: str, now: float) -> FeedToken | None:
        def tx(s: Session) -> FeedToken | None:
            row = s.get(OnCallFeedTokenRow, token_id, with_for_update=True)
            if row is None or row.revoked_at is not None:
                return None
            row.revoked_at, row.revoked_by = now, actor
            s.flush()
            self.store._append_audit(s, actor=actor, action="oncall.feed.revoke",
                                     detail={"token": row.id, "person": row.person})  # fmt: skip
            return _token(row)

        result: FeedToken | None = self.store._retrying(tx)
        return result

    def feed_token(self, token_id: str) -> FeedToken | None:
        with self.store._tx() as s:
            row = s.get(OnCallFeedTokenRow, token_id)
            return None if row is None else _token(row)

    def feed_tokens(self, *, person: str | None = None) -> list[FeedToken]:
        q = select(OnCallFeedTokenRow).order_by(OnCallFeedTokenRow.created_at)
        if person is not None:
            q = q.where(OnCallFeedTokenRow.person == person)
        with self.store._tx() as s:
            return [_token(r) for r in s.scalars(q)]
