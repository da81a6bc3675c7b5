"""Point-in-time recovery planning: which snapshot, which archived binlogs (pure).

The snapshot is the newest good one *at or before* the target (a GTID target must
contain the snapshot's position; a time target must come after the snapshot finished).
The binlogs are every good archived file that may hold a transaction between the
snapshot and the target — a file whose end position the snapshot already contains, or
whose start position already contains a GTID target, is skipped — in archive order,
followed by the files still being copied.  Replay then runs from the
snapshot's GTID (exclusive) to the target, as one session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from shipwarden.domain.dr.catalogue import BackupRecord
from shipwarden.domain.dr.gtid import GtidPosition

__all__ = ["RecoveryPlan", "plan_recovery", "NoRecoveryPoint"]


class NoRecoveryPoint(ValueError):
    pass


@dataclass(frozen=True)
class RecoveryPlan:
    snapshot: BackupRecord
    binlogs: tuple[BackupRecord, ...]
    #: the archive's end as far as the catalogue knows (staged files may reach further)
    archived_to: GtidPosition


def plan_recovery(
    records: Sequence[BackupRecord], *, gtid: GtidPosition | None = None, before: datetime | None = None
) -> RecoveryPlan:
    snaps = sorted(
        (r for r in records if r.kind == "snapshot" and r.status == "ok"), key=lambda r: r.created_at
    )
    if gtid is not None:
        snaps = [s for s in snaps if gtid.contains(s.position)]
    if before is not None:
        snaps = [s for s in snaps if (s.finished_at or s.created_at) <= before]
    if not snaps:
        what = f"GTID {gtid}" if gtid is not None else f"{before:%Y-%m-%d %H:%M:%S %Z}" if before else "now"
        raise NoRecoveryPoint(f"no good snapshot at or before {what}")
    snap = snaps[-1]
    logs = sorted(
        (r for r in records if r.kind == "binlog" and r.status == "ok"), key=lambda r: (r.created_at, r.id)
    )
    needed = tuple(
        r
        for r in logs
        if not (r.gtid_end and snap.position.contains(r.end_position))  # wholly before the snapshot
        and not (gtid is not None and r.gtid and r.position.contains(gtid))  # wholly after the target
    )
    end = GtidPosition({})
    for r in logs:
        end = end.merge(r.end_position)
    return RecoveryPlan(snap, needed, end)
