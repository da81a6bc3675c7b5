"""CLI for databases and disaster recovery: ``shipwarden db …`` and ``shipwarden dr drill``.

Registered by ``register(app)`` at the end of ``entrypoints/cli/__init__.py``.  Each command
checks its rule in ``guard.COMMANDS`` first.  Exit codes: 0 done, 1 the operation ran and
failed (a verification that did not match, a drill that missed its objectives, alerts
found), 2 bad input or not allowed — nothing changed.

* ``db status SERVICE`` — topology, each instance's role, position, replication threads,
  semi-sync; the listener; newest backups, verification and drill.
* ``db backup SERVICE [--kind snapshot|logical|config|all] [--due]`` — then integrity check
  and retention.
* ``db restore SERVICE [--to 2026-12-03T10:15:04Z | 0-1-1042 | latest] [--verify]`` — into a
  fresh instance (its address is printed; ``--no-keep`` removes it after).
* ``db verify SERVICE`` — the restore test the checklist's backup gate reads.
* ``db failover SERVICE [--to HOST:PORT]`` — a switchover if the primary answers, else a
  failover.  ``db rebuild SERVICE [HOST:PORT]`` — fenced instances back as replicas.
* ``db check SERVICE``, ``db rewrap``, ``db watch [SERVICE…]`` (the DR daemon).
* ``dr drill SERVICE [--fault kill|freeze|partition] [--hold SECONDS] [--json] [--output FILE]``.
"""

from __future__ import annotations

import getpass
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from shipwarden.entrypoints.cli.guard import OtpOpt, check

console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200, highlight=False)

db_app = typer.Typer(
    no_args_is_help=True, help="Replicated databases: backups, restore/PITR, verification, failover."
)
dr_app = typer.Typer(no_args_is_help=True, help="Disaster-recovery drills (the recovery runbook as code).")

_GTID = re.compile(r"^\d+-\d+-\d+(,\d+-\d+-\d+)*$")


