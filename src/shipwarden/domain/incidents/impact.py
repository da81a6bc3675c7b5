"""The incident in numbers: how long, how soon seen, acknowledged, restored; how many requests failed.

Times (:func:`times`), from the incident's stamps (:mod:`.lifecycle`):

* **time to detect** — onset → detected (the alert reached shipwarden, or the incident was opened);
* **time to acknowledge** — detected → the first human response;
* **time to restore** — onset → restored (the triggering alert resolved, or monitoring began);
* **duration** — onset → resolved (or → now while it is open).

Affected requests (:func:`affected_requests`) come from the router's per-version counters over
the impact window (onset → restored): the failed (5xx) requests counted there, and the excess
over what the pre-onset error rate would have produced in the same traffic — the part the
incident is to blame for.  :class:`History` is what a metric source returns: per-step rates
(requests/s, errors/s) and a latency quantile, as ``(unix seconds, value)`` points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shipwarden.domain.incidents.lifecycle import Incident

__all__ = ["Affected", "History", "Point", "Times", "affected_requests", "times"]

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Times:
    detect_s: float | None
    acknowledge_s: float | None
    restore_s: float | None
    duration_s: float | None
    open: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "time_to_detect_s": self.detect_s,
            "time_to_acknowledge_s": self.acknowledge_s,
            "time_to_restore_s": self.restore_s,
            "duration_s": self.duration_s,
            "open": self.open,
        }


def _secs(a: datetime | None, b: datetime | None) -> float | None:
    return None if a is None or b is None else round(max(0.0, (b - a).total_seconds()), 3)


def times(inc: Incident, now: datetime) -> Times:
    return Times(
        detect_s=_secs(inc.onset_at, inc.detected_at),
        acknowledge_s=_secs(inc.detected_at, inc.acknowledged_at),
        restore_s=_secs(inc.onset_at, inc.restored_at),
        duration_s=_secs(inc.onset_at, inc.resolved_at or now),
        open=inc.resolved_at is None,
    )


@dataclass(frozen=True)
class History:
    """Metric history of one service around an incident, from one source."""

    source: str
    """``prometheus``, ``store samples`` or ``none`` (and why)."""
    step_s: float
    requests: Sequence[Point] = ()
    """Requests per second through the router's production route."""
    errors: Sequence[Point] = ()
    """Failed (5xx) requests per second."""
    latency_ms: Sequence[Point] = ()
    """95th percentile latency, ms."""
    by_version: dict[str, Sequence[Point]] = field(default_factory=dict)
    """Error ratio per version (which version failed), when the source can tell."""
    failed_total: float | None = None
    """Failed requests counted by the source itself over the impact window (Prometheus ``increase``)."""
    requests_total: float | None = None

    @property
    def empty(self) -> bool:
        return not self.requests and not self.errors and not self.latency_ms


@dataclass(frozen=True, slots=True)
class Affected:
    window_s: float
    requests: float
    failed: float
    baseline_error_ratio: float | None
    excess_failed: float
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "window_s": round(self.window_s, 3),
            "requests": round(self.requests),
            "failed": round(self.failed),
            "baseline_error_ratio": None
            if self.baseline_error_ratio is None
            else round(self.baseline_error_ratio, 6),
            "excess_failed": round(self.excess_failed),
            "source": self.source,
        }


def _integrate(points: Sequence[Point], start: float, end: float, step: float) -> float:
    """Sum of rate × step over points whose interval ends inside (start, end]."""
    return sum(v * step for t, v in points if start < t <= end + 1e-9)


def affected_requests(
    h: History, onset: datetime, restored: datetime | None, now: datetime
) -> Affected | None:
    """Requests and failed requests in the impact window, and the excess over the pre-onset ratio."""
    if h.empty:
        return None
    start, end = onset.timestamp(), (restored or now).timestamp()
    step = h.step_s
    requests = _integrate(h.requests, start, end, step)
    failed = _integrate(h.errors, start, end, step)
    if h.failed_total is not None:
        failed = h.failed_total
    if h.requests_total is not None:
        requests = h.requests_total
    before_req = _integrate(h.requests, start - 30 * 60, start, step)
    before_err = _integrate(h.errors, start - 30 * 60, start, step)
    ratio = (before_err / before_req) if before_req > 0 else None
    excess = max(0.0, failed - (ratio or 0.0) * requests)
    return Affected(end - start, requests, failed, ratio, excess, h.source)
