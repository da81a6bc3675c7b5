"""The traffic-router port lives in ``shipwarden.ports.routing``; re-exported for the drivers."""

from shipwarden.ports.routing import (
    ConfigRejected,
    HistoryQueries,
    Listener,
    Pool,
    ProbeResult,
    RouteCounts,
    RouterError,
    Routes,
    TrafficRouter,
    VersionCounts,
)

__all__ = [
    "ConfigRejected",
    "HistoryQueries",
    "Listener",
    "Pool",
    "ProbeResult",
    "RouteCounts",
    "RouterError",
    "Routes",
    "TrafficRouter",
    "VersionCounts",
]
