"""MFA, IP allowlists and session lifetime through the real API (TestClient) with an injected clock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from shipwarden.entrypoints.http.deps import SESSION_COOKIE
from shipwarden.services.access.sessions import TOUCH_EVERY_S
from tests.integration.http.conftest import PASSWORD, Api, make_api

pytestmark = pytest.mark.integration
DEPLOY = ("/services/web/deployments", {"version": "v1"})
JUNIT = b'<testsuite name="unit" tests="1" failures="0"><testcase name="t" classname="c"/></testsuite>'



# -- MFA ---------------------------------------------------------------------------------------------
def test_mfa_wrong_reused_drifted_and_missing(api: Api) -> None:
    api.user("rm", "release-manager")
    c = api.session("rm", fresh_mfa=False)
    r = c.post(*DEPLOY[:1], json=DEPLOY[1])
    assert r.status_code == 403 and "MFA required" in r.json()["detail"]
    assert "POST /auth/mfa/verify" in r.json()["detail"]
    # wrong code
    wrong = f"{(int(api.code('rm')) + 1) % 1_000_000:06d}"
    r = c.post("/auth/mfa/verify", json={"code": wrong})
    assert r.status_code == 401 and "wrong code" in r.json()["detail"]
    # drifted two steps (60 s) → refused; one step → accepted
    r = c.post("/auth/mfa/verify", json={"code": api.code("rm", offset_steps=2)})
    assert r.status_code == 401 and "drift" in r.json()["detail"]
    old_cookie = c.cookies.get(SESSION_COOKIE)
    api.clock.advance(seconds=30)  # past the step used at enrolment
    used = api.code("rm", offset_steps=-1)
    r = c.post("/auth/mfa/verify", json={"code": used})
    assert r.status_code == 200
    assert c.cookies.get(SESSION_COOKIE) != old_cookie  # privilege change → new session id
    # the old id is dead
    stale = api.client()
    stale.cookies.set(SESSION_COOKIE, old_cookie)
    assert stale.get("/auth/me").status_code == 401
    # reused code (same step) → refused even from another session
    c2 = api.session("rm", fresh_mfa=False)
    r = c2.post("/auth/mfa/verify", json={"code": used})
    assert r.status_code == 401 and "already used" in r.json()["detail"]
    # the fresh session may deploy; after the MFA window it may not
    assert c.post(DEPLOY[0], json=DEPLOY[1]).status_code == 202
    api.clock.advance(minutes=10)
    assert c.get("/auth/me").status_code == 200  # activity keeps the session alive
    api.clock.advance(minutes=10)
    r = c.post("/services/web/abort")
    assert r.status_code == 403 and "MFA required" in r.json()["detail"]
    reasons = [e["detail"]["reason"] for e in api.audit(actor="rm", action="auth.mfa", outcome="denied")]
    assert reasons == ["invalid", "invalid", "replayed"]


def test_mfa_not_enrolled_and_recovery_codes(api: Api) -> None:
    api.user("sre1", "sre", mfa=False)
    c = api.session("sre1")
    r = c.post("/services/web/promote")
    assert r.status_code == 403 and "enrol a second factor" in r.json()["detail"]
    assert c.post("/auth/mfa/verify", json={"code": "123456"}).status_code == 422
    secret = c.post("/auth/mfa/enroll").json()["secret"]
    api.secrets["sre1"] = secret
    codes = c.post("/auth/mfa/confirm", json={"code": api.code("sre1")}).json()["recovery_codes"]
    assert len(codes) == 10
    c2 = api.session("sre1", fresh_mfa=False)
    r = c2.post("/auth/mfa/recover", json={"code": codes[0].upper()})
    assert r.status_code == 200 and r.json()["recovery_codes_left"] == 9
    c3 = api.session("sre1", fresh_mfa=False)
    r = c3.post("/auth/mfa/recover", json={"code": codes[0]})
    assert r.status_code == 401 and "unused recovery code" in r.json()["detail"]
    # replacing an active factor needs fresh MFA
    assert c3.post("/auth/mfa/enroll").status_code == 403


# -- IP allowlist --------------------------------------------------------------------------------------
def test_user_allowlist_and_trusted_proxy_xff(api: Api) -> None:
    api.user("ops", "viewer", mfa=False, cidrs=("10.1.0.0/16",))
    assert api.login(api.client("127.0.0.1"), "ops") == 403
    assert api.login(api.client("10.1.2.3"), "ops") == 200
    # through a trusted proxy (10.99.0.0/16): the client is the right-most untrusted XFF hop
    proxied = api.client("10.99.0.5")
    proxied.headers["X-Forwarded-For"] = "6.6.6.6, 10.1.2.3"
    assert api.login(proxied, "ops") == 200
    assert proxied.get("/deployments").status_code == 200
    # the same header from an untrusted peer is ignored: judged by the socket address
    spoof = api.client("192.0.2.7")
    spoof.headers["X-Forwarded-For"] = "10.1.2.3"
    assert api.login(spoof, "ops") == 403
    denied = api.audit(actor="ops", action="auth.login", outcome="denied")[-1]
    assert denied["detail"]["ip"] == "192.0.2.7"
    # a session opened inside the allowlist is refused outside it (cookie carried elsewhere)
    inside = api.client("10.1.2.3")
    api.login(inside, "ops")
    moved = api.client("192.0.2.7")
    moved.cookies.set(SESSION_COOKIE, inside.cookies.get(SESSION_COOKIE))
    r = moved.get("/deployments")
    assert r.status_code == 403 and "192.0.2.7" in r.json()["detail"]
    # a malformed hop written by a trusted proxy is refused, not guessed
    bad = api.client("10.99.0.5")
    bad.headers["X-Forwarded-For"] = "not-an-ip"
    assert bad.get("/healthz").status_code == 200
    assert bad.get("/auth/me").status_code == 400


def test_role_and_token_allowlists(tmp_path: Path) -> None:
    api = make_api(tmp_path, role_cidrs={"admin": ["10.7.0.0/16"]})
    api.user("boss", "admin", "viewer", mfa=False)
    c = api.session("boss", ip="127.0.0.1")
    assert c.get("/deployments").status_code == 200  # viewer binding applies anywhere
    r = c.get("/users")
    assert r.status_code == 403 and "from this address" in r.json()["detail"]
    assert api.session("boss", ip="10.7.0.9").get("/users").status_code == 403  # MFA still required
    tok, _ = api.services.access.issue_token(
        "setup", "boss", "ci", ["deployment.read"], timedelta(days=1), cidrs=["10.8.0.0/24"]
    )
    h = {"Authorization": f"Bearer {tok}"}
    assert api.client("10.8.0.1").get("/deployments", headers=h).status_code == 200
    assert api.client("127.0.0.1").get("/deployments", headers=h).status_code == 403


def test_a_token_allowlist_only_narrows_its_owners(tmp_path: Path) -> None:
    """Class 6: the effective allowlist is user ∩ role ∩ token — a token's own list never widens."""
    api = make_api(tmp_path, trusted_proxies=["10.99.0.0/16"], role_cidrs={"developer": ["10.1.0.0/16"]})
    access = api.services.access
    api.user("lim", "viewer", "developer", mfa=False, cidrs=("10.0.0.0/8",))
    api.user("root", "admin")
    assert api.login(api.client("127.0.0.1"), "lim") == 403

    def bearer(cidrs: list[str], scopes: tuple[str, ...] = ("deployment.read",)) -> dict[str, str]:
        tok, _ = access.issue_token("setup", "lim", "ci", list(scopes), timedelta(days=1), cidrs=cidrs)
        return {"Authorization": f"Bearer {tok}"}

    # a token minted while its owner had no list is held to the list the owner has *now*
    access.set_cidrs("setup", "lim", [])
    h = bearer(["127.0.0.0/8"])
    r = api.client("127.0.0.1").get("/deployments", headers=h)
    assert r.status_code == 200
    access.set_cidrs("setup", "lim", ["10.0.0.0/8"])
    r = api.client("127.0.0.1").get("/deployments", headers=h)
    assert r.status_code == 403 and "do not overlap" in r.json()["detail"], r.text
    assert api.client("10.1.2.3").get("/deployments", headers=h).status_code == 403  # nowhere at all
    denied = api.audit(actor="lim", action="access", outcome="denied")[-1]
    assert denied["detail"]["ip"] == "10.1.2.3" and "do not overlap" in denied["detail"]["reason"]
    # minting a token whose list reaches outside its owner's is refused, with what and why
    admin = api.session("root")
    r = admin.post(
        "/tokens",
        json={"owner": "lim", "name": "ci", "scopes": ["deployment.read"], "cidrs": ["127.0.0.0/8"]},
    )
    assert r.status_code == 422, r.text
    assert "can only narrow" in r.json()["detail"] and "127.0.0.0/8" in r.json()["detail"]
    assert len(access.tokens("lim")) == 1  # only the one above
    # a narrower token: only inside both lists, also through a trusted proxy
    h = bearer(["10.1.2.0/24", "10.5.0.0/16"])
    assert api.client("10.1.2.3").get("/deployments", headers=h).status_code == 200
    assert api.client("10.5.0.1").get("/deployments", headers=h).status_code == 200
    assert api.client("10.6.0.1").get("/deployments", headers=h).status_code == 403  # the user's only
    proxied = api.client("10.99.0.5")
    proxied.headers["X-Forwarded-For"] = "127.0.0.1"
    assert proxied.get("/deployments", headers=h).status_code == 403
    # a token without a list of its own is held to its owner's
    h = bearer([])
    assert api.client("10.200.0.1").get("/deployments", headers=h).status_code == 200
    assert api.client("127.0.0.1").get("/deployments", headers=h).status_code == 403
    assert api.client("::1").get("/deployments", headers=h).status_code == 403
    # user ∩ role ∩ token: developer is limited to 10.1.0.0/16, the token to 10.1.2.0/24 ∪ 10.5.0.0/16
    h = bearer(["10.1.2.0/24", "10.5.0.0/16"], ("deployment.read", "evidence.write"))
    up = {"commit": "ab" * 20, "kind": "junit", "category": "unit"}
    assert api.client("10.5.0.1").post("/evidence", params=up, headers=h).status_code == 403  # not the role's
    r = api.client("10.1.2.3").post("/evidence", params=up, headers=h, content=JUNIT)
    assert r.status_code == 201, r.text
    assert api.client("10.5.0.1").get("/deployments", headers=h).status_code == 200  # viewer: no role list


