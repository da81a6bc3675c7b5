"""What every router driver shares: table validation, the table's file form, real probes,
atomic files, a lock that serializes changes across processes, and the per-version counters
both drivers export in the same Prometheus text (their metric names are known here only).

Drivers import this module, never each other (`.importlinter`: drivers are independent).
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shipwarden.adapters.routers.base import (
    HistoryQueries,
    Pool,
    ProbeResult,
    RouteCounts,
    RouterError,
    Routes,
    VersionCounts,
)

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ADDR_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3}):(\d{1,5})$")  # IPs only
ROUTES = ("production", "preview")
VERSION_HEADER = "X-Shipwarden-Version"


def atomic_write(path: Path, text: str, durable: bool = True) -> None:
    """Write via a temp file + rename so readers (a proxy at start) never see half a file;
    ``durable``: synced to disk before the rename (not for files rebuilt from a durable one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``: serializes router changes across processes
    (threads of one process serialize on the driver's own lock first)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def routes_to_json(routes: Routes) -> dict[str, Any]:
    """The wire/file form of a routing table."""
    return {
        r: [
            {
                "version": p.version, "weight": p.weight, "addresses": list(p.addresses),
                **({"zone": p.zone} if p.zone is not None else {}),
            }
            for p in getattr(routes, r)
        ]
        for r in ROUTES
    }  # fmt: skip


def routes_from_json(data: dict[str, Any]) -> Routes:
    pools = {
        r: tuple(
            Pool(i["version"], tuple(i["addresses"]), int(i["weight"]), i.get("zone") or None)
            for i in data.get(r, [])
        )
        for r in ROUTES
    }
    return Routes(**pools)


def by_version(pools: tuple[Pool, ...]) -> tuple[Pool, ...]:
    """One pool per version (a version's zone pools merged, weights summed): for a data plane that
    balances per version only.  Its instances then share the version's weight equally, whatever
    their zone."""
    merged: dict[str, Pool] = {}
    for p in pools:
        was = merged.get(p.version)
        merged[p.version] = p if was is None else Pool(
            p.version, was.addresses + p.addresses, was.weight + p.weight
        )
    return tuple(Pool(p.version, p.addresses, p.weight) for p in merged.values())


def validate_routes(service: str, routes: Routes) -> None:
    """Reject a table the data plane cannot serve, before anything is changed."""
    if not NAME_RE.match(service):
        raise RouterError(f"invalid service name {service!r}")
    for name in ROUTES:
        pools: tuple[Pool, ...] = getattr(routes, name)
        seen: set[tuple[str, str | None]] = set()
        zoned: dict[str, bool] = {}
        for p in pools:
            bad = not p.version or any(ord(c) < 32 or c.isspace() for c in p.version)
            if bad or (p.version, p.zone) in seen:
                raise RouterError(f"{service}/{name}: empty, invalid or duplicate version {p.version!r}"
                                  + (f" in zone {p.zone!r}" if p.zone is not None else ""))
            if zoned.setdefault(p.version, p.zone is not None) != (p.zone is not None):
                raise RouterError(f"{service}/{name}: {p.version} has pools with and without a zone")
            if p.zone is not None and not NAME_RE.match(p.zone):
                raise RouterError(f"{service}/{name}: invalid zone {p.zone!r}")
            seen.add((p.version, p.zone))
            if not isinstance(p.weight, int) or not 0 <= p.weight <= 100:
                raise RouterError(f"{service}/{name}: weight of {p.version} must be an integer 0..100")
            if p.weight > 0 and not p.addresses:
                raise RouterError(f"{service}/{name}: pool {p.version} has weight but no addresses")
            for addr in p.addresses:
                m = ADDR_RE.match(addr)
                if not m or max(map(int, m.groups()[:4])) > 255 or not 0 < int(m[5]) < 65536:
                    raise RouterError(f"{service}/{name}: address {addr!r} is not ipv4:port")
        if name == "production" and pools and sum(p.weight for p in pools) != 100:
            raise RouterError(f"{service}/production: weights sum to {sum(p.weight for p in pools)}, not 100")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS context every probe's client shares: building one (loading the CA bundle) cost
    ~20 ms of CPU per probe — a core's worth with a hundred rollouts probing at once — and
    fragmented the memory of the threads that built them.  Probes still open their own
    connections, as before."""
    return httpx.create_ssl_context(trust_env=False)


def probe(url: str, requests: int, timeout: float) -> ProbeResult:
    """Send real requests to ``url``; count the router's version label per answer.

    Transport errors and 5xx answers (including the router's own 503 "no pool") count as
    failures; 5xx that carry a version label (the instance answered) are also counted per
    version."""
    result = ProbeResult()
    with httpx.Client(timeout=timeout, trust_env=False, verify=_tls_context()) as client:
        for _ in range(requests):
            try:
                resp = client.get(url)
            except httpx.HTTPError:
                result.failures += 1
                continue
            version = resp.headers.get(VERSION_HEADER)
            if resp.status_code >= 500 or version is None:
                result.failures += 1
                if version is not None:  # the version itself answered 5xx
                    result.server_errors[version] += 1
            else:
                result.versions[version] += 1
    return result


# -- the per-version counters both drivers export ----------------------------------------------
REQUESTS_METRIC = "shipwarden_router_requests_total"  # {service, route, version, zone, code}
DURATION_METRIC = "shipwarden_router_request_duration_seconds"  # histogram {service, route, version, zone}
"""``zone``: of the instance that answered ("" for a pool without a zone, and for the router's
own 503 of a route without pools); summed over, the counts are per version as before."""


def parse_counts(text: str, service: str, zone: str | None = None) -> RouteCounts:
    """Per-route, per-version cumulative counters of one service from the router's ``/metrics``
    (``zone``: only what that zone's instances answered; None: summed over the zones)."""
    req: dict[tuple[str, str], int] = {}
    err: dict[tuple[str, str], int] = {}
    buckets: dict[tuple[str, str], dict[float, int]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            lab = s.labels
            if lab.get("service") != service or (zone is not None and lab.get("zone", "") != zone):
                continue
            key = (lab.get("route", ""), lab.get("version", ""))
            if s.name == REQUESTS_METRIC:
                req[key] = req.get(key, 0) + int(s.value)
                if lab.get("code", "").startswith("5"):
                    err[key] = err.get(key, 0) + int(s.value)
            elif s.name == f"{DURATION_METRIC}_bucket":
                le = float(lab["le"])
                at = le * 1000.0 if le != float("inf") else le
                per = buckets.setdefault(key, {})
                per[at] = per.get(at, 0) + int(s.value)  # summed over zones
    out: RouteCounts = {}
    for (route, version), n in req.items():
        b = sorted(buckets.get((route, version), {}).items())
        out.setdefault(route, {})[version] = VersionCounts(
            n, err.get((route, version), 0), tuple(k for k, _ in b), tuple(c for _, c in b)
        )
    return out


_SEL = 'service="{service}",route="production"'
PROMETHEUS_HISTORY = HistoryQueries(
    requests=f"sum(rate({REQUESTS_METRIC}{{{_SEL}}}[{{window}}]))",
    errors=f'sum(rate({REQUESTS_METRIC}{{{_SEL},code=~"5.."}}[{{window}}]))',
    latency_p95_ms=(
        "1000 * histogram_quantile(0.95, sum by (le) "
        f"(rate({DURATION_METRIC}_bucket{{{_SEL}}}[{{window}}])))"
    ),
    failed_total=f'sum(increase({REQUESTS_METRIC}{{{_SEL},code=~"5.."}}[{{window}}]))',
    requests_total=f"sum(increase({REQUESTS_METRIC}{{{_SEL}}}[{{window}}]))",
)
"""The incident history's queries over the counters above, once Prometheus scrapes the router."""