@contextmanager
def _errors() -> Iterator[None]:
    from shipwarden.domain.dr.gtid import GtidError
    from shipwarden.domain.policy import PolicyError, UnknownService
    from shipwarden.ports.databases import DatabaseError, StaleTopology
    from shipwarden.ports.store import StoreError
    from shipwarden.services.dr.context import DrError

    try:
        yield
    except PolicyError as exc:
        for issue in exc.issues:
            err.print(f"[red]error:[/red] {issue}")
        raise typer.Exit(2) from None
    except (DrError, UnknownService, GtidError, StoreError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except StaleTopology as exc:
        err.print(f"[red]error:[/red] {exc}; nothing was changed by this command")
        raise typer.Exit(2) from None
    except DatabaseError as exc:
        err.print(f"[red]database error:[/red] {exc}")
        raise typer.Exit(1) from None


def _ctx() -> tuple[Any, Any, Any]:
    """(DrContext, settings, store) for the CLI's settings and policy."""
    from shipwarden.bootstrap import load_policy, make_dr, secret_lookup
    from shipwarden.entrypoints.cli.context import settings as _settings
    from shipwarden.entrypoints.cli.guard import services

    settings = _settings()
    loaded = load_policy(settings.policy)
    process = services(with_policy=False)
    store = process.store
    ctx = make_dr(settings, store, loaded, actor=settings.actor or getpass.getuser(),
                  secrets=secret_lookup(settings, store, process.access))  # fmt: skip
    return ctx, settings, store


def _known(ctx: Any, service: str) -> None:
    ctx.db(service)  # DrError naming the declared databases


# -- db status --------------------------------------------------------------------------------------
def status(
    service: str, as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False
) -> None:
    """Topology and health of SERVICE's database, its newest backups, verification and drill."""
    with _errors():
        check("db status", service=service)
        ctx, _, _ = _ctx()
        _known(ctx, service)
        doc = _status_doc(ctx, service)
        if as_json:
            sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
            return
        t = Table(
            title=f"{service}: epoch {doc['epoch']}, listener {doc['listener']} → {doc['listener_backend']}"
        )
        for col in ("instance", "role", "answers", "read_only", "gtid", "replication", "semi-sync"):
            t.add_column(col)
        for m in doc["members"]:
            t.add_row(m["endpoint"], m["role"], "yes" if m["answers"] else "NO", str(m.get("read_only", "")),
                      m.get("gtid", ""), m.get("replication", ""), m.get("semi_sync", ""))  # fmt: skip
        console.print(t)
        for kind, b in doc["backups"].items():
            console.print(
                f"newest {kind}: {b['id']} at {b['created_at']} ({b['gtid'] or '-'}, {b['size']} bytes)"
            )
        v = doc["verification"]
        console.print(f"last verification: {v['finished_at']} {'ok' if v['ok'] else 'FAILED'}: {v['detail']}"
                      if v else "last verification: never")  # fmt: skip
        d = doc["drill"]
        if d:
            console.print(f"last drill: {d['id']} {'passed' if d['passed'] else 'FAILED'}, RTO {d['rto_s']}, "
                          f"lost writes {d['rpo_lost']}")  # fmt: skip


def _status_doc(ctx: Any, service: str) -> dict[str, Any]:
    ports = ctx.db(service)
    topo = ctx.topology(service)
    members = []
    for role, eps in (("primary", [topo.primary]), ("replica", topo.replicas), ("fenced", topo.fenced)):
        for ep in eps:
            m: dict[str, Any] = {
                "endpoint": str(ep),
                "role": role,
                "answers": ports.driver.ping(ep, 1.0) is None,
            }
            if m["answers"]:
                st = ports.driver.status(ep)
                m.update(read_only=st.read_only, gtid=str(st.gtid_binlog_pos), server_id=st.server_id,
                         semi_sync={True: "ON", False: "OFF", None: "-"}[st.semi_sync_master]
                         if role == "primary" else "")  # fmt: skip
                rs = ports.driver.replica_status(ep)
                if rs is not None:
                    sql = "Yes" if rs.sql_running else "No"
                    m["replication"] = (f"from {rs.source} IO {rs.io_running} SQL {sql} "
                                        f"lag {rs.seconds_behind}")  # fmt: skip
            members.append(m)
    backups: dict[str, Any] = {}
    for r in ctx.catalogue.backups(service):
        if r.status == "ok":
            backups[r.kind] = {
                "id": r.id,
                "created_at": r.created_at.isoformat(),
                "gtid": r.gtid,
                "size": r.size,
            }
    vs = ctx.catalogue.verifications(service, 1)
    ds = ctx.catalogue.drills(service, 1)
    return {
        "service": service, "epoch": topo.epoch, "members": members,
        "listener": f"{ports.spec.listener.host}:{ports.spec.listener.port}",
        "listener_backend": str(ports.listener.backend(service)),
        "backups": backups,
        "staged_binlogs": [f.name for f in ports.streamer.files()],
        "verification": {"id": vs[0].id, "finished_at": vs[0].finished_at.isoformat(), "ok": vs[0].ok,
                         "detail": vs[0].detail} if vs else None,
        "drill": {"id": ds[0].id, "passed": ds[0].passed, "rto_s": ds[0].rto_s, "rpo_lost": ds[0].rpo_lost}
        if ds else None,
    }  # fmt: skip


# -- backups ----------------------------------------------------------------------------------------
def backup(
    service: str,
    kind: Annotated[str, typer.Option(help="snapshot, logical, config or all.")] = "all",
    due: Annotated[bool, typer.Option("--due", help="Only the kinds whose interval has passed.")] = False,
) -> None:
    """Back up SERVICE's database (sealed, checksummed, catalogued), then check integrity and retention."""
    if kind not in ("snapshot", "logical", "config", "all"):
        err.print(f"[red]error:[/red] --kind must be snapshot, logical, config or all, not {kind!r}")
        raise typer.Exit(2)
    with _errors():
        from shipwarden.bootstrap import dr_config_items, load_policy
        from shipwarden.services.dr.backups import CONFIG_SERVICE, BackupService

        check("db backup", service=service)
        ctx, settings, store = _ctx()
        _known(ctx, service)
        svc = BackupService(ctx)
        kinds = ["snapshot", "logical", "config"] if kind == "all" else [kind]
        if due:
            kinds = [k for k in kinds if k in svc.due(service)]
        for k in kinds:
            if k == "config":
                r = svc.config(dr_config_items(settings, store, load_policy(settings.policy)))
            else:
                r = svc.snapshot(service) if k == "snapshot" else svc.dump(service)
            console.print(f"{r.kind} {r.id}: {r.size} bytes (from {r.raw_size}), sha256 {r.sha256[:16]}…, "
                          f"gtid {r.gtid or '-'}, {r.location}")  # fmt: skip
        alerts = svc.check(service)
        deleted = svc.enforce_retention(service) + (
            svc.enforce_retention(CONFIG_SERVICE) if "config" in kinds else []
        )
        for d in deleted:
            console.print(f"retention: deleted {d.kind} {d.id} ({d.detail.get('deleted_because')})")
        for a in alerts:
            err.print(f"[yellow]alert {a.key}:[/yellow] {a.message}")
        if any(a.key.startswith(("corrupt:", "missing:")) for a in alerts):
            raise typer.Exit(1)


def check_cmd(service: str) -> None:
    """Re-read every catalogued backup of SERVICE (size, SHA-256), enforce retention; alerts exit 1."""
    with _errors():
        from shipwarden.services.dr.backups import BackupService

        check("db check", service=service)
        ctx, _, _ = _ctx()
        _known(ctx, service)
        svc = BackupService(ctx)
        alerts = svc.check(service)
        for d in svc.enforce_retention(service):
            console.print(f"retention: deleted {d.kind} {d.id} ({d.detail.get('deleted_because')})")
        for a in alerts:
            err.print(f"[yellow]alert {a.key}:[/yellow] {a.message}")
        console.print(f"{len(ctx.catalogue.backups(service))} catalogued backup(s), {len(alerts)} alert(s)")
        if alerts:
            raise typer.Exit(1)


def rewrap(otp: OtpOpt = None) -> None:
    """After a KEK rotation: re-seal every backup's data key under the primary KEK (payloads untouched)."""
    with _errors():
        from shipwarden.services.dr.backups import CONFIG_SERVICE, BackupService

        check("db rewrap", otp=otp)
        ctx, _, _ = _ctx()
        n = BackupService(ctx).rewrap([*ctx.databases, CONFIG_SERVICE])
        console.print(f"re-wrapped {n} backup key(s) under {ctx.envelope.keyring.primary}")


# -- restore, verify --------------------------------------------------------------------------------
def _target(text: str) -> dict[str, Any]:
    from shipwarden.domain.dr.gtid import GtidPosition

    if text == "latest":
        return {"latest": True}
    if _GTID.match(text):
        return {"gtid": GtidPosition.parse(text)}
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--to {text!r}: give a time (2026-12-03T10:15:04Z), a GTID (0-1-1042) or 'latest'"
        ) from None
    if when.tzinfo is None:
        raise ValueError(f"--to {text!r}: give the time zone (…Z or …+01:00)")
    # "state at T" includes every transaction of T's second: stop before the next second
    from datetime import timedelta

    return {"before": when.replace(microsecond=0).astimezone(UTC) + timedelta(seconds=1)}


