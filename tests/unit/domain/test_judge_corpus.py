"""Seeded synthetic arms for judge tests (Poisson traffic, binomial errors, log-normal latency)."""

from __future__ import annotations

import numpy as np

from shipwarden.domain.judge import Sample


def pairs(
    seed: int,
    n: int = 30,
    requests: float = 500.0,
    error_rate: float = 0.01,
    error_factor: float = 1.0,
    latency_factor: float = 1.0,
    canary_share: float = 1.0,
) -> list[tuple[Sample, Sample]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        drift = 1.0 + 0.3 * np.sin(i / 5.0)  # shared by both arms
        arms = []
        for share, ef, lf in ((1.0, 1.0, 1.0), (canary_share, error_factor, latency_factor)):
            k = int(rng.poisson(requests * share * drift))
            e = int(rng.binomial(k, min(1.0, error_rate * drift * ef)))
            lat = rng.lognormal(np.log(50.0 * drift * lf), 0.6, k)
            arms.append(Sample(60.0 * i, k, e, lat))
        out.append((arms[0], arms[1]))
    return out


def test_corpus_is_seeded_and_applies_effects() -> None:
    a, b = pairs(7, n=3), pairs(7, n=3)
    assert [x.errors for x, _ in a] == [x.errors for x, _ in b]
    worse = pairs(7, n=20, error_factor=3.0)
    assert sum(c.errors for _, c in worse) > 2 * sum(x.errors for x, _ in worse)


def overdispersed_pairs(
    seed: int,
    n: int = 20,
    requests: float = 3000.0,
    error_rate: float = 0.01,
    cv: float = 0.3,
    persistence: float = 0.5,
    canary_share: float = 1.0,
    error_factor: float = 1.0,
) -> list[tuple[Sample, Sample]]:
    """A/A with production noise: each arm's per-interval error probability and latency scale wander
    on their own — a log-AR(1) with sd ``cv`` (mean-one for the error probability) and correlation
    ``persistence`` from one 60 s interval to the next — on top of binomial errors.  The canary's
    error rate is ``error_factor`` times the baseline's."""
    rng = np.random.default_rng(seed)
    x = np.zeros((2, n))
    for a in range(2):
        x[a, 0] = rng.normal(0.0, cv)
        for i in range(1, n):
            x[a, i] = persistence * x[a, i - 1] + rng.normal(0.0, cv * np.sqrt(1 - persistence**2))
    out = []
    for i in range(n):
        arms = []
        for a, share in ((0, 1.0), (1, canary_share)):
            k = int(rng.poisson(requests * share))
            p = min(1.0, error_rate * float(np.exp(x[a, i] - cv * cv / 2)) * (error_factor if a else 1.0))
            e = int(rng.binomial(k, p))
            lat = rng.lognormal(np.log(50.0) + x[a, i] / 10.0, 0.6, k)
            arms.append(Sample(60.0 * i, k, e, lat))
        out.append((arms[0], arms[1]))
    return out


def cold_start_pairs(
    seed: int,
    n: int = 20,
    requests: float = 2000.0,
    error_rate: float = 0.01,
    slow: float = 1.6,
    errors: float = 2.0,
    length: int = 5,
) -> list[tuple[Sample, Sample]]:
    """A/A whose canary starts cold: latency × ``slow`` and errors × ``errors`` in the first
    interval, the excess falling linearly to nothing over ``length`` intervals."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        fade = max(0.0, 1.0 - i / length)
        arms = []
        for lf, ef in ((1.0, 1.0), (1.0 + (slow - 1.0) * fade, 1.0 + (errors - 1.0) * fade)):
            k = int(rng.poisson(requests))
            e = int(rng.binomial(k, min(1.0, error_rate * ef)))
            arms.append(Sample(60.0 * i, k, e, rng.lognormal(np.log(50.0 * lf), 0.6, k)))
        out.append((arms[0], arms[1]))
    return out
