"""The on-call API: who, calendar feeds, escalations, and the signed link in a page (public,
HMAC, single-use, audited)."""

from __future__ import annotations

from pathlib import Path

import pytest
from icalendar import Calendar

from shipwarden.bootstrap import build_service, load_policy
from shipwarden.settings import Settings
from tests.integration.http.conftest import Api, Clock
from tests.integration.oncall.conftest import policy_text


@pytest.fixture
def api(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "p.yaml").write_text(policy_text())
    s = Settings(
        state_dir=tmp_path / "state",
        policy=tmp_path / "p.yaml",
        cookie_secure=False,
        public_url="http://sw.test",
    )
    clock = Clock()
    a = Api(build_service(s, load_policy(s.policy), clock=clock), clock, tmp_path)
    a.services.run_engines = False
    yield a
    a.services.store.engine.dispose()


def test_oncall_routes_and_signed_links(api: Api) -> None:
    api.user("sam", "sre", mfa=False)
    api.user("vic", "viewer", mfa=False)
    sre, viewer, anon = api.session("sam"), api.session("vic"), api.client()
    r = viewer.get("/oncall/who", params={"at": "2026-12-07T08:00:00Z"})
    assert r.status_code == 200 and r.json()["schedules"]["primary"] == {"person": "bob", "layer": "weekly"}
    assert anon.get("/oncall/who").status_code == 401
    assert viewer.get("/oncall/who", params={"at": "2026-12-07T08:00:00"}).status_code == 422  # no zone
    feed = viewer.get("/oncall/primary.ics")
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
    assert list(Calendar.from_ical(feed.content).walk("VEVENT"))
    assert viewer.get("/oncall/people/carol.ics").status_code == 200  # in no schedule: an empty feed
    assert viewer.get("/oncall/nope.ics").status_code == 404

    assert viewer.post("/escalations", json={"title": "disk full", "service": "hello"}).status_code == 403
    r = sre.post("/escalations", json={"title": "disk full", "service": "hello"})
    assert r.status_code == 201, r.text
    esc = r.json()["id"]
    engine = api.services.oncall.engine  # type: ignore[union-attr]
    engine.tick()  # level 1 pages whoever is on call, with links signed for them
    now = api.clock().timestamp()
    token = engine.links.url(esc, "ack", "alice", now).rsplit("/", 1)[1]  # type: ignore[union-attr]

    page = anon.get(f"/oncall/links/{token}")  # a mail scanner fetching it changes nothing
    assert (
        page.status_code == 200
        and "<form method='post'>" in page.text
        and "Acknowledge as alice" in page.text
    )
    assert sre.get(f"/escalations/{esc}").json()["status"] == "triggered"
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert anon.post(f"/oncall/links/{forged}").status_code == 422
    done = anon.post(f"/oncall/links/{token}")
    assert done.status_code == 200 and "acknowledged by alice" in done.text
    assert anon.post(f"/oncall/links/{token}").status_code == 409  # once
    doc = sre.get(f"/escalations/{esc}").json()
    assert doc["status"] == "acknowledged" and doc["acknowledged_by"] == "alice (link)"
    assert doc["pages"] and doc["pages"][0]["to"] == "alice@example.com"
    refused = api.audit(action="oncall.link.refused")
    assert len(refused) == 2 and "signature" in str(refused[0]["detail"])
    acks = api.audit(action="escalation.acknowledged")
    assert [a["detail"]["via"] for a in acks] == ["link"]  # type: ignore[index]

    assert viewer.post(f"/escalations/{esc}/resolve").status_code == 403
    r = sre.post(f"/escalations/{esc}/resolve")
    assert r.status_code == 200 and r.json()["resolved_by"] == "sam"
    assert sre.post(f"/escalations/{esc}/resolve").status_code == 409
    assert sre.post("/escalations/esc-000000000000/ack").status_code == 404


def test_who_refuses_instants_out_of_range(api: Api) -> None:
    api.user("vic", "viewer", mfa=False)
    viewer = api.session("vic")
    for at in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"):
        r = viewer.get("/oncall/who", params={"at": at})
        assert r.status_code == 422, r.text


