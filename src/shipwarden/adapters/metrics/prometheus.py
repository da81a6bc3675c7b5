"""Prometheus metric provider over the HTTP API (``/api/v1/query``, ``/api/v1/query_range``).

Contract followed (prometheus ``docs/querying/api.md``):

* ``GET`` with URL parameters, or ``POST`` with the same fields form-encoded
  (used automatically when the query is long, so proxies' URL limits never
  truncate a query);
* envelope ``{"status": "success"|"error", "data": {"resultType", "result"},
  "errorType", "error", "warnings", "infos"}``; sample values are strings
  (``"NaN"``, ``"+Inf"``) parsed with :func:`float`;
* 400 bad parameters / unparsable query, 422 expression cannot be executed,
  503 timeout or abort; other non-2xx may come from proxies without JSON.

Window rendering: ``{window}`` becomes a Prometheus duration -- ``30s``, or
``1500ms`` when the window is not a whole number of seconds -- for use in a
range selector, e.g.::

    sum(rate(http_requests_total{service="{service}",version="{version}",code=~"5.."}[{window}]))
      / sum(rate(http_requests_total{service="{service}",version="{version}"}[{window}]))

Mapping: empty vector -> :class:`NoData`; ``NaN`` (e.g. ``0/0`` with no
traffic) -> :class:`NoData`; ``±Inf`` -> a :class:`Value` (a real answer);
several series -> ``AMBIGUOUS`` error unless ``aggregate`` is given.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import httpx

from shipwarden.adapters.metrics.base import (
    Aggregation,
    ErrorKind,
    Measurement,
    MeasurementPair,
    NoData,
    Point,
    ProviderError,
    RangeMeasurement,
    Series,
    Value,
    aggregate_values,
    fetch_pair,
    render_template,
)

__all__ = ["PrometheusProvider", "parse_instant", "parse_range", "promql_duration"]

_KIND = "prometheus"
# Above this many URL-encoded characters the query goes in a POST body: many
# proxies cap request lines around 4-8 KiB.
_POST_THRESHOLD = 2000
_STATUS_KIND: Mapping[int, ErrorKind] = {
    400: ErrorKind.BAD_QUERY,
    401: ErrorKind.AUTH,
    403: ErrorKind.AUTH,
    422: ErrorKind.EXECUTION,
    429: ErrorKind.UNAVAILABLE,
    503: ErrorKind.UNAVAILABLE,
}
_ERROR_TYPE_KIND: Mapping[str, ErrorKind] = {
    "bad_data": ErrorKind.BAD_QUERY,
    "execution": ErrorKind.EXECUTION,
    "timeout": ErrorKind.TIMEOUT,
    "canceled": ErrorKind.UNAVAILABLE,
    "unavailable": ErrorKind.UNAVAILABLE,
    "internal": ErrorKind.UNAVAILABLE,
    "not_found": ErrorKind.BAD_QUERY,
}


def promql_duration(seconds: float) -> str:
    """Render a positive number of seconds as a PromQL duration (``30s``, ``1500ms``)."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"window must be a positive number of seconds, got {seconds!r}")
    ms = round(seconds * 1000)
    if ms < 1:
        raise ValueError(f"window {seconds!r}s is below Prometheus' 1ms resolution")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _err(message: str, kind: ErrorKind, **kw: Any) -> ProviderError:
    return ProviderError(message, kind=kind, provider=_KIND, **kw)


def _envelope(status: int, body: bytes, query: str) -> dict[str, Any]:
    """Decode and check the API envelope; raise for every documented and undocumented failure."""
    try:
        doc = json.loads(body)
    except ValueError:  # includes UnicodeDecodeError
        doc = None
    if not isinstance(doc, dict) or doc.get("status") not in ("success", "error"):
        if 200 <= status < 300:
            raise _err(
                "response is not a Prometheus API envelope", ErrorKind.PROTOCOL, status=status, query=query
            )
        snippet = body[:200].decode("utf-8", "replace").strip()
        raise _err(
            f"HTTP {status} without a Prometheus error body: {snippet!r}",
            _STATUS_KIND.get(status, ErrorKind.HTTP if status < 500 else ErrorKind.UNAVAILABLE),
            status=status,
            query=query,
        )
    if doc["status"] == "error" or not 200 <= status < 300:
        error_type = str(doc.get("errorType") or "") or None
        kind = _ERROR_TYPE_KIND.get(error_type or "") or _STATUS_KIND.get(status, ErrorKind.HTTP)
        raise _err(
            str(doc.get("error") or "unspecified error"),
            kind,
            status=status,
            error_type=error_type,
            query=query,
        )
    data = doc.get("data")
    if not isinstance(data, dict) or "resultType" not in data or "result" not in data:
        raise _err(
            "success envelope without data.resultType/result", ErrorKind.PROTOCOL, status=status, query=query
        )
    return doc


