"""Window sizing: the planning maths agrees with simulation, and its edges are explicit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from shipwarden.domain.judge.sizing import detectable_ratio, ratio_test_power, samples_needed


def simulated_power(nb: float, nc: float, rate: float, ratio: float, alpha: float, runs: int = 4000) -> float:
    """Poisson counts, exact one-sided conditional binomial test: the test the sizing describes."""
    rng = np.random.default_rng(11)
    xb = rng.poisson(nb * rate, runs)
    xc = rng.poisson(nc * rate * ratio, runs)
    pi0 = nc / (nc + nb)
    p = stats.binom.sf(xc - 1, xb + xc, pi0)  # P(X ≥ xc) under the null share
    return float(np.mean(p <= alpha))


@pytest.mark.parametrize(
    ("nb", "nc", "rate", "ratio"),
    [(12_000, 12_000, 0.004, 2.0), (12_000, 3_600, 0.01, 2.0), (90_000, 90_000, 0.002, 1.5)],
)
def test_power_matches_simulation_of_the_exact_test(nb: float, nc: float, rate: float, ratio: float) -> None:
    planned = ratio_test_power(nb, nc, rate, ratio, 0.01)
    assert 0.2 < planned < 0.999  # the cases are informative, not saturated
    assert planned == pytest.approx(simulated_power(nb, nc, rate, ratio, 0.01), abs=0.06)


def test_power_grows_with_traffic_and_effect() -> None:
    base = ratio_test_power(10_000, 10_000, 0.003, 2.0, 0.01)
    assert ratio_test_power(40_000, 40_000, 0.003, 2.0, 0.01) > base
    assert ratio_test_power(10_000, 10_000, 0.003, 3.0, 0.01) > base
    assert ratio_test_power(10_000, 3_000, 0.003, 2.0, 0.01) < base  # a smaller canary sees less


def test_no_events_means_no_power_and_the_null_means_the_size() -> None:
    assert ratio_test_power(10_000, 10_000, 0.0, 2.0, 0.01) == 0.0
    assert ratio_test_power(0, 10_000, 0.01, 2.0, 0.01) == 0.0
    assert ratio_test_power(10_000, 10_000, 0.01, 1.0, 0.01) == 0.01
    with pytest.raises(ValueError, match="alpha"):
        ratio_test_power(10, 10, 0.1, 2.0, 1.5)


def test_detectable_ratio_is_where_power_reaches_the_target() -> None:
    r = detectable_ratio(12_000, 12_000, 0.005, 0.01, 0.95)
    assert 1.2 < r < 3.0
    assert ratio_test_power(12_000, 12_000, 0.005, r, 0.01) >= 0.95
    assert ratio_test_power(12_000, 12_000, 0.005, r / 1.01, 0.01) < 0.95
    assert detectable_ratio(48_000, 48_000, 0.005, 0.01, 0.95) < r  # more traffic, finer resolution
    assert math.isinf(detectable_ratio(10, 10, 1e-9, 0.01, 0.95))


def test_samples_needed_is_the_first_window_with_enough_power() -> None:
    k = samples_needed(400, 400, 0.002, 2.0, 0.01, 0.95)
    assert k is not None and k > 30  # 30 intervals of 400 requests at 0.2 % errors are too few for ×2
    assert ratio_test_power(k * 400, k * 400, 0.002, 2.0, 0.01) >= 0.95
    assert ratio_test_power((k - 1) * 400, (k - 1) * 400, 0.002, 2.0, 0.01) < 0.95
    assert samples_needed(400, 400, 0.0, 2.0, 0.01, 0.95) is None
