"""The backup catalogue's records and the rules over them: retention, and what is an alert (E6, E9).

Every backup — physical snapshot, logical dump, archived binlog file, configuration
bundle — is one :class:`BackupRecord`: what, when, from where, at which binlog/GTID
position, how big, its SHA-256, where it is stored and under which key.  The rules are
pure functions of the records and ``now``:

* :func:`retention_plan` — which records may go.  The newest good snapshot is never
  deleted, however old, and no archived binlog a kept snapshot still needs for
  point-in-time recovery is deleted (pgBackRest's rule: a backup is only as good as the
  logs after it).
* :func:`backup_alerts` — a schedule overrun (the newest good backup of a kind is older
  than its interval plus half), or a backup found corrupt or missing, is an alert.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from shipwarden.domain.dr.gtid import GtidPosition
from shipwarden.domain.dr.spec import BackupSpec, Retention

__all__ = [
    "BackupAlert",
    "BackupKind",
    "BackupRecord",
    "DrillRecord",
    "VerificationRecord",
    "backup_alerts",
    "retention_plan",
]

BackupKind = Literal["snapshot", "logical", "binlog", "config"]
BackupStatus = Literal["ok", "corrupt", "missing", "deleted"]
KINDS: tuple[BackupKind, ...] = ("snapshot", "logical", "binlog", "config")


@dataclass(frozen=True)
class BackupRecord:
    id: str
    service: str
    kind: BackupKind
    created_at: datetime
    source: str
    location: str
    size: int
    sha256: str
    key_id: str
    status: BackupStatus = "ok"
    #: snapshots/dumps: the position they are consistent at; binlogs: the position *before* the file
    gtid: str = ""
    #: binlogs: the position at the end of the file
    gtid_end: str = ""
    binlog_file: str | None = None
    binlog_pos: int | None = None
    raw_size: int = 0
    finished_at: datetime | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def position(self) -> GtidPosition:
        return GtidPosition.parse(self.gtid)

    @property
    def end_position(self) -> GtidPosition:
        return GtidPosition.parse(self.gtid_end)


@dataclass(frozen=True)
class VerificationRecord:
    """A restore test: the backup was read back into a fresh instance and compared with its source."""

    id: str
    service: str
    backup_id: str
    started_at: datetime
    finished_at: datetime
    ok: bool
    detail: str
    tables: int = 0
    mismatches: tuple[str, ...] = ()
    gtid: str = ""


@dataclass(frozen=True)
class DrillRecord:
    id: str
    service: str
    kind: Literal["drill", "failover", "switchover"]
    started_at: datetime
    finished_at: datetime
    passed: bool
    rto_s: float | None
    rpo_lost: int | None
    report: Mapping[str, Any]


@dataclass(frozen=True)
class BackupAlert:
    key: str
    severity: Literal["warning", "failure"]
    message: str


def _good(records: Iterable[BackupRecord], kind: str) -> list[BackupRecord]:
    return sorted((r for r in records if r.kind == kind and r.status == "ok"), key=lambda r: r.created_at)


def retention_plan(
    records: Sequence[BackupRecord], retention: Retention, now: datetime
) -> list[tuple[BackupRecord, str]]:
    """Records to delete, each with the reason.  Never the newest good record of a kind."""
    out: list[tuple[BackupRecord, str]] = []
    max_age = timedelta(seconds=retention.max_age)
    keep_counts = {
        "snapshot": retention.snapshots,
        "logical": retention.logical,
        "config": retention.snapshots,
    }
    kept_snapshots: list[BackupRecord] = []
    for kind, keep in keep_counts.items():
        good = _good(records, kind)
        for i, r in enumerate(good):
            newest = i == len(good) - 1
            rank = len(good) - i  # 1 = newest
            if newest:
                reason = ""
            elif rank > keep:
                reason = f"{rank - 1} newer {kind} backup(s) kept (retention {keep})"
            elif now - r.created_at > max_age:
                reason = f"older than {max_age}"
            else:
                reason = ""
            if reason:
                out.append((r, reason))
            elif kind == "snapshot":
                kept_snapshots.append(r)
        # unusable records go once they are older than the retention age
        for r in records:
            if r.kind == kind and r.status in ("corrupt", "missing") and now - r.created_at > max_age:
                out.append((r, f"{r.status} and older than {max_age}"))
    oldest = min(kept_snapshots, key=lambda r: r.created_at, default=None)
    for r in records:
        if r.kind != "binlog" or r.status == "deleted":
            continue
        if oldest is None:
            continue  # no snapshot yet: every log may be needed by the first one
        if r.gtid_end and oldest.position.contains(r.end_position) and r.created_at < oldest.created_at:
            out.append((r, f"wholly before the oldest kept snapshot {oldest.id} ({oldest.gtid})"))
    return out


def backup_alerts(records: Sequence[BackupRecord], spec: BackupSpec, now: datetime) -> list[BackupAlert]:
    """Overdue, corrupt and missing backups (deleted records are ignored)."""
    alerts: list[BackupAlert] = []
    for kind, every in (("snapshot", spec.snapshot), ("logical", spec.logical)):
        if every is None:
            continue
        good = _good(records, kind)
        allowed = timedelta(seconds=every.every * 1.5)
        if not good:
            alerts.append(BackupAlert(f"{kind}-missing", "failure", f"no good {kind} backup exists"))
        elif now - good[-1].created_at > allowed:
            age = now - good[-1].created_at
            alerts.append(
                BackupAlert(
                    f"{kind}-overdue",
                    "failure",
                    f"newest good {kind} backup {good[-1].id} is {age} old "
                    f"(every {timedelta(seconds=every.every)})",
                )
            )
    for r in records:
        if r.status in ("corrupt", "missing"):
            alerts.append(
                BackupAlert(
                    f"{r.status}:{r.id}",
                    "failure",
                    f"{r.kind} backup {r.id} of {r.created_at:%Y-%m-%d %H:%M:%S} is {r.status}",
                )
            )
    return alerts
