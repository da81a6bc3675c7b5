"""NewRelicProvider against the local NerdGraph contract server.

New Relic cannot run here; the contract server (tests/fixtures/newrelic_contract.py)
checks every request against the documented NerdGraph contract and answers
with documented shapes, including the error shapes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

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
from shipwarden.adapters.metrics.newrelic import NERDGRAPH_EU, NERDGRAPH_US, NewRelicProvider

if TYPE_CHECKING:
    from tests.fixtures.newrelic_contract import NerdGraphContract, RewriteTransport

pytestmark = pytest.mark.integration

SERVICE = "checkout"
ERROR_RATE = (
    "SELECT percentage(count(*), WHERE error IS true) AS 'value' FROM Transaction "
    "WHERE appName = '{service}' AND tags.version = '{version}' {window}"
)
AT = 1_700_000_000.0


@pytest.fixture
def provider(newrelic_contract: NerdGraphContract) -> NewRelicProvider:
    return NewRelicProvider(
        newrelic_contract.api_key, newrelic_contract.account_id, endpoint=newrelic_contract.url, timeout_s=5
    )


def test_pair_sends_documented_request_and_reads_aliased_values(
    newrelic_contract: NerdGraphContract, provider: NewRelicProvider
) -> None:
    newrelic_contract.script("tags.version = 'v1'", results=[{"value": 1.25}])
    newrelic_contract.script("tags.version = 'v2'", results=[{"value": 7.5}])
    pair = provider.fetch_pair(
        ERROR_RATE, service=SERVICE, baseline_version="v1", canary_version="v2", window_s=300, at=AT
    )
    assert isinstance(pair.baseline, Value) and pair.baseline.value == 1.25
    assert isinstance(pair.canary, Value) and pair.canary.value == 7.5
    assert len(newrelic_contract.requests) == 2
    for req, version in zip(newrelic_contract.requests, ("v1", "v2"), strict=True):
        assert req.method == "POST" and req.path == "/graphql"
        assert req.headers["api-key"] == newrelic_contract.api_key
        assert req.headers["content-type"] == "application/json"
        body = req.json()
        assert set(body) == {"query", "variables"}
        variables = body["variables"]
        assert variables["accountId"] == newrelic_contract.account_id
        # Same absolute interval for both sides, in epoch milliseconds.
        assert variables["nrql"].endswith("SINCE 1699999700000 UNTIL 1700000000000")
        assert f"tags.version = '{version}'" in variables["nrql"]
        assert variables["nrql"] not in body["query"]  # NRQL travels only as a variable
        assert isinstance(variables["timeout"], int) and variables["timeout"] >= 1


def test_single_unaliased_column_and_percentile_objects(
    newrelic_contract: NerdGraphContract, provider: NewRelicProvider
) -> None:
    newrelic_contract.script("average(duration)", results=[{"average.duration": 0.182}])
    newrelic_contract.script("percentile(duration, 95)", results=[{"percentile.duration": {"95": 0.41}}])
    newrelic_contract.script("count(*)", results=[{"count": 0}])
    tpl = "SELECT {fn} FROM Transaction WHERE appName = '{service}' AND tags.version = '{version}' {window}"
    avg = provider.query(tpl.replace("{fn}", "average(duration)"), service=SERVICE, version="v1", window_s=60)
    p95 = provider.query(
        tpl.replace("{fn}", "percentile(duration, 95)"), service=SERVICE, version="v1", window_s=60
    )
    count = provider.query(tpl.replace("{fn}", "count(*)"), service=SERVICE, version="v1", window_s=60)
    assert isinstance(avg, Value) and avg.value == 0.182
    assert isinstance(p95, Value) and p95.value == 0.41
    assert isinstance(count, Value) and count.value == 0.0  # zero events is a real zero, not NoData


def test_empty_results_and_null_values_are_nodata(
    newrelic_contract: NerdGraphContract, provider: NewRelicProvider
) -> None:
    newrelic_contract.script("'v1'", results=[])
    newrelic_contract.script("'v2'", results=[{"value": None}])
    pair = provider.fetch_pair(
        ERROR_RATE, service=SERVICE, baseline_version="v1", canary_version="v2", window_s=60, at=AT
    )
    assert isinstance(pair.baseline, NoData) and pair.baseline.reason == "no rows"
    assert isinstance(pair.canary, NoData) and "null" in pair.canary.reason


def test_timeseries_becomes_a_series_at_bucket_ends(
    newrelic_contract: NerdGraphContract, provider: NewRelicProvider
) -> None:
    rows: list[dict[str, Any]] = [
        {"beginTimeSeconds": 1699999940, "endTimeSeconds": 1699999960, "value": 1.0},
        {"beginTimeSeconds": 1699999960, "endTimeSeconds": 1699999980, "value": None},
        {"beginTimeSeconds": 1699999980, "endTimeSeconds": 1700000000, "value": 3.0},
    ]
    newrelic_contract.script("TIMESERIES 20 seconds", results=rows)
    s = provider.query_range(ERROR_RATE, service=SERVICE, version="v2", start=AT - 60, end=AT, step=20)
    assert isinstance(s, Series)
    assert [(p.t, p.value) for p in s.points] == [(1699999960.0, 1.0), (1700000000.0, 3.0)]
    nrql = newrelic_contract.requests[-1].json()["variables"]["nrql"]
    assert nrql.endswith("SINCE 1699999940000 UNTIL 1700000000000 TIMESERIES 20 seconds")
    with pytest.raises(TemplateError, match="TIMESERIES"):
        provider.query_range(
            ERROR_RATE + " TIMESERIES", service=SERVICE, version="v2", start=AT - 60, end=AT, step=20
        )


def test_facets_are_ambiguous_unless_aggregated(
    newrelic_contract: NerdGraphContract, provider: NewRelicProvider
) -> None:
    newrelic_contract.script(
        "FACET host",
        results=[{"facet": "a", "host": "a", "value": 2.0}, {"facet": "b", "host": "b", "value": 4.0}],
    )
    tpl = ERROR_RATE + " FACET host"
    with pytest.raises(ProviderError) as exc:
        provider.query(tpl, service=SERVICE, version="v1", window_s=60)
    assert exc.value.kind is ErrorKind.AMBIGUOUS
    mean = provider.query(tpl, service=SERVICE, version="v1", window_s=60, aggregate=Aggregation.MEAN)
    assert isinstance(mean, Value) and mean.value == 3.0


def test_graphql_errors_at_http_200_are_provider_errors(
    newrelic_contract: NerdGraphContract, provider: NewRelicProvider
) -> None:
    # The contract server answers malformed NRQL like NerdGraph: 200 + errors, null nrql.
    with pytest.raises(ProviderError) as exc:
        provider.query(
            "SELEC count(*) FROM Transaction WHERE appName = '{service}' AND v = '{version}' {window}",
            service=SERVICE,
            version="v1",
            window_s=60,
        )
    assert exc.value.status == 200 and exc.value.kind is ErrorKind.BAD_QUERY
    assert "NRQL Syntax Error" in exc.value.message and exc.value.error_type == "INVALID_INPUT"

    newrelic_contract.graphql_error_next("NRQL query timed out", "TIMEOUT")
    with pytest.raises(ProviderError) as exc:
        provider.query(ERROR_RATE, service=SERVICE, version="v1", window_s=60)
    assert exc.value.kind is ErrorKind.TIMEOUT


def test_inaccessible_account_is_auth_error(newrelic_contract: NerdGraphContract) -> None:
    other = NewRelicProvider(newrelic_contract.api_key, 999, endpoint=newrelic_contract.url)
    with pytest.raises(ProviderError) as exc:
        other.query(ERROR_RATE, service=SERVICE, version="v1", window_s=60)
    assert exc.value.kind is ErrorKind.AUTH and "999" in exc.value.message
    other.close()


def test_wrong_key_401_is_auth_error_and_key_is_never_shown(
    newrelic_contract: NerdGraphContract, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "NRAK-WRONGKEYWRONGKEYWRONGKEY00"
    bad = NewRelicProvider(secret, newrelic_contract.account_id, endpoint=newrelic_contract.url)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProviderError) as exc:
        bad.query(ERROR_RATE, service=SERVICE, version="v1", window_s=60)
    assert exc.value.status == 401 and exc.value.kind is ErrorKind.AUTH
    assert "Invalid API key" in str(exc.value)
    for text in (str(exc.value), repr(exc.value), repr(bad), caplog.text):
        assert secret not in text
    assert "***" in repr(bad)
    bad.close()


def test_server_echoing_the_key_is_redacted(
    newrelic_contract: NerdGraphContract, provider: NewRelicProvider
) -> None:
    newrelic_contract.fail_next(
        403, {"errors": [{"message": f"key {newrelic_contract.api_key} lacks access"}]}
    )
    with pytest.raises(ProviderError) as exc:
        provider.query(ERROR_RATE, service=SERVICE, version="v1", window_s=60)
    assert exc.value.kind is ErrorKind.AUTH
    assert newrelic_contract.api_key not in str(exc.value) and "***" in str(exc.value)


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_are_unavailable(
    newrelic_contract: NerdGraphContract, provider: NewRelicProvider, status: int
) -> None:
    newrelic_contract.fail_next(status, b"<html>Bad Gateway</html>")
    with pytest.raises(ProviderError) as exc:
        provider.query(ERROR_RATE, service=SERVICE, version="v1", window_s=60)
    assert exc.value.status == status and exc.value.kind is ErrorKind.UNAVAILABLE


def test_injection_is_refused_before_any_request(
    newrelic_contract: NerdGraphContract, provider: NewRelicProvider
) -> None:
    for bad in ["v1' OR appName LIKE '%", "v1\\'", "v1 "]:
        with pytest.raises(TemplateError):
            provider.query(ERROR_RATE, service=SERVICE, version=bad, window_s=60)
    with pytest.raises(TemplateError, match="inside a string literal"):
        provider.query(
            "SELECT count(*) FROM T WHERE v = {version} {window}", service=SERVICE, version="v1", window_s=60
        )
    assert newrelic_contract.requests == []


@pytest.mark.parametrize(
    ("region", "expected"), [("US", NERDGRAPH_US), ("EU", NERDGRAPH_EU), ("eu", NERDGRAPH_EU)]
)
def test_region_selects_documented_endpoint(
    newrelic_contract: NerdGraphContract,
    newrelic_rewrite_transport: RewriteTransport,
    region: str,
    expected: str,
) -> None:
    transport = newrelic_rewrite_transport
    newrelic_contract.script("'v1'", results=[{"value": 1.0}])
    with httpx.Client(transport=transport) as client:
        p = make_provider(
            "newrelic",
            api_key=newrelic_contract.api_key,
            account_id=newrelic_contract.account_id,
            region=region,
            client=client,
        )
        assert isinstance(p, MetricProvider)
        assert isinstance(p.query(ERROR_RATE, service=SERVICE, version="v1", window_s=60), Value)
        p.close()
        assert not client.is_closed  # an injected client belongs to the caller
    assert transport.original_urls == [expected]


def test_plain_http_endpoint_refused_for_remote_hosts(newrelic_contract: NerdGraphContract) -> None:
    with pytest.raises(ValueError, match="https"):
        NewRelicProvider("NRAK-x", 1, endpoint="http://api.newrelic.com/graphql")
    NewRelicProvider("NRAK-x", 1, endpoint=newrelic_contract.url).close()  # loopback is fine


def test_facet_sum_includes_other_result(
    newrelic_contract: NerdGraphContract, provider: NewRelicProvider
) -> None:
    """Issue 11: the facets past the FACET LIMIT come back in ``otherResult``; a SUM over facets
    that ignores them under-counts."""
    newrelic_contract.script(
        "FACET host LIMIT 2",
        results=[{"facet": "a", "host": "a", "count": 100}, {"facet": "b", "host": "b", "count": 50}],
        other={"count": 30},
    )
    tpl = ERROR_RATE.replace("AS 'value'", "") + " FACET host LIMIT 2"
    total = provider.query(tpl, service=SERVICE, version="v1", window_s=60, aggregate=Aggregation.SUM)
    assert isinstance(total, Value) and total.value == 180.0
    assert "otherResult" in newrelic_contract.requests[-1].json()["query"]
    assert newrelic_contract.violations == []
