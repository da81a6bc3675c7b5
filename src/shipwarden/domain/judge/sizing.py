"""How big a window must be: power and detectable ratio of the rate-ratio test.

Both judges' signals reduce to event counts (errors, or requests slower than
the baseline's quantile) out of an exposure (requests) per arm.  Given the
window's total events, the canary's share is Binomial(T, π) with
π = ρ·n_c / (ρ·n_c + n_b) — the conditional test the sequential judge runs at
its horizon.  This module answers, before or during a rollout, the planning
questions about that test (normal approximation, which is what sample-size
planning uses):

* ``ratio_test_power`` — the probability that a one-sided level-α test of
  "ρ ≤ null_ratio" rejects when the canary is really ``ratio`` times worse;
* ``detectable_ratio`` — the smallest ratio it catches with a given power;
* ``samples_needed`` — how many intervals of the given traffic that takes.

"Power at ×2 errors" only means something for a window this test could
detect ×2 in: with 0.2 % errors and 1,000 requests per arm nothing can.
The sequential judge reports ``detectableRatio`` with every verdict, so an
operator sees whether a pass is evidence or only absence of evidence.
"""

from __future__ import annotations

import math
from statistics import NormalDist

_N = NormalDist()
_MAX_RATIO = 1e4


def ratio_test_power(
    baseline_exposure: float,
    canary_exposure: float,
    baseline_rate: float,
    ratio: float,
    alpha: float,
    null_ratio: float = 1.0,
) -> float:
    """Power of the one-sided conditional test of ρ ≤ ``null_ratio`` at level ``alpha``.

    ``baseline_rate`` is the baseline's event rate per unit of exposure; the
    canary's is ``ratio`` times it.  Returns 0 when either arm has no exposure
    or no events are expected.
    """
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if baseline_exposure <= 0 or canary_exposure <= 0 or baseline_rate <= 0:
        return 0.0  # no events expected: nothing to test
    if ratio <= null_ratio:
        return alpha  # at (or under) the null the rejection rate is the size, at most
    events = baseline_exposure * baseline_rate + canary_exposure * baseline_rate * ratio
    pi0 = null_ratio * canary_exposure / (null_ratio * canary_exposure + baseline_exposure)
    pi1 = ratio * canary_exposure / (ratio * canary_exposure + baseline_exposure)
    z_alpha = _N.inv_cdf(1.0 - alpha)
    num = math.sqrt(events) * (pi1 - pi0) - z_alpha * math.sqrt(pi0 * (1.0 - pi0))
    return _N.cdf(num / math.sqrt(pi1 * (1.0 - pi1)))


def detectable_ratio(
    baseline_exposure: float,
    canary_exposure: float,
    baseline_rate: float,
    alpha: float,
    power: float,
    null_ratio: float = 1.0,
) -> float:
    """The smallest ratio the test detects with probability ≥ ``power``; ``inf`` if none up to 10⁴."""
    if not (0.0 < power < 1.0):
        raise ValueError(f"power must be in (0, 1), got {power}")

    def ok(r: float) -> bool:
        power_at_r = ratio_test_power(baseline_exposure, canary_exposure, baseline_rate, r, alpha, null_ratio)
        return power_at_r >= power

    if not ok(_MAX_RATIO):
        return math.inf
    lo, hi = null_ratio, _MAX_RATIO
    while hi / lo > 1.001:  # power is increasing in the ratio: bisect on a log scale
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def samples_needed(
    baseline_per_sample: float,
    canary_per_sample: float,
    baseline_rate: float,
    ratio: float,
    alpha: float,
    power: float,
    null_ratio: float = 1.0,
    limit: int = 100_000,
) -> int | None:
    """Intervals of this traffic needed to detect ``ratio`` with ``power``; None beyond ``limit``."""

    def ok(k: int) -> bool:
        return (
            ratio_test_power(
                k * baseline_per_sample, k * canary_per_sample, baseline_rate, ratio, alpha, null_ratio
            )
            >= power
        )

    if not ok(limit):
        return None
    lo, hi = 0, 1
    while not ok(hi):
        lo, hi = hi, min(2 * hi, limit)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi
