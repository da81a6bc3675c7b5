"""Analysis policy: threshold checks on provider metrics, and the statistical judge's settings.

Two kinds of evidence decide whether a canary step may proceed (D5) or must
roll back (D8):

* **Threshold checks** (``MetricCheck``): a provider query is measured every
  ``interval``; each measurement is compared with a success/failure condition;
  budgets of failures, inconclusive results and provider errors turn the
  measurements into one metric phase.  The semantics follow Argo Rollouts
  (``failureLimit`` fails on failure number ``limit + 1``; errors are not
  failures; an error streak longer than ``consecutiveErrorLimit`` is an
  *error* phase) with two deliberate changes drawn from user pain (research
  §4 theme 6): "no data" is *inconclusive*, never a pass or a failure, and a
  metric can have a *consecutive* failure budget as well as a total one.
* **The statistical judge** (``JudgeSpec``): baseline vs canary comparison,
  see ``shipwarden.domain.judge``.

Conditions are plain data (``{"max": 0.01}``), never expressions: a policy
file must not be able to run code, and a typo must be a validation error.

Everything here is pure: measurements are values handed in by the caller;
time is the ``at`` field of each measurement.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from shipwarden.domain._base import (
    Duration,
    PolicyError,
    PolicyIssue,
    PositiveDuration,
    _Strict,
    parse_duration,
)
from shipwarden.domain._yaml import line_of, path_text, read_document
from shipwarden.domain.measurement import Measurement, NoData, ProviderError

# --------------------------------------------------------------------------- conditions


class Condition(_Strict):
    """An inclusive range test on one number: ``{"max": 0.01}``, ``{"min": 0.99}`` or both.

    ``min``/``max`` are inclusive because thresholds in runbooks are written
    that way ("error rate at most 1 %").
    """

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> Condition:
        if self.min is None and self.max is None:
            raise ValueError("a condition needs 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"'min' ({self.min}) is above 'max' ({self.max})")
        for bound in (self.min, self.max):
            if bound is not None and not math.isfinite(bound):
                raise ValueError("bounds must be finite numbers")
        return self

    def matches(self, value: float) -> bool:
        if self.min is not None and value < self.min:
            return False
        return not (self.max is not None and value > self.max)

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"{self.min:g} ≤ value ≤ {self.max:g}"
        if self.max is not None:
            return f"value ≤ {self.max:g}"
        return f"value ≥ {self.min:g}"


# --------------------------------------------------------------------------- metric checks


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ALLOWED = {"service", "version", "window"}


class MetricCheck(_Strict):
    """One provider metric measured repeatedly and compared with conditions.

    ``query`` is a template for the provider adapter; ``{service}``,
    ``{version}`` and ``{window}`` are filled in by the caller.  Limits count
    like Argo Rollouts: a budget of N is exceeded by the N+1-th event.

    ``window`` is the look-back ``{window}`` stands for (default: ``interval``,
    else 60 s).  PromQL's ``rate()`` is empty — "no data" — unless two scrapes
    fall inside it, so keep it at least four scrape intervals long (Grafana's
    ``$__rate_interval`` rule) even when measuring more often than that.
    """

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")
    provider: Literal["prometheus", "newrelic"] = "prometheus"
    query: str = Field(min_length=1)
    interval: PositiveDuration | None = None
    window: PositiveDuration | None = None
    count: int | None = Field(None, ge=1, le=100_000)
    initial_delay: Duration = Field(0.0, alias="initialDelay")
    success_condition: Condition | None = Field(None, alias="successCondition")
    failure_condition: Condition | None = Field(None, alias="failureCondition")
    # None means "0, unless consecutiveFailureLimit is set" (see effective_failure_limit).
    failure_limit: int | None = Field(None, ge=-1, alias="failureLimit")
    consecutive_failure_limit: int | None = Field(None, ge=0, alias="consecutiveFailureLimit")
    inconclusive_limit: int = Field(0, ge=-1, alias="inconclusiveLimit")
    consecutive_error_limit: int = Field(4, ge=0, alias="consecutiveErrorLimit")
    error_retry_interval: PositiveDuration = Field(10.0, alias="errorRetryInterval")
    min_requests: int = Field(0, ge=0, alias="minRequests")

    @field_validator("query")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        # Only {service}, {version} and {window} are placeholders; other braces (PromQL label
        # matchers such as x{code=~"5.."}) are query syntax and stay as written.
        unknown = sorted({n for n in _PLACEHOLDER.findall(v) if n not in _ALLOWED})
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {unknown}; allowed: {{service}}, {{version}}, {{window}}"
            )
        return v

    @model_validator(mode="after")
    def _conditions(self) -> MetricCheck:
        if self.success_condition is None and self.failure_condition is None:
            raise ValueError("declare 'successCondition', 'failureCondition' or both")
        if self.count is not None and self.count > 1 and not self.interval:
            raise ValueError("'count' > 1 needs a positive 'interval'")
        return self

    @property
    def effective_failure_limit(self) -> int:
        """Total failure budget; -1 = unlimited.

        Defaults to 0 (fail on the first failure, as Argo and Flagger do) —
        except when only a consecutive budget is declared: a user who writes
        ``consecutiveFailureLimit: 2`` wants blips ignored, and a silent total
        budget of 0 would defeat that.
        """
        if self.failure_limit is not None:
            return self.failure_limit
        return -1 if self.consecutive_failure_limit is not None else 0

    @property
    def look_back(self) -> float:
        """Seconds ``{window}`` covers in each measurement."""
        return self.window or self.interval or 60.0

    @property
    def planned_count(self) -> int | None:
        """Measurements to take; None = until stopped (interval without count: Argo's background analysis)."""
        if self.count is not None:
            return self.count
        return None if self.interval else 1

    def render_query(self, service: str, version: str, window: str) -> str:
        values = {"service": service, "version": version, "window": window}
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), self.query)


