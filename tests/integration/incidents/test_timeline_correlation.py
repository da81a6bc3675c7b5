"""Timeline and correlation from a real audit log: every line is an audit entry; suspects ranked."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from shipwarden.domain.audit import EntryDraft
from shipwarden.domain.incidents import IncidentError, verify_report
from shipwarden.domain.rollout import Phase
from tests.integration.incidents.conftest import World

pytestmark = pytest.mark.integration


def _failover(w: World, service: str) -> None:
    w.audit.append([EntryDraft(actor="shipwarden:dr", action="dr.failover.decided", service=service,
                               detail={"primary": "127.0.0.1:3307", "epoch": 2})], w.chain)  # fmt: skip


def test_timeline_lines_are_audit_entries_of_the_incident(world: World) -> None:
    w = world
    w.deploy("payments", "p2")  # another service: not on checkout's timeline
    bad = w.deploy("checkout", "v2", commit="ab" * 20)
    w.clock.advance(240)
    onset = w.clock.now()
    w.clock.advance(60)
    w.alerting.change("HighErrorRate", service="checkout", status="firing", starts_at=onset)
    [inc] = w.incidents.find()
    w.clock.advance(30)
    w.incidents.set_status(inc.id, "identified", actor="carol")
    lines = w.incidents.timeline(inc.id)
    by_seq = {e.seq: e for e in w.audit.entries()}
    assert lines and all(by_seq[t.seq].hash == t.hash == hashlib.sha256(t.canonical.encode()).hexdigest()
                         and by_seq[t.seq].canonical == t.canonical for t in lines)  # fmt: skip
    kinds = [t.kind for t in lines]
    assert kinds[0] == "deployment" and "step" in kinds and "alert" in kinds and kinds[-1] == "incident"
    assert {t.service for t in lines if t.kind != "incident"} == {"checkout"}
    assert [t.seq for t in lines] == sorted(t.seq for t in lines)
    assert any(t.refs.get("deployment") == bad.id for t in lines)
    # no access entries, no other service
    assert not any(t.action == "access" for t in lines)
    doc = {"format": "shipwarden.incident-report.v1", "timeline": [t.to_json() for t in lines]}
    chain = {e.seq: e.hash for e in w.audit.entries()}
    assert verify_report(doc, chain) == []
    doc["timeline"][1]["actor"] = "mallory"
    [problem] = verify_report(doc, chain)
    assert "other actor" in str(problem) and problem.seq == lines[1].seq


def test_the_bad_deployment_ranks_first_over_noise(world: World) -> None:
    w = world
    w.deploy("checkout", "v2")  # an older, benign deployment of the same service
    w.clock.advance(3 * 3600)
    bad = w.deploy("checkout", "v3", frm="v2")
    w.clock.advance(600)
    w.deploy("payments", "p2")  # unrelated, closer to the onset
    w.clock.advance(120)
    onset = w.clock.now()
    w.alerting.change("HighErrorRate", service="checkout", status="firing", starts_at=onset)
    [inc] = w.incidents.find()
    ranking = w.incidents.suspects(inc.id)
    assert not ranking.no_change
    top = ranking.suspects[0]
    assert top.candidate.ref == f"deployment:{bad.id}" and top.features.scope == "same"
    assert top.candidate.exposure == 1.0 and top.candidate.analysis == "none"
    refs = [s.candidate.ref for s in ranking.suspects]
    assert len(refs) == 3 and refs.index(f"deployment:{bad.id}") == 0


def test_a_rolled_back_deployment_is_not_blamed_and_a_failover_is(world: World) -> None:
    w = world
    back = (Phase.STARTING, Phase.CANARY_STEP, Phase.ROLLING_BACK, Phase.ROLLED_BACK)
    w.deploy("checkout", "v2", phases=back,
             detail={"analysis_verdict": {"ok": False, "detail": "5xx 4 % > 1 %"}})  # fmt: skip
    w.clock.advance(900)
    _failover(w, "checkout")
    w.clock.advance(60)
    inc = w.incidents.open(title="db errors", service="checkout", severity="sev2", actor="bob",
                           onset=w.clock.now())  # fmt: skip
    ranking = w.incidents.suspects(inc.id)
    top = ranking.suspects[0]
    assert top.candidate.kind == "failover" and not ranking.no_change
    dep = next(s for s in ranking.suspects if s.candidate.kind == "deployment")
    assert dep.features.rolled_back and dep.candidate.analysis == "failed" and dep.probability < 0.5
    with pytest.raises(IncidentError, match="only a deployment can be rolled back"):
        w.incidents.rollback_suspect(inc.id, actor="carol")


def test_no_change_when_nothing_of_the_service_changed(world: World) -> None:
    w = world
    w.deploy("payments", "p2")
    w.clock.advance(6 * 3600)
    w.deploy("checkout", "v2")  # long before: not blamed
    w.clock.advance(10 * 3600)
    now = w.clock.now()
    inc = w.incidents.open(title="slow", service="checkout", severity="sev3", actor="bob", onset=now)
    ranking = w.incidents.suspects(inc.id)
    assert ranking.no_change, [s.to_json() for s in ranking.suspects]
    with pytest.raises(IncidentError, match="no change caused this"):
        w.incidents.rollback_suspect(inc.id, actor="carol")


def test_rollback_of_the_suspect_goes_through_the_rollback_use_case(world: World) -> None:
    w = world
    w.deploy("checkout", "v2")
    w.clock.advance(3600)
    bad = w.deploy("checkout", "v3", frm="v2")
    w.clock.advance(300)
    inc = w.incidents.open(title="5xx", service="checkout", severity="sev2", actor="bob",
                           onset=w.clock.now() - timedelta(seconds=60))  # fmt: skip
    w.rollbacks.deployments[bad.id] = ("checkout", "v3", "succeeded")
    w.rollbacks.current_of["checkout"] = (None, "v2")  # something else is stable now
    before = w.store.count_audit()
    with pytest.raises(IncidentError, match="is not what checkout runs now"):
        w.incidents.rollback_suspect(inc.id, actor="carol")
    assert w.store.count_audit() == before and w.rollbacks.calls == []
    w.rollbacks.current_of["checkout"] = (None, "v3")
    started = w.incidents.rollback_suspect(inc.id, actor="carol")
    assert started.rolled_back == bad.id and w.rollbacks.calls == [("checkout", "carol")]
    entries = list(w.audit.entries(action="incident.rollback"))
    assert [e.outcome for e in entries] == ["requested", "ok"]
    assert entries[1].detail["rollback"] == started.rollback and entries[0].actor == "carol"
    w.rollbacks.fail = RuntimeError("checkout has no previous version")
    with pytest.raises(RuntimeError):
        w.incidents.rollback_suspect(inc.id, actor="carol")
    last = list(w.audit.entries(action="incident.rollback"))[-1]
    assert last.outcome == "failed" and "no previous version" in last.detail["error"]
