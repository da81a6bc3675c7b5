"""CLI for incidents and post-incident reports (D12): ``shipwarden incident …``.

Registered by ``register(app)`` at the end of ``entrypoints/cli/__init__.py``.  Each command checks
its rule in ``guard.COMMANDS`` first.  Exit codes: 0 done, 1 a check ran and failed (a report
that does not verify), 2 bad input or not allowed — nothing changed.

* ``incident open --title T [--service S] [--severity sev2] [--onset 2026-12-03T10:15:04Z]``
* ``incident list [--open] [--service S]``, ``incident show ID``
* ``incident status ID investigating|identified|monitoring|resolved [--note …]``, ``incident ack ID``,
  ``incident commander ID NAME``, ``incident note ID root_cause|lessons|summary TEXT``
* ``incident timeline ID``, ``incident suspects ID`` (``--json`` for both)
* ``incident rollback ID [--suspect REF]`` — the one-command rollback of the top suspect, through
  ``shipwarden rollback``'s use case and permission (``deployment.rollback`` on its service)
* ``incident action add ID TITLE [--owner] [--due]``, ``incident action close ID N [--status]``,
  ``incident action list [ID] [--open]``
* ``incident report ID [--output DIR] [--no-pdf]`` — report.json, report.html (+ metrics.png), report.pdf
* ``incident verify-report report.json [--export audit.jsonl --public-key signing.pub]`` — offline
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from shipwarden.entrypoints.cli.guard import OtpOpt, check
from shipwarden.entrypoints.cli.output import console, error

incident_app = typer.Typer(no_args_is_help=True, help="Incidents: open, move, correlate, roll back, report.")
action_app = typer.Typer(no_args_is_help=True, help="An incident's action items, tracked to closure.")
incident_app.add_typer(action_app, name="action")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@contextmanager
def _errors() -> Iterator[None]:
    from shipwarden.domain.incidents import IncidentError
    from shipwarden.domain.policy import PolicyError, UnknownService
    from shipwarden.entrypoints.cli.output import message_of, policy_errors
    from shipwarden.ports.incidents import IncidentNotFound, ReportError
    from shipwarden.ports.store import StoreError
    from shipwarden.services.rollout import DeployError

    try:
        yield
    except PolicyError as exc:
        policy_errors(exc)
        raise typer.Exit(2) from None
    except (IncidentError, IncidentNotFound, UnknownService, DeployError, StoreError) as exc:
        error(message_of(exc))
        raise typer.Exit(2) from None
    except ReportError as exc:
        error(exc, label="report error")
        raise typer.Exit(1) from None


def _incidents(*, with_rollout: bool = False) -> Any:
    from shipwarden.bootstrap import build, load_policy, make_incidents, oncall_lookup
    from shipwarden.domain.policy import PolicyError
    from shipwarden.entrypoints.cli.context import settings as _settings
    from shipwarden.entrypoints.cli.guard import services

    settings = _settings()
    process = services(with_policy=False)
    if with_rollout:
        policy = load_policy(settings.policy)
        app = build(settings, policy, services=process)
        return make_incidents(settings, app.store, rollout=app.rollout, oncall=oncall_lookup(policy))
    rota = None
    if settings.policy.exists():  # commanders from the rota; an unreadable policy only loses that
        with suppress(PolicyError):
            rota = oncall_lookup(load_policy(settings.policy))
    return make_incidents(settings, process.store, oncall=rota)


def _print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def _summary(inc: Any) -> str:
    return (f"{inc.id} {inc.severity.value} {inc.status.value:<13} {inc.service or '-':<16} "
            f"commander {inc.commander or '-'}: {inc.title}")  # fmt: skip


# -- opening and moving -------------------------------------------------------------------------
def open_incident(
    title: Annotated[str, typer.Option("--title", help="What is wrong, in one line.")],
    service: Annotated[str | None, typer.Option(help="The affected service.")] = None,
    severity: Annotated[str, typer.Option(help="sev1 (critical) … sev4 (low).")] = "sev2",
    onset: Annotated[str | None, typer.Option(help="When it began (ISO-8601, with zone).")] = None,
    commander: Annotated[str | None, typer.Option(help="Default: whoever is on call.")] = None,
    summary: Annotated[str, typer.Option(help="What is known so far.")] = "",
) -> None:
    """Open an incident by hand (critical alerts open them by themselves)."""
    with _errors():
        _, who = check("incident open")
        when = None
        if onset is not None:
            try:
                when = datetime.fromisoformat(onset.replace("Z", "+00:00"))
            except ValueError:
                error(f"--onset {onset[:60]!r} is not an ISO-8601 time (2026-12-03T10:15:04Z)")
                raise typer.Exit(2) from None
            if when.tzinfo is None:
                error("--onset needs a time zone (…Z or +01:00)")
                raise typer.Exit(2)
        if service is not None:
            _known_service(service)
        inc = _incidents().service.open(title=title, service=service, severity=severity, actor=who.name,
                                        onset=when, commander=commander, summary=summary)  # fmt: skip
        console.print(f"opened {_summary(inc)}", soft_wrap=True)


def _known_service(service: str) -> None:
    """An incident names a service of the policy when there is one (a typo would hide it)."""
    from shipwarden.bootstrap import load_policy
    from shipwarden.entrypoints.cli.context import settings as _settings

    settings = _settings()
    if settings.policy.exists():
        load_policy(settings.policy).policy.service(service)  # UnknownService → exit 2


def list_incidents(
    open_only: Annotated[bool, typer.Option("--open", help="Only those not resolved.")] = False,
    service: Annotated[str | None, typer.Option(help="Only this service's.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Incidents, newest first."""
    from shipwarden.domain.incidents.report import incident_json

    with _errors():
        check("incident list")
        found = _incidents().service.find(open_only=open_only, service=service, limit=200)
        if as_json:
            _print_json([incident_json(i) for i in found])
            return
        for inc in found:
            console.print(_summary(inc), soft_wrap=True)
        if not found:
            console.print("no incidents")


