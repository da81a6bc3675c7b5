"""Restore and point-in-time recovery (E9): snapshot + binlog replay into a fresh instance.

``restore(service, to=…)`` decrypts the chosen snapshot straight into a scratch instance
(``mbstream`` + ``--prepare``), then replays the archived binlogs — sealed files first,
then the file still being copied — in one client session from the snapshot's GTID up
to the target (a GTID, inclusive, exact; or a moment, by the events' whole-second
timestamps).  Across failovers the archive is a sequence of timelines, one per primary:
each is replayed up to where its successor forked off (recorded by the archiver), so a
transaction only the old primary had is never restored.  Every restore is audited with
what it used and where it went.

With ``verify``, the restored tables' checksums are compared with the source's at the
same GTID position: the reference is taken on a replica whose applier is paused for the
moment (or under a read lock on the primary if it has none), and the restore targets
exactly that position.  A past moment cannot be read back from a live source, so
``verify`` with an explicit past target checks that the replay reached the target and
every table checksums cleanly, and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

from shipwarden.domain.dr.gtid import GtidPosition
from shipwarden.domain.dr.pitr import NoRecoveryPoint, RecoveryPlan, plan_recovery
from shipwarden.ports.databases import DatabaseError, ReplayTarget, ScratchInstance
from shipwarden.services.dr.backups import BackupService
from shipwarden.services.dr.context import DrContext, DrError, new_id

__all__ = ["RestoreResult", "RestoreService"]


@dataclass
class RestoreResult:
    id: str
    service: str
    snapshot: str
    binlogs: list[str]
    target: str
    reached: GtidPosition
    instance: ScratchInstance | None
    seconds: float
    checksums: dict[str, int | None] = field(default_factory=dict)
    reference: dict[str, int | None] | None = None
    mismatches: list[str] = field(default_factory=list)
    verified: bool | None = None
    detail: str = ""
    #: the archive did not reach the target (the archiver is not running, or behind)
    short: bool = False


class RestoreService:
    def __init__(self, ctx: DrContext) -> None:
        self.ctx = ctx
        self.backups = BackupService(ctx)

    def _chain(
        self, service: str, plan: RecoveryPlan
    ) -> tuple[list[tuple[str, Callable[[], IO[bytes]]]], dict[int, GtidPosition]]:
        """The files in order, and the forks: the index of each primary's last file before the
        archive followed a new primary, with the position that primary's history ends at."""
        out: list[tuple[str, Callable[[], IO[bytes]]]] = []
        sources: list[str] = []
        ends: list[GtidPosition | None] = []
        for r in plan.binlogs:
            out.append((r.binlog_file or r.id, lambda r=r: self.backups.open(r)))  # type: ignore[misc]
            sources.append(r.source)
            end = r.detail.get("timeline_end")
            ends.append(None if end is None else GtidPosition.parse(str(end)))
        streamer = self.ctx.db(service).streamer
        for f in streamer.files():
            out.append((f.name, lambda name=f.name: streamer.open(name)))  # type: ignore[misc]
            sources.append(str(streamer.source()))
            ends.append(None)
        forks: dict[int, GtidPosition] = {}
        fork: GtidPosition | None = None
        for i in range(len(sources)):
            fork = ends[i] or (fork if i and sources[i - 1] == sources[i] else None)
            if i + 1 < len(sources) and sources[i + 1] != sources[i] and fork is not None:
                forks[i] = fork  # the archive followed a new primary after file i
        return out, forks

    def restore(
        self,
        service: str,
        *,
        gtid: GtidPosition | None = None,
        before: datetime | None = None,
        verify: bool = False,
        latest: bool = False,
        keep: bool = True,
    ) -> RestoreResult:
        """Restore ``service``'s database into a fresh instance at ``gtid`` or ``before`` a moment;
        ``latest``: at the source's current position (taken consistently, and compared if ``verify``)."""
        ports = self.ctx.db(service)
        if (gtid is not None) + (before is not None) + latest != 1:
            raise DrError("give exactly one target: a GTID position, a moment, or latest")
        reference = None
        if latest:
            gtid, reference = self._reference(service)
        target = ReplayTarget(gtid=gtid, before=before)
        try:
            plan = plan_recovery(self.ctx.catalogue.backups(service), gtid=gtid, before=before)
        except NoRecoveryPoint as exc:
            raise DrError(f"{service}: {exc}") from None
        rid, started = new_id("r"), time.monotonic()
        what = str(gtid) if gtid is not None else before.isoformat() if before else ""
        instance: ScratchInstance | None = None
        try:
            with self.backups.open(plan.snapshot) as stream:
                instance = ports.scratch.from_snapshot(f"restore-{service}", stream)
            chain, forks = self._chain(service, plan)
            reached = instance.replay(chain, plan.snapshot.position, target, forks)
            names = [n for n, _ in chain]
            result = RestoreResult(rid, service, plan.snapshot.id, names, what, reached, instance, 0.0)
            if gtid is not None and not reached.contains(gtid):
                result.verified, result.short = False, True
                result.detail = (
                    f"the archive ends before the target: reached {reached}, wanted {gtid} "
                    "(is the archiver running?)"
                )
            if verify and result.verified is None:
                result.checksums = ports.driver.checksums(instance.endpoint, ports.spec.schemas)
                if reference is not None:
                    result.reference = reference
                    result.mismatches = sorted(
                        t
                        for t in set(reference) | set(result.checksums)
                        if reference.get(t) != result.checksums.get(t)
                    )
                    result.verified = not result.mismatches
                    result.detail = (
                        f"{len(reference)} table checksum(s) equal to the source at {gtid}"
                        if result.verified
                        else f"{len(result.mismatches)} table(s) differ from the source at {gtid}: "
                        + ", ".join(result.mismatches[:10])
                    )
                else:
                    broken = sorted(t for t, v in result.checksums.items() if v is None)
                    result.verified = not broken
                    result.detail = (
                        f"restored to {reached}; {len(result.checksums)} table(s) checksummed "
                        "(a past moment cannot be compared with the live source)"
                        if not broken
                        else f"tables without a checksum: {', '.join(broken)}"
                    )
        except DatabaseError as exc:
            if instance is not None:
                instance.remove()
            self._audit(service, rid, plan, what, outcome="failed", error=str(exc))
            raise DrError(f"{service}: restore failed: {exc}") from exc
        result.seconds = time.monotonic() - started
        self._audit(
            service, rid, plan, what, outcome="ok" if result.verified is not False else "failed",
            reached=str(reached), instance=str(instance.endpoint), binlogs=len(chain),
            verified=result.verified, mismatches=result.mismatches[:20], seconds=round(result.seconds, 3),
        )  # fmt: skip
        if not keep:
            instance.remove()
            result.instance = None
        return result

    def _reference(self, service: str) -> tuple[GtidPosition, dict[str, int | None]]:
        """(position, checksums) of the source at one moment: a replica with its applier paused,
        else the primary under a read lock."""
        ports = self.ctx.db(service)
        topo = self.ctx.topology(service)
        for ep in (*topo.replicas, topo.primary):
            try:
                if ep != topo.primary:
                    rs = ports.driver.replica_status(ep)
                    if rs is None or not rs.sql_running:
                        continue
                return ports.driver.consistent_checksums(ep, ports.spec.schemas)
            except DatabaseError:
                continue
        raise DrError(f"{service}: no instance answers to take reference checksums from")

    def _audit(
        self, service: str, rid: str, plan: RecoveryPlan, target: str, *, outcome: str, **detail: object
    ) -> None:
        self.ctx.catalogue.audit(
            actor=self.ctx.actor, action="dr.restore", service=service, outcome=outcome,
            detail={"restore": rid, "snapshot": plan.snapshot.id, "snapshot_gtid": plan.snapshot.gtid,
                    "target": target, **detail},
        )  # fmt: skip
