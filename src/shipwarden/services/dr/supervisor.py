"""``shipwarden db watch``: everything DR does continuously, for each database of the policy.

Per database, up to four loops in threads: the monitor (health, failover, fencing; every
``failover.checkInterval``), the primary's guard (semi-sync databases whose instances run on
this host: a primary cut off from its replicas fences itself, ``services.dr.guard``), the
binlog archiver (when ``backup.archive``), and the
scheduler (every ``tick_s``): snapshots and dumps when their interval has passed,
verification when ``backup.verify.every`` has, and the catalogue's integrity check and
retention once per ``check_every``.  Every loop survives its own failures (each is an
audit entry); stopping is cooperative.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from shipwarden.services.dr.archiver import BinlogArchiver
from shipwarden.services.dr.backups import BackupService
from shipwarden.services.dr.context import DrContext
from shipwarden.services.dr.failover import DatabaseMonitor
from shipwarden.services.dr.guard import PrimaryGuard
from shipwarden.services.dr.verify import VerificationService

__all__ = ["DrSupervisor"]


class DrSupervisor:
    def __init__(self, ctx: DrContext, services: Iterable[str], *, tick_s: float = 5.0,
                 check_every: float = 600.0) -> None:  # fmt: skip
        self.ctx = ctx
        self.services = list(services)
        self.tick_s = tick_s
        self.check_every = check_every
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.monitors = {s: DatabaseMonitor(ctx, s) for s in self.services}
        self.guards = {
            s: PrimaryGuard(ctx, s) for s in self.services
            if ctx.db(s).control is not None and ctx.db(s).spec.replication.mode == "semiSync"
        }  # fmt: skip
        self.archivers = {s: BinlogArchiver(ctx, s) for s in self.services if ctx.db(s).spec.backup.archive}

    def start(self) -> None:
        for s, mon in self.monitors.items():
            mon.ensure_listener()
            self._spawn(f"monitor-{s}", mon.run, self.stop_event)
        for s, guard in self.guards.items():
            self._spawn(f"guard-{s}", guard.run, self.stop_event)
        for s, arch in self.archivers.items():
            self._spawn(f"archiver-{s}", arch.run, self.stop_event)
        self._spawn("scheduler", self._schedule)

    def _spawn(self, name: str, fn: object, *args: object) -> None:
        t = threading.Thread(target=fn, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        t.start()
        self.threads.append(t)

    def _schedule(self) -> None:
        backups, verifier = BackupService(self.ctx), VerificationService(self.ctx)
        last_check = 0.0
        while not self.stop_event.is_set():
            for s in self.services:
                try:
                    for kind in backups.due(s):
                        backups.snapshot(s) if kind == "snapshot" else backups.dump(s)
                    if verifier.due(s):
                        verifier.verify(s)
                    if time.monotonic() - last_check > self.check_every:
                        backups.check(s)
                        backups.enforce_retention(s)
                except Exception as exc:  # noqa: BLE001 - the schedule must outlive any one failure
                    self.ctx.catalogue.audit(actor=self.ctx.actor, action="dr.schedule.error", service=s,
                                             outcome="failed", detail={"error": str(exc)[:500]})  # fmt: skip
            if time.monotonic() - last_check > self.check_every:
                last_check = time.monotonic()
            self.stop_event.wait(self.tick_s)

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(30)