def show(incident_id: str, as_json: JsonOpt = False) -> None:
    """An incident: its stamps and times, the alerts attached, the action items."""
    from shipwarden.domain.incidents import times
    from shipwarden.domain.incidents.report import incident_json, item_json

    with _errors():
        check("incident show")
        svc = _incidents().service
        inc = svc.get(incident_id)
        doc = {**incident_json(inc), "times": times(inc, svc.clock()).to_json(), "alerts": svc.alerts(inc.id),
               "action_items": [item_json(i) for i in svc.items(inc.id)]}  # fmt: skip
        if as_json:
            _print_json(doc)
            return
        console.print(_summary(inc), soft_wrap=True)
        stamps = ("onset_at", "detected_at", "acknowledged_at", "identified_at", "restored_at", "resolved_at")
        for k in stamps:
            console.print(f"  {k:<16} {doc[k] or '-'}")
        for k, v in doc["times"].items():
            console.print(f"  {k:<22} {v if v is not None else '-'}")
        for a in doc["alerts"]:
            console.print(f"  alert {a['name']} {a['status']} (audit seq {a['audit_seq']})", soft_wrap=True)
        for i in doc["action_items"]:
            console.print(f"  action #{i['number']} [{i['status']}] {i['title']} ({i['owner'] or '-'})",
                          soft_wrap=True)  # fmt: skip


def status(
    incident_id: str,
    new_status: Annotated[
        str, typer.Argument(metavar="STATUS", help="investigating|identified|monitoring|resolved")
    ],
    note: Annotated[str, typer.Option(help="Why (kept in the audit entry).")] = "",
) -> None:
    """Move an incident to STATUS."""
    with _errors():
        _, who = check("incident status")
        inc = _incidents().service.set_status(incident_id, new_status, actor=who.name, note=note)
        console.print(_summary(inc), soft_wrap=True)


def ack(incident_id: str) -> None:
    """Acknowledge an incident (stamps the time to acknowledge)."""
    with _errors():
        _, who = check("incident ack")
        inc = _incidents().service.acknowledge(incident_id, actor=who.name)
        console.print(f"acknowledged {_summary(inc)}", soft_wrap=True)


def commander(incident_id: str, name: str) -> None:
    """Hand the incident to another commander."""
    with _errors():
        _, who = check("incident commander")
        inc = _incidents().service.set_commander(incident_id, name, actor=who.name)
        console.print(_summary(inc), soft_wrap=True)


