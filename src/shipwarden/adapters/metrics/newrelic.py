"""New Relic metric provider: NRQL over NerdGraph (``POST /graphql``).

Contract followed (docs.newrelic.com NerdGraph NRQL tutorial):

* ``POST https://api.newrelic.com/graphql`` (US) or
  ``https://api.eu.newrelic.com/graphql`` (EU) with headers ``API-Key`` (a
  user key, ``NRAK-...``) and ``Content-Type: application/json``;
* body ``{"query": <GraphQL document>, "variables": {...}}``.  The NRQL is
  passed as the ``$nrql: Nrql!`` variable, never spliced into the GraphQL
  text, so no NRQL content can alter the GraphQL document;
* answer ``{"data": {"actor": {"account": {"nrql": {"results": [...], "otherResult": ...}}}}}``:
  ``results`` is a list of flat rows keyed by the NRQL (``count``,
  ``average.duration``, ``AS`` aliases, ``facet``, and
  ``beginTimeSeconds``/``endTimeSeconds`` for ``TIMESERIES``);
* errors follow the GraphQL convention: often HTTP 200 with an ``errors``
  list (and null ``data`` fields); auth and server failures may also come as
  HTTP 401/403/5xx.  Both are :class:`ProviderError`, never a value.

Window rendering: ``{window}`` becomes ``SINCE <start ms> UNTIL <end ms>``
(Unix epoch milliseconds, which NRQL accepts), ending at ``at``; so baseline
and canary cover exactly the same interval.  In :meth:`query_range` it
becomes ``SINCE <start> UNTIL <end> TIMESERIES <step> seconds`` -- the
template must then not contain ``TIMESERIES`` itself.  Example::

    SELECT percentage(count(*), WHERE error IS true) AS 'value' FROM Transaction
      WHERE appName = '{service}' AND tags.version = '{version}' {window}

Which column is the value: ``value`` if the row has it (``AS 'value'``),
else the only numeric column; several numeric columns are ``AMBIGUOUS``.
Empty ``results`` or a ``null`` value -> :class:`NoData` (``count(*)`` over
no events is a real ``0`` and stays a value).

The API key is sent only in the ``API-Key`` header; it is never logged, is
hidden from ``repr`` and is scrubbed from every error message.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

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
    TemplateError,
    Value,
    aggregate_values,
)
from shipwarden.adapters.metrics.http_provider import HttpProvider

__all__ = [
    "NERDGRAPH_EU",
    "NERDGRAPH_US",
    "NRQL_DOCUMENT",
    "NewRelicProvider",
    "nrql_since_until",
    "parse_nerdgraph",
    "parse_nerdgraph_full",
]

_KIND = "newrelic"
log = logging.getLogger(__name__)

NERDGRAPH_US = "https://api.newrelic.com/graphql"
NERDGRAPH_EU = "https://api.eu.newrelic.com/graphql"
ENDPOINTS: Mapping[str, str] = {"US": NERDGRAPH_US, "EU": NERDGRAPH_EU}

# Variables typed as in the NerdGraph schema: account ids are Int, NRQL is the
# Nrql scalar, the per-query time limit is Seconds.
NRQL_DOCUMENT = (
    "query ShipwardenNrql($accountId: Int!, $nrql: Nrql!, $timeout: Seconds) "
    "{ actor { account(id: $accountId) { nrql(query: $nrql, timeout: $timeout) { results otherResult } } } }"
)

# Row keys that describe a row rather than measure something.
_META_KEYS = frozenset({"beginTimeSeconds", "endTimeSeconds", "facet", "timestamp", "comparison"})
_TIMESERIES = re.compile(r"\bTIMESERIES\b", re.IGNORECASE)


def nrql_since_until(start: float, end: float) -> str:
    """``SINCE <ms> UNTIL <ms>``: an absolute NRQL interval in Unix epoch milliseconds."""
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        raise ValueError(f"need a positive finite interval, got {start!r}..{end!r}")
    return f"SINCE {round(start * 1000)} UNTIL {round(end * 1000)}"


def _interval(start: float, end: float) -> str:
    """:func:`nrql_since_until`, an unusable interval being a :class:`TemplateError`."""
    try:
        return nrql_since_until(start, end)
    except ValueError as exc:
        raise TemplateError(str(exc), provider=_KIND) from None


def _err(message: str, kind: ErrorKind, **kw: Any) -> ProviderError:
    return ProviderError(message, kind=kind, provider=_KIND, **kw)


def _error_kind(error_class: str | None) -> ErrorKind:
    cls = (error_class or "").upper()
    if "TIMEOUT" in cls:
        return ErrorKind.TIMEOUT
    if any(w in cls for w in ("FORBIDDEN", "UNAUTHORI", "ACCESS", "AUTH")):
        return ErrorKind.AUTH
    if any(w in cls for w in ("SERVER", "INTERNAL", "UNAVAILABLE", "RATE")):
        return ErrorKind.UNAVAILABLE
    return ErrorKind.BAD_QUERY


def _graphql_errors(doc: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """Joined messages and the first ``extensions.errorClass`` of a GraphQL ``errors`` list."""
    errors = doc.get("errors")
    if not errors:
        return None
    messages: list[str] = []
    error_class: str | None = None
    for e in errors if isinstance(errors, list) else [errors]:
        if isinstance(e, Mapping):
            messages.append(str(e.get("message") or "unspecified error"))
            ext = e.get("extensions")
            if error_class is None and isinstance(ext, Mapping) and ext.get("errorClass"):
                error_class = str(ext["errorClass"])
        else:
            messages.append(str(e))
    return "; ".join(messages), error_class


def _number(v: Any, key: str, query: str) -> float:
    """A row value as float: numbers as is, ``null`` as NaN, single-entry objects unwrapped.

    ``percentile(x, 95)`` answers ``{"95": 0.12}``; with several percentiles
    the caller must ask for one.
    """
    if v is None:
        return math.nan
    if isinstance(v, bool):
        raise _err(f"column {key!r} is a boolean, not a number", ErrorKind.PROTOCOL, query=query)
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, Mapping):
        if len(v) == 1:
            return _number(next(iter(v.values())), key, query)
        raise _err(
            f"column {key!r} holds several values {sorted(v)}; select one", ErrorKind.AMBIGUOUS, query=query
        )
    raise _err(f"column {key!r} is not numeric: {v!r}", ErrorKind.PROTOCOL, query=query)


def _value_key(row: Mapping[str, Any], query: str) -> str:
    candidates = [k for k, v in row.items() if k not in _META_KEYS and not isinstance(v, str | list | bool)]
    if "value" in candidates:
        return "value"
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise _err(f"row has no numeric column: {sorted(row)}", ErrorKind.PROTOCOL, query=query)
    raise _err(
        f"row has several numeric columns {sorted(candidates)}; alias the one to compare AS 'value'",
        ErrorKind.AMBIGUOUS,
        query=query,
    )


def _series_key(row: Mapping[str, Any]) -> str:
    """Which facet a row belongs to: its ``facet``, else its string-valued columns (NerdGraph also
    writes each FACET attribute under its own name, and some answers carry only that)."""
    facet = row.get("facet")
    if facet is not None:
        return json.dumps(facet, sort_keys=True)
    named = {k: v for k, v in row.items() if k not in _META_KEYS and isinstance(v, str | list | bool)}
    return json.dumps(named, sort_keys=True) if named else ""


def _other_rows(other: Any) -> list[Mapping[str, Any]]:
    """NerdGraph's ``otherResult`` (the facets past the FACET ``LIMIT``, summed) as rows."""
    if isinstance(other, Mapping):
        series = other.get("timeSeries")
        if isinstance(series, list):
            return [r for r in series if isinstance(r, Mapping)]
        return [other] if any(k not in _META_KEYS for k in other) else []
    if isinstance(other, list):
        return [r for r in other if isinstance(r, Mapping)]
    return []


