"""Kayenta-style fixed-window judge (NetflixACAJudge with the Mann-Whitney classifier).

Each metric becomes one value per interval and arm (error rate = errors /
requests; latency = the interval's ``quantile`` latency).  After exactly
``spec.samples`` intervals the two series are compared with a Mann-Whitney U
test; the Hodges-Lehmann estimate of the shift and its distribution-free
confidence interval (``confidence``, Kayenta passes 0.98) decide:

* **high** when the CI's lower bound is above ``tolerance × |estimate|`` and
  the effect size (mean ratio canary / baseline) is ≥ ``allowedIncrease``;
* **low** in the mirror case; **pass** otherwise.

Kept deliberately close to Kayenta (including its odd band definition) so
that results can be compared with an existing Kayenta setup; it is the
baseline the sequential judge is benchmarked against.  Its weakness is
by design: it never decides before the window is over.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from shipwarden.domain.analysis import JudgeMetric, JudgeSpec
from shipwarden.domain.judge._common import Totals, final_decision
from shipwarden.domain.judge.samples import FloatArray, Sample
from shipwarden.domain.judge.verdict import Classification, Decision, MetricVerdict, Verdict


def hodges_lehmann_ci(
    canary: FloatArray, baseline: FloatArray, confidence: float
) -> tuple[float, float, float]:
    """(estimate, lower, upper) of the location shift canary − baseline.

    The CI is the pair of order statistics of all pairwise differences cut at
    the normal-approximation critical value of U (Bauer 1972), which is what
    R's ``wilcox.test(conf.int=TRUE)`` approximates for larger samples.
    """
    diffs = np.sort(np.subtract.outer(canary, baseline).ravel())
    n, m = canary.size, baseline.size
    nm = diffs.size
    est = float(np.median(diffs))
    z = float(stats.norm.ppf(1.0 - (1.0 - confidence) / 2.0))
    c = math.floor(nm / 2.0 - z * math.sqrt(n * m * (n + m + 1) / 12.0))
    if c < 1:
        return est, -math.inf, math.inf
    return est, float(diffs[c - 1]), float(diffs[nm - c])


def classify(name: str, baseline: FloatArray, canary: FloatArray, cfg: JudgeMetric) -> MetricVerdict:
    """Kayenta's MannWhitneyClassifier on two per-interval series (NaNs removed first)."""
    b = baseline[~np.isnan(baseline)]
    c = canary[~np.isnan(canary)]
    if b.size == 0 or c.size == 0:
        return MetricVerdict(
            name, Classification.NODATA, cfg.critical, math.nan, math.nan, math.nan,
            f"no data ({b.size} baseline, {c.size} canary intervals with a value)",
        )  # fmt: skip
    bm, cm = float(np.mean(b)), float(np.mean(c))
    ratio = cm / bm if bm != 0 else math.nan
    if np.array_equal(np.sort(b), np.sort(c)) or np.unique(np.concatenate([b, c])).size == 1:
        return MetricVerdict(
            name, Classification.PASS, cfg.critical, bm, cm, ratio, "baseline and canary values are identical"
        )
    est, lo, hi = hodges_lehmann_ci(c, b, cfg.confidence)
    p = float(stats.mannwhitneyu(c, b, alternative="two-sided").pvalue)
    band = cfg.tolerance_for("mann-whitney") * abs(est)
    numbers: dict[str, float | int | str | None] = {
        "pValue": p,
        "estimate": est,
        "ciLower": lo,
        "ciUpper": hi,
        "band": band,
        "confidence": cfg.confidence,
        "intervals": int(min(b.size, c.size)),
    }
    effect_up = math.isnan(ratio) or ratio >= cfg.allowed_increase
    effect_down = math.isnan(ratio) or ratio <= cfg.allowed_decrease
    if cfg.direction in ("increase", "either") and lo > band and effect_up:
        why = (
            f"canary higher: {cfg.confidence:.0%} CI of the shift [{lo:.4g}, {hi:.4g}] lies above the band "
            f"±{band:.4g} (p={p:.3g}, mean ratio {ratio:.3g})"
        )
        return MetricVerdict(name, Classification.HIGH, cfg.critical, bm, cm, ratio, why, numbers)
    if cfg.direction in ("decrease", "either") and hi < -band and effect_down:
        why = (
            f"canary lower: {cfg.confidence:.0%} CI of the shift [{lo:.4g}, {hi:.4g}] lies below the band "
            f"±{band:.4g} (p={p:.3g}, mean ratio {ratio:.3g})"
        )
        return MetricVerdict(name, Classification.LOW, cfg.critical, bm, cm, ratio, why, numbers)
    why = f"no significant shift: CI [{lo:.4g}, {hi:.4g}], band ±{band:.4g}, p={p:.3g}"
    return MetricVerdict(name, Classification.PASS, cfg.critical, bm, cm, ratio, why, numbers)


class MannWhitneyJudge:
    """Fixed window of ``spec.samples`` intervals, then one Kayenta-style judgement."""

    name = "mann-whitney"

    def __init__(self, spec: JudgeSpec | None = None) -> None:
        self.spec = spec or JudgeSpec(algorithm="mann-whitney")
        self._totals = Totals()
        self._err: list[tuple[float, float]] = []
        self._lat: list[tuple[float, float]] = []
        self._verdict = Verdict(self.name, Decision.RUNNING, 0, None, "no samples yet")

    @property
    def verdict(self) -> Verdict:
        return self._verdict

    def update(self, baseline: Sample, canary: Sample) -> Verdict:
        if self._verdict.decision.done:
            return self._verdict
        self._totals.add(baseline, canary)
        self._err.append(
            (
                baseline.errors / baseline.requests if baseline.requests else math.nan,
                canary.errors / canary.requests if canary.requests else math.nan,
            )
        )
        q = self.spec.metrics.latency.quantile
        self._lat.append((baseline.quantile(q), canary.quantile(q)))
        n = self._totals.samples
        if n >= self.spec.samples:
            return self.finish()
        self._verdict = Verdict(
            self.name, Decision.RUNNING, n, None,
            f"collecting the fixed window: {n} of {self.spec.samples} samples",
            baseline_requests=self._totals.baseline_requests, canary_requests=self._totals.canary_requests,
        )  # fmt: skip
        return self._verdict

    def finish(self) -> Verdict:
        if self._verdict.decision.done:
            return self._verdict
        metrics: list[MetricVerdict] = []
        cfg = self.spec.metrics
        if cfg.error_rate.enabled:
            arr = np.array(self._err, dtype=np.float64).reshape(-1, 2)
            metrics.append(classify("error_rate", arr[:, 0], arr[:, 1], cfg.error_rate))
        if cfg.latency.enabled:
            arr = np.array(self._lat, dtype=np.float64).reshape(-1, 2)
            metrics.append(classify("latency", arr[:, 0], arr[:, 1], cfg.latency))
        mt = tuple(metrics)
        n = self._totals.samples
        if n == 0:
            self._verdict = Verdict(self.name, Decision.INCONCLUSIVE, 0, None, "no samples")
            return self._verdict
        decision, score, why = final_decision(self.spec, mt, self._totals)
        if n < self.spec.samples:
            why += f" (window cut short: {n} of {self.spec.samples} samples)"
        self._verdict = Verdict(
            self.name, decision, n, n, why, mt, score,
            self._totals.baseline_requests, self._totals.canary_requests,
        )  # fmt: skip
        return self._verdict