# --------------------------------------------------------------------------- judge settings

SEQUENTIAL_TOLERANCE = 0.1
LATENCY_SEQUENTIAL_TOLERANCE = 0.05
KAYENTA_TOLERANCE = 0.25


class JudgeMetric(_Strict):
    """Settings of one compared signal (error rate or latency).

    ``tolerance`` is the relative worsening that is still acceptable, and its
    default depends on the judge because the two judges use it differently:
    the sequential judge's null hypothesis is "canary rate ≤ (1 + tolerance)
    × baseline rate" (default 0.1), the Mann-Whitney judge uses it as
    Kayenta's band of ± tolerance × |Hodges-Lehmann estimate| (default 0.25,
    Kayenta's value).  ``regression`` is the ratio the sequential judge must
    rule out (at level ``beta``) before it passes early.  For latency, the
    sequential judge's ratio is the ratio of the shares of requests slower
    than the baseline's ``quantile``: see docs/judge.md for how latency
    shifts map onto it.
    """

    enabled: bool = True
    direction: Literal["increase", "decrease", "either"] = "increase"
    tolerance: float | None = Field(None, ge=0.0, le=10.0)
    regression: float = Field(1.75, gt=1.0, le=100.0)
    confidence: float = Field(0.98, gt=0.5, lt=1.0)
    critical: bool = True
    allowed_increase: float = Field(1.0, ge=1.0, alias="allowedIncrease")
    allowed_decrease: float = Field(1.0, gt=0.0, le=1.0, alias="allowedDecrease")

    #: the sequential judge's tolerance when none is given (per signal: see LatencyMetric)
    _sequential_tolerance: ClassVar[float] = SEQUENTIAL_TOLERANCE

    def tolerance_for(self, algorithm: str) -> float:
        if self.tolerance is not None:
            return self.tolerance
        return self._sequential_tolerance if algorithm == "sequential" else KAYENTA_TOLERANCE

    @model_validator(mode="after")
    def _regression_above_tolerance(self) -> JudgeMetric:
        tol = self.tolerance_for("sequential")
        if self.regression <= 1.0 + tol:
            raise ValueError(
                f"'regression' ({self.regression:g}) must be above 1 + tolerance ({1 + tol:g}): "
                "the judge needs a gap between 'acceptable' and 'must be caught'"
            )
        return self


