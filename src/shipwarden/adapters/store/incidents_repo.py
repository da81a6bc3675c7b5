"""Store access for incidents (tables from migration ``0010_incidents``).

Implements ``ports.incidents.IncidentStore``.  Like the deployment store, every write is one
transaction together with its hash-chained audit entry (``incident.*``, ``detail.incident`` =
the incident's id), so an incident's state and the record of who changed it exist together or
not at all.  :meth:`IncidentRepo.update` reads the row ``FOR UPDATE`` and applies the pure
change inside the transaction, so two people moving one incident at once are serialised and
each sees the other's result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipwarden.adapters.store.models import IncidentActionItemRow, IncidentAlertRow, IncidentRow
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.incidents import ActionItem, Incident, Severity, Status
from shipwarden.ports.incidents import AlertSignal, IncidentNotFound

__all__ = ["IncidentRepo", "analysis_samples"]

_STAMPS = ("acknowledged_at", "identified_at", "mitigated_at", "restored_at", "resolved_at")


def _ts(d: datetime | None) -> float | None:
    return None if d is None else d.timestamp()


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, tz=UTC)


def _incident(r: IncidentRow) -> Incident:
    opened, onset, detected = _dt(r.opened_at), _dt(r.onset_at), _dt(r.detected_at)
    assert opened is not None and onset is not None and detected is not None
    return Incident(
        id=r.id, title=r.title, service=r.service, severity=Severity(r.severity), status=Status(r.status),
        commander=r.commander, opened_at=opened, opened_by=r.opened_by, onset_at=onset, detected_at=detected,
        alert_fingerprint=r.alert_fingerprint, summary=r.summary or "", notes=dict(r.notes or {}),
        **{k: _dt(getattr(r, k)) for k in _STAMPS},
    )  # fmt: skip


def _values(inc: Incident) -> dict[str, Any]:
    return {
        "title": inc.title, "service": inc.service, "severity": inc.severity.value,
        "status": inc.status.value,
        "commander": inc.commander, "opened_at": inc.opened_at.timestamp(), "opened_by": inc.opened_by,
        "onset_at": inc.onset_at.timestamp(), "detected_at": inc.detected_at.timestamp(),
        "alert_fingerprint": inc.alert_fingerprint, "summary": inc.summary, "notes": dict(inc.notes),
        **{k: _ts(getattr(inc, k)) for k in _STAMPS},
    }  # fmt: skip


def _item(r: IncidentActionItemRow) -> ActionItem:
    created = _dt(r.created_at)
    assert created is not None
    return ActionItem(
        incident_id=r.incident_id, number=r.number, title=r.title, owner=r.owner,
        status=r.status,  # type: ignore[arg-type]
        created_at=created, created_by=r.created_by, due=r.due, closed_at=_dt(r.closed_at), note=r.note or "",
    )  # fmt: skip


class IncidentRepo:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _audit(self, s: Session, inc: Incident | str, *, service: str | None = None, **kw: Any) -> None:
        iid = inc if isinstance(inc, str) else inc.id
        svc = service if isinstance(inc, str) else inc.service
        detail = {"incident": iid, **dict(kw.pop("detail", None) or {})}
        self.store._append_audit(s, service=svc, detail=detail, **kw)

    def _row(self, s: Session, incident_id: str, *, lock: bool = False) -> IncidentRow:
        row = s.get(IncidentRow, incident_id, with_for_update=lock)
        if row is None:
            raise IncidentNotFound(f"no incident {incident_id!r}")
        return row

    # -- incidents ----------------------------------------------------------------------------------
    def create(self, incident: Incident, *, actor: str, detail: Mapping[str, Any]) -> Incident:
        def tx(s: Session) -> Incident:
            now = self.store._clock()
            s.add(IncidentRow(id=incident.id, revision=1, updated_at=now, **_values(incident)))
            s.flush()
            self._audit(s, incident, actor=actor, action="incident.opened", detail=dict(detail))
            return incident

        result: Incident = self.store._retrying(tx)
        return result

    def get(self, incident_id: str) -> Incident:
        with self.store._tx() as s:
            return _incident(self._row(s, incident_id))

    def find(self, *, open_only: bool = False, service: str | None = None, limit: int = 50) -> list[Incident]:
        q = select(IncidentRow).order_by(IncidentRow.opened_at.desc(), IncidentRow.id.desc()).limit(limit)
        if open_only:
            q = q.where(IncidentRow.status != Status.RESOLVED.value)
        if service is not None:
            q = q.where(IncidentRow.service == service)
        with self.store._tx() as s:
            return [_incident(r) for r in s.scalars(q)]

    def update(
        self,
        incident_id: str,
        change: Callable[[Incident], Incident],
        *,
        actor: str,
        action: str,
        detail: Mapping[str, Any],
        outcome: str = "ok",
    ) -> Incident:
        def tx(s: Session) -> Incident:
            row = self._row(s, incident_id, lock=True)
            after = change(_incident(row))
            for k, v in _values(after).items():
                setattr(row, k, v)
            row.revision += 1
            row.updated_at = self.store._clock()
            self._audit(s, after, actor=actor, action=action, outcome=outcome, detail=dict(detail))
            return after

        result: Incident = self.store._retrying(tx)
        return result

    def record(
        self, incident_id: str, *, actor: str, action: str, detail: Mapping[str, Any], outcome: str = "ok"
    ) -> None:
        def tx(s: Session) -> None:
            row = self._row(s, incident_id)
            self._audit(s, incident_id, service=row.service, actor=actor, action=action, outcome=outcome,
                        detail=dict(detail))  # fmt: skip

        self.store._retrying(tx)

    # -- alerts -------------------------------------------------------------------------------------
    def attach_alert(self, incident_id: str, alert: AlertSignal, *, actor: str) -> bool:
        def tx(s: Session) -> bool:
            row = self._row(s, incident_id)
            same = s.scalar(
                select(IncidentAlertRow.id).where(
                    IncidentAlertRow.incident_id == incident_id,
                    IncidentAlertRow.fingerprint == alert.fingerprint,
                    IncidentAlertRow.status == alert.status,
                    IncidentAlertRow.starts_at == alert.starts_at.timestamp(),
                )
            )
            if same is not None:
                return False
            s.add(IncidentAlertRow(
                incident_id=incident_id, fingerprint=alert.fingerprint[:128], name=alert.name[:256],
                severity=alert.severity, status=alert.status, service=alert.service,
                starts_at=alert.starts_at.timestamp(), ends_at=_ts(alert.ends_at), audit_seq=alert.audit_seq,
                received_at=self.store._clock(),
            ))  # fmt: skip
            s.flush()
            self._audit(
                s, incident_id, service=row.service, actor=actor, action="incident.alert",
                detail={"alert": alert.name, "fingerprint": alert.fingerprint, "status": alert.status,
                        "severity": alert.severity, "alert_seq": alert.audit_seq,
                        "starts_at": alert.starts_at.isoformat()},
            )  # fmt: skip
            return True

        try:
            result: bool = self.store._retrying(tx, attempts=3)
        except IntegrityError:  # a concurrent delivery of the same change won the unique constraint
            return False
        return result

    def alerts(self, incident_id: str) -> list[dict[str, Any]]:
        q = select(IncidentAlertRow).where(IncidentAlertRow.incident_id == incident_id)
        with self.store._tx() as s:
            return [
                {"fingerprint": r.fingerprint, "name": r.name, "severity": r.severity, "status": r.status,
                 "service": r.service, "starts_at": r.starts_at, "ends_at": r.ends_at,
                 "audit_seq": r.audit_seq, "received_at": r.received_at}
                for r in s.scalars(q.order_by(IncidentAlertRow.id))
            ]  # fmt: skip

    # -- action items -------------------------------------------------------------------------------
    def add_item(self, item: ActionItem, *, actor: str) -> ActionItem:
        def tx(s: Session) -> ActionItem:
            row = self._row(s, item.incident_id, lock=True)  # serialises the numbering
            top = s.scalar(
                select(func.max(IncidentActionItemRow.number)).where(
                    IncidentActionItemRow.incident_id == item.incident_id
                )
            )
            number = int(top or 0) + 1
            s.add(IncidentActionItemRow(
                incident_id=item.incident_id, number=number, title=item.title, owner=item.owner,
                status=item.status, due=item.due, created_at=item.created_at.timestamp(),
                created_by=item.created_by, closed_at=_ts(item.closed_at), note=item.note,
            ))  # fmt: skip
            s.flush()
            self._audit(
                s, item.incident_id, service=row.service, actor=actor, action="incident.action_item.added",
                detail={"number": number, "title": item.title, "owner": item.owner, "due": item.due},
            )  # fmt: skip
            return replace(item, number=number)

        result: ActionItem = self.store._retrying(tx)
        return result

    def update_item(
        self,
        incident_id: str,
        number: int,
        change: Callable[[ActionItem], ActionItem],
        *,
        actor: str,
        detail: Mapping[str, Any],
    ) -> ActionItem:
        def tx(s: Session) -> ActionItem:
            inc = self._row(s, incident_id)
            row = s.get(IncidentActionItemRow, (incident_id, number), with_for_update=True)
            if row is None:
                raise IncidentNotFound(f"incident {incident_id} has no action item #{number}")
            after = change(_item(row))
            row.title, row.owner, row.status, row.due = after.title, after.owner, after.status, after.due
            row.closed_at, row.note = _ts(after.closed_at), after.note
            self._audit(
                s, incident_id, service=inc.service, actor=actor, action="incident.action_item.updated",
                detail={"number": number, "status": after.status, **dict(detail)},
            )  # fmt: skip
            return after

        result: ActionItem = self.store._retrying(tx)
        return result

    def items(self, incident_id: str | None = None, *, open_only: bool = False) -> list[ActionItem]:
        q = select(IncidentActionItemRow)
        if incident_id is not None:
            q = q.where(IncidentActionItemRow.incident_id == incident_id)
        if open_only:
            q = q.where(IncidentActionItemRow.status == "open")
        q = q.order_by(IncidentActionItemRow.incident_id, IncidentActionItemRow.number)
        with self.store._tx() as s:
            return [_item(r) for r in s.scalars(q)]


def analysis_samples(store: Store, service: str, start: float, end: float) -> list[dict[str, Any]]:
    """The analysis records (judge samples, metric measurements) of ``service``'s deployments taken
    between ``start`` and ``end`` — the metric history kept when no Prometheus is configured."""
    from shipwarden.adapters.store.models import AnalysisRecordRow, DeploymentRow

    q = (
        select(AnalysisRecordRow)
        .join(DeploymentRow, DeploymentRow.id == AnalysisRecordRow.deployment_id)
        .where(DeploymentRow.service == service, AnalysisRecordRow.at >= start, AnalysisRecordRow.at <= end)
        .order_by(AnalysisRecordRow.at, AnalysisRecordRow.id)
    )
    with store._tx() as s:
        return [
            {"deployment_id": r.deployment_id, "key": r.key, "kind": r.kind, "name": r.name, "at": r.at,
             "canary": r.canary, "baseline": r.baseline}
            for r in s.scalars(q)
        ]  # fmt: skip
