"""The traffic-router port's contract, run against every driver: FakeRouter, NginxRouter and
HaproxyRouter (each real one on its own proxy and real sample-service processes).

What the reconciler relies on (``adapters/routers/base.py``): ``current`` reads back what
``apply`` set (None before anything was), applying twice changes nothing, a table the data plane
cannot serve is refused with RouterError and leaves the serving one; ``probe`` sends real
requests: production by weight, the preview route only to preview pools, a route without pools
fails every request, a dead instance is retried on another one of its version, 5xx answered by a
version are failures counted for that version; listeners are idempotent and refuse port clashes.
The FakeRouter the reconciler's unit tests use must pass what the real drivers pass.  What only
real drivers share (metrics, behaviour under load, reloads, restarts) is in
tests/integration/test_routers.py; what one driver alone does, in its own test file.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shipwarden.adapters.net import free_port
from shipwarden.adapters.routers.base import Listener, Pool, RouterError, Routes, TrafficRouter
from tests.fakes.router import FakeRouter
from tests.fixtures.routers import DRIVERS, running_router

pytestmark = pytest.mark.xdist_group("router_contract")


@dataclass
class Driver:
    router: TrafficRouter
    listener: Listener
    backend: Callable[..., str]  # (version, errors=False) -> address of a live instance
    kill: Callable[[str], None]  # the instance at an address dies


@pytest.fixture(params=["fake", *DRIVERS])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    if request.param == "fake":
        answers: dict[str, tuple[str, int]] = {}
        router = FakeRouter(answers.get)
        router.start()
        listener = Listener("web", free_port(), free_port())
        router.ensure_listener(listener)
        ports = iter(range(30000, 31000))

        def fake_backend(version: str, errors: bool = False) -> str:
            address = f"127.0.0.1:{next(ports)}"
            answers[address] = (version, 500 if errors else 200)
            return address

        yield Driver(router, listener, fake_backend, lambda a: answers.pop(a, None))
        return
    factory = request.getfixturevalue("sample_service")
    running: dict[str, Any] = {}

    def backend(version: str, errors: bool = False) -> str:
        svc = factory(version, error_rate=1.0 if errors else 0.0)
        running[svc.address] = svc
        return str(svc.address)

    with running_router(request.param, tmp_path / request.param) as (router, listener):
        yield Driver(router, listener, backend, lambda a: running[a].stop(signal.SIGKILL))


def pool(version: str, *addresses: str, weight: int = 100) -> Pool:
    return Pool(version, tuple(addresses), weight)


def test_current_reads_back_what_apply_set(driver: Driver) -> None:
    r, svc = driver.router, driver.listener.service
    assert r.current(svc) is None
    v1, v2 = driver.backend("v1"), driver.backend("v2")
    table = Routes(
        production=(pool("v1", v1, weight=80), pool("v2", v2, weight=20)), preview=(pool("v2", v2),)
    )
    r.apply(svc, table)
    assert r.current(svc) == table
    r.apply(svc, table)  # idempotent
    assert r.current(svc) == table
    emptied = Routes(production=(pool("v1", v1),), preview=())
    r.apply(svc, emptied)
    assert r.current(svc) == emptied


def test_a_table_the_data_plane_cannot_serve_is_refused_and_changes_nothing(driver: Driver) -> None:
    r, svc = driver.router, driver.listener.service
    v1 = driver.backend("v1")
    good = Routes(production=(pool("v1", v1),))
    r.apply(svc, good)
    bad = [
        Routes(production=(pool("v1", v1, weight=60), pool("v2", v1, weight=30))),  # sums to 90
        Routes(production=(pool("v1", v1, weight=50), Pool("v2", (), 50))),  # weight, no addresses
        Routes(production=(Pool("v1", ("localhost:80",)),)),  # not ipv4:port
        Routes(production=(pool("v1", v1, weight=50), pool("v1", v1, weight=50))),  # duplicate version
        Routes(production=(Pool("v 1", (v1,)),)),  # a space in a version (it becomes a label)
        Routes(preview=(Pool("v2", (), 100),)),
    ]
    for table in bad:
        with pytest.raises(RouterError):
            r.apply(svc, table)
    with pytest.raises(RouterError):
        r.apply("bad name", good)
    assert r.current(svc) == good
    assert r.current("unknown") is None


def test_probe_follows_the_weights_and_the_preview_reaches_only_its_pool(driver: Driver) -> None:
    r, svc = driver.router, driver.listener.service
    v1, v2 = driver.backend("v1"), driver.backend("v2")
    r.apply(svc, Routes(production=(pool("v1", v1),), preview=(pool("v2", v2),)))
    assert r.probe(svc, "production", 20).versions == Counter(v1=20)
    assert r.probe(svc, "preview", 20).versions == Counter(v2=20)
    r.apply(svc, Routes(production=(pool("v1", v1, weight=0), pool("v2", v2, weight=100))))
    assert r.probe(svc, "production", 20).versions == Counter(v2=20)
    r.apply(svc, Routes(production=(pool("v1", v1, weight=50), pool("v2", v2, weight=50))))
    split = r.probe(svc, "production", 200)
    assert split.failures == 0 and split.total == 200
    assert 60 <= split.versions["v2"] <= 140, split.versions  # ~6 sigma around 100


def test_a_route_without_pools_fails_every_request(driver: Driver) -> None:
    r, svc = driver.router, driver.listener.service
    r.apply(svc, Routes(production=(pool("v1", driver.backend("v1")),), preview=()))
    res = r.probe(svc, "preview", 10)
    assert res.failures == 10 and sum(res.versions.values()) == 0


def test_a_dead_instance_is_retried_on_another_of_its_version(driver: Driver) -> None:
    r, svc = driver.router, driver.listener.service
    a, b = driver.backend("v1"), driver.backend("v1")
    r.apply(svc, Routes(production=(pool("v1", a, b),)))
    driver.kill(a)
    assert r.probe(svc, "production", 20).versions == Counter(v1=20)
    driver.kill(b)
    res = r.probe(svc, "production", 10)
    assert res.failures == 10 and sum(res.versions.values()) == 0


def test_when_no_instance_answers_the_failures_are_not_the_versions_5xx(driver: Driver) -> None:
    """``server_errors`` are 5xx *answered by a version* (the port's docstring): a probe with
    ``routing_only`` counts them as routed, so the proxy's own 502/503 (every instance refused)
    must carry no version label, or a pool whose instances all refuse would look routed there."""
    r, svc = driver.router, driver.listener.service
    a = driver.backend("v1")
    r.apply(svc, Routes(production=(pool("v1", a),)))
    driver.kill(a)
    # three requests: HAProxy retries a refused connection on the same server after 1 s each time
    # (``retries 4``), so every request here costs ~4 s on it
    res = r.probe(svc, "production", 3)
    assert res.failures == 3 and res.server_errors == Counter(), res


def test_5xx_answered_by_a_version_are_failures_counted_for_it(driver: Driver) -> None:
    r, svc = driver.router, driver.listener.service
    r.apply(svc, Routes(production=(pool("v2", driver.backend("v2", errors=True)),)))
    res = r.probe(svc, "production", 10)
    assert res.failures == 10 and res.server_errors == Counter(v2=10) and sum(res.versions.values()) == 0


def test_listeners_are_idempotent_and_refuse_port_clashes(driver: Driver) -> None:
    r = driver.router
    r.ensure_listeners([driver.listener])
    api = Listener("api", free_port(), free_port())
    r.ensure_listeners([driver.listener, api])
    r.ensure_listener(api)
    with pytest.raises(RouterError):
        r.ensure_listener(Listener("jobs", driver.listener.port, free_port()))
    with pytest.raises(RouterError):
        r.ensure_listener(Listener("bad name", free_port(), free_port()))


def test_the_router_counts_every_answer_per_route_and_version(driver: Driver) -> None:
    """``version_counts``: what the judge reads (requests and 5xx per version and route), counted
    by the data plane itself; the counters only grow."""
    r, svc = driver.router, driver.listener.service
    v1, v2 = driver.backend("v1"), driver.backend("v2", errors=True)
    r.apply(svc, Routes(production=(pool("v1", v1),), preview=(pool("v2", v2),)))
    before = r.version_counts(svc)
    assert r.probe(svc, "production", 12).versions == Counter(v1=12)
    assert r.probe(svc, "preview", 5).server_errors == Counter(v2=5)
    after = r.version_counts(svc)

    def grew(route: str, version: str) -> tuple[int, int]:
        old = before.get(route, {}).get(version)
        new = after[route][version]
        return new.requests - (old.requests if old else 0), new.errors - (old.errors if old else 0)

    assert grew("production", "v1") == (12, 0)
    assert grew("preview", "v2") == (5, 5)
    assert "v2" not in after.get("production", {}) and "v1" not in after.get("preview", {})
    hist = after["production"]["v1"]
    if hist.bounds_ms:  # a latency histogram, when the driver has one: cumulative, ending at +Inf
        assert hist.bounds_ms[-1] == float("inf") and hist.cumulative[-1] == hist.requests
        assert list(hist.cumulative) == sorted(hist.cumulative)
    assert r.version_counts("unknown") == {}


def test_zone_pools_are_read_back_served_by_their_share_and_counted_per_zone(driver: Driver) -> None:
    """E2: a table with one pool per (version, zone) is served as it is — each zone pool gets its
    own share (HAProxy too: a zone pool is a backend of its own) — and ``version_counts(zone=)``
    counts what that zone's instances answered, so a zone's canary can be judged on its own."""
    r, svc = driver.router, driver.listener.service
    a1, b2 = driver.backend("v1"), driver.backend("v2")
    split = Routes(production=(Pool("v1", (a1,), 50, "a"), Pool("v2", (b2,), 50, "b")))
    r.apply(svc, split)
    assert r.current(svc) == split
    before = {z: r.version_counts(svc, z) for z in ("a", "b", None)}
    res = r.probe(svc, "production", 100)
    assert res.failures == 0 and sum(res.versions.values()) == 100
    after = {z: r.version_counts(svc, z) for z in ("a", "b", None)}

    def grew(zone: str | None) -> dict[str, int]:
        old = before[zone].get("production", {})
        return {
            v: c.requests - (old[v].requests if v in old else 0)
            for v, c in after[zone].get("production", {}).items()
        }

    assert grew("a") == {"v1": res.versions["v1"]} and grew("b") == {"v2": res.versions["v2"]}
    assert grew(None) == {"v1": res.versions["v1"], "v2": res.versions["v2"]}
    assert 20 <= res.versions["v2"] <= 80, res.versions  # zone b's pool got its share (~6 sigma)
    assert r.version_counts(svc, "nowhere") == {}
    # one version in two zones with different shares: each zone pool keeps its own weight
    b1 = driver.backend("v1")
    zoned = Routes(production=(Pool("v1", (a1,), 90, "a"), Pool("v1", (b1,), 10, "b")))
    r.apply(svc, zoned)
    assert r.current(svc) == zoned
    before = {z: r.version_counts(svc, z) for z in ("a", "b", None)}
    res = r.probe(svc, "production", 100)
    after = {z: r.version_counts(svc, z) for z in ("a", "b", None)}
    assert res.failures == 0 and res.versions == Counter(v1=100)
    in_b = grew("b").get("v1", 0)
    assert grew("a").get("v1", 0) + in_b == 100 and in_b <= 30, (grew("a"), in_b)  # ~10, not ~50


def test_a_zone_whose_instances_died_is_served_by_the_versions_other_zones(driver: Driver) -> None:
    """E2 failover outside a rollout (nothing rewrites the table): a zone pool whose instances all
    refuse is served by the same version's instances in the other zones, no request failing."""
    r, svc = driver.router, driver.listener.service
    a, b, c = driver.backend("v1"), driver.backend("v1"), driver.backend("v1")
    pools = ((a, 34, "a"), (b, 33, "b"), (c, 33, "c"))
    table = Routes(production=tuple(Pool("v1", (x,), w, z) for x, w, z in pools))
    r.apply(svc, table)
    driver.kill(b)
    res = r.probe(svc, "production", 30)
    assert res.versions == Counter(v1=30) and res.failures == 0, res
