"""For real: Prometheus evaluates the rules shipwarden generated (loaded by `alerts rules --write`
and a reload) against a service made to fail, probed by the blackbox exporter and with its host's
node-exporter; Alertmanager forwards to `shipwarden serve`'s webhook; the page arrives by e-mail
at an SMTP server (aiosmtpd), and the resolved notice too.  Intervals are 1 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from shipwarden.adapters.net import free_port
from shipwarden.adapters.store.alerting_repo import AlertingRepo
from shipwarden.adapters.store.engine import make_engine
from shipwarden.adapters.store.incidents_repo import IncidentRepo
from shipwarden.adapters.store.repository import Store
from shipwarden.entrypoints.cli import app
from tests.fixtures.alerting import (
    Mailbox,
    Proc,
    env_with,
    query,
    start_alertmanager,
    start_blackbox,
    start_node_exporter,
    start_prometheus,
    wait_until,
)
from tests.fixtures.deploy_env import make_env
from tests.fixtures.serve import run_serve

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("alerting-stack")]

TOKEN = "am-token-0123456789"
APP = Path(__file__).resolve().parents[3] / "examples" / "sample_service" / "app.py"

SECTIONS = """
alerting:
  receivers:
    - name: ops
      apprise: [OPS_MAIL]
  route:
    receiver: ops
    groupBy: [alertname, service]
    groupWait: 0s
    groupInterval: 1s
monitoring:
  evaluationInterval: 1s
  services:
    web:
      availability: {critical: 50, for: 0s, window: 2s}
      saturation:
        selector: 'job="node"'
        memory: {warning: 0.001, for: 0s}
"""


def _service(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PORT": str(port), "SAMPLE_SERVICE": "web"}
    proc = subprocess.Popen(
        [sys.executable, str(APP)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until("sample service up", lambda: _up(port), timeout=30)
    return proc


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _mail(box: Mailbox, *words: str) -> str | None:
    return next((s for s in box.subjects() if all(w in s for w in words)), None)


def test_threshold_to_mail_and_back(
    tmp_path: Path, mailbox: Mailbox, monitoring_procs: list[Proc], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_env(tmp_path)
    env.policy_path.write_text(env.policy_path.read_text() + SECTIONS)
    rules = tmp_path / "rules" / "shipwarden.yml"
    rules.parent.mkdir()
    rules.write_text("groups: []\n")
    t0 = time.time()
    svc_port = free_port()
    service = _service(svc_port)
    try:
        bb = start_blackbox(tmp_path / "bb")
        monitoring_procs.append(bb)
        node = start_node_exporter(tmp_path / "node")
        monitoring_procs.append(node)
        sw_env = env_with(
            SHIPWARDEN_STATE_DIR=str(tmp_path / "state"),
            SHIPWARDEN_POLICY=str(env.policy_path),
            SHIPWARDEN_ACTOR="tester",
            SHIPWARDEN_SECRET_ALERT_WEBHOOK_TOKEN=TOKEN,
            SHIPWARDEN_SECRET_OPS_MAIL=mailbox.url(),
            SHIPWARDEN_PROMETHEUS_RULES_FILE=str(rules),
        )
        with run_serve(sw_env) as sw:
            am = start_alertmanager(tmp_path / "am", f"{sw}/alerting/webhook", TOKEN)
            monitoring_procs.append(am)
            prom = start_prometheus(
                tmp_path / "prom",
                [
                    {"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{node.port}"]}]},
                    {
                        "job_name": "blackbox",
                        "metrics_path": "/probe",
                        "params": {"module": ["http_2xx"]},
                        "static_configs": [
                            {
                                "targets": [f"http://127.0.0.1:{svc_port}/healthz"],
                                "labels": {"service": "web"},
                            }
                        ],
                        "relabel_configs": [
                            {"source_labels": ["__address__"], "target_label": "__param_target"},
                            {"source_labels": ["__param_target"], "target_label": "instance"},
                            {"target_label": "__address__", "replacement": f"127.0.0.1:{bb.port}"},
                        ],
                    },
                ],
                rule_files=[rules],
                alertmanager=f"127.0.0.1:{am.port}",
            )
            monitoring_procs.append(prom)
            print(f"stack up {time.time() - t0:.1f}s")
            # the policy's rules: validated by promtool, written, Prometheus reloaded
            for k, v in {**sw_env, "SHIPWARDEN_PROMETHEUS_RELOAD_URL": f"{prom.url}/-/reload"}.items():
                if k.startswith("SHIPWARDEN_"):
                    monkeypatch.setenv(k, v)
            r = CliRunner().invoke(app, ["alerts", "rules", "--write"])  # in-process: no interpreter start-up
            assert r.exit_code == 0, r.output
            assert "; reloaded" in r.output  # serve wrote them at start: unchanged, reloaded all the same
            names = wait_until(
                "rules loaded",
                lambda: {
                    rule["name"]
                    for g in httpx.get(f"{prom.url}/api/v1/rules").json()["data"]["groups"]
                    for rule in g["rules"]
                },
            )
            assert {"ServiceAvailability", "NodeMemorySaturation"} <= names
            print(f"rules loaded {time.time() - t0:.1f}s")
            # node-exporter scraped: its memory rule fires and pages (warning)
            wait_until("probe up", lambda: query(prom, 'probe_success{service="web"} == 1'), timeout=30)
            wait_until("node mail", lambda: _mail(mailbox, "WARNING", "NodeMemorySaturation"), timeout=60)
            print(f"node mail {time.time() - t0:.1f}s")
            # the service fails: availability below its critical threshold
            killed = time.time()
            os.killpg(service.pid, signal.SIGKILL)
            service.wait(10)
            subject = wait_until(
                "page", lambda: _mail(mailbox, "CRITICAL", "ServiceAvailability"), timeout=60
            )
            paged = mailbox.received_at[mailbox.subjects().index(subject)]
            # it comes back: the resolved notice
            service = _service(svc_port)
            back = time.time()
            wait_until("resolved", lambda: _mail(mailbox, "RESOLVED", "ServiceAvailability"), timeout=60)
            resolved = mailbox.received_at[
                mailbox.subjects().index(_mail(mailbox, "RESOLVED", "ServiceAvailability"))
            ]  # type: ignore[arg-type]
            print(f"kill -> page {paged - killed:.2f}s, restart -> resolved {resolved - back:.2f}s")
            page = next(m for m in mailbox.messages if "ServiceAvailability" in str(m["Subject"]))
            text = page.get_payload(0).get_payload(decode=True).decode()  # type: ignore[union-attr]
            assert "service=web" in text and "Recent changes" not in text  # no deployment yet
            # the critical alert opened an incident; every notice was delivered and audited
            store = Store(make_engine(f"sqlite:///{tmp_path / 'state' / 'shipwarden.db'}"))
            try:
                incidents = IncidentRepo(store).find()
                assert [i.service for i in incidents] == ["web"], incidents
                delivered = AlertingRepo(store).outbox(state="delivered")
                assert {r["target"] for r in delivered} >= {"apprise:OPS_MAIL", "incident:"}
                assert list(store.audit_entries(action="alert.rules"))  # serve wrote the rules at start
                notices = list(store.audit_entries(action="alert.notice"))
                assert {e.detail["status"] for e in notices} == {"firing", "resolved"}
            finally:
                store.engine.dispose()
    finally:
        if service.poll() is None:
            os.killpg(service.pid, signal.SIGTERM)
            service.wait(10)
