"""The metric-provider port: fetch numbers, never judge them.

Canary analysis needs the same metric for two versions of one service over
the same interval.  Providers (Prometheus, New Relic, ...) only *fetch*: they
turn a query template into the back-end's query language, run it and return
a :class:`Value`, a :class:`NoData` or raise :class:`ProviderError`.  Whether
a value is good or bad is decided by the pure domain analysis, never here,
so a provider can be swapped without changing any verdict logic.

Three outcomes are kept strictly apart, because mixing them is how a broken
monitoring pipeline ends up promoting a bad canary:

* :class:`Value`  -- the back-end answered with a number (``+Inf`` included:
  a latency quantile above the largest bucket is a real, very bad answer);
* :class:`NoData` -- the back-end answered, but there is nothing to compare
  (empty result, ``NaN`` such as ``0/0``, a ``null`` aggregate).  It is
  *not* zero: "no errors" and "no requests" are different facts;
* :class:`ProviderError` -- the question could not be answered (bad query,
  timeout, auth, back-end down, ambiguous answer).  Never a value.

Templates
---------
A query is a template with three placeholders, substituted textually and
nothing else (other braces, e.g. PromQL label matchers, stay as they are):

* ``{service}`` and ``{version}`` -- must sit *inside a string literal* of
  the query language (``"..."`` in PromQL, ``'...'`` in NRQL) and the values
  must match :data:`SAFE_VALUE` (letters, digits and ``. _ - + : / @``, at
  most 128 characters).  Both rules are checked on every render, so a
  version string can never close the literal and inject query syntax;
* ``{window}`` -- the look-back window, rendered by each provider in its own
  syntax (PromQL ``30s``; NRQL ``SINCE <ms> UNTIL <ms>``); it must sit
  *outside* string literals.

Prefer exact matchers (``version="{version}"``): inside a regex matcher the
allowed ``.`` and ``+`` are still regex metacharacters.

Writing a provider
------------------
:class:`MetricProvider` is the contract; anything satisfying it can be
registered with :func:`register_provider`.  :class:`TemplateProvider`
implements its query methods once (pin the instant, render the window,
substitute safely, run, map), so a provider module holds only what is
specific to its back-end; ``adapters.metrics.http_provider.HttpProvider``
adds the httpx client handling that HTTP back-ends share.
"""

from __future__ import annotations

import importlib
import inspect
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Self

__all__ = [
    "SAFE_VALUE",
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
    "TemplateProvider",
    "UnknownProvider",
    "Value",
    "aggregate_values",
    "fetch_pair",
    "known_providers",
    "make_provider",
    "register_provider",
    "render_template",
]

from shipwarden.ports.metrics import (
    Aggregation,
    ErrorKind,
    Measurement,
    MeasurementPair,
    MetricProvider,
    NoData,
    Point,
    ProviderConfigError,
    ProviderError,
    RangeMeasurement,
    Series,
    TemplateError,
    UnknownProvider,
    Value,
    aggregate_values,
)


def fetch_pair(
    provider: MetricProvider,
    template: str,
    *,
    service: str,
    baseline_version: str,
    canary_version: str,
    window_s: float,
    at: float | None = None,
    aggregate: Aggregation | None = None,
) -> MeasurementPair:
    """Shared ``fetch_pair`` implementation: pins ``at`` once, then queries both versions.

    Refuses a template without ``{version}``: it would measure the same thing
    twice and make any comparison meaningless.  Either side failing raises --
    half a pair cannot be analysed.
    """
    if "{version}" not in template:
        raise TemplateError(
            "template has no {version} placeholder: baseline and canary would run the same query",
            provider=provider.kind,
        )
    if baseline_version == canary_version:
        raise TemplateError("baseline and canary versions are the same", provider=provider.kind)
    pinned = time.time() if at is None else at
    baseline = provider.query(
        template, service=service, version=baseline_version, window_s=window_s, at=pinned, aggregate=aggregate
    )
    canary = provider.query(
        template, service=service, version=canary_version, window_s=window_s, at=pinned, aggregate=aggregate
    )
    return MeasurementPair(
        baseline=baseline,
        canary=canary,
        baseline_version=baseline_version,
        canary_version=canary_version,
        at=pinned,
    )


