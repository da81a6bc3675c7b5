"""The ``monitoring:`` section of the policy, and the Prometheus rules it generates (E7, pure).

Per service, what to watch, each with ``warning`` and ``critical`` thresholds and ``for``::

    monitoring:
      evaluationInterval: 15s           # the rule groups' interval (1s in tests)
      services:
        hello:
          availability: {warning: 99.5, critical: 99, for: 1m, window: 5m}  # % of successful probes
          errorRate:    {warning: 1, critical: 5, for: 1m, window: 2m}      # % of 5xx at the router
          latency:
            - {quantile: 0.95, warning: 300ms, critical: 1s, for: 2m}
          saturation:                     # node-exporter of the service's hosts
            selector: 'job="node"'
            cpu: {warning: 80, critical: 95, for: 5m}
            memory: {warning: 85, critical: 95}
            disk: {warning: 80, critical: 90}
            network: {warning: 50e6, critical: 100e6}   # bytes/s in + out
          custom:
            - name: SignupsLow
              promql: sum(rate(signups_total[5m]))
              op: "<"
              warning: 1
              critical: 0.1
              for: 10m
            - name: CheckoutSlow            # New Relic: evaluated by shipwarden itself
              nrql: SELECT percentile(duration, 95) FROM Transaction WHERE appName = 'shop'
              warning: 0.5
              critical: 2
              for: 2m
              interval: 30s

Each signal becomes one alert name (``ServiceErrorRate``, ``ServiceLatencyP95`` …) with two
rules, one per severity, labelled ``service``, ``severity``, ``team`` and ``signal``: the same
``alertname`` for both, so the default inhibition (a critical silences its warning, equal on
``alertname`` and ``service``) applies.  The metrics read are those shipwarden's router exports
(``shipwarden_router_requests_total``, ``shipwarden_router_request_duration_seconds``, route
``production``), the blackbox exporter's ``probe_success`` (``service`` label on the probe job)
and node-exporter's standard metrics.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from shipwarden.domain._base import Duration, PositiveDuration, _Strict

__all__ = [
    "CustomCondition",
    "MonitoringPolicy",
    "NrqlCondition",
    "ServiceMonitoring",
    "prometheus_rules",
    "promql_duration",
    "threshold_state",
]

Op = Literal[">", ">=", "<", "<="]
_ALERT_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"


def promql_duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms"
    s = ms // 1000
    for unit, size in (("h", 3600), ("m", 60)):
        if s and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


class Thresholds(_Strict):
    warning: float | None = None
    critical: float | None = None
    for_: Duration = Field(default=60.0, alias="for")

    @model_validator(mode="after")
    def _one(self) -> Thresholds:
        if self.warning is None and self.critical is None:
            raise ValueError("give a 'warning' threshold, a 'critical' one or both")
        return self

    def levels(self) -> list[tuple[str, float]]:
        return [
            (sev, v) for sev, v in (("warning", self.warning), ("critical", self.critical)) if v is not None
        ]


class Windowed(Thresholds):
    window: PositiveDuration = 300.0


class Availability(Windowed):
    """Percentage of successful availability probes over ``window`` (below a threshold fires)."""

    @model_validator(mode="after")
    def _range(self) -> Availability:
        for _, v in self.levels():
            if not 0 <= v <= 100:
                raise ValueError("availability thresholds are percentages (0-100)")
        return self


class ErrorRate(Windowed):
    """Percentage of production requests answered 5xx over ``window``."""


class Latency(Windowed):
    quantile: float = Field(gt=0, lt=1)
    warning: Duration | None = None
    critical: Duration | None = None


class Saturation(_Strict):
    selector: str = 'job="node"'
    window: PositiveDuration = 120.0
    cpu: Thresholds | None = None
    memory: Thresholds | None = None
    disk: Thresholds | None = None
    network: Thresholds | None = None

    @field_validator("selector")
    @classmethod
    def _selector(cls, v: str) -> str:
        if not re.fullmatch(r'\s*([a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"([^"\\]|\\.)*"\s*,?\s*)*', v):
            raise ValueError('a label selector like job="node",instance=~"web-.*"')
        return v.strip().rstrip(",")


class CustomCondition(Thresholds):
    name: str = Field(pattern=_ALERT_NAME)
    promql: str | None = None
    nrql: str | None = None
    op: Op = ">"
    interval: PositiveDuration = 30.0
    """NRQL only: how often shipwarden evaluates the condition."""
    window: PositiveDuration = 300.0
    """NRQL only: the ``{window}`` placeholder becomes ``SINCE now-window UNTIL now``."""
    summary: str = ""

    @model_validator(mode="after")
    def _one_query(self) -> CustomCondition:
        if (self.promql is None) == (self.nrql is None):
            raise ValueError(f"condition {self.name!r}: give exactly one of 'promql' and 'nrql'")
        q = self.promql if self.promql is not None else self.nrql
        if not q or not q.strip() or "\x00" in q:
            raise ValueError(f"condition {self.name!r}: the query is empty")
        return self


NrqlCondition = CustomCondition


class ServiceMonitoring(_Strict):
    availability: Availability | None = None
    error_rate: ErrorRate | None = Field(default=None, alias="errorRate")
    latency: list[Latency] = Field(default_factory=list, max_length=10)
    saturation: Saturation | None = None
    custom: list[CustomCondition] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _unique(self) -> ServiceMonitoring:
        names = [c.name for c in self.custom]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"custom condition(s) named twice: {', '.join(dup)}")
        qs = [lat.quantile for lat in self.latency]
        if len(set(qs)) != len(qs):
            raise ValueError("a latency quantile is listed twice")
        return self


class MonitoringPolicy(_Strict):
    evaluation_interval: PositiveDuration = Field(default=15.0, alias="evaluationInterval")
    services: dict[str, ServiceMonitoring] = Field(default_factory=dict)

    def nrql_conditions(self) -> list[tuple[str, CustomCondition]]:
        return [(svc, c) for svc, m in sorted(self.services.items()) for c in m.custom if c.nrql is not None]


_ROUTER = 'service="{s}",route="production"'


def _signals(service: str, m: ServiceMonitoring) -> list[tuple[str, str, str, Op, Thresholds, str]]:
    """``(alertname, signal, expr, op, thresholds, summary)`` for each signal of ``service``."""
    out: list[tuple[str, str, str, Op, Thresholds, str]] = []
    sel = _ROUTER.format(s=service)
    if m.availability is not None:
        w = promql_duration(m.availability.window)
        expr = f'100 * avg(avg_over_time(probe_success{{service="{service}"}}[{w}]))'
        out.append(
            (
                "ServiceAvailability",
                "availability",
                expr,
                "<",
                m.availability,
                f'{service}: availability {{{{ $value | printf "%.2f" }}}}% over {w}',
            )
        )
    if m.error_rate is not None:
        w = promql_duration(m.error_rate.window)
        expr = (
            f'100 * sum(rate(shipwarden_router_requests_total{{{sel},code=~"5.."}}[{w}]))'
            f" / sum(rate(shipwarden_router_requests_total{{{sel}}}[{w}]))"
        )
        out.append(
            (
                "ServiceErrorRate",
                "error_rate",
                expr,
                ">",
                m.error_rate,
                f'{service}: {{{{ $value | printf "%.2f" }}}}% of requests failed over {w}',
            )
        )
    for lat in m.latency:
        w = promql_duration(lat.window)
        q = f"{lat.quantile:g}"
        expr = (
            f"histogram_quantile({q}, sum by (le) "
            f"(rate(shipwarden_router_request_duration_seconds_bucket{{{sel}}}[{w}])))"
        )
        tag = "P" + f"{lat.quantile * 100:g}".replace(".", "_")
        out.append(
            (
                f"ServiceLatency{tag}",
                f"latency_{tag.lower()}",
                expr,
                ">",
                lat,
                f"{service}: p{lat.quantile * 100:g} latency {{{{ $value | humanizeDuration }}}}",
            )
        )
    sat = m.saturation
    if sat is not None:
        s, w = sat.selector, promql_duration(sat.window)
        comma = f"{s}," if s else ""
        exprs = {
            "cpu": f'100 * (1 - avg(rate(node_cpu_seconds_total{{{comma}mode="idle"}}[{w}])))',
            "memory": (
                f"100 * (1 - sum(node_memory_MemAvailable_bytes{{{s}}})"
                f" / sum(node_memory_MemTotal_bytes{{{s}}}))"
            ),
            "disk": (
                f'100 * max(1 - node_filesystem_avail_bytes{{{comma}fstype!~"tmpfs|overlay|squashfs"}}'
                f' / node_filesystem_size_bytes{{{comma}fstype!~"tmpfs|overlay|squashfs"}})'
            ),
            "network": (
                f'sum(rate(node_network_receive_bytes_total{{{comma}device!="lo"}}[{w}]))'
                f' + sum(rate(node_network_transmit_bytes_total{{{comma}device!="lo"}}[{w}]))'
            ),
        }
        for kind in ("cpu", "memory", "disk", "network"):
            t = getattr(sat, kind)
            if t is not None:
                unit = "B/s" if kind == "network" else "%"
                out.append(
                    (
                        f"Node{kind.capitalize()}Saturation",
                        f"saturation_{kind}",
                        exprs[kind],
                        ">",
                        t,
                        f'{service}: hosts\' {kind} at {{{{ $value | printf "%.1f" }}}}{unit}',
                    )
                )
    for c in m.custom:
        if c.promql is not None:
            out.append(
                (
                    c.name,
                    "custom",
                    f"({c.promql.strip()})",
                    c.op,
                    c,
                    c.summary or f"{service}: {c.name} is {{{{ $value }}}}",
                )
            )
    return out


def prometheus_rules(monitoring: MonitoringPolicy, *, team: str) -> dict[str, Any]:
    """The Prometheus rules file (as a mapping to dump as YAML): one group per service."""
    groups = []
    interval = promql_duration(monitoring.evaluation_interval)
    for service, m in sorted(monitoring.services.items()):
        rules: list[dict[str, Any]] = []
        for alertname, signal, expr, op, t, summary in _signals(service, m):
            for severity, value in t.levels():
                rules.append(
                    {
                        "alert": alertname,
                        "expr": f"{expr} {op} {value:g}" if op else expr,
                        "for": promql_duration(t.for_),
                        "labels": {
                            "service": service,
                            "severity": severity,
                            "team": team,
                            "signal": signal,
                            "source": "shipwarden",
                        },
                        "annotations": {
                            "summary": summary,
                            "threshold": f"{op} {value:g}",
                        },
                    }
                )
        if rules:
            groups.append({"name": f"shipwarden:{service}", "interval": interval, "rules": rules})
    return {"groups": groups}


def threshold_state(value: float | None, t: Thresholds, op: Op) -> str | None:
    """The severity a measured value crosses (``critical`` first), or ``None`` (NRQL conditions)."""
    if value is None:
        return None
    cmp: Mapping[str, Any] = {
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
    }
    for severity in ("critical", "warning"):
        v = t.critical if severity == "critical" else t.warning
        if v is not None and cmp[op](value, v):
            return severity
    return None


def condition_step(
    pending: dict[str, float], value: float | None, *, now: float, cond: CustomCondition
) -> tuple[dict[str, float], set[str]]:
    """One evaluation of a condition shipwarden evaluates itself (NRQL), as Prometheus evaluates
    a rule with ``for``: each severity whose threshold the value crosses is *pending* since the
    first evaluation that crossed it, and *firing* once it has crossed for ``for`` seconds.
    ``value`` ``None`` (no data, a provider error) crosses nothing.  Returns the new pending
    map (severity → since) and the severities firing now."""
    cmp = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}[cond.op]
    new: dict[str, float] = {}
    firing: set[str] = set()
    for severity, threshold in cond.levels():
        if value is not None and cmp(float(value), float(threshold)):
            since = pending.get(severity, now)
            new[severity] = since
            if now - since >= cond.for_:
                firing.add(severity)
    return new, firing
