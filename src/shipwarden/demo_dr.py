"""The DR part of ``make demo``: a real MariaDB primary with two semi-synchronous replicas behind
the HAProxy listener; a sealed snapshot, a restore test, then a drill that SIGKILLs the primary
under a write load and prints the measured RTO and RPO beside the objectives.

Everything runs in the demo's temporary directory on free loopback ports and is stopped at the end.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from shipwarden.adapters.databases.mariadb import MariaDBDriver
from shipwarden.adapters.databases.mariadb_server import MariaDBServer, ensure_template
from shipwarden.adapters.net import free_port
from shipwarden.bootstrap import make_dr, open_store
from shipwarden.domain.dr.topology import Credentials
from shipwarden.domain.policy import load_policy_text
from shipwarden.services.dr.archiver import BinlogArchiver
from shipwarden.services.dr.backups import BackupService
from shipwarden.services.dr.drill import DrillService
from shipwarden.services.dr.verify import VerificationService
from shipwarden.settings import Settings

__all__ = ["run"]

POLICY = """\
apiVersion: shipwarden/v1
team: demo
services:
  - name: shop
    run: {{command: ["true"]}}
    routing: {{port: {p1}, previewPort: {p2}}}
    strategy: {{blueGreen: {{}}}}
databases:
  - service: shop
    schemas: [shop]
    primary: {primary}
    replicas: [{replicas}]
    credentials: {{user: shipwarden, passwordSecret: DB_ADMIN_PASSWORD}}
    replication: {{mode: semiSync, user: repl, passwordSecret: DB_REPL_PASSWORD}}
    listener: {{port: {listener}}}
    failover: {{checkInterval: 200ms, confirmations: 2}}
    objectives: {{rpo: 0s, rto: 10s}}
"""


def run(console: Console, workdir: Path) -> bool:
    """The DR section; True if the drill met its objectives."""
    admin = Credentials("shipwarden", secrets.token_urlsafe(12))
    repl = Credentials("repl", secrets.token_urlsafe(12))
    sql = (
        f"CREATE USER 'shipwarden'@'%' IDENTIFIED BY '{admin.password}'",
        "GRANT ALL PRIVILEGES ON *.* TO 'shipwarden'@'%' WITH GRANT OPTION",
        f"CREATE USER 'repl'@'%' IDENTIFIED BY '{repl.password}'",
        "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'repl'@'%'",
    )
    console.print(Rule("7. disaster recovery: MariaDB primary + 2 semi-sync replicas behind HAProxy"))
    template = ensure_template(workdir / "mariadb-template", sql)
    servers = [MariaDBServer(workdir / f"db{i}", free_port(), i).init_from(template) for i in (1, 2, 3)]
    ctx = None
    try:
        for s in servers:
            s.start()
        driver = MariaDBDriver(admin)
        driver.promote(servers[0].endpoint, semi_sync=True, semi_sync_timeout=10)
        for r in servers[1:]:
            driver.replicate_from(r.endpoint, servers[0].endpoint, repl, semi_sync=True)
        text = POLICY.format(
            p1=free_port(), p2=free_port(), primary=servers[0].endpoint, listener=free_port(),
            replicas=", ".join(str(s.endpoint) for s in servers[1:]),
        )  # fmt: skip
        state = workdir / "dr-state"
        state.mkdir()
        (state / "policy.yaml").write_text(text)
        settings = Settings(state_dir=state, policy=state / "policy.yaml", actor="demo")
        store = open_store(settings)
        lookup = {"DB_ADMIN_PASSWORD": admin.password, "DB_REPL_PASSWORD": repl.password}.get
        ctx = make_dr(settings, store, load_policy_text(text, str(state / "policy.yaml")), secrets=lookup)
        for stmt in ("CREATE DATABASE shop", "CREATE TABLE shop.orders (id INT PRIMARY KEY, total INT)",
                     "INSERT INTO shop.orders SELECT seq, seq * 7 FROM shop.seq_1_to_500"):  # fmt: skip
            driver._exec(servers[0].endpoint, [stmt])
        console.print(f"primary {servers[0].endpoint}, replicas {servers[1].endpoint} {servers[2].endpoint}; "
                      f"the application connects to {ctx.db('shop').spec.listener.host}:"
                      f"{ctx.db('shop').spec.listener.port}")  # fmt: skip

        backups = BackupService(ctx)
        stop = threading.Event()
        archiver = BinlogArchiver(ctx, "shop")
        t = threading.Thread(target=archiver.run, args=(stop, 0.1), daemon=True)
        t.start()
        snap = backups.snapshot("shop")
        console.print(f"snapshot {snap.id}: {snap.raw_size} bytes → {snap.size} sealed (AES-GCM, key "
                      f"{snap.key_id}), sha256 {snap.sha256[:16]}…, GTID {snap.gtid}")  # fmt: skip
        driver._exec(servers[0].endpoint, ["UPDATE shop.orders SET total = total + 1 WHERE id <= 100"])
        time.sleep(0.5)
        v = VerificationService(ctx).verify("shop")
        console.print(f"restore test {'[green]passed[/green]' if v.ok else '[red]FAILED[/red]'}: {v.detail}")
        stop.set()
        t.join(10)

        console.print("drill: SIGKILL the primary under 200 writes/s through the listener …")
        report = DrillService(ctx).drill("shop", fault="kill", rate=200)
        table = Table(title=f"DR drill {report.id}: {'PASS' if report.passed else 'FAIL'}")
        for col in ("measure", "objective", "measured", "verdict"):
            table.add_column(col)
        ok = {True: "[green]pass[/green]", False: "[red]fail[/red]"}
        rto = "n/a" if report.rto_s is None else f"{report.rto_s:.2f} s"
        table.add_row("RTO: kill → writes succeed again", f"≤ {report.objectives['rto_s']:g} s", rto,
                      ok[report.verdicts.get("rto", False)])  # fmt: skip
        lost = f"{report.rpo_lost_writes} of {report.writes_acknowledged}"
        table.add_row("RPO: acknowledged writes lost", "0", lost,
                      ok[report.verdicts.get("rpo", False)])  # fmt: skip
        table.add_row("writes accepted by the fenced primary", "0", str(report.fenced_writes),
                      ok[report.verdicts.get("fencing", False)])  # fmt: skip
        console.print(table)
        for step in report.steps:
            console.print(
                f"  {step.name:<13} {step.seconds:6.2f} s  {step.outcome:<6} {step.summary}", highlight=False
            )
        console.print(
            "(the full report, with its root-cause section: shipwarden dr drill shop --output report.md)"
        )
        return report.passed
    finally:
        if ctx is not None:
            for p in ctx.databases.values():
                p.streamer.stop()
                p.listener.stop()
        for s in servers:
            s.kill()
        _kill_restarted(workdir)


def _kill_restarted(workdir: Path) -> None:
    """A drill restarts the killed primary itself; stop it too."""
    import os
    import signal

    for pid_file in workdir.rglob("mysqld.pid"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