# -- sessions -------------------------------------------------------------------------------------------
def test_idle_and_absolute_expiry(api: Api) -> None:
    api.user("v", "viewer", mfa=False)
    c = api.session("v")
    api.clock.advance(minutes=14)
    assert c.get("/auth/me").status_code == 200
    api.clock.advance(minutes=15, seconds=1)
    r = c.get("/auth/me")
    assert r.status_code == 401 and "without activity" in r.json()["detail"]
    api.clock.advance(minutes=-30)  # expiry is recorded server-side: going back does not revive it
    assert c.get("/auth/me").status_code == 401
    api.clock.advance(minutes=30)
    c = api.session("v")
    start = api.clock()
    for _ in range(40):  # active all day, every 14 min
        api.clock.advance(minutes=14)
        r = c.get("/auth/me")
        if r.status_code != 200:
            break
    assert api.clock() - start >= timedelta(hours=8)
    assert r.status_code == 401 and "older than 8:00:00" in r.json()["detail"]


def test_a_session_in_use_is_not_written_on_every_request_and_idles_from_the_last_write(api: Api) -> None:
    api.user("v", "viewer", mfa=False)
    c = api.session("v")
    writes = [0]

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE SESSIONS"):
            writes[0] += 1

    event.listen(api.services.store.engine, "before_cursor_execute", count)
    for _ in range(5):  # within TOUCH_EVERY_S of the login: last_seen_at is recent enough as it is
        api.clock.advance(seconds=1)
        assert c.get("/auth/me").status_code == 200
    assert writes[0] == 0
    api.clock.advance(seconds=TOUCH_EVERY_S)
    assert c.get("/auth/me").status_code == 200
    assert writes[0] == 1  # old enough: written
    last_write = api.clock()
    api.clock.advance(seconds=1)
    assert c.get("/auth/me").status_code == 200  # not written: idleness counts from last_write
    api.clock.now = last_write + timedelta(minutes=15)
    r = c.get("/auth/me")
    assert r.status_code == 401 and "without activity" in r.json()["detail"]
    event.remove(api.services.store.engine, "before_cursor_execute", count)


