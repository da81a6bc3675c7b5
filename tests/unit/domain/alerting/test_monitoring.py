"""The monitoring section and the Prometheus rules it generates."""

from __future__ import annotations

import pytest

from shipwarden.domain.alerting import MonitoringPolicy, prometheus_rules, promql_duration, threshold_state
from shipwarden.domain.alerting.monitoring import CustomCondition

SPEC = {
    "evaluationInterval": "1s",
    "services": {
        "hello": {
            "availability": {"warning": 99.5, "critical": 99, "for": "1m", "window": "5m"},
            "errorRate": {"warning": 1, "critical": 5, "for": "0s", "window": "10s"},
            "latency": [{"quantile": 0.95, "warning": "300ms", "critical": "1s", "for": "2m"}],
            "saturation": {"cpu": {"warning": 80, "critical": 95}, "network": {"critical": 1e8}},
            "custom": [
                {"name": "SignupsLow", "promql": "sum(rate(signups_total[5m]))", "op": "<", "warning": 1},
                {"name": "CheckoutSlow", "nrql": "SELECT average(duration) FROM Transaction", "critical": 2},
            ],
        }
    },
}


def test_rules_per_signal_and_severity() -> None:
    m = MonitoringPolicy.model_validate(SPEC)
    doc = prometheus_rules(m, team="demo")
    [group] = doc["groups"]
    assert group["name"] == "shipwarden:hello" and group["interval"] == "1s"
    names = [(r["alert"], r["labels"]["severity"]) for r in group["rules"]]
    assert ("ServiceErrorRate", "warning") in names and ("ServiceErrorRate", "critical") in names
    assert ("ServiceLatencyP95", "critical") in names
    assert ("NodeNetworkSaturation", "critical") in names and (
        "NodeNetworkSaturation",
        "warning",
    ) not in names
    assert ("SignupsLow", "warning") in names
    assert all(n != "CheckoutSlow" for n, _ in names)  # NRQL is evaluated by shipwarden
    err = next(
        r
        for r in group["rules"]
        if r["alert"] == "ServiceErrorRate" and r["labels"]["severity"] == "critical"
    )
    assert err["expr"].endswith("> 5") and 'route="production"' in err["expr"] and err["for"] == "0s"
    lat = next(
        r
        for r in group["rules"]
        if r["alert"] == "ServiceLatencyP95" and r["labels"]["severity"] == "warning"
    )
    assert lat["expr"].endswith("> 0.3")
    assert m.nrql_conditions()[0][1].name == "CheckoutSlow"


@pytest.mark.parametrize(
    ("s", "text"), [(1, "1s"), (0.25, "250ms"), (60, "1m"), (5400, "90m"), (7200, "2h"), (0, "0s")]
)
def test_promql_duration(s: float, text: str) -> None:
    assert promql_duration(s) == text


def test_threshold_state_prefers_critical() -> None:
    c = CustomCondition.model_validate({"name": "X", "nrql": "SELECT 1", "warning": 1, "critical": 2})
    assert threshold_state(3, c, ">") == "critical"
    assert threshold_state(1.5, c, ">") == "warning"
    assert threshold_state(0.5, c, ">") is None
    assert threshold_state(None, c, ">") is None


@pytest.mark.parametrize(
    ("patch", "msg"),
    [
        ({"custom": [{"name": "X", "warning": 1}]}, "exactly one of 'promql' and 'nrql'"),
        ({"errorRate": {"for": "1m"}}, "a 'warning' threshold, a 'critical' one or both"),
        ({"availability": {"warning": 120}}, "percentages"),
        ({"saturation": {"selector": "job=node", "cpu": {"warning": 1}}}, "label selector"),
    ],
)
def test_bad_sections_are_refused(patch: dict[str, object], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        MonitoringPolicy.model_validate({"services": {"hello": patch}})


def test_condition_step_waits_for_for_and_prefers_nothing_on_no_data() -> None:
    from shipwarden.domain.alerting import condition_step

    c = CustomCondition.model_validate(
        {"name": "X", "nrql": "SELECT 1", "warning": 1, "critical": 2, "for": "10s"}
    )
    pending, firing = condition_step({}, 3.0, now=0.0, cond=c)
    assert pending == {"warning": 0.0, "critical": 0.0} and firing == set()
    pending, firing = condition_step(pending, 1.5, now=10.0, cond=c)
    assert pending == {"warning": 0.0} and firing == {"warning"}
    pending, firing = condition_step(pending, None, now=11.0, cond=c)
    assert pending == {} and firing == set()