class ErrorRateMetric(JudgeMetric):
    """Error-rate comparison.

    ``negligible`` is an absolute error rate (e.g. 0.01 = 1 %) under which the
    sequential judge passes the metric early whatever the baseline does, once
    the canary's own requests show its rate is below it (an always-valid test
    at level ``beta``).  Healthy services often have no errors in either arm,
    which leaves a *ratio* test nothing to compare until the window ends; this
    is the answer to "nothing is failing on either side".  Off by default.
    """

    negligible: float | None = Field(None, gt=0.0, lt=1.0)


class LatencyMetric(JudgeMetric):
    """Latency comparison; ``quantile`` is where the canary is compared with the baseline.

    The sequential judge compares the shares of requests slower than the
    baseline's ``quantile``, and a latency shift moves that share less than
    it moves an error rate: +20 % on p99 is a ratio of only ~1.5 for a wide
    (σ ≈ 0.9) log-normal.  Hence the tighter defaults — ``tolerance`` 0.05 and
    ``regression`` 1.5 — so that +20 % p99 is inside "must be caught" (chosen
    on the judge benchmark's tuning seed; docs/judge.md).
    """

    _sequential_tolerance: ClassVar[float] = LATENCY_SEQUENTIAL_TOLERANCE
    regression: float = Field(1.5, gt=1.0, le=100.0)
    quantile: float = Field(0.95, gt=0.5, lt=1.0)
    #: the sequential judge never calls a request answered within this many ms slow, whatever the
    #: baseline's quantile: at sub-millisecond latencies a canary's smaller share of traffic alone
    #: (colder processes, fewer pooled connections) moves the tail by microseconds, and an exact
    #: test on a tail that thin rolls back identical versions
    floor_ms: float = Field(2.0, ge=0.0, le=600_000.0, alias="floorMs")


class JudgeMetrics(_Strict):
    error_rate: ErrorRateMetric = Field(default_factory=ErrorRateMetric, alias="errorRate")
    latency: LatencyMetric = Field(default_factory=LatencyMetric)


def _warmup(v: Any) -> Any:
    """``auto`` or a duration (``30s``, ``2m``, a number of seconds)."""
    if isinstance(v, str) and v.strip().lower() == "auto":
        return "auto"
    try:
        return parse_duration(v)
    except ValueError:
        raise ValueError(f"invalid warmup {v!r}: use 'auto' or a duration like '30s', '2m'") from None


def _judge_shorthand(v: Any) -> Any:
    """``judge: sequential`` is shorthand for ``judge: {algorithm: sequential}``."""
    return {"algorithm": v} if isinstance(v, str) else v


