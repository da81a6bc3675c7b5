"""The incident routes through the real app: roles, scoped bindings, bad input, rollback from the incident."""

from __future__ import annotations

import pytest

from shipwarden.domain.audit import EntryDraft
from shipwarden.domain.incidents import verify_report
from shipwarden.domain.rollout import Phase, Transition
from tests.integration.http.conftest import Api

pytestmark = pytest.mark.integration


def _history(api: Api) -> str:
    store = api.services.store
    dep = None
    for frm, to in ((None, "v1"), ("v1", "v2")):
        dep = store.create_deployment(service="web", kind="deploy", strategy="blueGreen", from_version=frm,
                                      to_version=to, actor="alice", policy_digest="d" * 64,
                                      policy_source="p.yaml", plan={})  # fmt: skip
        for p in (Phase.STARTING, Phase.PREVIEW, Phase.PROMOTING, Phase.SUCCEEDED):
            api.clock.advance(seconds=20)
            dep = store.transition(dep, Transition(p, p.value), actor="controller")
    assert dep is not None
    return dep.id


def test_incident_routes(api: Api) -> None:
    bad = _history(api)
    api.clock.advance(seconds=90)
    api.user("sre", "sre")
    api.user("viewer", "viewer:web")
    api.user("dev", "developer:other")
    sre, viewer, dev = api.session("sre"), api.session("viewer"), api.session("dev")
    r = sre.post("/incidents", json={"title": "web 5xx", "service": "web", "severity": "sev1",
                                     "onset": api.clock().isoformat()})  # fmt: skip
    assert r.status_code == 201, r.text
    inc = r.json()
    iid = inc["id"]
    assert inc["status"] == "investigating" and inc["opened_by"] == "sre"
    # bad input: precise, nothing stored
    assert sre.post("/incidents", json={"title": "", "service": "web"}).status_code == 422
    assert sre.post("/incidents", json={"title": "x", "service": "nope"}).status_code == 404
    assert sre.post("/incidents", json={"title": "x", "onset": "2031-03-04T09:00:00"}).status_code == 422
    assert sre.post(f"/incidents/{iid}/status", json={"status": "fixed"}).status_code == 422
    assert sre.get("/incidents/inc-20310304-000000").status_code == 404
    # roles: a viewer scoped to web reads, cannot manage; another service's developer sees nothing
    assert viewer.get(f"/incidents/{iid}").status_code == 200
    assert viewer.post(f"/incidents/{iid}/ack").status_code == 403
    assert dev.get(f"/incidents/{iid}").status_code == 403
    assert viewer.get("/incidents", params={"service": "web"}).status_code == 200
    r = sre.get(f"/incidents/{iid}/suspects")
    assert r.json()["suspects"][0]["deployment_id"] == bad and not r.json()["no_change"]
    assert sre.post(f"/incidents/{iid}/ack").json()["acknowledged_at"]
    r = sre.post(f"/incidents/{iid}/status", json={"status": "identified", "note": "v2"})
    assert r.status_code == 200 and r.json()["status"] == "identified"
    r = sre.post(f"/incidents/{iid}/status", json={"status": "identified"})
    assert r.status_code == 409 and "already identified" in r.json()["detail"]
    # the rollback needs deployment.rollback on the suspect's service, and fresh MFA
    assert viewer.post(f"/incidents/{iid}/rollback").status_code == 403
    r = sre.post(f"/incidents/{iid}/rollback")
    assert r.status_code == 202, r.text
    assert r.json()["rolled_back"] == bad and r.json()["service"] == "web"
    active = api.services.store.active("web")
    assert active is not None and active.kind == "rollback" and active.actor == "sre"
    r = sre.post(f"/incidents/{iid}/action-items", json={"title": "gate on 5xx", "due": "2031-04-01"})
    assert r.status_code == 201 and r.json()["number"] == 1
    assert sre.post(f"/incidents/{iid}/action-items", json={"title": "x", "due": "soon"}).status_code == 422
    r = sre.post(f"/incidents/{iid}/action-items/1", json={"status": "done", "note": "PR 9"})
    assert r.json()["status"] == "done" and r.json()["closed_at"]
    assert sre.post(f"/incidents/{iid}/action-items/7", json={"status": "done"}).status_code == 404
    r = sre.post(f"/incidents/{iid}/notes", json={"section": "lessons", "text": "canary first"})
    assert r.status_code == 200
    doc = sre.get(f"/incidents/{iid}/report").json()
    chain = {e["seq"]: e["hash"] for e in api.audit()}
    assert doc["timeline"] and verify_report(doc, chain) == []
    assert doc["sections"]["lessons"] == "canary first"
    html = sre.get(f"/incidents/{iid}/report.html")
    assert html.status_code == 200 and "Post-incident report: web 5xx" in html.text
    assert "default-src 'none'" in html.headers["content-security-policy"]
    # every change was audited with the incident id
    acts = [e["action"] for e in api.audit(action_prefix="incident.") if e["detail"].get("incident") == iid]
    assert acts[:2] == ["incident.opened", "incident.acknowledged"] and "incident.rollback" in acts
    assert api.services.audit.verify().ok


def test_alert_sink_is_wired_with_the_audit_chain(api: Api) -> None:
    """What alerting will do: record the alert's change, then tell the sink."""
    from shipwarden.ports.incidents import AlertSignal

    assert api.services.incidents is not None
    repo = api.services.audit.repo
    draft = EntryDraft(actor="alerting", action="alert.firing", service="web", detail={"alertname": "X"})
    head = repo.append([draft], api.services.audit.chain)
    api.services.incidents.service.alert_changed(AlertSignal(
        fingerprint="f1", name="HighErrorRate", severity="critical", status="firing", starts_at=api.clock(),
        service="web", audit_seq=head.seq,
    ))  # fmt: skip
    [inc] = api.services.incidents.service.find()
    assert inc.alert_fingerprint == "f1" and inc.service == "web"
