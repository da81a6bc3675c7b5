"""One analysis run: recorded measurements in, one verdict out.

The same object serves the live controller and ``shipwarden replay``: the
controller records every judge sample pair and every metric measurement
*before* feeding it here, so a replay (possibly with a changed policy) sees
exactly what the live run saw, in the same order, and a resumed controller
rebuilds the run from the store instead of starting its evidence over.

How the parts combine — the most severe wins:

* any metric in phase failed/error, or the judge's ``fail`` → **failed**;
* otherwise any inconclusive metric or judge → **inconclusive** (the
  controller pauses or rolls back, per ``onInconclusive``);
* otherwise, for a *gating* run (an analysis step, pre/post-promotion),
  **passed** once every metric with a planned count finished successfully,
  every open-ended metric has at least one successful measurement and no
  objection, and the judge (if any) said ``pass``;
* a *background* run never passes; it can only object.

A deployment with no baseline (the service's first, when blue-green runs
its pre- or post-promotion analysis) has nothing for the judge to compare
with: the run leaves the judge out and says so, and its threshold checks
decide alone — rather than waiting for samples that cannot come until the
progress deadline fails the release.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shipwarden.domain.analysis import (
    AnalysisSpec,
    MetricCheck,
    MetricResult,
    evaluate_measurements,
    next_measurement_at,
)
from shipwarden.domain.analysis import Phase as MetricPhase
from shipwarden.domain.judge import make_judge
from shipwarden.domain.judge.samples import Sample, parse_sample
from shipwarden.domain.judge.verdict import Decision, Judge, Verdict
from shipwarden.domain.measurement import Measurement, NoData, ProviderError, Value


class RunState(StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class RunStatus:
    state: RunState
    detail: str
    numbers: dict[str, Any]
    decided_at: float | None = None  # time of the record that decided it


def measurement_to_json(m: Measurement) -> dict[str, Any]:
    if isinstance(m, Value):
        return {"type": "value", "at": m.at, "value": m.value, "requests": m.requests}
    if isinstance(m, NoData):
        return {"type": "nodata", "at": m.at, "reason": m.reason}
    return {"type": "error", "at": m.at, "message": str(m), "kind": m.kind.value}


def measurement_from_json(d: dict[str, Any]) -> Measurement:
    if d["type"] == "value":
        return Value(float(d["value"]), d["at"], requests=d.get("requests"))
    if d["type"] == "nodata":
        return NoData(d.get("reason", "the query returned no data"), d["at"])
    return ProviderError.recorded(d.get("message", ""), d["at"])


@dataclass
class AnalysisRun:
    spec: AnalysisSpec
    started_at: float
    gating: bool
    judge: Judge | None = None
    measurements: dict[str, list[Measurement]] = field(default_factory=dict)
    baseline: dict[str, list[Measurement]] = field(default_factory=dict)
    last_sample_at: float | None = None
    last_verdict: Verdict | None = None
    decided_at: float | None = None
    first_sample_at: float | None = None
    warmup_skipped: int = 0
    judge_skipped: str | None = None  # why the policy's judge does not apply to this run

    @classmethod
    def new(
        cls, spec: AnalysisSpec, started_at: float, *, gating: bool, has_baseline: bool = True
    ) -> AnalysisRun:
        judged = spec.judge is not None and has_baseline
        return cls(
            spec,
            started_at,
            gating,
            make_judge(spec.judge) if judged and spec.judge is not None else None,
            {m.name: [] for m in spec.metrics},
            {m.name: [] for m in spec.metrics},
            judge_skipped=(
                "judge skipped: no baseline to compare (first deployment)"
                if spec.judge is not None and not has_baseline
                else None
            ),
        )

    # -- feeding -------------------------------------------------------------------------
    def add_samples(self, baseline: Sample, canary: Sample) -> None:
        """Feed one interval to the judge; within the warm-up (measured from the first sample,
        so a replay of the same records skips exactly the same ones) it is only counted."""
        self.last_sample_at = canary.t
        if self.first_sample_at is None:
            self.first_sample_at = canary.t
        warmup = self.spec.judge.warmup_seconds if self.spec.judge is not None else 0.0
        if canary.t - self.first_sample_at < warmup:
            self.warmup_skipped += 1
            return
        if self.judge is not None and (self.last_verdict is None or not self.last_verdict.decision.done):
            self.last_verdict = self.judge.update(baseline, canary)

    def add_measurement(self, name: str, canary: Measurement, baseline: Measurement | None = None) -> None:
        self.measurements[name].append(canary)
        if baseline is not None:
            self.baseline[name].append(baseline)

    def replay(self, records: Sequence[dict[str, Any]]) -> None:
        """Feed stored records (see ``record_*``) in order."""
        for r in records:
            if r["kind"] == "judge":
                self.add_samples(parse_sample(r["baseline"]), parse_sample(r["canary"]))
            elif r["name"] in self.measurements:
                base = measurement_from_json(r["baseline"]) if r.get("baseline") else None
                self.add_measurement(r["name"], measurement_from_json(r["canary"]), base)

    # -- scheduling ----------------------------------------------------------------------
    def due_metrics(self, now: float) -> list[MetricCheck]:
        due = []
        for check in self.spec.metrics:
            ms = self.measurements[check.name]
            if evaluate_measurements(check, ms).phase.done:
                continue
            if now >= next_measurement_at(check, self.started_at, ms):
                due.append(check)
        return due

    def judge_due(self, now: float, interval_s: float) -> bool:
        if self.judge is None or (self.last_verdict is not None and self.last_verdict.decision.done):
            return False
        return self.last_sample_at is None or now - self.last_sample_at >= interval_s

    # -- verdict -------------------------------------------------------------------------
    def results(self) -> list[MetricResult]:
        return [evaluate_measurements(c, self.measurements[c.name]) for c in self.spec.metrics]

    def status(self) -> RunStatus:
        results = self.results()
        numbers: dict[str, Any] = {"metrics": [r.to_dict() for r in results]}
        if self.last_verdict is not None:
            numbers["judge"] = self.last_verdict.to_dict()
        if self.warmup_skipped:
            numbers["judgeWarmupSamplesSkipped"] = self.warmup_skipped
        if self.judge_skipped:
            numbers["judgeSkipped"] = self.judge_skipped
        failed = [r for r in results if r.phase in (MetricPhase.FAILED, MetricPhase.ERROR)]
        judge = self.last_verdict.decision if self.last_verdict is not None else None
        if failed or judge is Decision.FAIL:
            why = [f"{r.name}: {r.reason}" for r in failed]
            if judge is Decision.FAIL and self.last_verdict is not None:
                why.append(f"judge: {self.last_verdict.reason}")
            at = min((r.decided_at for r in failed if r.decided_at is not None), default=self.last_sample_at)
            return RunStatus(RunState.FAILED, "; ".join(why), numbers, at)
        inconclusive = [r for r in results if r.phase is MetricPhase.INCONCLUSIVE]
        if inconclusive or judge is Decision.INCONCLUSIVE:
            why = [f"{r.name}: {r.reason}" for r in inconclusive]
            if judge is Decision.INCONCLUSIVE and self.last_verdict is not None:
                why.append(f"judge: {self.last_verdict.reason}")
            return RunStatus(RunState.INCONCLUSIVE, "; ".join(why), numbers, self.last_sample_at)
        if not self.gating:
            return RunStatus(RunState.RUNNING, "background analysis: no objection so far", numbers)
        metrics_ok = all(
            r.phase is MetricPhase.SUCCESSFUL or (c.planned_count is None and r.successful > 0)
            for c, r in zip(self.spec.metrics, results, strict=True)
        )
        judge_ok = self.judge is None or judge is Decision.PASS
        if metrics_ok and judge_ok:
            parts = [f"{r.name}: {r.successful}/{r.measured} ok" for r in results]
            if self.last_verdict is not None:
                parts.append(f"judge: {self.last_verdict.reason}")
            if self.judge_skipped:
                parts.append(self.judge_skipped)
            return RunStatus(RunState.PASSED, "; ".join(parts) or "passed", numbers, self.last_sample_at)
        return RunStatus(RunState.RUNNING, "measuring", numbers)