class JudgeSpec(_Strict):
    """The statistical baseline-vs-canary judge.

    ``alpha`` bounds the probability of rolling back a canary that is within
    tolerance (the sequential judge spends it over all metric tests,
    Bonferroni).  ``samples`` is the planned number of analysis intervals: the
    Mann-Whitney judge decides after exactly that many, the sequential judge
    at most that many.  ``minRequests`` per arm is needed before any *pass*.
    """

    algorithm: Literal["sequential", "mann-whitney"] = "sequential"
    alpha: float = Field(0.01, gt=0.0, lt=0.5)
    beta: float = Field(0.05, gt=0.0, lt=0.5)
    samples: int = Field(30, ge=2, le=10_000)
    min_requests: int = Field(200, ge=0, alias="minRequests")
    pass_score: float = Field(90.0, ge=0.0, le=100.0, alias="passScore")
    #: samples from the first ``warmup`` of a run are recorded but not judged (Kayenta's
    #: ``beginCanaryAnalysisAfterMins``): fresh canary processes answer slower than warm ones.
    #: ``auto`` (the default): the sequential judge does not judge its first intervals (three, at
    #: most a sixth of ``samples``) and holds back failure evidence that fades; a duration
    #: replaces that with an explicit warm-up for both judges (``0s``: judge from the start)
    warmup: Annotated[float | Literal["auto"], BeforeValidator(_warmup)] = "auto"
    #: the end of the window for a metric that could not have caught a ``regression``-times-worse
    #: canary at the traffic seen (its ``detectableRatio`` is above ``regression``): "pass" on the
    #: absence of failure evidence, as Kayenta does, or "inconclusive" — hold for a human rather
    #: than promote on too little data (sequential judge)
    undersized: Literal["pass", "inconclusive"] = "pass"
    metrics: JudgeMetrics = Field(default_factory=JudgeMetrics)

    @property
    def warmup_seconds(self) -> float:
        """The explicit warm-up skipped before any judge sees a sample (0 with ``auto``)."""
        return 0.0 if self.warmup == "auto" else float(self.warmup)

    @model_validator(mode="after")
    def _something_enabled(self) -> JudgeSpec:
        if not (self.metrics.error_rate.enabled or self.metrics.latency.enabled):
            raise ValueError("enable at least one judge metric")
        return self


class AnalysisSpec(_Strict):
    """What a canary step (or blue-green pre/post-promotion) checks; embed as ``analysis:``."""

    metrics: list[MetricCheck] = Field(default_factory=list)
    judge: Annotated[JudgeSpec | None, BeforeValidator(_judge_shorthand)] = None

    @model_validator(mode="after")
    def _check(self) -> AnalysisSpec:
        if not self.metrics and self.judge is None:
            raise ValueError("an analysis needs 'metrics', a 'judge' or both")
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metric name(s) declared twice: {dupes}")
        return self


# --------------------------------------------------------------------------- measurements




class Outcome(StrEnum):
    SUCCESSFUL = "successful"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


class Phase(StrEnum):
    RUNNING = "running"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"

    @property
    def done(self) -> bool:
        return self is not Phase.RUNNING


@dataclass(frozen=True)
class MeasurementOutcome:
    measurement: Measurement
    outcome: Outcome
    why: str


def classify(check: MetricCheck, m: Measurement) -> MeasurementOutcome:
    """One measurement → successful / failed / inconclusive / error (Argo's rules, no-data made explicit)."""
    if isinstance(m, ProviderError):
        return MeasurementOutcome(m, Outcome.ERROR, f"provider error: {m}")
    if isinstance(m, NoData):
        return MeasurementOutcome(m, Outcome.INCONCLUSIVE, f"no data: {m.reason}")
    if not math.isfinite(m.value):
        return MeasurementOutcome(m, Outcome.INCONCLUSIVE, f"no data: the value is {m.value}")
    if check.min_requests > 0:
        if m.requests is None:
            why = "the provider reported no request count; minRequests cannot be checked"
            return MeasurementOutcome(m, Outcome.INCONCLUSIVE, why)
        if m.requests < check.min_requests:
            return MeasurementOutcome(
                m, Outcome.INCONCLUSIVE, f"only {m.requests} requests < minRequests {check.min_requests}"
            )
    fail, ok = check.failure_condition, check.success_condition
    if fail is not None and fail.matches(m.value):
        why = f"{m.value:g} meets the failure condition {fail.describe()}"
        return MeasurementOutcome(m, Outcome.FAILED, why)
    if ok is not None:
        if ok.matches(m.value):
            return MeasurementOutcome(m, Outcome.SUCCESSFUL, f"{m.value:g} meets {ok.describe()}")
        if fail is None:
            return MeasurementOutcome(
                m, Outcome.FAILED, f"{m.value:g} does not meet the success condition {ok.describe()}"
            )
        return MeasurementOutcome(
            m, Outcome.INCONCLUSIVE, f"{m.value:g} meets neither {ok.describe()} nor the failure condition"
        )
    return MeasurementOutcome(m, Outcome.SUCCESSFUL, f"{m.value:g} does not meet the failure condition")


