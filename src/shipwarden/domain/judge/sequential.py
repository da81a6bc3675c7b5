"""The sequential judge: decides as soon as the evidence suffices, with a bounded false-rollback rate.

**The test.**  Both signals are reduced to *event counts* per interval and
arm: errors out of requests, and requests slower than a latency threshold
out of latency observations.  Within interval *i*, given that ``X_i`` events
happened in total, the number that came from the canary is (for Poisson
counts exactly, for binomial counts conservatively — Hoeffding's convex-order
bound) ``Binomial(X_i, π_i(ρ))`` with::

    π_i(ρ) = ρ·n_canary / (ρ·n_canary + n_baseline),    ρ = canary rate / baseline rate.

Conditioning on the interval's total removes the unknown baseline rate, so
diurnal drift, bursts and traffic-split changes that hit both arms alike do
not matter.  For the null "ρ ≤ ρ0" (ρ0 = 1 + tolerance) the likelihood ratio
of any ρ > ρ0 against ρ0 is a non-negative supermartingale (the family has a
monotone likelihood ratio in ρ), and so is a fixed mixture of them.  By
Ville's inequality the probability that this e-process *ever* reaches 1/α is
at most α, at every sample size and however often it is looked at — the
controller may evaluate it every tick and stop at the first crossing.

**Production noise.**  Real counts vary more than that between intervals, and
separately in each arm (a bad instance, a retry storm), often for a while.
Each interval's likelihood ratio is therefore tempered by the dispersion the
data show — extra variance and its persistence, estimated from the residuals
with an allowance for the estimate's own uncertainty and a persistence floor
derived from the analysis interval (``RatioEProcess._dispersion``) — which
keeps the mixture an e-process to second order; on binomial data it is the
exact likelihood ratio again.

**Warm-up.**  A cold canary is slower for its first intervals, exactly like a
regression while it lasts.  With ``warmup: auto`` the first AUTO_WARMUP
intervals are not judged, and a failure needs its evidence in
MIN_FAIL_INTERVALS judged intervals and an excess that is not fading (a
negative trend of the per-interval log ratio holds it back); holding back
only ever lowers the false-rollback rate.

**Latency.**  The threshold for interval *i* is the baseline's ``quantile``
latency over intervals 1 … i-1 — fixed before interval *i* is seen, so the
test above stays valid; under "same latency distribution" both arms exceed it
at the same rate whatever it is.  The first interval only calibrates it.

**Passing early.**  The mirror e-process (ρ < ``regression`` against ρ =
``regression``) crosses 1/β with probability ≤ β when the canary really is at
least ``regression`` times worse.  The judge passes early once every metric
has crossed with its observed ratio within tolerance, both arms have
``minRequests`` requests, and nothing failed or is held back; at
the horizon (``samples``) with enough traffic it passes on the absence of
failure evidence — unless ``undersized: inconclusive`` and the window could
not have caught a ``regression``-times-worse canary (``detectableRatio``, see
``sizing``): then it holds for a human instead of passing on too little data.

**Stopping early to pass.**  The pass side counts the warm-up intervals too
(a cold canary only looks worse, which delays a pass).  With ``undersized:
pass`` a metric also stops once its horizon test could fail a
``regression``-times-worse canary over the rest of the window only with
probability below FUTILITY_POWER (stochastic curtailment; the conditional
power is increasing in the ratio, so this costs at most about FUTILITY_POWER
of power against ratios up to ``regression``).  Stopping to pass never adds a
false rollback.

**Budget.**  α is split evenly over all one-sided tests (Bonferroni; a metric
with direction ``either`` counts twice), so the overall false-rollback
probability is ≤ α.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from shipwarden.domain.analysis import JudgeMetric, JudgeSpec
from shipwarden.domain.judge._common import Totals, final_decision
from shipwarden.domain.judge.samples import FloatArray, Sample
from shipwarden.domain.judge.sizing import detectable_ratio, samples_needed
from shipwarden.domain.judge.verdict import Classification, Decision, MetricVerdict, Verdict

# Mixture components, as multiples of the null ratio (fail side) and divisors of the
# regression ratio (pass side).  Equal weights; any fixed choice keeps the guarantee —
# the grid only moves power between small and large effects.
FAIL_STEPS = np.array([1.12, 1.25, 1.4, 1.6, 1.9, 2.4, 3.2, 5.0])
PASS_STEPS = np.array([1.15, 1.3, 1.5, 1.75, 2.0, 2.5, 3.2])
# Share of each test's α kept for one conventional test at the planned horizon (group-sequential
# style): the always-valid e-process gives up power to be valid at every look, and most
# undecided runs reach the horizon anyway, where a fixed-sample test is much sharper.
HORIZON_ALPHA_SHARE = 0.8
# Over-dispersion (see RatioEProcess._dispersion).  The failure test uses the estimated extra
# variance plus Z_UP standard errors of that estimate (at most MAX_UNCERTAINTY): a variance
# estimated from a few intervals is uncertain, and an underestimate is what rolls back healthy
# canaries.  One arm's deviations (a bad instance, a retry storm) are assumed to last up to
# about PERSISTENCE_SECONDS: AR(1) with correlation exp(−interval / PERSISTENCE_SECONDS) from
# one interval to the next — but never more than ASSUMED_PERSISTENCE_CAP: at short intervals the
# window holds enough intervals per minute for the data's own lag-1 estimate to show a longer
# memory — or more if the data say so (at most MAX_PERSISTENCE).
Z_UP = 0.25
MAX_UNCERTAINTY = 0.05
PERSISTENCE_SECONDS = 60.0
DEFAULT_INTERVAL_SECONDS = 10.0  # assumed when the samples' times do not tell the interval
MAX_PERSISTENCE = 0.9
ASSUMED_PERSISTENCE_CAP = 0.72  # exp(−10 s / 30 s); chosen on the tuning seed (was 0.85 at 10 s)
# One burst is not a regression: the failure test leaves out the interval whose canary share of the
# events is the largest (standardized) *and* the one whose share is the smallest — a symmetric
# trim, so the evidence stays centred under the null — and estimates the extra variance from the
# rest.  One burst in either arm would otherwise dominate the moment estimate of the variance and
# weight every other interval's evidence down.  From TRIM_MIN_INTERVALS informative intervals on.
TRIM_OUTLIERS = True
TRIM_MIN_INTERVALS = 4
# A failure needs the evidence in at least MIN_FAIL_INTERVALS judged intervals, and an excess
# that does not fade (the trend of the per-interval log ratio above −FADING_T standard errors).
MIN_FAIL_INTERVALS = 3
FADING_T = 1.0
# ... unless the excess is still there at the end: a fading excess is held only while the most recent
# half of the judged intervals (at least RECENT_MIN of them) does not itself show the ratio above the
# null by RECENT_Z standard errors (dispersion included).  A canary that is improving but still far
# worse — a regression whose ratio drifts down with the traffic mix, say — is a regression.
RECENT_Z = 2.5
RECENT_MIN = 4
# An early pass also needs the observed ratio within tolerance: a canary between tolerance and
# regression is judged to the end of the window.
# Stochastic curtailment: with ``undersized: pass`` a metric stops being judged (and counts as a
# pass) once the horizon test would fail a ``regression``-times-worse canary (or one as bad as it
# looks so far, if worse) with probability below FUTILITY_POWER over the rest of the window.  It
# only ever stops to pass, so it cannot add a false rollback; it costs at most about
# FUTILITY_POWER of power against ratios up to ``regression``.
FUTILITY_POWER = 0.02
# The pass side counts the warm-up intervals too (the failure side never does).
PASS_FROM_START = True
# Default warm-up (``warmup: auto``): the first AUTO_WARMUP intervals, at most a sixth of the window.
AUTO_WARMUP = 3
# Chosen on the benchmark's tuning seed (bench/judge.py TUNING_SEED), never on its reporting seed.


_N = NormalDist()


def _logsumexp(a: FloatArray) -> float:
    m = float(np.max(a))
    return m + math.log(float(np.sum(np.exp(a - m))))


class RatioEProcess:
    """Always-valid test of ρ = canary event rate / baseline event rate, one direction (upwards).

    ``log_e_fail`` is the log e-value against "ρ ≤ null_ratio",
    ``log_e_pass`` the log e-value against "ρ ≥ regression".

    Each interval's conditional binomial log-likelihood ratio is *tempered*:
    divided by that interval's dispersion φ_i = 1 + κ·v_i, where v_i is the
    binomial variance of the canary's share of its events and κ the extra
    variance (per unit v²) that the binomial model misses — one arm's error
    rate wandering, bursts, a noisy instance — including its persistence
    from one interval to the next (see ``_dispersion``).  A likelihood ratio
    raised to 1/φ has expectation ≤ 1 under the null when the counts vary φ
    times as much as binomial ones (to second order), so the tempered
    mixture stays an e-process; with binomial noise κ → 0 and it is the exact
    likelihood ratio.
    """

    def __init__(self, null_ratio: float, regression: float) -> None:
        self.null_ratio = null_ratio
        self.regression = regression
        fail_alt = null_ratio * FAIL_STEPS
        pass_alt = regression / PASS_STEPS
        self._grid = np.concatenate([[null_ratio, regression], fail_alt, pass_alt])
        self._fail = slice(2, 2 + fail_alt.size)
        self._pass = slice(2 + fail_alt.size, None)
        self._logw_fail = -math.log(fail_alt.size)
        self._logw_pass = -math.log(pass_alt.size)
        self._ll: list[FloatArray] = []  # per informative interval: log-likelihood over the grid
        self._counts: list[tuple[int, int, int, int]] = []  # (bn, bx, cn, cx) of those intervals
        self._fit: tuple[float, FloatArray, FloatArray] | None = None  # cached (κ, φ_fail, φ_pass)
        self._keep: FloatArray | None = None  # set with _fit: 1.0 for the intervals the failure test counts
        #: assumed AR(1) persistence of one arm's extra noise from one interval to the next (at
        #: least); the judge sets it from the analysis interval
        self.persistence = assumed_persistence(DEFAULT_INTERVAL_SECONDS)
        self.baseline_n = self.canary_n = 0
        self.baseline_x = self.canary_x = 0

    def update(self, baseline_n: int, baseline_x: int, canary_n: int, canary_x: int) -> None:
        self.baseline_n += baseline_n
        self.canary_n += canary_n
        self.baseline_x += baseline_x
        self.canary_x += canary_x
        if baseline_n <= 0 or canary_n <= 0 or baseline_x + canary_x == 0:
            return  # no events, or one arm absent: the conditional likelihood is flat
        share = self._grid * canary_n
        pi = share / (share + baseline_n)
        self._ll.append(canary_x * np.log(pi) + baseline_x * np.log1p(-pi))
        self._counts.append((baseline_n, baseline_x, canary_n, canary_x))
        self._fit = None

    @property
    def intervals(self) -> int:
        """Intervals with at least one event (the others carry no information about ρ)."""
        return len(self._counts)

    def _arrays(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        a = np.array(self._counts, dtype=np.float64).reshape(-1, 4)
        return a[:, 0], a[:, 1], a[:, 2], a[:, 3]

    def _dispersion(self) -> tuple[float, FloatArray, FloatArray]:
        """(κ, φ_fail, φ_pass): long-run extra variance per unit v², and the per-interval tempering
        of the failure and pass tests.

        Residuals r_i = canary events − the interval's events × the canary's share at the
        fitted ratio; v_i their binomial variance.  Extra variance per interval is κ_0·v_i²,
        κ_0 = [k/(k−1)·Σ r_i² − Σ v_i + Σ v_i²/Σ v_i] / Σ v_i² (a moment estimate; the last
        term gives back what fitting the ratio took).  Noise that persists from one interval to
        the next adds up faster than independent noise: the long-run variance is
        κ = κ_0·(1 + a)/(1 − a) for AR(1) persistence a — the larger of the assumed
        ``persistence`` and the lag-1 autocorrelation of the residuals' extra part (corrected
        for its small-sample bias).  The failure test adds Z_UP standard errors of κ_0 (more
        when the noise persists, at most MAX_UNCERTAINTY) before that factor; the pass test
        uses the estimate itself, since a pass that comes too early costs power, not a
        false rollback.
        """
        if self._fit is not None:
            return self._fit
        bn, bx, cn, cx = self._arrays()
        k = bn.size
        x = bx + cx
        rho = ((cx.sum() + 0.5) / cn.sum()) / ((bx.sum() + 0.5) / bn.sum()) if k else 1.0
        pi = rho * cn / (rho * cn + bn)
        r_all = cx - x * pi
        v_all = x * pi * (1.0 - pi)
        keep = np.ones(k, dtype=bool)  # intervals the failure evidence counts
        est = np.ones(k, dtype=bool)  # intervals the extra variance is estimated from (the same)
        if TRIM_OUTLIERS and k >= TRIM_MIN_INTERVALS:
            z = r_all / np.sqrt(np.maximum(v_all, 1e-12))
            hi, lo = int(np.argmax(z)), int(np.argmin(z))
            if z[hi] > 0 and z[lo] < 0:
                keep[hi] = est[hi] = keep[lo] = est[lo] = False
        self._keep = keep.astype(np.float64)
        r, v = r_all * est, v_all[est]  # r keeps the intervals' order (zeros where left out)
        k = int(est.sum())
        d = float(np.sum(v * v))
        total_v = float(np.sum(v))
        persist = self.persistence
        kappa0 = 0.0
        if k >= 2 and d > 0:
            extra = k / (k - 1) * float(np.sum(r * r)) - total_v + d / total_v
            kappa0 = max(0.0, extra / d)
            if k >= 3 and extra > 0:
                a1 = float(np.sum(r[1:] * r[:-1])) / extra
                a1 = a1 + (1.0 + 4.0 * a1) / k  # Kendall's bias of an autocorrelation
                persist = min(max(a1, persist), MAX_PERSISTENCE)
        # relative sd of a variance from k intervals: √(2/k), × √((1+a²)/(1−a²)) when persistent
        inflate = (1.0 + persist * persist) / (1.0 - persist * persist)
        se = math.sqrt(2.0 * inflate * float(np.sum((v + kappa0 * v * v) ** 2))) / d if d > 0 else math.inf
        factor = (1.0 + persist) / (1.0 - persist)
        kappa = (kappa0 + min(Z_UP * se, MAX_UNCERTAINTY)) * factor
        self._fit = (kappa, 1.0 + kappa * v_all, 1.0 + kappa0 * factor * v_all)
        return self._fit

    def _kept(self) -> FloatArray:
        """1.0 for the intervals the failure evidence counts, 0.0 for those left out (see
        TRIM_OUTLIERS)."""
        phi = self._dispersion()[1]
        keep = self._keep
        if keep is None or keep.size != phi.size:
            return np.ones(phi.size)
        return keep

    @property
    def kappa(self) -> float:
        """The long-run extra variance per unit v² the failure test allows for."""
        return self._dispersion()[0] if self._counts else 0.0

    @property
    def dispersion(self) -> float:
        """How much more variable the canary's share of the events is than binomial, as the failure
        test assumes it (≥ 1; an event-weighted mean over the intervals)."""
        if not self._counts:
            return 1.0
        bn, bx, cn, cx = self._arrays()
        x = bx + cx
        phi = self._dispersion()[1]
        return float(np.sum(phi * x) / np.sum(x))

    def _tempered(self, ref: int, which: slice) -> FloatArray:
        if not self._ll:
            return np.zeros(self._grid[which].size)
        ll = np.array(self._ll)
        _, phi_fail, phi_pass = self._dispersion()
        phi = phi_fail if ref == 0 else phi_pass
        w = (self._kept() if ref == 0 else np.ones(phi.size)) / phi
        return np.asarray(np.sum((ll[:, which] - ll[:, ref : ref + 1]) * w[:, None], axis=0))

    def horizon_p_value(self) -> float:
        """One-sided p-value of "ρ ≤ null_ratio" from all intervals, for the *planned* horizon only.

        Under the null boundary the canary's share of each interval's events is
        Binomial(X_i, π0_i), so their sum is Poisson-binomial; its exact upper
        tail is computed by convolution, at the observed excess shrunk by
        √(dispersion) when the counts vary more than binomial ones.  Valid only
        at a sample size fixed in advance — which is why the judge spends a
        separate part of α on it.
        """
        if not self._counts:
            return 1.0
        from scipy import signal, stats  # only at the horizon; keeps start-up fast

        bn, bx, cn, cx = self._arrays()
        kept = self._kept() > 0
        bn, bx, cn, cx = bn[kept], bx[kept], cn[kept], cx[kept]
        x = (bx + cx).astype(np.int64)
        p0 = self.null_ratio * cn / (self.null_ratio * cn + bn)
        expected = float(np.sum(x * p0))
        var0 = float(np.sum(x * p0 * (1.0 - p0)))
        phi = self._dispersion()[1][kept]
        var_phi = float(np.sum(x * p0 * (1.0 - p0) * phi))
        excess = float(cx.sum()) - expected
        if var_phi <= 0:
            return 1.0
        shrunk = expected + excess * math.sqrt(var0 / var_phi)
        if var0 >= 50.0:  # many events: the normal approximation is as good, and far cheaper
            return float(_N.cdf(-(math.ceil(shrunk - 1e-9) - 0.5 - expected) / math.sqrt(var0)))
        observed = math.ceil(shrunk - 1e-9)
        pmf = np.ones(1)
        for xi, pi in zip(x, p0, strict=True):
            pmf = signal.convolve(pmf, stats.binom.pmf(np.arange(xi + 1), xi, pi))
        return float(min(1.0, max(0.0, np.sum(pmf[max(observed, 0) :]))))

    def conditional_power(self, judged: int, remaining: int, alt_ratio: float, alpha: float) -> float:
        """Probability that the horizon test still fails the canary by the end of the window, given the
        data so far, if its ratio were ``alt_ratio`` from now on (normal approximation).

        ``judged`` intervals were fed (with or without events), ``remaining`` are left; the future
        ones are assumed to have the traffic and the baseline rate seen so far, and the dispersion
        the failure test allows for now.  It increases with ``alt_ratio``: computed at a ratio at
        least the true one, it is at least the true conditional power.
        """
        if remaining <= 0 or judged <= 0 or self.baseline_n <= 0 or self.canary_n <= 0:
            return 1.0  # nothing to extrapolate from: never curtail
        nb, nc = self.baseline_n / judged, self.canary_n / judged
        # the baseline rate so far, a standard error high: more future events, more power — when in
        # doubt the window is taken to be bigger than it looks, and the judge keeps going
        rate = (self.baseline_x + 1.0 + math.sqrt(self.baseline_x + 1.0)) / self.baseline_n
        x1 = remaining * (nb * rate + nc * rate * alt_ratio)  # future events at alt_ratio
        rho0 = self.null_ratio
        pi0f = rho0 * nc / (rho0 * nc + nb)
        pi1f = alt_ratio * nc / (alt_ratio * nc + nb)
        phi_now = self.dispersion
        excess = var = 0.0
        if self._counts:
            bn, bx, cn, cx = self._arrays()
            kept = self._kept()
            x = bx + cx
            p0 = rho0 * cn / (rho0 * cn + bn)
            excess = float(np.sum(kept * (cx - x * p0)))
            var = float(np.sum(kept * x * p0 * (1.0 - p0) * self._dispersion()[1]))
        var_final = var + x1 * pi0f * (1.0 - pi0f) * phi_now
        sd_future = math.sqrt(x1 * pi1f * (1.0 - pi1f) * phi_now)
        if sd_future <= 0 or var_final <= 0:
            return 0.0 if excess <= 0 else 1.0
        z = _N.inv_cdf(1.0 - alpha)
        return _N.cdf((excess + x1 * (pi1f - pi0f) - z * math.sqrt(var_final)) / sd_future)

    def fading(self) -> float:
        """t statistic of the trend of the per-interval log ratio (negative: the excess is fading).

        Weighted least squares of log((c+½)/n_c) − log((b+½)/n_b) on the interval number, each
        interval weighted by the inverse of its (dispersion-inflated) variance.
        """
        k = len(self._counts)
        if k < 3:
            return 0.0
        bn, bx, cn, cx = self._arrays()
        y = np.log((cx + 0.5) / cn) - np.log((bx + 0.5) / bn)
        phi = self._dispersion()[1]
        w = 1.0 / ((1.0 / (cx + 0.5) + 1.0 / (bx + 0.5)) * phi)
        t = np.arange(k, dtype=np.float64)
        tm = float(np.sum(w * t) / np.sum(w))
        sxx = float(np.sum(w * (t - tm) ** 2))
        if sxx <= 0:
            return 0.0
        slope = float(np.sum(w * (t - tm) * y)) / sxx
        return slope * math.sqrt(sxx)

    def recent_z(self) -> float:
        """z statistic of "ρ > null_ratio" from the most recent half of the informative intervals (at
        least RECENT_MIN): the inverse-variance weighted mean of the per-interval log ratio, its
        variance inflated by the failure test's dispersion, without the interval the failure test
        leaves out.  0 with fewer intervals than that."""
        k = len(self._counts)
        if k < RECENT_MIN:
            return 0.0
        m = max(RECENT_MIN, k // 2)
        bn, bx, cn, cx = (a[-m:] for a in self._arrays())
        phi = self._dispersion()[1][-m:]
        y = np.log((cx + 0.5) / cn) - np.log((bx + 0.5) / bn) - math.log(self.null_ratio)
        w = self._kept()[-m:] / ((1.0 / (cx + 0.5) + 1.0 / (bx + 0.5)) * phi)  # a burst left out
        return float(np.sum(w * y) / math.sqrt(float(np.sum(w))))

    @property
    def log_e_fail(self) -> float:
        return self._logw_fail + _logsumexp(self._tempered(0, self._fail))

    @property
    def log_e_pass(self) -> float:
        return self._logw_pass + _logsumexp(self._tempered(1, self._pass))

    @property
    def ratio(self) -> float:
        """Plain ratio of the cumulative rates (for the report; the test does not use it)."""
        if self.baseline_n == 0 or self.canary_n == 0 or self.baseline_x == 0:
            return math.nan
        return (self.canary_x / self.canary_n) / (self.baseline_x / self.baseline_n)


class RateBelowEProcess:
    """Always-valid test that one arm's event rate is *below* ``floor`` (absolute).

    Against the null "p ≥ floor", each alternative p_a < floor gives the
    likelihood ratio (p_a/floor)^x · ((1-p_a)/(1-floor))^(n-x) over the
    cumulative counts: a test martingale at p = floor and a supermartingale
    for any p above it (monotone likelihood ratio), and so is their equal
    mixture.  With no events at all it grows like (1-floor)^-n, so about
    ln(1/β)/floor requests suffice: ≈ 390 at floor 1 %, β 2 %.
    """

    ALTERNATIVES = np.array([0.0, 0.1, 0.25, 0.5, 0.7])

    def __init__(self, floor: float) -> None:
        self.floor = floor
        self.n = self.x = 0

    def update(self, n: int, x: int) -> None:
        self.n += n
        self.x += x

    @property
    def log_e(self) -> float:
        f, n, x = self.floor, self.n, self.x
        logs = []
        for p in self.ALTERNATIVES * f:
            if p == 0.0:
                logs.append(-math.inf if x else -n * math.log1p(-f))
            else:
                logs.append(x * math.log(p / f) + (n - x) * (math.log1p(-p) - math.log1p(-f)))
        return -math.log(len(logs)) + _logsumexp(np.array(logs))


class _MetricTest:
    """One metric's tests in its configured direction(s)."""

    def __init__(self, name: str, cfg: JudgeMetric, alpha_each: float, beta: float) -> None:
        self.name, self.cfg = name, cfg
        self.tolerance = cfg.tolerance_for("sequential")
        self.alpha_seq = alpha_each * (1.0 - HORIZON_ALPHA_SHARE)
        self.alpha_horizon = alpha_each * HORIZON_ALPHA_SHARE
        self.beta = beta
        ratio0 = 1.0 + self.tolerance
        self.up = RatioEProcess(ratio0, cfg.regression) if cfg.direction != "decrease" else None
        self.down = RatioEProcess(ratio0, cfg.regression) if cfg.direction != "increase" else None
        floor = getattr(cfg, "negligible", None)
        self.below = RateBelowEProcess(floor) if floor is not None and cfg.direction == "increase" else None
        self.extra: dict[str, float | int | str | None] = {}
        self.fading = False  # set by verdict(): failure evidence held back because the excess fades
        self.judged = 0  # intervals fed to this test
        self.min_fail = MIN_FAIL_INTERVALS  # the judge lowers it for windows shorter than that
        self.window: int | None = None  # judged intervals in the window (set by the judge)
        self.curtail = False  # stop early when the window can no longer fail (undersized: pass)

        # the pass side's evidence: from the first interval on (warm-up included) with
        # PASS_FROM_START — a cold canary only looks worse, which delays a pass, never hastens it
        def pass_side(fail_side: RatioEProcess | None) -> RatioEProcess | None:
            if fail_side is None or not PASS_FROM_START:
                return fail_side
            return RatioEProcess(ratio0, cfg.regression)

        self.pass_up, self.pass_down = pass_side(self.up), pass_side(self.down)

    def set_persistence(self, persistence: float) -> None:
        for p in (self.up, self.down, self.pass_up, self.pass_down):
            if p is not None and p.persistence != persistence:
                p.persistence = persistence
                p._fit = None

    def update(self, bn: int, bx: int, cn: int, cx: int) -> None:
        self.judged += 1
        if self.up is not None:
            self.up.update(bn, bx, cn, cx)
        if self.down is not None:  # "canary lower" = baseline/canary ratio high: swap the arms
            self.down.update(cn, cx, bn, bx)
        if self.below is not None:
            self.below.update(cn, cx)
        self.update_pass(bn, bx, cn, cx)

    def update_pass(self, bn: int, bx: int, cn: int, cx: int) -> None:
        """Feed the pass side only (every interval; during the warm-up this is all that is fed)."""
        if self.pass_up is not None and self.pass_up is not self.up:
            self.pass_up.update(bn, bx, cn, cx)
        if self.pass_down is not None and self.pass_down is not self.down:
            self.pass_down.update(cn, cx, bn, bx)

    @property
    def _any(self) -> RatioEProcess:
        p = self.up or self.down
        assert p is not None
        return p

    def detectable(self, scale: float) -> float | None:
        """Smallest ratio the horizon test catches with probability 1 − β, if the traffic seen so far
        were ``scale`` times as much (the rest of the window); None without baseline events."""
        worst = 0.0
        for p in (self.up, self.down):
            if p is None:
                continue
            if p.baseline_x == 0 or p.canary_n == 0:
                return None
            phi = p.dispersion  # noisier counts are worth fewer binomial ones
            r = detectable_ratio(
                p.baseline_n * scale / phi, p.canary_n * scale / phi, p.baseline_x / p.baseline_n,
                self.alpha_horizon, 1.0 - self.beta, null_ratio=1.0 + self.tolerance,
            )  # fmt: skip
            worst = max(worst, r)
        return worst

    def undersized_note(self) -> str:
        """At the end of the window: '' if this test could have caught a ``regression``-times-worse
        canary, else why not, e.g. ' (could only have caught ×3.2; regression ×1.75)'."""
        r = self.detectable(1.0)
        if r is not None and r <= self.cfg.regression:
            return ""
        if r is None:
            caught = "no baseline events, so no ratio could be bounded"
        elif math.isfinite(r):
            caught = f"could only have caught ×{r:.3g}"
        else:
            caught = "could not have caught any ratio"
        return f" ({caught}; regression ×{self.cfg.regression:g})"

    def _persists(self, proc: RatioEProcess, tag: str, numbers: dict[str, float | int | str | None]) -> bool:
        """Failure evidence counts only when it is a regression, not a transient: seen in at least
        MIN_FAIL_INTERVALS judged intervals, and not fading (a canary getting better interval by
        interval is still warming up).  Holding back can only lower the false-rollback rate."""
        if proc.intervals < self.min_fail:
            numbers[f"waiting{tag}"] = f"evidence in {proc.intervals} of {self.min_fail} intervals needed"
            return False
        trend = proc.fading()
        numbers[f"trendT{tag}"] = round(trend, 3)
        if trend <= -FADING_T and proc.recent_z() < RECENT_Z:
            self.fading = True
            return False
        return True

    @staticmethod
    def _dispersion_note(proc: RatioEProcess) -> str:
        d = proc.dispersion
        return f"; counts {d:.2g}× as variable as binomial, evidence weighted down" if d >= 1.05 else ""

    def verdict(self, at_horizon: bool = False, scale: float = 1.0) -> MetricVerdict:
        log_fail_at = math.log(1.0 / self.alpha_seq)
        log_pass_at = math.log(1.0 / self.beta)
        p = self._any
        swapped = self.up is None
        bn, bx = (p.canary_n, p.canary_x) if swapped else (p.baseline_n, p.baseline_x)
        cn, cx = (p.baseline_n, p.baseline_x) if swapped else (p.canary_n, p.canary_x)
        b_rate = bx / bn if bn else math.nan
        c_rate = cx / cn if cn else math.nan
        ratio = c_rate / b_rate if bn and cn and bx else math.nan
        numbers: dict[str, float | int | str | None] = {
            "baselineEvents": bx,
            "baselineExposure": bn,
            "canaryEvents": cx,
            "canaryExposure": cn,
            "nullRatio": 1.0 + self.tolerance,
            "regressionRatio": self.cfg.regression,
            "eFailThreshold": 1.0 / self.alpha_seq,
            "ePassThreshold": 1.0 / self.beta,
            "detectableRatio": self.detectable(scale),
            **self.extra,
        }
        crit = self.cfg.critical
        self.fading = False
        for tag, proc in (("Up", self.up), ("Down", self.down)):
            if proc is None:
                continue
            numbers[f"eFail{tag}"] = math.exp(min(proc.log_e_fail, 700.0))
            pproc = self.pass_up if tag == "Up" else self.pass_down
            assert pproc is not None
            numbers[f"ePass{tag}"] = math.exp(min(pproc.log_e_pass, 700.0))
            numbers[f"dispersion{tag}"] = round(proc.dispersion, 4)
        for tag, proc, cls in (("Up", self.up, Classification.HIGH), ("Down", self.down, Classification.LOW)):
            if proc is not None and proc.log_e_fail >= log_fail_at and self._persists(proc, tag, numbers):
                word = "higher" if cls is Classification.HIGH else "lower"
                why = (
                    f"canary {word}: rate {c_rate:.4g} vs baseline {b_rate:.4g} (ratio {ratio:.3g}); "
                    f"e-value {numbers[f'eFail{tag}']:.3g} ≥ {1 / self.alpha_seq:.3g} "
                    f"against ratio ≤ {1 + self.tolerance:g}"
                    f"{self._dispersion_note(proc)}"
                )
                return MetricVerdict(self.name, cls, crit, b_rate, c_rate, ratio, why, numbers)
        if at_horizon:
            for tag, proc, cls in (
                ("Up", self.up, Classification.HIGH),
                ("Down", self.down, Classification.LOW),
            ):
                if proc is None:
                    continue
                pv = proc.horizon_p_value()
                numbers[f"horizonP{tag}"] = pv
                numbers["horizonAlpha"] = self.alpha_horizon
                if pv <= self.alpha_horizon and self._persists(proc, tag, numbers):
                    word = "higher" if cls is Classification.HIGH else "lower"
                    why = (
                        f"canary {word} at the planned horizon: rate {c_rate:.4g} vs baseline {b_rate:.4g} "
                        f"(ratio {ratio:.3g}); p={pv:.3g} ≤ {self.alpha_horizon:.3g} "
                        f"against ratio ≤ {1 + self.tolerance:g}"
                    )
                    return MetricVerdict(self.name, cls, crit, b_rate, c_rate, ratio, why, numbers)
        if bx + cx == 0 and (bn == 0 or cn == 0):
            why = "no data yet"
            return MetricVerdict(self.name, Classification.NODATA, crit, b_rate, c_rate, ratio, why, numbers)
        procs = [x for x in (self.up, self.down) if x is not None]
        if self.judged < self.min_fail or any(x.log_e_fail >= log_fail_at for x in procs):
            # no early pass before a failure could have been seen, nor while one is held back
            why = f"collecting evidence: rate {c_rate:.4g} vs baseline {b_rate:.4g} ({bx}+{cx} events)"
            return MetricVerdict(self.name, Classification.RUNNING, crit, b_rate, c_rate, ratio, why, numbers)
        if self.below is not None:
            numbers["negligibleRate"] = self.below.floor
            numbers["eBelowNegligible"] = math.exp(min(self.below.log_e, 700.0))
            if self.below.log_e >= log_pass_at:
                why = (
                    f"canary rate {c_rate:.4g} shown below the negligible {self.below.floor:g} "
                    f"({cx} in {cn}; e-value {numbers['eBelowNegligible']:.3g} ≥ {1 / self.beta:.3g})"
                )
                return MetricVerdict(
                    self.name, Classification.PASS, crit, b_rate, c_rate, ratio, why, numbers
                )
        # pass early only a canary that also *looks* within tolerance: one between tolerance and
        # regression keeps being judged, and fails if the evidence gets there by the horizon
        pprocs = [x for x in (self.pass_up, self.pass_down) if x is not None]
        if all(x.log_e_pass >= log_pass_at and not x.ratio > x.null_ratio for x in pprocs):
            why = (
                f"ruled out a {self.cfg.regression:g}× regression: rate {c_rate:.4g} "
                f"vs baseline {b_rate:.4g} (ratio {ratio:.3g}; e-value ≥ {1 / self.beta:.3g})"
            )
            return MetricVerdict(self.name, Classification.PASS, crit, b_rate, c_rate, ratio, why, numbers)
        if self.curtail and not at_horizon and self.window is not None:
            # stochastic curtailment: stop judging when the rest of the window could not plausibly
            # fail the canary even if it were `regression` times worse from now on (or as bad as it
            # looks, if worse than that).  Stopping to pass never adds a false rollback.
            remaining = self.window - self.judged
            cp = max(
                x.conditional_power(
                    self.judged,
                    remaining,
                    max(self.cfg.regression, x.ratio if x.ratio == x.ratio else 0.0),
                    self.alpha_horizon,
                )
                for x in procs
            )
            numbers["conditionalPower"] = round(cp, 4)
            if cp < FUTILITY_POWER:
                why = (
                    f"no regression in sight: rate {c_rate:.4g} vs baseline {b_rate:.4g} "
                    f"(ratio {ratio:.3g}), and the rest of the window would fail a "
                    f"{self.cfg.regression:g}× regression only with probability {cp:.1%}"
                    f"{self.undersized_note()}"
                )
                cls = Classification.PASS
                return MetricVerdict(self.name, cls, crit, b_rate, c_rate, ratio, why, numbers)
        why = f"collecting evidence: rate {c_rate:.4g} vs baseline {b_rate:.4g} ({bx}+{cx} events)"
        return MetricVerdict(self.name, Classification.RUNNING, crit, b_rate, c_rate, ratio, why, numbers)


