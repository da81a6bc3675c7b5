"""AnalysisRun: recorded samples in, one verdict out — live and replayed alike."""

from __future__ import annotations

from shipwarden.domain.analysis import AnalysisSpec
from shipwarden.domain.analysis_run import AnalysisRun, RunState
from shipwarden.domain.judge import Sample
from shipwarden.domain.measurement import Value


def _spec(warmup: str | None = None) -> AnalysisSpec:
    judge: dict[str, object] = {"samples": 10, "minRequests": 100, "metrics": {"latency": {"enabled": False}}}
    if warmup:
        judge["warmup"] = warmup
    return AnalysisSpec.model_validate({"judge": judge})


def _pair(t: float, canary_errors: int) -> tuple[Sample, Sample]:
    return Sample(t, 1000, 5, None), Sample(t, 1000, canary_errors, None)


def _records(pairs: list[tuple[Sample, Sample]]) -> list[dict[str, object]]:
    def js(s: Sample) -> dict[str, object]:
        return {"t": s.t, "requests": s.requests, "errors": s.errors}

    return [{"kind": "judge", "name": "judge", "baseline": js(b), "canary": js(c)} for b, c in pairs]


def test_a_cold_start_inside_the_warmup_is_not_judged() -> None:
    # the first three intervals: a cold canary with 20 % errors; then as healthy as the baseline
    pairs = [_pair(float(t), 200 if t < 3 else 5) for t in range(14)]
    auto = AnalysisRun.new(_spec(), 0.0, gating=True)  # warmup: auto (the judge's own)
    warm = AnalysisRun.new(_spec("3s"), 0.0, gating=True)
    bad = AnalysisRun.new(_spec("3s"), 0.0, gating=True)  # stays at 20 %: a regression, not a warm-up
    for b, c in pairs:
        auto.add_samples(b, c)
        warm.add_samples(b, c)
        bad.add_samples(b, _pair(b.t, 200)[1])
    status = warm.status()
    assert status.state is RunState.PASSED, status.detail
    assert status.numbers["judgeWarmupSamplesSkipped"] == 3
    assert bad.status().state is RunState.FAILED
    # without an explicit warm-up nothing is skipped before the judge, whose automatic warm-up and
    # "an excess that fades is not a regression" keep the cold start from rolling it back
    assert auto.status().state is not RunState.FAILED, auto.status().detail
    assert "judgeWarmupSamplesSkipped" not in auto.status().numbers


def test_replaying_the_records_skips_exactly_the_same_samples() -> None:
    pairs = [_pair(100.0 + t, 200 if t < 2 else 5) for t in range(10)]
    live = AnalysisRun.new(_spec("2s"), 99.5, gating=True)
    for b, c in pairs:
        live.add_samples(b, c)
    replayed = AnalysisRun.new(_spec("2s"), 100.0, gating=True)  # a resumed run starts at record 1
    replayed.replay(_records(pairs))
    assert replayed.status() == live.status()


def test_without_a_baseline_the_judge_is_left_out_and_threshold_checks_decide() -> None:
    """A first deployment has no old version: a judge would wait for samples that never come."""
    spec = AnalysisSpec.model_validate(
        {
            "judge": {"samples": 5},
            "metrics": [
                {"name": "err", "query": 'x{v="{version}"}[{window}]', "successCondition": {"max": 0.01}}
            ],
        }
    )
    first = AnalysisRun.new(spec, 0.0, gating=True, has_baseline=False)
    assert first.judge is None and not first.judge_due(10.0, 1.0)
    first.add_measurement("err", Value(0.001, at=1.0))
    st = first.status()
    assert st.state is RunState.PASSED, st.detail
    assert "no baseline" in st.detail and "no baseline" in st.numbers["judgeSkipped"]
    # with a baseline the same measurement is not enough: the judge must pass too
    later = AnalysisRun.new(spec, 0.0, gating=True)
    later.add_measurement("err", Value(0.001, at=1.0))
    assert later.judge is not None and later.status().state is RunState.RUNNING
