"""The ``oncall`` policy section: accepted, compiled, and refused with file:line."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shipwarden.domain.policy import PolicyError, load_policy_text

BASE = """\
apiVersion: shipwarden/v1
team: ops
services:
  - name: hello
    run: {command: [python, app.py]}
    strategy: {blueGreen: {}}
    routing: {port: 18080, previewPort: 18081}
"""

ONCALL = """\
oncall:
  people:
    alice: {email: alice@example.com}
    bob: {email: bob@example.com, notify: [BOB_SLACK]}
    carol: {email: carol@example.com}
  schedules:
    primary:
      timeZone: Europe/Berlin
      layers:
        - name: weekly
          rotation: weekly
          start: 2026-01-05
          handoff: "09:00"
          members: [alice, bob]
        - name: office
          rotation: 12h
          start: 2026-01-05
          members: [carol]
          restrictions: [{days: [mon, tue, wed, thu, fri], from: "09:00", to: "17:00"}]
      overrides:
        - {person: bob, start: "2026-03-28T18:00", end: "2026-03-30T09:00"}
  escalation:
    default:
      repeat: 1
      levels:
        - notify: [{schedule: primary}]
          timeout: 5m
        - notify: [{person: carol}, {channel: OPS_SLACK}]
          timeout: 10m
  services: {hello: default}
  watchdog: {notify: [{channel: BACKUP_PAGER}]}
"""


def test_a_full_section_loads_and_compiles() -> None:
    oc = load_policy_text(BASE + ONCALL).policy.oncall
    assert oc is not None
    s = oc.schedule("primary")
    assert s.who(datetime(2026, 1, 6, 7, 0, tzinfo=UTC)) == "alice"  # Tue 08:00 Berlin, before office
    assert s.who(datetime(2026, 1, 6, 9, 0, tzinfo=UTC)) == "carol"  # Tue 10:00: office hours
    assert s.who(datetime(2026, 1, 12, 7, 59, tzinfo=UTC)) == "alice"  # Mon 08:59: week 1 still
    assert s.who(datetime(2026, 1, 12, 8, 0, tzinfo=UTC)) == "carol"  # Mon 09:00: office again
    assert s.who(datetime(2026, 1, 12, 16, 0, tzinfo=UTC)) == "bob"  # Mon 17:00: bob's week began 09:00
    assert s.who(datetime(2026, 3, 29, 12, 0, tzinfo=UTC)) == "bob"  # the override
    assert oc.escalation_for("hello") == "default" and oc.escalation_for("other") is None


@pytest.mark.parametrize(
    ("old", "new", "line", "says"),
    [
        ("members: [alice, bob]", "members: [alice, dave]", 21, "'dave' is not in oncall.people"),
        ('handoff: "09:00"', "handoff: 09:60", 20, "not a time of day"),
        ("timeZone: Europe/Berlin", "timeZone: Europe/Berlln", 15, "not an IANA time zone"),
        ("rotation: 12h", "rotation: 10m", 23, "at least 1h"),
        ("{schedule: primary}", "{schedule: secondary}", 33, "schedule 'secondary' is not in"),
        ("{person: carol}, {channel: OPS_SLACK}", "{person: carol, channel: OPS_SLACK}", 35, "exactly one"),
        ('to: "17:00"', "to: 17:00", 26, "in quotes"),
        ("services: {hello: default}", "services: {hello: nope}", 37, "'nope' is not in oncall.escalation"),
        ('end: "2026-03-30T09:00"', 'end: "2026-03-27T09:00"', 28, "not after start"),
    ],
)
def test_mistakes_are_refused_with_their_line(old: str, new: str, line: int, says: str) -> None:
    assert old in ONCALL
    with pytest.raises(PolicyError) as err:
        load_policy_text(BASE + ONCALL.replace(old, new), "team.yaml")
    text = str(err.value)
    assert says in text, text
    assert f"team.yaml:{line}:" in text, text


def test_oncall_services_must_be_policy_services() -> None:
    with pytest.raises(PolicyError, match="nosuch not among the policy's services"):
        load_policy_text(BASE + ONCALL.replace("services: {hello: default}", "services: {nosuch: default}"))