@dataclass(frozen=True)
class MetricResult:
    """The phase of one metric plus the counts that explain it."""

    name: str
    phase: Phase
    reason: str
    measured: int
    successful: int
    failed: int
    inconclusive: int
    errors: int
    consecutive_failures: int
    consecutive_errors: int
    decided_at: float | None  # ``at`` of the measurement that decided the phase
    outcomes: tuple[MeasurementOutcome, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase.value,
            "reason": self.reason,
            "measured": self.measured,
            "successful": self.successful,
            "failed": self.failed,
            "inconclusive": self.inconclusive,
            "errors": self.errors,
            "consecutiveFailures": self.consecutive_failures,
            "consecutiveErrors": self.consecutive_errors,
            "decidedAt": self.decided_at,
        }


def _exceeds(n: int, limit: int) -> bool:
    return limit >= 0 and n > limit


def evaluate_measurements(check: MetricCheck, measurements: Iterable[Measurement]) -> MetricResult:
    """Fold measurements (in time order) into the metric's phase.

    The first budget exceeded decides, at the measurement that exceeded it;
    later measurements do not change a decided phase (the controller has
    already acted on it).  Order of checks per measurement mirrors Argo:
    failures, then inconclusive, then errors, then the planned count.

    * ``failureLimit`` N: failed when total failures > N (``-1`` = never).
    * ``consecutiveFailureLimit`` N: failed when a streak of failures > N;
      only a *successful* measurement ends a streak — no data or an error is
      not evidence that the problem went away.
    * ``inconclusiveLimit`` N: inconclusive when inconclusive results > N.
    * ``consecutiveErrorLimit`` N: error when provider errors in a row > N;
      any completed measurement ends the streak.
    * ``count``: after that many completed (non-error) measurements the
      metric is successful — but only if at least one measurement actually
      succeeded; a run of nothing but "no data" never passes.
    """
    ordered = sorted(measurements, key=lambda m: m.at)
    ok = bad = unsure = errs = streak_fail = streak_err = 0
    outcomes: list[MeasurementOutcome] = []
    fl = check.effective_failure_limit
    cfl = check.consecutive_failure_limit

    def result(phase: Phase, reason: str, at: float | None) -> MetricResult:
        return MetricResult(
            check.name, phase, reason, ok + bad + unsure, ok, bad, unsure, errs,
            streak_fail, streak_err, at, tuple(outcomes),
        )  # fmt: skip

    for m in ordered:
        o = classify(check, m)
        outcomes.append(o)
        if o.outcome is Outcome.ERROR:
            errs += 1
            streak_err += 1
        else:
            streak_err = 0
        if o.outcome is Outcome.FAILED:
            bad += 1
            streak_fail += 1
        elif o.outcome is Outcome.SUCCESSFUL:
            ok += 1
            streak_fail = 0
        elif o.outcome is Outcome.INCONCLUSIVE:
            unsure += 1

        if o.outcome is Outcome.FAILED and _exceeds(bad, fl):
            return result(
                Phase.FAILED, f"{bad} failed measurement(s) > failureLimit {fl}; last: {o.why}", m.at
            )
        if o.outcome is Outcome.FAILED and cfl is not None and streak_fail > cfl:
            return result(
                Phase.FAILED,
                f"{streak_fail} failures in a row > consecutiveFailureLimit {cfl}; last: {o.why}",
                m.at,
            )
        if o.outcome is Outcome.INCONCLUSIVE and _exceeds(unsure, check.inconclusive_limit):
            return result(
                Phase.INCONCLUSIVE,
                f"{unsure} inconclusive measurement(s) > inconclusiveLimit {check.inconclusive_limit}; "
                f"last: {o.why}",
                m.at,
            )
        if o.outcome is Outcome.ERROR and streak_err > check.consecutive_error_limit:
            return result(
                Phase.ERROR,
                f"{streak_err} provider errors in a row > consecutiveErrorLimit "
                f"{check.consecutive_error_limit}; last: {o.why}",
                m.at,
            )
        planned = check.planned_count
        if planned is not None and ok + bad + unsure >= planned:
            if ok == 0:
                return result(
                    Phase.INCONCLUSIVE,
                    f"all {planned} planned measurement(s) taken but none succeeded "
                    f"({bad} failed, {unsure} inconclusive)",
                    m.at,
                )
            return result(
                Phase.SUCCESSFUL,
                f"{ok} of {planned} measurement(s) successful; {bad} failed (limit {fl}), "
                f"{unsure} inconclusive (limit {check.inconclusive_limit})",
                m.at,
            )
    return result(
        Phase.RUNNING,
        f"{ok + bad + unsure} measurement(s) so far: {ok} successful, {bad} failed, {unsure} inconclusive, "
        f"{errs} provider error(s)",
        None,
    )