def note(incident_id: str, section: Annotated[str, typer.Argument(help="root_cause | lessons | summary")],
         text: str) -> None:  # fmt: skip
    """Fill in a section of the report people write: root cause, lessons, summary."""
    with _errors():
        _, who = check("incident note")
        _incidents().service.set_notes(incident_id, section, text, actor=who.name)
        console.print(f"{incident_id}: {section} saved")


# -- analysis -----------------------------------------------------------------------------------
def timeline(incident_id: str, as_json: JsonOpt = False) -> None:
    """The timeline from the audit log (every line with its audit seq)."""
    with _errors():
        check("incident timeline")
        lines = _incidents().service.timeline(incident_id)
        if as_json:
            _print_json([t.to_json() for t in lines])
            return
        for t in lines:
            when = t.ts[:19].replace("T", " ")
            console.print(f"{when}  #{t.seq:<6} {t.kind:<12} {t.title}", soft_wrap=True)


def suspects(incident_id: str, as_json: JsonOpt = False) -> None:
    """The changes that preceded the onset, most suspect first, with why."""
    with _errors():
        check("incident suspects")
        ranking = _incidents().service.suspects(incident_id)
        if as_json:
            _print_json(ranking.to_json())
            return
        top = ranking.top
        verdict = "no change caused this" if top is None else f"suspect {top.candidate.ref}"
        console.print(f"verdict: {verdict}", soft_wrap=True)
        for i, s in enumerate(ranking.suspects[:10], 1):
            f = s.features
            back = ", rolled back" if f.rolled_back else ""
            console.print(f"{i:>2}. {s.probability:>4.0%} {s.candidate.ref}  {f.kind}, {f.scope}, "
                          f"{f.minutes_before:.0f} min before, exposure {f.exposure:.0%}, "
                          f"analysis {f.analysis}{back} — {s.candidate.title}", soft_wrap=True)  # fmt: skip


def rollback(
    incident_id: str,
    suspect: Annotated[str | None, typer.Option(help="A suspect's ref (default: the top suspect).")] = None,
    service: Annotated[str | None, typer.Option(help="Refuse unless the suspect is of this service.")] = None,
    otp: OtpOpt = None,
) -> None:
    """Roll back the incident's suspect deployment (as `shipwarden rollback SERVICE` would)."""
    from shipwarden.domain.incidents import IncidentError
    from shipwarden.ports.incidents import IncidentNotFound

    with _errors():
        inc_ctx = _incidents(with_rollout=True)
        # what would be rolled back decides the permission's scope; reading it changes nothing.  When
        # it cannot be told, the check runs for the installation (only a global role passes, and the
        # decision is audited) before the reason is shown.
        try:
            _, ref, target = inc_ctx.service.rollback_target(incident_id, suspect)
        except (IncidentError, IncidentNotFound):
            check("incident rollback", service=None, otp=otp)
            raise
        if service is not None and service != target:
            error(f"the suspect {ref} is of {target}, not {service}: nothing was rolled back")
            raise typer.Exit(2)
        _, who = check("incident rollback", service=target, otp=otp)
        started = inc_ctx.service.rollback_suspect(incident_id, actor=who.name, ref=ref)
        console.print(f"{started.service}: rolling back {started.rolled_back} ({started.suspect}) — "
                      f"deployment {started.rollback}; `shipwarden reconcile` or the controller drives it",
                      soft_wrap=True)  # fmt: skip


# -- action items ---------------------------------------------------------------------------------
def action_add(
    incident_id: str,
    title: str,
    owner: Annotated[str | None, typer.Option(help="Who does it.")] = None,
    due: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
) -> None:
    """Add an action item to an incident."""
    with _errors():
        _, who = check("incident action add")
        item = _incidents().service.add_item(incident_id, title, actor=who.name, owner=owner, due=due)
        console.print(f"{incident_id} action #{item.number}: {item.title}", soft_wrap=True)


def action_close(
    incident_id: str,
    number: int,
    to: Annotated[str, typer.Option("--status", help="done | wontfix | open (reopen)")] = "done",
    why: Annotated[str, typer.Option("--note", help="What was done.")] = "",
) -> None:
    """Close (or reopen) an action item."""
    with _errors():
        _, who = check("incident action close")
        item = _incidents().service.close_item(incident_id, number, to, actor=who.name, note=why)
        console.print(f"{incident_id} action #{item.number}: {item.status}", soft_wrap=True)