def restore(
    service: str,
    to: Annotated[
        str, typer.Option("--to", help="A moment (ISO 8601 with zone), a GTID position, or 'latest'.")
    ] = "latest",
    verify: Annotated[bool, typer.Option(help="Compare table checksums with the source.")] = False,
    keep: Annotated[bool, typer.Option(help="Leave the restored instance running.")] = True,
    otp: OtpOpt = None,
) -> None:
    """Restore SERVICE's database into a fresh instance: snapshot + binlog replay up to --to."""
    with _errors():
        from shipwarden.services.dr.restore import RestoreService

        target = _target(to)
        check("db restore", service=service, otp=otp)
        ctx, _, _ = _ctx()
        _known(ctx, service)
        r = RestoreService(ctx).restore(service, verify=verify, keep=keep, **target)
        where = str(r.instance.endpoint) if r.instance is not None else "removed"
        console.print(f"restore {r.id}: snapshot {r.snapshot} + {len(r.binlogs)} binlog(s) → {r.reached} "
                      f"in {r.seconds:.1f}s; instance {where}")  # fmt: skip
        if r.verified is not None:
            console.print(
                ("[green]verified[/green]: " if r.verified else "[red]NOT verified[/red]: ") + r.detail
            )
        if r.verified is False:
            raise typer.Exit(1)


def verify_cmd(service: str) -> None:
    """Restore the newest snapshot (+ archive) into a scratch instance; compare checksums with the source."""
    with _errors():
        from shipwarden.services.dr.verify import VerificationService

        check("db verify", service=service)
        ctx, _, _ = _ctx()
        _known(ctx, service)
        v = VerificationService(ctx).verify(service)
        console.print(("[green]verified[/green] " if v.ok else "[red]FAILED[/red] ") + f"{v.id}: {v.detail}")
        if not v.ok:
            raise typer.Exit(1)


