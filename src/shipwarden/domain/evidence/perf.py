"""Load-test results → ``PerfReport``: k6 end-of-test summaries and Locust stats CSV.

k6 writes its end-of-test summary in two JSON shapes, and teams use both:

* ``handleSummary(data)`` / ``JSON.stringify(data)`` — each metric is
  ``{"type", "contains", "values": {...}, "thresholds": {expr: {"ok": bool}}}``;
  a Rate metric's fraction is ``values.rate``.
* ``k6 run --summary-export=file.json`` (legacy) — the values sit directly on
  the metric (``{"avg", "p(95)", ...}``), a Rate metric's fraction is
  ``value`` and thresholds are bare booleans meaning **"breached"**
  (``false`` = the threshold held).  ``http_req_failed``'s ``passes`` counts
  *failed* requests (the metric is true when a request failed), so only the
  fraction is used here, never passes/fails.

Figures taken: ``http_req_duration`` ``p(95)``/``p(99)`` (ms; k6 reports time
metrics in ms in both shapes), ``http_req_failed`` rate, ``http_reqs`` count and
rate.  A test of a gRPC service has no ``http_*`` metrics: its latency is
``grpc_req_duration`` and its count ``grpc_reqs`` (k6 has no gRPC failure-rate
metric, so the error rate is then ``None``: a gate that needs it fails as missing).
k6's default ``summaryTrendStats`` has no ``p(99)``; then ``p99_ms`` is
``None`` and a gate that needs it fails as "missing" rather than guessing.

Locust ``--csv PREFIX`` writes ``PREFIX_stats.csv`` with one row per endpoint
and a final ``Aggregated`` row (``None,Total`` before Locust 1.0).  Columns
(2.x): ``Type, Name, Request Count, Failure Count, Median Response Time,
Average Response Time, Min Response Time, Max Response Time, Average Content
Size, Requests/s, Failures/s, 50%, 66%, 75%, 80%, 90%, 95%, 98%, 99%, 99.9%,
99.99%, 100%``; older releases call the counts ``# requests``/``# failures``.
Percentiles are ``N/A`` when no request was made.  Locust 0.x (a ``Method``
column) counted only successful requests in
``# requests``; its error rate is ``failures / (requests + failures)`` and the
request count includes the failures.  The file is read in UTF-8, UTF-16 (BOM)
or, failing those, Windows-1252: an endpoint name is not a reason to refuse it.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from shipwarden.domain.evidence._json import JsonReader, key_path, load_json
from shipwarden.domain.evidence.model import EvidenceError, PerfReport, sha256_digest

# --- k6 ----------------------------------------------------------------------------------------------------


def _stat(r: JsonReader, metric: dict[str, Any], path: str, names: tuple[str, ...]) -> float | None:
    """A statistic from either shape; ``None`` when the summary does not carry it."""
    holder, hpath = metric, path
    if "values" in metric:
        holder, hpath = r.obj(metric["values"], f"{path}.values"), f"{path}.values"
    for name in names:
        if name in holder:
            value = r.number(holder[name], key_path(hpath, name))
            if math.isnan(value) or value < 0:
                raise r.error(key_path(hpath, name), f"{value} is not a valid {name}")
            return value
    return None


def _thresholds(r: JsonReader, metrics: dict[str, Any]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for name, metric in metrics.items():
        if not isinstance(metric, dict) or "thresholds" not in metric:
            continue
        tpath = f"{key_path('$.metrics', name)}.thresholds"
        for expr, verdict in r.obj(metric["thresholds"], tpath).items():
            if isinstance(verdict, bool):  # --summary-export: true means the threshold was breached
                out[f"{name}: {expr}"] = not verdict
            else:
                ok = r.obj(verdict, key_path(tpath, expr)).get("ok")
                if not isinstance(ok, bool):
                    raise r.error(f"{key_path(tpath, expr)}.ok", "expected a boolean")
                out[f"{name}: {expr}"] = ok
    return out


def parse_k6_summary(data: bytes | str, *, source: str = "<k6>") -> PerfReport:
    """Parse a k6 summary (``handleSummary`` JSON or ``--summary-export``); errors name the JSON path."""
    r = JsonReader(source)
    doc = r.obj(load_json(data, source), "$")
    metrics = r.obj(doc.get("metrics"), "$.metrics")
    # a gRPC service's test has no http_* metrics: k6 measures it as grpc_req_duration / grpc_reqs
    proto = "http" if "http_req_duration" in metrics or "grpc_req_duration" not in metrics else "grpc"
    dname = f"{proto}_req_duration"
    if dname not in metrics:
        missing = "missing: the summary has no HTTP or gRPC request durations"
        raise r.error("$.metrics.http_req_duration", missing)
    dpath = key_path("$.metrics", dname)
    duration = r.obj(metrics[dname], dpath)
    p95 = _stat(r, duration, dpath, ("p(95)",))
    p99 = _stat(r, duration, dpath, ("p(99)",))

    error_rate: float | None = None
    if "http_req_failed" in metrics:
        failed = r.obj(metrics["http_req_failed"], "$.metrics.http_req_failed")
        error_rate = _stat(r, failed, "$.metrics.http_req_failed", ("rate", "value"))
        if error_rate is not None and error_rate > 1:
            raise r.error("$.metrics.http_req_failed", f"error rate {error_rate} is above 1")
    requests: int | None = None
    throughput: float | None = None
    if f"{proto}_reqs" in metrics:
        rpath = key_path("$.metrics", f"{proto}_reqs")
        reqs = r.obj(metrics[f"{proto}_reqs"], rpath)
        count = _stat(r, reqs, rpath, ("count",))
        requests = int(count) if count is not None else None
        throughput = _stat(r, reqs, rpath, ("rate",))
    return PerfReport(
        tool="k6",
        requests=requests,
        p95_ms=p95,
        p99_ms=p99,
        error_rate=error_rate,
        throughput_rps=throughput,
        digest=sha256_digest(data),
        source=source,
        tool_thresholds=_thresholds(r, metrics),
    )


# --- Locust ------------------------------------------------------------------------------------------------

_ALIASES = {
    "requests": ("Request Count", "# requests"),
    "failures": ("Failure Count", "# failures"),
    "rps": ("Requests/s",),
    "p95": ("95%",),
    "p99": ("99%",),
}


def _decode(data: bytes) -> str:
    """CSV text in whatever encoding Locust's host wrote it.

    UTF-8 (with or without BOM) and UTF-16 with a BOM are read as such; anything else is read as
    Windows-1252/Latin-1, which maps every byte.  Only endpoint names can be non-ASCII, and the
    gate reads the numbers of the ``Aggregated`` row, so one name in another encoding must not
    refuse the whole report.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            return data.decode("latin-1")


