"""Prometheus answer parsing on the documented envelope shapes (docs/querying/api.md).

The real server is exercised in tests/integration; here the pure parsers get
the shapes that are awkward to provoke from a real server (proxies' HTML
errors, warnings, several series in a range) so every branch is pinned.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

from shipwarden.adapters.metrics.base import Aggregation, ErrorKind, NoData, ProviderError, Series, Value
from shipwarden.adapters.metrics.prometheus import (
    PrometheusProvider,
    parse_instant,
    parse_range,
    promql_duration,
)


def ok(result_type: str, result: Any, **extra: Any) -> bytes:
    return json.dumps(
        {"status": "success", "data": {"resultType": result_type, "result": result}, **extra}
    ).encode()


def instant(body: bytes, status: int = 200, aggregate: Aggregation | None = None) -> Any:
    return parse_instant(status, body, query="q", at=100.0, aggregate=aggregate)


def test_vector_value_is_parsed_from_its_string() -> None:
    m = instant(
        ok(
            "vector",
            [{"metric": {"version": "v2"}, "value": [1435781451.781, "0.125"]}],
            warnings=["partial"],
        )
    )
    assert m == Value(0.125, at=1435781451.781, labels={"version": "v2"}, query="q", warnings=("partial",))


@pytest.mark.parametrize(("raw", "expected"), [("+Inf", math.inf), ("-Inf", -math.inf), ("0", 0.0)])
def test_infinities_and_zero_are_values(raw: str, expected: float) -> None:
    m = instant(ok("vector", [{"metric": {}, "value": [1, raw]}]))
    assert isinstance(m, Value) and m.value == expected


def test_nan_and_empty_are_nodata_not_zero() -> None:
    assert isinstance(instant(ok("vector", [{"metric": {}, "value": [1, "NaN"]}])), NoData)
    assert isinstance(instant(ok("scalar", [1, "NaN"])), NoData)
    empty = instant(ok("vector", []))
    assert isinstance(empty, NoData) and empty.at == 100.0


def test_scalar_and_refused_result_types() -> None:
    assert instant(ok("scalar", [5, "2.5"])) == Value(2.5, at=5, query="q")
    for rtype, result in (("matrix", []), ("string", [1, "foo"])):
        with pytest.raises(ProviderError) as exc:
            instant(ok(rtype, result))
        assert exc.value.kind is ErrorKind.BAD_QUERY


def test_several_series_need_an_aggregation() -> None:
    body = ok(
        "vector",
        [{"metric": {"code": c}, "value": [1, v]} for c, v in (("200", "3"), ("500", "1"), ("502", "NaN"))],
    )
    with pytest.raises(ProviderError) as exc:
        instant(body)
    assert exc.value.kind is ErrorKind.AMBIGUOUS and "3 series" in exc.value.message
    summed = instant(body, aggregate=Aggregation.SUM)
    assert isinstance(summed, Value) and summed.value == 4.0 and summed.labels == {}


@pytest.mark.parametrize(
    ("status", "error_type", "kind"),
    [
        (400, "bad_data", ErrorKind.BAD_QUERY),
        (422, "execution", ErrorKind.EXECUTION),
        (503, "timeout", ErrorKind.TIMEOUT),
        (503, "canceled", ErrorKind.UNAVAILABLE),
        (500, "internal", ErrorKind.UNAVAILABLE),
    ],
)
def test_documented_error_envelopes(status: int, error_type: str, kind: ErrorKind) -> None:
    body = json.dumps({"status": "error", "errorType": error_type, "error": "boom"}).encode()
    with pytest.raises(ProviderError) as exc:
        instant(body, status)
    assert (exc.value.status, exc.value.error_type, exc.value.kind, exc.value.message) == (
        status,
        error_type,
        kind,
        "boom",
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [(502, ErrorKind.UNAVAILABLE), (401, ErrorKind.AUTH), (403, ErrorKind.AUTH), (404, ErrorKind.HTTP)],
)
def test_non_json_errors_from_proxies(status: int, kind: ErrorKind) -> None:
    with pytest.raises(ProviderError) as exc:
        instant(b"<html><body>Bad Gateway</body></html>", status)
    assert exc.value.kind is kind and "Bad Gateway" in exc.value.message


@pytest.mark.parametrize(
    "body", [b"not json", b"{}", b'{"status":"success"}', b'{"status":"success","data":{}}']
)
def test_200_that_breaks_the_envelope_is_protocol_error(body: bytes) -> None:
    with pytest.raises(ProviderError) as exc:
        instant(body)
    assert exc.value.kind is ErrorKind.PROTOCOL


def test_malformed_sample_is_protocol_error() -> None:
    with pytest.raises(ProviderError) as exc:
        instant(ok("vector", [{"metric": {}, "value": [1]}]))
    assert exc.value.kind is ErrorKind.PROTOCOL


def test_range_drops_nan_points_and_folds_series_on_request() -> None:
    one = ok("matrix", [{"metric": {"v": "2"}, "values": [[1, "1"], [2, "NaN"], [3, "3"]]}])
    s = parse_range(200, one, query="q", at=3)
    assert isinstance(s, Series) and [tuple(p) for p in s.points] == [(1, 1.0), (3, 3.0)]
    assert s.labels == {"v": "2"}
    two = ok(
        "matrix",
        [
            {"metric": {"a": "1"}, "values": [[1, "1"], [2, "2"]]},
            {"metric": {"a": "2"}, "values": [[1, "10"], [2, "NaN"]]},
        ],
    )
    with pytest.raises(ProviderError) as exc:
        parse_range(200, two, query="q", at=2)
    assert exc.value.kind is ErrorKind.AMBIGUOUS
    folded = parse_range(200, two, query="q", at=2, aggregate=Aggregation.MAX)
    assert isinstance(folded, Series) and folded.values() == [10.0, 2.0]
    assert isinstance(parse_range(200, ok("matrix", []), query="q", at=2), NoData)
    only_nan = ok("matrix", [{"metric": {}, "values": [[1, "NaN"]]}])
    assert isinstance(parse_range(200, only_nan, query="q", at=2), NoData)


@pytest.mark.parametrize(
    ("seconds", "rendered"), [(30, "30s"), (300.0, "300s"), (1.5, "1500ms"), (0.001, "1ms")]
)
def test_promql_durations(seconds: float, rendered: str) -> None:
    assert promql_duration(seconds) == rendered


@pytest.mark.parametrize("seconds", [0, -1, math.nan, math.inf, 0.0001])
def test_bad_windows_are_refused(seconds: float) -> None:
    with pytest.raises(ValueError):
        promql_duration(seconds)


def test_auth_headers_are_sent_and_hidden() -> None:
    """Request construction only: the transport records what would go on the wire."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=ok("scalar", [1, "1"]))

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        bearer = PrometheusProvider("http://prom:9090/prefix/", client=client, bearer_token="tok-123")
        basic = PrometheusProvider("http://prom:9090", client=client, basic_auth=("u", "pw-456"))
        bearer.query("1", service="s", version="v", window_s=30, at=10)
        basic.query("1", service="s", version="v", window_s=30, at=10)
    assert seen[0].headers["authorization"] == "Bearer tok-123"
    assert seen[0].url.path == "/prefix/api/v1/query"
    assert seen[0].url.params["time"] == "10.000" and seen[0].url.params["timeout"] == "9s"
    assert seen[1].headers["authorization"].startswith("Basic ")
    assert "tok-123" not in repr(bearer) and "pw-456" not in repr(basic)
    with pytest.raises(ValueError):
        PrometheusProvider("http://prom", bearer_token="a", basic_auth=("u", "p"))
