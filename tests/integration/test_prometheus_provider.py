"""PrometheusProvider against a real Prometheus scraping the real sample service.

One Prometheus and two sample-service instances (baseline ``v1`` failing 5%
of requests, canary ``v2`` failing 30%) are shared by the module; the tests
then ask the provider the questions canary analysis asks and check the
answers against what the test client itself observed.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from shipwarden.adapters.metrics.base import (
    Aggregation,
    ErrorKind,
    MetricProvider,
    NoData,
    ProviderError,
    Series,
    TemplateError,
    Value,
    make_provider,
)
from shipwarden.adapters.metrics.prometheus import PrometheusProvider
from shipwarden.adapters.net import free_port, wait_for_port

if TYPE_CHECKING:
    from tests.fixtures.prometheus import PrometheusServer

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("prometheus-provider")]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_APP = ROOT / "examples" / "sample_service" / "app.py"
SERVICE = "checkout"
N_REQUESTS = 400
RATES = {"v1": 0.05, "v2": 0.30}

ERROR_RATE = (
    'sum(increase(sample_http_requests_total{service="{service}",version="{version}",code=~"5.."}[{window}]))'
    ' / sum(increase(sample_http_requests_total{service="{service}",version="{version}"}[{window}]))'
)
P95 = (
    "histogram_quantile(0.95, sum by (le) ("
    'rate(sample_http_request_duration_seconds_bucket{service="{service}",version="{version}"}[{window}])))'
)
TOTAL = 'sum(sample_http_requests_total{service="{service}",version="{version}"})'


@dataclass
class Scenario:
    prom_url: str
    observed_error_rate: dict[str, float]
    at: float


def _start_sample(version: str, error_rate: float) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "SAMPLE_VERSION": version,
        "SAMPLE_SERVICE": SERVICE,
        "SAMPLE_ERROR_RATE": str(error_rate),
    }
    proc = subprocess.Popen(
        [sys.executable, str(SAMPLE_APP)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if not wait_for_port("127.0.0.1", port, timeout=15):
        proc.kill()
        _, err = proc.communicate(timeout=5)
        raise RuntimeError(f"sample service {version} did not start: {err.decode(errors='replace')}")
    return proc, port


@pytest.fixture(scope="module")
def scenario(prometheus_server_module: Callable[..., PrometheusServer]) -> Iterator[Scenario]:
    if not SAMPLE_APP.exists():
        pytest.skip("examples/sample_service/app.py not present")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports: dict[str, int] = {}
        for version, rate in RATES.items():
            proc, port = _start_sample(version, rate)
            procs.append(proc)
            ports[version] = port
        prom = prometheus_server_module(
            targets=[(f"127.0.0.1:{p}", {"service": SERVICE}) for p in ports.values()]
        )
        prom.wait_for_targets_up()
        # The sample service pre-binds both code series, so after one scrape each
        # version has its 200 and 500 series at 0: rate() then sees all traffic.
        for version in RATES:
            prom.wait_for(f'count(sample_http_requests_total{{version="{version}"}})', lambda v: v == 2)
        observed: dict[str, float] = {}
        with httpx.Client(timeout=5) as client:
            for version, port in ports.items():
                errors = sum(
                    client.get(f"http://127.0.0.1:{port}/").status_code >= 500 for _ in range(N_REQUESTS)
                )
                observed[version] = errors / N_REQUESTS
        for version in RATES:  # a scrape after the traffic, then one more for a stable window
            prom.wait_for(
                f'sum(sample_http_requests_total{{version="{version}"}})', lambda v: v >= N_REQUESTS
            )
        time.sleep(1.5)
        yield Scenario(prom_url=prom.url, observed_error_rate=observed, at=time.time())
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()


@pytest.fixture
def provider(scenario: Scenario) -> Iterator[PrometheusProvider]:
    p = PrometheusProvider(scenario.prom_url, timeout_s=5)
    yield p
    p.close()


def test_error_rate_pair_matches_injected_rates(scenario: Scenario, provider: PrometheusProvider) -> None:
    pair = provider.fetch_pair(
        ERROR_RATE, service=SERVICE, baseline_version="v1", canary_version="v2", window_s=120, at=scenario.at
    )
    assert isinstance(pair.baseline, Value), pair.baseline
    assert isinstance(pair.canary, Value), pair.canary
    assert pair.at == scenario.at
    for version, measured in (("v1", pair.baseline.value), ("v2", pair.canary.value)):
        seen = scenario.observed_error_rate[version]
        # increase() extrapolates both counters over the same scrape timestamps, so the
        # ratio tracks what the client saw closely; the injected rate is only approximate.
        assert measured == pytest.approx(seen, abs=max(0.03, 0.15 * seen)), (version, measured, seen)
        assert measured == pytest.approx(RATES[version], abs=0.1), (version, measured)
    assert pair.canary.value > pair.baseline.value
    assert '"v2"' in pair.canary.query and '"v1"' in pair.baseline.query


def test_provider_from_registry_and_latency_quantile(scenario: Scenario) -> None:
    provider = make_provider("prometheus", base_url=scenario.prom_url, timeout_s=5)
    try:
        assert isinstance(provider, MetricProvider)
        m = provider.query(P95, service=SERVICE, version="v2", window_s=120, at=scenario.at)
        assert isinstance(m, Value)
        assert 0 < m.value < 1.0  # the sample service answers in well under a second
    finally:
        provider.close()


def test_unknown_version_is_nodata_not_zero(scenario: Scenario, provider: PrometheusProvider) -> None:
    m = provider.query(ERROR_RATE, service=SERVICE, version="v9", window_s=120, at=scenario.at)
    assert isinstance(m, NoData)
    assert "no series" in m.reason


def test_zero_over_zero_is_nodata_and_inf_is_a_value(provider: PrometheusProvider) -> None:
    nan = provider.query("vector(0) / vector(0)", service=SERVICE, version="v1", window_s=30)
    assert isinstance(nan, NoData) and "NaN" in nan.reason
    inf = provider.query("vector(1) / vector(0)", service=SERVICE, version="v1", window_s=30)
    assert isinstance(inf, Value) and inf.value == math.inf
    scalar = provider.query("scalar(vector(0.25))", service=SERVICE, version="v1", window_s=30)
    assert isinstance(scalar, Value) and scalar.value == 0.25


def test_several_series_are_refused_unless_aggregated(
    scenario: Scenario, provider: PrometheusProvider
) -> None:
    raw = 'sample_http_requests_total{service="{service}",version="{version}"}'
    with pytest.raises(ProviderError) as exc:
        provider.query(raw, service=SERVICE, version="v1", window_s=30, at=scenario.at)
    assert exc.value.kind is ErrorKind.AMBIGUOUS
    assert "2 series" in str(exc.value)
    summed = provider.query(
        raw, service=SERVICE, version="v1", window_s=30, at=scenario.at, aggregate=Aggregation.SUM
    )
    assert isinstance(summed, Value) and summed.value >= N_REQUESTS
    total = provider.query(TOTAL, service=SERVICE, version="v1", window_s=30, at=scenario.at)
    assert isinstance(total, Value) and summed.value == total.value


def test_range_vector_result_is_a_clear_error(provider: PrometheusProvider) -> None:
    with pytest.raises(ProviderError, match="range vector") as exc:
        provider.query(
            'sample_http_requests_total{version="{version}"}[{window}]',
            service=SERVICE,
            version="v1",
            window_s=10,
        )
    assert exc.value.kind is ErrorKind.BAD_QUERY


def test_bad_promql_is_400_with_prometheus_message(provider: PrometheusProvider) -> None:
    with pytest.raises(ProviderError) as exc:
        provider.query(
            'sum(rate(sample_http_requests_total{version="{version}"}[{window}])',
            service=SERVICE,
            version="v1",
            window_s=30,
        )
    err = exc.value
    assert err.status == 400 and err.error_type == "bad_data" and err.kind is ErrorKind.BAD_QUERY
    assert "parse error" in err.message
    assert err.query is not None and '"v1"' in err.query


def test_unexecutable_promql_is_422_execution(provider: PrometheusProvider) -> None:
    many_to_many = (
        '(label_replace(vector(1),"a","x","","") or label_replace(vector(2),"a","y","",""))'
        ' * on() (label_replace(vector(1),"b","x","","") or label_replace(vector(2),"b","y","",""))'
    )
    with pytest.raises(ProviderError) as exc:
        provider.query(many_to_many, service=SERVICE, version="v1", window_s=30)
    assert exc.value.status == 422 and exc.value.error_type == "execution"
    assert exc.value.kind is ErrorKind.EXECUTION
    assert "many-to-many" in exc.value.message


def test_query_range_returns_one_ordered_series(scenario: Scenario, provider: PrometheusProvider) -> None:
    s = provider.query_range(
        TOTAL, service=SERVICE, version="v2", start=scenario.at - 10, end=scenario.at, step=1
    )
    assert isinstance(s, Series)
    times = [p.t for p in s.points]
    assert len(times) >= 3  # the series exists only since the module's Prometheus started
    assert all(b - a == pytest.approx(1.0) for a, b in zip(times, times[1:], strict=False))
    assert times[-1] == pytest.approx(scenario.at, abs=0.01)
    assert s.values() == sorted(s.values())  # a counter sum never goes down
    assert s.points[-1].value >= N_REQUESTS
    empty = provider.query_range(
        TOTAL, service=SERVICE, version="v9", start=scenario.at - 10, end=scenario.at, step=1
    )
    assert isinstance(empty, NoData)


def test_long_queries_go_as_form_post_and_short_ones_as_get(scenario: Scenario) -> None:
    seen: list[tuple[str, str]] = []

    def record(request: httpx.Request) -> None:
        seen.append((request.method, request.headers.get("content-type", "")))

    with httpx.Client(event_hooks={"request": [record]}) as client:
        provider = PrometheusProvider(scenario.prom_url, client=client, timeout_s=5)
        long_query = TOTAL + "".join(f" + (vector({i}) * 0)" for i in range(150))
        assert len(long_query) > 2000
        m = provider.query(long_query, service=SERVICE, version="v1", window_s=30, at=scenario.at)
        short = provider.query(TOTAL, service=SERVICE, version="v1", window_s=30, at=scenario.at)
        provider.close()  # injected client: close() must leave it usable
        assert not client.is_closed
    assert isinstance(m, Value) and isinstance(short, Value) and m.value == short.value
    assert seen[0] == ("POST", "application/x-www-form-urlencoded")
    assert seen[1][0] == "GET"


def test_injection_through_version_is_refused_before_any_request(scenario: Scenario) -> None:
    seen: list[httpx.Request] = []
    with httpx.Client(event_hooks={"request": [seen.append]}) as client:
        provider = PrometheusProvider(scenario.prom_url, client=client)
        for bad in ['v1"} or vector(1) or {x="', "v1\\", "v 1", ""]:
            with pytest.raises(TemplateError):
                provider.query(TOTAL, service=SERVICE, version=bad, window_s=30)
        with pytest.raises(TemplateError, match="inside a string literal"):
            provider.query(
                "sample_http_requests_total{version={version}}", service=SERVICE, version="v1", window_s=30
            )
    assert seen == []


def test_stopped_prometheus_is_a_connection_error_never_a_value(prometheus: PrometheusServer) -> None:
    provider = PrometheusProvider(prometheus.url, timeout_s=3)
    try:
        assert isinstance(provider.query("vector(1)", service=SERVICE, version="v1", window_s=30), Value)
        prometheus.stop()
        with pytest.raises(ProviderError) as exc:
            provider.query("vector(1)", service=SERVICE, version="v1", window_s=30)
        assert exc.value.kind is ErrorKind.CONNECTION
    finally:
        provider.close()


def test_silent_server_is_a_timeout_error() -> None:
    """A socket that accepts and never answers (a hung Prometheus) must not hang the analysis."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        accepted: list[socket.socket] = []
        t = threading.Thread(target=lambda: accepted.append(srv.accept()[0]), daemon=True)
        t.start()
        provider = PrometheusProvider(f"http://127.0.0.1:{srv.getsockname()[1]}", timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(ProviderError) as exc:
            provider.query("vector(1)", service=SERVICE, version="v1", window_s=30)
        assert exc.value.kind is ErrorKind.TIMEOUT
        assert time.monotonic() - started < 3
        provider.close()
        t.join(timeout=2)
        for conn in accepted:
            conn.close()


def test_basic_auth_against_protected_prometheus(prometheus_server: Callable[..., PrometheusServer]) -> None:
    prom = prometheus_server(basic_auth=("shipwarden", "s3cret-pw"))
    good = PrometheusProvider(prom.url, basic_auth=("shipwarden", "s3cret-pw"), timeout_s=5)
    bad = PrometheusProvider(prom.url, basic_auth=("shipwarden", "wrong"), timeout_s=5)
    anonymous = PrometheusProvider(prom.url, timeout_s=5)
    try:
        m = good.query("vector(2)", service=SERVICE, version="v1", window_s=30)
        assert isinstance(m, Value) and m.value == 2
        for p in (bad, anonymous):
            with pytest.raises(ProviderError) as exc:
                p.query("vector(2)", service=SERVICE, version="v1", window_s=30)
            assert exc.value.status == 401 and exc.value.kind is ErrorKind.AUTH
        assert "s3cret-pw" not in repr(good)
    finally:
        for p in (good, bad, anonymous):
            p.close()
