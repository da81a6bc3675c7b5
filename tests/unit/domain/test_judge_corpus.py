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
