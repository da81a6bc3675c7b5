"""Gates: may this commit be approved (D1, D2, D3) and deployed (E3)?

This module holds the policy section that declares the gates and the one pure
function that judges them, ``evaluate_gates``.  Drivers and parsers only bring
facts (``Evidence``, ``Approval``, ``ChangeFacts``); every comparison with a
threshold happens here, so there is exactly one place to read to know why a
change was or was not approved.

Principles, in order of importance:

1. **Missing evidence fails.**  No report for a required suite, no scan, no
   backup check → a failed gate with ``reason="missing"``.  Nothing in this
   module treats absence as success; a policy that declares a gate cannot be
   satisfied by silence.
2. **Evidence belongs to a commit.**  When ``commit_sha`` is given, test,
   scan, performance and CI evidence and all approvals recorded for another
   commit are ignored: a green run of yesterday's head says nothing about
   today's.
3. **When several reports exist, the conservative reading wins** for tests and
   security scans: all reports of the category are added up (sharded suites,
   several scanners), so a later green upload cannot hide an earlier red one.
   For CI stages and load tests the *latest* result decides — a re-run of a
   workflow or a load test is a new measurement of the same thing, which is
   how CircleCI and GitHub treat re-runs too.
4. **Every result says why and on what**: ``reason`` is a short code
   (``ok``/``missing``/``stale``/``violated``), ``detail`` a sentence for
   humans, ``evidence_ids`` the stored evidence it was judged on (D11).

Change classification (D3) is a separate pure function, ``classify_change``:
rules in ``changeControl.nonStandard`` each list conditions (``paths`` globs,
``labels``, ``minLinesChanged``, ``minFilesChanged``); **a rule matches when
all the conditions it declares hold**, and a change is non-standard when any
rule matches — write two rules for "either".  A non-standard change needs an
approval from every role named by the matching rules, each from a different
person who is not the change's author.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from shipwarden.domain._base import PositiveDuration, _Strict
from shipwarden.domain.evidence.model import (
    BackupVerification,
    CiCheck,
    Evidence,
    PerfReport,
    RollbackPlan,
    SecurityFinding,
    SecurityReport,
    Severity,
    TestReport,
)

REQUIRED_SUITES = ("unit", "integration", "security")
_CATEGORY = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_ROLE = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


# --- policy section ----------------------------------------------------------------------------------------


class SuiteRule(_Strict):
    """Pass rule for one test-suite category."""

    min_tests: int = Field(1, ge=0, alias="minTests")
    max_failures: int = Field(0, ge=0, alias="maxFailures")
    max_errors: int = Field(0, ge=0, alias="maxErrors")
    #: ``None`` allows any number of skipped tests
    max_skipped: int | None = Field(None, ge=0, alias="maxSkipped")
    #: tests that passed only on a rerun count as passed; ``None`` allows any number, ``0`` refuses them
    max_flaky: int | None = Field(None, ge=0, alias="maxFlaky")


class CiRule(_Strict):
    """CI workflows/jobs (by name) whose latest run must have succeeded (D2)."""

    required: list[str] = Field(min_length=1)


SarifLevel = Literal["error", "warning", "note", "none"]


class ToolRule(_Strict):
    """How one scanner's findings count (matched on the SARIF ``tool.driver.name``, any case).

    ``levels``: only results at these SARIF levels are security findings — a linter's
    ``warning``-level style rules are not (``ESLint: {levels: [error]}``); ``[]`` counts none of
    the tool's results (its scan must still have completed).
    """

    levels: list[SarifLevel]


class SecurityLimits(_Strict):
    """Maximum number of findings per severity; unlisted severities are unlimited."""

    max_findings: dict[Severity, int] = Field(
        default_factory=lambda: {Severity.CRITICAL: 0, Severity.HIGH: 0}, alias="maxFindings"
    )
    forbidden_rules: list[str] = Field(default_factory=list, alias="forbiddenRules")
    #: the scan must have completed within this long before the evaluation
    max_age: PositiveDuration | None = Field(None, alias="maxAge")
    #: per-tool rules, by SARIF tool name; tools not listed count every result
    tools: dict[str, ToolRule] = Field(default_factory=dict)

    @field_validator("tools")
    @classmethod
    def _tool_names(cls, v: dict[str, ToolRule]) -> dict[str, ToolRule]:
        names = [n.casefold() for n in v]
        if len(set(names)) != len(names) or any(not n.strip() for n in names):
            raise ValueError("tool names must be non-empty and unique (compared in any case)")
        return v

    def counts(self, finding: SecurityFinding) -> bool:
        """Whether this finding counts against the limits (its tool's ``levels``, if listed)."""
        tool = finding.tool.casefold()
        for name, rule in self.tools.items():
            if name.casefold() == tool:
                return (finding.level or "warning") in rule.levels
        return True

    @field_validator("max_findings")
    @classmethod
    def _non_negative(cls, v: dict[Severity, int]) -> dict[Severity, int]:
        for sev, n in v.items():
            if n < 0:
                raise ValueError(f"maxFindings.{sev.value} cannot be negative")
        return v


class PerfThresholds(_Strict):
    p95_ms: float | None = Field(None, gt=0, alias="p95Ms")
    p99_ms: float | None = Field(None, gt=0, alias="p99Ms")
    max_error_rate: float | None = Field(None, ge=0, le=1, alias="maxErrorRate")
    min_throughput_rps: float | None = Field(None, ge=0, alias="minThroughputRps")
    max_age: PositiveDuration | None = Field(None, alias="maxAge")
    #: the load tool's own threshold verdicts (k6 ``thresholds``): ``enforce`` fails the gate on any
    #: threshold the tool itself saw fail, even when this policy's limits are looser; ``ignore`` does not
    tool_thresholds: Literal["enforce", "ignore"] = Field("enforce", alias="toolThresholds")

    @model_validator(mode="after")
    def _something(self) -> PerfThresholds:
        if all(v is None for v in (self.p95_ms, self.p99_ms, self.max_error_rate, self.min_throughput_rps)):
            raise ValueError("declare at least one of p95Ms, p99Ms, maxErrorRate, minThroughputRps")
        return self


class UatSignOff(_Strict):
    role: str = Field(pattern=_ROLE)


class BackupRule(_Strict):
    max_age: PositiveDuration = Field(24 * 3600.0, alias="maxAge")


class RollbackRule(_Strict):
    require_previous_version: bool = Field(True, alias="requirePreviousVersion")
    require_reversible_migrations: bool = Field(True, alias="requireReversibleMigrations")


class Checklist(_Strict):
    """Pre-deployment checklist (E3).  Scan limits, backup and rollback checks are on by default."""

    security_scan: SecurityLimits | None = Field(default_factory=SecurityLimits, alias="securityScan")
    performance: PerfThresholds | None = None
    uat_sign_off: UatSignOff | None = Field(None, alias="uatSignOff")
    backup: BackupRule | None = Field(default_factory=BackupRule)
    rollback_plan: RollbackRule | None = Field(default_factory=RollbackRule, alias="rollbackPlan")


class ChangeRule(_Strict):
    """A rule that makes a change non-standard; all declared conditions must hold."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    paths: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    min_lines_changed: int | None = Field(None, ge=1, alias="minLinesChanged")
    min_files_changed: int | None = Field(None, ge=1, alias="minFilesChanged")
    approvers: list[str] = Field(min_length=1)

    @field_validator("paths")
    @classmethod
    def _globs(cls, v: list[str]) -> list[str]:
        for p in v:
            compile_glob(p)
        return v

    @field_validator("approvers")
    @classmethod
    def _roles(cls, v: list[str]) -> list[str]:
        for role in v:
            if not re.fullmatch(_ROLE, role):
                raise ValueError(f"invalid role name {role!r}")
        if len(set(v)) != len(v):
            raise ValueError("a role is listed twice")
        return v

    @model_validator(mode="after")
    def _has_condition(self) -> ChangeRule:
        if not (self.paths or self.labels or self.min_lines_changed or self.min_files_changed):
            raise ValueError("declare at least one of paths, labels, minLinesChanged, minFilesChanged")
        return self


class ChangeControl(_Strict):
    non_standard: list[ChangeRule] = Field(default_factory=list, alias="nonStandard")

    @model_validator(mode="after")
    def _unique(self) -> ChangeControl:
        names = [r.name for r in self.non_standard]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique: {', '.join(dupes)}")
        return self


class GatePolicy(_Strict):
    """The ``gates`` section of a policy file."""

    suites: dict[str, SuiteRule]
    ci: CiRule | None = None
    checklist: Checklist = Field(default_factory=Checklist)
    change_control: ChangeControl = Field(default_factory=ChangeControl, alias="changeControl")

    @field_validator("suites")
    @classmethod
    def _required_suites(cls, v: dict[str, SuiteRule]) -> dict[str, SuiteRule]:
        for name in v:
            if not _CATEGORY.fullmatch(name):
                raise ValueError(f"invalid suite category {name!r}")
        missing = [c for c in REQUIRED_SUITES if c not in v]
        if missing:
            need = "every change must pass unit, integration and security tests"
            raise ValueError(f"{need}; missing suites: {', '.join(missing)}")
        return v


# --- facts -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    """A person's approval, given in a role.  ``scope`` separates change control from UAT sign-off."""

    user: str
    role: str
    scope: Literal["change", "uat"]
    at: datetime
    commit_sha: str | None = None


@dataclass(frozen=True)
class ChangeFacts:
    """What a change touches, as measured by the VCS adapter (``git diff`` against main)."""

    paths: tuple[str, ...]
    lines_changed: int
    labels: frozenset[str] = frozenset()
    author: str | None = None
    files_changed: int | None = None  # defaults to len(paths)

    @property
    def file_count(self) -> int:
        return self.files_changed if self.files_changed is not None else len(self.paths)


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    reason: Literal["ok", "missing", "stale", "violated"]
    detail: str
    evidence_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleMatch:
    rule: str
    approvers: tuple[str, ...]
    because: tuple[str, ...]


@dataclass(frozen=True)
class ChangeClassification:
    standard: bool
    matches: tuple[RuleMatch, ...] = ()
    required_roles: frozenset[str] = field(default_factory=frozenset)


# --- globs -------------------------------------------------------------------------------------------------


def compile_glob(pattern: str) -> re.Pattern[str]:
    """Compile a path glob matched against the whole repo-relative path.

    ``*`` and ``?`` stay inside one directory; ``**`` spans directories
    (``migrations/**``, ``**/*.sql``); ``[abc]``/``[!abc]`` are classes.  A
    leading ``/`` is ignored.  Unlike ``fnmatch``, ``*`` never crosses ``/``,
    so ``src/*.py`` does not silently cover the whole tree.
    """
    if not pattern or pattern.strip() != pattern:
        raise ValueError(f"invalid path glob {pattern!r}")
    p = pattern.lstrip("/")
    out, i = "", 0
    while i < len(p):
        c = p[i]
        if p.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif p.startswith("**", i):
            out += ".*"
            i += 2
        elif c == "*":
            out += "[^/]*"
            i += 1
        elif c == "?":
            out += "[^/]"
            i += 1
        elif c == "[":
            end = p.find("]", i + 2)
            if end == -1:
                raise ValueError(f"invalid path glob {pattern!r}: unclosed '['")
            body = p[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out += "[" + body.replace("\\", "\\\\") + "]"
            i = end + 1
        else:
            out += re.escape(c)
            i += 1
    try:
        return re.compile(out + r"\Z")
    except re.error as exc:
        raise ValueError(f"invalid path glob {pattern!r}: {exc}") from None


# --- classification (D3) -----------------------------------------------------------------------------------


def classify_change(control: ChangeControl, change: ChangeFacts) -> ChangeClassification:
    """Standard unless a ``nonStandard`` rule matches; collects the roles that must approve."""
    labels = {label.casefold() for label in change.labels}
    matches: list[RuleMatch] = []
    for rule in control.non_standard:
        because: list[str] = []
        if rule.paths:
            globs = [(g, compile_glob(g)) for g in rule.paths]
            hits = sorted({f"{p} ~ {g}" for p in change.paths for g, rx in globs if rx.match(p.lstrip("/"))})
            if not hits:
                continue
            because.append("touches " + ", ".join(hits[:5]) + (" …" if len(hits) > 5 else ""))
        if rule.labels:
            hit_labels = sorted(label for label in rule.labels if label.casefold() in labels)
            if not hit_labels:
                continue
            because.append("labelled " + ", ".join(hit_labels))
        if rule.min_lines_changed is not None:
            if change.lines_changed < rule.min_lines_changed:
                continue
            because.append(f"{change.lines_changed} lines changed (≥ {rule.min_lines_changed})")
        if rule.min_files_changed is not None:
            if change.file_count < rule.min_files_changed:
                continue
            because.append(f"{change.file_count} files changed (≥ {rule.min_files_changed})")
        matches.append(RuleMatch(rule.name, tuple(rule.approvers), tuple(because)))
    roles = frozenset(r for m in matches for r in m.approvers)
    return ChangeClassification(standard=not matches, matches=tuple(matches), required_roles=roles)


def missing_approvals(
    classification: ChangeClassification,
    approvals: Iterable[Approval],
    *,
    author: str | None = None,
    commit_sha: str | None = None,
) -> frozenset[str]:
    """Roles still without a valid change approval.

    Valid: scope ``change``, for this commit (when given), not by the author,
    and each required role covered by a *different* person (a maximum
    bipartite matching, so the order approvals arrived in does not matter).
    """
    by_role: dict[str, set[str]] = {r: set() for r in classification.required_roles}
    for a in approvals:
        if a.scope != "change" or a.role not in by_role or (author is not None and a.user == author):
            continue
        if commit_sha is not None and a.commit_sha != commit_sha:
            continue
        by_role[a.role].add(a.user)
    holder: dict[str, str] = {}  # user -> role

    def assign(role: str, seen: set[str]) -> bool:
        for user in sorted(by_role[role]):
            if user in seen:
                continue
            seen.add(user)
            if user not in holder or assign(holder[user], seen):
                holder[user] = role
                return True
        return False

    for role in sorted(by_role):
        assign(role, set())
    return frozenset(by_role) - set(holder.values())


# --- evaluation --------------------------------------------------------------------------------------------

_COMMIT_BOUND = (TestReport, SecurityReport, PerfReport, CiCheck)


def _ok(gate: str, detail: str, ids: Sequence[str]) -> GateResult:
    return GateResult(gate, True, "ok", detail, tuple(ids))


def _fail(
    gate: str, reason: Literal["missing", "stale", "violated"], detail: str, ids: Sequence[str] = ()
) -> GateResult:
    return GateResult(gate, False, reason, detail, tuple(ids))


def _of(evidence: Sequence[Evidence], category: str, kind: type) -> list[Evidence]:
    return sorted(
        (e for e in evidence if e.category == category and isinstance(e.report, kind)),
        key=lambda e: (e.collected_at, e.id),
    )


def _suite_gate(category: str, rule: SuiteRule, items: list[Evidence]) -> GateResult:
    gate = f"suite:{category}"
    if not items:
        return _fail(gate, "missing", f"missing: no {category} test report for this commit")
    ids = [e.id for e in items]
    reports = [e.report for e in items if isinstance(e.report, TestReport)]
    tests = sum(r.tests for r in reports)
    failures = sum(r.failures for r in reports)
    errors = sum(r.errors for r in reports)
    skipped = sum(r.skipped for r in reports)
    flaky = sum(r.flaky for r in reports)
    problems = []
    if tests < rule.min_tests:
        problems.append(f"{tests} tests ran, at least {rule.min_tests} required")
    if failures > rule.max_failures:
        problems.append(f"{failures} failures (max {rule.max_failures})")
    if errors > rule.max_errors:
        problems.append(f"{errors} errors (max {rule.max_errors})")
    if rule.max_skipped is not None and skipped > rule.max_skipped:
        problems.append(f"{skipped} skipped (max {rule.max_skipped})")
    if rule.max_flaky is not None and flaky > rule.max_flaky:
        names = sorted(
            {f"{c.classname}.{c.name}" for r in reports for s in r.suites for c in s.cases if c.flaky}
        )
        problems.append(f"{flaky} flaky (passed on rerun; max {rule.max_flaky}: {', '.join(names[:5])})")
    summary = f"{tests} tests, {failures} failures, {errors} errors, {skipped} skipped"
    if flaky:
        summary += f", {flaky} flaky"
    summary += f" in {len(items)} report(s)"
    if problems:
        return _fail(gate, "violated", "; ".join(problems) + f" — {summary}", ids)
    return _ok(gate, summary, ids)


def _ci_gate(name: str, items: list[Evidence]) -> GateResult:
    gate = f"ci:{name}"
    runs = [e for e in items if isinstance(e.report, CiCheck) and e.report.name == name]
    if not runs:
        return _fail(gate, "missing", f"missing: no result from CI stage {name!r}")
    last = runs[-1]
    assert isinstance(last.report, CiCheck)
    if last.report.status != "success":
        return _fail(gate, "violated", f"CI stage {name!r} ended {last.report.status!r}", [last.id])
    return _ok(gate, f"CI stage {name!r} succeeded ({last.report.provider})", [last.id])


def _fresh(
    items: list[Evidence], at: datetime, max_age: float | None, when: str
) -> tuple[list[Evidence], str]:
    if max_age is None:
        return items, ""
    cutoff = at - timedelta(seconds=max_age)
    fresh = [e for e in items if e.collected_at >= cutoff]
    newest = items[-1].collected_at.isoformat() if items else "never"
    return fresh, f"newest {when} is from {newest}, older than {timedelta(seconds=max_age)}"


def _security_gate(limits: SecurityLimits, items: list[Evidence], now: datetime) -> GateResult:
    gate = "security-scan"
    if not items:
        return _fail(gate, "missing", "missing: no security scan for this commit")
    fresh, why = _fresh(items, now, limits.max_age, "scan")
    if not fresh:
        return _fail(gate, "stale", why, [e.id for e in items])
    ids = [e.id for e in fresh]
    reports = [e.report for e in fresh if isinstance(e.report, SecurityReport)]
    # A scan that did not complete is not evidence: the latest scan of each tool must have completed
    # (a re-run that completes replaces a crashed one; findings of every scan still count).
    latest: dict[tuple[str, ...], SecurityReport] = {}
    for rep in reports:
        latest[tuple(sorted(t.casefold() for t in rep.tools))] = rep
    incomplete = [w for rep in latest.values() for w in rep.incomplete]
    if incomplete:
        detail = "incomplete: a scan that did not complete is not evidence — " + "; ".join(incomplete[:5])
        return _fail(gate, "missing", detail, ids)
    findings = [f for rep in reports for f in rep.findings if limits.counts(f)]
    ignored = sum(len(rep.findings) for rep in reports) - len(findings)
    counts = dict.fromkeys(Severity, 0)
    for f in findings:
        counts[f.severity] += 1
    problems = []
    for sev in Severity:
        limit = limits.max_findings.get(sev)
        if limit is not None and counts[sev] > limit:
            sev_rules = sorted({f.rule_id for f in findings if f.severity == sev})
            problems.append(f"{counts[sev]} {sev.value} (max {limit}; rules: {', '.join(sev_rules[:10])})")
    # a rule named as forbidden is forbidden at any level
    forbidden = sorted({f.rule_id for rep in reports for f in rep.findings} & set(limits.forbidden_rules))
    if forbidden:
        problems.append(f"forbidden rules found: {', '.join(forbidden)}")
    summary = ", ".join(f"{counts[s]} {s.value}" for s in Severity if s is not Severity.NONE)
    if ignored:
        summary += f" ({ignored} result(s) at levels their tool's rule does not count)"
    if problems:
        return _fail(gate, "violated", "; ".join(problems), ids)
    return _ok(gate, f"within limits: {summary}", ids)


def _perf_gate(t: PerfThresholds, items: list[Evidence], now: datetime) -> GateResult:
    gate = "performance"
    if not items:
        return _fail(gate, "missing", "missing: no performance test results for this commit")
    fresh, why = _fresh(items, now, t.max_age, "load test")
    if not fresh:
        return _fail(gate, "stale", why, [e.id for e in items])
    last = fresh[-1]
    r = last.report
    assert isinstance(r, PerfReport)
    missing, problems = [], []
    checks: list[tuple[str, float | None, float | None, bool]] = [
        ("p95", r.p95_ms, t.p95_ms, True),
        ("p99", r.p99_ms, t.p99_ms, True),
        ("error rate", r.error_rate, t.max_error_rate, True),
        ("throughput", r.throughput_rps, t.min_throughput_rps, False),
    ]
    for label, value, limit, is_max in checks:
        if limit is None:
            continue
        if value is None:
            missing.append(label)
        elif (value > limit) if is_max else (value < limit):
            problems.append(f"{label} {value:g} {'>' if is_max else '<'} {limit:g}")
    if missing:
        return _fail(gate, "missing", f"missing: the {r.tool} report has no {', '.join(missing)}", [last.id])
    failed = sorted(expr for expr, ok in r.tool_thresholds.items() if not ok)
    if failed and t.tool_thresholds == "enforce":
        problems.append(f"{r.tool} threshold(s) failed: {', '.join(failed[:5])}")
    if problems:
        return _fail(gate, "violated", "; ".join(problems), [last.id])
    ignored = f" ({len(failed)} {r.tool} threshold(s) failed; ignored by policy)" if failed else ""
    return _ok(gate, f"{r.tool} run within thresholds{ignored}", [last.id])


def _uat_gate(rule: UatSignOff, approvals: Sequence[Approval], commit_sha: str | None) -> GateResult:
    gate = "uat-sign-off"
    signed = [
        a
        for a in approvals
        if a.scope == "uat" and a.role == rule.role and (commit_sha is None or a.commit_sha == commit_sha)
    ]
    if not signed:
        return _fail(gate, "missing", f"missing: no UAT sign-off by role {rule.role!r}")
    a = max(signed, key=lambda x: x.at)
    detail = f"signed off by {a.user} ({a.role}) at {a.at.isoformat()}"
    return _ok(gate, detail, [f"approval:{a.user}:{a.role}"])


def _backup_gate(rule: BackupRule, items: list[Evidence], now: datetime) -> GateResult:
    gate = "backup"
    if not items:
        return _fail(gate, "missing", "missing: no verified backup")
    last = max(items, key=lambda e: e.report.verified_at if isinstance(e.report, BackupVerification) else now)
    b = last.report
    assert isinstance(b, BackupVerification)
    if not b.ok:
        return _fail(gate, "violated", f"backup {b.backup_id} failed verification: {b.detail}", [last.id])
    if b.verified_at < now - timedelta(seconds=rule.max_age):
        age = now - b.verified_at
        limit = timedelta(seconds=rule.max_age)
        return _fail(gate, "stale", f"backup {b.backup_id} last verified {age} ago (max {limit})", [last.id])
    return _ok(gate, f"backup {b.backup_id} verified at {b.verified_at.isoformat()}", [last.id])


def _verified_backups_gate(
    rule: BackupRule, verifications: Mapping[str, BackupVerification | None], now: datetime
) -> GateResult:
    """The backup gate when shipwarden manages the databases: each one's newest *stored* restore
    test (``services.dr.verify``) must have passed within ``maxAge``; uploads do not count."""
    gate = "backup"
    if not verifications:
        return _fail(gate, "missing", "missing: no database to verify")
    limit = timedelta(seconds=rule.max_age)
    missing, failed, stale, ok = [], [], [], []
    for db, v in sorted(verifications.items()):
        if v is None:
            missing.append(f"{db}: never verified (shipwarden db verify {db})")
        elif not v.ok:
            at = v.verified_at.isoformat()
            failed.append(f"{db}: verification of {v.backup_id} at {at} failed: {v.detail}")
        elif v.verified_at < now - limit:
            stale.append(f"{db}: last verified {now - v.verified_at} ago (max {limit})")
        else:
            ok.append(f"{db}: {v.backup_id} verified at {v.verified_at.isoformat()}")
    ids = [f"verification:{v.backup_id}" for v in verifications.values() if v is not None]
    if failed:
        return _fail(gate, "violated", "; ".join(failed + stale + missing), ids)
    if stale:
        return _fail(gate, "stale", "; ".join(stale + missing), ids)
    if missing:
        return _fail(gate, "missing", "missing: " + "; ".join(missing), ids)
    return _ok(gate, "restore-tested: " + "; ".join(ok), ids)


def _rollback_gate(rule: RollbackRule, items: list[Evidence]) -> GateResult:
    gate = "rollback-plan"
    if not items:
        return _fail(gate, "missing", "missing: no rollback plan")
    last = items[-1]
    plan = last.report
    assert isinstance(plan, RollbackPlan)
    problems = []
    if rule.require_previous_version and not plan.previous_version:
        problems.append("no previous version is available to roll back to")
    if rule.require_reversible_migrations:
        irreversible = [m.name for m in plan.migrations if not m.reversible]
        if irreversible:
            problems.append(f"migrations not declared reversible: {', '.join(irreversible)}")
    if problems:
        return _fail(gate, "violated", "; ".join(problems), [last.id])
    detail = f"roll back to {plan.previous_version}; {len(plan.migrations)} migration(s) declared"
    return _ok(gate, detail, [last.id])


def _change_gate(
    control: ChangeControl, change: ChangeFacts | None, approvals: Sequence[Approval], commit_sha: str | None
) -> GateResult:
    gate = "change-control"
    if change is None:
        return _fail(gate, "missing", "missing: the change (paths, lines, labels) was not measured")
    c = classify_change(control, change)
    if c.standard:
        return _ok(gate, "standard change", ())
    rules = "; ".join(f"{m.rule}: {', '.join(m.because)}" for m in c.matches)
    need = missing_approvals(c, approvals, author=change.author, commit_sha=commit_sha)
    if need:
        detail = f"non-standard ({rules}); approval still needed from: {', '.join(sorted(need))}"
        return _fail(gate, "missing", detail)
    return _ok(gate, f"non-standard ({rules}); approved by {', '.join(sorted(c.required_roles))}", ())


def evaluate_gates(
    policy: GatePolicy,
    evidence: Sequence[Evidence],
    approvals: Sequence[Approval],
    now: datetime,
    *,
    commit_sha: str | None = None,
    change: ChangeFacts | None = None,
    backups: Mapping[str, BackupVerification | None] | None = None,
) -> list[GateResult]:
    """Judge every gate the policy declares; one result per gate, in a stable order.

    ``change`` is needed for the ``change-control`` gate, which is evaluated
    whenever the policy declares non-standard rules (without it that gate
    fails as "missing").  ``now`` must be timezone-aware like the evidence.  ``backups``: when
    shipwarden manages the databases, each one's newest stored restore test; the backup gate then
    reads only these (an uploaded "backup" claim is ignored).
    """
    if now.tzinfo is None:
        raise ValueError("evaluate_gates needs a timezone-aware 'now' (evidence times are aware)")
    if commit_sha is not None:
        evidence = [
            e for e in evidence if not isinstance(e.report, _COMMIT_BOUND) or e.commit_sha == commit_sha
        ]
    results = [_suite_gate(cat, rule, _of(evidence, cat, TestReport)) for cat, rule in policy.suites.items()]
    if policy.ci is not None:
        ci = _of(evidence, "ci", CiCheck)
        results.extend(_ci_gate(name, ci) for name in policy.ci.required)
    cl = policy.checklist
    if cl.security_scan is not None:
        results.append(_security_gate(cl.security_scan, _of(evidence, "security-scan", SecurityReport), now))
    if cl.performance is not None:
        results.append(_perf_gate(cl.performance, _of(evidence, "performance", PerfReport), now))
    if cl.uat_sign_off is not None:
        results.append(_uat_gate(cl.uat_sign_off, approvals, commit_sha))
    if cl.backup is not None and backups is not None:
        results.append(_verified_backups_gate(cl.backup, backups, now))
    elif cl.backup is not None:
        results.append(_backup_gate(cl.backup, _of(evidence, "backup", BackupVerification), now))
    if cl.rollback_plan is not None:
        results.append(_rollback_gate(cl.rollback_plan, _of(evidence, "rollback-plan", RollbackPlan)))
    if policy.change_control.non_standard:
        results.append(_change_gate(policy.change_control, change, approvals, commit_sha))
    return results


def all_passed(results: Iterable[GateResult]) -> bool:
    """True only if there is at least one result and every one passed."""
    results = list(results)
    return bool(results) and all(r.passed for r in results)