# --------------------------------------------------------------------------- templates

SAFE_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-+:/@]{0,127}")
_PLACEHOLDER = re.compile(r"\{(service|version|window)\}")


def _string_state(text: str, quotes: str, state: str | None) -> str | None:
    """Which quote (if any) is open after scanning ``text`` from ``state``.

    Backslash escapes inside a literal are honoured; the back-tick raw
    strings of PromQL have no escapes, which the caller expresses by listing
    the back-tick in ``quotes`` (a backslash before it is then literal too).
    """
    i = 0
    while i < len(text):
        ch = text[i]
        if state is None:
            if ch in quotes:
                state = ch
        elif ch == "\\" and state != "`":
            i += 1  # skip the escaped character
        elif ch == state:
            state = None
        i += 1
    return state


def render_template(
    template: str,
    *,
    service: str,
    version: str,
    window: str,
    quotes: str,
    provider: str = "",
) -> str:
    """Substitute the three placeholders after checking they cannot change the query's shape.

    ``quotes`` lists the characters that open string literals in the target
    language.  ``{service}``/``{version}`` must be inside one and their values
    must match :data:`SAFE_VALUE`; ``{window}`` must be outside any literal.
    """
    for name, val in (("service", service), ("version", version)):
        if not SAFE_VALUE.fullmatch(val):
            raise TemplateError(
                f"{name} {val!r} is not allowed in a query: use letters, digits and . _ - + : / @ "
                "(at most 128 characters)",
                provider=provider,
            )
    values = {"service": service, "version": version, "window": window}
    out: list[str] = []
    state: str | None = None
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        literal = template[pos : m.start()]
        state = _string_state(literal, quotes, state)
        out.append(literal)
        name = m.group(1)
        if name == "window":
            if state is not None:
                raise TemplateError("{window} must not be inside a string literal", provider=provider)
        elif state is None:
            raise TemplateError(
                f'{{{name}}} must be inside a string literal (e.g. label="{{{name}}}")', provider=provider
            )
        out.append(values[name])
        pos = m.end()
    tail = template[pos:]
    if _string_state(tail, quotes, state) is not None:
        raise TemplateError("template has an unterminated string literal", provider=provider)
    out.append(tail)
    return "".join(out)


# --------------------------------------------------------------------------- shared skeleton


