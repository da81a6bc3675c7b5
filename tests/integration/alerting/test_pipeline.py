"""The durable pipeline on a real SQLite store: grouping, dedupe, inhibition, silences, outbox."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shipwarden.adapters.store.alerting_repo import AlertingRepo
from shipwarden.adapters.store.engine import make_engine, migrate
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.alerting import Alert, AlertingPolicy, Matcher, Rollback, Silence
from shipwarden.ports.alerting import DeliveryOutcome, GroupNotice
from shipwarden.ports.incidents import AlertSignal
from shipwarden.services.alerting.pipeline import AlertPipeline

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Sink:
    name: str = "test"
    notices: list[GroupNotice] = field(default_factory=list)
    down: bool = False

    def deliver(self, notice: GroupNotice) -> DeliveryOutcome:
        if self.down:
            return DeliveryOutcome(False, "connection refused")
        self.notices.append(notice)
        return DeliveryOutcome(True, "202")


@dataclass
class Escalations:
    calls: list[tuple[str, str, int]] = field(default_factory=list)

    def open(self, notice: GroupNotice, policy: str) -> None:
        self.calls.append(("open", policy, notice.seq))

    def update(self, notice: GroupNotice) -> None:
        self.calls.append(("update", "", notice.seq))

    def resolve(self, notice: GroupNotice) -> None:
        self.calls.append(("resolve", "", notice.seq))


@dataclass
class Incidents:
    signals: list[AlertSignal] = field(default_factory=list)

    def alert_changed(self, alert: AlertSignal) -> None:
        self.signals.append(alert)


POLICY = AlertingPolicy.model_validate(
    {
        "receivers": [
            {"name": "ops", "apprise": ["OPS"]},
            {"name": "pager", "pagerduty": ["PD"], "escalation": "primary"},
        ],
        "route": {
            "receiver": "ops",
            "groupBy": ["alertname", "service"],
            "groupWait": "2s",
            "groupInterval": "10s",
            "repeatInterval": "1h",
            "routes": [
                {"match": {"severity": "critical"}, "receiver": "pager", "continue": True},
                {"receiver": "ops"},  # everything, critical too (the route above continues)
            ],
        },
    }
)


@pytest.fixture
def world(
    tmp_path: Path,
) -> Iterator[tuple[AlertPipeline, Clock, dict[str, Sink], Escalations, Incidents, Store]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'sw.db'}")
    migrate(engine)
    clock = Clock()
    store = Store(engine, clock=clock)
    sinks = {"apprise:OPS": Sink(), "pagerduty:PD": Sink()}
    esc, inc = Escalations(), Incidents()
    rollbacks: list[Rollback] = []
    p = AlertPipeline(
        AlertingRepo(store),
        POLICY,
        channel_for=lambda t: sinks[t],
        escalation=esc,
        incidents=inc,
        rollbacks=lambda: rollbacks,
        context=lambda s: [f"deploy of {s} v2 at 12:00"],
        clock=clock,
    )
    p.rollbacks_list = rollbacks  # type: ignore[attr-defined]
    yield p, clock, sinks, esc, inc, store
    engine.dispose()


def _alert(name: str = "ErrorRate", severity: str = "warning", service: str = "hello", **kw: object) -> Alert:
    return Alert(labels={"alertname": name, "severity": severity, "service": service}, **kw)  # type: ignore[arg-type]


def _run(p: AlertPipeline) -> None:
    p.sweep()
    p.flush()
    while p.deliver():
        pass


def test_group_wait_then_one_notice_then_resolve_at_once(world) -> None:  # type: ignore[no-untyped-def]
    p, clock, sinks, _esc, _inc, store = world
    a, b = _alert(starts_at=clock.t), _alert(service="other", starts_at=clock.t)
    assert p.ingest([a, b, a], source="test") == 2
    _run(p)
    assert sinks["apprise:OPS"].notices == []  # group_wait not over
    clock.t += 2
    _run(p)
    ops = sinks["apprise:OPS"].notices
    assert sorted(n.group_labels["service"] for n in ops) == ["hello", "other"]
    assert all(n.seq == 1 and n.status == "firing" for n in ops)
    assert ops[0].context == (f"deploy of {ops[0].service} v2 at 12:00",)
    # the same alerts again (Prometheus re-sends, Alertmanager repeats): nothing new
    assert p.ingest([a, b], source="test") == 0
    clock.t += 30
    _run(p)
    assert len(ops) == 2
    # resolve one: told at once, not after group_interval
    p.ingest([Alert(labels=a.labels, starts_at=a.starts_at, ends_at=clock.t)], source="test")
    _run(p)
    assert [(n.status, n.seq, n.service) for n in ops[2:]] == [("resolved", 2, "hello")]
    assert ops[2].dedup_key == ops[0].dedup_key if ops[0].service == "hello" else ops[1].dedup_key
    actions = [e.action for e in store.audit_entries()]
    assert actions.count("alert.notice") == 3 and actions.count("alert.delivered") == 3


def test_critical_pages_escalates_opens_incident_and_inhibits_its_warning(world) -> None:  # type: ignore[no-untyped-def]
    p, clock, sinks, esc, inc, _ = world
    warn, crit = _alert(starts_at=clock.t), _alert(severity="critical", starts_at=clock.t)
    p.ingest([warn, crit], source="test")
    clock.t += 2
    _run(p)
    ops = sinks["apprise:OPS"].notices
    # both alerts share alertname+service: one group on ops; the warning is inhibited by the critical
    assert len(ops) == 1 and [a.severity for a in ops[0].firing] == ["critical"]
    assert len(sinks["pagerduty:PD"].notices) == 1
    assert esc.calls == [("open", "primary", 1)]
    assert [(s.status, s.severity) for s in inc.signals] == [("firing", "critical")]
    assert inc.signals[0].audit_seq is not None
    p.ingest([_alert(severity="critical", starts_at=crit.starts_at, ends_at=clock.t)], source="test")
    _run(p)
    assert esc.calls[-1] == ("resolve", "", 2)
    assert [s.status for s in inc.signals] == ["firing", "resolved"]
    # the warning still fires and is no longer inhibited: told after group_interval
    clock.t += 10
    _run(p)
    assert [a.severity for a in ops[-1].firing] == ["warning"]


def test_a_receiver_that_is_down_gets_everything_later_once(world) -> None:  # type: ignore[no-untyped-def]
    p, clock, sinks, _esc, _inc, _ = world
    sinks["apprise:OPS"].down = True
    p.ingest([_alert(service=f"s{i}", starts_at=clock.t) for i in range(5)], source="test")
    clock.t += 2
    for _ in range(6):  # 1+2+4+8+16 s of backoff
        _run(p)
        clock.t += 20
    assert sinks["apprise:OPS"].notices == []
    sinks["apprise:OPS"].down = False
    clock.t += 60
    _run(p)
    _run(p)
    got = sinks["apprise:OPS"].notices
    assert sorted(n.service or "" for n in got) == [f"s{i}" for i in range(5)]


def test_silence_mutes_until_it_expires(world) -> None:  # type: ignore[no-untyped-def]
    p, clock, sinks, _esc, _inc, _store = world
    repo: AlertingRepo = p.store  # type: ignore[assignment]
    repo.add_silence(
        Silence("s1", (Matcher.parse("service=hello"),), clock.t, clock.t + 100, "ann", "deploying"),
        actor="ann",
        now=clock.t,
    )
    p.ingest([_alert(starts_at=clock.t)], source="test")
    clock.t += 2
    _run(p)
    assert sinks["apprise:OPS"].notices == []
    assert repo.expire_silence("s1", actor="ann", now=clock.t) is not None
    assert repo.expire_silence("nope", actor="ann", now=clock.t) is None
    clock.t += 10
    _run(p)
    assert len(sinks["apprise:OPS"].notices) == 1


def test_rollback_in_progress_mutes_its_symptoms(world) -> None:  # type: ignore[no-untyped-def]
    p, clock, sinks, _esc, _inc, _ = world
    p.rollbacks_list.append(Rollback("hello", started_at=clock.t - 1))  # type: ignore[attr-defined]
    p.ingest([_alert(name="Availability", starts_at=clock.t)], source="test")
    clock.t += 2
    _run(p)
    assert sinks["apprise:OPS"].notices == []


def test_two_pipelines_flushing_one_group_queue_its_notice_once(world) -> None:  # type: ignore[no-untyped-def]
    p, clock, sinks, _esc, _inc, store = world
    q = AlertPipeline(AlertingRepo(store), POLICY, channel_for=lambda t: sinks[t], clock=clock)
    p.ingest([_alert(starts_at=clock.t)], source="test")
    clock.t += 2
    due_p = p.store.due_groups(clock.t)
    due_q = q.store.due_groups(clock.t)
    assert len(due_p) == len(due_q) == 1
    assert p._flush_one(due_p[0], clock.t, [], [], []) == 1
    assert q._flush_one(due_q[0], clock.t, [], [], []) == 0
    _run(p)
    assert len(sinks["apprise:OPS"].notices) == 1


def test_rollout_alerts_enter_the_pipeline(world) -> None:  # type: ignore[no-untyped-def]
    """shipwarden's own rollout alert is routed like any other, not muted by the rollback it announces."""
    from shipwarden.domain.alerts import RolloutAlertSpec, RolloutEvent
    from shipwarden.domain.rollout import Phase, Transition
    from shipwarden.services.alerts import RolloutAlerts

    p, clock, sinks, _esc, _inc, store = world
    dep = store.create_deployment(
        service="hello",
        kind="deploy",
        strategy="blueGreen",
        from_version="v1",
        to_version="v2",
        actor="ann",
        policy_digest="d" * 64,
        policy_source="p.yaml",
        plan={},
    )
    dep = store.transition(dep, Transition(Phase.ROLLING_BACK, "analysis failed"), actor="controller")
    p.rollbacks_list.append(Rollback("hello", started_at=clock.t - 5))  # type: ignore[attr-defined]
    spec = RolloutAlertSpec.model_construct(urls=[], events=[RolloutEvent.ROLLBACK, RolloutEvent.FAILED])
    alerts = RolloutAlerts(
        store, spec, lambda n: None, sink=lambda a: p.ingest(a, source="rollout"), direct=False, clock=clock
    )
    assert alerts(dep) is not None and alerts(dep) is None  # once per deployment and event
    clock.t += 2
    _run(p)
    [notice] = sinks["apprise:OPS"].notices
    assert (
        notice.common_labels["alertname"] == "RolloutRollback"
        and notice.common_labels["deployment"] == dep.id
    )
    [entry] = list(store.audit_entries(action="alert.rollout"))
    assert entry.detail["via"] == "alerting"


