"""Serving between rollouts (E2): the routing table a service should have when instances die.

A finished rollout leaves a table: per version a share of the production traffic, split into one
pool per (version, zone).  Between rollouts instances still die — a process crashes, a zone is
lost.  The router retries a refused request on another pool, so nothing fails but what was in
flight; but a dead zone left in the table is retried on every request and counted against the
service's capacity.  :func:`reroute` gives the table without the instances that are down: a pool
left empty is dropped and its share goes to the same version's other pools, in proportion to
theirs (with zones: to the other zones), and a version left with no pool at all gives its share
to the other versions.  When nothing would be left it answers None: a table of nothing serves no
one better than one that routes to instances that may come back.

:func:`substitute` puts a replacement in the place of a dead instance (same pool: same version,
same zone), so that the table recovers the shape the rollout left once the replacement is healthy.

Pure: no I/O; the service (``services/serving.py``) observes the instances and applies the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Pool", "Routes", "largest_remainder", "reroute", "same_table", "substitute"]


@dataclass(frozen=True)
class Pool:
    """The instances of one version and the share of a route's traffic they get.

    ``weight`` is a percentage 0..100 of the route's requests; instances in
    the pool share it equally.  ``zone``: the pool holds the version's instances of one zone (E2);
    a table may then have one pool per (version, zone), so that each zone gets its share of the
    traffic whichever version serves it, and the router counts each zone's answers apart
    (``version_counts(zone=)``).  A router retries a refused request on another pool of the route
    (HAProxy: on the version's instances in the other zones), so a zone whose instances all died
    is served by the others until it is taken out.
    """

    version: str
    addresses: tuple[str, ...]
    weight: int = 100
    zone: str | None = None


@dataclass(frozen=True)
class Routes:
    """The routing table of one service: production and preview routes."""

    production: tuple[Pool, ...] = ()
    preview: tuple[Pool, ...] = ()

    def weights(self) -> dict[str, int]:
        """Production weight per version (summed over its zones' pools)."""
        out: dict[str, int] = {}
        for p in self.production:
            out[p.version] = out.get(p.version, 0) + p.weight
        return out



def largest_remainder(shares: Mapping[str, float], total: int) -> dict[str, int]:
    """Integers proportional to ``shares`` that add up to ``total`` (Hamilton's method; ties go to
    the key that comes first)."""
    keys = list(shares)
    s = sum(shares.values())
    if not keys or s <= 0:
        return dict.fromkeys(keys, 0)
    exact = {k: shares[k] * total / s for k in keys}
    out = {k: int(exact[k]) for k in keys}
    left = total - sum(out.values())
    for k in sorted(keys, key=lambda k: (-(exact[k] - out[k]), keys.index(k)))[:left]:
        out[k] += 1
    return out


def _even(shares: dict[str, float]) -> dict[str, float]:
    """``shares``, or equal ones where they were equal but for rounding (34/33/33: one zone of
    three) or all zero: two zones left of three then get 50/50, not 51/49."""
    if not shares:
        return shares
    if max(shares.values()) - min(shares.values()) <= 1:
        return dict.fromkeys(shares, 1.0)
    return shares


def _without(pools: Iterable[Pool], down: set[str]) -> tuple[Pool, ...] | None:
    """``pools`` without ``down``; None when no pool keeps an address."""
    pools = tuple(pools)
    total = sum(p.weight for p in pools)
    kept = [(i, p, tuple(a for a in p.addresses if a not in down)) for i, p in enumerate(pools)]
    alive = [(i, p, addrs) for i, p, addrs in kept if addrs]
    if not alive:
        return None
    by_version: dict[str, int] = {}
    for p in pools:
        by_version[p.version] = by_version.get(p.version, 0) + p.weight
    alive_versions = list(dict.fromkeys(p.version for _, p, _ in alive))
    # a version with no pool left: its share goes to the versions still served, in proportion
    # (all of them alike when those had none: a 0 % version is what is left to serve)
    if len(alive_versions) == len(by_version):
        version_share = by_version
    else:
        version_share = largest_remainder(_even({v: float(by_version[v]) for v in alive_versions}), total)
    out: list[Pool] = []
    for version in alive_versions:
        mine = [(i, p, addrs) for i, p, addrs in alive if p.version == version]
        # a pool that lost some instances keeps its share (the rest of its instances take it);
        # a pool that lost all of them gives its share to the version's others, in proportion
        whole = len(mine) == sum(p.version == version for p in pools)
        if whole and version_share[version] == by_version[version]:
            weights = {str(i): p.weight for i, p, _ in mine}  # every pool of this version kept: as it was
        else:
            shares = _even({str(i): float(p.weight) for i, p, _ in mine})
            weights = largest_remainder(shares, version_share[version])
        out += [Pool(p.version, addrs, weights[str(i)], p.zone) for i, p, addrs in mine]
    return tuple(out)


class _PoolLike(Protocol):
    @property
    def version(self) -> str: ...
    @property
    def addresses(self) -> tuple[str, ...]: ...
    @property
    def weight(self) -> int: ...
    @property
    def zone(self) -> str | None: ...


class _Table(Protocol):
    @property
    def production(self) -> Sequence[_PoolLike]: ...
    @property
    def preview(self) -> Sequence[_PoolLike]: ...


def reroute(intended: Routes, down: set[str]) -> Routes | None:
    """The table ``intended`` without the addresses in ``down`` (see the module); None when the
    production route would be left with no instance."""
    if not down:
        return intended
    production = _without(intended.production, down) if intended.production else ()
    if production is None:
        return None
    preview = _without(intended.preview, down) if intended.preview else ()
    return Routes(production=production, preview=preview or ())


def substitute(intended: Routes, old: str, new: str) -> Routes:
    """``intended`` with instance ``new`` where ``old`` was (every pool that holds it)."""

    def swap(pools: tuple[Pool, ...]) -> tuple[Pool, ...]:
        return tuple(
            Pool(p.version, tuple(new if a == old else a for a in p.addresses), p.weight, p.zone)
            for p in pools
        )

    return Routes(production=swap(intended.production), preview=swap(intended.preview))


def _key(routes: _Table) -> tuple[frozenset[tuple[str, str | None, frozenset[str], int]], ...]:
    return tuple(
        frozenset((p.version, p.zone, frozenset(p.addresses), p.weight) for p in pools)
        for pools in (routes.production, routes.preview)
    )


def same_table(a: _Table | None, b: _Table | None) -> bool:
    """Do ``a`` and ``b`` route alike (pool and address order aside)?"""
    if a is None or b is None:
        return a is b
    return _key(a) == _key(b)
