"""The traffic-router port (``adapters/routers/`` holds the drivers; ``bootstrap`` picks one per
service by the policy's ``routing.driver``).

A router owns the data plane in front of a service's instances: which
versions get production traffic and in what share, and what the preview
route reaches.  Routers *apply* and *report*; they never decide.  The
rollout state machine decides, the reconciler calls ``apply``.

Contract every driver keeps:

* ``apply`` is atomic and idempotent: after it returns, every new request is
  routed by the new table, and no in-flight or new request fails because of
  the change (D10).
* a configuration the proxy rejects never replaces the one serving.
* ``probe`` sends real requests through the route and reports which version
  answered, so callers can verify convergence instead of trusting ``apply``.
"""

from __future__ import annotations

__all__ = ["Pool", "Routes"]  # the routing table is a domain record (domain/serving.py)

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from shipwarden.domain.serving import Pool, Routes


class RouterError(RuntimeError):
    """The router could not apply or read a routing table."""


class ConfigRejected(RouterError):
    """The proxy rejected a generated configuration; the serving one is unchanged."""


@dataclass(frozen=True)
class Listener:
    """Where a service is exposed: the production and preview ports."""

    service: str
    port: int
    preview_port: int
    host: str = "127.0.0.1"


@dataclass
class ProbeResult:
    """What a probe saw: ``versions`` counts good answers per version; ``failures`` every failed
    request, of which ``server_errors`` are 5xx answered *by a version* (labelled by the router,
    so traffic did reach it) — the rest are transport errors or the router's own 5xx."""

    versions: Counter[str] = field(default_factory=Counter)
    failures: int = 0
    server_errors: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.versions.values()) + self.failures


@dataclass(frozen=True)
class VersionCounts:
    """What a router counted for one version of one route since it started: every response
    (``requests``), the 5xx among them (``errors``; the router's own 502/503/504 for the version
    drawn included) and the latency histogram (cumulative counts at the upper bounds ``bounds_ms``,
    the last one ``inf``).  Counters only grow, except across a router restart."""

    requests: int
    errors: int
    bounds_ms: tuple[float, ...] = ()
    cumulative: tuple[int, ...] = ()


RouteCounts = dict[str, dict[str, VersionCounts]]
"""``{route: {version: counts}}`` of one service."""


@dataclass(frozen=True)
class HistoryQueries:
    """PromQL templates over what Prometheus scrapes from the router's ``/metrics`` (``{service}``
    and ``{window}`` filled in by the metric provider): the router's own metric names stay in the
    driver, the incident history only runs these."""

    requests: str  # requests/s of the production route
    errors: str  # 5xx/s
    latency_p95_ms: str
    failed_total: str  # 5xx over the window (``increase``)
    requests_total: str


class TrafficRouter(Protocol):
    def start(self) -> None:
        """Make sure the data plane is up (idempotent; a no-op for proxies run by someone else)."""

    def stop(self) -> None:
        """Stop the data plane this driver runs (a no-op for proxies run by someone else)."""

    def running(self) -> bool:
        """Is the data plane up?"""

    def ensure_listener(self, listener: Listener) -> None:
        """Expose a service on its ports (may reload the proxy; validated first)."""

    def ensure_listeners(self, listeners: Sequence[Listener]) -> None:
        """Expose several services at once: at most one reload, none if nothing changed."""

    def apply(self, service: str, routes: Routes) -> None:
        """Replace the service's routing table atomically, failing no request."""

    def current(self, service: str) -> Routes | None:
        """The routing table the data plane is serving now, or None if unknown."""

    def probe(self, service: str, route: str, requests: int) -> ProbeResult:
        """Send ``requests`` real requests through ``route`` ("production" or "preview")."""

    def version_counts(self, service: str, zone: str | None = None) -> RouteCounts:
        """The service's per-route, per-version counters (:class:`VersionCounts`) as the data
        plane counts them now; a route or version without requests is absent.  ``zone``: only
        the requests that instance of that zone answered (a zone pool's, or another pool's
        when a retry moved the request there); None: every zone."""

    @property
    def history_queries(self) -> HistoryQueries | None:
        """How Prometheus reads this router's counters over time (None: it exports none)."""
