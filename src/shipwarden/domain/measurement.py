"""The one set of measurement outcomes: what a metric provider answers and what the analysis judges.

A provider (``ports.metrics.MetricProvider``) returns a :class:`Value` or a :class:`NoData`, or
raises a :class:`ProviderError`; the analysis (``domain.analysis``) records exactly those three and
judges them.  They are kept strictly apart, because mixing them is how a broken monitoring pipeline
ends up promoting a bad canary:

* :class:`Value` -- the back-end answered with a number (``+Inf`` included);
* :class:`NoData` -- it answered, but there is nothing to compare (empty result, ``NaN``); not zero;
* :class:`ProviderError` -- the question could not be answered; never carries a value.

``at`` is when the measurement was taken (Unix seconds).  A provider error does not know it when
it is raised; whoever records it stamps it (``taken_at``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["ErrorKind", "Measurement", "NoData", "ProviderError", "Value"]


@dataclass(frozen=True, slots=True)
class Value:
    """A number the back-end returned for a query at instant ``at``; ``requests`` is the sample
    size when the provider knows it (what ``minRequests`` checks)."""

    value: float
    at: float
    labels: Mapping[str, str] = field(default_factory=dict)
    query: str = ""
    warnings: tuple[str, ...] = ()
    requests: int | None = None


@dataclass(frozen=True, slots=True)
class NoData:
    """The back-end answered but had nothing to measure (no traffic yet); distinct from zero and
    from errors."""

    reason: str
    at: float
    query: str = ""
    warnings: tuple[str, ...] = ()


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
    NOT_CONFIGURED = "not_configured"  # the check names a provider this installation does not have
    RECORDED = "recorded"  # read back from a record that kept only the error's text


class ProviderError(RuntimeError):
    """A metric back-end could not answer the question; never carries a value.

    ``kind`` classifies the failure, ``status`` is the HTTP status when one was
    received, ``error_type`` the back-end's own error class (Prometheus
    ``errorType``, NerdGraph ``extensions.errorClass``); ``at`` when the failed
    measurement was taken (``nan`` until it is recorded, see :meth:`taken_at`).
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
        at: float = math.nan,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.provider = provider
        self.status = status
        self.error_type = error_type
        self.query = query
        self.at = at

    def taken_at(self, at: float) -> ProviderError:
        """This error as the outcome of the measurement taken at ``at``."""
        self.at = at
        return self

    @classmethod
    def recorded(cls, text: str, at: float) -> ProviderError:
        """An error read back from a record that kept its text (``str(error)``) only."""
        return cls(text, kind=ErrorKind.RECORDED, at=at)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor arguments break default exception pickling;
        # errors must survive process boundaries (worker pools, job queues).
        return (_restore_error, (type(self), self.message, dict(self.__dict__)))

    def __str__(self) -> str:
        if self.kind is ErrorKind.RECORDED:
            return self.message
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


Measurement = Value | NoData | ProviderError
"""What one measurement of an analysis came to (a provider's answer, or the error it raised)."""
