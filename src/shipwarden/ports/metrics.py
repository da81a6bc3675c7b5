"""The metric-provider port: fetch numbers, never judge them (the outcomes are kept apart:
:class:`Value`, :class:`NoData`, :class:`ProviderError`; templates and the providers'
registry: ``adapters/metrics/base.py``, the drivers ``prometheus.py`` and ``newrelic.py``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "Aggregation",
    "ErrorKind",
    "Measurement",
    "MeasurementPair",
    "MetricProvider",
    "NoData",
    "Point",
    "ProviderConfigError",
    "ProviderError",
    "RangeMeasurement",
    "Series",
    "TemplateError",
    "UnknownProvider",
    "Value",
    "aggregate_values",
]


# --------------------------------------------------------------------------- errors


class ErrorKind(StrEnum):
    """Why a provider could not answer; lets callers retry only what is retryable."""

    BAD_QUERY = "bad_query"  # the back-end rejected the query text (syntax, unknown function)
    EXECUTION = "execution"  # the query parsed but could not be evaluated
    TIMEOUT = "timeout"  # client-side or server-side time limit
    UNAVAILABLE = "unavailable"  # back-end answered 5xx / overloaded / rate-limited
    CONNECTION = "connection"  # nothing answered at all
    AUTH = "auth"  # credentials missing, wrong or lacking access
    PROTOCOL = "protocol"  # an answer that does not follow the documented contract
    AMBIGUOUS = "ambiguous"  # several series/rows where one number was expected
    BAD_TEMPLATE = "bad_template"  # the template or a substituted value is unsafe
    HTTP = "http"  # any other non-2xx status (proxies, gateways)


class ProviderError(RuntimeError):
    """A metric back-end could not answer the question; never carries a value.

    ``kind`` classifies the failure, ``status`` is the HTTP status when one was
    received, ``error_type`` the back-end's own error class (Prometheus
    ``errorType``, NerdGraph ``extensions.errorClass``).
    """

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind,
        provider: str = "",
        status: int | None = None,
        error_type: str | None = None,
        query: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.provider = provider
        self.status = status
        self.error_type = error_type
        self.query = query

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor arguments break default exception pickling;
        # errors must survive process boundaries (worker pools, job queues).
        return (_restore_error, (type(self), self.message, dict(self.__dict__)))

    def __str__(self) -> str:
        where = f"{self.provider}: " if self.provider else ""
        extra = []
        if self.status is not None:
            extra.append(f"HTTP {self.status}")
        if self.error_type:
            extra.append(self.error_type)
        suffix = f" ({', '.join(extra)})" if extra else ""
        return f"{where}{self.kind.value}: {self.message}{suffix}"


def _restore_error(cls: type[ProviderError], message: str, state: dict[str, Any]) -> ProviderError:
    err = cls.__new__(cls)
    RuntimeError.__init__(err, message)
    err.__dict__.update(state)
    return err


class TemplateError(ProviderError):
    """The query template or a value substituted into it is unsafe or invalid."""

    def __init__(self, message: str, *, provider: str = "") -> None:
        super().__init__(message, kind=ErrorKind.BAD_TEMPLATE, provider=provider)


class UnknownProvider(LookupError):
    """``make_provider`` was asked for a provider type that is not registered."""


class ProviderConfigError(ValueError):
    """The configuration given to ``make_provider`` does not fit the provider."""


# --------------------------------------------------------------------------- results


class Point(NamedTuple):
    """One sample of a series: Unix time in seconds and the value."""

    t: float
    value: float


@dataclass(frozen=True, slots=True)
class Value:
    """A number the back-end returned for a query at instant ``at`` (Unix seconds)."""

    value: float
    at: float
    labels: Mapping[str, str] = field(default_factory=dict)
    query: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NoData:
    """The back-end answered but had nothing to measure; distinct from zero and from errors."""

    reason: str
    at: float
    query: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Series:
    """A time series over a range; points are ordered by time and never NaN."""

    points: tuple[Point, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    query: str = ""
    warnings: tuple[str, ...] = ()

    def values(self) -> list[float]:
        """The values alone, in time order."""
        return [p.value for p in self.points]


Measurement = Value | NoData
RangeMeasurement = Series | NoData


@dataclass(frozen=True, slots=True)
class MeasurementPair:
    """Baseline and canary measured by the same template at the same instant.

    Analysis always compares the two; fetching them together guarantees the
    same window, the same ``at`` and the same query shape.
    """

    baseline: Measurement
    canary: Measurement
    baseline_version: str
    canary_version: str
    at: float


class Aggregation(StrEnum):
    """How to fold several series/rows into one number when the caller asks for it."""

    SUM = "sum"
    MEAN = "mean"
    MAX = "max"
    MIN = "min"


def aggregate_values(values: Sequence[float], how: Aggregation) -> float:
    """Fold values with ``how``; NaN inputs must have been removed by the caller."""
    if not values:
        raise ValueError("nothing to aggregate")
    if how is Aggregation.SUM:
        return math.fsum(values)
    if how is Aggregation.MEAN:
        return math.fsum(values) / len(values)
    if how is Aggregation.MAX:
        return max(values)
    return min(values)


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class MetricProvider(Protocol):
    """What the analysis needs from a metric back-end: fetch, never judge.

    ``at``/``start``/``end`` are Unix seconds; ``at=None`` means "now".
    ``aggregate`` folds several series/rows into one; without it an answer
    with more than one series is a :class:`ProviderError` of kind
    ``AMBIGUOUS`` -- silently picking one series would compare the wrong
    things.
    """

    @property
    def kind(self) -> str:
        """The registry name of the provider type (``prometheus``, ``newrelic``)."""
        ...

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
        """One number for ``version`` of ``service`` over ``window_s`` seconds ending at ``at``."""
        ...

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
        """A series from ``start`` to ``end`` every ``step`` seconds (window defaults to step)."""
        ...

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
        """Baseline and canary side by side, same template, same window, same instant."""
        ...

    def close(self) -> None:
        """Release the HTTP client if the provider created it."""
        ...
