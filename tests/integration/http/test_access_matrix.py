"""Every route in the published OpenAPI × every role (and anonymous) against the permission matrix."""

from __future__ import annotations

import re

import pytest

from shipwarden.domain.access import MATRIX, Permission, Role
from tests.integration.http.conftest import Api

pytestmark = pytest.mark.integration

# Routes whose success changes the caller's own session go last, logout very last.
LAST = ("/auth/mfa/enroll", "/auth/logout")


def _routes(api: Api) -> list[tuple[str, str, dict[str, object]]]:
    doc = api.client().get("/openapi.json").json()
    out = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            out.append((method.upper(), path, op["x-shipwarden-access"]))
    return sorted(out, key=lambda r: (r[1] in LAST, LAST.index(r[1]) if r[1] in LAST else 0))


def _fill(path: str, dep_id: str) -> str:
    values = {
        "service": "web",
        "deployment_id": dep_id,
        "name": "nobody",
        "token_id": "0" * 12,
        "handle": "deadbeefdead",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "unknown-0"), path)


def test_every_route_declares_its_access_rule(api: Api) -> None:
    routes = _routes(api)
    assert len(routes) >= 30
    public = {(m, p) for m, p, rule in routes if rule["authentication"] == "none"}
    # CI webhooks authenticate by provider signature (routes/webhooks.py), the alert receivers by
    # the senders' shared secret (routes/alerting.py), not by token or session.
    receivers = {"/alerting/webhook", "/api/v2/alerts"}
    public = {(m, p) for m, p in public if not p.startswith("/webhooks/") and p not in receivers}
    # A page's acknowledge/resolve link authenticates by its HMAC, expiry and nonce (routes/oncall.py).
    public -= {("GET", "/oncall/links/{token}"), ("POST", "/oncall/links/{token}")}
    # A person's calendar feed authenticates by the revocable token in its URL (calendar apps send
    # no header); an unknown or revoked token is a 404, audited (routes/oncall.py).
    public -= {("GET", "/oncall/feeds/{token}.ics")}
    expected = {("POST", "/auth/login"), ("GET", "/healthz"), ("GET", "/metrics")}
    assert public == expected, "a route lost its require()"


def test_matrix_walk(api: Api) -> None:
    dep = api.services.rollout.start("web", "v1", actor="setup")
    for role in Role:
        api.user(f"u-{role.value}", role.value)
    sessions = {role: api.session(f"u-{role.value}") for role in Role}
    anonymous = api.client()
    checked = 0
    for method, template, rule in _routes(api):
        if rule["authentication"] == "none":
            continue
        path = _fill(template, dep.id)
        r = anonymous.request(method, path, json={})
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.headers.get("www-authenticate") == "Bearer"
        perm = Permission(rule["permission"]) if rule.get("permission") else None
        for role, client in sessions.items():
            r = client.request(method, path, json={})
            user = f"u-{role.value}"
            allowed = perm is None or perm in MATRIX[role]
            if allowed:
                assert r.status_code not in (401, 403), (role, method, path, r.status_code, r.text)
            else:
                assert r.status_code == 403, (role, method, path, r.status_code, r.text)
                assert perm.value in r.json()["detail"]
                last = api.audit(actor=user, action="access")[-1]
                assert last["outcome"] == "denied" and last["detail"]["path"] == path
                assert last["detail"]["permission"] == perm.value
            checked += 1
    assert checked >= 30 * len(Role)
    denied = api.audit(action="access", outcome="denied")
    assert any(e["actor"] == "anonymous" for e in denied)
    assert api.services.audit.verify().ok


def test_scoped_binding_and_token_scopes(api: Api) -> None:
    api.user("dev", "developer:web")
    c = api.session("dev")
    assert c.get("/deployments", params={"service": "web"}).status_code == 200
    assert c.get("/deployments", params={"service": "other"}).status_code == 403
    assert c.get("/deployments").status_code == 403  # a scoped role must name its service
    assert c.post("/services/web/deployments", json={"version": "v1"}).status_code == 202
    r = c.post("/services/other/deployments", json={"version": "v1"})
    assert r.status_code == 403 and "on service 'other'" in r.json()["detail"]
    # tokens: scope ∩ owner's roles
    api.user("root", "admin")
    admin = api.session("root")
    r = admin.post("/tokens", json={"owner": "dev", "name": "ci", "scopes": ["deployment.promote"]})
    assert r.status_code == 422 and "holds no role granting deployment.promote" in r.json()["detail"]
    r = admin.post(
        "/tokens", json={"owner": "dev", "name": "ci", "scopes": ["deployment.read"], "services": ["web"]}
    )
    assert r.status_code == 201
    tok = {"Authorization": f"Bearer {r.json()['token']}"}
    anon = api.client()
    assert anon.get("/deployments", params={"service": "web"}, headers=tok).status_code == 200
    assert anon.post("/services/web/deployments", json={"version": "v2"}, headers=tok).status_code == 403
    # revoked and expired tokens are refused with the reason
    assert admin.delete(f"/tokens/{r.json()['id']}").status_code == 204
    r2 = anon.get("/deployments", params={"service": "web"}, headers=tok)
    assert r2.status_code == 401 and "revoked" in r2.json()["detail"]
    short = admin.post(
        "/tokens", json={"owner": "dev", "name": "x", "scopes": ["deployment.read"], "ttl_days": 1}
    ).json()["token"]
    api.clock.advance(days=2)
    r3 = anon.get("/deployments", params={"service": "web"}, headers={"Authorization": f"Bearer {short}"})
    assert r3.status_code == 401 and "expired" in r3.json()["detail"]
    assert anon.get("/deployments", headers={"Authorization": "Basic eDp5"}).status_code == 401
