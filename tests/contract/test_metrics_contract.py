"""The metric-provider port's contract (``ports/metrics.py``), run against every driver: the
FakeMetricProvider, a real Prometheus scraping a static exporter, and NewRelicProvider against the
local NerdGraph contract server (New Relic cannot run here).

What the analysis relies on: a number is a :class:`Value`, "nothing to measure" is
:class:`NoData` (never zero, never an error), a failure is a :class:`ProviderError` with its
kind (bad query, ambiguous, connection) and never a value; several series are refused unless the
caller says how to fold them; ``fetch_pair`` measures both versions at one pinned instant; unsafe
values never reach the back-end.  Each driver brings the same data in its own language: the
metric "one" is 1.25 for v1 and 7.5 for v2 (service checkout), "two" has two series for v1
(1 and 2), v9 has nothing.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shipwarden.adapters.metrics.newrelic import NewRelicProvider
from shipwarden.adapters.metrics.prometheus import PrometheusProvider
from shipwarden.adapters.net import free_port
from shipwarden.ports.metrics import (
    Aggregation,
    ErrorKind,
    MetricProvider,
    NoData,
    ProviderError,
    Series,
    TemplateError,
    Value,
)
from tests.fakes.metrics import FakeMetricProvider

SERVICE = "checkout"
DRIVERS = ("fake", "prometheus", "newrelic")


@dataclass
class Kit:
    provider: MetricProvider
    one: str  # one series per version: v1 -> 1.25, v2 -> 7.5, v9 -> none
    two: str  # two series for v1: 1 and 2
    bad: str  # a query the back-end rejects
    unreachable: Callable[[], MetricProvider]  # the same driver, with nothing answering
    at: float  # an instant at which the data is there


# -- Prometheus: a static exporter scraped every second -----------------------------------------
EXPOSITION = f"""\
# TYPE contract_one gauge
contract_one{{service="{SERVICE}",version="v1"}} 1.25
contract_one{{service="{SERVICE}",version="v2"}} 7.5
# TYPE contract_two gauge
contract_two{{service="{SERVICE}",version="v1",shard="a"}} 1
contract_two{{service="{SERVICE}",version="v1",shard="b"}} 2
""".encode()


class _Exporter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(EXPOSITION)))
        self.end_headers()
        self.wfile.write(EXPOSITION)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture(scope="module")
def prometheus_data(prometheus_server_module: Callable[..., Any]) -> Iterator[tuple[str, float]]:
    """(url, instant): a Prometheus that has scraped the exporter several times by ``instant``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        prom = prometheus_server_module(targets=[f"127.0.0.1:{server.server_address[1]}"])
        prom.wait_for_targets_up()
        prom.wait_for("count(contract_one) + count(contract_two)", lambda v: v == 4)
        prom.wait_for("count_over_time(contract_one{version='v1'}[1m])", lambda v: v >= 3)
        yield prom.url, round(time.time(), 3)  # Prometheus evaluates at millisecond instants
    finally:
        server.shutdown()
        server.server_close()


def _prometheus_kit(request: pytest.FixtureRequest) -> Kit:
    url, at = request.getfixturevalue("prometheus_data")
    sel = 'service="{service}",version="{version}"'
    dead = f"http://127.0.0.1:{free_port()}"
    return Kit(
        PrometheusProvider(url, timeout_s=5),
        one=f"max_over_time(contract_one{{{sel}}}[{{window}}])",
        two=f"max_over_time(contract_two{{{sel}}}[{{window}}])",
        bad=f"max_over_time(contract_one{{{sel}}}[{{window}}]))",
        unreachable=lambda: PrometheusProvider(dead, timeout_s=2),
        at=at,
    )


# -- New Relic: the NerdGraph contract server, scripted with the same data -----------------------
def _newrelic_kit(request: pytest.FixtureRequest) -> Kit:
    nr = request.getfixturevalue("newrelic_contract")
    where = "FROM Contract WHERE appName = '{service}' AND tags.version = '{version}' {window}"
    at = 1_700_000_000.0
    nr.script("tags.version = 'v9'", results=[])
    buckets = [(at - 60 + 10 * i, at - 50 + 10 * i) for i in range(6)]
    rows = [{"beginTimeSeconds": b, "endTimeSeconds": e, "value": 1.25} for b, e in buckets]
    nr.script("TIMESERIES", results=rows)
    nr.script("latest(one) AS 'value' FROM Contract WHERE appName = 'checkout' AND tags.version = 'v1'",
              results=[{"value": 1.25}])  # fmt: skip
    nr.script("latest(one) AS 'value' FROM Contract WHERE appName = 'checkout' AND tags.version = 'v2'",
              results=[{"value": 7.5}])  # fmt: skip
    nr.script("latest(two)", results=[{"facet": "a", "value": 1.0}, {"facet": "b", "value": 2.0}])

    def make(url: str) -> NewRelicProvider:
        return NewRelicProvider(nr.api_key, nr.account_id, endpoint=url, timeout_s=2)

    return Kit(
        make(nr.url),
        one=f"SELECT latest(one) AS 'value' {where}",
        two=f"SELECT latest(two) AS 'value' {where} FACET shard",
        bad=f"SELEKT latest(one) AS 'value' {where}",
        unreachable=lambda: make(f"http://127.0.0.1:{free_port()}/graphql"),
        at=at,
    )


