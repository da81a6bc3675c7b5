"""Benchmark of the canary judges on a production-shaped, labelled corpus.

Writes ``bench/results/judge.json`` and prints the tables.

**Corpus** (seeded; every run is reproducible from the seed and its index).
A run is 30 analysis intervals of one baseline arm and one canary arm.  Its
*background* is one trap family at one of its strengths; A/A runs have no
effect (both arms are the same version), A/B runs add one effect to the
canary.  The generators model the phenomena directly — per-instance error
rates, gamma-distributed per-interval error probabilities, AR(1) drifts,
bursts, slow starts — and know nothing about how the judges model noise.

Every run draws: traffic per arm per interval (~40 / ~400 / ~3,000 requests,
a third each, except the low-traffic family), the canary's share of traffic
(1.0 of the baseline's in 75 % of runs, 0.3 in 25 %), a base error rate
(log-uniform 0.2–3 %), a log-normal latency (median 20–200 ms, σ 0.4–0.9)
with a slow mode (0.5–3 % of requests, 4–8× slower), an analysis interval
(10 s, 1 min or 5 min), a mild day cycle and per-interval shocks shared by
both arms.  High-traffic runs report latency as Prometheus-style histograms
(buckets 1.15× apart), the others as raw latencies.

Trap families (``FAMILIES``; the strengths cycle through the runs):

* ``clean`` — only the shared noise above;
* ``cold-start`` — the canary starts slow and fades: exponential, linear or
  step shapes, 1–5 intervals long, latency ×1.3–×2 and in half the runs
  errors ×3 at the start;
* ``over-dispersion`` — each arm's per-interval error probability is drawn
  from a gamma distribution so that error counts vary 1.5–5× as much as
  binomial counts, independently per arm, plus per-arm latency jitter;
* ``persistent`` — each arm's error rate (and latency) follows its own
  log-AR(1) drift, ±20–30 %, that decorrelates within 20–60 s (a bad
  instance stays bad for up to a minute: at 10 s intervals that is a
  correlation of 0.6–0.85 from one interval to the next);
* ``noisy-instance`` — one of 3 or 5 instances of one arm has an error rate
  that wanders (log-AR(1), σ 0.7–1.0, a minute's persistence), its latency
  wandering with it (an eighth as much, up and down);
* ``bursts`` — in 3–8 % of the intervals one arm (either) gets a burst of
  errors (3–10× its usual count) and, separately, a latency hiccup;
* ``diurnal`` — strong day cycle (traffic ±50–80 %, errors, latency) over
  5-minute intervals, and the canary's weight changes during the run;
* ``late-onset`` — an incident hits both arms part-way through (errors ×3–×10,
  latency ×1.3–×2);
* ``low-traffic`` — 5–40 requests per arm and interval;
* ``combined`` — a slow start, a drift, over-dispersion and bursts at once.

Effects (A/B runs; the background family is drawn at random per run, and in
the late-onset family the effect starts part-way through): error rate ×1.5 /
×2 / ×3; whole latency distribution scaled so p99 is +10 / +20 / +50 %; share
of requests in the slow mode ×2 / ×4.

**Seeds.** The judge's defaults are tuned on ``TUNING_SEED`` only; the
numbers in ``bench/results/judge.json`` and docs/judge.md come from
``REPORTING_SEED`` (the default), never used for tuning.  The unit tests use
their own seeds.

Reported per judge: false rollbacks per trap family (Wilson 95 % interval),
power per effect (overall and per family), inconclusive rates, and samples
to decision.  Nothing here is asserted: the numbers are the result.

``--previous FILE`` puts an earlier result on the same corpus (e.g. the judge
before a change) beside the new figures: ``bench/results/judge.json`` carries
the sequential judge of commit a594cf7 that way.  ``corpus.held_out`` says
whether the run's seed is one the defaults were never tuned on.

Usage: ``python bench/judge.py [--runs-aa N] [--runs-ab N] [--workers N] [--seed S] [--previous FILE]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from shipwarden.domain.analysis import JudgeSpec
from shipwarden.domain.judge import MannWhitneyJudge, Sample, SequentialJudge

TUNING_SEED = 20260101
REPORTING_SEED = 424242
INTERVALS = 30
TIERS = {"low": 40.0, "medium": 400.0, "high": 3000.0}
INTERVAL_CHOICES = (10.0, 60.0, 300.0)
BOUNDS = np.concatenate([1.0 * 1.15 ** np.arange(0, 80), [np.inf]])  # 1 ms … ~70 s, +Inf

# name → strengths (cycled through the runs of the family)
FAMILIES: dict[str, list[dict[str, Any]]] = {
    "clean": [{}],
    "cold-start": [
        {"shape": shape, "length": length, "latency": lat, "errors": err}
        for shape in ("exp", "linear", "step")
        for length in (1, 2, 3, 5)
        for lat in (1.3, 1.6, 2.0)
        for err in (1.0, 3.0)
    ],
    "over-dispersion": [{"phi": phi} for phi in (1.5, 2.0, 3.0, 5.0)],
    "persistent": [{"sd": sd, "tau": tau} for sd in (0.2, 0.3) for tau in (20.0, 40.0, 60.0)],
    "noisy-instance": [{"instances": k, "sd": sd} for k in (3, 5) for sd in (0.7, 1.0)],
    "bursts": [{"rate": q, "size": size} for q in (0.03, 0.08) for size in (3.0, 10.0)],
    "diurnal": [{"amplitude": a} for a in (0.5, 0.8)],
    "late-onset": [{"errors": e, "latency": lat} for e, lat in ((3.0, 1.3), (10.0, 2.0))],
    "low-traffic": [{"requests": r} for r in (5.0, 15.0, 40.0)],
    "combined": [{}],
}
EFFECTS: list[tuple[str, str, float]] = [
    ("errors x1.5", "errors", 1.5),
    ("errors x2", "errors", 2.0),
    ("errors x3", "errors", 3.0),
    ("p99 +10%", "latency", 1.10),
    ("p99 +20%", "latency", 1.20),
    ("p99 +50%", "latency", 1.50),
    ("tail x2", "tail", 2.0),
    ("tail x4", "tail", 4.0),
]
SLOW_SD = 0.35  # log-sd of the slow mode


# --------------------------------------------------------------------------- generation


@dataclass
class Arm:
    """One arm in one interval: expected requests and a mixture of request groups.

    Each group is (share of the arm's requests, error probability, log-median latency);
    every group has the run's slow mode on top of its log-normal body.
    """

    lam: float
    groups: list[tuple[float, float, float]]
    slow: float
    extra_errors: float = 0.0  # expected errors of a burst, on top of the groups'


def _cold(shape: str, length: int, i: int) -> float:
    """Share (1 → 0) of the slow-start excess left in interval i (0-based) of the canary."""
    if shape == "exp":  # falls to a sixth of the excess at interval `length`, and on
        tau = max(length - 1, 1) / math.log(6.0)
        return math.exp(-i / tau)
    if shape == "linear":
        return max(0.0, 1.0 - i / length)
    return 1.0 if i < length else 0.0  # step


def _ar1(rng: np.random.Generator, n: int, sd: float, r: float) -> np.ndarray:
    """A stationary AR(1) path with marginal sd ``sd``."""
    x = np.empty(n)
    x[0] = rng.normal(0.0, sd)
    innov = rng.normal(0.0, sd * math.sqrt(1.0 - r * r), n)
    for i in range(1, n):
        x[i] = r * x[i - 1] + innov[i]
    return x


def _draw(
    rng: np.random.Generator, arm: Arm, sigma: float, slow_shift: float, hist: bool, t: float
) -> Sample:
    n = int(rng.poisson(max(arm.lam, 0.0)))
    shares = np.array([g[0] for g in arm.groups])
    shares = shares / shares.sum()
    p = float(np.clip(sum(s * g[1] for s, g in zip(shares, arm.groups, strict=True)), 0.0, 1.0))
    errors = int(rng.binomial(n, p))
    if arm.extra_errors > 0:
        errors = min(n, errors + int(rng.poisson(arm.extra_errors)))
    # latency: per group, body (1 - slow) and slow mode (slow)
    weights, mus, sds = [], [], []
    for s, g in zip(shares, arm.groups, strict=True):
        weights += [s * (1.0 - arm.slow), s * arm.slow]
        mus += [g[2], g[2] + slow_shift]
        sds += [sigma, SLOW_SD]
    w = np.array(weights)
    w /= w.sum()
    if hist:
        logb = np.log(BOUNDS[:-1])
        cdf = sum(wk * stats.norm.cdf((logb - mk) / sk) for wk, mk, sk in zip(w, mus, sds, strict=True))
        probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
        per = rng.multinomial(n, np.clip(probs, 0.0, None) / np.clip(probs, 0.0, None).sum())
        return Sample(t, n, errors, None, BOUNDS.copy(), np.cumsum(per).astype(np.int64))
    comp = rng.choice(len(w), size=n, p=w)
    lat = np.exp(np.array(mus)[comp] + np.array(sds)[comp] * rng.standard_normal(n))
    return Sample(t, n, errors, lat)


@dataclass
class Run:
    pairs: list[tuple[Sample, Sample]]
    meta: dict[str, Any] = field(default_factory=dict)


def generate(seed: int, index: int, family: str, strength: dict[str, Any], effect: tuple[str, float]) -> Run:
    """One labelled run of ``INTERVALS`` (baseline, canary) pairs."""
    rng = np.random.default_rng([seed, index])
    kind, size = effect
    if family == "low-traffic":
        tier, lam = "low", float(strength["requests"])
    else:
        tier = ("low", "medium", "high")[index % 3]
        lam = TIERS[tier]
    interval = 300.0 if family == "diurnal" else float(rng.choice(INTERVAL_CHOICES))
    split = 0.3 if rng.random() < 0.25 else 1.0
    p0 = math.exp(rng.uniform(math.log(0.002), math.log(0.03)))
    mu0 = rng.uniform(math.log(20), math.log(200))
    sigma = float(rng.uniform(0.4, 0.9))
    slow0 = math.exp(rng.uniform(math.log(0.005), math.log(0.03)))
    slow_shift = math.log(rng.uniform(4.0, 8.0))
    phase = rng.uniform(0, 2 * math.pi)
    hist = tier == "high"
    n = INTERVALS
    onset = int(rng.integers(5, 21)) if family == "late-onset" else 0

    # shared by both arms
    amp = float(strength.get("amplitude", 0.3)) if family == "diurnal" else 0.3
    period = 86400.0 / (6.0 if family == "diurnal" else 1.0)  # the diurnal family: a 4-hour "day"
    day = np.sin(2 * math.pi * (np.arange(n) * interval) / period + phase)
    traffic = 1.0 + amp * day
    err_shared = (1.0 + 0.8 * amp * day) * np.exp(rng.normal(0.0, 0.25, n) - 0.25**2 / 2)
    lat_shared = 0.25 * amp * day + rng.normal(0.0, 0.05, n)
    splits = np.full(n, split)
    if family == "diurnal":  # progressive delivery: the canary's weight steps up part-way through
        at = int(rng.integers(8, 22))
        lo, hi = (0.1, 0.3) if rng.random() < 0.5 else (0.3, 1.0)
        splits[:at], splits[at:] = lo, hi
    if family == "late-onset" and kind == "none":
        start = int(rng.integers(5, 26))
        err_shared[start:] *= strength["errors"]
        lat_shared[start:] += math.log(strength["latency"])

    # per arm: error multiplier (mean 1) and latency shift, per interval
    err_arm = np.ones((2, n))
    lat_arm = np.zeros((2, n))
    extra = np.zeros((2, n))
    slow_frac = np.zeros((2, n))  # share of an arm's requests in a latency hiccup (×3)
    noisy: tuple[int, float, np.ndarray] | None = None
    expected_errors = lam * p0 * np.stack([traffic, traffic * splits]) * err_shared
    if family == "over-dispersion":
        phi = float(strength["phi"])
        cv2 = np.minimum((phi - 1.0) / np.maximum(expected_errors, 1e-9), 2.25)
        shape = 1.0 / np.maximum(cv2, 1e-9)
        err_arm = rng.gamma(shape, 1.0 / shape)
        lat_arm = rng.normal(0.0, 0.02 * math.sqrt(phi - 1.0), (2, n))
    elif family in ("persistent", "combined"):
        sd, tau = (float(strength["sd"]), float(strength["tau"])) if family == "persistent" else (0.2, 40.0)
        r = math.exp(-interval / tau)  # deviations decorrelate within `tau` seconds
        for a in range(2):
            x = _ar1(rng, n, sd, r)
            err_arm[a] = np.exp(x - sd * sd / 2)
            lat_arm[a] = x / 6.0
    elif family == "noisy-instance":
        sd = float(strength["sd"])
        x = _ar1(rng, n, sd, math.exp(-interval / 60.0))  # a bad instance stays bad for about a minute
        noisy = (int(rng.integers(0, 2)), 1.0 / int(strength["instances"]), x)
    if family in ("bursts", "combined"):
        q, size_b = (float(strength["rate"]), float(strength["size"])) if family == "bursts" else (0.03, 3.0)
        for i in range(n):
            if rng.random() < q:
                a = int(rng.integers(0, 2))
                extra[a, i] = size_b * expected_errors[a, i] + 2.0
            if rng.random() < q:
                slow_frac[int(rng.integers(0, 2)), i] = rng.uniform(0.05, 0.15)
    if family == "combined":
        cv2 = np.minimum(1.0 / np.maximum(expected_errors, 1e-9), 2.25)  # φ = 2
        shape = 1.0 / cv2
        err_arm *= rng.gamma(shape, 1.0 / shape)

    # canary only: slow start and the effect
    cold_lat = np.ones(n)
    cold_err = np.ones(n)
    cold = None
    if family == "cold-start":
        cold = strength
    elif family == "combined":
        opts = FAMILIES["cold-start"]
        cold = opts[int(rng.integers(0, len(opts)))]
    if cold is not None:
        for i in range(n):
            e = _cold(cold["shape"], int(cold["length"]), i)
            cold_lat[i] = 1.0 + (cold["latency"] - 1.0) * e
            cold_err[i] = 1.0 + (cold["errors"] - 1.0) * e
    eff_on = np.arange(n) >= onset

    pairs = []
    for i in range(n):
        t = i * interval
        arms = []
        for a in range(2):
            canary = a == 1
            lam_a = lam * traffic[i] * (splits[i] if canary else 1.0)
            p = p0 * err_shared[i] * err_arm[a, i]
            mu = mu0 + lat_shared[i] + lat_arm[a, i]
            slow = slow0
            if canary:
                p *= cold_err[i]
                mu += math.log(cold_lat[i])
                if eff_on[i]:
                    if kind == "errors":
                        p *= size
                    elif kind == "latency":
                        mu += math.log(size)
                    elif kind == "tail":
                        slow *= size
            groups = [(1.0, p, mu)]
            if noisy is not None and noisy[0] == a:
                share, x = noisy[1], noisy[2]
                mult = math.exp(x[i] - 0.5 * float(strength["sd"]) ** 2)  # mean 1 over the run
                groups = [(1.0 - share, p, mu), (share, p * mult, mu + x[i] / 8.0)]
            if slow_frac[a, i] > 0:
                f = slow_frac[a, i]
                groups = [(g[0] * (1 - f), g[1], g[2]) for g in groups] + [(f, p, mu + math.log(3.0))]
            arms.append(Arm(lam_a, groups, slow, float(extra[a, i])))
        b = _draw(rng, arms[0], sigma, slow_shift, hist, t)
        c = _draw(rng, arms[1], sigma, slow_shift, hist, t)
        pairs.append((b, c))
    meta = {
        "tier": tier,
        "split": split,
        "p0": p0,
        "sigma": sigma,
        "interval": interval,
        "onset": onset,
    }
    return Run(pairs, meta)


# --------------------------------------------------------------------------- judging


def make_spec(overrides: dict[str, Any]) -> JudgeSpec:
    """The judged spec: defaults, with ``samples`` = the corpus window, plus command-line overrides."""
    data: dict[str, Any] = {"samples": INTERVALS}
    for key in ("alpha", "beta"):
        if overrides.get(key) is not None:
            data[key] = overrides[key]
    metrics: dict[str, dict[str, Any]] = {"errorRate": {}, "latency": {}}
    for key in ("tolerance", "regression"):
        if overrides.get(key) is not None:
            metrics["errorRate"][key] = metrics["latency"][key] = overrides[key]
    data["metrics"] = metrics
    return JudgeSpec.model_validate(data)


Job = tuple[int, int, str, int, str, str, float, dict[str, Any]]


def judge_run(job: Job) -> dict[str, Any]:
    seed, index, family, strength_i, label, kind, size, overrides = job
    run = generate(seed, index, family, FAMILIES[family][strength_i], (kind, size))
    spec = make_spec(overrides)
    out: dict[str, Any] = {"family": family, "strength": strength_i, "effect": label, **run.meta}
    judges: list[tuple[str, Callable[[], Any]]] = [
        ("sequential", lambda: SequentialJudge(spec)),
        ("mann-whitney", lambda: MannWhitneyJudge(spec)),
    ]
    for name, factory in judges:
        judge = factory()
        t0 = time.perf_counter()
        verdict = judge.verdict
        for b, c in run.pairs:
            verdict = judge.update(b, c)
            if verdict.decision.done:
                break
        if not verdict.decision.done:
            verdict = judge.finish()
        out[name] = {
            "decision": verdict.decision.value,
            "decided_at": verdict.decided_at,
            "seconds": time.perf_counter() - t0,
            "failed": [m.name for m in verdict.metrics if m.classification.value in ("high", "low")],
        }
    return out


def jobs_for(seed: int, runs_aa: int, runs_ab: int, overrides: dict[str, Any],
             families: list[str] | None = None) -> list[Job]:  # fmt: skip
    jobs: list[Job] = []
    index = 0
    fams = families or list(FAMILIES)
    for family in FAMILIES:
        for k in range(runs_aa):
            if family in fams:
                jobs.append((seed, index, family, k % len(FAMILIES[family]), "A/A", "none", 1.0, overrides))
            index += 1
    pick = np.random.default_rng([seed, 999_999])
    names = list(FAMILIES)
    for label, kind, size in EFFECTS:
        for _ in range(runs_ab):
            family = names[int(pick.integers(0, len(names)))]
            strength = int(pick.integers(0, len(FAMILIES[family])))
            if family in fams:
                jobs.append((seed, index, family, strength, label, kind, size, overrides))
            index += 1
    return jobs


def run_jobs(jobs: list[Job], workers: int) -> list[dict[str, Any]]:
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            return list(pool.map(judge_run, jobs, chunksize=16))
    return [judge_run(j) for j in jobs]


# --------------------------------------------------------------------------- summary


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, centre - half), min(1.0, centre + half))


def stats_of(rs: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rs)
    fails = sum(x["decision"] == "fail" for x in rs)
    steps = [x["decided_at"] for x in rs if x["decided_at"] is not None]
    fail_steps = [x["decided_at"] for x in rs if x["decision"] == "fail"]
    lo, hi = wilson(fails, n)
    return {
        "runs": n,
        "fail_rate": fails / n if n else math.nan,
        "fail_rate_ci95": [lo, hi],
        "pass_rate": sum(x["decision"] == "pass" for x in rs) / n if n else math.nan,
        "inconclusive_rate": sum(x["decision"] == "inconclusive" for x in rs) / n if n else math.nan,
        "median_samples_to_decision": statistics.median(steps) if steps else None,
        "mean_samples_to_decision": statistics.fmean(steps) if steps else None,
        "median_samples_to_fail": statistics.median(fail_steps) if fail_steps else None,
    }


def summarise(rows: list[dict[str, Any]], judge: str) -> dict[str, Any]:
    """False rollbacks per trap family (and tier), power per effect (overall, per family, tier and
    analysis interval), samples to decision."""
    aa: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ab: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    steps: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        x = r[judge]
        at = x["decided_at"] if x["decided_at"] is not None else INTERVALS
        for key in ("all", "A/A" if r["effect"] == "A/A" else "A/B", f"tier:{r['tier']}",
                    f"interval:{r['interval']:g}s"):  # fmt: skip
            steps[key].append(at)
        if r["effect"] == "A/A":
            fam, every = r["family"], f"{r['interval']:g}s"
            for key in ("all", fam, f"{fam}/{r['tier']}", f"tier:{r['tier']}", f"interval:{every}",
                        f"{fam}/interval:{every}"):  # fmt: skip
                aa[key].append(x)
        else:
            for key in ("all", r["family"], f"tier:{r['tier']}", f"interval:{r['interval']:g}s"):
                ab[r["effect"]][key].append(x)
    return {
        "false_rollbacks": {k: stats_of(v) for k, v in sorted(aa.items())},
        "power": {e: {k: stats_of(v) for k, v in sorted(by.items())} for e, by in ab.items()},
        "samples_to_decision": {k: statistics.median(v) for k, v in sorted(steps.items())},
        "median_samples_to_decision": statistics.median(steps["all"]),
        "median_samples_to_decision_aa": statistics.median(steps["A/A"] or [0]),
        "median_samples_to_decision_ab": statistics.median(steps["A/B"] or [0]),
        "seconds_total": sum(r[judge]["seconds"] for r in rows),
    }


def _pct(x: float) -> str:
    return f"{x:6.1%}"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs-aa", type=int, default=400, help="A/A runs per trap family")
    ap.add_argument("--runs-ab", type=int, default=250, help="A/B runs per effect (random background)")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument(
        "--seed",
        type=int,
        default=REPORTING_SEED,
        help=f"corpus seed (defaults were tuned on {TUNING_SEED}, never on {REPORTING_SEED})",
    )
    ap.add_argument("--families", nargs="*", help="only these trap families")
    ap.add_argument("--tolerance", type=float, help="override both metrics' tolerance (both judges)")
    ap.add_argument("--regression", type=float, help="override both metrics' regression ratio")
    ap.add_argument("--alpha", type=float)
    ap.add_argument("--beta", type=float)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "judge.json")
    ap.add_argument(
        "--previous",
        type=Path,
        help="an earlier result of this bench (same seed and sizes, e.g. the judge before a change): "
        "its sequential figures are reported beside the new ones as 'previous'",
    )
    ap.add_argument("--previous-label", default="previous", help="what the previous result was run on")
    a = ap.parse_args()
    previous = None
    if a.previous is not None:
        previous = json.loads(a.previous.read_text())
        c = previous["corpus"]
        if (c["seed"], c["runs_aa_per_family"], c["runs_ab_per_effect"]) != (a.seed, a.runs_aa, a.runs_ab):
            ap.error(f"{a.previous} is another corpus (seed {c['seed']}, {c['runs_aa_per_family']} A/A, "
                     f"{c['runs_ab_per_effect']} A/B runs)")  # fmt: skip

    overrides = {"tolerance": a.tolerance, "regression": a.regression, "alpha": a.alpha, "beta": a.beta}
    jobs = jobs_for(a.seed, a.runs_aa, a.runs_ab, overrides, a.families)
    t0 = time.perf_counter()
    rows = run_jobs(jobs, a.workers)
    wall = time.perf_counter() - t0
    judges = ("sequential", "mann-whitney")
    summary = {j: summarise(rows, j) for j in judges}
    seq, mw = summary["sequential"], summary["mann-whitney"]

    fams = [f for f in FAMILIES if f in seq["false_rollbacks"]]
    effects = [label for label, _, _ in EFFECTS if label in seq["power"]]
    false_rollbacks = {f: {j: summary[j]["false_rollbacks"][f] for j in judges} for f in [*fams, "all"]}
    power = {
        e: {j: summary[j]["power"][e]["all"] for j in judges}
        | {
            "by": {
                k: {j: summary[j]["power"][e][k]["fail_rate"] for j in judges}
                | {"runs": seq["power"][e][k]["runs"]}
                for k in seq["power"][e]
                if k != "all"
            }
        }
        for e in effects
    }
    if previous is not None:  # the earlier judge's figures on the same corpus, beside the new ones
        for f in false_rollbacks:
            false_rollbacks[f]["previous"] = previous["false_rollbacks"][f]["sequential"]
        for e in effects:
            power[e]["previous"] = previous["power"][e]["sequential"]
            for k, row in power[e]["by"].items():
                row["previous"] = previous["power"][e]["by"].get(k, {}).get("sequential")
    seq_med, mw_med = seq["median_samples_to_decision"], mw["median_samples_to_decision"]
    as_good = [
        e for e in effects if power[e]["sequential"]["fail_rate"] >= power[e]["mann-whitney"]["fail_rate"]
    ]
    goals = {
        "false_rollbacks_le_1pct_in_every_family": {
            "met": all(seq["false_rollbacks"][f]["fail_rate"] <= 0.01 for f in fams),
            "worst": max(((seq["false_rollbacks"][f]["fail_rate"], f) for f in fams), default=None),
        },
        "power_ge_mann_whitney_for_every_effect": {
            "met": len(as_good) == len(effects),
            "effects_met": as_good,
        },
        "median_samples_le_half_of_fixed_window": {"met": seq_med <= INTERVALS / 2, "sequential": seq_med,
                                                   "mann-whitney": mw_med},
    }  # fmt: skip

    held_out = a.seed != TUNING_SEED
    which = "held out: never tuned on" if held_out else "the TUNING seed: not for reporting"
    head = f"judge benchmark: {len(rows)} runs, {wall:.1f}s wall, {a.workers} worker(s)"
    print(f"{head}, seed {a.seed} ({which})")
    print(f"\n{'false rollbacks (A/A)':<24}{'runs':>6}{'sequential':>12}{'(95% CI)':>16}{'med':>6}{'MW':>9}")
    for f in [*fams, "all"]:
        s, m = seq["false_rollbacks"][f], mw["false_rollbacks"][f]
        lo, hi = s["fail_rate_ci95"]
        print(f"{f:<24}{s['runs']:>6}{_pct(s['fail_rate']):>12}{f'{lo:.1%}–{hi:.1%}':>16}"
              f"{s['median_samples_to_decision']!s:>6}{_pct(m['fail_rate']):>9}")  # fmt: skip
    head = f"\n{'power':<14}{'runs':>6}{'sequential':>12}{'MW':>8}{'seq med':>9}{'seq med fail':>14}"
    print(head + "".join(f"{k:>9}" for k in ("10s", "60s", "300s")))
    for e in effects:
        s, m = seq["power"][e]["all"], mw["power"][e]["all"]
        by = power[e]["by"]
        cells = "".join(
            f"{by[f'interval:{i}s']['sequential']:>5.0%}/{by[f'interval:{i}s']['mann-whitney']:<3.0%}"
            for i in (10, 60, 300)
            if f"interval:{i}s" in by
        )
        med, med_fail = s["median_samples_to_decision"], s["median_samples_to_fail"]
        print(f"{e:<14}{s['runs']:>6}{_pct(s['fail_rate']):>12}{_pct(m['fail_rate']):>8}"
              f"{med!s:>9}{med_fail!s:>14}  {cells}")  # fmt: skip
    if previous is not None:
        print(f"\n{'vs ' + a.previous_label:<24}{'new':>9}{'previous':>10}{'MW':>9}")
        rows3 = [(f"A/A {f}", false_rollbacks[f]) for f in [*fams, "all"]] + [(e, power[e]) for e in effects]
        for label, row in rows3:
            cells = [row[j]["fail_rate"] for j in ("sequential", "previous", "mann-whitney")]
            print(f"{label:<24}{_pct(cells[0]):>9}{_pct(cells[1]):>10}{_pct(cells[2]):>9}")
        prev_med = previous["samples_to_decision"]["sequential"]["all"]
        print(f"{'median interval':<24}{seq_med:>9g}{prev_med:>10g}{mw_med:>9g}")
    print("\nmedian samples to decision (sequential; Mann-Whitney always decides at 30):")
    print("  " + ", ".join(f"{k} {v:g}" for k, v in seq["samples_to_decision"].items()))
    print("goals:", json.dumps(goals))

    result = {
        "benchmark": "judge",
        "corpus": {
            "seed": a.seed,
            "tuning_seed": TUNING_SEED,
            "reporting_seed": REPORTING_SEED,
            "held_out": held_out,
            "runs": len(rows),
            "runs_aa_per_family": a.runs_aa,
            "runs_ab_per_effect": a.runs_ab,
            "intervals_per_run": INTERVALS,
            "interval_seconds": list(INTERVAL_CHOICES),
            "requests_per_interval_per_arm": TIERS,
            "families": FAMILIES,
            "effects": {label: {"kind": kind, "size": size} for label, kind, size in EFFECTS},
        },
        "spec": make_spec(overrides).model_dump(by_alias=True),
        "false_rollbacks": false_rollbacks,
        "power": power,
        "samples_to_decision": {j: summary[j]["samples_to_decision"] for j in judges}
        | ({"previous": previous["samples_to_decision"]["sequential"]} if previous is not None else {}),
        "previous": None
        if previous is None
        else {"label": a.previous_label, "file": str(a.previous), "machine": previous.get("machine")},
        "goals": goals,
        "detail": {j: {"false_rollbacks": summary[j]["false_rollbacks"]} for j in judges},
        "wall_seconds": wall,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "workers": a.workers},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
