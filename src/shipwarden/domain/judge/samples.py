"""Per-interval samples of one arm (baseline or canary) and their JSON-lines form.

One sample summarises one analysis interval of one arm: how many requests,
how many failed, and the latency distribution — either the raw latencies
(``latencies_ms``) or a Prometheus-style cumulative histogram
(``latency_buckets``: upper bound in ms → number of requests at or below it).
Raw values are exact; histograms are what metric back-ends actually keep, so
every statistic here works on both.

Parsing is strict and reports every bad line with its number, because the
person reading the error is looking at a file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_KEYS = {"t", "requests", "errors", "latencies_ms", "latency_buckets"}


@dataclass(frozen=True, eq=False)
class Sample:
    """One interval of one arm.

    ``bucket_bounds``/``bucket_counts`` hold a cumulative histogram: strictly
    increasing upper bounds in ms (the last may be ``inf``) and non-decreasing
    counts of requests with latency ≤ bound.
    """

    t: float
    requests: int
    errors: int
    latencies_ms: FloatArray | None = None
    bucket_bounds: FloatArray | None = None
    bucket_counts: IntArray | None = None
    line: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.requests < 0 or self.errors < 0:
            raise ValueError("'requests' and 'errors' cannot be negative")
        if self.errors > self.requests:
            raise ValueError(f"'errors' ({self.errors}) is more than 'requests' ({self.requests})")
        if self.latencies_ms is not None and self.bucket_bounds is not None:
            raise ValueError("give either 'latencies_ms' or 'latency_buckets', not both")
        if (self.bucket_bounds is None) != (self.bucket_counts is None):
            raise ValueError("bucket bounds and counts go together")

    # -- latency views -------------------------------------------------------

    @property
    def has_latency(self) -> bool:
        return self.latency_count > 0

    @property
    def latency_count(self) -> int:
        """Number of latency observations (may differ from ``requests``)."""
        if self.latencies_ms is not None:
            return int(self.latencies_ms.size)
        if self.bucket_counts is not None and self.bucket_counts.size:
            return int(self.bucket_counts[-1])
        return 0

    def count_above(self, threshold_ms: float) -> int:
        """Observations strictly above ``threshold_ms``.

        For a histogram the threshold must be one of its bounds, otherwise
        the answer would be a guess; callers pick thresholds from the bounds.
        """
        if self.latencies_ms is not None:
            return int(np.count_nonzero(self.latencies_ms > threshold_ms))
        if self.bucket_bounds is None or self.bucket_counts is None:
            return 0
        i = int(np.searchsorted(self.bucket_bounds, threshold_ms))
        if i >= self.bucket_bounds.size or self.bucket_bounds[i] != threshold_ms:
            raise ValueError(f"{threshold_ms} ms is not a bucket bound of this histogram")
        return int(self.bucket_counts[-1] - self.bucket_counts[i])

    def quantile(self, q: float) -> float:
        """Latency quantile in ms; NaN without latency data.

        Histograms interpolate linearly inside the bucket, like Prometheus'
        ``histogram_quantile`` (the +Inf bucket answers with the highest finite bound).
        """
        if self.latencies_ms is not None:
            return float(np.quantile(self.latencies_ms, q)) if self.latencies_ms.size else math.nan
        if self.bucket_bounds is None or self.bucket_counts is None or self.latency_count == 0:
            return math.nan
        bounds, cum = self.bucket_bounds, self.bucket_counts
        rank = q * float(cum[-1])
        i = int(np.searchsorted(cum, rank, side="left"))
        i = min(i, bounds.size - 1)
        if math.isinf(bounds[i]):
            finite = bounds[np.isfinite(bounds)]
            return float(finite[-1]) if finite.size else math.nan
        lo_b = 0.0 if i == 0 else float(bounds[i - 1])
        lo_c = 0.0 if i == 0 else float(cum[i - 1])
        hi_c = float(cum[i])
        if hi_c == lo_c:
            return float(bounds[i])
        return lo_b + (float(bounds[i]) - lo_b) * (rank - lo_c) / (hi_c - lo_c)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"t": self.t, "requests": self.requests, "errors": self.errors}
        if self.latencies_ms is not None:
            out["latencies_ms"] = [float(x) for x in self.latencies_ms]
        if self.bucket_bounds is not None and self.bucket_counts is not None:
            out["latency_buckets"] = {
                ("+Inf" if math.isinf(b) else f"{b:g}"): int(c)
                for b, c in zip(self.bucket_bounds, self.bucket_counts, strict=True)
            }
        return out


def histogram(bounds: Iterable[float], cumulative_counts: Iterable[int]) -> tuple[FloatArray, IntArray]:
    """Validate a cumulative histogram and return it as arrays (bounds ascending)."""
    b = np.asarray(list(bounds), dtype=np.float64)
    c = np.asarray(list(cumulative_counts), dtype=np.int64)
    if b.size == 0:
        raise ValueError("'latency_buckets' is empty")
    order = np.argsort(b, kind="stable")
    b, c = b[order], c[order]
    if np.any(np.isnan(b)) or np.any(b < 0) or np.any(np.diff(b) <= 0):
        raise ValueError("bucket bounds must be distinct non-negative numbers (or '+Inf')")
    if np.any(c < 0) or np.any(np.diff(c) < 0):
        raise ValueError(
            "bucket counts must be cumulative (Prometheus 'le' semantics): "
            "each count includes every smaller bucket, so they never decrease"
        )
    return b, c


@dataclass(frozen=True)
class SampleIssue:
    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


class SampleParseError(ValueError):
    """Bad samples; ``issues`` has one entry per bad line (first 50)."""

    def __init__(self, issues: list[SampleIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def _int(obj: dict[str, object], key: str) -> int:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError(f"'{key}' must be a whole number, got {v!r}")
    return int(v)


def parse_sample(obj: object, line: int | None = None) -> Sample:
    """One decoded JSON object → ``Sample``; raises ``ValueError`` with a readable message."""
    if not isinstance(obj, dict):
        raise ValueError('each line must be a JSON object like {"t": 60, "requests": 100, "errors": 1}')
    unknown = sorted(set(obj) - _KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}; allowed: {sorted(_KEYS)}")
    for key in ("t", "requests", "errors"):
        if key not in obj:
            raise ValueError(f"missing '{key}'")
    t = obj["t"]
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        raise ValueError(f"'t' must be a number of seconds, got {t!r}")
    requests, errors = _int(obj, "requests"), _int(obj, "errors")
    lat = bounds = counts = None
    if "latencies_ms" in obj:
        raw = obj["latencies_ms"]
        if not isinstance(raw, list) or any(
            isinstance(x, bool) or not isinstance(x, int | float) for x in raw
        ):
            raise ValueError("'latencies_ms' must be a list of numbers")
        lat = np.asarray(raw, dtype=np.float64)
        if lat.size and (not np.all(np.isfinite(lat)) or np.any(lat < 0)):
            raise ValueError("'latencies_ms' values must be finite and ≥ 0")
    if "latency_buckets" in obj:
        raw_b = obj["latency_buckets"]
        if not isinstance(raw_b, dict):
            raise ValueError('\'latency_buckets\' must be an object like {"50": 80, "100": 97, "+Inf": 100}')
        keys: list[float] = []
        vals: list[int] = []
        for k, v in raw_b.items():
            try:
                kf = math.inf if str(k).strip().lower() in {"+inf", "inf"} else float(k)
            except ValueError:
                raise ValueError(f"bucket bound {k!r} is not a number of ms or '+Inf'") from None
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"bucket {k!r}: count must be a whole number ≥ 0, got {v!r}")
            keys.append(kf)
            vals.append(v)
        bounds, counts = histogram(keys, vals)
    return Sample(float(t), requests, errors, lat, bounds, counts, line)


def parse_samples(text: str, source: str = "<samples>") -> list[Sample]:
    """JSON lines → samples in file order; blank lines and ``#`` comments are skipped.

    ``t`` must not go backwards: the judge pairs baseline and canary by
    position, and out-of-order intervals would silently pair the wrong ones.
    """
    out: list[Sample] = []
    issues: list[SampleIssue] = []
    last_t: float | None = None
    for no, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as exc:
            issues.append(SampleIssue(source, no, f"not valid JSON: {exc.msg} (column {exc.colno})"))
            continue
        try:
            sample = parse_sample(obj, no)
        except ValueError as exc:
            issues.append(SampleIssue(source, no, str(exc)))
            continue
        if last_t is not None and sample.t < last_t:
            issues.append(SampleIssue(source, no, f"'t' goes backwards ({sample.t:g} after {last_t:g})"))
        last_t = sample.t
        out.append(sample)
        if len(issues) >= 50:
            break
    if issues:
        raise SampleParseError(issues)
    if not out:
        raise SampleParseError([SampleIssue(source, 1, "no samples: expected one JSON object per line")])
    return out
