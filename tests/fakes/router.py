"""FakeRouter: routing tables in a dict, probes answered by a backend lookup, failures on demand.

It keeps the router contract of ``adapters/routers/base.py`` the way NginxRouter does: a table
the data plane could not serve is refused (RouterError) and changes nothing; ``current`` is what
was last applied; ``probe`` picks a version by weight for each request, an instance of it round
robin, and on a refused connection retries another instance of the same version first, then of
the route's other pools (as the Lua balancer does); a route with no pool answers 503.
``backend(address)`` says who answers there: ``(version, status)`` or None (connection refused).
Weighted choice is deterministic (smooth weighted round robin), so tests need no tolerance.

``ignore_applies``: ``apply`` returns but the data plane keeps its old table (a proxy that did
not take the change) — the case the reconciler's convergence probes exist for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from shipwarden.adapters.routers.common import NAME_RE, validate_routes
from shipwarden.ports.routing import (
    HistoryQueries,
    Listener,
    Pool,
    ProbeResult,
    RouteCounts,
    RouterError,
    Routes,
    VersionCounts,
)
from tests.fakes.faults import Faults

Backend = Callable[[str], "tuple[str, int] | None"]

MAX_RETRIES = 4


def _key(pool: Pool) -> str:
    """A pool's name in the balancer's state: its version, and its zone if it has one."""
    return pool.version if pool.zone is None else f"{pool.version}@{pool.zone}"


class FakeRouter:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.faults = Faults(RouterError)
        self.up = False
        self.listeners: dict[str, Listener] = {}
        self.tables: dict[str, Routes] = {}
        self.applied: list[tuple[str, Routes]] = []  # every table the data plane took, in order
        self.on_apply: list[Callable[[str, Routes], None]] = []
        self.ignore_applies = False
        self.reloads = 0
        self._credit: dict[tuple[str, str], dict[str, int]] = {}  # smooth WRR state per route
        self._rr: dict[tuple[str, str, str], int] = {}  # round robin per pool
        #: requests, 5xx per service, route and (version, zone of the instance that answered)
        self._counts: dict[str, dict[str, dict[tuple[str, str | None], tuple[int, int]]]] = {}
        self.history_queries: HistoryQueries | None = None

    # -- TrafficRouter -----------------------------------------------------------------------
    def start(self) -> None:
        self.faults.check("start")
        self.up = True

    def stop(self) -> None:
        self.up = False

    def running(self) -> bool:
        return self.up

    def ensure_listener(self, listener: Listener) -> None:
        self.ensure_listeners([listener])

    def ensure_listeners(self, listeners: Sequence[Listener]) -> None:
        self.faults.check("ensure_listeners")
        for x in listeners:
            if not NAME_RE.match(x.service):
                raise RouterError(f"invalid service name {x.service!r}")
        wanted = {**self.listeners, **{x.service: x for x in listeners}}
        ports = [(x.host, p) for x in wanted.values() for p in (x.port, x.preview_port)]
        if len(set(ports)) != len(ports):
            raise RouterError(f"port conflict among listeners: {sorted(ports)}")
        if wanted != self.listeners and self.up:
            self.reloads += 1
        self.listeners = wanted

    def apply(self, service: str, routes: Routes) -> None:
        self.faults.check("apply")
        if not self.up:
            raise RouterError("the router is not running")
        validate_routes(service, routes)  # the real drivers' rules
        if self.ignore_applies:
            return
        self.tables[service] = routes
        self.applied.append((service, routes))
        for hook in self.on_apply:
            hook(service, routes)

    def current(self, service: str) -> Routes | None:
        self.faults.check("current")
        if not self.up:
            raise RouterError("the router is not running")
        return self.tables.get(service)

    def probe(self, service: str, route: str, requests: int) -> ProbeResult:
        self.faults.check("probe")
        if service not in self.listeners or route not in ("production", "preview"):
            raise RouterError(f"no listener for {service!r} route {route!r}")
        table = self.tables.get(service) if self.up else None
        pools = tuple(getattr(table, route)) if table is not None else ()
        result = ProbeResult()
        for _ in range(requests):
            answer = self._request(service, route, pools)
            if answer is None:
                result.failures += 1
                continue
            version, status, zone = answer
            by = self._counts.setdefault(service, {}).setdefault(route, {})
            n, e = by.get((version, zone), (0, 0))
            by[(version, zone)] = (n + 1, e + (status >= 500))
            if status >= 500:
                result.failures += 1
                result.server_errors[version] += 1
            else:
                result.versions[version] += 1
        return result

    def version_counts(self, service: str, zone: str | None = None) -> RouteCounts:
        """What probes through the fake counted (no latency histogram: the fake has no time);
        ``zone``: what that zone's instances answered."""
        self.faults.check("version_counts")
        out: RouteCounts = {}
        for route, by in self._counts.get(service, {}).items():
            summed: dict[str, tuple[int, int]] = {}
            for (v, z), (n, e) in by.items():
                if zone is None or z == zone:
                    was = summed.get(v, (0, 0))
                    summed[v] = (was[0] + n, was[1] + e)
            if summed:
                out[route] = {v: VersionCounts(n, e) for v, (n, e) in summed.items()}
        return out

    # -- the balancer --------------------------------------------------------------------------
    def _request(
        self, service: str, route: str, pools: tuple[Pool, ...]
    ) -> tuple[str, int, str | None] | None:
        """(version, status, zone of the instance that answered), or None: nobody answered."""
        live = [p for p in pools if p.weight > 0 and p.addresses]
        if not live:
            return None  # 503: no pool serves the route
        chosen = self._pick(service, route, live)
        order = self._peers(service, route, chosen) + [
            a for p in live if p is not chosen for a in p.addresses
        ] + [a for p in pools if p not in live for a in p.addresses]  # fmt: skip
        npeers = sum(len(p.addresses) for p in pools)
        zone_of = {a: p.zone for p in pools for a in p.addresses}
        for address in order[: 1 + min(npeers - 1, MAX_RETRIES)]:
            answer = self.backend(address)
            if answer is not None:
                return answer[0], answer[1], zone_of.get(address)
        return None  # 502: every attempt refused

    def _pick(self, service: str, route: str, live: list[Pool]) -> Pool:
        credit = self._credit.setdefault((service, route), {})
        total = sum(p.weight for p in live)
        for p in live:
            credit[_key(p)] = credit.get(_key(p), 0) + p.weight
        best = max(live, key=lambda p: credit[_key(p)])
        credit[_key(best)] -= total
        return best

    def _peers(self, service: str, route: str, pool: Pool) -> list[str]:
        key = (service, route, _key(pool))
        n = self._rr.get(key, 0)
        self._rr[key] = n + 1
        k = n % len(pool.addresses)
        return list(pool.addresses[k:] + pool.addresses[:k])

    # -- test controls -----------------------------------------------------------------------
    def production_addresses(self, service: str) -> set[str]:
        """Addresses production traffic can reach now (pools with weight)."""
        table = self.tables.get(service)
        return {a for p in (table.production if table else ()) if p.weight > 0 for a in p.addresses}
