"""Replication health rules (E9, E10): what about a running topology is worth an alert (pure).

* ``semi-sync-off`` — the policy asks for semi-synchronous replication but the primary
  reports ``Rpl_semi_sync_master_status=OFF``: MariaDB fell back to asynchronous
  replication after ``rpl_semi_sync_master_timeout`` *without an error to anyone*, so a
  failover now can lose acknowledged writes.  The monitor checks every ``checkInterval``
  (≤ 0.5 s by default), so this is raised well within 2 s.
* ``replica-io:<r>`` / ``replica-sql:<r>`` — a replication thread stopped (with its error).
* ``replica-lag:<r>`` — further behind than ``replication.maxLag``.
* ``gtid-errant:<r>`` — the replica has transactions the primary does not (written to it
  directly, or left over from a failover): it must not be promoted, and it diverges.
* ``replica-unreachable:<r>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from shipwarden.domain.dr.spec import DatabaseSpec
from shipwarden.domain.dr.topology import Endpoint, ReplicaStatus, ServerStatus

__all__ = ["HealthIssue", "replication_issues"]


@dataclass(frozen=True)
class HealthIssue:
    key: str
    severity: Literal["warning", "failure"]
    message: str


def replication_issues(
    spec: DatabaseSpec,
    primary: ServerStatus,
    replicas: Mapping[Endpoint, ReplicaStatus | None],
) -> list[HealthIssue]:
    out: list[HealthIssue] = []
    if spec.replication.mode == "semiSync" and primary.semi_sync_master is not True:
        out.append(
            HealthIssue(
                "semi-sync-off", "failure",
                f"primary {primary.endpoint} replicates asynchronously (Rpl_semi_sync_master_status=OFF, "
                f"{primary.semi_sync_clients} semi-sync replica(s) connected): acknowledged writes can be "
                "lost on failover",
            )
        )  # fmt: skip
    if primary.read_only:
        out.append(HealthIssue("primary-read-only", "failure", f"primary {primary.endpoint} refuses writes"))
    for ep, r in sorted(replicas.items()):
        if r is None:
            out.append(HealthIssue(f"replica-unreachable:{ep}", "warning", f"replica {ep} does not answer"))
            continue
        problems: list[tuple[str, Literal["warning", "failure"], str]] = []
        if r.source != primary.endpoint:
            problems.append(
                ("replica-source", "failure", f"replicates from {r.source}, not {primary.endpoint}")
            )
        if not r.io_connected:
            problems.append(
                ("replica-io", "failure", f"IO thread is {r.io_running}: {r.last_io_error or '-'}")
            )
        if not r.sql_running:
            problems.append(("replica-sql", "failure", f"SQL thread stopped: {r.last_sql_error or '-'}"))
        if r.seconds_behind is not None and r.seconds_behind > spec.replication.max_lag:
            problems.append(
                ("replica-lag", "warning", f"{r.seconds_behind}s behind (max {spec.replication.max_lag:g}s)")
            )
        errant = primary.gtid_binlog_pos.behind(r.gtid_slave_pos)
        if errant:
            theirs, ours = r.gtid_slave_pos, primary.gtid_binlog_pos
            problems.append(
                (
                    "gtid-errant",
                    "failure",
                    f"has {errant} transaction(s) the primary does not ({theirs} vs {ours})",
                )
            )
        out.extend(HealthIssue(f"{k}:{ep}", sev, f"replica {ep} {msg}") for k, sev, msg in problems)
    return out
