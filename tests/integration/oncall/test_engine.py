"""The escalation engine on a real store: steps at their due times, acknowledgement, frozen
policies, signed links, durable pages, deployment-aware pages, restart during a wait."""

from __future__ import annotations

import time

import pytest

from shipwarden.domain.oncall import EscalationError, Status
from shipwarden.domain.oncall.links import LinkError
from shipwarden.ports.oncall import AlertGroup, LinkSpent
from tests.integration.oncall.conftest import Clock, Recorder, World, policy_text


def _actions(w: World, prefix: str = "escalation.") -> list[tuple[str, dict]]:
    return [(e.action, e.detail) for e in w.store.audit_entries() if e.action.startswith(prefix)]


def test_levels_fire_at_their_time_outs_then_repeat_then_stop(world: World) -> None:
    w = world
    e = w.engine.open("g1", title="HighErrorRate", service="hello", actor="alerting")
    assert w.engine.tick() and w.engine.deliver() == 1
    assert w.notifier.to() == ["alice@example.com"]  # level 1: whoever is on call in primary
    w.clock.advance(299)
    assert not w.engine.tick()  # 1 s before the time-out: nothing
    w.clock.advance(1)
    w.engine.tick(), w.engine.deliver()
    assert w.notifier.to()[1:] == ["carol@example.com", "CAROL_CHAT"]  # level 2: e-mail and chat
    w.clock.advance(600)
    w.engine.tick(), w.engine.deliver()  # repeat: level 1 again
    w.clock.advance(300)
    w.engine.tick(), w.engine.deliver()  # level 2 again, the last step
    w.clock.advance(3600)
    assert not w.engine.tick()
    assert w.notifier.to() == [
        "alice@example.com",
        "carol@example.com",
        "CAROL_CHAT",
        "alice@example.com",
        "carol@example.com",
        "CAROL_CHAT",
    ]
    steps = [d for a, d in _actions(w) if a == "escalation.step"]
    assert [s["step"] for s in steps] == [0, 1, 2, 3] and steps[-1]["last"] is True
    assert all(s["late_ms"] == 0 for s in steps)  # due times chain from due times, not firing times
    after = w.repo.get(e.id)
    assert after.status is Status.TRIGGERED and after.due is None and after.step == 4


def test_acknowledging_stops_the_escalation_and_is_audited(world: World) -> None:
    w = world
    e = w.engine.open("g1", title="HighErrorRate", service="hello", actor="alerting")
    w.engine.tick()
    w.clock.advance(60)
    w.engine.acknowledge(e.id, actor="alice", via="cli")
    w.clock.advance(3600)
    assert not w.engine.tick()
    with pytest.raises(EscalationError, match="already acknowledged by alice"):
        w.engine.acknowledge(e.id, actor="bob")
    w.engine.resolve(e.id, actor="alice", via="api")
    acks = [d for a, d in _actions(w) if a == "escalation.acknowledged"]
    assert acks == [
        {"escalation": e.id, "group": "g1", "by": "alice", "via": "cli", "step": 1, "after_s": 60.0}
    ]
    assert [d["via"] for a, d in _actions(w) if a == "escalation.resolved"] == ["api"]
    # the group fires again later: a new escalation (the resolved one freed its key)
    again = w.engine.open("g1", title="HighErrorRate", service="hello", actor="alerting")
    assert again.id != e.id


def test_one_escalation_per_open_group_and_resolve_from_alerting(world: World) -> None:
    w = world
    g = AlertGroup("g7", "firing", "Down", service="hello")
    w.engine.group_changed(g)
    w.engine.group_changed(g)  # delivered twice (at least once): still one
    [e] = w.repo.find(open_only=True)
    w.engine.group_changed(AlertGroup("g7", "resolved", "Down", service="hello"))
    assert w.repo.get(e.id).status is Status.RESOLVED
    assert w.repo.get(e.id).resolved_by == "alerting"


def test_a_policy_edited_mid_incident_does_not_change_a_running_escalation(world: World) -> None:
    w = world
    e = w.engine.open("g1", title="Down", service="hello", actor="alerting")
    w.engine.tick()
    w.set_policy(
        policy_text("30s", "1m").replace("repeat: 1", "repeat: 0").replace("{person: carol}", "{person: bob}")
    )
    w.clock.advance(31)
    assert not w.engine.tick()  # still the frozen 5-minute time-out
    w.clock.advance(269)
    w.engine.tick(), w.engine.deliver()
    assert w.notifier.to()[-2:] == ["carol@example.com", "CAROL_CHAT"]  # still carol, not bob
    assert w.repo.get(e.id).snapshot.repeat == 1
    fresh = w.engine.open("g2", title="Other", service="hello", actor="alerting")
    assert fresh.snapshot.levels[0].timeout == 30.0  # a new group follows the new policy


def test_signed_links_act_once_and_refuse_forgery_and_expiry(world: World) -> None:
    w = world
    w.engine.open("g1", title="Down", service="hello", actor="alerting")
    w.engine.tick(), w.engine.deliver()
    body = w.notifier.sent[0][2]
    ack = next(ln.split(": ", 1)[1] for ln in body.splitlines() if ln.startswith("acknowledge:"))
    token = ack.rsplit("/", 1)[1]
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    with pytest.raises(LinkError, match="signature"):
        w.engine.act_by_link(forged)
    claim, after = w.engine.act_by_link(token)
    assert (
        claim.person == "alice" and after.status is Status.ACKNOWLEDGED and after.acked_by == "alice (link)"
    )
    with pytest.raises(LinkSpent):
        w.engine.act_by_link(token)
    resolve = next(ln.split(": ", 1)[1].strip() for ln in body.splitlines() if ln.startswith("resolve:"))
    w.clock.advance(3601)
    with pytest.raises(LinkError, match="expired"):
        w.engine.act_by_link(resolve.rsplit("/", 1)[1])
    assert [d["via"] for a, d in _actions(w) if a == "escalation.acknowledged"] == ["link"]


