"""Result types shared by the judges.

A verdict is what the controller acts on (``decision``) plus the numbers a
person needs to trust it: per-metric rates, the ratio, the p-value or
e-value and the thresholds they were compared with, and the sample index
at which the judge decided — the audit trail records all of it (D11).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from shipwarden.domain.judge.samples import Sample


class Decision(StrEnum):
    RUNNING = "running"  # not enough evidence yet: keep the canary where it is and measure again
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"  # pause for a human: never an automatic pass or rollback

    @property
    def done(self) -> bool:
        return self is not Decision.RUNNING


class Classification(StrEnum):
    RUNNING = "running"
    PASS = "pass"
    HIGH = "high"
    LOW = "low"
    NODATA = "nodata"


def clean_json(v: Any) -> Any:
    """JSON has no NaN/inf: report them as null so the output always parses."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: clean_json(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [clean_json(x) for x in v]
    return v


@dataclass(frozen=True)
class MetricVerdict:
    """One metric: what was compared, how it was classified, and why."""

    name: str
    classification: Classification
    critical: bool
    baseline: float  # the compared statistic for the baseline (rate, or latency in ms)
    canary: float
    ratio: float  # canary / baseline of the compared statistic; NaN if undefined
    reason: str
    numbers: dict[str, float | int | str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = clean_json(
            {
                "name": self.name,
                "classification": self.classification.value,
                "critical": self.critical,
                "baseline": self.baseline,
                "canary": self.canary,
                "ratio": self.ratio,
                "reason": self.reason,
                **self.numbers,
            }
        )
        return out


@dataclass(frozen=True)
class Verdict:
    judge: str
    decision: Decision
    samples: int  # pairs seen so far
    decided_at: int | None  # 1-based index of the sample pair that decided; None while running
    reason: str
    metrics: tuple[MetricVerdict, ...] = ()
    score: float | None = None
    baseline_requests: int = 0
    canary_requests: int = 0

    def metric(self, name: str) -> MetricVerdict:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = clean_json(
            {
                "judge": self.judge,
                "decision": self.decision.value,
                "decidedAt": self.decided_at,
                "samples": self.samples,
                "reason": self.reason,
                "score": self.score,
                "baselineRequests": self.baseline_requests,
                "canaryRequests": self.canary_requests,
                "metrics": [m.to_dict() for m in self.metrics],
            }
        )
        return out


class Judge(Protocol):
    """What a controller drives once per analysis tick."""

    name: str

    def update(self, baseline: Sample, canary: Sample) -> Verdict:
        """Add one interval of both arms; returns the verdict so far (sticky once decided)."""
        ...

    def finish(self) -> Verdict:
        """The analysis window is over now: decide with what has been seen."""
        ...

    @property
    def verdict(self) -> Verdict: ...


def kayenta_score(metrics: tuple[MetricVerdict, ...]) -> float | None:
    """Kayenta's score: % of classified metrics that passed; 0 if a critical metric is high/low.

    No-data and still-running metrics are left out; None when nothing is classified.
    """
    judged = [
        m
        for m in metrics
        if m.classification in (Classification.PASS, Classification.HIGH, Classification.LOW)
    ]
    if any(m.critical and m.classification in (Classification.HIGH, Classification.LOW) for m in judged):
        return 0.0
    if not judged:
        return None
    return round(100.0 * sum(m.classification is Classification.PASS for m in judged) / len(judged), 2)
