"""Alerting's receiver naming an escalation policy → the escalation engine (alerting's
``OnCallEscalation`` over ``ports.oncall.EscalationSink``)."""

from __future__ import annotations

from datetime import UTC, datetime

from shipwarden.domain.oncall import Status
from shipwarden.ports.alerting import AlertView, GroupNotice
from shipwarden.services.alerting.escalation import OnCallEscalation
from tests.integration.oncall.conftest import World


def _notice(status: str, seq: int) -> GroupNotice:
    alert = AlertView(
        "fp1",
        status,
        {"alertname": "HighErrorRate", "service": "hello", "severity": "critical"},  # type: ignore[arg-type]
        {"summary": "5xx above 5 %"},
    )
    return GroupNotice(
        key='{}:{alertname="HighErrorRate"}',
        receiver="pager",
        seq=seq,
        status=status,  # type: ignore[arg-type]
        group_labels={"alertname": "HighErrorRate", "service": "hello"},
        common_labels=dict(alert.labels),
        common_annotations={},
        alerts=[alert],
        dedup_key="dk",
        opened_at=datetime.now(UTC),
    )


def test_a_group_opens_one_escalation_under_the_named_policy_and_its_resolve_ends_it(world: World) -> None:
    bridge = OnCallEscalation(world.engine)
    bridge.open(_notice("firing", 1), "default")
    bridge.open(_notice("firing", 1), "default")  # at least once: the same notice again
    bridge.update(_notice("firing", 2))
    [e] = world.repo.find(open_only=True)
    assert "HighErrorRate" in e.title and e.service == "hello" and e.snapshot.policy == "default"
    assert "5xx above 5 %" in e.body
    world.engine.tick(), world.engine.deliver()
    assert world.notifier.to() == ["alice@example.com"]
    bridge.resolve(_notice("resolved", 3))
    bridge.resolve(_notice("resolved", 3))
    assert world.repo.get(e.id).status is Status.RESOLVED and world.repo.get(e.id).resolved_by == "alerting"


def test_an_unknown_policy_is_logged_not_raised(world: World) -> None:
    OnCallEscalation(world.engine).open(_notice("firing", 1), "nope")  # an old process's policy
    assert world.repo.find() == []
