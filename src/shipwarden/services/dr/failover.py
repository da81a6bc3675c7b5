"""Failover, fencing and replication health (E1, E10): the database monitor.

:meth:`DatabaseMonitor.tick` runs every ``failover.checkInterval``:

1. **Check** the current primary (a short query with connect *and* read time-outs) and ask
   every replica for ``SHOW SLAVE STATUS``.
2. **Primary answers** → converge (the listener points at it, it accepts writes, every
   replica replicates from it, fenced instances stay fenced), then judge replication
   health (:func:`~shipwarden.domain.dr.health.replication_issues`): each new issue is an
   alert once, each cleared one an audit entry.
3. **Primary does not answer** → :func:`~shipwarden.domain.dr.failover.assess`; only when
   it is ``DEAD`` (unreachable for ``confirmations`` checks *and* every reachable replica
   lost it) and failover is automatic, :meth:`failover`.

**Failover** persists the new topology first (epoch + 1, compare-and-set: two monitors
cannot both fail over), then makes it true, every step audited with its duration:
take the listener off the old primary (sessions cut, no connection reaches it), fence
the old primary if it answers (``read_only=1``, sessions killed), let the candidate apply
its relay log, promote it (semi-sync ``AFTER_SYNC`` on), point the listener at it,
re-attach the other replicas by GTID.  A crash half-way is finished by the next tick's
convergence.  The old primary stays in ``fenced``: whenever it answers again it is set
read-only and its sessions are killed, and the listener never points at it until it is
rebuilt as a replica (:meth:`rebuild`).

**Switchover** (on command, the primary alive) fences the primary first, waits until the
candidate has applied everything the primary wrote, then swaps; the old primary becomes a
replica with nothing lost (orchestrator #854 left it ahead).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from shipwarden.domain.dr.failover import Assessment, Health, assess, choose_candidate
from shipwarden.domain.dr.gtid import GtidPosition
from shipwarden.domain.dr.health import HealthIssue, replication_issues
from shipwarden.domain.dr.topology import Endpoint, ReplicaStatus, Topology
from shipwarden.ports.databases import DatabaseError, StaleTopology
from shipwarden.services.dr.backups import BackupService
from shipwarden.services.dr.context import DrContext, DrError

__all__ = ["DatabaseMonitor", "FailoverReport", "Step", "FENCE_TIMEOUT"]

#: connect/query time-out when fencing an instance that answers again
FENCE_TIMEOUT = 10.0
#: connect/query time-out of a replica's status (asked of all at once, every failed check)
REPLICA_TIMEOUT = 2.0
#: connect time-out of the failover's attempt to fence the lost primary: one that does not answer
#: within it is cut off (its guard fences it) and is fenced whenever it answers again
LOST_PRIMARY_TIMEOUT = 1.0


@dataclass
class Step:
    name: str
    started: float  # monotonic
    seconds: float
    outcome: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class FailoverReport:
    kind: str  # failover | switchover
    service: str
    old_primary: Endpoint
    new_primary: Endpoint
    reason: str
    epoch: int
    detected_at: float | None  # monotonic: first failed check
    decided_at: float
    writable_at: float | None = None  # monotonic: listener points at the promoted primary
    steps: list[Step] = field(default_factory=list)
    positions: dict[str, str] = field(default_factory=dict)


class DatabaseMonitor:
    def __init__(
        self, ctx: DrContext, service: str, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.ctx = ctx
        self.service = service
        self.ports = ctx.db(service)
        self.spec = self.ports.spec
        self.monotonic = monotonic
        self.failures = 0
        self.first_failure: float | None = None
        self.active: dict[str, HealthIssue] = {}
        self.last: Assessment | None = None
        self.reports: list[FailoverReport] = []
        #: the primary is read-only (its guard fenced it) and not reopened: no semi-sync replica
        self.held_read_only = False
        self._lock = threading.Lock()

    # -- helpers ----------------------------------------------------------------------------------
    @property
    def _semi(self) -> bool:
        return self.spec.replication.mode == "semiSync"

    def _audit(self, action: str, outcome: str = "ok", **detail: Any) -> None:
        self.ctx.catalogue.audit(actor=self.ctx.actor, action=action, service=self.service, outcome=outcome,
                                 detail=detail)  # fmt: skip

    def _replicas(self, topo: Topology) -> dict[Endpoint, ReplicaStatus | None]:
        """Every replica asked at once (a slow one does not delay the verdict on the others)."""

        def ask(ep: Endpoint) -> ReplicaStatus | None:
            try:
                return self.ports.driver.replica_status(ep, REPLICA_TIMEOUT)
            except DatabaseError:
                return None

        if len(topo.replicas) < 2:
            return {ep: ask(ep) for ep in topo.replicas}
        with ThreadPoolExecutor(max_workers=len(topo.replicas)) as pool:
            return dict(zip(topo.replicas, pool.map(ask, topo.replicas), strict=True))

    def _timeout(self) -> float:
        return max(0.2, min(1.0, self.spec.failover.check_interval))

    def ensure_listener(self, topo: Topology | None = None) -> None:
        topo = topo or self.ctx.topology(self.service)
        bind = Endpoint(self.spec.listener.host, self.spec.listener.port)
        self.ports.listener.ensure(self.service, bind, topo.primary)

    # -- the monitor ------------------------------------------------------------------------------
    def tick(self) -> Assessment:
        with self._lock:
            topo = self.ctx.topology(self.service)
            err = self.ports.driver.ping(topo.primary, self._timeout())
            if err is None:
                self.failures, self.first_failure = 0, None
                self.converge(topo)
                self._health(topo)
                self.last = Assessment(Health.HEALTHY, f"primary {topo.primary} answers")
                return self.last
            self.failures += 1
            if self.first_failure is None:
                self.first_failure = self.monotonic()
            replicas = self._replicas(topo)
            a = assess(topo.primary, False, self.failures, self.spec.failover.confirmations, replicas,
                       tuple(topo.replicas))  # fmt: skip
            if self.last is None or self.last.health != a.health:
                self._audit(f"dr.health.{a.health.value}", "ok" if a.health is Health.HEALTHY else "failed",
                            reason=a.reason, error=err[:300])  # fmt: skip
                if a.health is Health.UNREACHABLE:
                    self.ctx.alert(self.service, "unreachable", "failure", a.reason)
            self.last = a
            self._fence_returning(topo)
            if a.health is Health.DEAD and a.candidate is not None and self.spec.failover.automatic:
                self.failover(reason=a.reason, candidate=a.candidate, replicas=replicas)
            return a

    def run(self, stop: threading.Event) -> None:
        interval = self.spec.failover.check_interval
        while not stop.is_set():
            try:
                self.tick()
            except StaleTopology:
                pass  # another monitor moved first; the next tick reads its topology
            except Exception as exc:  # noqa: BLE001 - the monitor must outlive any one failure
                self._audit("dr.monitor.error", "failed", error=str(exc)[:500])
            stop.wait(interval)

    def _health(self, topo: Topology) -> None:
        try:
            primary = self.ports.driver.status(topo.primary)
        except DatabaseError:
            return
        issues = {i.key: i for i in replication_issues(self.spec, primary, self._replicas(topo))}
        for key, issue in issues.items():
            if key not in self.active:
                self.ctx.alert(self.service, key, issue.severity, issue.message)
        for key in set(self.active) - set(issues):
            self._audit("dr.health.resolved", key=key, message=self.active[key].message)
        self.active = issues

    # -- convergence ------------------------------------------------------------------------------
    def converge(self, topo: Topology) -> list[str]:
        """Make the stored topology true where it is not (idempotent); returns what was done."""
        done: list[str] = []
        d = self.ports.driver
        try:
            rs = d.replica_status(topo.primary)
            st = d.status(topo.primary)
            held = rs is None and st.read_only and self._semi and st.semi_sync_clients == 0
            if held and not self.held_read_only:
                # fenced by its guard (or by hand) with no semi-sync replica to acknowledge a write:
                # opening it would only make commits wait — and the guard fence it again
                self.ctx.alert(
                    self.service, "primary-held-read-only", "failure",
                    f"primary {topo.primary} is read-only and no semi-synchronous replica is connected: "
                    "writes stay refused until one is (RPO 0 before availability)",
                )  # fmt: skip
            self.held_read_only = held
            if rs is not None or (st.read_only and not held):
                if rs is not None:
                    d.wait_applied(topo.primary, rs.gtid_io_pos, self.spec.failover.apply_timeout)
                d.promote(
                    topo.primary,
                    semi_sync=self._semi,
                    semi_sync_timeout=self.spec.replication.semi_sync_timeout,
                )
                done.append(f"promoted {topo.primary}")
        except DatabaseError:
            return done
        if self.ports.listener.backend(self.service) != topo.primary:
            self.ensure_listener(topo)
            self.ports.listener.point(self.service, topo.primary)
            done.append(f"listener -> {topo.primary}")
        for ep in topo.replicas:
            try:
                r = d.replica_status(ep)
                if r is None or r.source != topo.primary:
                    d.replicate_from(ep, topo.primary, self.ports.replication, semi_sync=self._semi)
                    done.append(f"{ep} replicates from {topo.primary}")
            except DatabaseError:
                continue
        self._fence_returning(topo)
        if done:
            self._audit("dr.converge", actions=done, epoch=topo.epoch)
        return done

    def _fence_returning(self, topo: Topology) -> None:
        """A fenced instance that answers is fenced again at every tick (idempotent: read-only
        stays on, and no client has business there, so every session found is killed).

        Fence first, ask later: one back from a partition holds its clients' commits waiting for a
        semi-sync acknowledgement, and with them the binlog — ``SHOW MASTER STATUS`` would wait —
        until their sessions are killed.  Generous time-outs: fencing matters more than a quick tick."""
        for ep in topo.fenced:
            if self.ports.driver.ping(ep, max(1.0, self._timeout())) is not None:
                continue
            try:
                killed = self.ports.driver.fence(ep, FENCE_TIMEOUT)
                if killed:
                    st = self.ports.driver.status(ep, FENCE_TIMEOUT)
                    self._audit("dr.fence.returned", instance=str(ep), sessions_killed=killed,
                                gtid=str(st.gtid_binlog_pos))  # fmt: skip
            except DatabaseError:
                continue

    # -- failover ---------------------------------------------------------------------------------
    def _wait(self, ep: Endpoint, position: GtidPosition) -> str:
        if not self.ports.driver.wait_applied(ep, position, self.spec.failover.apply_timeout):
            raise DatabaseError(f"{ep} did not apply {position} within {self.spec.failover.apply_timeout:g}s")
        return str(position)

    def _promote(self, ep: Endpoint, *, writable: bool = True, apply: GtidPosition | None = None) -> str:
        timeout = self.spec.replication.semi_sync_timeout
        self.ports.driver.promote(ep, semi_sync=self._semi, semi_sync_timeout=timeout, writable=writable,
                                  apply=apply, apply_timeout=self.spec.failover.apply_timeout)  # fmt: skip
        return f"{ep} (applied {apply})" if apply is not None else str(ep)

    def _attach(self, ep: Endpoint, source: Endpoint, start_at: GtidPosition | None = None) -> str:
        self.ports.driver.replicate_from(
            ep, source, self.ports.replication, semi_sync=self._semi, start_at=start_at
        )
        return str(ep)

    def _measured(self, report: FailoverReport, name: str, fn: Callable[[], Any]) -> Any:
        return self._step(report, name, fn, required=False)

    def _step(
        self, report: FailoverReport, name: str, fn: Callable[[], Any], *, required: bool = True
    ) -> Any:
        t0 = self.monotonic()
        try:
            result = fn()
            outcome, detail = "ok", ({"result": result} if result not in (None, True) else {})
        except DatabaseError as exc:
            result, outcome, detail = None, "failed", {"error": str(exc)[:500]}
        step = Step(name, t0, self.monotonic() - t0, outcome, {k: str(v) for k, v in detail.items()})
        report.steps.append(step)
        self._audit(f"dr.{report.kind}.{name}", outcome, seconds=round(step.seconds, 4), **step.detail)
        if outcome != "ok" and required:
            raise DrError(f"{report.kind} of {self.service}: step {name} failed: {detail.get('error')}")
        return result

    def failover(
        self,
        *,
        reason: str,
        candidate: Endpoint | None = None,
        replicas: dict[Endpoint, ReplicaStatus | None] | None = None,
    ) -> FailoverReport:
        """Promote ``candidate`` (default: the most advanced replica) in place of a dead primary."""
        topo = self.ctx.topology(self.service)
        replicas = replicas if replicas is not None else self._replicas(topo)
        reachable = {e: r for e, r in replicas.items() if r is not None}
        if candidate is None:
            candidate = choose_candidate(reachable, tuple(topo.replicas))
        if candidate is None or candidate not in reachable:
            raise DrError(f"{self.service}: no reachable replica to promote")
        decided = self.monotonic()
        after = topo.after_failover(candidate)
        positions = {str(e): str(r.gtid_io_pos) for e, r in reachable.items() if r is not None}
        self.ctx.catalogue.save_topology(
            after, expected_epoch=topo.epoch, actor=self.ctx.actor, action="dr.failover.decided",
            detail={"reason": reason, "old_primary": str(topo.primary), "candidate": str(candidate),
                    "received": positions},
        )  # fmt: skip
        report = FailoverReport("failover", self.service, topo.primary, candidate, reason, after.epoch,
                                self.first_failure, decided, positions=positions)  # fmt: skip
        d, lst = self.ports.driver, self.ports.listener
        self.ensure_listener(topo)
        self._step(report, "isolate", lambda: lst.block(self.service))
        received = reachable[candidate].gtid_io_pos
        others = [ep for ep in reachable if ep != candidate]
        # in parallel: fence the old primary (if it answers at all), stop the other replicas' IO
        # threads (one stuck on a lost primary takes a while), and promote the candidate — which
        # stops receiving, applies its relay log up to what it received and becomes the primary in
        # one session; the others follow it *before* it takes writes, so the first write through
        # the listener finds a semi-sync replica to acknowledge it
        with ThreadPoolExecutor(max_workers=1 + len(reachable)) as pool:
            fence = pool.submit(self._measured, report, "fence",
                                lambda: d.fence(topo.primary, LOST_PRIMARY_TIMEOUT))  # fmt: skip

            def follow(ep: Endpoint) -> None:
                self._measured(report, "stop-receiving", partial(d.stop_receiving, ep))
                promoted.wait()
                if not failed:
                    self._measured(report, "reattach", partial(self._attach, ep, candidate))

            promoted, failed = threading.Event(), []
            followers = [pool.submit(follow, ep) for ep in others]
            try:
                promote = partial(self._promote, candidate, writable=False, apply=received)
                self._step(report, "promote", promote)
            except DrError:
                failed.append(True)
                raise
            finally:
                promoted.set()
                for f in (*followers, fence):
                    f.result()
        # replicas that were not reachable at the decision but are now follow too
        for ep in after.replicas:
            if ep not in reachable:
                self._measured(report, "reattach", partial(self._attach, ep, candidate))
        self._step(report, "open-writes", lambda: d.set_writable(candidate))
        self._step(report, "repoint-listener", lambda: lst.point(self.service, candidate))
        report.writable_at = self.monotonic()
        self._audit("dr.failover.done", old_primary=str(topo.primary), new_primary=str(candidate),
                    epoch=after.epoch, seconds=round(self.monotonic() - decided, 4))  # fmt: skip
        self.failures, self.first_failure = 0, None
        self.reports.append(report)
        return report

    def rebuild(self, endpoint: Endpoint) -> str:
        """Bring a fenced instance back as a replica of the current primary.

        A primary lost in a failover may hold transactions nobody acknowledged (written to its
        binlog, never to a replica) — and a frozen one may still be finishing some when it wakes.
        So when this installation controls the instance it is always re-seeded from a fresh
        snapshot of the primary (which is also catalogued as a backup) and replicates from the
        snapshot's GTID.  Without control, it is re-attached only if it answers and holds nothing
        the primary lacks."""
        topo = self.ctx.topology(self.service)
        if endpoint not in topo.fenced:
            raise DrError(f"{endpoint} is not fenced in {self.service}'s topology")
        d = self.ports.driver
        control = self.ports.control
        if control is not None:
            backups = BackupService(self.ctx)
            snap = backups.snapshot(self.service)
            with backups.open(snap) as stream:
                control.reseed(endpoint, stream)
            self._attach(endpoint, topo.primary, start_at=snap.position)
            how = f"re-seeded from snapshot {snap.id} at {snap.gtid}"
        else:
            if d.ping(endpoint, 2.0) is not None:
                raise DrError(f"{endpoint} does not answer, and this installation cannot re-seed it")
            d.fence(endpoint)
            mine = d.status(endpoint)
            theirs = d.status(topo.primary).gtid_binlog_pos
            own = mine.gtid_binlog_pos.merge(mine.gtid_current_pos)
            if not theirs.contains(own):
                raise DrError(f"{endpoint} diverged ({own} not in {theirs}): re-seed it from a snapshot")
            self._attach(endpoint, topo.primary, start_at=own)
            how = f"re-attached from its own position {own}"
        after = topo.after_rebuild(endpoint)
        self.ctx.catalogue.save_topology(
            after, expected_epoch=topo.epoch, actor=self.ctx.actor, action="dr.rebuild",
            detail={"instance": str(endpoint), "how": how},
        )  # fmt: skip
        return how

    def switchover(self, candidate: Endpoint | None = None) -> FailoverReport:
        """Graceful: the primary answers.  Fence it, let the candidate catch up, swap; nothing lost."""
        topo = self.ctx.topology(self.service)
        d, lst = self.ports.driver, self.ports.listener
        if d.ping(topo.primary, 2.0) is not None:
            return self.failover(reason="operator: primary does not answer", candidate=candidate)
        replicas = {
            e: r for e, r in self._replicas(topo).items() if r is not None and r.source == topo.primary
        }
        candidate = candidate or choose_candidate(replicas, tuple(topo.replicas))
        if candidate is None or candidate not in replicas:
            raise DrError(f"{self.service}: no healthy replica of {topo.primary} to switch to")
        decided = self.monotonic()
        after = topo.after_switchover(candidate)
        self.ctx.catalogue.save_topology(
            after, expected_epoch=topo.epoch, actor=self.ctx.actor, action="dr.switchover.decided",
            detail={"old_primary": str(topo.primary), "candidate": str(candidate)},
        )  # fmt: skip
        report = FailoverReport("switchover", self.service, topo.primary, candidate, "operator", after.epoch,
                                None, decided)  # fmt: skip
        self.ensure_listener(topo)
        self._step(report, "isolate", lambda: lst.block(self.service))
        self._step(report, "fence", lambda: d.fence(topo.primary))
        final = d.status(topo.primary).gtid_binlog_pos
        report.positions["old_primary"] = str(final)
        self._step(report, "catch-up", lambda: self._wait(candidate, final))
        self._step(report, "promote", lambda: self._promote(candidate))
        self._step(report, "repoint-listener", lambda: lst.point(self.service, candidate))
        report.writable_at = self.monotonic()
        self._step(
            report, "demote-old-primary", lambda: self._attach(topo.primary, candidate, start_at=final)
        )
        for ep in after.replicas:
            if ep != topo.primary:
                self._step(report, "reattach", partial(self._attach, ep, candidate), required=False)
        self._audit("dr.switchover.done", old_primary=str(topo.primary), new_primary=str(candidate),
                    epoch=after.epoch)  # fmt: skip
        self.reports.append(report)
        return report