# Internal log-spaced grid (1 % steps, 0.01 ms … 10^7 ms) that keeps the baseline's latency
# distribution in bounded memory, whatever the input format.
_EDGES = np.exp(np.arange(math.log(0.01), math.log(1e7), math.log(1.01)))


class _BaselineLatency:
    def __init__(self) -> None:
        self.counts = np.zeros(_EDGES.size + 1, dtype=np.int64)

    def add(self, s: Sample) -> None:
        if s.latencies_ms is not None and s.latencies_ms.size:
            idx = np.searchsorted(_EDGES, s.latencies_ms, side="left")
            self.counts += np.bincount(idx, minlength=self.counts.size)
        elif s.bucket_bounds is not None and s.bucket_counts is not None and s.bucket_counts.size:
            per = np.diff(s.bucket_counts, prepend=0)
            idx = np.searchsorted(_EDGES, s.bucket_bounds, side="left")
            np.add.at(self.counts, idx, per)

    def quantile_edge(self, q: float) -> float | None:
        total = int(self.counts.sum())
        if total == 0:
            return None
        i = int(np.searchsorted(np.cumsum(self.counts), q * total, side="left"))
        return float(_EDGES[i]) if i < _EDGES.size else math.inf


def _threshold(estimate: float, a: Sample, b: Sample) -> float | None:
    """The latency threshold for this interval: the estimate, snapped to a common histogram bound."""
    hist = [s.bucket_bounds for s in (a, b) if s.bucket_bounds is not None]
    if not hist:
        return estimate if math.isfinite(estimate) else None
    common = hist[0] if len(hist) == 1 else np.intersect1d(hist[0], hist[1])
    common = common[np.isfinite(common)]
    if common.size == 0:
        return None
    above = common[common >= estimate]
    return float(above[0]) if above.size else float(common[-1])


