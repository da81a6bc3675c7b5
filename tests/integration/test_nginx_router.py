"""NginxRouter against real nginx and real sample-service processes (D10 zero downtime, E1)."""

from __future__ import annotations

import math
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from examples.sample_service import SampleService

from shipwarden.adapters.net import free_port, wait_for_port
from shipwarden.adapters.routers.base import ConfigRejected, Listener, Pool, RouterError, Routes
from shipwarden.adapters.routers.nginx import NginxRouter

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("nginx_router")]

Factory = Callable[..., SampleService]


def pool(version: str, services: list[SampleService], weight: int = 100) -> Pool:
    return Pool(version, tuple(s.address for s in services), weight)


@dataclass
class Traffic:
    requests: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)


@contextmanager
def traffic(url: str, concurrency: int = 20, max_seconds: float = 30.0) -> Iterator[Traffic]:
    """Closed-loop load from ``concurrency`` threads (keep-alive clients) until the block exits.

    A failure is a transport error, a non-200, or a response whose router label
    (X-Shipwarden-Version) disagrees with the backend's own X-Version.
    """
    result, lock, stop = Traffic(), threading.Lock(), threading.Event()

    def worker() -> None:
        deadline = time.monotonic() + max_seconds
        with httpx.Client(timeout=10.0, trust_env=False) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                err, version = "", ""
                try:
                    r = client.get(url)
                    version = r.headers.get("X-Shipwarden-Version", "")
                    if r.status_code != 200:
                        err = f"HTTP {r.status_code}"
                    elif version != r.headers.get("X-Version"):
                        err = f"label {version} != backend {r.headers.get('X-Version')}"
                except httpx.HTTPError as exc:
                    err = type(exc).__name__
                with lock:
                    result.requests += 1
                    if err:
                        result.failures[err] += 1
                    else:
                        result.versions[version] += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    try:
        yield result
    finally:
        stop.set()
        for t in threads:
            t.join(15)


def test_switching_versions_under_load_fails_no_request(
    nginx_router: NginxRouter, nginx_listener: Listener, sample_service: Factory
) -> None:
    blue = [sample_service("blue"), sample_service("blue")]
    green = [sample_service("green"), sample_service("green")]
    svc = nginx_listener.service
    nginx_router.apply(svc, Routes(production=(pool("blue", blue),)))
    workers = nginx_router.worker_pids()
    with traffic(nginx_router.url(svc), concurrency=20) as load:
        time.sleep(0.3)
        for i in range(12):  # blue-green flips
            live, idle = (green, blue) if i % 2 == 0 else (blue, green)
            name, other = ("green", "blue") if i % 2 == 0 else ("blue", "green")
            nginx_router.apply(svc, Routes(production=(pool(name, live), pool(other, idle, 0))))
            time.sleep(0.15)
        for w in (10, 25, 50, 75, 100, 0):  # canary steps
            nginx_router.apply(svc, Routes(production=(pool("blue", blue, 100 - w), pool("green", green, w))))
            time.sleep(0.15)
    assert load.requests > 500
    assert load.failures == Counter(), load.failures
    assert load.versions["blue"] > 0 and load.versions["green"] > 0
    assert nginx_router.worker_pids() == workers, "apply() must not reload nginx"
    assert nginx_router.probe(svc, "production", 20).versions == Counter(blue=20)


def test_preview_route_reaches_only_preview_pool(
    nginx_router: NginxRouter, nginx_listener: Listener, sample_service: Factory
) -> None:
    stable, candidate = sample_service("v1"), sample_service("v2")
    svc = nginx_listener.service
    nginx_router.apply(svc, Routes(production=(pool("v1", [stable]),), preview=(pool("v2", [candidate]),)))
    assert nginx_router.probe(svc, "preview", 50).versions == Counter(v2=50)
    assert nginx_router.probe(svc, "production", 50).versions == Counter(v1=50)
    expected = Routes(production=(pool("v1", [stable]),), preview=(pool("v2", [candidate]),))
    assert nginx_router.current(svc) == expected


def test_weighted_split_matches_weight(
    nginx_router: NginxRouter, nginx_listener: Listener, sample_service: Factory
) -> None:
    stable = [sample_service("v1"), sample_service("v1")]
    canary = [sample_service("v2"), sample_service("v2")]
    svc = nginx_listener.service
    nginx_router.apply(svc, Routes(production=(pool("v1", stable, 80), pool("v2", canary, 20))))
    n, p = 1000, 0.2
    result = nginx_router.probe(svc, "production", n)
    assert result.failures == 0 and result.total == n
    bound = 5 * math.sqrt(n * p * (1 - p))  # 5 sigma ~ 63 requests; a 0/100 or 50/50 split fails
    assert abs(result.versions["v2"] - n * p) < bound, result.versions
    metrics = nginx_router.metrics_text()
    line = f'shipwarden_router_requests_total{{service="{svc}",route="production",version="v2",code="200"}}'
    assert f"{line} {result.versions['v2']}" in metrics
    # both instances of a version share its weight
    for s in canary:
        assert httpx.get(s.url + "metrics").text.count('code="200",version="v2"} 0.0') == 0


