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
