"""Disaster recovery on real MariaDB 10.11 (E9, E10): failover RTO/RPO, fencing, semi-sync fall-back
alert, archive lag, point-in-time recovery.

* **failover** — 20 drills (``DrillService``): a semi-sync primary + 2 replicas behind the HAProxy
  listener, a steady write load through it, SIGKILL of the primary; RTO = SIGKILL → first write
  acknowledged again by the new primary through the listener; RPO = acknowledged writes missing
  on the new primary.  The killed primary is rebuilt as a replica before the next drill.
* **fencing** — 3 drills where the primary is frozen (SIGSTOP) instead, and thawed after the
  failover: writes acknowledged by the old primary after the fault must be 0.
* **semi-sync fall-back** — replicas stop acknowledging; time from the primary reporting
  ``Rpl_semi_sync_master_status=OFF`` to the monitor's alert (audit entry).
* **archive lag** — 1,000+ writes/s (1,100 asked) for 30 s with the archiver running; for every sample of the
  primary's binlog position (every 10 ms), the time until the staged copy reached it; then the
  primary is restarted and the time until the archive streams again is measured.
* **PITR** — 45 s of writes (``--pitr-minutes``: 60 for the write-heavy hour) with DDL and
  temporary tables spanning binlog rotations (MIXED format); 20 random moments captured with a
  replica's applier paused; each restored from the newest snapshot before it + the archive as
  one replay session and compared table by table.  ``--pitr-snapshot-every`` takes snapshots
  during the run as a schedule would (a restore replays at most that much binlog).
* **partition** — drills that cut the running primary off with iptables (root) while a client on
  its side keeps writing, the partition outlasting ``semiSyncTimeout`` (10 s): RTO, and split-brain
  writes (acknowledged by the isolated primary; transactions beyond the fork) with the primary's
  guard (3 drills: must be 0 acknowledged) and without it (1 drill: what it prevents).

Writes ``bench/results/dr.json`` (``--sections`` picks some: then ``dr_<sections>.json``).
Bounded by default: about 6–8 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import machine_info, write_result
from tests.fixtures.mariadb import ADMIN, SECRETS, Cluster, policy_text, start_cluster

from shipwarden.adapters.databases.mariadb_load import MariaDBWriteLoad
from shipwarden.adapters.net import free_port
from shipwarden.bootstrap import make_dr, open_store
from shipwarden.domain.dr.gtid import GtidPosition
from shipwarden.domain.dr.runbook import percentile
from shipwarden.domain.policy import load_policy_text
from shipwarden.services.dr.archiver import BinlogArchiver
from shipwarden.services.dr.backups import BackupService
from shipwarden.services.dr.context import DrContext
from shipwarden.services.dr.drill import DrillService
from shipwarden.services.dr.failover import DatabaseMonitor
from shipwarden.services.dr.restore import RestoreService
from shipwarden.settings import Settings

DRILLS = 20
FREEZE_DRILLS = 3


def setup(root: Path, replicas: int, **kw: Any) -> tuple[Cluster, DrContext, Any]:
    cluster = start_cluster(root / "cluster", replicas, **kw)
    port = free_port()
    state = root / "state"
    state.mkdir(parents=True)
    (state / "policy.yaml").write_text(policy_text(cluster, port))
    settings = Settings(state_dir=state, policy=state / "policy.yaml", actor="bench")
    store = open_store(settings)
    ctx = make_dr(settings, store, load_policy_text(policy_text(cluster, port)), secrets=SECRETS.get)
    return cluster, ctx, store


def teardown(cluster: Cluster, ctx: DrContext) -> None:
    for p in ctx.databases.values():
        p.streamer.stop()
        p.listener.stop()
    for s in cluster.servers:
        s.kill()
    for pid_file in cluster.root.rglob("mysqld.pid"):  # instances restarted by the drills
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def _stats(values: list[float]) -> dict[str, float | None]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else None,
        "mean": statistics.fmean(values) if values else None,
    }


def bench_failover(root: Path) -> dict[str, Any]:
    cluster, ctx, _ = setup(root, 2)
    try:
        cluster.admin_sql(
            cluster.primary.endpoint, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)"
        )
        drills, freezes = [], []
        svc = DrillService(ctx)
        for i in range(DRILLS + FREEZE_DRILLS):
            fault = "kill" if i < DRILLS else "freeze"
            r = svc.drill("hello", fault=fault, rate=200)
            row = {
                "fault": fault, "passed": r.passed, "rto_s": r.rto_s, "lost": r.rpo_lost_writes,
                "fenced_writes": r.fenced_writes, "acknowledged": r.writes_acknowledged,
                "steps": {s.name: round(s.seconds, 3) for s in r.steps},
                "failover": {f["name"]: round(f["seconds"], 4) for f in r.failover_steps},
                "timeline_s": next((s.detail for s in r.steps if s.name == "recovery"), {}),
                "restoration": next((s.summary for s in r.steps if s.name == "restoration"), ""),
                "load_average": os.getloadavg(),
                "failed_step": next((f"{s.name}: {s.summary}" for s in r.steps if s.outcome == "failed"),
                                    None),
            }  # fmt: skip
            (drills if fault == "kill" else freezes).append(row)
            print(f"  drill {i + 1:2d} {fault:6s} rto {r.rto_s}  lost {r.rpo_lost_writes}  "
                  f"load {os.getloadavg()[0]:.1f}  "
                  f"fenced {r.fenced_writes}  {'PASS' if r.passed else 'FAIL ' + str(row['failed_step'])}",
                  flush=True)  # fmt: skip
            if row["failed_step"]:
                break
        rtos = [d["rto_s"] for d in drills if d["rto_s"] is not None]
        return {
            "drills": len(drills),
            "rto_s": _stats(rtos),
            "rto_goal": {"p95_s": 5.0, "max_s": 10.0},
            "rto_met": bool(rtos) and (percentile(rtos, 95) or 99) <= 5.0 and max(rtos) <= 10.0,
            "rpo_lost_acknowledged_writes": sum(d["lost"] or 0 for d in drills + freezes),
            "acknowledged_writes": sum(d["acknowledged"] for d in drills + freezes),
            "fencing": {
                "freeze_drills": len(freezes),
                "writes_accepted_by_old_primary_after_fault": sum(
                    d["fenced_writes"] for d in drills + freezes
                ),
                "freeze_rto_s": _stats([d["rto_s"] for d in freezes if d["rto_s"] is not None]),
            },
            "all_passed": all(d["passed"] for d in drills + freezes),
            "per_drill": drills + freezes,
        }
    finally:
        teardown(cluster, ctx)


def bench_partition(root: Path, drills: int = 3) -> dict[str, Any]:
    """semiSyncTimeout 10 s (the default) and a partition held 11 s after writes resume, so it always
    outlasts the time-out: with the primary's guard (``selfFenceAfter`` 3 s) the isolated primary must
    acknowledge nothing; one drill without the guard shows what it prevents."""
    out: dict[str, Any] = {}
    for variant, guard, n in (("guard", True, drills), ("no_guard", False, 1)):
        cluster, ctx, _ = setup(root / variant, 2, semi_sync_timeout=10.0)
        rows = []
        try:
            why = ctx.db("hello").partitions.unavailable()  # type: ignore[union-attr]
            if why:
                return {"skipped": why}
            svc = DrillService(ctx)
            for i in range(n):
                load0 = os.getloadavg()
                r = svc.drill("hello", fault="partition", rate=200, hold=11.0, guard=guard)
                rec = next((s for s in r.steps if s.name == "recovery"), None)
                rows.append({"passed": r.passed, "rto_s": r.rto_s, "lost": r.rpo_lost_writes,
                             "fenced_writes": r.fenced_writes, "split_brain": r.split_brain,
                             "fence_probe": r.fence_probe[:60],
                             "timeline_s": {k: v for k, v in (rec.detail if rec else {}).items()
                                            if k in ("detected_s", "decided_s", "writable_s")},
                             "failover": {f["name"]: round(f["seconds"], 3) for f in r.failover_steps},
                             "load_average_before": load0, "load_average_after": os.getloadavg(),
                             "failed_step": next((f"{s.name}: {s.summary}" for s in r.steps
                                                  if s.outcome == "failed"), None)})  # fmt: skip
                print(f"  partition drill {i + 1} ({variant}): rto {r.rto_s} split brain {r.split_brain} "
                      f"{'PASS' if r.passed else 'FAIL'} load {os.getloadavg()[0]:.1f}",
                      flush=True)  # fmt: skip
                if rows[-1]["failed_step"] and guard:
                    break
        finally:
            teardown(cluster, ctx)
        rtos = [r["rto_s"] for r in rows if r["rto_s"] is not None]
        out[variant] = {
            "semi_sync_timeout_s": 10.0, "guard": guard, "partition_held_after_writes_resume_s": 11.0,
            "drills": rows,
            "rto_s": _stats(rtos),
            "rto_goal_max_s": 10.0,
            "acknowledged_by_old_primary": sum(
                r["split_brain"].get("acknowledged_by_old_primary", 0) for r in rows
            ),
            "transactions_beyond_fork": sum(
                r["split_brain"].get("transactions_beyond_fork", 0) for r in rows
            ),
        }  # fmt: skip
    return out


def bench_semi_sync_alert(root: Path) -> dict[str, Any]:
    cluster, ctx, store = setup(root, 1, semi_sync_timeout=0.5)
    try:
        mon = DatabaseMonitor(ctx, "hello")
        mon.ensure_listener()
        mon.tick()
        stop = threading.Event()
        t = threading.Thread(target=mon.run, args=(stop,), daemon=True)
        t.start()
        p = cluster.primary.endpoint
        cluster.admin_sql(cluster.replicas[0].endpoint, "STOP SLAVE IO_THREAD")
        writer = threading.Thread(target=lambda: cluster.admin_sql(p, "CREATE DATABASE app"), daemon=True)
        writer.start()
        while cluster.driver.status(p).semi_sync_master is not False:
            time.sleep(0.005)
        off_at = time.monotonic()
        deadline = off_at + 10
        alerted = None
        while time.monotonic() < deadline:
            if any(e.detail.get("key") == "semi-sync-off" for e in store.audit_entries(action="dr.alert")):
                alerted = time.monotonic() - off_at
                break
            time.sleep(0.01)
        stop.set()
        t.join(5)
        wp = cluster.admin_sql(p, "SELECT @@rpl_semi_sync_master_wait_point")[0][0]
        return {"alert_after_fallback_s": alerted, "goal_s": 2.0, "wait_point": wp, "check_interval_s": 0.2}
    finally:
        teardown(cluster, ctx)


def bench_archive(root: Path, seconds: float = 30.0, rate: float = 1100.0) -> dict[str, Any]:
    cluster, ctx, _ = setup(root, 1)
    try:
        p = cluster.primary
        arch = BinlogArchiver(ctx, "hello")
        stop_arch = threading.Event()
        at = threading.Thread(target=arch.run, args=(stop_arch, 0.05), daemon=True)
        at.start()
        streamer = ctx.db("hello").streamer
        load = MariaDBWriteLoad(ADMIN, p.endpoint, rate=rate, writers=10)
        load.start()
        samples: list[tuple[float, int, int]] = []
        lags: list[float] = []
        pending: list[tuple[float, int, int]] = []
        stop = threading.Event()

        def sampler() -> None:
            import pymysql

            conn = pymysql.connect(host=p.endpoint.host, port=p.endpoint.port, user=ADMIN.user,
                                   password=ADMIN.password or "", autocommit=True)  # fmt: skip
            with conn.cursor() as cur:
                while not stop.is_set():
                    cur.execute("SHOW MASTER STATUS")
                    f, pos = cur.fetchone()[:2]  # type: ignore[index]
                    pending.append((time.monotonic(), int(f.rsplit(".", 1)[1]), int(pos)))
                    time.sleep(0.01)
            conn.close()

        def watcher() -> None:
            while not stop.is_set() or pending:
                files = streamer.files()
                reached = (int(files[-1].name.rsplit(".", 1)[1]), files[-1].size) if files else (0, 0)
                now = time.monotonic()
                while pending and (pending[0][1], pending[0][2]) <= reached:
                    t0 = pending.pop(0)[0]
                    lags.append(max(0.0, now - t0))
                if stop.is_set() and now - (samples[-1][0] if samples else now) > 10:
                    break
                time.sleep(0.005)

        ts = [threading.Thread(target=sampler, daemon=True), threading.Thread(target=watcher, daemon=True)]
        for th in ts:
            th.start()
        t_start = time.monotonic()
        time.sleep(seconds)
        stop.set()
        ts[0].join(5)
        ts[1].join(15)
        result = load.stop()
        achieved = len(result.acknowledged) / (time.monotonic() - t_start)
        # the primary restarts: mariadb-binlog --stop-never exits; the archiver must resume by itself
        restarts_before = arch.restarts
        p.stop()
        t_down = time.monotonic()
        p.start()
        cluster.driver.promote(p.endpoint, semi_sync=True, semi_sync_timeout=10)
        cluster.admin_sql(p.endpoint, "INSERT INTO shipwarden_drill.writes VALUES (1, 1, 0)")
        resumed = None
        while time.monotonic() - t_down < 30:
            last = arch.last
            if arch.restarts > restarts_before and last is not None and last.running and last.lag_bytes == 0:
                resumed = time.monotonic() - t_down
                break
            time.sleep(0.02)
        stop_arch.set()
        at.join(10)
        return {
            "rate_target_wps": rate, "rate_achieved_wps": round(achieved, 1), "seconds": seconds,
            "lag_s": {"n": len(lags), "p50": percentile(lags, 50), "p99": percentile(lags, 99),
                      "max": max(lags) if lags else None},
            "goal_p99_s": 1.0,
            "sealed_files": arch.sealed,
            "reconnected_after_primary_restart": resumed is not None,
            "caught_up_after_restart_s": resumed,
        }  # fmt: skip
    finally:
        teardown(cluster, ctx)


def bench_pitr(
    root: Path, seconds: float = 45.0, moments: int = 20, snapshot_every: float = 0.0, bulk_rate: float = 0.0
) -> dict[str, Any]:
    cluster, ctx, _ = setup(root, 1, options={"binlog-format": "MIXED", "max-binlog-size": "262144"})
    try:
        from tests.integration.dr.test_pitr import Workload

        c = cluster
        p = c.primary.endpoint
        c.admin_sql(p, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(200))",
                    "CREATE TABLE app.agg (n INT PRIMARY KEY, total INT)")  # fmt: skip
        arch = BinlogArchiver(ctx, "hello")
        stop_arch = threading.Event()
        at = threading.Thread(target=arch.run, args=(stop_arch, 0.05), daemon=True)
        at.start()

        class Env:  # what Workload reads
            cluster = c

        # DDL and temporary tables in proportion: a long run must not make tens of thousands of tables
        scale = max(1, int(seconds // 60))
        load = Workload(Env(), ddl_every=50 * scale, temp_every=80 * scale)  # type: ignore[arg-type]
        load.thread.start()
        # write-heavy: beside the mixed workload (one session), steady inserts from 4 more
        bulk = MariaDBWriteLoad(ADMIN, p, rate=bulk_rate, writers=4, schema="app") if bulk_rate else None
        if bulk is not None:
            bulk.start()
        time.sleep(2.0)
        backups = BackupService(ctx)
        snap = backups.snapshot("hello")
        snapshots = [snap.gtid]
        points: list[tuple[GtidPosition, dict[str, int | None]]] = []
        t0 = time.monotonic()
        end = t0 + seconds
        events = [(g, "moment") for g in (random.uniform(0, seconds) for _ in range(moments))]
        if snapshot_every > 0:
            events += [(k * snapshot_every, "snapshot") for k in range(1, int(seconds // snapshot_every) + 1)]
        checksum_s: list[float] = []
        for g, what in sorted(events):
            time.sleep(max(0.0, t0 + g - time.monotonic()))
            if what == "snapshot":
                snapshots.append(backups.snapshot("hello").gtid)
                print(f"   snapshot at {time.monotonic() - t0:.0f}s", flush=True)
                continue
            c0 = time.monotonic()
            points.append(c.driver.consistent_checksums(c.replicas[0].endpoint, ["app"]))
            checksum_s.append(time.monotonic() - c0)
            print(f"   moment {len(points)} at {time.monotonic() - t0:.0f}s: {points[-1][0]}", flush=True)
        time.sleep(max(0.0, end - time.monotonic()))
        load.stop.set()
        load.thread.join(10)
        bulk_result = bulk.stop() if bulk is not None else None
        final = c.driver.status(p)
        deadline = time.monotonic() + 30
        while arch.last is None or arch.last.primary_pos != final.binlog_pos or arch.last.lag_s:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        stop_arch.set()
        at.join(10)
        restore = RestoreService(ctx)
        matches, durations, details = 0, [], []
        for gtid, reference in points:
            r = restore.restore("hello", gtid=gtid, verify=True, keep=False)
            ok = r.checksums == reference and r.reached == gtid.merge(r.reached) and gtid.contains(r.reached)
            matches += ok
            durations.append(r.seconds)
            details.append({"gtid": str(gtid), "tables": len(reference), "binlogs": len(r.binlogs),
                            "snapshot": r.snapshot, "match": ok, "seconds": round(r.seconds, 2)})  # fmt: skip
            print(f"   restore {len(details)}/{len(points)}: {'exact' if ok else 'MISMATCH'} "
                  f"({len(r.binlogs)} binlogs, {r.seconds:.1f}s)", flush=True)  # fmt: skip
        rows = c.admin_sql(p, "SELECT COUNT(*) FROM app.t")[0][0]
        return {
            "moments": len(points), "checksum_matches": matches, "write_seconds": seconds,
            "statements": load.n, "statements_per_s": round(load.n / seconds, 1), "rows_in_t_at_end": rows,
            "bulk_inserts": len(bulk_result.acknowledged) if bulk_result else 0,
            "bulk_inserts_per_s": round(len(bulk_result.acknowledged) / seconds, 1) if bulk_result else 0,
            "errors": load.errors[:5], "binlog_files_sealed": arch.sealed,
            "snapshots": snapshots, "snapshot_every_s": snapshot_every or None,
            "reference_checksum_seconds": _stats(checksum_s),
            "restore_seconds": _stats(durations), "per_moment": details,
        }  # fmt: skip
    finally:
        teardown(cluster, ctx)


SECTIONS = ("pitr", "archive", "semisync", "failover", "partition")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    ap.add_argument(
        "--pitr-minutes", type=float, default=0.75, help="minutes of writes for PITR (60: an hour)"
    )
    ap.add_argument("--pitr-snapshot-every", type=float, default=0.0,
                    help="minutes between snapshots during the PITR run (0: one, at the start)")  # fmt: skip
    ap.add_argument("--moments", type=int, default=20)
    ap.add_argument("--pitr-bulk-rate", type=float, default=0.0,
                    help="PITR: extra inserts/s from 4 more sessions (a write-heavy run)")  # fmt: skip
    args = ap.parse_args()
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    root = Path(tempfile.mkdtemp(prefix="sw-bench-dr-"))
    started = time.monotonic()
    out: dict[str, Any] = {"machine": machine_info(), "args": vars(args), "nice": os.nice(0),
                           "load_average_at_start": os.getloadavg()}  # fmt: skip
    name = "dr" if set(sections) == set(SECTIONS) else "dr_" + "_".join(sections)
    try:
        if "pitr" in sections:
            print("== PITR", flush=True)
            out["pitr"] = bench_pitr(root / "pitr", args.pitr_minutes * 60, args.moments,
                                     args.pitr_snapshot_every * 60, args.pitr_bulk_rate)  # fmt: skip
            print(f"   {out['pitr']['checksum_matches']}/{out['pitr']['moments']} moments checksum-exact",
                  flush=True)  # fmt: skip
        if "archive" in sections:
            print("== archive lag", flush=True)
            out["archive"] = bench_archive(root / "archive")
            print(f"   {out['archive']['lag_s']} at {out['archive']['rate_achieved_wps']} w/s", flush=True)
        if "semisync" in sections:
            print("== semi-sync fall-back alert", flush=True)
            out["semi_sync"] = bench_semi_sync_alert(root / "semisync")
            print(f"   {out['semi_sync']}", flush=True)
        if "failover" in sections:
            print("== failover drills", flush=True)
            out["failover"] = bench_failover(root / "failover")
            f = out["failover"]
            print(f"   RTO {f['rto_s']}, lost {f['rpo_lost_acknowledged_writes']}, fencing {f['fencing']}",
                  flush=True)  # fmt: skip
        if "partition" in sections:
            print("== partition drills", flush=True)
            out["partition"] = bench_partition(root / "partition")
    finally:
        out["seconds"] = round(time.monotonic() - started, 1)
        out["load_average_at_end"] = os.getloadavg()
        path = write_result(name, out)
        print(f"wrote {path}")
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