def assumed_persistence(interval_seconds: float) -> float:
    """The interval-to-interval persistence of one arm's deviations the failure test assumes at least."""
    return min(math.exp(-interval_seconds / PERSISTENCE_SECONDS), ASSUMED_PERSISTENCE_CAP)


def assumed_dispersion(v: float, intervals: int, interval_seconds: float | None = None) -> float:
    """The dispersion the failure test allows for when the counts are in fact binomial: ``v`` is the
    binomial variance of the canary's share of one interval's events, ``intervals`` how many were
    judged.  (The ``_dispersion`` of a RatioEProcess on data without extra variance.)"""
    if v <= 0 or intervals <= 0:
        return 1.0
    persist = assumed_persistence(interval_seconds or DEFAULT_INTERVAL_SECONDS)
    inflate = (1.0 + persist * persist) / (1.0 - persist * persist)
    se = math.sqrt(2.0 * inflate / intervals) / v
    return 1.0 + min(Z_UP * se, MAX_UNCERTAINTY) * (1.0 + persist) / (1.0 - persist) * v


def auto_warmup(spec: JudgeSpec) -> int:
    """Intervals the judge leaves unjudged at the start: AUTO_WARMUP (at most a sixth of the window)
    with ``warmup: auto``; none when the warm-up is explicit (the caller skips those samples)."""
    return min(AUTO_WARMUP, spec.samples // 6) if spec.warmup == "auto" else 0


class SequentialJudge:
    """Feed one interval of both arms at a time; decides PASS/FAIL as soon as the evidence suffices."""

    name = "sequential"

    def __init__(self, spec: JudgeSpec | None = None) -> None:
        self.spec = spec or JudgeSpec()
        cfg = self.spec.metrics
        enabled: list[tuple[str, JudgeMetric]] = []
        if cfg.error_rate.enabled:
            enabled.append(("error_rate", cfg.error_rate))
        if cfg.latency.enabled:
            enabled.append(("latency", cfg.latency))
        tests = sum(2 if c.direction == "either" else 1 for _, c in enabled)
        alpha_each = self.spec.alpha / tests
        self._tests = {n: _MetricTest(n, c, alpha_each, self.spec.beta) for n, c in enabled}
        self._baseline_latency = _BaselineLatency()
        self._totals = Totals()
        self._verdict = Verdict(self.name, Decision.RUNNING, 0, None, "no samples yet")
        self.warmup = auto_warmup(self.spec)
        self._times: list[float] = []
        for test in self._tests.values():
            test.min_fail = min(MIN_FAIL_INTERVALS, self.judged_window)
            test.window = self.judged_window
            test.curtail = self.spec.undersized == "pass" and FUTILITY_POWER > 0

    def _persistence(self) -> float:
        """Assumed interval-to-interval persistence of one arm's deviations, from the analysis
        interval (the median step of the samples' ``t``; DEFAULT_INTERVAL_SECONDS if they do not say)."""
        steps = [b - a for a, b in zip(self._times, self._times[1:], strict=False) if b > a]
        interval = float(np.median(steps)) if steps else DEFAULT_INTERVAL_SECONDS
        return assumed_persistence(interval)

    @property
    def judged_window(self) -> int:
        """Intervals of the window that are judged (the window less the automatic warm-up)."""
        return max(1, self.spec.samples - self.warmup)

    @property
    def verdict(self) -> Verdict:
        return self._verdict

    def plan(
        self,
        baseline_per_sample: float,
        canary_per_sample: float,
        error_rate: float,
        interval_seconds: float | None = None,
    ) -> list[dict[str, float | int | str | bool | None]]:
        """What this judge, as configured, can catch at this traffic (requests per interval and arm).

        Per metric: events per interval (errors at ``error_rate``; for latency
        the requests slower than the baseline's quantile), the ratio its
        horizon test catches with probability 1 − β within the judged part of
        the window (``detectableRatio``), and the intervals it needs to catch
        ``regression``, warm-up included (``samplesNeeded``; None if no number
        would do).  Binomial noise is assumed, with the allowance for unseen
        over-dispersion the failure test makes at this interval
        (``assumedDispersion``).
        """
        out: list[dict[str, float | int | str | bool | None]] = []
        for name, t in self._tests.items():
            rate = error_rate if name == "error_rate" else round(1.0 - self.spec.metrics.latency.quantile, 12)
            null, power = 1.0 + t.tolerance, 1.0 - t.beta
            n = self.judged_window
            share = canary_per_sample / (canary_per_sample + baseline_per_sample)
            v = (baseline_per_sample + canary_per_sample) * rate * share * (1.0 - share)
            phi = assumed_dispersion(v, n, interval_seconds)
            r = detectable_ratio(
                baseline_per_sample * n / phi, canary_per_sample * n / phi, rate, t.alpha_horizon, power, null
            )
            need = None
            for _ in range(3):  # the allowance shrinks with the intervals: settle k and φ together
                k = samples_needed(
                    baseline_per_sample / phi, canary_per_sample / phi, rate, t.cfg.regression,
                    t.alpha_horizon, power, null,
                )  # fmt: skip
                if k is None:
                    break
                need = k + self.warmup
                phi = assumed_dispersion(v, max(k, MIN_FAIL_INTERVALS), interval_seconds)
            out.append({
                "name": name,
                "eventRate": rate,
                "baselineEventsPerSample": baseline_per_sample * rate,
                "canaryEventsPerSample": canary_per_sample * rate,
                "samples": self.spec.samples,
                "warmupSamples": self.warmup,
                "assumedDispersion": round(assumed_dispersion(v, n, interval_seconds), 3),
                "detectableRatio": r,
                "regression": t.cfg.regression,
                "samplesNeeded": need,
                "windowIsEnough": r <= t.cfg.regression,
            })  # fmt: skip
        return out

    def update(self, baseline: Sample, canary: Sample) -> Verdict:
        if self._verdict.decision.done:
            return self._verdict
        self._totals.add(baseline, canary)
        n = self._totals.samples
        self._times.append(canary.t)
        if n <= self.warmup:  # a fresh canary answers slower: its first intervals are not judged
            if PASS_FROM_START:  # ... for a failure; for a pass they count
                self._tests_set_persistence()
                if "error_rate" in self._tests:
                    self._tests["error_rate"].update_pass(
                        baseline.requests, baseline.errors, canary.requests, canary.errors
                    )
                if "latency" in self._tests:
                    self._update_latency(baseline, canary, warm=True)
            else:
                self._baseline_latency.add(baseline)  # the baseline is warm: it calibrates the threshold
            self._verdict = Verdict(
                self.name, Decision.RUNNING, n, None,
                f"warm-up: interval {n} of {self.warmup} is not judged (warmup: auto)", (), None,
                self._totals.baseline_requests, self._totals.canary_requests,
            )  # fmt: skip
            return self._verdict
        self._tests_set_persistence()
        if "error_rate" in self._tests:
            self._tests["error_rate"].update(
                baseline.requests, baseline.errors, canary.requests, canary.errors
            )
        if "latency" in self._tests:
            self._update_latency(baseline, canary)
        # detectableRatio live: what the horizon test will catch if traffic keeps this pace
        scale = max(1.0, self.judged_window / (n - self.warmup))
        metrics = tuple(t.verdict(scale=scale) for t in self._tests.values())
        failed = [m for m in metrics if m.classification in (Classification.HIGH, Classification.LOW)]
        if failed:
            decision, score, why = final_decision(self.spec, metrics, self._totals)
            if decision is Decision.FAIL:
                return self._set(Decision.FAIL, n, why, metrics, score)
        passed = all(m.classification is Classification.PASS for m in metrics)
        if passed and self._totals.enough_requests(self.spec):
            why = "every metric ruled out a regression or can no longer show one: " + "; ".join(
                f"{m.name}: {m.reason}" for m in metrics
            )
            return self._set(Decision.PASS, n, why, metrics, 100.0)
        if n >= self.spec.samples:
            return self._horizon(tuple(t.verdict(at_horizon=True) for t in self._tests.values()))
        waiting = (
            ""
            if self._totals.enough_requests(self.spec)
            else f" (below minRequests {self.spec.min_requests})"
        )
        self._verdict = Verdict(
            self.name, Decision.RUNNING, n, None, f"no decision after {n} samples{waiting}", metrics, None,
            self._totals.baseline_requests, self._totals.canary_requests,
        )  # fmt: skip
        return self._verdict

    def _tests_set_persistence(self) -> None:
        persistence = self._persistence()
        for test in self._tests.values():
            test.set_persistence(persistence)

    def finish(self) -> Verdict:
        """The window ends now: no failure evidence + enough traffic = pass; else inconclusive.

        Only the always-valid e-processes count here: the horizon test is
        valid at the *planned* sample size, not at a moment someone picked
        after looking at the data.
        """
        if self._verdict.decision.done:
            return self._verdict
        metrics = tuple(t.verdict() for t in self._tests.values())
        return self._horizon(metrics)

    def _horizon(self, metrics: tuple[MetricVerdict, ...]) -> Verdict:
        n = self._totals.samples
        if n == 0:
            return self._set(Decision.INCONCLUSIVE, None, "no samples", metrics, None)
        # RUNNING at the horizon means "no evidence of a regression": count it as a pass, and say
        # when that is only absence of evidence (the window could not have caught `regression`).
        notes = {
            m.name: self._tests[m.name].undersized_note()
            for m in metrics
            if m.classification is Classification.RUNNING
        }
        closed = tuple(
            MetricVerdict(
                m.name, Classification.PASS, m.critical, m.baseline, m.canary, m.ratio,
                f"no evidence of a regression by the end of the window{notes[m.name]}: {m.reason}", m.numbers,
            )
            if m.classification is Classification.RUNNING
            else m
            for m in metrics
        )  # fmt: skip
        decision, score, why = final_decision(self.spec, closed, self._totals)
        fading = [name for name, t in self._tests.items() if t.fading]
        if decision is Decision.PASS and fading:
            why = (
                f"{', '.join(fading)}: canary worse than the baseline but getting better interval by "
                "interval — a slow start longer than the warm-up? Set 'warmup' to its length"
            )
            decision = Decision.INCONCLUSIVE
        undersized = "; ".join(f"{name}{note}" for name, note in notes.items() if note)
        if decision is Decision.PASS and undersized and self.spec.undersized == "inconclusive":
            why = (
                f"window too small to pass on: {undersized} (undersized: inconclusive; "
                "lengthen samples, raise the canary's weight, or set errorRate.negligible)"
            )
            decision = Decision.INCONCLUSIVE
        why = f"end of the window after {n} samples: {why}"
        return self._set(decision, n, why, closed, score)

    def _set(
        self,
        decision: Decision,
        at: int | None,
        why: str,
        metrics: tuple[MetricVerdict, ...],
        score: float | None,
    ) -> Verdict:
        self._verdict = Verdict(
            self.name, decision, self._totals.samples, at, why, metrics, score,
            self._totals.baseline_requests, self._totals.canary_requests,
        )  # fmt: skip
        return self._verdict

    def _update_latency(self, baseline: Sample, canary: Sample, warm: bool = False) -> None:
        test = self._tests["latency"]
        cfg = self.spec.metrics.latency
        q = cfg.quantile
        estimate = self._baseline_latency.quantile_edge(q)
        if estimate is not None and baseline.has_latency and canary.has_latency:
            # a request is slow only above the baseline's quantile *and* the floor: at sub-ms
            # latencies an arm's share of traffic alone shifts the tail by microseconds
            tau = _threshold(max(estimate, cfg.floor_ms), baseline, canary)
            if tau is not None:
                counts = (
                    baseline.latency_count,
                    baseline.count_above(tau),
                    canary.latency_count,
                    canary.count_above(tau),
                )
                (test.update_pass if warm else test.update)(*counts)
                test.extra["thresholdMs"] = tau
                test.extra["quantile"] = q
        self._baseline_latency.add(baseline)
