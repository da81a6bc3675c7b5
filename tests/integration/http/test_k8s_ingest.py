"""Kubernetes audit webhook batches (audit.k8s.io/v1 EventList) through the API into the central chain."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shipwarden.security.audit_export import verify_export
from tests.integration.http.conftest import Api

pytestmark = pytest.mark.integration


def event_list(n: int = 8) -> dict[str, Any]:
    """A batch as the apiserver's webhook backend posts it: several stages of the same request,
    a forbidden request, a watch, a non-resource URL, a patch with a request body (dropped on ingest)."""
    base = {"apiVersion": "audit.k8s.io/v1", "kind": "Event", "level": "Metadata"}
    user = {
        "username": "system:serviceaccount:shop:deployer",
        "uid": "2c1b",
        "groups": ["system:serviceaccounts"],
    }
    events = [
        {
            **base,
            "auditID": "a1",
            "stage": "RequestReceived",
            "verb": "patch",
            "requestURI": "/apis/apps/v1/namespaces/shop/deployments/web",
            "user": user,
            "sourceIPs": ["10.0.3.7"],
            "userAgent": "kubectl/v1.31.2",
            "objectRef": {
                "resource": "deployments",
                "namespace": "shop",
                "name": "web",
                "apiGroup": "apps",
                "apiVersion": "v1",
            },
            "requestReceivedTimestamp": "2031-03-04T09:00:00.100000Z",
            "stageTimestamp": "2031-03-04T09:00:00.100000Z",
        },
        {
            **base,
            "level": "Request",
            "auditID": "a1",
            "stage": "ResponseComplete",
            "verb": "patch",
            "requestURI": "/apis/apps/v1/namespaces/shop/deployments/web",
            "user": user,
            "sourceIPs": ["10.0.3.7"],
            "objectRef": {
                "resource": "deployments",
                "namespace": "shop",
                "name": "web",
                "apiGroup": "apps",
                "apiVersion": "v1",
            },
            "requestObject": [{"op": "replace", "path": "/spec/replicas", "value": 3}],
            "responseStatus": {"metadata": {}, "code": 200},
            "annotations": {"authorization.k8s.io/decision": "allow"},
            "requestReceivedTimestamp": "2031-03-04T09:00:00.100000Z",
            "stageTimestamp": "2031-03-04T09:00:00.131200Z",
        },
        {
            **base,
            "auditID": "b2",
            "stage": "ResponseComplete",
            "verb": "get",
            "requestURI": "/api/v1/namespaces/shop/secrets/db-password",
            "user": {"username": "eve@example.com"},
            "sourceIPs": ["203.0.113.9"],
            "objectRef": {
                "resource": "secrets",
                "namespace": "shop",
                "name": "db-password",
                "apiVersion": "v1",
            },
            "responseStatus": {"metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403},
            "stageTimestamp": "2031-03-04T09:00:01.000000Z",
        },
        {
            **base,
            "auditID": "c3",
            "stage": "ResponseStarted",
            "verb": "watch",
            "requestURI": "/api/v1/namespaces/shop/pods?watch=true",
            "user": user,
            "sourceIPs": ["10.0.3.7"],
            "objectRef": {"resource": "pods", "namespace": "shop", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 200},
            "stageTimestamp": "2031-03-04T09:00:02.000000Z",
        },
        {
            **base,
            "auditID": "d4",
            "stage": "ResponseComplete",
            "verb": "get",
            "requestURI": "/healthz",
            "user": {"username": "system:anonymous", "groups": ["system:unauthenticated"]},
            "sourceIPs": ["10.0.0.1"],
            "responseStatus": {"metadata": {}, "code": 200},
            "stageTimestamp": "2031-03-04T09:00:03.000000Z",
        },
    ]
    while len(events) < n:
        i = len(events)
        events.append(
            {
                **base,
                "auditID": f"e{i}",
                "stage": "ResponseComplete",
                "verb": "list",
                "requestURI": "/api/v1/namespaces/shop/pods",
                "user": user,
                "sourceIPs": ["10.0.3.7"],
                "objectRef": {"resource": "pods", "namespace": "shop", "apiVersion": "v1"},
                "responseStatus": {"metadata": {}, "code": 200},
                "stageTimestamp": f"2031-03-04T09:00:{4 + i:02d}.000000Z",
            }
        )
    return {"apiVersion": "audit.k8s.io/v1", "kind": "EventList", "metadata": {}, "items": events[:n]}


def test_ingest_is_authenticated_chained_and_queryable(api: Api) -> None:
    api.user("root", "admin")
    api.services.access.create_user("setup", "kube-apiserver", None, [])
    root = api.session("root")
    r = root.post(
        "/tokens", json={"owner": "kube-apiserver", "name": "audit webhook", "scopes": ["k8s_audit.write"]}
    )
    assert r.status_code == 422  # the service account holds no role granting it yet
    root.put("/users/kube-apiserver/roles", json={"roles": ["admin"]})
    tok = root.post(
        "/tokens",
        json={
            "owner": "kube-apiserver",
            "name": "audit webhook",
            "scopes": ["k8s_audit.write"],
            "ttl_days": 365,
        },
    ).json()["token"]
    h = {"Authorization": f"Bearer {tok}"}
    hook = api.client("10.0.0.2")
    assert hook.post("/k8s/audit", json=event_list()).status_code == 401  # no token
    r = hook.post("/k8s/audit", json=event_list(), headers=h)
    assert r.status_code == 200 and r.json() == {"accepted": 8, "rejected": 0, "problems": []}
    # the token is good for nothing else
    assert hook.get("/audit", headers=h).status_code == 403

    # bad events are recorded as rejected, with where and why; the good one in the batch is kept
    before = api.services.store.count_audit()
    bad = event_list(3)
    del bad["items"][1]["verb"]
    bad["items"][2]["stage"] = "Done"
    r = hook.post("/k8s/audit", json=bad, headers=h)
    assert r.status_code == 200
    assert (r.json()["accepted"], r.json()["rejected"]) == (1, 2)
    paths = [p["path"] for p in r.json()["problems"]]
    assert paths == ["items[1].verb", "items[2].stage"]
    # a body that is neither an EventList nor JSON lines stores nothing
    r = hook.post("/k8s/audit", content=b"{not json", headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 400
    # two access decisions, one stored event and two rejection entries
    assert api.services.store.count_audit() == before + 5
    assert len(api.audit(source="kubernetes")) == 11
    rejected = api.audit(action="k8s.audit.rejected")
    assert [e["detail"]["where"] for e in rejected] == ["items[1]", "items[2]"]
    assert rejected[0]["detail"]["problems"] == ["items[1].verb: required non-empty string (missing)"]

    # queryable beside shipwarden's own events, in one chain
    api.clock.advance(minutes=1)
    root = api.session("root")
    k8s = root.get("/audit", params={"source": "kubernetes"}).json()
    assert [e["detail"]["auditID"] for e in k8s[:2]] == ["a1", "a1"]  # one request, two stages
    assert k8s[0]["outcome"] == "pending" and k8s[1]["outcome"] == "ok"
    assert k8s[1]["action"] == "patch deployments" and k8s[1]["actor"].startswith("system:serviceaccount")
    assert "requestObject" not in k8s[1]["detail"]  # bodies never enter the chain
    eve = root.get("/audit", params={"actor": "eve@example.com"}).json()
    assert [e["action"] for e in eve] == ["get secrets", "k8s.audit.rejected"]  # her event, then the bad copy
    eve = eve[:1]
    assert len(eve) == 1 and eve[0]["outcome"] == "denied" and eve[0]["action"] == "get secrets"
    everything = root.get("/audit", params={"since": "2031-03-04T09:00:00Z", "limit": 10000}).json()
    assert {e["source"] for e in everything} == {"shipwarden", "kubernetes"}
    assert [e["seq"] for e in everything] == sorted(e["seq"] for e in everything)
    page = root.get("/audit", params={"after_seq": k8s[0]["seq"], "limit": 1}).json()
    assert page[0]["seq"] == k8s[0]["seq"] + 1
    v = root.get("/audit/verify").json()
    assert v["ok"] and v["entries_checked"] == api.services.store.count_audit()
    assert root.post("/audit/checkpoints").status_code == 201
    assert root.get("/audit/verify").json()["checkpoints_checked"] == 1
    export = root.get("/audit/export", params={"source": "kubernetes"})
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = export.text.splitlines()
    assert len(lines) == 11 + 1  # the entries, then the signed manifest
    assert verify_export(export.content, api.services.signing_public_pem).entries == 11


def test_long_request_uri_and_user_name_are_stored_bounded_and_whole_in_the_detail(api: Api) -> None:
    """A non-resource URL of kilobytes and a service account's 339-character user name: accepted,
    the actor/action columns hold a bounded form ending in "…", the detail and the hashed
    canonical text keep the whole values, and the chain verifies."""
    api.user("root", "admin")
    api.services.access.create_user("setup", "kube-apiserver", None, [])
    root = api.session("root")
    root.put("/users/kube-apiserver/roles", json={"roles": ["admin"]})
    tok = root.post(
        "/tokens", json={"owner": "kube-apiserver", "name": "audit webhook", "scopes": ["k8s_audit.write"]}
    ).json()["token"]
    path = "/api/v1/namespaces/shop/services/web:8080/proxy/" + "a/" * 4000
    user = "system:serviceaccount:" + "n" * 63 + ":" + "s" * 253
    batch = event_list(2)
    batch["items"][0].update(requestURI=path + "?x=1", user={"username": user}, objectRef=None)
    batch["items"][1].update(requestURI=path, verb="get", objectRef=None)
    r = api.client("10.0.0.2").post("/k8s/audit", json=batch, headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200 and r.json()["accepted"] == 2

    first, second = root.get("/audit", params={"source": "kubernetes"}).json()
    assert len(first["actor"]) == 256 and first["actor"].endswith("…") and first["detail"]["actor"] == user
    assert len(first["action"]) == 256 and first["action"].startswith("patch /api/v1/namespaces/shop/")
    assert first["detail"]["action"] == "patch " + path and first["detail"]["requestURI"] == path + "?x=1"
    assert second["actor"] == "system:serviceaccount:shop:deployer" and "actor" not in second["detail"]
    assert second["action"].endswith("…") and second["detail"]["action"] == "get " + path
    export = root.get("/audit/export", params={"source": "kubernetes"}).text.splitlines()
    assert user in json.loads(export[0])["canonical"] and path in json.loads(export[1])["canonical"]
    v = root.get("/audit/verify").json()
    assert v["ok"] and v["entries_checked"] == api.services.store.count_audit()


def _hook(api: Api) -> tuple[Any, dict[str, str]]:
    api.user("root", "admin")
    api.services.access.create_user("setup", "kube-apiserver", None, [])
    root = api.session("root")
    root.put("/users/kube-apiserver/roles", json={"roles": ["admin"]})
    tok = root.post(
        "/tokens", json={"owner": "kube-apiserver", "name": "audit webhook", "scopes": ["k8s_audit.write"]}
    ).json()["token"]
    return api.client("10.0.0.2"), {"Authorization": f"Bearer {tok}"}


# A 401 event as kube-apiserver writes it (a real cluster's audit log line, quoted in a public
# design document about console OIDC): the request's credentials were refused, so "user" is {}.
UNAUTHORIZED_401 = (
    '{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata",'
    '"auditID":"c771f01d-5995-40e4-9259-879773112159","stage":"ResponseStarted",'
    '"requestURI":"/apis/authorization.k8s.io/v1/selfsubjectaccessreviews","verb":"create","user":{},'
    '"sourceIPs":["10.0.152.130"],"objectRef":{"resource":"selfsubjectaccessreviews",'
    '"apiGroup":"authorization.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},'
    '"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401},'
    '"requestReceivedTimestamp":"2023-05-16T10:27:28.826058Z","stageTimestamp":"2023-05-16T10:27:28.837875Z"}'
)


def test_one_bad_event_does_not_lose_the_batch(api: Api) -> None:
    """Issue 11 (D6): a 401 event with "user": {} used to make the whole batch a 400; the apiserver
    retried and then dropped it.  Now the good events and the 401 are stored, a truly bad event
    is recorded as rejected with why, and the answer is 200."""
    hook, h = _hook(api)
    batch = event_list(4)
    batch["items"].insert(1, json.loads(UNAUTHORIZED_401))
    del batch["items"][3]["requestURI"]
    r = hook.post("/k8s/audit", json=batch, headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()["accepted"], r.json()["rejected"]) == (4, 1)
    assert r.json()["problems"] == [
        {"path": "items[3].requestURI", "message": "required non-empty string (missing)"}
    ]
    stored = api.audit(source="kubernetes")
    assert len(stored) == 5
    denied = [e for e in stored if e["actor"] == "(unauthenticated)"]
    assert len(denied) == 1 and denied[0]["outcome"] == "denied"
    assert denied[0]["action"] == "create selfsubjectaccessreviews"
    (rej,) = api.audit(action="k8s.audit.rejected")
    assert rej["detail"]["where"] == "items[3]" and rej["outcome"] == "failed"


def test_log_backend_json_lines_are_accepted(api: Api) -> None:
    hook, h = _hook(api)
    events = event_list(3)["items"]
    lines = [json.dumps({**e, "kind": "Event", "apiVersion": "audit.k8s.io/v1"}) for e in events]
    body = "\n".join([*lines, UNAUTHORIZED_401, "{truncated", ""]) + "\n"
    r = hook.post("/k8s/audit", content=body.encode(), headers={**h, "Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    assert (r.json()["accepted"], r.json()["rejected"]) == (4, 1)
    assert r.json()["problems"][0]["path"] == "line 5"
    assert len(api.audit(source="kubernetes")) == 5
    assert api.services.audit.verify().ok