def _fake_kit() -> Kit:
    series = {
        "one": {(SERVICE, "v1"): [1.25], (SERVICE, "v2"): [7.5]},
        "two": {(SERVICE, "v1"): [1.0, 2.0]},
    }

    def dead() -> FakeMetricProvider:
        p = FakeMetricProvider(series)
        p.down = True
        return p

    return Kit(
        FakeMetricProvider(series),
        one="one of '{service}' at '{version}' over {window}",
        two="two of '{service}' at '{version}' over {window}",
        bad="one of '{service}' at '{version}' within {window}",
        unreachable=dead,
        at=time.time(),
    )


@pytest.fixture(params=DRIVERS)
def kit(request: pytest.FixtureRequest) -> Iterator[Kit]:
    name = request.param
    made = _fake_kit() if name == "fake" else _prometheus_kit(request) if name == "prometheus" else None
    made = made or _newrelic_kit(request)
    yield made
    made.provider.close()


def _q(kit: Kit, template: str, version: str, **kw: Any) -> Any:
    return kit.provider.query(template, service=SERVICE, version=version, window_s=30, at=kit.at, **kw)


def test_a_number_is_a_value_and_nothing_is_no_data(kit: Kit) -> None:
    assert isinstance(kit.provider, MetricProvider)
    one = _q(kit, kit.one, "v1")
    assert isinstance(one, Value) and one.value == 1.25 and one.at == kit.at, one
    assert "v1" in one.query
    none = _q(kit, kit.one, "v9")
    assert isinstance(none, NoData) and none.at == kit.at and none.reason, none  # not 0, not an error


def test_a_pair_is_measured_at_one_instant_with_the_same_query(kit: Kit) -> None:
    pair = kit.provider.fetch_pair(
        kit.one, service=SERVICE, baseline_version="v1", canary_version="v2", window_s=30, at=kit.at
    )
    assert (pair.baseline_version, pair.canary_version, pair.at) == ("v1", "v2", kit.at)
    assert isinstance(pair.baseline, Value) and pair.baseline.value == 1.25
    assert isinstance(pair.canary, Value) and pair.canary.value == 7.5
    assert pair.baseline.query.replace("v1", "v2") == pair.canary.query
    with pytest.raises(TemplateError):  # the same thing twice is no comparison
        kit.provider.fetch_pair(kit.one, service=SERVICE, baseline_version="v1", canary_version="v1",
                                window_s=30, at=kit.at)  # fmt: skip


def test_several_series_are_refused_unless_the_caller_folds_them(kit: Kit) -> None:
    with pytest.raises(ProviderError) as exc:
        _q(kit, kit.two, "v1")
    assert exc.value.kind is ErrorKind.AMBIGUOUS
    assert _q(kit, kit.two, "v1", aggregate=Aggregation.SUM).value == 3.0
    assert _q(kit, kit.two, "v1", aggregate=Aggregation.MAX).value == 2.0
    assert _q(kit, kit.two, "v1", aggregate=Aggregation.MEAN).value == 1.5


def test_a_query_the_back_end_rejects_is_a_bad_query_error(kit: Kit) -> None:
    with pytest.raises(ProviderError) as exc:
        _q(kit, kit.bad, "v1")
    assert exc.value.kind is ErrorKind.BAD_QUERY and exc.value.provider == kit.provider.kind


def test_unsafe_values_never_reach_the_back_end(kit: Kit) -> None:
    for version in ("v1' OR '1'='1", 'v1"} or vector(1) or {x="', "", "v 1"):
        with pytest.raises(TemplateError):
            _q(kit, kit.one, version)
    with pytest.raises(TemplateError):  # {version} outside a string literal
        _q(kit, kit.one.replace("'{version}'", "{version}").replace('"{version}"', "{version}"), "v1")


def test_nothing_answering_is_a_connection_error_never_a_value(kit: Kit) -> None:
    dead = kit.unreachable()
    try:
        with pytest.raises(ProviderError) as exc:
            dead.query(kit.one, service=SERVICE, version="v1", window_s=30, at=kit.at)
        assert exc.value.kind is ErrorKind.CONNECTION, exc.value
    finally:
        dead.close()


def test_a_range_is_a_series_in_time_order_or_no_data(kit: Kit) -> None:
    start, end = kit.at - 40, kit.at
    series = kit.provider.query_range(kit.one, service=SERVICE, version="v1", start=start, end=end, step=10,
                                      window_s=30)  # fmt: skip
    assert isinstance(series, Series) and series.points, series
    times = [p.t for p in series.points]
    assert times == sorted(times) and start - 10 <= times[0] and times[-1] <= end + 10
    assert all(p.value == 1.25 and not math.isnan(p.value) for p in series.points)
    none = kit.provider.query_range(kit.one, service=SERVICE, version="v9", start=start, end=end, step=10,
                                    window_s=30)  # fmt: skip
    assert isinstance(none, NoData)
