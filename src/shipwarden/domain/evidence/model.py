"""Evidence: what CI proved about one commit, in a shape the gates can judge.

Reports arrive in tool formats (JUnit XML, SARIF, k6 JSON, Locust CSV); the
parsers in this package turn them into the small immutable types below and
nothing else.  Two rules shape the types:

* **Every parsed report remembers the sha256 of the exact bytes it came from**
  (``digest``).  A deployment record (D11) stores that digest, so an auditor
  can later prove which file was judged, byte for byte.
* **A malformed report is an error, never an empty report.**  An empty report
  would read as "0 failures" and could pass a gate; ``EvidenceError`` instead
  says what is wrong and where (line/column for XML and CSV, a JSON path such
  as ``$.runs[0].results[3].level`` for JSON), because the person fixing it is
  looking at the file.

``Evidence`` is the envelope the gates see: a report plus the id the store gave
it, the category it was submitted for (``unit``, ``integration``, ...), the
commit it belongs to and when it was collected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal


class EvidenceError(ValueError):
    """A report that cannot be trusted, with the place that is wrong.

    ``line``/``column`` are 1-based and set for text formats; ``path`` is a JSON
    path (``$.metrics.http_req_duration``) for JSON formats.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str = "<report>",
        line: int | None = None,
        column: int | None = None,
        path: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.column = column
        self.path = path
        super().__init__(str(self))

    @property
    def where(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.path is not None:
            where += f" at {self.path}"
        return where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def sha256_digest(data: bytes | str) -> str:
    """``sha256:<hex>`` of the exact source bytes (str is encoded as UTF-8)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()


# --- tests -------------------------------------------------------------------------------------------------

Outcome = Literal["passed", "failed", "error", "skipped"]


@dataclass(frozen=True)
class TestCaseResult:
    classname: str
    name: str
    outcome: Outcome
    time_s: float = 0.0
    message: str | None = None
    #: passed, but only after failing runs (a Surefire ``flakyFailure``, or a failed and a passed run of
    #: the same test in one suite); ``runs`` counts every run the report lists for it
    flaky: bool = False
    runs: int = 1

    __test__ = False  # not a pytest class, despite the name


@dataclass(frozen=True)
class SuiteResult:
    """One ``<testsuite>``'s own test cases, counted once per test (reruns folded in).

    ``flaky`` tests are counted as passed.  ``unlisted_failures`` are failures the suite's
    attributes declare that no listed test case (nor any rerun) accounts for: they are kept in
    ``failures`` — a report cannot hide a failure by not listing it.
    """

    name: str
    tests: int
    failures: int
    errors: int
    skipped: int
    time_s: float = 0.0
    cases: tuple[TestCaseResult, ...] = ()
    flaky: int = 0
    unlisted_failures: int = 0

    @property
    def passed(self) -> int:
        return max(self.tests - self.failures - self.errors - self.skipped, 0)


@dataclass(frozen=True)
class TestReport:
    """A parsed test report (JUnit XML or CircleCI's test metadata)."""

    suites: tuple[SuiteResult, ...]
    digest: str
    source: str = "<junit>"
    format: str = "junit"
    #: where the declared totals disagree with the test cases (the cases are what is counted)
    notes: tuple[str, ...] = ()

    __test__ = False

    @property
    def tests(self) -> int:
        return sum(s.tests for s in self.suites)

    @property
    def failures(self) -> int:
        return sum(s.failures for s in self.suites)

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.suites)

    @property
    def skipped(self) -> int:
        return sum(s.skipped for s in self.suites)

    @property
    def passed(self) -> int:
        return sum(s.passed for s in self.suites)

    @property
    def flaky(self) -> int:
        """Tests that passed only on a rerun (counted in ``passed`` too)."""
        return sum(s.flaky for s in self.suites)


# --- security ----------------------------------------------------------------------------------------------


class Severity(StrEnum):
    """Security severity buckets, GitHub code-scanning names (``none`` = not a security finding)."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    NONE = "none"


@dataclass(frozen=True)
class SecurityFinding:
    rule_id: str
    severity: Severity
    message: str
    #: where the severity came from: ``security-severity`` (a CVSS-like score), the scanner's own
    #: severity property (``vendor``, e.g. AppScan's ``Severity: High``) or the SARIF ``level``
    severity_source: Literal["security-severity", "vendor", "level"]
    score: float | None = None
    #: the result's SARIF level: its own, else its rule's default, else SARIF's default ``warning``
    level: str | None = None
    uri: str | None = None
    line: int | None = None
    tool: str = ""


@dataclass(frozen=True)
class SecurityReport:
    """A parsed security scan (SARIF 2.1.0).  Suppressed findings are kept apart, not counted."""

    tools: tuple[str, ...]
    findings: tuple[SecurityFinding, ...]
    digest: str
    source: str = "<sarif>"
    suppressed: tuple[SecurityFinding, ...] = ()
    format: str = "sarif"
    #: runs that did not complete, one sentence each (``executionSuccessful: false``, or error-level
    #: tool notifications and no results): such a scan is not evidence of a clean tree
    incomplete: tuple[str, ...] = ()

    def counts(self) -> dict[Severity, int]:
        out = dict.fromkeys(Severity, 0)
        for f in self.findings:
            out[f.severity] += 1
        return out

    def rule_ids(self, severity: Severity | None = None) -> tuple[str, ...]:
        """Distinct rule ids (sorted), optionally only those of one severity."""
        return tuple(sorted({f.rule_id for f in self.findings if severity is None or f.severity == severity}))


# --- performance -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerfReport:
    """Whole-run load test figures; ``None`` means the tool did not report the figure.

    Latencies are milliseconds, ``error_rate`` a fraction (0.01 = 1 %),
    ``throughput_rps`` requests per second over the run.
    """

    tool: Literal["k6", "locust"]
    requests: int | None
    p95_ms: float | None
    p99_ms: float | None
    error_rate: float | None
    throughput_rps: float | None
    digest: str
    source: str = "<perf>"
    #: the tool's own threshold verdicts (k6 only): expression -> passed
    tool_thresholds: Mapping[str, bool] = field(default_factory=dict)


# --- checklist facts (E3) ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupVerification:
    """A restore test of a backup: ``ok`` only if the backup was actually read back."""

    backup_id: str
    verified_at: datetime
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Migration:
    name: str
    reversible: bool


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback would need: the version to go back to and migrations that can be undone."""

    previous_version: str | None
    migrations: tuple[Migration, ...] = ()


@dataclass(frozen=True)
class CiCheck:
    """The final state of one CI workflow or job, as reported by a verified webhook or the CI API."""

    provider: str
    name: str
    status: str  # normalised: success, failed, canceled, running, ... (see adapters.ci.base.CiStatus)
    pipeline_id: str | None = None


Report = TestReport | SecurityReport | PerfReport | BackupVerification | RollbackPlan | CiCheck


@dataclass(frozen=True)
class Evidence:
    """One stored piece of evidence as the gates see it.

    ``category`` says what the evidence was submitted as: a test suite category
    (``unit``, ``integration``, ``security``), ``security-scan``,
    ``performance``, ``backup``, ``rollback-plan`` or ``ci``.
    """

    id: str
    category: str
    report: Report
    collected_at: datetime
    commit_sha: str | None = None
