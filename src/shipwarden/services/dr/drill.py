"""``shipwarden dr drill SERVICE``: the recovery runbook, executed and measured (E9, E10).

See :mod:`shipwarden.domain.dr.runbook` for the steps and the measures.  The fault is
real: the primary's process is killed (SIGKILL) or frozen (SIGSTOP) on this host, or the
primary is cut off the network while it keeps running (``partition``), while a steady write
load goes through the listener; the database monitor detects the loss, fails over and the
drill times the first write that succeeds again.  The lost instance is then rebuilt as a
replica, so the topology is whole again when the drill ends, and the report (Markdown and
JSON) is stored with its audit entry.

**The load writes as the application** (the policy's ``application`` account, else an
account the drill makes, limited to its own schema), never as the administrator: the
fence is ``read_only``, which an account with ``READ_ONLY ADMIN`` (or ``SUPER`` before
10.11) writes through, so the assessment refuses such an account.  Once the old primary
is back (restarted, thawed, or the partition healed) and fenced, the drill *probes* it: one
write straight to it as that account must be refused.

**Partition** — a second writer stands for an application server on the primary's side of
the partition: it writes straight to the primary from ``PARTITION_SIDE`` (an address the
partition lets through).  With semi-synchronous replication the isolated primary holds
those commits waiting for a replica's acknowledgement, so they are not acknowledged — until
``semiSyncTimeout``, after which MariaDB falls back to asynchronous replication and would
acknowledge them: a split brain.  The primary's guard (``services.dr.guard``, run by the drill
as by ``db watch``) prevents it: after ``selfFenceAfter`` of waiting it kills those sessions
(no acknowledgement) and sets the primary read-only.  The partition is held ``hold`` seconds after writes
resume on the new primary, then healed (always: also when the drill fails); the monitor
fences the old primary as soon as it answers.  Split-brain writes are counted both ways:
acknowledged by the old primary (fencing and RPO fail) and transactions in its binlog
beyond what the new primary received (the fork) — reported and alerted, then discarded
when the old primary is rebuilt from a snapshot.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from shipwarden.domain.dr.catalogue import DrillRecord
from shipwarden.domain.dr.failover import Health
from shipwarden.domain.dr.gtid import GtidPosition
from shipwarden.domain.dr.runbook import DrillReport, DrillStep, judge
from shipwarden.domain.dr.topology import Credentials, Endpoint
from shipwarden.ports.databases import DatabaseError, LoadResult, WriteLoad
from shipwarden.services.dr.context import DrContext, DrError, new_id
from shipwarden.services.dr.failover import FENCE_TIMEOUT, DatabaseMonitor, FailoverReport
from shipwarden.services.dr.guard import PrimaryGuard

__all__ = ["DrillService", "FAULTS", "DRILL_SCHEMA", "DRILL_ACCOUNT", "PARTITION_SIDE"]

FAULTS = ("kill", "freeze", "partition")
DRILL_SCHEMA = "shipwarden_drill"
#: the account a drill makes when the policy declares no application account
DRILL_ACCOUNT = "shipwarden_drill"
#: the source address of the client on the old primary's side of a partition
PARTITION_SIDE = "127.0.0.2"


def _iso(d: datetime) -> str:
    return d.isoformat(timespec="milliseconds")


class _Abort(Exception):
    pass


class DrillService:
    def __init__(self, ctx: DrContext, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.monotonic = monotonic

    def drill(
        self,
        service: str,
        *,
        fault: str = "kill",
        rate: float = 200.0,
        settle: float = 1.0,
        timeout: float = 60.0,
        rebuild: bool = True,
        hold: float = 1.0,
        guard: bool = True,
    ) -> DrillReport:
        """Run the runbook once; ``hold``: how long a partition lasts after writes resume; ``guard``:
        run the primary's guard meanwhile, as ``db watch`` does beside the instances (False: measure
        what an isolated primary does without it)."""
        if fault not in FAULTS:
            raise DrError(f"unknown fault {fault!r}: use one of {', '.join(FAULTS)}")
        ports = self.ctx.db(service)
        spec = ports.spec
        control = ports.control
        if control is None:
            raise DrError(f"{service}: drills inject a real fault and need process control of the instances")
        monitor = DatabaseMonitor(self.ctx, service, monotonic=self.monotonic)
        started = self.ctx.clock()
        report = DrillReport(
            id=new_id("drill"), service=service, fault=fault, started_at=_iso(started), finished_at="",
            objectives={"rto_s": spec.objectives.rto, "rpo_s": spec.objectives.rpo},
            rto_s=None, rpo_lost_writes=None, rpo_s=None, steps=[],
        )  # fmt: skip
        steps: list[tuple[str, Callable[[], tuple[str, dict[str, Any]]]]] = [
            ("assessment", lambda: self._assess(service, monitor, fault, state)),
            ("notification", lambda: self._notify(service, report)),
            (
                "recovery",
                lambda: self._recover(service, monitor, fault, rate, settle, timeout, state, report),
            ),
            ("restoration", lambda: self._restore(service, monitor, fault, rebuild, hold, state, report)),
            ("verification", lambda: self._verify(service, state, report)),
        ]
        state: dict[str, Any] = {}
        halt_guard = None
        if guard and spec.replication.mode == "semiSync":
            state["guard"] = PrimaryGuard(self.ctx, service, monotonic=self.monotonic)
            halt_guard = state["guard"].start()
        try:
            for name, fn in steps:
                t0, at = self.monotonic(), self.ctx.clock()
                try:
                    summary, detail = fn()
                    outcome = "ok"
                except (_Abort, DrError, DatabaseError) as exc:
                    summary, detail, outcome = str(exc), {}, "failed"
                step = DrillStep(name, _iso(at), self.monotonic() - t0, outcome, summary,  # type: ignore[arg-type]
                                 {k: v for k, v in detail.items() if k != "_"})  # fmt: skip
                report.steps.append(step)
                self.ctx.catalogue.audit(
                    actor=self.ctx.actor, action=f"dr.drill.{name}", service=service, outcome=outcome,
                    detail={"drill": report.id, "seconds": round(step.seconds, 4), "summary": summary[:500]},
                )  # fmt: skip
                if outcome == "failed":
                    break
        finally:
            if halt_guard is not None:
                halt_guard()
            for load in state.get("loads", []):
                load.stop()
            isolated = state.get("isolated")
            if isolated is not None and ports.partitions is not None:
                ports.partitions.heal(isolated)  # whatever happened: the partition never outlives the drill
                self._healed(service, report, isolated)
        report.finished_at = _iso(self.ctx.clock())
        judge(report)
        self.ctx.catalogue.add_drill(
            DrillRecord(
                report.id,
                service,
                "drill",
                started,
                self.ctx.clock(),
                report.passed,
                report.rto_s,
                report.rpo_lost_writes,
                asdict(report),
            ),  # fmt: skip
            actor=self.ctx.actor,
        )
        return report

    def _healed(self, service: str, report: DrillReport, instance: Endpoint) -> None:
        self.ctx.catalogue.audit(actor=self.ctx.actor, action="dr.drill.partition.healed", service=service,
                                 detail={"drill": report.id, "instance": str(instance)})  # fmt: skip

    # -- the five steps ---------------------------------------------------------------------------
    def _assess(
        self, service: str, monitor: DatabaseMonitor, fault: str, state: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        ports = self.ctx.db(service)
        if fault == "partition":
            why = "no partition driver" if ports.partitions is None else ports.partitions.unavailable()
            if why is not None:
                raise _Abort(f"a partition drill cannot run here: {why}")
            for ep in ports.partitions.isolated():  # type: ignore[union-attr]
                ports.partitions.heal(ep)  # type: ignore[union-attr]  # left by a crashed drill
        a = monitor.tick()
        if a.health is not Health.HEALTHY:
            raise _Abort(f"not drilling on an unhealthy database: {a.reason}")
        topo = self.ctx.topology(service)
        streaming = []
        for ep in topo.replicas:
            r = ports.driver.replica_status(ep)
            if r is not None and r.io_connected and r.sql_running and r.source == topo.primary:
                streaming.append(ep)
        if not streaming:
            raise _Abort(f"no replica streams from {topo.primary}: a failover would have nobody to promote")
        st = ports.driver.status(topo.primary)
        for ep in topo.members():
            ports.control.remember(ep)  # type: ignore[union-attr]
        account = ports.application
        if account is None:
            account = Credentials(DRILL_ACCOUNT, secrets.token_urlsafe(18))
            ports.driver.ensure_account(topo.primary, account, DRILL_SCHEMA)
        bypass = ports.driver.read_only_bypass(topo.primary, account.user)
        if bypass:
            raise _Abort(
                f"the drill writes as the application account {account.user!r}, which holds "
                f"{' and '.join(bypass)}: read_only would not fence it — the application must not "
                "hold these privileges"
            )
        state.update(topology=topo, old_sid=st.server_id, account=account)
        issues = sorted(monitor.active)
        semi = {True: "ON", False: "OFF", None: "n/a"}[st.semi_sync_master]
        summary = (
            f"primary {topo.primary} healthy, {len(streaming)}/{len(topo.replicas)} replica(s) streaming, "
            f"semi-sync {semi} ({st.semi_sync_clients} client(s)), open issues: {', '.join(issues) or 'none'}"
        )
        summary += f"; the load writes as {account.user!r} (cannot write through read_only)"
        detail = {"primary": str(topo.primary), "replicas": [str(e) for e in streaming],
                  "gtid": str(st.gtid_binlog_pos), "issues": issues, "account": account.user}  # fmt: skip
        return summary, detail

    def _notify(self, service: str, report: DrillReport) -> tuple[str, dict[str, Any]]:
        o = report.objectives
        message = (f"DR drill {report.id} on {service}: the primary will be lost ({report.fault}); "
                   f"objectives RTO {o['rto_s']:g}s, RPO {o['rpo_s']:g}s")  # fmt: skip
        sent = "audit log"
        if self.ctx.notify is not None:
            self.ctx.notify(service, "dr-drill", "warning", message)
            sent += " and the alerting path"
        return f"announced through the {sent}", {"message": message}

    def _recover(
        self, service: str, monitor: DatabaseMonitor, fault: str, rate: float, settle: float, timeout: float,
        state: dict[str, Any], report: DrillReport,
    ) -> tuple[str, dict[str, Any]]:  # fmt: skip
        ports = self.ctx.db(service)
        topo = state["topology"]
        monitor.ensure_listener(topo)
        account: Credentials = state["account"]
        load = ports.write_load(rate, account)
        state["loads"] = [load]
        load.start()
        stranded: WriteLoad | None = None
        if fault == "partition":
            stranded = ports.write_load(max(10.0, rate / 4), account, target=topo.primary,
                                        source_address=PARTITION_SIDE)  # fmt: skip
            state["loads"].append(stranded)
            state["stranded"] = stranded
            stranded.start()
        deadline = self.monotonic() + max(10.0, settle * 5)
        base = self.monotonic() + settle
        while self.monotonic() < base or load.acknowledged_so_far() == 0:
            if self.monotonic() > deadline:
                raise _Abort("the write load got no acknowledgement before the fault")
            time.sleep(0.02)
        before = load.acknowledged_so_far()
        t_fault = self.monotonic()
        if fault == "partition":
            state["isolated"] = topo.primary
            ports.partitions.isolate(topo.primary, keep=PARTITION_SIDE)  # type: ignore[union-attr]
            t_fault = self.monotonic()  # in effect once the last rule is in place
        else:
            (ports.control.kill if fault == "kill" else ports.control.freeze)(topo.primary)  # type: ignore[union-attr]
        state["t_fault"] = t_fault
        interval = ports.spec.failover.check_interval
        end = t_fault + timeout
        fo: FailoverReport | None = None
        while fo is None:
            if self.monotonic() > end:
                raise _Abort(f"no failover within {timeout:g}s of the fault")
            monitor.tick()
            fo = monitor.reports[-1] if monitor.reports else None
            if fo is None:
                time.sleep(interval)
        while load.acknowledged_so_far() <= before + max(5, int(rate * 0.5)):
            if self.monotonic() > end:
                break
            time.sleep(0.02)
        time.sleep(0.3)
        result: LoadResult = load.stop()
        state.update(result=result, failover=fo)
        new_sid = ports.driver.status(fo.new_primary).server_id
        state["new_sid"] = new_sid
        resumed = [a.at for a in result.acknowledged if a.at > t_fault and a.server_id == new_sid]
        report.rto_s = (min(resumed) - t_fault) if resumed else None
        report.old_primary, report.new_primary = str(fo.old_primary), str(fo.new_primary)
        report.writes_acknowledged = len(result.acknowledged)
        report.writes_failed = len([e for e in result.errors if e[0] > t_fault])
        # after the decision the listener no longer reaches the old primary: any write it
        # acknowledges from then on escaped the fence (one acknowledged just before is not)
        report.fenced_writes = len(
            [a for a in result.acknowledged if a.server_id == state["old_sid"] and a.at > fo.decided_at]
        )
        state["fork"] = GtidPosition.parse(fo.positions.get(str(fo.new_primary), ""))
        report.failover_steps = [
            {"name": s.name, "seconds": s.seconds, "outcome": s.outcome} for s in fo.steps
        ]
        detected = (fo.detected_at - t_fault) if fo.detected_at is not None else None
        decided = fo.decided_at - t_fault
        writable = (fo.writable_at - t_fault) if fo.writable_at is not None else None
        rto = "n/a" if report.rto_s is None else f"{report.rto_s:.3f}s"
        return (
            f"{fault} of {fo.old_primary}: failed over to {fo.new_primary}; "
            f"first write acknowledged again after {rto}",
            {"detected_s": detected, "decided_s": decided, "writable_s": writable, "rto_s": report.rto_s,
             "reason": fo.reason},
        )  # fmt: skip

    def _restore(self, service: str, monitor: DatabaseMonitor, fault: str, rebuild: bool, hold: float,
                 state: dict[str, Any], report: DrillReport) -> tuple[str, dict[str, Any]]:  # fmt: skip
        ports = self.ctx.db(service)
        old: Endpoint = state["failover"].old_primary
        detail: dict[str, Any] = {}
        if fault == "freeze":
            ports.control.thaw(old)  # type: ignore[union-attr]
        elif fault == "kill":
            ports.control.restart(old)  # type: ignore[union-attr]
        else:
            time.sleep(max(0.0, hold))
            ports.partitions.heal(old)  # type: ignore[union-attr]
            state.pop("isolated", None)
            self._healed(service, report, old)
            deadline = self.monotonic() + 30
            while ports.driver.ping(old, 2.0) is not None:
                if self.monotonic() > deadline:
                    raise _Abort(f"{old} does not answer after the partition healed")
                time.sleep(0.05)
        monitor.tick()  # fences it the moment it answers
        st = ports.driver.status(old, FENCE_TIMEOUT)
        if not st.read_only:
            raise _Abort(f"the old primary {old} came back accepting writes")
        stranded: WriteLoad | None = state.get("stranded")
        if stranded is not None:
            sres = stranded.stop()
            t_fault, old_sid = state["t_fault"], state["old_sid"]
            # acknowledged by the old primary during the partition and not on the new one: a split brain
            # (one acknowledged just as the rules went in had its replica's acknowledgement: it is there)
            late = [a.id for a in sres.acknowledged if a.server_id == old_sid and a.at > t_fault]
            acked = stranded.missing(state["failover"].new_primary, late) if late else []
            state["stranded_acked"] = [a.id for a in sres.acknowledged]
            report.fenced_writes += len(acked)
            errant = state["fork"].behind(st.gtid_binlog_pos)
            report.split_brain = {
                "acknowledged_by_old_primary": len(acked),
                "transactions_beyond_fork": errant,
                "fork": str(state["fork"]),
                "old_primary_position": str(st.gtid_binlog_pos),
                "stranded_writes_refused": len([e for e in sres.errors if e[0] > t_fault]),
                # the guard: (instance, how long its longest commit had waited, sessions killed)
                "self_fenced": [list(f) for f in state["guard"].fenced] if "guard" in state else None,
            }
            detail["split_brain"] = report.split_brain
            if errant or acked:
                self.ctx.alert(
                    service, "split-brain", "failure",
                    f"the old primary {old} holds {errant} transaction(s) beyond {state['fork']} "
                    f"written during the partition ({len(acked)} acknowledged to a client); they are not on "
                    f"the new primary and are discarded when {old} is rebuilt",
                    drill=report.id, old_position=str(st.gtid_binlog_pos),
                )  # fmt: skip
        # the fence, tested: one application write straight to the old primary must be refused
        refusal = state["loads"][0].probe(old)
        report.fence_probe = "accepted" if refusal is None else f"refused: {refusal}"
        detail["fence_probe"] = report.fence_probe
        if refusal is None:
            report.fenced_writes += 1
            raise _Abort(f"the fenced old primary {old} accepted a write from {state['account'].user!r}")
        fenced = f"{old} is back, read-only and fenced (an application write to it was refused)"
        if not rebuild:
            return f"{fenced} (not rebuilt)", detail
        how = monitor.rebuild(old)
        detail["how"] = how
        return f"{fenced}; rebuilt as a replica of {state['failover'].new_primary}: {how}", detail

    def _verify(self, service: str, state: dict[str, Any], report: DrillReport) -> tuple[str, dict[str, Any]]:
        ports = self.ctx.db(service)
        topo = self.ctx.topology(service)
        result: LoadResult = state["result"]
        # every write any client saw acknowledged, also by the old primary during a partition
        ids = [a.id for a in result.acknowledged] + list(state.get("stranded_acked", []))
        load = state["loads"][0]
        missing = load.missing(topo.primary, ids)
        gone = set(missing)
        lost = {a.id: a.at for a in result.acknowledged if a.id in gone}
        report.rpo_lost_writes = len(missing)
        report.rpo_s = (state["t_fault"] - min(lost.values())) if lost else 0.0
        primary_pos = ports.driver.status(topo.primary).gtid_binlog_pos
        problems = []
        for ep in topo.replicas:
            if not ports.driver.wait_applied(ep, primary_pos, 30):
                problems.append(f"{ep} did not catch up to {primary_pos}")
                continue
            if load.missing(ep, ids):
                problems.append(f"{ep} lacks acknowledged writes")
        schemas = [*ports.spec.schemas, DRILL_SCHEMA] if ports.spec.schemas else []
        reference = ports.driver.checksums(topo.primary, schemas)
        for ep in topo.replicas:
            if ports.driver.checksums(ep, schemas) != reference:
                problems.append(f"{ep} checksums differ from the primary's")
        if ports.listener.backend(service) != topo.primary:
            problems.append(f"the listener does not point at {topo.primary}")
        if problems:
            raise _Abort("; ".join(problems))
        return (
            f"{len(ids)} acknowledged write(s), {len(missing)} missing on {topo.primary}; "
            f"{len(topo.replicas)} replica(s) identical ({len(reference)} table checksums)",
            {"missing": missing[:20], "tables": len(reference)},
        )
