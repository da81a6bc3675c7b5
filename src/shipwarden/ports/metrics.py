"""The metric-provider port: fetch numbers, never judge them (the outcomes are kept apart:
:class:`Value`, :class:`NoData`, :class:`ProviderError` -- the domain's one set,
``domain/measurement.py``, which the analysis records and judges as they are; templates and the
providers' registry: ``adapters/metrics/base.py``, the drivers ``prometheus.py`` and ``newrelic.py``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol, runtime_checkable

from shipwarden.domain.measurement import ErrorKind, NoData, ProviderError, Value

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
"""What a provider returns (a failure is raised: :class:`ProviderError`)."""
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