def test_pages_are_written_with_the_step_and_retried_until_delivered(world: World) -> None:
    w = world
    w.notifier.fail = True
    e = w.engine.open("g1", title="Down", service="hello", actor="alerting")
    w.engine.tick()
    assert w.engine.deliver() == 0
    [p] = w.repo.pages(e.id)
    assert p["status"] == "pending" and p["attempts"] == 1
    w.notifier.fail = False
    assert w.engine.deliver() == 0  # not before its back-off
    w.clock.advance(2)
    assert w.engine.deliver() == 1 and w.engine.deliver() == 0  # once
    [p] = w.repo.pages(e.id)
    assert p["status"] == "sent" and p["attempts"] == 2
    assert len(w.notifier.sent) == 1


def test_pages_list_the_services_last_deployments(world: World) -> None:
    w = world
    w.store.create_deployment(
        service="hello",
        kind="deploy",
        strategy="canary",
        from_version="v1",
        to_version="v2",
        actor="dave",
        policy_digest="d" * 64,
        policy_source="team.yaml",
        plan={},
    )
    w.engine.open("g1", title="HighErrorRate", service="hello", actor="alerting")
    w.engine.tick(), w.engine.deliver()
    subject, body = w.notifier.sent[0][1], w.notifier.sent[0][2]
    assert "HighErrorRate" in subject and "(hello)" in subject
    assert "last deployments and changes of hello:" in body
    assert "v1 -> v2 pending by dave" in body


def test_no_policy_for_the_service_is_refused(world: World) -> None:
    from shipwarden.services.oncall import OnCallError

    with pytest.raises(OnCallError, match="no escalation policy for other"):
        world.engine.open("g1", title="x", service="other", actor="alerting")
    assert world.repo.find() == []


def test_a_step_due_during_a_restart_fires_on_time_from_the_stored_due_time(world: World) -> None:
    """Real time: an engine opens the escalation and stops (the process "dies"); a new engine —
    a new process would find the same rows — starts before the 3 s time-out and fires the
    second level at its due time."""
    w = world
    w.set_policy(policy_text("3s", "1s").replace("repeat: 1", "repeat: 0"))
    real = time.time
    w.store._clock = real
    first = w.new_engine(clock=real)
    first.start()
    e = first.open("g1", title="Down", service="hello", actor="alerting")
    deadline = real() + 10
    while w.repo.get(e.id).step < 1 and real() < deadline:
        time.sleep(0.02)  # level 1 fired
    first.stop()
    assert w.repo.get(e.id).step == 1, "the first engine did not fire level 1 in time"
    time.sleep(0.5)
    rec = Recorder()
    second = w.new_engine(clock=real, notifier=rec)
    second.start()
    try:
        while not second.fired and real() < deadline:
            time.sleep(0.02)
        assert second.fired, "the second level never fired"
        fired = second.fired[0]
        assert fired.step == 1
        assert 0 <= fired.fired_at - fired.due < 1.0, fired
        while not {"carol@example.com", "CAROL_CHAT"} <= set(rec.to()) and real() < deadline:
            time.sleep(0.02)
    finally:
        second.stop()
    assert {"carol@example.com", "CAROL_CHAT"} <= set(rec.to())  # (alice's, if the first had not sent it)


def test_two_engines_fire_each_step_once(world: World) -> None:
    w = world
    other = w.new_engine(clock=Clock(w.clock.t))
    w.engine.open("g1", title="Down", service="hello", actor="alerting")
    a, b = w.engine.tick(), other.tick()
    assert len(a) + len(b) == 1


def test_steps_due_together_fire_in_one_tick_skipping_one_acknowledged_meanwhile(world: World) -> None:
    w = world
    opened = [w.engine.open(f"g{i}", title=f"Down {i}", service="hello", actor="alerting") for i in range(5)]
    assert len(w.engine.tick()) == 5 and w.engine.deliver() == 5
    w.clock.advance(300)  # every level 1 times out at once
    w.engine.acknowledge(opened[2].id, actor="bob")
    due = w.repo.due(w.clock())
    assert len(due) == 4

    # one more is acknowledged between the engine's read of what is due and its write
    def ack_then(eid: str, change):  # type: ignore[no-untyped-def]
        def run(e):  # type: ignore[no-untyped-def]
            if e.id == opened[4].id:
                raise EscalationError("acknowledged meanwhile")
            return change(e)

        return eid, run

    step = w.engine._step([])
    moved = w.repo.apply_many([ack_then(e.id, step) for e in due], actor="test", action="escalation.step")
    assert sorted(e.id for e in moved) == sorted(e.id for e in opened if e not in (opened[2], opened[4]))
    assert all(w.repo.get(e.id).step == 2 for e in moved)
    assert w.repo.get(opened[4].id).step == 1  # skipped, nothing stored for it
    steps = [d for a, d in _actions(w) if a == "escalation.step" and d["step"] == 1]
    assert len(steps) == 3 and w.engine.deliver() == 6  # carol by mail and chat, three times
