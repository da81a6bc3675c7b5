"""NerdGraph answer parsing and New Relic provider construction (no network)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shipwarden.adapters.metrics.base import Aggregation, ErrorKind, NoData, ProviderError, Series, Value
from shipwarden.adapters.metrics.newrelic import (
    NERDGRAPH_EU,
    NERDGRAPH_US,
    NRQL_DOCUMENT,
    NewRelicProvider,
    nrql_since_until,
    parse_nerdgraph,
    rows_to_measurement,
    rows_to_series,
)


def answer(results: Any) -> bytes:
    return json.dumps({"data": {"actor": {"account": {"nrql": {"results": results}}}}}).encode()


def test_documented_answer_shape() -> None:
    assert parse_nerdgraph(200, answer([{"count": 1000}]), query="q") == [{"count": 1000}]


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, {"data": None, "errors": [{"message": "NRQL Syntax Error"}]}, ErrorKind.BAD_QUERY),
        (200, {"errors": [{"message": "slow", "extensions": {"errorClass": "TIMEOUT"}}]}, ErrorKind.TIMEOUT),
        (
            200,
            {"errors": [{"message": "x", "extensions": {"errorClass": "SERVER_ERROR"}}]},
            ErrorKind.UNAVAILABLE,
        ),
        (200, {"errors": [{"message": "no", "extensions": {"errorClass": "FORBIDDEN"}}]}, ErrorKind.AUTH),
        (200, {"data": {"actor": {"account": None}}}, ErrorKind.AUTH),
        (200, {"data": {"actor": {"account": {"nrql": None}}}}, ErrorKind.PROTOCOL),
        (200, {"data": {}}, ErrorKind.PROTOCOL),
        (401, {"errors": [{"message": "Invalid API key"}]}, ErrorKind.AUTH),
        (403, {"errors": [{"message": "Forbidden"}]}, ErrorKind.AUTH),
        (429, {"errors": [{"message": "Too many requests"}]}, ErrorKind.UNAVAILABLE),
        (500, {"errors": [{"message": "Internal"}]}, ErrorKind.UNAVAILABLE),
        (404, {}, ErrorKind.HTTP),
    ],
)
def test_errors_never_become_values(status: int, body: Any, kind: ErrorKind) -> None:
    with pytest.raises(ProviderError) as exc:
        parse_nerdgraph(status, json.dumps(body).encode(), query="q")
    assert exc.value.kind is kind and exc.value.status == status


def test_errors_win_over_partial_data() -> None:
    body = {
        "data": {"actor": {"account": {"nrql": {"results": [{"count": 5}]}}}},
        "errors": [{"message": "partial"}],
    }
    with pytest.raises(ProviderError, match="partial"):
        parse_nerdgraph(200, json.dumps(body).encode(), query="q")


def test_non_json_gateway_page() -> None:
    with pytest.raises(ProviderError) as exc:
        parse_nerdgraph(502, b"<html>Bad Gateway</html>", query="q")
    assert exc.value.kind is ErrorKind.UNAVAILABLE and "Bad Gateway" in exc.value.message


def measure(rows: list[dict[str, Any]], aggregate: Aggregation | None = None) -> Any:
    return rows_to_measurement(rows, query="q", at=10.0, aggregate=aggregate)


def test_value_column_choice() -> None:
    assert measure([{"value": 2, "count": 9}]) == Value(2.0, at=10.0, query="q")
    assert measure([{"average.duration": 0.5}]) == Value(0.5, at=10.0, query="q")
    assert measure([{"percentile.duration": {"95": 0.7}}]) == Value(0.7, at=10.0, query="q")
    with pytest.raises(ProviderError) as exc:
        measure([{"count": 1, "average.duration": 0.2}])
    assert exc.value.kind is ErrorKind.AMBIGUOUS and "AS 'value'" in exc.value.message
    with pytest.raises(ProviderError) as exc:
        measure([{"percentiles": {"50": 0.1, "95": 0.2}}])
    assert exc.value.kind is ErrorKind.AMBIGUOUS


def test_nodata_cases() -> None:
    assert isinstance(measure([]), NoData)
    assert isinstance(measure([{"average.duration": None}]), NoData)
    assert isinstance(measure([{"p": {"95": None}}]), NoData)


def test_facets() -> None:
    rows: list[dict[str, Any]] = [
        {"facet": "a", "host": "a", "value": 1.0},
        {"facet": "b", "host": "b", "value": None},
    ]
    with pytest.raises(ProviderError):
        measure(rows)
    assert measure(rows, Aggregation.SUM) == Value(1.0, at=10.0, query="q")
    single = measure(rows[:1])
    assert isinstance(single, Value) and single.labels == {"facet": "a"}


def test_timeseries_rows_in_instant_query_are_refused() -> None:
    with pytest.raises(ProviderError, match="query_range"):
        measure([{"beginTimeSeconds": 0, "endTimeSeconds": 60, "count": 1}])


def test_faceted_timeseries_fold_per_bucket() -> None:
    rows = [
        {"facet": "a", "beginTimeSeconds": 0, "endTimeSeconds": 60, "value": 1.0},
        {"facet": "b", "beginTimeSeconds": 0, "endTimeSeconds": 60, "value": 3.0},
        {"facet": "a", "beginTimeSeconds": 60, "endTimeSeconds": 120, "value": None},
        {"facet": "b", "beginTimeSeconds": 60, "endTimeSeconds": 120, "value": 5.0},
    ]
    with pytest.raises(ProviderError):
        rows_to_series(rows, query="q", at=120, aggregate=None)
    s = rows_to_series(rows, query="q", at=120, aggregate=Aggregation.MEAN)
    assert isinstance(s, Series) and [tuple(p) for p in s.points] == [(60.0, 2.0), (120.0, 5.0)]
    all_null = [{"beginTimeSeconds": 0, "endTimeSeconds": 60, "value": None}]
    assert isinstance(rows_to_series(all_null, query="q", at=60, aggregate=None), NoData)


def test_since_until_is_epoch_milliseconds() -> None:
    assert nrql_since_until(1700000000.0, 1700000030.5) == "SINCE 1700000000000 UNTIL 1700000030500"
    with pytest.raises(ValueError):
        nrql_since_until(10, 10)


def test_document_passes_nrql_as_a_typed_variable() -> None:
    assert "$nrql: Nrql!" in NRQL_DOCUMENT and "$accountId: Int!" in NRQL_DOCUMENT
    assert "nrql(query: $nrql" in NRQL_DOCUMENT and "{ results otherResult }" in NRQL_DOCUMENT


def test_construction_defaults_and_validation() -> None:
    with NewRelicProvider("NRAK-SECRET", 42) as us, NewRelicProvider("NRAK-SECRET", 42, region="EU") as eu:
        assert us.endpoint == NERDGRAPH_US and eu.endpoint == NERDGRAPH_EU
        assert "NRAK-SECRET" not in repr(us) and "***" in repr(us)
    for kwargs in (
        {"api_key": "", "account_id": 1},
        {"api_key": "k", "account_id": 0},
        {"api_key": "k", "account_id": True},
        {"api_key": "k", "account_id": 1, "region": "APAC"},
        {"api_key": "k", "account_id": 1, "endpoint": "http://10.0.0.1/graphql"},
        {"api_key": "k", "account_id": 1, "timeout_s": 0},
    ):
        with pytest.raises(ValueError):
            NewRelicProvider(**kwargs)  # type: ignore[arg-type]


class TestFacetTimeseries:
    """Issue 11: FACET … TIMESERIES rows that share a bucket kept only the first row's value."""

    def test_rows_of_one_bucket_without_a_facet_key_are_all_counted(self) -> None:
        # NerdGraph writes the FACET attribute under its own name; these rows carry no "facet"
        rows = [
            {"beginTimeSeconds": 0, "endTimeSeconds": 60, "appName": "web", "count": 100},
            {"beginTimeSeconds": 0, "endTimeSeconds": 60, "appName": "api", "count": 50},
        ]
        with pytest.raises(ProviderError) as exc:
            rows_to_series(rows, query="q", at=60, aggregate=None)
        assert exc.value.kind is ErrorKind.AMBIGUOUS
        s = rows_to_series(rows, query="q", at=60, aggregate=Aggregation.SUM)
        assert isinstance(s, Series) and [(p.t, p.value) for p in s.points] == [(60.0, 150.0)]

    def test_indistinguishable_rows_of_one_bucket_are_still_two_values(self) -> None:
        rows = [
            {"beginTimeSeconds": 0, "endTimeSeconds": 60, "count": 100},
            {"beginTimeSeconds": 0, "endTimeSeconds": 60, "count": 50},
        ]
        s = rows_to_series(rows, query="q", at=60, aggregate=Aggregation.SUM)
        assert isinstance(s, Series) and s.points[0].value == 150.0

    def test_other_result_counts_in_a_facet_sum(self) -> None:
        rows = [{"facet": "web", "count": 100}, {"facet": "api", "count": 50}]
        v = rows_to_measurement(rows, query="q", at=1.0, aggregate=Aggregation.SUM, other=[{"count": 25}])
        assert isinstance(v, Value) and v.value == 175.0
        mean = rows_to_measurement(rows, query="q", at=1.0, aggregate=Aggregation.MEAN, other=[{"count": 25}])
        assert isinstance(mean, Value) and mean.value == 75.0

    def test_other_result_buckets_count_in_a_facet_timeseries_sum(self) -> None:
        rows = [
            {"beginTimeSeconds": 0, "endTimeSeconds": 60, "facet": "web", "count": 100},
            {"beginTimeSeconds": 0, "endTimeSeconds": 60, "facet": "api", "count": 50},
        ]
        other = [{"beginTimeSeconds": 0, "endTimeSeconds": 60, "count": 7}]
        s = rows_to_series(rows, query="q", at=60, aggregate=Aggregation.SUM, other=other)
        assert isinstance(s, Series) and s.points[0].value == 157.0