def test_logout_revocation_concurrency_and_rotation(api: Api) -> None:
    api.user("w", "viewer", mfa=False)
    api.user("root", "admin")
    a, b = api.session("w"), api.session("w")
    assert a.cookies.get(SESSION_COOKIE) != b.cookies.get(SESSION_COOKIE)  # a new id at every login
    cookie = a.cookies.get(SESSION_COOKIE)
    assert a.post("/auth/logout").status_code == 204
    replay = api.client()
    replay.cookies.set(SESSION_COOKIE, cookie)
    r = replay.get("/auth/me")
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    # a user ends one of their own sessions by handle
    c = api.session("w")
    handles = [s["handle"] for s in c.get("/auth/sessions").json() if not s["current"]]
    assert len(handles) == 1
    assert c.delete(f"/auth/sessions/{handles[0]}").status_code == 204
    assert b.get("/auth/me").status_code == 401
    # the concurrent limit (3) evicts the least recently used
    s1 = api.session("w")
    api.clock.advance(seconds=1)
    s2, s3 = api.session("w"), api.session("w")
    assert c.get("/auth/me").status_code == 401  # c was the least recently used of four
    assert all(x.get("/auth/me").status_code == 200 for x in (s1, s2, s3))
    # an administrator ends them all
    root = api.session("root")
    assert root.post("/users/w/sessions/revoke").json() == {"revoked": 3}
    assert all(x.get("/auth/me").status_code == 401 for x in (s1, s2, s3))


