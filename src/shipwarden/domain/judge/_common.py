"""Bookkeeping shared by both judges: per-arm totals and the final-decision rule."""

from __future__ import annotations

from dataclasses import dataclass

from shipwarden.domain.analysis import JudgeSpec
from shipwarden.domain.judge.samples import Sample
from shipwarden.domain.judge.verdict import Classification, Decision, MetricVerdict, kayenta_score


@dataclass
class Totals:
    """Running per-arm request/error counts (for rates, minRequests and the report)."""

    baseline_requests: int = 0
    canary_requests: int = 0
    baseline_errors: int = 0
    canary_errors: int = 0
    samples: int = 0

    def add(self, baseline: Sample, canary: Sample) -> None:
        self.samples += 1
        self.baseline_requests += baseline.requests
        self.canary_requests += canary.requests
        self.baseline_errors += baseline.errors
        self.canary_errors += canary.errors

    def enough_requests(self, spec: JudgeSpec) -> bool:
        return min(self.baseline_requests, self.canary_requests) >= spec.min_requests


def final_decision(
    spec: JudgeSpec, metrics: tuple[MetricVerdict, ...], totals: Totals
) -> tuple[Decision, float | None, str]:
    """Decision at the end of the window from classified metrics.

    Order matters and is deliberate:

    1. A critical high/low, or a Kayenta score under ``passScore``, fails —
       even with few requests, because a clear regression is clear.
    2. Fewer than ``minRequests`` per arm, or half or more of the metrics
       without data, is *inconclusive*: absence of evidence never passes
       and never rolls back (research §6 takeaway 2; Kayenta turns ≥ 50 %
       no-data into a score of 0, we pause for a human instead).
    3. Otherwise the score decides.
    """
    score = kayenta_score(metrics)
    bad = [m.name for m in metrics if m.classification in (Classification.HIGH, Classification.LOW)]
    if bad and score is not None and score < spec.pass_score:
        return (
            Decision.FAIL,
            score,
            f"{', '.join(bad)} worse than baseline; score {score:g} < {spec.pass_score:g}",
        )
    if not totals.enough_requests(spec):
        return (
            Decision.INCONCLUSIVE,
            score,
            f"too little traffic: baseline {totals.baseline_requests}, canary {totals.canary_requests} "
            f"requests < minRequests {spec.min_requests} per arm",
        )
    nodata = [m.name for m in metrics if m.classification is Classification.NODATA]
    if metrics and 2 * len(nodata) >= len(metrics):
        return Decision.INCONCLUSIVE, score, f"no data for {', '.join(nodata)}"
    if score is None:
        return Decision.INCONCLUSIVE, score, "no metric could be classified"
    if score >= spec.pass_score:
        extra = f"; no data for {', '.join(nodata)}" if nodata else ""
        return Decision.PASS, score, f"score {score:g} ≥ passScore {spec.pass_score:g}{extra}"
    return Decision.FAIL, score, f"score {score:g} < passScore {spec.pass_score:g}"
