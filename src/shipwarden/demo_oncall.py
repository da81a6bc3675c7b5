"""The on-call part of ``make demo`` (E8, D12): a service degrades, the alert fires, the person on
call is paged by e-mail, nobody acknowledges, it escalates, someone acknowledges through the signed
link in the mail, the suspect deployment is rolled back from the incident, the report is written.

Everything is the installation's own wiring (``bootstrap.build_service``, the same as ``serve``):
the API on a loopback port (its lifespan runs the escalation engine and its watchdog), alerting's
pipeline and engine, incidents whose commander is whoever is on call, pages by SMTP to a local
mail catcher (aiosmtpd).  Level time-outs are 4 s so the section stays short.

HOOK (Prometheus → Alertmanager): the alert is posted to ``/alerting/webhook`` exactly as
Alertmanager posts it (webhook version 4, bearer token), when a blackbox-style probe of the
production route sees more than 5 % 5xx — standing in for Prometheus evaluating the generated rule
and Alertmanager forwarding it.  The real chain (Prometheus evaluating shipwarden's rules,
Alertmanager, the same webhook) is exercised in tests/integration/alerting/test_real_stack.py;
swap :func:`_fire` for that stack when the demo machine has the binaries.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.rule import Rule

__all__ = ["run"]

TOKEN = "demo-alertmanager-token-0123"
LEVEL_TIMEOUT = 4.0


def _sections(today: datetime) -> str:
    start = (today - timedelta(days=2)).date().isoformat()  # alice's week: from two days ago
    return f"""
oncall:
  people:
    alice: {{email: alice@demo.test}}
    bob: {{email: bob@demo.test}}
    carol: {{email: carol@demo.test}}
  schedules:
    primary:
      timeZone: Europe/Berlin
      layers:
        - {{name: weekly, rotation: weekly, start: {start}, handoff: "09:00", members: [alice, bob]}}
  escalation:
    hello-page:
      levels:
        - notify: [{{schedule: primary}}]
          timeout: {LEVEL_TIMEOUT:g}s
        - notify: [{{person: carol}}]
          timeout: {LEVEL_TIMEOUT:g}s
  services: {{hello: hello-page}}
  watchdog: {{notify: [{{person: bob}}]}}
alerting:
  receivers:
    - name: hello-oncall
      escalation: hello-page
  route:
    receiver: hello-oncall
    groupBy: [alertname, service]
    groupWait: 0s
    groupInterval: 1s