def _warnings(doc: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(w) for w in doc.get("warnings") or ())


def _sample(pair: Any, query: str) -> Point:
    """A ``[<unix time>, "<value>"]`` pair; values are strings so NaN/Inf survive JSON."""
    try:
        t, v = pair
        return Point(float(t), float(v))
    except (TypeError, ValueError) as exc:
        raise _err(f"malformed sample {pair!r}", ErrorKind.PROTOCOL, query=query) from exc


def _labels(item: Mapping[str, Any]) -> dict[str, str]:
    metric = item.get("metric") or {}
    return {str(k): str(v) for k, v in metric.items()}


def parse_instant(
    status: int, body: bytes, *, query: str, at: float, aggregate: Aggregation | None = None
) -> Measurement:
    """Turn an ``/api/v1/query`` answer into a Value, a NoData or a ProviderError."""
    doc = _envelope(status, body, query)
    warnings = _warnings(doc)
    rtype, result = doc["data"]["resultType"], doc["data"]["result"]
    if rtype == "scalar":
        p = _sample(result, query)
        if math.isnan(p.value):
            return NoData("result is NaN", at=p.t, query=query, warnings=warnings)
        return Value(p.value, at=p.t, query=query, warnings=warnings)
    if rtype == "matrix":
        raise _err(
            "instant query returned a range vector; wrap the selector in a function such as rate()",
            ErrorKind.BAD_QUERY,
            query=query,
        )
    if rtype != "vector":
        raise _err(f"result type {rtype!r} is not a number", ErrorKind.BAD_QUERY, query=query)
    if not isinstance(result, list):
        raise _err("vector result is not a list", ErrorKind.PROTOCOL, query=query)
    if not result:
        return NoData("no series matched", at=at, query=query, warnings=warnings)
    samples = [(_labels(item), _sample(item.get("value"), query)) for item in result]
    if len(samples) > 1 and aggregate is None:
        shown = "; ".join(str(lbl) for lbl, _ in samples[:3]) + ("; ..." if len(samples) > 3 else "")
        raise _err(
            f"{len(samples)} series returned where one was expected ({shown}); "
            "aggregate in the query (sum/avg/max) or pass aggregate=",
            ErrorKind.AMBIGUOUS,
            query=query,
        )
    finite = [(lbl, p) for lbl, p in samples if not math.isnan(p.value)]
    if not finite:
        return NoData("result is NaN", at=samples[0][1].t, query=query, warnings=warnings)
    if len(samples) == 1:
        lbl, p = finite[0]
        return Value(p.value, at=p.t, labels=lbl, query=query, warnings=warnings)
    assert aggregate is not None
    value = aggregate_values([p.value for _, p in finite], aggregate)
    return Value(value, at=finite[0][1].t, query=query, warnings=warnings)


def parse_range(
    status: int, body: bytes, *, query: str, at: float, aggregate: Aggregation | None = None
) -> RangeMeasurement:
    """Turn an ``/api/v1/query_range`` answer (always a matrix) into a Series or NoData.

    NaN points are dropped (they are gaps, not measurements); with
    ``aggregate`` several series are folded point by point on equal
    timestamps, which Prometheus guarantees for one range query.
    """
    doc = _envelope(status, body, query)
    warnings = _warnings(doc)
    rtype, result = doc["data"]["resultType"], doc["data"]["result"]
    if rtype != "matrix" or not isinstance(result, list):
        raise _err(f"range query returned {rtype!r}, expected a matrix", ErrorKind.PROTOCOL, query=query)
    series = [(_labels(item), [_sample(v, query) for v in item.get("values") or ()]) for item in result]
    if len(series) > 1 and aggregate is None:
        raise _err(
            f"{len(series)} series returned where one was expected; "
            "aggregate in the query or pass aggregate=",
            ErrorKind.AMBIGUOUS,
            query=query,
        )
    if len(series) == 1:
        labels, raw = series[0]
    else:
        labels = {}
        by_t: dict[float, list[float]] = {}
        for _, pts in series:
            for p in pts:
                by_t.setdefault(p.t, []).append(p.value)
        raw = [Point(t, _fold(vs, aggregate)) for t, vs in sorted(by_t.items())]
    points = tuple(p for p in raw if not math.isnan(p.value))
    if not points:
        return NoData("no samples in range", at=at, query=query, warnings=warnings)
    return Series(points=points, labels=labels, query=query, warnings=warnings)


def _fold(values: Sequence[float], how: Aggregation | None) -> float:
    finite = [v for v in values if not math.isnan(v)]
    if not finite or how is None:
        return math.nan
    return aggregate_values(finite, how)


