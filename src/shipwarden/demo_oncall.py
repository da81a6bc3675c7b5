"""The on-call part of ``make demo`` (E8, D12): a service degrades, the alert fires, the person on
call is paged by e-mail, nobody acknowledges, it escalates, someone acknowledges through the signed
link in the mail, the suspect deployment is rolled back from the incident, the report is written.

Everything is the installation's own wiring (``bootstrap.build_service``, the same as ``serve``):
the API on a loopback port (its lifespan runs the escalation engine and its watchdog), alerting's
pipeline and engine, incidents whose commander is whoever is on call, pages by SMTP to a local
mail catcher (aiosmtpd).  Level time-outs are 4 s so the section stays short.

The alert is real: Prometheus (Debian's ``prometheus``) scrapes the router's ``/metrics`` every
second and evaluates the rule shipwarden generated from the policy's ``monitoring`` section
(``ServiceErrorRate``: more than 5 % of production requests answered 5xx over 5 s, for 1 s),
written by ``start_alerting`` as ``serve`` does (``promtool`` check, then SIGHUP); Prometheus sends
it to a real Alertmanager (``prometheus-alertmanager``, ``group_wait: 0s``, ``group_interval: 1s``
instead of its 30 s / 5 min defaults), whose webhook receiver is shipwarden's
``/alerting/webhook``.  The resolved notice takes the same path once the rollback stops the 5xx.
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
monitoring:
  evaluationInterval: 1s
  services:
    hello:
      errorRate: {{critical: 5, for: 1s, window: 5s}}
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


def _monitoring(root: Path, api: str, router_admin: str, rules: Path) -> tuple[Any, Any]:
    """Real Alertmanager → shipwarden's webhook, and real Prometheus scraping the router and
    evaluating ``rules`` (which ``start_alerting`` fills in and reloads by SIGHUP)."""
    from shipwarden.adapters.metrics.processes import start_alertmanager, start_prometheus

    rules.parent.mkdir(parents=True, exist_ok=True)
    rules.write_text("groups: []\n")
    am = start_alertmanager(root / "alertmanager", f"{api}/alerting/webhook", TOKEN)
    try:
        scrape = {"job_name": "router", "static_configs": [{"targets": [router_admin.split("//", 1)[1]]}]}
        prom = start_prometheus(
            root / "prometheus", [scrape], rule_files=[rules], alertmanager=f"127.0.0.1:{am.port}"
        )
    except BaseException:
        am.stop()
        raise
    (root / "prometheus" / "prometheus.pid").write_text(str(prom.process.pid))
    return prom, am


def _rule_names(prom: Any) -> set[str]:
    body = httpx.get(f"{prom.url}/api/v1/rules", timeout=5, trust_env=False).json()
    return {r["name"] for g in body["data"]["groups"] for r in g["rules"]}


def _prom_alert(prom: Any, name: str) -> dict[str, Any] | None:
    body = httpx.get(f"{prom.url}/api/v1/alerts", timeout=5, trust_env=False).json()
    return next((a for a in body["data"]["alerts"] if a["labels"].get("alertname") == name), None)


def _epoch(rfc3339: str) -> float:
    """Prometheus' ``activeAt`` (nanosecond fractions) as epoch seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?", rfc3339)
    if m is None:
        return float("nan")
    return datetime.fromisoformat(m.group(1) + "+00:00").timestamp() + float(m.group(2) or 0)