"""


def _probe(url: str, n: int = 40) -> float:
    bad = 0
    with httpx.Client(timeout=2, trust_env=False) as h:
        for _ in range(n):
            try:
                bad += h.get(url).status_code >= 500
            except httpx.HTTPError:
                bad += 1
    return bad / n


def _fire(api: str, status: str, onset: datetime, ratio: float) -> None:
    """HOOK: what Alertmanager posts for the rule ``ServiceErrorRate`` (see the module docstring)."""
    alert = {
        "status": status,
        "labels": {"alertname": "ServiceErrorRate", "service": "hello", "severity": "critical"},
        "annotations": {"summary": f"{ratio:.0%} of requests to hello answer 5xx (threshold 5 %)"},
        "startsAt": onset.isoformat(),
        "fingerprint": "demo-hello-5xx",
        **({"endsAt": datetime.now(UTC).isoformat()} if status == "resolved" else {}),
    }
    body = {
        "version": "4",
        "groupKey": '{}:{alertname="ServiceErrorRate", service="hello"}',
        "status": status,
        "receiver": "shipwarden",
        "groupLabels": {"alertname": "ServiceErrorRate", "service": "hello"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "alerts": [alert],
    }
    r = httpx.post(
        f"{api}/alerting/webhook",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
        trust_env=False,
    )
    r.raise_for_status()


def _serve(svc: Any, port: int) -> tuple[Any, threading.Thread]:
    import uvicorn

    from shipwarden.entrypoints.http import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(svc), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="demo-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API did not start")
        time.sleep(0.05)
    return server, thread


def run(console: Console, workdir: Path) -> bool:
    """The section; True when every step happened as it should."""
    from shipwarden import demo_incidents
    from shipwarden.adapters.net import free_port
    from shipwarden.adapters.notify.mailcatcher import MailCatcher
    from shipwarden.bootstrap import build_service, load_policy, start_alerting
    from shipwarden.demo import _policy_copy
    from shipwarden.loadgen import Load
    from shipwarden.settings import Settings

    # pages and policy text are printed as written: no console markup ("[shipwarden] PAGE …")
    console = Console(file=console.file, width=console.width, markup=False, emoji=False, highlight=False)
    root = workdir / "oncall"
    root.mkdir(parents=True, exist_ok=True)
    policy_path = _policy_copy(root)
    policy_path.write_text(policy_path.read_text() + _sections(datetime.now(UTC)))
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    os.environ["SHIPWARDEN_SECRET_ALERT_WEBHOOK_TOKEN"] = TOKEN
    ok = False
    with MailCatcher() as mail:
        settings = Settings(
            state_dir=root / "state",
            policy=policy_path,
            actor="demo",
            tick_s=0.1,
            smtp_url=mail.url,
            smtp_from="pager@shipwarden.demo",
            public_url=api,
        )
        svc = build_service(settings, load_policy(policy_path))
        assert svc.rollout is not None and svc.oncall is not None and svc.incidents is not None
        rollout, engine = svc.rollout, svc.oncall.engine
        server, thread = _serve(svc, port)
        stop_alerting = start_alerting(svc)
        url = f"http://127.0.0.1:{rollout.spec('hello').routing.port}/"
        try:
            console.print(Rule("9. on call: hello v2 degrades, the pager escalates, the incident is handled"))
            who = svc.oncall.rota.who(datetime.now(UTC))["primary"][0]
            console.print(
                f"on call now (schedule primary, Europe/Berlin): {who}; escalation hello-page: "
                f"primary → after {LEVEL_TIMEOUT:g}s carol",
                highlight=False,
            )
            rollout.run(rollout.start("hello", "v1", actor="demo").id)
            os.environ["SAMPLE_ERROR_RATE"], os.environ["SAMPLE_ERRORS_FROM"] = "0.25", str(time.time() + 15)
            try:
                bad = rollout.run(rollout.start("hello", "v2", actor="dave").id)
            finally:
                os.environ.pop("SAMPLE_ERROR_RATE"), os.environ.pop("SAMPLE_ERRORS_FROM")
            console.print(f"dave deployed hello v2: {bad.id} {bad.phase.value}", highlight=False)
            with Load(url, concurrency=4, max_seconds=120):
                deadline, ratio = time.monotonic() + 60, 0.0
                while ratio <= 0.05 and time.monotonic() < deadline:
                    ratio = _probe(url)
                onset = datetime.now(UTC)
                console.print(
                    f"probe of production: {ratio:.0%} 5xx > 5 % → ServiceErrorRate fires "
                    "(posted to /alerting/webhook as Alertmanager does)",
                    highlight=False,
                )
                fired_at = time.time()
                _fire(api, "firing", onset, ratio)
                first = mail.wait_for(lambda m: "alice@demo.test" in m.to, 30)
                if first is None:
                    raise RuntimeError("alice was not paged")
                console.print(
                    f"paged alice@demo.test by mail {first.at - fired_at:.2f}s after the alert: "
                    f"{first.subject}",
                    highlight=False,
                )
                for line in first.body.splitlines():
                    if re.match(r"^\s+\d{4}-\d\d-\d\d .* deployment ", line):
                        console.print(f"  page lists: {line.strip()}", highlight=False)
                console.print(f"nobody acknowledges for {LEVEL_TIMEOUT:g}s …", highlight=False)
                second = mail.wait_for(lambda m: "carol@demo.test" in m.to, 30)
                if second is None:
                    raise RuntimeError("the page did not escalate to carol")
                esc = engine.store.find(open_only=True, service="hello")[0]
                console.print(
                    f"escalated to carol@demo.test {second.at - first.at:.2f}s after the first page "
                    f"(time-out {LEVEL_TIMEOUT:g}s)",
                    highlight=False,
                )
                link = next(
                    ln.split(": ", 1)[1].strip()
                    for ln in second.body.splitlines()
                    if ln.startswith("acknowledge:")
                )
                with httpx.Client(timeout=10, trust_env=False) as h:
                    shown = h.get(link)  # opening the link only shows a confirmation
                    done = h.post(link)
                console.print(
                    f"carol opens the link in her mail ({shown.status_code}, nothing changed yet) and "
                    f"confirms: {done.status_code}",
                    highlight=False,
                )
                after = engine.store.get(esc.id)
                console.print(
                    f"escalation {after.id}: {after.status.value} by {after.acked_by}; no further level "
                    "is paged",
                    highlight=False,
                )
                files = demo_incidents.respond(
                    console, svc, svc.incidents, service="hello", actor="carol", out=root / "report"
                )
                _fire(api, "resolved", onset, 0.0)
                deadline = time.monotonic() + 15
                while engine.store.get(esc.id).status.value != "resolved" and time.monotonic() < deadline:
                    time.sleep(0.1)
            steps = [e.detail for e in svc.store.audit_entries(action="escalation.step")]
            late = ", ".join(f"level {d['level']} {d['late_ms']:.0f} ms" for d in steps)
            console.print(
                f"escalation steps fired late by: {late}; pages sent: {len(mail.mails)}", highlight=False
            )
            ok = (
                after.acked_by == "carol (link)"
                and files.html.exists()
                and engine.store.get(esc.id).status.value == "resolved"
            )
        finally:
            stop_alerting()
            server.should_exit = True
            thread.join(15)
            rollout.platform.stop(rollout.platform.instances("hello"), 5)
            rollout.router.stop()
            os.environ.pop("SHIPWARDEN_SECRET_ALERT_WEBHOOK_TOKEN", None)
    return ok


def main() -> int:
    import shutil
    import sys
    import tempfile

    console = Console(width=None if sys.stdout.isatty() else 160)
    workdir = Path(tempfile.mkdtemp(prefix="shipwarden-oncall-demo-"))
    try:
        return 0 if run(console, workdir) else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
