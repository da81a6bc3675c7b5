"""The pure incident domain: transitions, alert decisions, features and scores, impact, report check."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from shipwarden.domain.audit import EntryDraft, make_entry
from shipwarden.domain.incidents import (
    DEFAULT_WEIGHTS,
    TRANSITIONS,
    AlertFacts,
    History,
    Incident,
    IncidentError,
    Severity,
    Status,
    affected_requests,
    candidates_from_audit,
    change_status,
    classify,
    features,
    on_alert,
    rank,
    severity_of,
    verify_report,
)

T = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _inc(**kw: object) -> Incident:
    base: dict[str, object] = {
        "id": "inc-20300101-abcdef", "title": "t", "service": "web", "severity": Severity.SEV2,
        "status": Status.INVESTIGATING, "commander": "c", "opened_at": T, "opened_by": "x", "onset_at": T,
        "detected_at": T,
    }  # fmt: skip
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("frm", list(Status))
@pytest.mark.parametrize("to", list(Status))
def test_every_pair_of_statuses_follows_the_table(frm: Status, to: Status) -> None:
    inc = _inc(status=frm)
    if to in TRANSITIONS[frm]:
        moved = change_status(inc, to, T + timedelta(minutes=1))
        assert moved.status is to and moved.acknowledged_at == T + timedelta(minutes=1)
    else:
        with pytest.raises(IncidentError):
            change_status(inc, to, T)


def test_stamps_are_first_times_and_reopen_clears_resolved() -> None:
    a = change_status(_inc(), Status.MONITORING, T + timedelta(minutes=5))
    b = change_status(a, Status.INVESTIGATING, T + timedelta(minutes=6))
    c = change_status(b, Status.MONITORING, T + timedelta(minutes=9))
    assert c.mitigated_at == c.restored_at == T + timedelta(minutes=5)
    d = change_status(change_status(c, Status.RESOLVED, T + timedelta(minutes=20)), Status.INVESTIGATING, T)
    assert d.resolved_at is None


def _alert(status: str = "firing", severity: str = "critical", service: str | None = "web",
           fp: str = "f") -> AlertFacts:  # fmt: skip
    return AlertFacts(fp, "A", severity, status, T, None, service)  # type: ignore[arg-type]


def test_alert_decisions() -> None:
    assert on_alert([], _alert()).action == "open"
    assert on_alert([], _alert(severity="warning")).action == "ignore"
    assert on_alert([], _alert(status="resolved")).action == "ignore"
    open_ = _inc(alert_fingerprint="f")
    assert on_alert([open_], _alert(fp="g")).incident_id == open_.id  # same service: attach
    assert on_alert([open_], _alert(fp="g", service="other")).action == "open"
    d = on_alert([open_], _alert(status="resolved"))
    assert d.action == "attach" and d.restored
    assert not on_alert([open_], _alert(status="resolved", fp="g")).restored
    assert severity_of({"incident_severity": "SEV1"}, "critical") is Severity.SEV1
    assert severity_of({"incident_severity": "bogus"}, "warning") is Severity.SEV3


def _entry(seq: int, prev: object, minutes: float, action: str, **kw: object):  # type: ignore[no-untyped-def]
    ts = (T + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return make_entry(prev, EntryDraft(actor="a", action=action, **kw), ts)  # type: ignore[arg-type]


def _log(*specs: tuple[float, str, dict[str, object]]) -> list[object]:
    out: list[object] = []
    prev = None
    for i, (m, action, kw) in enumerate(specs, 1):
        prev = _entry(i, prev, m, action, **kw)
        out.append(prev)
    return out


def test_candidates_features_and_ranking() -> None:
    log = _log(
        (-300, "deployment.deploy", {"service": "web", "deployment_id": "d1",
                                      "detail": {"from": "v0", "to": "v1", "policy_digest": "a"}}),
        (-299, "rollout.succeeded", {"service": "web", "deployment_id": "d1", "detail": {}}),
        (-20, "deployment.deploy", {"service": "web", "deployment_id": "d2",
                                     "detail": {"from": "v1", "to": "v2", "policy_digest": "b"}}),
        (-19, "rollout.canary_step", {"service": "web", "deployment_id": "d2",
                                       "detail": {"weights": {"v1": 80, "v2": 20}}}),
        (-5, "deployment.deploy", {"service": "api", "deployment_id": "d3",
                                    "detail": {"from": "x", "to": "y", "policy_digest": "c"}}),
        (-4, "rollout.succeeded", {"service": "api", "deployment_id": "d3", "detail": {}}),
        (-3, "change.merged", {"service": "web", "detail": {"change_id": "c1", "merge_sha": "f" * 40}}),
        (+5, "deployment.deploy", {"service": "web", "deployment_id": "d4",
                                    "detail": {"from": "v2", "to": "v3", "policy_digest": "b"}}),
    )  # fmt: skip
    cands = {c.ref: c for c in candidates_from_audit(log, onset=T)}  # type: ignore[arg-type]
    assert set(cands) == {"deployment:d1", "deployment:d2", "deployment:d3", "change:c1"}  # d4 after onset
    d2 = cands["deployment:d2"]
    assert d2.kind == "config" and d2.exposure == pytest.approx(0.2) and d2.active
    f = features(d2, onset=T, service="web", related={"api"})
    assert f.scope == "same" and f.minutes_before == pytest.approx(19)
    assert features(cands["deployment:d3"], onset=T, service="web", related={"api"}).scope == "related"
    ranking = rank(cands.values(), onset=T, service="web")
    assert ranking.suspects[0].candidate.ref == "deployment:d2" and not ranking.no_change
    merge = next(x for x in ranking.suspects if x.candidate.kind == "merge")
    assert merge.probability < ranking.threshold and merge.candidate.exposure == 0.0
    nothing = rank([cands["deployment:d3"]], onset=T, service="web")
    assert nothing.no_change and nothing.top is None


def test_a_release_replaced_before_the_onset_serves_only_what_its_successor_left_it() -> None:
    def deploy(at: int, dep: str, frm: str, to: str, *steps: tuple[int, str, dict[str, object]]) -> list:
        out: list = [(at, "deployment.deploy", {"service": "web", "deployment_id": dep,
                                                "detail": {"from": frm, "to": to, "policy_digest": "a"}})]
        out += [(t, f"rollout.{phase}", {"service": "web", "deployment_id": dep, "detail": d})
                for t, phase, d in steps]
        return out  # fmt: skip

    log = _log(
        *deploy(-600, "d1", "v0", "v1", (-599, "succeeded", {})),
        *deploy(-300, "d2", "v1", "v2", (-299, "canary_step", {"weights": {"v1": 80, "v2": 20}})),
        *deploy(-200, "d3", "v2", "v3", (-199, "canary_step", {"weights": {"v2": 70, "v3": 30}}),
                (-150, "rolled_back", {})),
    )  # fmt: skip
    cands = {c.ref: c for c in candidates_from_audit(log, onset=T)}  # type: ignore[arg-type]
    assert cands["deployment:d1"].exposure == pytest.approx(0.8)  # v2's canary took 20 %
    assert cands["deployment:d2"].exposure == pytest.approx(0.2)  # d3 was rolled back: no share taken
    assert cands["deployment:d3"].exposure == 0.0
    log = _log(
        *deploy(-600, "d1", "v0", "v1", (-599, "succeeded", {})),
        *deploy(-60, "d2", "v1", "v2", (-59, "succeeded", {})),
    )
    cands = {c.ref: c for c in candidates_from_audit(log, onset=T)}  # type: ignore[arg-type]
    assert cands["deployment:d1"].exposure == 0.0 and cands["deployment:d2"].exposure == 1.0
    ranking = rank(cands.values(), onset=T, service="web")
    first, second = ranking.suspects
    assert first.candidate.ref == "deployment:d2" and first.probability > second.probability + 0.05


def test_score_terms_add_up() -> None:
    log = _log((-10, "dr.failover.decided", {"service": "web", "detail": {"primary": "h:1"}}))
    [c] = candidates_from_audit(log, onset=T)  # type: ignore[arg-type]
    s = rank([c], onset=T, service="web", weights=DEFAULT_WEIGHTS).suspects[0]
    assert sum(s.terms.values()) == pytest.approx(s.score, abs=0.01)
    assert c.kind == "failover" and c.ref.startswith("failover:web@")


def test_noise_never_reaches_the_timeline() -> None:
    log = _log((0, "access", {"detail": {}}), (1, "auth.login", {"detail": {}}),
               (2, "alert.firing", {"service": "web", "detail": {}}),
               (3, "alert.rollout", {"service": "web", "detail": {}}),
               (4, "escalation.paged", {"detail": {}}))  # fmt: skip
    assert [classify(e) for e in log] == [None, None, "alert", "notification", "notification"]  # type: ignore[arg-type]


def test_affected_requests_subtract_the_baseline_ratio() -> None:
    onset = T.timestamp()
    req = [(onset + 10 * i, 100.0) for i in range(-60, 30)]
    err = [(t, 1.0 if t <= onset else 11.0) for t, _ in req]
    h = History("test", 10.0, req, err)
    a = affected_requests(h, T, T + timedelta(minutes=2), T + timedelta(hours=1))
    assert a is not None and a.requests == 12 * 1000 and a.failed == 12 * 110
    assert a.baseline_error_ratio == pytest.approx(0.01) and a.excess_failed == pytest.approx(1200)
    assert affected_requests(History("none", 0), T, None, T) is None


def test_report_check_names_each_bad_line() -> None:
    e = _entry(1, None, 0, "incident.opened", service="web", detail={"incident": "i"})
    line = {"seq": 1, "hash": e.hash, "canonical": e.canonical, "ts": e.ts, "action": e.action, "actor": "a",
            "service": "web", "deployment_id": None, "outcome": "ok"}  # fmt: skip
    doc = {"format": "shipwarden.incident-report.v1", "timeline": [line]}
    assert verify_report(doc) == [] and verify_report(doc, {1: e.hash}) == []
    assert "different entry" in str(verify_report(doc, {1: "0" * 64})[0])
    assert "holds no entry" in str(verify_report(doc, {})[0])
    forged = {**line, "canonical": e.canonical.replace('"a"', '"b"')}
    assert "SHA-256" in str(verify_report({**doc, "timeline": [forged]})[0])
    rehashed = {**forged, "hash": hashlib.sha256(forged["canonical"].encode()).hexdigest()}
    assert "other actor" in str(verify_report({**doc, "timeline": [rehashed]})[0])
    assert "not an incident report" in str(verify_report({"format": "x"})[0])