def parse_nerdgraph(status: int, body: bytes, *, query: str) -> list[Mapping[str, Any]]:
    """The ``results`` rows of a NerdGraph NRQL answer, or a ProviderError for anything else."""
    return parse_nerdgraph_full(status, body, query=query)[0]


def parse_nerdgraph_full(
    status: int, body: bytes, *, query: str
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """``results`` rows and ``otherResult`` rows (empty unless a FACET hit its LIMIT)."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    errors = _graphql_errors(doc) if isinstance(doc, Mapping) else None
    if not 200 <= status < 300:
        if status in (401, 403):
            kind = ErrorKind.AUTH
        elif status == 429 or status >= 500:
            kind = ErrorKind.UNAVAILABLE
        else:
            kind = ErrorKind.HTTP
        detail = errors[0] if errors else body[:200].decode("utf-8", "replace").strip() or "no body"
        raise _err(
            f"NerdGraph answered HTTP {status}: {detail}",
            kind,
            status=status,
            error_type=errors[1] if errors else None,
            query=query,
        )
    if not isinstance(doc, Mapping):
        raise _err("NerdGraph answer is not a JSON object", ErrorKind.PROTOCOL, status=status, query=query)
    if errors:
        message, error_class = errors
        raise _err(message, _error_kind(error_class), status=status, error_type=error_class, query=query)
    try:
        account = doc["data"]["actor"]["account"]
    except (KeyError, TypeError):
        raise _err(
            "answer has no data.actor.account", ErrorKind.PROTOCOL, status=status, query=query
        ) from None
    if account is None:
        raise _err("account not accessible with this API key", ErrorKind.AUTH, status=status, query=query)
    nrql = account.get("nrql") if isinstance(account, Mapping) else None
    results = nrql.get("results") if isinstance(nrql, Mapping) else None
    if not isinstance(results, list) or not all(isinstance(r, Mapping) for r in results):
        raise _err("answer has no nrql.results list", ErrorKind.PROTOCOL, status=status, query=query)
    assert isinstance(nrql, Mapping)
    return results, _other_rows(nrql.get("otherResult"))


def rows_to_measurement(
    rows: Sequence[Mapping[str, Any]],
    *,
    query: str,
    at: float,
    aggregate: Aggregation | None,
    other: Sequence[Mapping[str, Any]] = (),
) -> Measurement:
    """Rows of a non-TIMESERIES NRQL query -> one Value or NoData.

    ``other`` is the answer's ``otherResult``: the facets past the FACET ``LIMIT``.  A SUM over
    facets includes it (leaving it out under-counts); other aggregations do not (it is several
    facets folded into one row)."""
    if not rows:
        return NoData("no rows", at=at, query=query)
    if any("beginTimeSeconds" in r for r in rows):
        raise _err("TIMESERIES result in an instant query; use query_range", ErrorKind.BAD_QUERY, query=query)
    if len(rows) > 1 and aggregate is None:
        raise _err(
            f"{len(rows)} rows returned where one was expected (FACET?); "
            "aggregate in the NRQL or pass aggregate=",
            ErrorKind.AMBIGUOUS,
            query=query,
        )
    values = [_number(r.get(k := _value_key(r, query)), k, query) for r in rows]
    if aggregate is Aggregation.SUM:
        values += [_number(r.get(k := _value_key(r, query)), k, query) for r in other]
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return NoData("value is null", at=at, query=query)
    if len(values) == 1:
        facet = rows[0].get("facet")
        labels = {"facet": str(facet)} if facet is not None else {}
        return Value(finite[0], at=at, labels=labels, query=query)
    assert aggregate is not None
    return Value(aggregate_values(finite, aggregate), at=at, query=query)


def rows_to_series(
    rows: Sequence[Mapping[str, Any]],
    *,
    query: str,
    at: float,
    aggregate: Aggregation | None,
    other: Sequence[Mapping[str, Any]] = (),
) -> RangeMeasurement:
    """TIMESERIES rows -> a Series stamped at each bucket's ``endTimeSeconds`` (null buckets dropped).

    The end of the bucket is used because a bucket measures the interval
    *before* that instant, as a Prometheus range-query point does.  A ``FACET … TIMESERIES``
    answer has one row per facet per bucket: every row of a bucket is a value of that bucket
    (never only the first), so several facets need ``aggregate``; with SUM the ``otherResult``
    buckets (facets past the LIMIT) are added too.
    """
    if not rows:
        return NoData("no rows", at=at, query=query)
    groups: dict[tuple[str, int], list[Point]] = {}
    seen: dict[tuple[str, float], int] = {}
    tagged = [(r, "") for r in rows]
    if aggregate is Aggregation.SUM:
        tagged += [(r, "\x00otherResult") for r in other]
    for r, tag in tagged:
        if "endTimeSeconds" not in r:
            raise _err("row without endTimeSeconds in a TIMESERIES answer", ErrorKind.PROTOCOL, query=query)
        key = _value_key(r, query)
        t = float(r["endTimeSeconds"])
        series = tag or _series_key(r)
        # Two rows of one series in one bucket are two facets the answer does not tell apart.
        n = seen[(series, t)] = seen.get((series, t), -1) + 1
        groups.setdefault((series, n), []).append(Point(t, _number(r.get(key), key, query)))
    if len(groups) > 1 and aggregate is None:
        raise _err(
            f"{len(groups)} facets returned where one series was expected; pass aggregate=",
            ErrorKind.AMBIGUOUS,
            query=query,
        )
    by_t: dict[float, list[float]] = {}
    for pts in groups.values():
        for p in pts:
            if not math.isnan(p.value):
                by_t.setdefault(p.t, []).append(p.value)
    if not by_t:
        return NoData("all buckets are null", at=at, query=query)
    points = tuple(
        Point(t, vs[0] if len(groups) == 1 else aggregate_values(vs, aggregate or Aggregation.SUM))
        for t, vs in sorted(by_t.items())
    )
    return Series(points=points, query=query)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class NewRelicProvider(HttpProvider):
    """Fetches NRQL results for one New Relic account through NerdGraph.

    ``api_key`` is a user key (``NRAK-...``).  ``region`` picks the documented
    endpoint (``US`` or ``EU``); ``endpoint`` overrides it (e.g. a proxy) and
    must be ``https`` unless it is a loopback address, so the key never
    crosses a network in clear text.  ``client`` is injectable; when omitted
    the provider owns one and :meth:`close` closes it.  ``timeout_s`` is sent
    as NerdGraph's ``timeout`` (whole seconds, at least 1) and bounds the
    HTTP request with a few seconds' margin so New Relic reports its own
    timeout first.
    """

    kind: ClassVar[str] = _KIND
    quotes: ClassVar[str] = "'"  # NRQL string literals are single-quoted

    def __init__(
        self,
        api_key: str,
        account_id: int,
        *,
        region: Literal["US", "EU", "us", "eu"] = "US",
        endpoint: str | None = None,
        client: httpx.Client | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ValueError("api_key is required")
        if isinstance(account_id, bool) or not isinstance(account_id, int) or account_id <= 0:
            raise ValueError("account_id must be a positive integer")
        reg = region.upper()
        if reg not in ENDPOINTS:
            raise ValueError(f"region must be US or EU, not {region!r}")
        url = endpoint or ENDPOINTS[reg]
        parts = urlsplit(url)
        if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback(parts.hostname or "")):
            raise ValueError(f"endpoint {url!r} must use https (the API key travels in a header)")
        super().__init__(client=client, timeout_s=timeout_s)
        self._api_key = api_key.strip()
        self.account_id = account_id
        self.region = reg
        self.endpoint = url

    def __repr__(self) -> str:
        return (
            f"NewRelicProvider(account_id={self.account_id}, region={self.region!r}, "
            f"endpoint={self.endpoint!r}, api_key='***')"
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    # -- rendering ---------------------------------------------------------------

    def render(self, template: str, *, service: str, version: str, window: str) -> str:
        """The NRQL a template becomes (``window`` is an already rendered NRQL clause)."""
        return self.render_query(template, service=service, version=version, window=window)

    def instant_window(self, window_s: float, *, at: float) -> str:
        """``SINCE <at - window_s> UNTIL <at>``: an absolute interval, the same for baseline and canary."""
        return _interval(at - window_s, at)

    def range_window(
        self, template: str, *, start: float, end: float, step: float, window_s: float | None
    ) -> str:
        """``SINCE <start> UNTIL <end> TIMESERIES <step> seconds``; the template must not say TIMESERIES.

        ``window_s`` is accepted for the protocol but has no NRQL meaning: a
        bucket always covers exactly one step.
        """
        if _TIMESERIES.search(template):
            raise TemplateError(
                "query_range adds TIMESERIES itself; remove it from the template", provider=_KIND
            )
        if step < 1 or step != int(step):
            raise TemplateError("NRQL TIMESERIES buckets need a whole number of seconds >= 1", provider=_KIND)
        return f"{_interval(start, end)} TIMESERIES {int(step)} seconds"

    # -- HTTP --------------------------------------------------------------------

    def run_nrql(self, nrql: str) -> list[Mapping[str, Any]]:
        """Run one NRQL query and return the raw ``results`` rows; errors never show the API key."""
        return self.run_nrql_full(nrql)[0]

    def run_nrql_full(self, nrql: str) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        """``results`` and ``otherResult`` rows of one NRQL query; errors never show the API key."""
        payload = {
            "query": NRQL_DOCUMENT,
            "variables": {
                "accountId": self.account_id,
                "nrql": nrql,
                "timeout": max(1, math.ceil(self.timeout_s)),
            },
        }
        headers = {"API-Key": self._api_key, "Content-Type": "application/json", "Accept": "application/json"}
        started = time.monotonic()
        try:
            resp = self._send(
                "POST",
                self.endpoint,
                query=nrql,
                timeout=self.timeout_s + 5.0,
                content=json.dumps(payload),
                headers=headers,
            )
            log.debug(
                "nerdgraph nrql account=%s status=%s %.3fs: %s",
                self.account_id,
                resp.status_code,
                time.monotonic() - started,
                nrql,
            )
            return parse_nerdgraph_full(resp.status_code, resp.content, query=nrql)
        except ProviderError as exc:
            exc.message = self._redact(exc.message)
            exc.args = (exc.message,)
            raise

    def run_instant(self, text: str, *, at: float, aggregate: Aggregation | None) -> Measurement:
        """The NRQL's rows as one value; see the module doc for which column counts."""
        rows, other = self.run_nrql_full(text)
        return rows_to_measurement(rows, query=text, at=at, aggregate=aggregate, other=other)

    def run_range(
        self, text: str, *, start: float, end: float, step: float, aggregate: Aggregation | None
    ) -> RangeMeasurement:
        """The TIMESERIES rows as a series stamped at bucket ends."""
        rows, other = self.run_nrql_full(text)
        return rows_to_series(rows, query=text, at=end, aggregate=aggregate, other=other)
