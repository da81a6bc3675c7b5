"""The incident part of ``make demo`` (D12): from a critical alert to the post-incident report.

:func:`respond` is the programmatic entry point the demo's alerting section hands over to once
someone has acknowledged the page: it takes the incident the critical alert opened (through the
``IncidentSink``), shows its suspects, rolls the top suspect back *from the incident* (the rollout
service's own rollback, driven to its end), moves the incident to monitoring and resolved, and
writes the report (HTML, PDF, JSON) — returning the report's files.

``python -m shipwarden.demo_incidents`` runs it on its own: nginx and the sample service v1, a v2
that starts failing 25 % of its requests once it serves production, load, and — standing in for
alerting until it lands — a critical alert recorded in the audit log and handed to the sink, as
alerting does.  Everything runs in a temporary directory on loopback ports and is cleaned up.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule

from shipwarden.ports.incidents import AlertSignal, ReportFiles

__all__ = ["respond"]


def respond(
    console: Console, app: Any, incidents: Any, *, service: str, actor: str, out: Path
) -> ReportFiles:
    """Incident response on ``service``'s open incident: suspects → rollback → resolve → report.

    ``app``: ``bootstrap.App`` (store, rollout); ``incidents``: ``bootstrap.Incidents`` built with the
    same store and ``rollout=app.rollout``."""
    svc = incidents.service
    [inc] = svc.find(open_only=True, service=service, limit=1) or [None]
    if inc is None:
        raise RuntimeError(f"no open incident for {service}: did the critical alert reach the sink?")
    console.print(f"incident {inc.id} ({inc.severity.value}) opened by {inc.opened_by}, commander "
                  f"{inc.commander or '(none)'}: {inc.title}", highlight=False)  # fmt: skip
    if inc.acknowledged_at is None:
        inc = svc.acknowledge(inc.id, actor=actor)
    ranking = svc.suspects(inc)
    for i, s in enumerate(ranking.suspects[:3], 1):
        console.print(f"  suspect {i}: {s.probability:.0%} {s.candidate.title}", highlight=False)
    started = svc.rollback_suspect(inc.id, actor=actor)
    console.print(f"rolling back {started.rolled_back} from the incident: deployment {started.rollback}",
                  highlight=False)  # fmt: skip
    final = app.rollout.run(started.rollback)
    console.print(f"rollback {final.id}: {final.phase.value} ({final.reason})", highlight=False)
    svc.set_status(inc.id, "identified", actor=actor, note=f"suspect {started.suspect}")
    svc.set_status(inc.id, "monitoring", actor=actor, note="rolled back from the incident")
    svc.add_item(inc.id, "gate the canary on the 5xx ratio", actor=actor, owner=actor)
    cause = f"{started.suspect} answered 5xx to a quarter of requests"
    svc.set_notes(inc.id, "root_cause", cause, actor=actor)
    svc.set_status(inc.id, "resolved", actor=actor)
    t0 = time.monotonic()
    files: ReportFiles = incidents.reports.write(inc.id, out, actor=actor)
    console.print(f"report written in {time.monotonic() - t0:.1f}s: {files.html} {files.pdf or '(no PDF)'}",
                  highlight=False)  # fmt: skip
    return files


def _alert(app: Any, incidents: Any, service: str, onset: datetime) -> None:
    """Stand-in for alerting (E7/E8) until it lands: record the alert change, then tell the sink."""
    from shipwarden.domain.audit import AuditChain, EntryDraft

    fp = hashlib.sha256(f"HighErrorRate/{service}".encode()).hexdigest()[:16]
    detail = {"alertname": "HighErrorRate", "fingerprint": fp, "status": "firing"}
    draft = EntryDraft(actor="alerting", action="alert.firing", service=service, detail=detail)
    head = app.store.audit_log.append([draft], AuditChain(lambda: datetime.now(UTC)))
    incidents.service.alert_changed(AlertSignal(
        fingerprint=fp, name="HighErrorRate", severity="critical", status="firing", starts_at=onset,
        service=service, annotations={"summary": "more than 5 % of requests answer 5xx"}, audit_seq=head.seq,
    ))  # fmt: skip


def main() -> int:
    from shipwarden.bootstrap import build, load_policy, make_incidents
    from shipwarden.demo import _policy_copy
    from shipwarden.loadgen import Load
    from shipwarden.settings import Settings

    console = Console(width=None if sys.stdout.isatty() else 160)
    workdir = Path(tempfile.mkdtemp(prefix="shipwarden-incident-demo-"))
    settings = Settings(state_dir=workdir / "state", policy=_policy_copy(workdir), actor="demo", tick_s=0.1)
    app = build(settings, load_policy(settings.policy))
    incidents = make_incidents(settings, app.store, rollout=app.rollout)
    url = f"http://127.0.0.1:{app.rollout.spec('hello').routing.port}/"
    ok = False
    try:
        console.print(Rule("incident: hello v1, then a v2 that fails a quarter of its requests"))
        app.rollout.run(app.rollout.start("hello", "v1", actor="demo").id)
        os.environ["SAMPLE_ERROR_RATE"], os.environ["SAMPLE_ERRORS_FROM"] = "0.25", str(time.time() + 15)
        try:
            bad = app.rollout.run(app.rollout.start("hello", "v2", actor="alice").id)
        finally:
            os.environ.pop("SAMPLE_ERROR_RATE"), os.environ.pop("SAMPLE_ERRORS_FROM")
        console.print(f"v2 deployed: {bad.id} {bad.phase.value}", highlight=False)
        with Load(url, concurrency=4, max_seconds=90) as load:
            time.sleep(max(0.0, float(bad.finished_at or 0) + 16 - time.time()))
            onset = datetime.now(UTC)
            time.sleep(4)
            _alert(app, incidents, "hello", onset)
            files = respond(console, app, incidents, service="hello", actor="demo", out=workdir / "report")
            time.sleep(1)
        r = load.result
        console.print(f"load: {r.requests} requests, {r.failures} failed", highlight=False)
        ok = files.html.exists()
        keep = Path(os.environ.get("SHIPWARDEN_DEMO_REPORT_DIR", tempfile.gettempdir())) / "shipwarden-report"
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(files.directory, keep)
        console.print(f"report kept in {keep}", highlight=False)
    finally:
        app.platform.stop(app.platform.instances("hello"), 5)
        app.router.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
