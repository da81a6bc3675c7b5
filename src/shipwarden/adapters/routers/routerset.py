"""Several router drivers behind one ``TrafficRouter``: each service is routed by the driver its
policy names (``routing.driver``).  Built by ``bootstrap`` only when a policy uses more than one
driver; it knows the port, never a driver."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shipwarden.ports.routing import (
    HistoryQueries,
    Listener,
    ProbeResult,
    RouteCounts,
    RouterError,
    Routes,
    TrafficRouter,
)


class RouterSet:
    """``routers``: driver name → router; ``driver_of``: service → driver name."""

    def __init__(self, routers: Mapping[str, TrafficRouter], driver_of: Mapping[str, str]) -> None:
        self.routers, self.driver_of = dict(routers), dict(driver_of)

    def _for(self, service: str) -> TrafficRouter:
        try:
            return self.routers[self.driver_of[service]]
        except KeyError:
            raise RouterError(f"no router for service {service!r}") from None

    def start(self) -> None:
        for r in self.routers.values():
            r.start()

    def stop(self) -> None:
        for r in self.routers.values():
            r.stop()

    def running(self) -> bool:
        return all(r.running() for r in self.routers.values())

    def ensure_listener(self, listener: Listener) -> None:
        self._for(listener.service).ensure_listener(listener)

    def ensure_listeners(self, listeners: Sequence[Listener]) -> None:
        for name, router in self.routers.items():
            mine = [x for x in listeners if self.driver_of.get(x.service) == name]
            if mine:
                router.ensure_listeners(mine)

    def apply(self, service: str, routes: Routes) -> None:
        self._for(service).apply(service, routes)

    def current(self, service: str) -> Routes | None:
        return self._for(service).current(service)

    def probe(self, service: str, route: str, requests: int) -> ProbeResult:
        return self._for(service).probe(service, route, requests)

    def version_counts(self, service: str, zone: str | None = None) -> RouteCounts:
        return self._for(service).version_counts(service, zone)

    @property
    def history_queries(self) -> HistoryQueries | None:
        return next((r.history_queries for r in self.routers.values() if r.history_queries), None)
