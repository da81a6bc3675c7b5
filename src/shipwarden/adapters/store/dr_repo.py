"""Store access for disaster recovery (tables from migration 0009_dr_catalogue).

Implements ``ports.databases.DrCatalogue``.  Like the deployment store, every write is
one transaction together with its hash-chained audit entry.  The topology row is
written with a compare-and-set on its ``epoch``, so two processes that both decided to
fail over cannot both repoint the database: the second one's write fails
(:class:`~shipwarden.ports.databases.StaleTopology`) before it does anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipwarden.adapters.store.models import DrBackupRow, DrDrillRow, DrTopologyRow, DrVerificationRow
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.dr.catalogue import BackupRecord, DrillRecord, VerificationRecord
from shipwarden.domain.dr.topology import Endpoint, Topology
from shipwarden.ports.databases import StaleTopology
from shipwarden.ports.store import NotFound

__all__ = ["DrRepo"]


def _ts(d: datetime | None) -> float | None:
    return None if d is None else d.timestamp()


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, tz=UTC)


def _backup(r: DrBackupRow) -> BackupRecord:
    created = _dt(r.created_at)
    assert created is not None
    return BackupRecord(
        id=r.id, service=r.service, kind=r.kind, created_at=created, source=r.source,  # type: ignore[arg-type]
        location=r.location, size=r.size, sha256=r.sha256, key_id=r.key_id, status=r.status,  # type: ignore[arg-type]
        gtid=r.gtid, gtid_end=r.gtid_end, binlog_file=r.binlog_file, binlog_pos=r.binlog_pos,
        raw_size=r.raw_size, finished_at=_dt(r.finished_at), detail=dict(r.detail or {}),
    )  # fmt: skip


_BACKUP_FIELDS = {
    "status", "finished_at", "location", "size", "raw_size", "sha256", "key_id", "gtid", "gtid_end", "detail",
}  # fmt: skip


class DrRepo:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _write(self, fn: Any) -> Any:
        return self.store._retrying(fn)

    def _audit(self, s: Session, **kw: Any) -> None:
        self.store._append_audit(s, **kw)

    # -- backups ----------------------------------------------------------------------------------
    def add_backup(self, record: BackupRecord, *, actor: str) -> None:
        def tx(s: Session) -> None:
            s.add(
                DrBackupRow(
                    id=record.id,
                    service=record.service,
                    kind=record.kind,
                    status=record.status,
                    created_at=record.created_at.timestamp(),
                    finished_at=_ts(record.finished_at),
                    source=record.source,
                    location=record.location,
                    size=record.size,
                    raw_size=record.raw_size,
                    sha256=record.sha256,
                    key_id=record.key_id,
                    gtid=record.gtid,
                    gtid_end=record.gtid_end,
                    binlog_file=record.binlog_file,
                    binlog_pos=record.binlog_pos,
                    detail=dict(record.detail),
                )  # fmt: skip
            )
            self._audit(
                s, actor=actor, action=f"dr.backup.{record.kind}", service=record.service,
                detail={"backup": record.id, "size": record.size, "sha256": record.sha256,
                        "gtid": record.gtid, "gtid_end": record.gtid_end, "binlog_file": record.binlog_file,
                        "location": record.location, "key_id": record.key_id},
            )  # fmt: skip

        self._write(tx)

    def update_backup(self, backup_id: str, *, actor: str, action: str, **changes: Any) -> BackupRecord:
        unknown = set(changes) - _BACKUP_FIELDS
        if unknown:
            raise ValueError(f"cannot change {', '.join(sorted(unknown))} of a backup record")

        def tx(s: Session) -> BackupRecord:
            row = s.get(DrBackupRow, backup_id)
            if row is None:
                raise NotFound(f"no backup {backup_id!r}")
            before = {k: getattr(row, k) for k in changes}
            for k, v in changes.items():
                setattr(row, k, _ts(v) if k == "finished_at" else v)
            outcome = "failed" if changes.get("status") in ("corrupt", "missing") else "ok"
            self._audit(
                s, actor=actor, action=action, service=row.service, outcome=outcome,
                detail={"backup": backup_id, "kind": row.kind,
                        "changes": {k: str(v) if isinstance(v, datetime) else v for k, v in changes.items()
                                    if k != "detail"},
                        "before": {k: v for k, v in before.items() if k != "detail"}},
            )  # fmt: skip
            return _backup(row)

        result: BackupRecord = self._write(tx)
        return result

    def backups(self, service: str, kind: str | None = None) -> list[BackupRecord]:
        q = select(DrBackupRow).where(DrBackupRow.service == service)
        if kind is not None:
            q = q.where(DrBackupRow.kind == kind)
        with self.store._tx() as s:
            return [_backup(r) for r in s.scalars(q.order_by(DrBackupRow.created_at, DrBackupRow.id))]

    def backup(self, backup_id: str) -> BackupRecord:
        with self.store._tx() as s:
            row = s.get(DrBackupRow, backup_id)
            if row is None:
                raise NotFound(f"no backup {backup_id!r}")
            return _backup(row)

    # -- verifications ----------------------------------------------------------------------------
    def add_verification(self, record: VerificationRecord, *, actor: str) -> None:
        def tx(s: Session) -> None:
            s.add(
                DrVerificationRow(
                    id=record.id,
                    service=record.service,
                    backup_id=record.backup_id,
                    started_at=record.started_at.timestamp(),
                    finished_at=record.finished_at.timestamp(),
                    ok=record.ok,
                    detail=record.detail,
                    tables=record.tables,
                    mismatches={"tables": list(record.mismatches)},
                    gtid=record.gtid,
                )  # fmt: skip
            )
            self._audit(
                s, actor=actor, action="dr.verify", service=record.service,
                outcome="ok" if record.ok else "failed",
                detail={"verification": record.id, "backup": record.backup_id, "tables": record.tables,
                        "mismatches": list(record.mismatches)[:20], "detail": record.detail[:500]},
            )  # fmt: skip

        self._write(tx)

    def verifications(self, service: str, limit: int = 20) -> list[VerificationRecord]:
        q = (
            select(DrVerificationRow)
            .where(DrVerificationRow.service == service)
            .order_by(DrVerificationRow.finished_at.desc(), DrVerificationRow.id.desc())
            .limit(limit)
        )
        with self.store._tx() as s:
            out = []
            for r in s.scalars(q):
                started, finished = _dt(r.started_at), _dt(r.finished_at)
                assert started is not None and finished is not None
                out.append(
                    VerificationRecord(
                        r.id,
                        r.service,
                        r.backup_id,
                        started,
                        finished,
                        r.ok,
                        r.detail,
                        r.tables,
                        tuple((r.mismatches or {}).get("tables", ())),
                        r.gtid,
                    )  # fmt: skip
                )
            return out

    # -- drills -----------------------------------------------------------------------------------
    def add_drill(self, record: DrillRecord, *, actor: str) -> None:
        def tx(s: Session) -> None:
            s.add(
                DrDrillRow(
                    id=record.id,
                    service=record.service,
                    kind=record.kind,
                    started_at=record.started_at.timestamp(),
                    finished_at=record.finished_at.timestamp(),
                    passed=record.passed,
                    rto_s=record.rto_s,
                    rpo_lost=record.rpo_lost,
                    report=dict(record.report),
                )  # fmt: skip
            )
            self._audit(
                s, actor=actor, action=f"dr.{record.kind}.report", service=record.service,
                outcome="ok" if record.passed else "failed",
                detail={"drill": record.id, "rto_s": record.rto_s, "rpo_lost": record.rpo_lost,
                        "passed": record.passed},
            )  # fmt: skip

        self._write(tx)

    def drills(self, service: str, limit: int = 20) -> list[DrillRecord]:
        q = (
            select(DrDrillRow)
            .where(DrDrillRow.service == service)
            .order_by(DrDrillRow.started_at.desc())
            .limit(limit)
        )
        with self.store._tx() as s:
            out = []
            for r in s.scalars(q):
                started, finished = _dt(r.started_at), _dt(r.finished_at)
                assert started is not None and finished is not None
                out.append(
                    DrillRecord(
                        r.id,
                        r.service,
                        r.kind,  # type: ignore[arg-type]
                        started,
                        finished,
                        r.passed,
                        r.rto_s,
                        r.rpo_lost,
                        dict(r.report or {}),
                    )  # fmt: skip
                )
            return out

    # -- topology ---------------------------------------------------------------------------------
    def topology(self, service: str) -> Topology | None:
        with self.store._tx() as s:
            row = s.get(DrTopologyRow, service)
            if row is None:
                return None
            return Topology(
                service,
                Endpoint.parse(row.primary_endpoint),
                tuple(Endpoint.parse(e) for e in (row.replicas or {}).get("endpoints", ())),
                tuple(Endpoint.parse(e) for e in (row.fenced or {}).get("endpoints", ())),
                row.epoch,
            )

    def save_topology(
        self,
        topology: Topology,
        *,
        expected_epoch: int | None,
        actor: str,
        action: str,
        detail: Mapping[str, Any],
    ) -> None:
        def tx(s: Session) -> None:
            row = s.get(DrTopologyRow, topology.service, with_for_update=True)
            current = None if row is None else row.epoch
            if current != expected_epoch:
                raise StaleTopology(
                    f"{topology.service}: topology epoch is {current}, expected {expected_epoch}: "
                    "another process changed it"
                )
            values = {
                "primary_endpoint": str(topology.primary),
                "replicas": {"endpoints": [str(e) for e in topology.replicas]},
                "fenced": {"endpoints": [str(e) for e in topology.fenced]},
                "epoch": topology.epoch,
                "updated_at": self.store._clock(),
            }
            if row is None:
                s.add(DrTopologyRow(service=topology.service, **values))
            else:
                for k, v in values.items():
                    setattr(row, k, v)
            self._audit(
                s, actor=actor, action=action, service=topology.service,
                detail={**dict(detail), "epoch": topology.epoch, "primary": str(topology.primary),
                        "replicas": [str(e) for e in topology.replicas],
                        "fenced": [str(e) for e in topology.fenced]},
            )  # fmt: skip

        self._write(tx)  # a retry after a write conflict re-reads the epoch, so it raises StaleTopology

    # -- audit ------------------------------------------------------------------------------------
    def audit(
        self,
        *,
        actor: str,
        action: str,
        service: str,
        outcome: str = "ok",
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        self.store.audit(
            actor=actor, action=action, service=service, outcome=outcome, detail=dict(detail or {})
        )
