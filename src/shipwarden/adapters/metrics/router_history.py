"""Metric history of a service for incident reports, from the router's per-version counters.

Implements ``ports.incidents.MetricHistory`` over two sources:

* :class:`PrometheusRouterHistory` — when Prometheus scrapes the router's ``/metrics``: the
  router driver's own queries (``TrafficRouter.history_queries``; its metric names stay in the
  driver) for requests/s, 5xx/s, p95 latency, and the failed-request count over the impact window
  with ``increase`` (Prometheus' own extrapolation) — through the metric provider port, so the
  PromQL goes through its template checks;
* :class:`SampleHistory` — otherwise, the per-interval request/error samples the store keeps
  while a deployment's analysis runs (``analysis_records``, judge samples of both versions).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from shipwarden.adapters.metrics.base import MetricProvider, Series, Value
from shipwarden.domain.incidents import History
from shipwarden.ports.routing import HistoryQueries

__all__ = ["PrometheusRouterHistory", "SampleHistory"]

def _points(m: Any) -> list[tuple[float, float]]:
    if isinstance(m, Series):
        return [(p.t, p.value) for p in m.points if math.isfinite(p.value)]
    return []


class PrometheusRouterHistory:
    """History from Prometheus (``provider``: the configured Prometheus metric provider;
    ``queries``: the router driver's)."""

    def __init__(
        self, provider: MetricProvider, queries: HistoryQueries, *, points: int = 240, min_step: float = 5.0
    ) -> None:
        self.provider, self.queries, self.points, self.min_step = provider, queries, points, min_step

    def _range(
        self, template: str, service: str, start: float, end: float, step: float
    ) -> list[tuple[float, float]]:
        m = self.provider.query_range(template, service=service, version="all", start=start, end=end,
                                      step=step, window_s=max(step, 4 * self.min_step))  # fmt: skip
        return _points(m)

    def history(
        self, service: str, start: datetime, end: datetime, *, impact: tuple[datetime, datetime] | None = None
    ) -> History:
        s, e = start.timestamp(), end.timestamp()
        step = max(self.min_step, math.ceil((e - s) / self.points))
        q = self.queries
        req = self._range(q.requests, service, s, e, step)
        err = self._range(q.errors, service, s, e, step)
        lat = self._range(q.latency_p95_ms, service, s, e, step)
        failed = total = None
        if impact is not None:
            onset, restored = impact
            span = max(1.0, (restored - onset).total_seconds())
            for template, name in ((q.failed_total, "failed"), (q.requests_total, "total")):
                v = self.provider.query(template, service=service, version="all", window_s=span,
                                        at=restored.timestamp())  # fmt: skip
                if isinstance(v, Value) and math.isfinite(v.value):
                    if name == "failed":
                        failed = v.value
                    else:
                        total = v.value
        return History(source="prometheus", step_s=step, requests=req, errors=err, latency_ms=lat,
                       failed_total=failed, requests_total=total)  # fmt: skip


class SampleHistory:
    """History from the analysis samples the store kept (``records(service, start, end)`` returns
    ``analysis_records`` rows of that service's deployments in the window)."""

    def __init__(self, records: Callable[[str, float, float], list[dict[str, Any]]]) -> None:
        self.records = records

    def history(
        self, service: str, start: datetime, end: datetime, *, impact: tuple[datetime, datetime] | None = None
    ) -> History:
        found = self.records(service, start.timestamp(), end.timestamp())
        rows = [r for r in found if r.get("kind") == "judge"]
        if not rows:
            return History(source="none (no Prometheus configured and no analysis samples in the window)",
                           step_s=0)  # fmt: skip
        rows.sort(key=lambda r: float(r["at"]))
        req: list[tuple[float, float]] = []
        err: list[tuple[float, float]] = []
        last: float | None = None
        steps = []
        for r in rows:
            t = float(r["at"])
            n = e = 0
            for side in (r.get("baseline") or {}, r.get("canary") or {}):
                n += int(side.get("requests", 0))
                e += int(side.get("errors", 0))
            dt = (t - last) if last is not None and t > last else None
            last = t
            if dt is None:
                continue
            steps.append(dt)
            req.append((t, n / dt))
            err.append((t, e / dt))
        step = sorted(steps)[len(steps) // 2] if steps else 0.0
        return History(source="store samples (analysis)", step_s=step, requests=req, errors=err)