def test_latency_histogram_tells_a_30ms_version_from_a_fast_one(
    nginx_router: NginxRouter, nginx_listener: Listener, sample_service: Factory
) -> None:
    """The per-version histogram is fine enough for a quantile comparison (canary judge)."""
    from prometheus_client.parser import text_string_to_metric_families

    fast, slow = sample_service("v1"), sample_service("v2", latency_ms=30)
    svc = nginx_listener.service
    nginx_router.apply(svc, Routes(production=(pool("v1", [fast], 50), pool("v2", [slow], 50))))
    assert nginx_router.probe(svc, "production", 200).failures == 0
    buckets: dict[str, list[tuple[float, float]]] = {}
    for fam in text_string_to_metric_families(nginx_router.metrics_text()):
        for smp in fam.samples:
            if smp.name.endswith("_duration_seconds_bucket") and smp.labels["service"] == svc:
                buckets.setdefault(smp.labels["version"], []).append((float(smp.labels["le"]), smp.value))

    def median_bound(version: str) -> float:
        bs = sorted(buckets[version])
        counts = [c for _, c in bs]
        assert counts == sorted(counts), "buckets are cumulative"
        return next(le for le, c in bs if c >= counts[-1] / 2)

    assert len(buckets["v1"]) > 30  # well beyond Prometheus' 11 default buckets
    assert median_bound("v1") < 0.015 and 0.03 <= median_bound("v2") < 0.06, buckets


def test_route_without_pools_answers_503_with_clear_body(
    nginx_router: NginxRouter, nginx_listener: Listener
) -> None:
    resp = httpx.get(nginx_router.url(nginx_listener.service, "preview"))
    assert resp.status_code == 503
    assert "no pool serves the preview route of service web" in resp.text


def test_invalid_config_is_rejected_and_old_one_keeps_serving(
    nginx_router: NginxRouter, nginx_listener: Listener, sample_service: Factory
) -> None:
    v1 = sample_service("v1")
    nginx_router.apply("web", Routes(production=(pool("v1", [v1]),)))
    serving = nginx_router.conf_path.read_bytes()
    workers = nginx_router.worker_pids()
    nginx_router.extra_http = ["this_directive_does_not_exist on;"]
    new = Listener("api", free_port(), free_port())
    with pytest.raises(ConfigRejected, match="this_directive_does_not_exist"):
        nginx_router.ensure_listener(new)
    assert nginx_router.conf_path.read_bytes() == serving
    assert nginx_router.worker_pids() == workers
    assert "api" not in nginx_router.listeners
    assert nginx_router.probe("web", "production", 10).versions == Counter(v1=10)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{new.port}/")
    nginx_router.extra_http = []
    nginx_router.ensure_listener(new)  # the valid config goes through
    assert httpx.get(f"http://127.0.0.1:{new.port}/").status_code == 503
    assert nginx_router.probe("web", "production", 10).versions == Counter(v1=10)


def test_reload_refused_by_master_rolls_back_the_config_file(
    nginx_router: NginxRouter, nginx_listener: Listener, sample_service: Factory
) -> None:
    """``nginx -t`` ignores ports taken by others; the reload fails and the old config stays."""
    v1 = sample_service("v1")
    nginx_router.apply("web", Routes(production=(pool("v1", [v1]),)))
    serving = nginx_router.conf_path.read_bytes()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        with pytest.raises(ConfigRejected, match="bind"):
            nginx_router.ensure_listener(Listener("api", taken, free_port()))
    assert nginx_router.conf_path.read_bytes() == serving
    assert nginx_router.probe("web", "production", 10).versions == Counter(v1=10)


def test_listener_port_conflicts_are_refused(nginx_router: NginxRouter, nginx_listener: Listener) -> None:
    serving = nginx_router.conf_path.read_bytes()
    taken = (nginx_listener.port, nginx_router.admin_port)
    for bad in (Listener("api", port, free_port()) for port in taken):
        with pytest.raises(RouterError, match="port conflict"):
            nginx_router.ensure_listener(bad)
    assert nginx_router.conf_path.read_bytes() == serving


def test_ensure_listener_reloads_only_when_config_changes(
    nginx_router: NginxRouter, nginx_listener: Listener
) -> None:
    workers = nginx_router.worker_pids()
    nginx_router.ensure_listener(nginx_listener)
    assert nginx_router.worker_pids() == workers
    nginx_router.ensure_listener(Listener("api", free_port(), free_port()))
    assert nginx_router.worker_pids().isdisjoint(workers)


