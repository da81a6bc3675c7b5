"""Catalogue rules: retention never drops the newest good backup or a binlog a kept snapshot needs;
overdue, corrupt and missing backups are alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shipwarden.domain.dr.catalogue import BackupRecord, backup_alerts, retention_plan
from shipwarden.domain.dr.spec import BackupSpec, Every, Retention

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)


def rec(
    i: str, kind: str, hours_ago: float, gtid: str = "", gtid_end: str = "", status: str = "ok"
) -> BackupRecord:
    return BackupRecord(i, "hello", kind, NOW - timedelta(hours=hours_ago), "p", f"{i}.swb", 1, "0" * 64, "k",  # type: ignore[arg-type]
                        status, gtid, gtid_end)  # type: ignore[arg-type]  # fmt: skip


def test_snapshot_count_and_age() -> None:
    snaps = [rec(f"s{i}", "snapshot", 10 - i) for i in range(5)]
    plan = {r.id: why for r, why in retention_plan(snaps, Retention(snapshots=3, max_age=3e8), NOW)}
    assert set(plan) == {"s0", "s1"} and "retention 3" in plan["s0"]
    plan2 = {r.id for r, _ in retention_plan(snaps, Retention(snapshots=10, max_age=7.5 * 3600), NOW)}
    assert plan2 == {"s0", "s1", "s2"}  # 10 h, 9 h, 8 h old


def test_the_newest_good_snapshot_is_kept_however_old() -> None:
    snaps = [rec("old", "snapshot", 1000), rec("bad", "snapshot", 1, status="corrupt")]
    assert retention_plan(snaps, Retention(snapshots=1, max_age=3600), NOW) == []


def test_binlogs_needed_by_a_kept_snapshot_stay() -> None:
    records = [
        rec("s-old", "snapshot", 50, gtid="0-1-100"),
        rec("s-new", "snapshot", 10, gtid="0-1-500"),
        rec("bl-1", "binlog", 60, gtid="0-1-0", gtid_end="0-1-90"),
        rec("bl-2", "binlog", 40, gtid="0-1-90", gtid_end="0-1-300"),
        rec("bl-3", "binlog", 5, gtid="0-1-300", gtid_end="0-1-600"),
    ]
    plan = {r.id for r, _ in retention_plan(records, Retention(snapshots=2, max_age=3e8), NOW)}
    assert plan == {"bl-1"}  # bl-2 is needed to roll s-old forward
    plan = {r.id for r, _ in retention_plan(records, Retention(snapshots=1, max_age=3e8), NOW)}
    assert plan == {"s-old", "bl-1", "bl-2"}


def test_alerts() -> None:
    spec = BackupSpec(snapshot=Every(every=3600), logical=None)
    assert [a.key for a in backup_alerts([], spec, NOW)] == ["snapshot-missing"]
    assert backup_alerts([rec("s", "snapshot", 1.4)], spec, NOW) == []
    (overdue,) = backup_alerts([rec("s", "snapshot", 1.6)], spec, NOW)
    assert overdue.key == "snapshot-overdue" and "s" in overdue.message
    keys = {
        a.key
        for a in backup_alerts(
            [rec("s", "snapshot", 0.1), rec("x", "logical", 1, status="corrupt")], spec, NOW
        )
    }
    assert keys == {"corrupt:x"}
