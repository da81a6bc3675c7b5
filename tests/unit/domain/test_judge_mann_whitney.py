"""Kayenta-style Mann-Whitney judge: fixed window, clear-cut cases, Kayenta's special cases."""

from __future__ import annotations

import numpy as np
import pytest

from shipwarden.domain.analysis import JudgeMetric, JudgeSpec
from shipwarden.domain.judge import Classification, Decision, MannWhitneyJudge, Sample
from shipwarden.domain.judge.mann_whitney import classify, hodges_lehmann_ci
from tests.unit.domain.test_judge_corpus import pairs


def run(judge: MannWhitneyJudge, data: list[tuple[Sample, Sample]]):  # type: ignore[no-untyped-def]
    v = judge.verdict
    for b, c in data:
        v = judge.update(b, c)
    return v


def test_decides_only_at_the_end_of_the_window() -> None:
    j = MannWhitneyJudge(JudgeSpec(samples=20))
    data = pairs(1, n=20, requests=2000, error_factor=3.0)
    for i, (b, c) in enumerate(data[:-1], start=1):
        v = j.update(b, c)
        assert v.decision is Decision.RUNNING and v.decided_at is None and v.samples == i
    v = j.update(*data[-1])
    assert v.decision is Decision.FAIL and v.decided_at == 20
    m = v.metric("error_rate")
    assert m.classification is Classification.HIGH
    assert m.numbers["pValue"] < 0.01  # type: ignore[operator]
    assert m.numbers["ciLower"] > m.numbers["band"]  # type: ignore[operator]


def test_same_version_passes() -> None:
    v = run(MannWhitneyJudge(JudgeSpec(samples=30)), pairs(2, requests=1000))
    assert v.decision is Decision.PASS and v.score == 100.0


def test_latency_regression_is_high() -> None:
    v = run(MannWhitneyJudge(JudgeSpec(samples=30)), pairs(3, requests=1000, latency_factor=1.3))
    assert v.decision is Decision.FAIL and v.metric("latency").classification is Classification.HIGH


def test_identical_or_constant_series_pass_and_empty_is_nodata() -> None:
    cfg = JudgeMetric()
    same = np.array([0.1, 0.2, 0.3])
    assert classify("m", same, same[::-1].copy(), cfg).classification is Classification.PASS
    const = np.zeros(5)
    assert classify("m", const, const + 0.0, cfg).classification is Classification.PASS
    empty = np.array([np.nan, np.nan])
    assert classify("m", empty, same, cfg).classification is Classification.NODATA


def test_direction_and_allowed_increase_gate_the_classification() -> None:
    base = np.linspace(1.0, 2.0, 30)
    higher = base + 1.0
    assert classify("m", base, higher, JudgeMetric()).classification is Classification.HIGH
    assert (
        classify("m", base, higher, JudgeMetric(direction="decrease")).classification is Classification.PASS
    )
    assert classify("m", higher, base, JudgeMetric(direction="either")).classification is Classification.LOW
    lenient = JudgeMetric.model_validate({"allowedIncrease": 2.0})
    assert classify("m", base, higher, lenient).classification is Classification.PASS  # mean ratio ~1.67 < 2


def test_hodges_lehmann_estimate_and_interval_cover_a_known_shift() -> None:
    rng = np.random.default_rng(0)
    b = rng.normal(10, 1, 40)
    c = rng.normal(12, 1, 40)
    est, lo, hi = hodges_lehmann_ci(c, b, 0.98)
    assert lo < est < hi
    assert lo < 2.0 < hi
    assert est == pytest.approx(2.0, abs=0.6)


def test_finish_judges_a_short_window_and_says_so() -> None:
    j = MannWhitneyJudge(JudgeSpec(samples=30))
    for b, c in pairs(4, n=10, requests=1000):
        j.update(b, c)
    v = j.finish()
    assert v.decision is Decision.PASS and v.decided_at == 10 and "cut short" in v.reason


def test_too_little_traffic_is_inconclusive() -> None:
    v = run(MannWhitneyJudge(JudgeSpec(samples=10, minRequests=5000)), pairs(5, n=10, requests=50))
    assert v.decision is Decision.INCONCLUSIVE