def action_list(
    incident_id: Annotated[str | None, typer.Argument(help="One incident's (default: all).")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only open ones.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Action items, tracked to closure."""
    from shipwarden.domain.incidents.report import item_json

    with _errors():
        check("incident action list")
        items = _incidents().service.items(incident_id, open_only=open_only)
        if as_json:
            _print_json([{"incident": i.incident_id, **item_json(i)} for i in items])
            return
        for i in items:
            console.print(f"{i.incident_id} #{i.number} [{i.status}] {i.title} ({i.owner or '-'}, due "
                          f"{i.due or '-'})", soft_wrap=True)  # fmt: skip


# -- the report -----------------------------------------------------------------------------------
def report(
    incident_id: str,
    output: Annotated[Path | None, typer.Option(help="Directory (default: state_dir/reports/ID).")] = None,
    pdf: Annotated[bool, typer.Option("--pdf/--no-pdf", help="Also print the PDF with Chromium.")] = True,
) -> None:
    """Write the post-incident report: report.json, report.html (+ metrics.png), report.pdf."""
    with _errors():
        _, who = check("incident report")
        ctx = _incidents()
        inc = ctx.service.get(incident_id)
        out = output or ctx.reports_dir / inc.id
        files = ctx.reports.write(inc.id, out, pdf=pdf, actor=who.name)
        for f in (files.json, files.html, *files.plots, files.pdf):
            if f is not None:
                console.print(str(f), soft_wrap=True)
        if pdf and files.pdf is None:
            error("no PDF: Chromium is not installed (apt-get install chromium)", label="warning")


def verify_report(
    file: Path,
    export: Annotated[Path | None, typer.Option(help="An audit export (shipwarden audit export).")] = None,
    public_key: Annotated[Path | None, typer.Option(help="shipwarden's public key (PEM).")] = None,
) -> None:
    """Check a report's timeline offline: each line against its audit entry's canonical text and,
    with --export and --public-key, against a verified audit export (the chain itself)."""
    from shipwarden.domain.incidents import verify_report as check_report
    from shipwarden.security.audit_export import ExportError, verify_export

    try:
        doc = json.loads(file.read_bytes())
    except (OSError, ValueError) as exc:
        error(f"cannot read {file}: {exc}")
        raise typer.Exit(2) from None
    if not isinstance(doc, dict):
        error(f"{file} is not an incident report")
        raise typer.Exit(2)
    chain = None
    if (export is None) != (public_key is None):
        error("--export and --public-key go together")
        raise typer.Exit(2)
    if export is not None and public_key is not None:
        try:
            data = export.read_bytes()
            verify_export(data, public_key.read_bytes())
        except OSError as exc:
            error(f"cannot read: {exc}")
            raise typer.Exit(2) from None
        except ExportError as exc:
            error(f"the audit export does not verify: {exc}")
            raise typer.Exit(1) from None
        chain = {}
        for line in data.splitlines()[:-1]:
            entry = json.loads(line)
            chain[int(entry["seq"])] = str(entry["hash"])
    problems = check_report(doc, chain)
    for p in problems:
        error(str(p), label="mismatch")
    if problems:
        raise typer.Exit(1)
    where = "the verified audit export" if chain is not None else "their own canonical text (no export given)"
    console.print(f"ok: {len(doc.get('timeline', []))} timeline entries match {where}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(incident_app, name="incident")
    incident_app.command("open")(open_incident)
    incident_app.command("list")(list_incidents)
    incident_app.command("show")(show)
    incident_app.command("status")(status)
    incident_app.command("ack")(ack)
    incident_app.command("commander")(commander)
    incident_app.command("note")(note)
    incident_app.command("timeline")(timeline)
    incident_app.command("suspects")(suspects)
    incident_app.command("rollback")(rollback)
    incident_app.command("report")(report)
    incident_app.command("verify-report")(verify_report)
    action_app.command("add")(action_add)
    action_app.command("close")(action_close)
    action_app.command("list")(action_list)
