"""Automated backup verification (E3's "backup verified" gate, E9).

A backup is verified only by reading it back: the newest good snapshot's file is
re-checked (size, SHA-256), decrypted into a scratch instance, and — when the binlog
archive is on — rolled forward to a reference point taken from the source at that
moment (a replica's paused applier), where every table's checksum must equal the
source's.  That checks the snapshot *and* the archive chain after it.  Without an
archive the snapshot is restored at its own position and every table must checksum.

Each run is one :class:`~shipwarden.domain.dr.catalogue.VerificationRecord` (with its
audit entry); a failed run is also an alert.  The checklist's backup gate reads the
newest record and its age, never an uploaded claim.
"""

from __future__ import annotations

from datetime import timedelta

from shipwarden.domain.dr.catalogue import VerificationRecord
from shipwarden.domain.evidence.model import BackupVerification
from shipwarden.services.dr.backups import BackupService
from shipwarden.services.dr.context import DrContext, DrError, new_id
from shipwarden.services.dr.restore import RestoreService

__all__ = ["VerificationService", "as_gate_fact"]


def as_gate_fact(record: VerificationRecord | None) -> BackupVerification | None:
    """What the backup gate judges: the newest restore test of a database."""
    if record is None:
        return None
    return BackupVerification(
        f"{record.service}/{record.backup_id}", record.finished_at, record.ok, record.detail
    )


class VerificationService:
    def __init__(self, ctx: DrContext) -> None:
        self.ctx = ctx
        self.backups = BackupService(ctx)
        self.restores = RestoreService(ctx)

    def verify(self, service: str) -> VerificationRecord:
        ports = self.ctx.db(service)
        started = self.ctx.clock()
        snaps = [r for r in self.ctx.catalogue.backups(service, "snapshot") if r.status == "ok"]
        backup_id, ok, tables, gtid = "-", False, 0, ""
        mismatches: tuple[str, ...] = ()
        if not snaps:
            detail = "no good snapshot to verify"
        else:
            snap = snaps[-1]
            backup_id = snap.id
            problem = self.backups._integrity(snap)
            if problem is not None:
                status, why = problem
                self.ctx.catalogue.update_backup(
                    snap.id, actor=self.ctx.actor, action=f"dr.backup.{status}", status=status,
                    detail={**dict(snap.detail), "problem": why},
                )  # fmt: skip
                detail = f"snapshot {snap.id} is {status}: {why}"
            else:
                try:
                    note = ""
                    r = None
                    if ports.spec.backup.archive:
                        r = self.restores.restore(service, latest=True, verify=True, keep=False)
                        if r.short:  # the archive is behind: the snapshot alone can still be proven
                            note = f" (archive not verified: {r.detail})"
                            r = None
                    if r is None:
                        r = self.restores.restore(service, gtid=snap.position, verify=True, keep=False)
                    ok = bool(r.verified)
                    tables, mismatches, gtid = len(r.checksums), tuple(r.mismatches), str(r.reached)
                    took = f"{r.seconds:.1f}s"
                    detail = f"snapshot {snap.id} ({snap.gtid}) restored in {took}: {r.detail}{note}"
                except DrError as exc:
                    detail = f"snapshot {snap.id} could not be restored: {exc}"
        record = VerificationRecord(
            new_id("v"), service, backup_id, started, self.ctx.clock(), ok, detail, tables, mismatches, gtid
        )
        self.ctx.catalogue.add_verification(record, actor=self.ctx.actor)
        if not ok:
            self.ctx.alert(service, "backup-verification", "failure", detail)
        return record

    def latest(self, service: str) -> VerificationRecord | None:
        found = self.ctx.catalogue.verifications(service, limit=1)
        return found[0] if found else None

    def due(self, service: str) -> bool:
        every = self.ctx.db(service).spec.backup.verify
        if every is None:
            return False
        last = self.latest(service)
        return last is None or self.ctx.clock() - last.finished_at >= timedelta(seconds=every.every)