class TemplateProvider(ABC):
    """The :class:`MetricProvider` query methods written once; subclasses add only their back-end.

    Every provider answers a question the same way: pin the instant, render
    ``{window}`` in the back-end's syntax, substitute the template with
    :func:`render_template` (so the injection checks cannot be skipped), run
    the text and map the answer to :class:`Value` / :class:`NoData` /
    :class:`ProviderError`.  Only the window syntax, the wire call and the
    answer format differ, so a subclass sets :attr:`kind` and :attr:`quotes`
    and implements:

    * :meth:`instant_window` / :meth:`range_window` -- ``{window}`` in its
      syntax; they also refuse, with a ``BAD_TEMPLATE`` error, arguments the
      back-end cannot express, before anything is sent;
    * :meth:`run_instant` / :meth:`run_range` -- send the rendered text and
      turn the answer into a :class:`Measurement` / :class:`RangeMeasurement`;
    * :meth:`close`.
    """

    kind: ClassVar[str]
    """The registry name of the provider type (``prometheus``, ``newrelic``)."""
    quotes: ClassVar[str]
    """The characters that open a string literal in the query language (see :func:`render_template`)."""

    # -- what a back-end supplies --------------------------------------------------

    @abstractmethod
    def instant_window(self, window_s: float, *, at: float) -> str:
        """``{window}`` for an instant query over ``window_s`` seconds ending at ``at``."""

    @abstractmethod
    def range_window(
        self, template: str, *, start: float, end: float, step: float, window_s: float | None
    ) -> str:
        """``{window}`` for a range query; may also refuse a template that clashes with what it adds."""

    @abstractmethod
    def run_instant(self, text: str, *, at: float, aggregate: Aggregation | None) -> Measurement:
        """Run the rendered query ``text`` for the instant ``at`` and map the answer."""

    @abstractmethod
    def run_range(
        self, text: str, *, start: float, end: float, step: float, aggregate: Aggregation | None
    ) -> RangeMeasurement:
        """Run the rendered range query ``text`` and map the answer."""

    @abstractmethod
    def close(self) -> None:
        """Release what the provider holds (its HTTP client if it created one)."""

    # -- the contract, implemented once ------------------------------------------

    def render_query(self, template: str, *, service: str, version: str, window: str) -> str:
        """The query text a template becomes, ``window`` being already rendered; checked for safety."""
        return render_template(
            template, service=service, version=version, window=window, quotes=self.quotes, provider=self.kind
        )

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
        """One number over ``window_s`` seconds ending at ``at`` (default now, pinned once)."""
        when = time.time() if at is None else at
        window = self.instant_window(window_s, at=when)
        text = self.render_query(template, service=service, version=version, window=window)
        return self.run_instant(text, at=when, aggregate=aggregate)

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
        """A series from ``start`` to ``end`` every ``step`` s; :meth:`range_window` reads ``window_s``."""
        window = self.range_window(template, start=start, end=end, step=step, window_s=window_s)
        text = self.render_query(template, service=service, version=version, window=window)
        return self.run_range(text, start=start, end=end, step=step, aggregate=aggregate)

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
        """Baseline and canary over the same interval; see the module-level :func:`fetch_pair`."""
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- registry

ProviderFactory = Callable[..., MetricProvider]

# Built-ins are named by import path and loaded lazily: the registry does not
# import the drivers (which import this module), and a deployment that never
# uses New Relic never loads its module.
_BUILTIN: dict[str, str] = {
    "prometheus": "shipwarden.adapters.metrics.prometheus:PrometheusProvider",
    "newrelic": "shipwarden.adapters.metrics.newrelic:NewRelicProvider",
}
_REGISTERED: dict[str, ProviderFactory] = {}


def register_provider(kind: str, factory: ProviderFactory) -> None:
    """Add a provider type; refuses to silently replace an existing one."""
    if kind in _BUILTIN or kind in _REGISTERED:
        raise ValueError(f"metric provider {kind!r} is already registered")
    _REGISTERED[kind] = factory


def known_providers() -> list[str]:
    """Sorted names ``make_provider`` accepts."""
    return sorted({*_BUILTIN, *_REGISTERED})


def _factory(kind: str) -> ProviderFactory:
    if kind in _REGISTERED:
        return _REGISTERED[kind]
    if kind in _BUILTIN:
        module_name, _, attr = _BUILTIN[kind].partition(":")
        factory: ProviderFactory = getattr(importlib.import_module(module_name), attr)
        return factory
    raise UnknownProvider(f"unknown metric provider {kind!r}; known: {', '.join(known_providers())}")


def make_provider(kind: str, **config: object) -> MetricProvider:
    """Build a provider by type name from configuration (e.g. a policy file).

    Unknown names and configuration keys the provider does not take are
    refused with a clear error before anything is constructed, so a typo in
    a policy never yields a half-configured provider.
    """
    factory = _factory(kind)
    try:
        inspect.signature(factory).bind(**config)
    except TypeError as exc:
        raise ProviderConfigError(f"bad configuration for metric provider {kind!r}: {exc}") from None
    return factory(**config)