class PrometheusProvider:
    """Fetches PromQL results from one Prometheus (or compatible: Thanos, Mimir) endpoint.

    ``base_url`` is the server root (``http://prometheus:9090``; a path prefix
    such as ``/prometheus`` is kept).  ``client`` is injectable so callers can
    share connection pools or add transports; when omitted the provider owns
    one and :meth:`close` closes it.  ``timeout_s`` bounds each HTTP request
    and is also sent as the server-side ``timeout`` so Prometheus gives up
    first and says so.  Auth: ``bearer_token`` or ``basic_auth=(user, pw)``;
    neither appears in ``repr`` or errors.
    """

    kind: ClassVar[str] = _KIND

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.Client | None = None,
        timeout_s: float = 10.0,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        force_post: bool = False,
    ) -> None:
        if bearer_token and basic_auth:
            raise ValueError("give bearer_token or basic_auth, not both")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.force_post = force_post
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client()
        self._headers: dict[str, str] = {"Accept": "application/json"}
        self._auth: httpx.Auth | None = None
        if bearer_token:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
        elif basic_auth:
            self._auth = httpx.BasicAuth(*basic_auth)

    def __repr__(self) -> str:
        auth = "bearer" if "Authorization" in self._headers else "basic" if self._auth else "none"
        return f"PrometheusProvider(base_url={self.base_url!r}, auth={auth})"

    def close(self) -> None:
        """Close the HTTP client if this provider created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> PrometheusProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rendering ---------------------------------------------------------------

    def render(self, template: str, *, service: str, version: str, window_s: float) -> str:
        """The PromQL a template becomes; exposed so operators can see exactly what runs."""
        try:
            window = promql_duration(window_s)
        except ValueError as exc:
            raise ProviderError(str(exc), kind=ErrorKind.BAD_TEMPLATE, provider=_KIND) from None
        return render_template(
            template, service=service, version=version, window=window, quotes="\"'`", provider=_KIND
        )

    # -- HTTP --------------------------------------------------------------------

    def _call(self, path: str, params: dict[str, str], query: str) -> tuple[int, bytes]:
        # Server-side timeout slightly below ours so Prometheus reports the timeout itself.
        params["timeout"] = promql_duration(max(self.timeout_s * 0.9, 0.001))
        url = f"{self.base_url}{path}"
        encoded_len = len(str(httpx.QueryParams(params)))
        try:
            if self.force_post or encoded_len > _POST_THRESHOLD:
                resp = self._client.post(
                    url,
                    data=params,
                    headers=self._headers,
                    auth=self._auth or httpx.USE_CLIENT_DEFAULT,
                    timeout=self.timeout_s,
                )
            else:
                resp = self._client.get(
                    url,
                    params=params,
                    headers=self._headers,
                    auth=self._auth or httpx.USE_CLIENT_DEFAULT,
                    timeout=self.timeout_s,
                )
        except httpx.TimeoutException as exc:
            raise _err(
                f"no answer from {self.base_url} within {self.timeout_s}s ({type(exc).__name__})",
                ErrorKind.TIMEOUT,
                query=query,
            ) from None
        except httpx.TransportError as exc:
            raise _err(f"cannot reach {self.base_url}: {exc}", ErrorKind.CONNECTION, query=query) from None
        return resp.status_code, resp.content

    def query(
        self,
        template: str,
        *,
        service: str,
        version: str,
        window_s: float,
        at: float | None = None,
        aggregate: Aggregation | None = None,
    ) -> Measurement:
        """Instant query at ``at`` (default now) over ``window_s``; see module doc for the mapping."""
        promql = self.render(template, service=service, version=version, window_s=window_s)
        when = time.time() if at is None else at
        status, body = self._call("/api/v1/query", {"query": promql, "time": f"{when:.3f}"}, promql)
        return parse_instant(status, body, query=promql, at=when, aggregate=aggregate)

    def query_range(
        self,
        template: str,
        *,
        service: str,
        version: str,
        start: float,
        end: float,
        step: float,
        window_s: float | None = None,
        aggregate: Aggregation | None = None,
    ) -> RangeMeasurement:
        """Range query from ``start`` to ``end`` every ``step`` s; ``{window}`` defaults to ``step``."""
        if step <= 0 or end < start:
            raise ProviderError("need step > 0 and end >= start", kind=ErrorKind.BAD_TEMPLATE, provider=_KIND)
        promql = self.render(
            template, service=service, version=version, window_s=step if window_s is None else window_s
        )
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        status, body = self._call("/api/v1/query_range", params, promql)
        return parse_range(status, body, query=promql, at=end, aggregate=aggregate)

    def fetch_pair(
        self,
        template: str,
        *,
        service: str,
        baseline_version: str,
        canary_version: str,
        window_s: float,
        at: float | None = None,
        aggregate: Aggregation | None = None,
    ) -> MeasurementPair:
        """Baseline and canary at the same instant; see :func:`base.fetch_pair`."""
        return fetch_pair(
            self,
            template,
            service=service,
            baseline_version=baseline_version,
            canary_version=canary_version,
            window_s=window_s,
            at=at,
            aggregate=aggregate,
        )