def _until(what: str, cond: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not within {timeout:g}s")


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
    rules = root / "rules" / "shipwarden.yml"
    with MailCatcher() as mail:
        settings = Settings(
            state_dir=root / "state",
            policy=policy_path,
            actor="demo",
            tick_s=0.1,
            smtp_url=mail.url,
            smtp_from="pager@shipwarden.demo",
            public_url=api,
            prometheus_rules_file=rules,
            prometheus_pid_file=root / "prometheus" / "prometheus.pid",
        )
        svc = build_service(settings, load_policy(policy_path))
        assert svc.rollout is not None and svc.oncall is not None and svc.incidents is not None
        rollout, engine = svc.rollout, svc.oncall.engine
        server, thread = _serve(svc, port)
        stop_alerting: Any = None
        prom = am = None
        url = f"http://127.0.0.1:{rollout.spec('hello').routing.port}/"
        try:
            console.print(Rule("9. on call: hello v2 degrades, the pager escalates, the incident is handled"))
            t0 = time.monotonic()
            prom, am = _monitoring(root, api, rollout.router.admin_url, rules)  # type: ignore[attr-defined]
            stop_alerting = start_alerting(svc)  # writes the policy's rules, promtool-checked; SIGHUP
            names = _until("Prometheus loads shipwarden's rules", lambda: _rule_names(prom), 30)
            console.print(
                f"Prometheus {prom.url} (1 s scrape + evaluation of the router's /metrics, rules "
                f"{', '.join(sorted(names))}) → Alertmanager {am.url} (group_wait 0s) → "
                f"{api}/alerting/webhook; up in {time.monotonic() - t0:.1f}s",
                highlight=False,
            )
            who = svc.oncall.rota.who(datetime.now(UTC))["primary"][0]
            console.print(
                f"on call now (schedule primary, Europe/Berlin): {who}; escalation hello-page: "
                f"primary → after {LEVEL_TIMEOUT:g}s carol",
                highlight=False,
            )
            rollout.run(rollout.start("hello", "v1", actor="demo").id)
            errors_from = time.time() + 15  # after v2's preview and switch: the release looks good
            os.environ["SAMPLE_ERROR_RATE"], os.environ["SAMPLE_ERRORS_FROM"] = "0.25", str(errors_from)
            try:
                bad = rollout.run(rollout.start("hello", "v2", actor="dave").id)
            finally:
                os.environ.pop("SAMPLE_ERROR_RATE"), os.environ.pop("SAMPLE_ERRORS_FROM")
            console.print(f"dave deployed hello v2: {bad.id} {bad.phase.value}", highlight=False)
            with Load(url, concurrency=4, max_seconds=150):
                console.print(
                    f"hello v2 starts answering 5xx to a quarter of requests in "
                    f"{max(0.0, errors_from - time.time()):.0f}s …",
                    highlight=False,
                )
                first = mail.wait_for(lambda m: "alice@demo.test" in m.to, 90)
                if first is None:
                    raise RuntimeError(f"alice was not paged (Prometheus log: {prom.log_tail(5)})")
                alert = _prom_alert(prom, "ServiceErrorRate") or {}
                active = alert.get("activeAt")
                since = f"{_epoch(active) - errors_from:.1f}s" if isinstance(active, str) else "?"
                console.print(
                    f"Prometheus: ServiceErrorRate {alert.get('state', '?')} (value "
                    f"{float(alert.get('value', 'nan')):.1f} % 5xx > 5 %; pending {since} after the first "
                    "5xx, firing 1 s later); Alertmanager forwarded it to shipwarden",
                    highlight=False,
                )
                console.print(
                    f"paged alice@demo.test by mail {first.at - errors_from:.2f}s after the first 5xx: "
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
                deadline = time.monotonic() + 60
                while engine.store.get(esc.id).status.value != "resolved" and time.monotonic() < deadline:
                    time.sleep(0.1)
                done_esc = engine.store.get(esc.id)
                rolled = svc.store.history("hello", limit=1)[0]
                if done_esc.resolved_at is not None:
                    console.print(
                        f"the 5xx stopped with the rollback ({rolled.id}); Prometheus resolved "
                        "ServiceErrorRate (5 s window) and Alertmanager sent the resolved notice: "
                        f"escalation resolved by {done_esc.resolved_by} "
                        f"{done_esc.resolved_at - rolled.created_at:.1f}s after the rollback started",
                        highlight=False,
                    )
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
            if stop_alerting is not None:
                stop_alerting()
            for proc in (prom, am):
                if proc is not None:
                    proc.stop()
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
