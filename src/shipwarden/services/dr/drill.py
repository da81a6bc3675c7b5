"""``shipwarden dr drill SERVICE``: the recovery runbook, executed and measured (E9, E10).

See :mod:`shipwarden.domain.dr.runbook` for the steps and the measures.  The fault is
real: the primary's process is killed (SIGKILL) or frozen (SIGSTOP) on this host while a
steady write load goes through the listener; the database monitor detects the loss,
fails over and the drill times the first write that succeeds again.  The lost instance
is then rebuilt as a replica, so the topology is whole again when the drill ends, and
the report (Markdown and JSON) is stored with its audit entry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from shipwarden.domain.dr.catalogue import DrillRecord
from shipwarden.domain.dr.failover import Health
from shipwarden.domain.dr.runbook import DrillReport, DrillStep, judge
from shipwarden.domain.dr.topology import Endpoint
from shipwarden.ports.databases import DatabaseError, LoadResult, WriteLoad
from shipwarden.services.dr.context import DrContext, DrError, new_id
from shipwarden.services.dr.failover import DatabaseMonitor, FailoverReport

__all__ = ["DrillService", "FAULTS"]

FAULTS = ("kill", "freeze")


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
    ) -> DrillReport:
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
        state: dict[str, Any] = {}
        steps: list[tuple[str, Callable[[], tuple[str, dict[str, Any]]]]] = [
            ("assessment", lambda: self._assess(service, monitor, state)),
            ("notification", lambda: self._notify(service, report)),
            (
                "recovery",
                lambda: self._recover(service, monitor, fault, rate, settle, timeout, state, report),
            ),
            ("restoration", lambda: self._restore(service, monitor, fault, rebuild, state)),
            ("verification", lambda: self._verify(service, state, report)),
        ]
        load: WriteLoad | None = None
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
                load = state.get("load", load)
                if outcome == "failed":
                    break
        finally:
            if load is not None:
                load.stop()
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

    # -- the five steps ---------------------------------------------------------------------------
    def _assess(
        self, service: str, monitor: DatabaseMonitor, state: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        ports = self.ctx.db(service)
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
        state.update(topology=topo, old_sid=st.server_id)
        issues = sorted(monitor.active)
        semi = {True: "ON", False: "OFF", None: "n/a"}[st.semi_sync_master]
        summary = (
            f"primary {topo.primary} healthy, {len(streaming)}/{len(topo.replicas)} replica(s) streaming, "
            f"semi-sync {semi} ({st.semi_sync_clients} client(s)), open issues: {', '.join(issues) or 'none'}"
        )
        detail = {"primary": str(topo.primary), "replicas": [str(e) for e in streaming],
                  "gtid": str(st.gtid_binlog_pos), "issues": issues}  # fmt: skip
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
        load = ports.write_load(rate)
        state["load"] = load
        load.start()
        deadline = self.monotonic() + max(10.0, settle * 5)
        base = self.monotonic() + settle
        while self.monotonic() < base or load.acknowledged_so_far() == 0:
            if self.monotonic() > deadline:
                raise _Abort("the write load got no acknowledgement before the fault")
            time.sleep(0.02)
        before = load.acknowledged_so_far()
        t_fault = self.monotonic()
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

    def _restore(self, service: str, monitor: DatabaseMonitor, fault: str, rebuild: bool,
                 state: dict[str, Any]) -> tuple[str, dict[str, Any]]:  # fmt: skip
        ports = self.ctx.db(service)
        old: Endpoint = state["failover"].old_primary
        if fault == "freeze":
            ports.control.thaw(old)  # type: ignore[union-attr]
        else:
            ports.control.restart(old)  # type: ignore[union-attr]
        monitor.tick()  # fences it the moment it answers
        st = ports.driver.status(old)
        if not st.read_only:
            raise _Abort(f"the old primary {old} came back accepting writes")
        if not rebuild:
            return f"{old} is back, read-only and fenced (not rebuilt)", {}
        how = monitor.rebuild(old)
        return f"{old} rebuilt as a replica of {state['failover'].new_primary}: {how}", {"how": how}

    def _verify(self, service: str, state: dict[str, Any], report: DrillReport) -> tuple[str, dict[str, Any]]:
        ports = self.ctx.db(service)
        topo = self.ctx.topology(service)
        result: LoadResult = state["result"]
        ids = [a.id for a in result.acknowledged]
        load = state["load"]
        missing = load.missing(topo.primary, ids)
        lost = {a.id: a.at for a in result.acknowledged if a.id in set(missing)}
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
        schemas = [*ports.spec.schemas, "shipwarden_drill"] if ports.spec.schemas else []
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