# -- failover, rebuild, watch -----------------------------------------------------------------------
def failover(
    service: str,
    to: Annotated[str | None, typer.Option("--to", help="The replica to promote (HOST:PORT).")] = None,
    otp: OtpOpt = None,
) -> None:
    """Switch SERVICE's primary over (graceful if it answers, a failover if not); every step audited."""
    with _errors():
        from shipwarden.domain.dr.topology import Endpoint
        from shipwarden.services.dr.failover import DatabaseMonitor

        candidate = Endpoint.parse(to) if to else None
        check("db failover", service=service, otp=otp)
        ctx, _, _ = _ctx()
        _known(ctx, service)
        if candidate is not None and candidate not in ctx.topology(service).replicas:
            raise ValueError(
                f"--to {candidate}: not a replica of {service} ({ctx.topology(service).replicas})"
            )
        mon = DatabaseMonitor(ctx, service)
        rep = mon.switchover(candidate)
        for s in rep.steps:
            console.print(f"  {s.name:<20} {s.seconds * 1000:8.1f} ms  {s.outcome}")
        console.print(f"{rep.kind}: {rep.old_primary} → {rep.new_primary} (epoch {rep.epoch})")


def rebuild(
    service: str,
    instance: Annotated[str | None, typer.Argument(help="HOST:PORT (default: all fenced).")] = None,
    otp: OtpOpt = None,
) -> None:
    """Bring fenced instances back as replicas of SERVICE's primary (re-seeded from a fresh snapshot)."""
    with _errors():
        from shipwarden.domain.dr.topology import Endpoint
        from shipwarden.services.dr.failover import DatabaseMonitor

        chosen = Endpoint.parse(instance) if instance else None
        check("db rebuild", service=service, otp=otp)
        ctx, _, _ = _ctx()
        _known(ctx, service)
        targets = [chosen] if chosen is not None else list(ctx.topology(service).fenced)
        if not targets:
            console.print(f"{service}: no fenced instance to rebuild")
        for ep in targets:
            console.print(f"{ep}: {DatabaseMonitor(ctx, service).rebuild(ep)}")


def watch(
    services: Annotated[list[str] | None, typer.Argument(help="Databases (default: all).")] = None,
) -> None:
    """The DR daemon: monitor and fail over, archive binlogs, run scheduled backups and verification."""
    with _errors():
        from shipwarden.services.dr.supervisor import DrSupervisor

        check("db watch")
        ctx, _, _ = _ctx()
        names = services or sorted(ctx.databases)
        for s in names:
            _known(ctx, s)
        sup = DrSupervisor(ctx, names)
        sup.start()
        console.print(f"watching {', '.join(names)}; Ctrl-C stops")
        try:
            while True:
                sup.stop_event.wait(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            sup.stop()


# -- dr drill ---------------------------------------------------------------------------------------
def drill(
    service: str,
    fault: Annotated[
        str,
        typer.Option(help="kill (SIGKILL the primary), freeze (SIGSTOP) or partition (cut it off the "
                          "network with iptables, as root; healed at the end)."),
    ] = "kill",
    rate: Annotated[float, typer.Option(help="Writes per second through the listener.")] = 200.0,
    hold: Annotated[
        float, typer.Option(help="partition: seconds the partition lasts after writes resume.", min=0)
    ] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    output: Annotated[Path | None, typer.Option(help="Also write the Markdown report here.")] = None,
    otp: OtpOpt = None,
) -> None:
    """Run the recovery runbook on SERVICE: lose the primary under load, fail over, rebuild, verify;
    report each step's time and the RTO/RPO measured against the objectives."""
    with _errors():
        from shipwarden.domain.dr.runbook import render_markdown
        from shipwarden.services.dr.drill import FAULTS, DrillService

        if fault not in FAULTS:
            raise ValueError(f"--fault must be one of {', '.join(FAULTS)}")
        check("dr drill", service=service, otp=otp)
        ctx, _, _ = _ctx()
        _known(ctx, service)
        report = DrillService(ctx).drill(service, fault=fault, rate=rate, hold=hold)
        md = render_markdown(report)
        if output is not None:
            output.write_text(md)
        sys.stdout.write((report.to_json() if as_json else md) + "\n")
        if not report.passed:
            raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    commands: list[tuple[str, Callable[..., None]]] = [
        ("status", status), ("backup", backup), ("check", check_cmd), ("rewrap", rewrap),
        ("restore", restore), ("verify", verify_cmd), ("failover", failover), ("rebuild", rebuild),
        ("watch", watch),
    ]  # fmt: skip
    for name, fn in commands:
        db_app.command(name)(fn)
    dr_app.command("drill")(drill)
    app.add_typer(db_app, name="db")
    app.add_typer(dr_app, name="dr")