def test_ensure_listeners_adds_several_services_in_one_reload(
    nginx_router: NginxRouter, nginx_listener: Listener
) -> None:
    workers = nginx_router.worker_pids()
    api, jobs = Listener("api", free_port(), free_port()), Listener("jobs", free_port(), free_port())
    nginx_router.ensure_listeners([nginx_listener, api, jobs])
    after = nginx_router.worker_pids()
    assert after.isdisjoint(workers)  # one reload ...
    for x in (api, jobs):
        assert wait_for_port(x.host, x.port, 5) and wait_for_port(x.host, x.preview_port, 5)
    nginx_router.ensure_listeners([api, jobs])
    nginx_router.ensure_listener(api)
    assert nginx_router.worker_pids() == after  # ... and none for what is already exposed


def test_routes_survive_nginx_restart(
    nginx_router: NginxRouter, nginx_listener: Listener, sample_service: Factory
) -> None:
    v1, v2 = sample_service("v1"), sample_service("v2")
    routes = Routes(production=(pool("v1", [v1], 50), pool("v2", [v2], 50)), preview=(pool("v2", [v2]),))
    nginx_router.apply("web", routes)
    nginx_router.apply("web", Routes(production=(pool("v2", [v2]),), preview=(pool("v1", [v1]),)))
    nginx_router.probe("web", "production", 3)
    nginx_router.stop()
    assert not nginx_router.running()
    with pytest.raises(RouterError, match="not running"):
        nginx_router.apply("web", routes)
    log = (nginx_router.state_dir / "logs" / "access.log").read_text()
    assert "service=web route=production version=v2 " in log  # the access log names the serving version
    # a new controller process on the same state dir: listeners and tables come from disk
    again = NginxRouter(nginx_router.state_dir)
    again.start()
    assert again.listeners == {"web": nginx_listener}
    assert again.current("web") == Routes(production=(pool("v2", [v2]),), preview=(pool("v1", [v1]),))
    assert again.probe("web", "production", 10).versions == Counter(v2=10)
    assert again.probe("web", "preview", 10).versions == Counter(v1=10)


def test_apply_rejects_bad_tables_without_changing_anything(
    nginx_router: NginxRouter, nginx_listener: Listener, sample_service: Factory
) -> None:
    v1 = sample_service("v1")
    good = Routes(production=(pool("v1", [v1]),))
    nginx_router.apply("web", good)
    persisted = nginx_router.routes_path.read_bytes()
    bad = [
        Routes(production=(pool("v1", [v1], 60), Pool("v2", (v1.address,), 30))),  # sums to 90
        Routes(production=(pool("v1", [v1], 50), Pool("v2", (), 50))),  # weight without addresses
        Routes(production=(Pool("v1", ("localhost:80",)),)),  # not ipv4:port
        Routes(production=(pool("v1", [v1], 50), pool("v1", [v1], 50))),  # duplicate version
        Routes(preview=(Pool("v2", (), 100),)),
    ]
    for routes in bad:
        with pytest.raises(RouterError):
            nginx_router.apply("web", routes)
    with pytest.raises(RouterError):
        nginx_router.apply("bad name", good)
    assert nginx_router.current("web") == good
    assert nginx_router.routes_path.read_bytes() == persisted
    # the data plane validates too: a table that bypasses Python validation is refused with 400
    resp = httpx.put(f"{nginx_router.admin_url}/routes/web", json={"production": [
        {"version": "v9", "weight": 40, "addresses": [v1.address]}]})
    assert resp.status_code == 400 and "sum to 100" in resp.text
    assert nginx_router.current("web") == good
    assert nginx_router.current("unknown") is None


def test_sigkill_of_a_backend_mid_traffic_fails_no_request(
    nginx_router: NginxRouter, nginx_listener: Listener, sample_service: Factory
) -> None:
    v1 = [sample_service("v1") for _ in range(3)]
    nginx_router.apply("web", Routes(production=(pool("v1", v1),)))
    with traffic(nginx_router.url("web"), concurrency=20) as load:
        time.sleep(0.5)
        v1[0].stop(signal.SIGKILL)
        time.sleep(1.5)
    assert load.requests > 200
    assert load.failures == Counter(), load.failures
    assert "shipwarden_router_upstream_retries_total" in nginx_router.metrics_text()


def test_sigterm_drain_of_an_instance_under_load_fails_no_request(
    nginx_router: NginxRouter, nginx_listener: Listener, sample_service: Factory
) -> None:
    v1 = [sample_service("v1", latency_ms=5) for _ in range(2)]
    nginx_router.apply("web", Routes(production=(pool("v1", v1),)))
    with traffic(nginx_router.url("web"), concurrency=20) as load:
        time.sleep(0.5)
        assert v1[0].stop(signal.SIGTERM) == 0
        time.sleep(1.0)
    assert load.requests > 200
    assert load.failures == Counter(), load.failures
