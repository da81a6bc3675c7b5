"""The primary's guard: a primary cut off from its replicas fences itself (E10, RPO 0).

Semi-synchronous replication makes a commit wait for a replica's acknowledgement — but only
for ``rpl_semi_sync_master_timeout``; then MariaDB silently falls back to asynchronous
replication and acknowledges the commit although no replica has it.  A primary isolated by a
partition (a client on its side still writing) would so acknowledge writes that the failover
on the other side loses: a split brain.  Waiting forever instead is no answer either: the
commits never end and the application hangs.

The guard runs **on the primary's host** and reaches each local instance over its Unix socket
(``InstanceControl.local_driver``), so the partition that cuts the primary off the network does
not cut the guard off it.  Every ``interval`` it asks how long sessions have been waiting for
an acknowledgement; once one has waited ``replication.selfFenceAfter`` (shorter than the
semi-sync time-out, so before any fall-back) it fences the instance the way failover does:
every client session killed — a killed session's commit ends *without* an OK to its client —
while ``read_only`` is set, so nothing after it commits either.  The waiting transactions stay
in the isolated primary's binlog, beyond the fork: never acknowledged, discarded when the old
primary is rebuilt.  A self-fence is audited and alerted; the database monitor does not undo it
while no semi-synchronous replica is connected (``DatabaseMonitor.converge``).

Nothing here decides a failover: the guard only stops a primary from acknowledging what its
replicas do not have.  If the guard is not running, the semi-sync time-out is the only bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from shipwarden.ports.databases import DatabaseError
from shipwarden.services.dr.context import DrContext, DrError

__all__ = ["PrimaryGuard"]


class PrimaryGuard:
    def __init__(
        self,
        ctx: DrContext,
        service: str,
        *,
        after: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx = ctx
        self.service = service
        self.ports = ctx.db(service)
        if self.ports.control is None:
            raise DrError(f"{service}: the guard runs beside the instances and needs their local control")
        self.control = self.ports.control
        #: how long a commit may wait (default: the policy's ``replication.selfFenceAfter``)
        self.after = after if after is not None else self.ports.spec.replication.guard_after
        #: how often the waits are read: a quarter of the threshold, at most 0.25 s
        self.interval = min(0.25, self.after / 4)
        self.monotonic = monotonic
        self.fenced: list[tuple[str, float, int]] = []  # (instance, longest wait, sessions killed)

    def _audit(self, action: str, detail: dict[str, str]) -> None:
        self.ctx.catalogue.audit(actor=self.ctx.actor, action=action, service=self.service, outcome="failed",
                                 detail=detail)  # fmt: skip

    def tick(self) -> list[str]:
        """Fence every local instance with a commit waiting ``after`` or longer; returns them."""
        if self.ports.spec.replication.mode != "semiSync":
            return []
        driver = self.control.local_driver()
        topo = self.ctx.topology(self.service)
        done = []
        # the fenced too: a primary the failover has just left behind is, for the seconds until
        # it answers again, exactly the isolated primary this guard is for
        for ep in (*topo.members(), *topo.fenced):
            if not self.control.is_local(ep):
                continue
            try:
                waits = driver.semi_sync_waits(ep, 2.0)
            except DatabaseError:
                continue  # not running, or not answering: nothing it can acknowledge now
            longest = max(waits, default=0.0)
            if longest < self.after:
                continue
            try:
                killed = driver.fence(ep, 5.0)
            except DatabaseError as exc:
                self._audit("dr.guard.self-fence", {"instance": str(ep), "error": str(exc)[:300]})
                continue
            self.fenced.append((str(ep), longest, killed))
            done.append(str(ep))
            self.ctx.alert(
                self.service, "self-fenced", "failure",
                f"{ep} fenced itself: a commit waited {longest:.1f}s for a replica's acknowledgement "
                f"(selfFenceAfter {self.after:g}s) — cut off from its replicas; {killed} session(s) "
                "killed, none of their waiting commits acknowledged",
                instance=str(ep), waited_s=round(longest, 3), sessions_killed=killed,
            )  # fmt: skip
        return done

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the guard must outlive any one failure
                self._audit("dr.guard.error", {"error": str(exc)[:500]})
            stop.wait(self.interval)

    def start(self) -> Callable[[], None]:
        """Run in a thread; returns the function that stops it."""
        stop = threading.Event()
        t = threading.Thread(target=self.run, args=(stop,), name=f"guard-{self.service}", daemon=True)
        t.start()

        def halt() -> None:
            stop.set()
            t.join(10)

        return halt
