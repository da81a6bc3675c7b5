"""Incidents on a real store: opened by a critical alert or by hand, moved, tracked, every action audited."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shipwarden.domain.incidents import IncidentError, Severity, Status
from shipwarden.ports.incidents import IncidentNotFound
from tests.integration.incidents.conftest import World

pytestmark = pytest.mark.integration


def _actions(w: World, incident_id: str) -> list[tuple[str, str]]:
    return [
        (e.action, e.outcome)
        for e in w.audit.entries(action_prefix="incident.")
        if e.detail.get("incident") == incident_id
    ]


def test_critical_alert_opens_one_incident_with_the_on_call_commander(any_db_world: World) -> None:
    w = any_db_world
    onset = w.clock.now() - timedelta(minutes=3)
    sig = w.alerting.change("HighErrorRate", service="checkout", status="firing", starts_at=onset,
                            annotations={"summary": "5xx above 5 %"}, deliver=2)  # fmt: skip
    [inc] = w.incidents.find()
    assert inc.status is Status.INVESTIGATING and inc.severity is Severity.SEV2
    assert inc.commander == "carol" and inc.onset_at == onset and inc.detected_at == w.clock.now()
    assert inc.alert_fingerprint == sig.fingerprint and inc.summary == "5xx above 5 %"
    assert w.oncall.asked == [("checkout", onset)]
    # delivered twice, recorded once
    assert len(w.incidents.alerts(inc.id)) == 1
    assert _actions(w, inc.id) == [("incident.opened", "ok"), ("incident.alert", "ok")]
    opened = next(w.audit.entries(action="incident.opened"))
    assert opened.detail["alert_seq"] == sig.audit_seq and opened.service == "checkout"


def test_other_alerts_attach_or_are_ignored_and_resolution_marks_restored(any_db_world: World) -> None:
    w = any_db_world
    onset = w.clock.now()
    w.alerting.change("Latency", service="checkout", status="firing", starts_at=onset, severity="warning")
    assert w.incidents.find() == []  # a warning alone opens nothing
    w.alerting.change("HighErrorRate", service="checkout", status="firing", starts_at=onset)
    w.clock.advance(60)
    w.alerting.change("Latency", service="checkout", status="firing", starts_at=onset, severity="warning")
    w.alerting.change("HighErrorRate", service="checkout", status="firing", starts_at=onset)  # re-sent
    [inc] = w.incidents.find()
    assert [a["name"] for a in w.incidents.alerts(inc.id)] == ["HighErrorRate", "Latency"]
    w.clock.advance(120)
    ended = w.clock.now()
    w.alerting.change("HighErrorRate", service="checkout", status="resolved", starts_at=onset, ends_at=ended)
    inc = w.incidents.get(inc.id)
    assert inc.restored_at == ended and inc.status is Status.INVESTIGATING  # people resolve it
    assert ("incident.restored", "ok") in _actions(w, inc.id)


def test_status_moves_stamp_times_and_bad_moves_change_nothing(any_db_world: World) -> None:
    w = any_db_world
    inc = w.incidents.open(title="checkout slow", service="checkout", severity="sev3", actor="bob")
    assert inc.commander == "carol" and inc.acknowledged_at is None
    w.clock.advance(30)
    inc = w.incidents.set_status(inc.id, "identified", actor="carol", note="bad deploy")
    assert inc.identified_at == w.clock.now() and inc.acknowledged_at == w.clock.now()
    before = w.store.count_audit()
    with pytest.raises(IncidentError, match="already identified"):
        w.incidents.set_status(inc.id, "identified", actor="carol")
    with pytest.raises(IncidentError, match="status must be one of"):
        w.incidents.set_status(inc.id, "fixed", actor="carol")
    with pytest.raises(IncidentNotFound):
        w.incidents.set_status("inc-20270101-abcdef", "resolved", actor="carol")
    with pytest.raises(IncidentError, match="not an incident id"):
        w.incidents.get("../../etc")
    assert w.store.count_audit() == before and w.incidents.get(inc.id).status is Status.IDENTIFIED
    w.clock.advance(30)
    w.incidents.set_status(inc.id, "monitoring", actor="carol")
    w.clock.advance(30)
    inc = w.incidents.set_status(inc.id, "resolved", actor="carol")
    assert inc.restored_at is not None and inc.mitigated_at == inc.restored_at
    assert inc.resolved_at == w.clock.now()
    with pytest.raises(IncidentError, match="can go to investigating, not monitoring"):
        w.incidents.set_status(inc.id, "monitoring", actor="carol")
    inc = w.incidents.set_status(inc.id, "investigating", actor="carol", note="regressed")
    assert inc.resolved_at is None and inc.open
    statuses = [e.detail["status"] for e in w.audit.entries(action="incident.status")]
    assert statuses == ["identified", "monitoring", "resolved", "investigating"]


def test_commander_notes_and_acknowledge_are_audited(any_db_world: World) -> None:
    w = any_db_world
    inc = w.incidents.open(title="x", service=None, severity="sev1", actor="bob", commander="dave")
    assert inc.commander == "dave" and w.oncall.asked == []
    w.clock.advance(10)
    inc = w.incidents.acknowledge(inc.id, actor="dave")
    with pytest.raises(IncidentError, match="was acknowledged"):
        w.incidents.acknowledge(inc.id, actor="erin")
    inc = w.incidents.set_commander(inc.id, "erin", actor="dave")
    inc = w.incidents.set_notes(inc.id, "root_cause", "a config flag", actor="erin")
    with pytest.raises(IncidentError, match="section must be one of"):
        w.incidents.set_notes(inc.id, "blame", "x", actor="erin")
    with pytest.raises(IncidentError, match="control characters"):
        w.incidents.set_commander(inc.id, "eve\x1b[31m", actor="dave")
    assert w.incidents.get(inc.id).notes == {"root_cause": "a config flag"}
    assert [a for a, _ in _actions(w, inc.id)] == [
        "incident.opened", "incident.acknowledged", "incident.commander", "incident.notes",
    ]  # fmt: skip


def test_action_items_are_tracked_to_closure(any_db_world: World) -> None:
    w = any_db_world
    inc = w.incidents.open(title="x", service="checkout", severity="sev2", actor="bob")
    a = w.incidents.add_item(inc.id, "canary analysis on 5xx", actor="bob", owner="carol", due="2027-01-31")
    b = w.incidents.add_item(inc.id, "alert on p95", actor="bob")
    assert (a.number, b.number) == (1, 2)
    with pytest.raises(IncidentError, match="due must be a date"):
        w.incidents.add_item(inc.id, "x", actor="bob", due="next week")
    w.clock.advance(3600)
    done = w.incidents.close_item(inc.id, 1, "done", actor="carol", note="merged #42")
    assert done.status == "done" and done.closed_at == w.clock.now() and done.note == "merged #42"
    with pytest.raises(IncidentError, match="already done"):
        w.incidents.close_item(inc.id, 1, "done", actor="carol")
    with pytest.raises(IncidentNotFound, match="no action item #9"):
        w.incidents.close_item(inc.id, 9, "done", actor="carol")
    assert [i.number for i in w.incidents.items(open_only=True)] == [2]
    reopened = w.incidents.close_item(inc.id, 1, "open", actor="carol")
    assert reopened.closed_at is None
    acts = [a for a, _ in _actions(w, inc.id)]
    assert acts.count("incident.action_item.added") == 2 and acts.count("incident.action_item.updated") == 2
