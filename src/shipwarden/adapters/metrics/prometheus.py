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
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import httpx

from shipwarden.adapters.metrics.base import (
    Aggregation,
    ErrorKind,
    Measurement,
    NoData,
    Point,
    ProviderError,
    RangeMeasurement,
    Series,
    Value,
    aggregate_values,
)
from shipwarden.adapters.metrics.http_provider import HttpProvider

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


def _window(seconds: float) -> str:
    """:func:`promql_duration`, an unusable window being a ``BAD_TEMPLATE`` error."""
    try:
        return promql_duration(seconds)
    except ValueError as exc:
        raise _err(str(exc), ErrorKind.BAD_TEMPLATE) from None


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


class PrometheusProvider(HttpProvider):
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
    quotes: ClassVar[str] = "\"'`"  # PromQL strings: double, single and back-tick (raw) quotes

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
        super().__init__(client=client, timeout_s=timeout_s)
        self.base_url = base_url.rstrip("/")
        self.force_post = force_post
        self._headers: dict[str, str] = {"Accept": "application/json"}
        self._auth: httpx.Auth | None = None
        if bearer_token:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
        elif basic_auth:
            self._auth = httpx.BasicAuth(*basic_auth)

    def __repr__(self) -> str:
        auth = "bearer" if "Authorization" in self._headers else "basic" if self._auth else "none"
        return f"PrometheusProvider(base_url={self.base_url!r}, auth={auth})"

    # -- rendering ---------------------------------------------------------------

    def render(self, template: str, *, service: str, version: str, window_s: float) -> str:
        """The PromQL a template becomes; exposed so operators can see exactly what runs."""
        return self.render_query(template, service=service, version=version, window=_window(window_s))

    def instant_window(self, window_s: float, *, at: float) -> str:
        """The look-back as a PromQL duration; the instant itself travels as the ``time`` parameter."""
        return _window(window_s)

    def range_window(
        self, template: str, *, start: float, end: float, step: float, window_s: float | None
    ) -> str:
        """A PromQL duration, ``step`` unless ``window_s`` is given, so each point covers one step."""
        if step <= 0 or end < start:
            raise _err("need step > 0 and end >= start", ErrorKind.BAD_TEMPLATE)
        return _window(step if window_s is None else window_s)

    # -- HTTP --------------------------------------------------------------------

    def _call(self, path: str, params: dict[str, str], query: str) -> tuple[int, bytes]:
        # Server-side timeout slightly below ours so Prometheus reports the timeout itself.
        params["timeout"] = promql_duration(max(self.timeout_s * 0.9, 0.001))
        encoded_len = len(str(httpx.QueryParams(params)))
        post = self.force_post or encoded_len > _POST_THRESHOLD
        resp = self._send(
            "POST" if post else "GET",
            f"{self.base_url}{path}",
            query=query,
            timeout=self.timeout_s,
            where=self.base_url,
            headers=self._headers,
            auth=self._auth or httpx.USE_CLIENT_DEFAULT,
            **({"data": params} if post else {"params": params}),
        )
        return resp.status_code, resp.content

    def run_instant(self, text: str, *, at: float, aggregate: Aggregation | None) -> Measurement:
        """``/api/v1/query`` at ``at``; see the module doc for the mapping."""
        status, body = self._call("/api/v1/query", {"query": text, "time": f"{at:.3f}"}, text)
        return parse_instant(status, body, query=text, at=at, aggregate=aggregate)

    def run_range(
        self, text: str, *, start: float, end: float, step: float, aggregate: Aggregation | None
    ) -> RangeMeasurement:
        """``/api/v1/query_range`` from ``start`` to ``end`` every ``step`` seconds."""
        params = {"query": text, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        status, body = self._call("/api/v1/query_range", params, text)
        return parse_range(status, body, query=text, at=end, aggregate=aggregate)
