"""shipwarden's own metrics (prometheus-client), served at ``GET /metrics``.

* HTTP: ``shipwarden_http_requests_total{method,route,status}`` and
  ``shipwarden_http_request_duration_seconds{method,route}`` — ``route`` is the route's
  template (``/deployments/{deployment_id}``), never the raw path, so cardinality is bounded;
  CI webhooks and the alert receivers are routes like any other.
* Alerting: ``shipwarden_alerts_received_total{source}``, ``shipwarden_alerts_changed_total``,
  ``shipwarden_alert_notices_total{receiver,status}``,
  ``shipwarden_alert_deliveries_total{kind,outcome}`` and their duration, the outbox by state.
* From the store at scrape time: ``shipwarden_rollouts{phase}`` (deployments by phase),
  ``shipwarden_rollout_decisions_total{phase,outcome}`` (the reconciler's recorded steps).
* Audit: ``shipwarden_audit_queue_depth`` (entries waiting for the group commit: its lag),
  ``shipwarden_audit_committed_total``.

One registry per process (not the library's global one), so tests can build several apps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Telemetry"]

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StoreCollector(Collector):
    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Any]:
        try:
            data = self._read()
        except Exception:
            return
        g = GaugeMetricFamily("shipwarden_rollouts", "Deployments by phase", labels=["phase"])
        for phase, n in sorted(data.get("phases", {}).items()):
            g.add_metric([phase], n)
        yield g
        c = CounterMetricFamily(
            "shipwarden_rollout_decisions",
            "Reconciler decisions (recorded steps)",
            labels=["phase", "outcome"],
        )
        for (phase, outcome), n in sorted(data.get("decisions", {}).items()):
            c.add_metric([phase, outcome], n)
        yield c
        o = GaugeMetricFamily("shipwarden_alert_outbox", "Alert outbox items by state", labels=["state"])
        for state, n in sorted(data.get("outbox", {}).items()):
            o.add_metric([state], n)
        yield o
        if "audit_queue" in data:
            yield GaugeMetricFamily(
                "shipwarden_audit_queue_depth",
                "Audit entries waiting for the group commit",
                value=data["audit_queue"],
            )
            yield CounterMetricFamily(
                "shipwarden_audit_committed",
                "Audit entries committed by the group commit",
                value=data["audit_committed"],
            )


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "shipwarden_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "shipwarden_http_request_duration_seconds",
            "HTTP request duration",
            ["method", "route"],
            buckets=_LATENCY,
            registry=r,
        )
        self.alerts_received = Counter(
            "shipwarden_alerts_received", "Alerts received", ["source"], registry=r
        )
        self.alerts_changed = Counter(
            "shipwarden_alerts_changed", "Alerts that changed state", ["source"], registry=r
        )
        self.notices = Counter(
            "shipwarden_alert_notices", "Group notices queued", ["receiver", "status"], registry=r
        )
        self.deliveries = Counter(
            "shipwarden_alert_deliveries", "Delivery attempts", ["kind", "outcome"], registry=r
        )
        self.delivery_latency = Histogram(
            "shipwarden_alert_delivery_duration_seconds",
            "Delivery attempt duration",
            ["kind"],
            buckets=_LATENCY,
            registry=r,
        )

    def watch_store(self, read: Callable[[], dict[str, Any]]) -> None:
        self.registry.register(_StoreCollector(read))

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_latency.labels(method, route).observe(seconds)

    def ingested(self, source: str, alerts: int, changed: int) -> None:
        self.alerts_received.labels(source).inc(alerts)
        self.alerts_changed.labels(source).inc(changed)

    def notice(self, notice: Any) -> None:
        self.notices.labels(notice.receiver, notice.status).inc()

    def delivered(self, kind: str, ok: bool, seconds: float) -> None:
        self.deliveries.labels(kind, "ok" if ok else "failed").inc()
        self.delivery_latency.labels(kind).observe(seconds)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