def next_measurement_at(check: MetricCheck, started_at: float, measurements: Sequence[Measurement]) -> float:
    """When the controller should take the next measurement.

    Errors are retried after ``errorRetryInterval`` rather than a full
    interval, so a flaky provider turns into an *error* phase in tens of
    seconds, not in ``consecutiveErrorLimit`` × interval (Argo does the same).
    """
    if not measurements:
        return started_at + check.initial_delay
    last = max(measurements, key=lambda m: m.at)
    if isinstance(last, ProviderError):
        return last.at + check.error_retry_interval
    return last.at + (check.interval or 0.0)


_SEVERITY = {Phase.FAILED: 4, Phase.ERROR: 3, Phase.INCONCLUSIVE: 2, Phase.RUNNING: 1, Phase.SUCCESSFUL: 0}


def combine(results: Iterable[MetricResult]) -> Phase:
    """The analysis phase: the worst metric phase (failed > error > inconclusive > running > successful).

    A failed or errored metric aborts at once (Argo aborts on both); an
    inconclusive one pauses for a human.  No metrics → running, never a pass.
    """
    phases = [r.phase for r in results]
    if not phases:
        return Phase.RUNNING
    return max(phases, key=lambda p: _SEVERITY[p])


# --------------------------------------------------------------------------- loading from text


def load_judge_spec_text(text: str, source: str = "<judge policy>") -> JudgeSpec:
    """Parse a judge policy (YAML or JSON): either a ``JudgeSpec`` mapping or an analysis with ``judge:``.

    Raises ``PolicyError`` whose issues carry file:line and the field path.
    """
    doc = read_document(text, source)  # the policy loader's reader: same limits, same errors
    root, data = doc.root, doc.data
    if data is None:
        return JudgeSpec()
    if not isinstance(data, dict):
        raise PolicyError([PolicyIssue(source, 1, "", "a judge policy is a mapping")])
    prefix: tuple[Any, ...] = ()
    if "judge" in data and not {"algorithm", "alpha"} & data.keys():
        prefix = ("judge",)
        data = _judge_shorthand(data["judge"])
        if data is None:
            return JudgeSpec()
    try:
        return JudgeSpec.model_validate(data)
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            loc = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and p[:1].isupper()))
            path = path_text(loc)
            msg = err["msg"].removeprefix("Value error, ")
            issues.append(PolicyIssue(source, line_of(root, loc), path, msg))
        raise PolicyError(issues) from None