def test_lockout_after_repeated_failures(api: Api) -> None:
    api.user("x", "viewer", mfa=False)
    c = api.client()
    for _ in range(5):
        assert api.login(c, "x", "wrong password!") == 401
    r = c.post("/auth/login", json={"user": "x", "password": PASSWORD})
    assert r.status_code == 423 and "too many failed attempts for account 'x'" in r.json()["detail"]
    assert int(r.headers["retry-after"]) == 30
    assert api.audit(actor="x", action="auth.login", outcome="locked")
    api.clock.advance(seconds=31)
    assert api.login(c, "x") == 200  # back-off over; success clears the account's failures
    for _ in range(5):
        api.login(c, "x", "nope nope nope")
    api.clock.advance(seconds=31)
    api.login(c, "x", "nope nope nope")  # sixth failure: the wait doubles
    r = c.post("/auth/login", json={"user": "x", "password": PASSWORD})
    assert r.status_code == 423 and int(r.headers["retry-after"]) == 60


def test_address_throttle_across_accounts(api: Api) -> None:
    c = api.client("198.51.100.9")
    for i in range(20):
        assert api.login(c, f"ghost{i}", "whatever it is") == 401
    r = c.post("/auth/login", json={"user": "someone", "password": "x" * 12})
    assert r.status_code == 429 and "198.51.100.9" in r.json()["detail"]
    other = api.client("198.51.100.10")  # another address is not throttled
    assert api.login(other, "ghost1", "whatever it is") == 401


def test_cross_site_requests_with_the_session_cookie_are_refused_and_audited(api: Api) -> None:
    api.user("rm", "release-manager")
    c = api.session("rm")
    evil = c.post("/services/web/abort", headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and "cross-site request refused" in evil.json()["detail"]
    denied = [e for e in api.audit(action="access") if "cross-site" in str(e["detail"].get("reason", ""))]
    assert denied and denied[-1]["outcome"] == "denied"
    # the same request from the service's own origin is judged on its merits (no such deployment)
    own = c.post("/services/web/abort", headers={"Origin": "http://testserver"})
    assert own.status_code != 403 or "cross-site" not in own.text
    # reads are never refused for their origin
    assert c.get("/deployments", headers={"Origin": "https://evil.example"}).status_code == 200