def test_acknowledging_the_page_acknowledges_the_services_incident(api: Api) -> None:
    api.user("sam", "sre", mfa=False)
    sre, anon = api.session("sam"), api.client()
    r = sre.post("/incidents", json={"title": "hello 5xx", "service": "hello", "severity": "sev1"})
    assert r.status_code == 201, r.text
    inc = r.json()
    on_call = sre.get("/oncall/who").json()["schedules"]["primary"]["person"]
    assert inc["commander"] == on_call  # whoever the service's first level pages now
    esc = sre.post("/escalations", json={"title": "hello 5xx", "service": "hello"}).json()["id"]
    engine = api.services.oncall.engine  # type: ignore[union-attr]
    token = engine.links.url(esc, "ack", on_call, api.clock().timestamp()).rsplit("/", 1)[1]  # type: ignore[union-attr]
    assert anon.post(f"/oncall/links/{token}").status_code == 200
    after = sre.get(f"/incidents/{inc['id']}").json()
    assert after["acknowledged_at"] is not None
    acks = api.audit(action="incident.acknowledged")
    assert [a["actor"] for a in acks] == [f"{on_call} (link)"]


def test_a_calendar_app_reads_a_persons_feed_by_its_token_until_it_is_revoked(api: Api) -> None:
    anon = api.client()
    rota = api.services.oncall.rota  # type: ignore[union-attr]
    t, token = rota.create_feed("alice", actor="alice")
    r = anon.get(f"/oncall/feeds/{token}.ics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar")
    events = list(Calendar.from_ical(r.content).walk("VEVENT"))
    assert events and all("alice" in str(e["SUMMARY"]) for e in events)
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert anon.get(f"/oncall/feeds/{wrong}.ics").status_code == 404
    assert anon.get("/oncall/feeds/feed-000000000000.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.ics").status_code == 404
    assert anon.get("/oncall/feeds/not-a-token-at-all.ics").status_code == 404
    rota.revoke_feed(t.id, actor="sam")
    assert anon.get(f"/oncall/feeds/{token}.ics").status_code == 404
    refused = api.audit(action="oncall.feed.refused")
    assert len(refused) == 4 and all(token.split(".")[1] not in str(e) for e in refused)
    assert [e["actor"] for e in api.audit(action="oncall.feed.revoke")] == ["sam"]


def test_overrides_through_the_api(api: Api) -> None:
    api.user("sam", "sre", mfa=False)
    api.user("vic", "viewer", mfa=False)
    sre, viewer = api.session("sam"), api.session("vic")
    body = {"schedule": "primary", "person": "carol", "start": "2031-03-10T09:00:00+01:00",
            "end": "2031-03-11T09:00:00+01:00", "reason": "alice is ill"}  # fmt: skip
    assert viewer.post("/oncall/overrides", json=body).status_code == 403
    r = sre.post("/oncall/overrides", json=body)
    assert r.status_code == 201, r.text
    oid = r.json()["id"]
    who = viewer.get("/oncall/who", params={"at": "2031-03-10T12:00:00+01:00"}).json()
    assert who["schedules"]["primary"] == {"person": "carol", "layer": "override"}
    assert [o["id"] for o in viewer.get("/oncall/overrides").json()] == [oid]
    bad = sre.post("/oncall/overrides", json={**body, "person": "mallory"})
    assert bad.status_code == 422 and "not in oncall.people" in bad.text
    assert sre.post("/oncall/overrides", json={**body, "end": "2031-03-11T09:00:00"}).status_code == 422
    assert viewer.delete(f"/oncall/overrides/{oid}").status_code == 403
    assert sre.delete(f"/oncall/overrides/{oid}").json()["removed_by"] == "sam"
    assert sre.delete(f"/oncall/overrides/{oid}").status_code == 404
    who = viewer.get("/oncall/who", params={"at": "2031-03-10T12:00:00+01:00"}).json()
    assert who["schedules"]["primary"]["layer"] == "weekly"
    assert [e["actor"] for e in api.audit(action="oncall.override.add")] == ["sam"]
    assert [e["actor"] for e in api.audit(action="oncall.override.remove")] == ["sam"]
