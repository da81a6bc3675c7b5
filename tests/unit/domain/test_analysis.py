"""Threshold-check semantics: every budget, its off-by-one, no-data, minRequests, provider errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shipwarden.domain.analysis import (
    AnalysisSpec,
    JudgeSpec,
    MetricCheck,
    Phase,
    combine,
    evaluate_measurements,
    load_judge_spec_text,
    next_measurement_at,
)
from shipwarden.domain.measurement import ErrorKind, NoData, ProviderError, Value
from shipwarden.domain.policy import PolicyError


def check(**kw: object) -> MetricCheck:
    base: dict[str, object] = {
        "name": "error-rate",
        "query": 'sum(rate(errors{{service="{service}",version="{version}"}}[{window}]))',
        "interval": "1m",
        "count": 10,
        "successCondition": {"max": 0.01},
    }
    base.update(kw)
    return MetricCheck.model_validate(base)


def values(*vs: float, requests: int | None = None) -> list[Value]:
    return [Value(at=60.0 * i, value=v, requests=requests) for i, v in enumerate(vs)]


GOOD, BAD = 0.001, 0.5


# -- models -----------------------------------------------------------------------------------


def test_the_query_window_is_its_own_setting_defaulting_to_the_interval() -> None:
    assert check().look_back == 60.0  # interval 1m
    assert check(interval="2s", window="10s").look_back == 10.0  # measure often, rate() over more scrapes
    assert check(interval=None, count=None).look_back == 60.0
    with pytest.raises(ValidationError, match="window"):
        check(window="soon")


def test_camel_case_aliases_and_durations() -> None:
    c = check(initialDelay="30s", failureLimit=2, consecutiveErrorLimit=1, minRequests=50)
    assert (c.interval, c.initial_delay, c.failure_limit, c.consecutive_error_limit, c.min_requests) == (
        60.0, 30.0, 2, 1, 50,
    )  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        {"successCondition": {"max": 0.01}, "failureLimt": 1},  # typo is an error, not ignored
        {"successCondition": {}},  # condition without bounds
        {"successCondition": {"min": 2, "max": 1}},
        {"successCondition": "result[0] < 0.01"},  # no expressions
        {"successCondition": None, "failureCondition": None},
        {"query": "rate({svc})"},  # unknown placeholder
        {"count": 3, "interval": None},
    ],
)
def test_invalid_checks_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        check(**bad)


def test_render_query_fills_placeholders_and_keeps_promql_braces() -> None:
    # the same template syntax as the metric providers: label-matcher braces are query syntax
    c = check(query='rate(http_errors{svc="{service}",v="{version}",code=~"5.."}[{window}])')
    assert c.render_query("shop", "v2", "5m") == 'rate(http_errors{svc="shop",v="v2",code=~"5.."}[5m])'
    with pytest.raises(ValidationError, match="unknown placeholder"):
        check(query="rate(x{{job}}[{windw}])")


def test_analysis_spec_embeds_judge_shorthand_and_rejects_duplicates() -> None:
    spec = AnalysisSpec.model_validate({"judge": "mann-whitney"})
    assert spec.judge is not None and spec.judge.algorithm == "mann-whitney"
    with pytest.raises(ValidationError, match="declared twice"):
        AnalysisSpec.model_validate({"metrics": [check().model_dump(by_alias=True)] * 2})
    with pytest.raises(ValidationError):
        AnalysisSpec.model_validate({})


def test_judge_spec_needs_gap_between_tolerance_and_regression() -> None:
    with pytest.raises(ValidationError, match="regression"):
        JudgeSpec.model_validate({"metrics": {"errorRate": {"tolerance": 0.5, "regression": 1.4}}})
    default = JudgeSpec()
    assert default.metrics.error_rate.tolerance_for("sequential") == pytest.approx(0.1)
    assert default.metrics.error_rate.tolerance_for("mann-whitney") == pytest.approx(0.25)


def test_load_judge_spec_reports_file_line_and_field() -> None:
    text = "judge:\n  algorithm: sequential\n  alpha: 2\n"
    with pytest.raises(PolicyError) as e:
        load_judge_spec_text(text, "p.yaml")
    (issue,) = e.value.issues
    assert (issue.file, issue.line, issue.field) == ("p.yaml", 3, "judge.alpha")
    assert load_judge_spec_text("algorithm: mann-whitney\nsamples: 12\n").samples == 12
    assert load_judge_spec_text("judge: sequential\n").algorithm == "sequential"


# -- single measurements ----------------------------------------------------------------------


def test_success_and_failure_conditions_follow_argo() -> None:
    both = check(successCondition={"max": 0.01}, failureCondition={"min": 0.05}, count=1)
    assert evaluate_measurements(both, values(0.005)).phase is Phase.SUCCESSFUL
    assert evaluate_measurements(both, values(0.07)).phase is Phase.FAILED
    # between the two conditions: inconclusive (Argo), and inconclusiveLimit 0 means the first one decides
    assert evaluate_measurements(both, values(0.03)).phase is Phase.INCONCLUSIVE
    only_success = check(count=1)
    assert evaluate_measurements(only_success, values(0.03)).phase is Phase.FAILED
    only_failure = check(successCondition=None, failureCondition={"min": 0.05}, count=1)
    assert evaluate_measurements(only_failure, values(0.03)).phase is Phase.SUCCESSFUL


def test_bounds_are_inclusive() -> None:
    assert evaluate_measurements(check(count=1), values(0.01)).phase is Phase.SUCCESSFUL
    assert evaluate_measurements(check(count=1), values(0.0100001)).phase is Phase.FAILED


# -- failure budgets --------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, 1, 3])
def test_failure_limit_fails_on_failure_number_limit_plus_one(limit: int) -> None:
    c = check(failureLimit=limit)
    just_inside = evaluate_measurements(c, values(*[BAD] * limit))
    assert just_inside.phase is Phase.RUNNING and just_inside.failed == limit
    over = evaluate_measurements(c, values(*[BAD] * (limit + 1)))
    assert over.phase is Phase.FAILED
    assert over.decided_at == 60.0 * limit  # the (limit+1)-th measurement decided
    assert f"> failureLimit {limit}" in over.reason


def test_failure_limit_counts_failures_in_total_not_in_a_row() -> None:
    c = check(failureLimit=2)
    r = evaluate_measurements(c, values(BAD, GOOD, BAD, GOOD, BAD))
    assert r.phase is Phase.FAILED and r.failed == 3 and r.consecutive_failures == 1


def test_failure_limit_minus_one_never_fails_on_total() -> None:
    r = evaluate_measurements(check(failureLimit=-1, count=4), values(BAD, BAD, BAD, GOOD))
    assert r.phase is Phase.SUCCESSFUL and r.failed == 3


def test_consecutive_failure_limit_ignores_blips() -> None:
    c = check(consecutiveFailureLimit=2)  # total budget then defaults to unlimited
    blips = evaluate_measurements(c, values(BAD, BAD, GOOD, BAD, BAD, GOOD, BAD, BAD))
    assert blips.phase is Phase.RUNNING and blips.failed == 6
    streak = evaluate_measurements(c, values(BAD, GOOD, BAD, BAD, BAD))
    assert streak.phase is Phase.FAILED and streak.decided_at == 240.0
    assert "3 failures in a row > consecutiveFailureLimit 2" in streak.reason


def test_no_data_does_not_break_a_failure_streak() -> None:
    c = check(consecutiveFailureLimit=1, inconclusiveLimit=5)
    ms = [Value(BAD, 0), NoData("no data", 60), Value(BAD, 120)]
    assert evaluate_measurements(c, ms).phase is Phase.FAILED


def test_both_budgets_apply_when_both_are_set() -> None:
    c = check(failureLimit=2, consecutiveFailureLimit=5)
    r = evaluate_measurements(c, values(BAD, GOOD, BAD, GOOD, BAD))
    assert r.phase is Phase.FAILED and "failureLimit 2" in r.reason


# -- no data, minRequests, inconclusive -------------------------------------------------------


def test_no_data_is_inconclusive_never_failed_or_passed() -> None:
    c = check(count=3, inconclusiveLimit=3)
    r = evaluate_measurements(c, [NoData("no data", 0), NoData("no data", 60), NoData("no data", 120)])
    assert r.phase is Phase.INCONCLUSIVE and r.failed == 0 and r.successful == 0
    assert "none succeeded" in r.reason


def test_nan_value_counts_as_no_data() -> None:
    r = evaluate_measurements(check(count=1), [Value(float("nan"), 0)])
    assert r.phase is Phase.INCONCLUSIVE and r.failed == 0


def test_inconclusive_limit_off_by_one() -> None:
    c = check(inconclusiveLimit=2)
    assert evaluate_measurements(c, [NoData("no data", 0), NoData("no data", 60)]).phase is Phase.RUNNING
    r = evaluate_measurements(c, [NoData("no data", 0), NoData("no data", 60), NoData("no data", 120)])
    assert r.phase is Phase.INCONCLUSIVE and "3 inconclusive measurement(s) > inconclusiveLimit 2" in r.reason


def test_min_requests_makes_small_samples_inconclusive_even_when_bad() -> None:
    c = check(minRequests=100, inconclusiveLimit=10, count=3)
    low = evaluate_measurements(c, values(BAD, BAD, BAD, requests=99))
    assert low.phase is Phase.INCONCLUSIVE and low.failed == 0
    assert "99 requests < minRequests 100" in low.outcomes[0].why
    enough = evaluate_measurements(c, values(BAD, requests=100))
    assert enough.phase is Phase.FAILED


def test_min_requests_without_a_request_count_is_inconclusive() -> None:
    r = evaluate_measurements(check(minRequests=10, count=1), values(GOOD))
    assert r.phase is Phase.INCONCLUSIVE


def test_count_reached_with_successes_is_successful() -> None:
    c = check(count=3, inconclusiveLimit=1)
    r = evaluate_measurements(c, [Value(GOOD, 0), NoData("no data", 60), Value(GOOD, 120)])
    assert r.phase is Phase.SUCCESSFUL and (r.successful, r.inconclusive) == (2, 1)
    assert evaluate_measurements(c, values(GOOD, GOOD)).phase is Phase.RUNNING


def test_single_measurement_without_interval_or_count() -> None:
    c = check(interval=None, count=None)
    assert evaluate_measurements(c, values(GOOD)).phase is Phase.SUCCESSFUL
    background = check(count=None)  # interval, no count: runs until stopped
    assert evaluate_measurements(background, values(*[GOOD] * 50)).phase is Phase.RUNNING


# -- provider errors --------------------------------------------------------------------------


def test_errors_are_not_failures_and_fail_only_after_the_streak_limit() -> None:
    c = check()  # consecutiveErrorLimit defaults to 4: the 5th error in a row is an error phase
    four = [ProviderError("connection refused", kind=ErrorKind.CONNECTION, at=10.0 * i) for i in range(4)]
    r4 = evaluate_measurements(c, four)
    assert r4.phase is Phase.RUNNING and r4.failed == 0 and r4.errors == 4
    r5 = evaluate_measurements(c, [*four, ProviderError("timeout", kind=ErrorKind.CONNECTION, at=40)])
    assert r5.phase is Phase.ERROR and "5 provider errors in a row > consecutiveErrorLimit 4" in r5.reason


def test_a_completed_measurement_resets_the_error_streak() -> None:
    c = check(consecutiveErrorLimit=1, inconclusiveLimit=5)
    ms = [
        ProviderError("x", kind=ErrorKind.CONNECTION, at=0),
        NoData("no data", 10),
        ProviderError("x", kind=ErrorKind.CONNECTION, at=20),
        Value(GOOD, 30),
        ProviderError("x", kind=ErrorKind.CONNECTION, at=40),
    ]
    r = evaluate_measurements(c, ms)
    assert r.phase is Phase.RUNNING and r.errors == 3 and r.consecutive_errors == 1


def test_measurements_are_evaluated_in_time_order_and_first_decision_sticks() -> None:
    c = check(failureLimit=0)
    r = evaluate_measurements(c, [Value(GOOD, 120), Value(BAD, 60), Value(GOOD, 0)])
    assert r.phase is Phase.FAILED and r.decided_at == 60


def test_next_measurement_retries_errors_sooner() -> None:
    c = check(initialDelay="30s")
    assert next_measurement_at(c, 1000.0, []) == 1030.0
    assert next_measurement_at(c, 1000.0, [Value(GOOD, 1030.0)]) == 1090.0
    assert (
        next_measurement_at(
            c, 1000.0, [Value(GOOD, 1030.0), ProviderError("x", kind=ErrorKind.CONNECTION, at=1090.0)]
        )
        == 1100.0
    )


def test_combine_takes_the_worst_phase() -> None:
    ok = evaluate_measurements(check(count=1), values(GOOD))
    bad = evaluate_measurements(check(count=1), values(BAD))
    unsure = evaluate_measurements(check(count=1), [NoData("no data", 0)])
    assert combine([ok, ok]) is Phase.SUCCESSFUL
    assert combine([ok, unsure]) is Phase.INCONCLUSIVE
    assert combine([unsure, bad, ok]) is Phase.FAILED
    assert combine([]) is Phase.RUNNING
