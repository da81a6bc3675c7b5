"""FakeMetricProvider: a metric back-end in a dict, behind the same template skeleton as the real
providers (``adapters/metrics/base.py`` ``TemplateProvider``: the same injection checks, the same
pinned instant, the same ``fetch_pair``).

Its query language is one line: ``<metric> of '{service}' at '{version}' over {window}``.
``series[metric][(service, version)]`` holds the values of that metric's series (one value per
series; several values are several series, as a PromQL selector or a NRQL FACET can return);
a metric or version without series is "no data"; any other text is a bad query.  ``down``: the
back-end does not answer (a connection error).  ``tests/contract/test_metrics_contract.py`` holds
it to what Prometheus and New Relic do.
"""

from __future__ import annotations

import re
from typing import ClassVar

from shipwarden.adapters.metrics.base import TemplateProvider
from shipwarden.ports.metrics import (
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

_QUERY = re.compile(r"^(\w+) of '([^']*)' at '([^']*)' over (\S+)$")


class FakeMetricProvider(TemplateProvider):
    kind: ClassVar[str] = "fake"
    quotes: ClassVar[str] = "'"

    def __init__(self, series: dict[str, dict[tuple[str, str], list[float]]] | None = None) -> None:
        self.series = series if series is not None else {}
        self.down = False
        self.queries: list[str] = []

    def instant_window(self, window_s: float, *, at: float) -> str:
        if window_s <= 0:
            raise TemplateError("the window must be positive", provider=self.kind)
        return f"{window_s:g}s@{at:.3f}"

    def range_window(
        self, template: str, *, start: float, end: float, step: float, window_s: float | None
    ) -> str:
        if step <= 0 or end < start:
            raise TemplateError("a range needs start <= end and a positive step", provider=self.kind)
        return f"{(window_s or step):g}s"

    def _values(self, text: str) -> list[float] | None:
        self.queries.append(text)
        if self.down:
            raise ProviderError("refused", kind=ErrorKind.CONNECTION, provider=self.kind, query=text)
        m = _QUERY.match(text)
        if m is None:
            raise ProviderError("parse error", kind=ErrorKind.BAD_QUERY, provider=self.kind, query=text)
        return self.series.get(m[1], {}).get((m[2], m[3]))

    def _fold(self, values: list[float], text: str, aggregate: Aggregation | None) -> float:
        if len(values) > 1 and aggregate is None:
            raise ProviderError(
                f"{len(values)} series where one was expected; pass aggregate=",
                kind=ErrorKind.AMBIGUOUS, provider=self.kind, query=text,
            )  # fmt: skip
        return values[0] if len(values) == 1 else aggregate_values(values, aggregate or Aggregation.SUM)

    def run_instant(self, text: str, *, at: float, aggregate: Aggregation | None) -> Measurement:
        values = self._values(text)
        if not values:
            return NoData("no series", at=at, query=text)
        return Value(self._fold(values, text, aggregate), at=at, query=text)

    def run_range(
        self, text: str, *, start: float, end: float, step: float, aggregate: Aggregation | None
    ) -> RangeMeasurement:
        values = self._values(text)
        if not values:
            return NoData("no series", at=end, query=text)
        value = self._fold(values, text, aggregate)
        n = int((end - start) // step) + 1
        return Series(tuple(Point(start + i * step, value) for i in range(n)), query=text)

    def close(self) -> None:
        pass
