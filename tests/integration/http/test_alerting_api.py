"""The alert receivers, silences and /metrics through the real app."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipwarden.bootstrap import build_service, load_policy
from shipwarden.settings import Settings
from tests.fixtures.deploy_env import make_env
from tests.integration.http.conftest import Api, Clock

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-for-alertmanager"
ALERTING = """
alerting:
  receivers:
    - name: ops
      apprise: [OPS_URL]
  route:
    receiver: ops
    groupBy: [alertname, service]
    groupWait: 0s
"""


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    env = make_env(tmp_path)
    env.policy_path.write_text(env.policy_path.read_text() + ALERTING)
    monkeypatch.setenv("SHIPWARDEN_SECRET_ALERT_WEBHOOK_TOKEN", TOKEN)
    clock = Clock()
    s = Settings(state_dir=tmp_path / "state", policy=env.policy_path, cookie_secure=False)
    a = Api(build_service(s, load_policy(env.policy_path), clock=clock), clock, tmp_path)
    yield a
    a.services.store.engine.dispose()


def _webhook(status: str = "firing", **labels: str) -> dict[str, object]:
    lbl = {"alertname": "ServiceErrorRate", "service": "web", "severity": "critical", **labels}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="ServiceErrorRate"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "shipwarden",
        "groupLabels": {"alertname": "ServiceErrorRate"},
        "commonLabels": lbl,
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "alerts": [
            {
                "status": status,
                "labels": lbl,
                "annotations": {"summary": "5xx"},
                "startsAt": "2031-03-04T08:59:00Z",
                "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2031-03-04T09:00:00Z",
                "generatorURL": "http://prom/graph",
                "fingerprint": "x",
            }
        ],
    }


def test_webhook_auth_contract_and_dedupe(api: Api) -> None:
    c = api.client()
    body = json.dumps(_webhook()).encode()
    hdr = {"content-type": "application/json"}
    assert c.post("/alerting/webhook", content=body, headers=hdr).status_code == 401
    wrong = {**hdr, "authorization": "Bearer nope"}
    assert c.post("/alerting/webhook", content=body, headers=wrong).status_code == 401
    ok = {**hdr, "authorization": f"Bearer {TOKEN}"}
    r = c.post("/alerting/webhook", content=body, headers=ok)
    assert r.status_code == 200 and r.json() == {"alerts": 1, "changed": 1}
    # the same delivery again (Alertmanager retries, HA peers): stored once
    assert c.post("/alerting/webhook", content=body, headers=ok).json() == {"alerts": 1, "changed": 0}
    # HMAC of the body instead of the bearer token
    resolved = json.dumps(_webhook("resolved")).encode()
    sig = "sha256=" + hmac.new(TOKEN.encode(), resolved, hashlib.sha256).hexdigest()
    r = c.post("/alerting/webhook", content=resolved, headers={**hdr, "x-shipwarden-signature": sig})
    assert r.status_code == 200 and r.json()["changed"] == 1
    bad_sig = {**hdr, "x-shipwarden-signature": sig}
    assert c.post("/alerting/webhook", content=body, headers=bad_sig).status_code == 401
    # outside the contract: precise, nothing stored
    v3 = {**_webhook(), "version": "3"}
    r = c.post("/alerting/webhook", content=json.dumps(v3), headers=ok)
    assert r.status_code == 400 and r.json()["detail"].startswith("version:")
    r = c.post("/alerting/webhook", content=b"{", headers=ok)
    assert r.status_code == 400
    bad_label = _webhook()
    bad_label["alerts"][0]["labels"] = {"1bad": "x"}  # type: ignore[index]
    r = c.post("/alerting/webhook", content=json.dumps(bad_label), headers=ok)
    assert r.status_code == 400 and "alerts.0.labels" in r.json()["detail"]
    # Prometheus posting straight to shipwarden
    prom = [
        {
            "labels": {"alertname": "Up", "service": "web", "severity": "warning"},
            "annotations": {},
            "startsAt": "2031-03-04T08:59:00Z",
            "endsAt": "2031-03-04T09:10:00Z",
        }
    ]
    r = c.post("/api/v2/alerts", content=json.dumps(prom), headers=ok)
    assert r.status_code == 200 and r.json() == {"alerts": 1, "changed": 1}
    rows = api.services.alerting.store.alerts()  # type: ignore[union-attr]
    assert sorted(st for _a, st in rows) == ["firing", "resolved"]
    refused = api.audit(action="alert.rejected")
    assert refused and all(e["outcome"] != "ok" or e["detail"]["status"] in (400, 401) for e in refused)


def test_silences_need_a_responder_and_good_input(api: Api) -> None:
    api.user("sre", "sre")
    api.user("viewer", "viewer")
    sre, viewer = api.session("sre"), api.session("viewer")
    good = {
        "matchers": ["service=web", "alertname=~Service.*"],
        "owner": "sre",
        "comment": "deploying",
        "duration_s": 3600,
    }
    assert viewer.post("/alerting/silences", json=good).status_code == 403
    r = sre.post("/alerting/silences", json=good)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert r.json()["state"] == "active" and r.json()["matchers"] == [
        "service='web'",
        "alertname=~'Service.*'",
    ]
    for bad, msg in [
        ({"matchers": ["service"]}, "is not a matcher"),
        ({"matchers": ["a=~.*"]}, "every alert"),
    ]:
        r = sre.post("/alerting/silences", json={**good, **bad})
        assert r.status_code == 400 and msg in r.json()["detail"]
    assert sre.post("/alerting/silences", json={**good, "duration_s": 10**9}).status_code == 422
    assert [s["id"] for s in viewer.get("/alerting/silences").json()] == [sid]
    assert viewer.delete(f"/alerting/silences/{sid}").status_code == 403
    assert sre.delete("/alerting/silences/nope").status_code == 404
    assert sre.delete(f"/alerting/silences/{sid}").json()["state"] == "expired"
    assert viewer.get("/alerting/silences").json() == []
    actions = [e["action"] for e in api.audit()]
    assert "alert.silence.add" in actions and "alert.silence.expire" in actions


def test_metrics_count_requests_and_alerts(api: Api) -> None:
    c = api.client()
    ok = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
    c.post("/alerting/webhook", content=json.dumps(_webhook()), headers=ok)
    c.get("/healthz")
    text = c.get("/metrics").text
    assert 'shipwarden_http_requests_total{method="POST",route="/alerting/webhook",status="200"} 1.0' in text
    assert 'shipwarden_alerts_received_total{source="alertmanager"} 1.0' in text
    assert "shipwarden_rollouts" in text and "shipwarden_audit_queue_depth" in text
    assert "shipwarden_http_request_duration_seconds_bucket" in text
