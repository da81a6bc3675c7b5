"""``shipwarden oncall …`` and ``shipwarden alerts …`` in-process on a temporary state directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from icalendar import Calendar
from typer.testing import CliRunner, Result

from shipwarden.entrypoints.cli import app
from tests.integration.oncall.conftest import policy_text


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    (tmp_path / "p.yaml").write_text(policy_text())
    monkeypatch.setenv("SHIPWARDEN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SHIPWARDEN_POLICY", str(tmp_path / "p.yaml"))
    monkeypatch.setenv("SHIPWARDEN_ACTOR", "carol")
    return CliRunner()


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, list(args))


def test_who_ical_and_escalations_from_the_command_line(cli: CliRunner, tmp_path: Path) -> None:
    r = run(cli, "oncall", "who", "--at", "2026-12-08T10:00:00+01:00", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["schedules"]["primary"] == {"person": "bob", "layer": "weekly"}
    r = run(cli, "oncall", "who", "--at", "2026-12-07T07:59:00Z")  # Mon 08:59 Berlin: still alice
    assert r.output.strip() == "primary: alice  (weekly)"
    assert run(cli, "oncall", "who", "--at", "2026-12-08T10:00").exit_code == 2  # no zone
    bad = run(cli, "oncall", "who", "--schedule", "nope")
    assert bad.exit_code == 2 and "no schedule 'nope'" in bad.output

    out = tmp_path / "alice.ics"
    assert run(cli, "oncall", "ical", "--person", "alice", "-o", str(out), "--days", "28").exit_code == 0
    cal = Calendar.from_ical(out.read_bytes())
    events = list(cal.walk("VEVENT"))
    assert events and all("alice" in str(e["SUMMARY"]) for e in events)
    assert all((e["DTEND"].dt - e["DTSTART"].dt).days == 7 for e in events)  # whole weeks, never cut
    assert run(cli, "oncall", "ical", "primary", "--person", "bob").exit_code == 2

    r = run(cli, "alerts", "trigger", "--title", "disk full", "--service", "hello")
    assert r.exit_code == 0, r.output
    esc = r.output.split()[1]
    r = run(cli, "alerts", "ack", esc)
    assert r.exit_code == 0 and "acknowledged" in r.output and "by carol" in r.output
    again = run(cli, "alerts", "ack", esc)
    assert again.exit_code == 2 and "already acknowledged by carol" in again.output
    assert run(cli, "alerts", "resolve", esc).exit_code == 0
    doc = json.loads(run(cli, "alerts", "show", esc, "--json").output)
    assert doc["status"] == "resolved" and doc["acknowledged_by"] == "carol" and doc["policy"]["repeat"] == 1
    assert run(cli, "alerts", "ack", "esc-000000000000").exit_code == 2
    r = run(cli, "audit", "query", "--action", "escalation.acknowledged")
    assert r.exit_code == 0 and "escalation.acknowledged" in r.output and "carol" in r.output


def _audit(tmp_path: Path, action: str) -> list[tuple[str, dict]]:
    from shipwarden.adapters.store.engine import make_engine
    from shipwarden.adapters.store.repository import Store

    store = Store(make_engine(f"sqlite:///{tmp_path / 'state' / 'shipwarden.db'}"))
    try:
        return [(e.actor, e.detail) for e in store.audit_entries(action=action)]
    finally:
        store.engine.dispose()


def test_overrides_and_calendar_feed_tokens_from_the_command_line(cli: CliRunner, tmp_path: Path) -> None:
    at = "2030-01-07T12:00:00+01:00"
    before = json.loads(run(cli, "oncall", "who", "--at", at, "--json").output)["schedules"]["primary"]
    assert before["layer"] == "weekly" and before["person"] in ("alice", "bob")
    span = ["--from", "2030-01-07T09:00+01:00", "--until", "2030-01-08T09:00+01:00"]
    r = run(cli, "oncall", "override", "add", "primary", "carol", *span, "--reason", "swap with alice")
    assert r.exit_code == 0, r.output
    oid = r.output.split(":")[0]
    assert oid.startswith("ovr-") and "carol on call in primary from 2030-01-07 08:00Z" in r.output
    after = json.loads(run(cli, "oncall", "who", "--at", at, "--json").output)["schedules"]["primary"]
    assert after == {"person": "carol", "layer": "override"}
    outside = run(cli, "oncall", "who", "--at", "2030-01-08T09:00:00+01:00", "--json")
    assert json.loads(outside.output)["schedules"]["primary"]["layer"] == "weekly"  # the end is exclusive
    for bad, says in [
        (["primary", "mallory", *span, "--reason", "x"], "person 'mallory' is not in oncall.people"),
        (["nope", "carol", *span, "--reason", "x"], "no schedule 'nope'"),
        (["primary", "carol", "--from", span[3], "--until", span[1], "--reason", "x"], "ends before"),
        (["primary", "carol", *span, "--reason", "  "], "needs a reason"),
        (["primary", "carol", "--from", "2020-01-01T00:00Z", "--until", "2020-01-02T00:00Z", "--reason", "x"],
         "over already"),
        (["primary", "carol", "--from", "2030-01-01T00:00", "--until", span[3], "--reason", "x"],
         "time zone"),
    ]:  # fmt: skip
        r = run(cli, "oncall", "override", "add", *bad)
        assert r.exit_code == 2 and says in r.output, (bad, r.output)
    listed = json.loads(run(cli, "oncall", "override", "list", "--json").output)
    assert [(o["id"], o["person"], o["created_by"], o["reason"]) for o in listed] == [
        (oid, "carol", "carol", "swap with alice")
    ]
    [(actor, detail)] = _audit(tmp_path, "oncall.override.add")
    assert actor == "carol" and detail["override"] == oid and detail["reason"] == "swap with alice"
    assert detail["start"] == "2030-01-07T08:00:00+00:00" and detail["person"] == "carol"
    r = run(cli, "oncall", "override", "remove", oid)
    assert r.exit_code == 0 and f"removed {oid}" in r.output
    back = json.loads(run(cli, "oncall", "who", "--at", at, "--json").output)
    assert back["schedules"]["primary"] == before
    assert run(cli, "oncall", "override", "remove", oid).exit_code == 2  # once
    assert "no overrides" in run(cli, "oncall", "override", "list").output
    assert [d["override"] for _, d in _audit(tmp_path, "oncall.override.remove")] == [oid]

    r = run(cli, "oncall", "feed", "create", "alice")
    assert r.exit_code == 0, r.output
    tid = r.output.split()[0]
    url = r.output.strip().splitlines()[-1]
    assert tid.startswith("feed-") and url.startswith("http") and f"/oncall/feeds/{tid}." in url
    assert url.endswith(".ics") and len(url.rsplit(".", 2)[1]) == 32  # the secret, shown once
    assert "in force" in run(cli, "oncall", "feed", "list", "--person", "alice").output
    assert run(cli, "oncall", "feed", "create", "mallory").exit_code == 2
    assert run(cli, "oncall", "feed", "revoke", tid).exit_code == 0
    assert "revoked" in run(cli, "oncall", "feed", "list").output
    assert run(cli, "oncall", "feed", "revoke", tid).exit_code == 2
    feeds = _audit(tmp_path, "oncall.feed.create")
    assert [d["token"] for _, d in feeds] == [tid] and url.rsplit(".", 2)[1] not in str(feeds)  # no secret
    assert [d["token"] for _, d in _audit(tmp_path, "oncall.feed.revoke")] == [tid]