def parse_locust_stats(data: bytes | str, *, source: str = "<locust>") -> PerfReport:
    """Parse Locust's ``*_stats.csv``; uses the ``Aggregated`` row.  Errors carry the line and column name."""
    text = _decode(data) if isinstance(data, bytes) else data
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header:
            raise EvidenceError("the report is empty", source=source, line=1)
        columns: dict[str, int] = {}
        for key, names in _ALIASES.items():
            for name in names:
                if name in header:
                    columns[key] = header.index(name)
                    break
        for required in ("requests", "failures", "rps"):
            if required not in columns:
                raise EvidenceError(
                    f"missing column {_ALIASES[required][0]!r}; is this a Locust *_stats.csv file?",
                    source=source,
                    line=1,
                )
        if "Name" not in header:
            raise EvidenceError("missing column 'Name'", source=source, line=1)
        name_col = header.index("Name")
        type_col = header.index("Type") if "Type" in header else None
        aggregate: tuple[int, list[str]] | None = None
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                msg = f"row has {len(row)} fields, the header has {len(header)}"
                raise EvidenceError(msg, source=source, line=reader.line_num)
            name = row[name_col]
            kind = row[type_col] if type_col is not None else ""
            if name == "Aggregated" or (name == "Total" and kind in ("", "None")):
                aggregate = (reader.line_num, row)
    except csv.Error as exc:
        raise EvidenceError(f"not valid CSV: {exc}", source=source, line=reader.line_num) from None
    if aggregate is None:
        raise EvidenceError("missing: no 'Aggregated' row with the whole-run totals", source=source)
    line, row = aggregate

    def number(key: str) -> float | None:
        if key not in columns:
            return None
        raw = row[columns[key]].strip()
        if raw in ("N/A", ""):
            return None
        try:
            value = float(raw)
        except ValueError:
            msg = f"column {header[columns[key]]!r}: {raw!r} is not a number"
            raise EvidenceError(msg, source=source, line=line) from None
        if math.isnan(value) or value < 0:
            col = header[columns[key]]
            raise EvidenceError(f"column {col!r}: {raw!r} is not a valid value", source=source, line=line)
        return value

    requests = number("requests")
    failures = number("failures")
    # Locust 0.x (a "Method" column) counted successes only in "# requests": its own fail_ratio was
    # failures / (requests + failures).  Later files count a failure as a request too.  A file whose
    # vintage is not certain ("Type" column, "Total" row) is read the later way, the higher rate.
    legacy = "Method" in header and "Type" not in header
    if legacy and requests is not None and failures is not None:
        requests += failures
    error_rate = None
    if requests is not None and failures is not None and requests > 0:
        error_rate = min(failures / requests, 1.0)
    return PerfReport(
        tool="locust",
        requests=int(requests) if requests is not None else None,
        p95_ms=number("p95"),
        p99_ms=number("p99"),
        error_rate=error_rate,
        throughput_rps=number("rps"),
        digest=sha256_digest(data),
        source=source,
    )