def test_nrql_conditions_through_the_new_relic_provider(world, newrelic_contract) -> None:  # type: ignore[no-untyped-def]
    """An NRQL condition evaluated by shipwarden (NerdGraph contract server) fires, pages, resolves."""
    from shipwarden.adapters.metrics.newrelic import NewRelicProvider
    from shipwarden.bootstrap import nrql_query
    from shipwarden.domain.alerting.monitoring import CustomCondition
    from shipwarden.services.alerting.service import NrqlConditions

    p, clock, sinks, _esc, _inc, _store = world
    row = {"value": 3.0}
    newrelic_contract.script("appName = 'hello'", results=[row])
    provider = NewRelicProvider(
        newrelic_contract.api_key, newrelic_contract.account_id, endpoint=newrelic_contract.url
    )
    cond = CustomCondition.model_validate(
        {
            "name": "CheckoutSlow",
            "nrql": "SELECT average(duration) FROM Transaction WHERE appName = '{service}' {window}",
            "critical": 2,
            "for": "10s",
            "interval": "5s",
        }
    )
    nrql = NrqlConditions(
        [("hello", cond)],
        nrql_query(provider),
        lambda a: p.ingest(a, source="nrql"),
        team="demo",
        clock=clock,
    )
    assert nrql.run_due() == 0  # crossing, pending for 10 s
    clock.t += 10
    assert nrql.run_due() == 1  # firing
    clock.t += 2
    _run(p)
    [notice] = sinks["apprise:OPS"].notices
    assert notice.common_labels["alertname"] == "CheckoutSlow" and notice.common_labels["source"] == "nrql"
    row["value"] = 1.0
    clock.t += 5
    assert nrql.run_due() == 1  # resolved
    _run(p)
    assert [n.status for n in sinks["apprise:OPS"].notices] == ["firing", "resolved"]
    assert not newrelic_contract.violations


def test_many_groups_flushed_at_once_each_tell_their_own_alerts(world) -> None:  # type: ignore[no-untyped-def]
    p, clock, sinks, *_ = world
    alerts = [
        Alert(labels={"alertname": f"A{i % 3}", "service": f"s{i % 4}", "instance": f"h{i}"})
        for i in range(60)
    ]
    p.ingest(alerts, source="test")
    clock.t += 2
    _run(p)
    told = {
        (n.group_labels["alertname"], n.group_labels["service"]): {a.labels["instance"] for a in n.alerts}
        for n in sinks["apprise:OPS"].notices
    }
    want: dict[tuple[str, str], set[str]] = {}
    for i in range(60):
        want.setdefault((f"A{i % 3}", f"s{i % 4}"), set()).add(f"h{i}")
    assert told == want and len(want) == 12
