"""JUnit XML (pytest, Surefire, most CI tools) → ``TestReport``.

Why a hand-wired expat parser instead of ``ElementTree.fromstring``:

* **Safety.**  Reports come from CI, i.e. from code under review.  A DTD can
  declare entities that expand exponentially ("billion laughs") or point at
  local files (XXE).  JUnit never needs a DTD, so any ``<!DOCTYPE``/``<!ENTITY``
  is rejected before it is expanded (expat reports the doctype before the
  internal subset is processed), and parameter-entity parsing is switched off.
* **Line numbers.**  ``ElementTree`` drops them; a precise error ("line 12:
  testsuite 'tests' is not an integer") needs them, so the element → line map
  is recorded while building the tree.

Counting rules — **the test cases are counted; declared totals are a cross-check**:

* The root may be ``<testsuites>`` (pytest) or ``<testsuite>`` (Surefire); nested
  suites are flattened, each test counted once in the suite that lists it.  A
  suite's attributes describe its whole subtree (PHPUnit's outer suite declares
  12 for its 2 own and 10 nested tests), so they are compared with the subtree,
  never added to it.
* Reruns.  Surefire and cargo-nextest write ``<flakyFailure>``/``<flakyError>``
  inside a test that passed on a rerun (passed, flaky) and ``<rerunFailure>``/
  ``<rerunError>`` beside the final ``<failure>`` (failed once, not per run).
  Retrying runners that write one ``<testcase>`` per run (Gradle test-retry,
  gotestsum ``--rerun-fails``, fastlane trainer) are folded per suite: a test
  listed several times is one test, and one with a passed and a failed run is
  passed and flaky.  Whether flaky tests
  are acceptable is the policy's choice (``maxFlaky``), not the parser's.
* A suite that lists no test cases keeps its declared counts (it is all the file
  says).  A suite that declares more failures and errors than its subtree's test
  cases and reruns account for keeps the difference as unlisted failures: a
  report can never claim fewer failures than it declares or lists.  Other
  disagreements are recorded in ``TestReport.notes``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import astuple, dataclass
from xml.parsers import expat

from shipwarden.domain.evidence.model import (
    EvidenceError,
    Outcome,
    SuiteResult,
    TestCaseResult,
    TestReport,
    sha256_digest,
)


class _Rejected(Exception):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


def _local(tag: str) -> str:
    """``ns:testsuite`` / ``{uri}testsuite`` → ``testsuite``."""
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _build(data: bytes | str, source: str) -> tuple[ET.Element, dict[int, int]]:
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    builder = ET.TreeBuilder()
    lines: dict[int, int] = {}

    def reject(what: str) -> None:
        raise _Rejected(
            f"{what} is not allowed in a test report (DTDs and entities are rejected to prevent XXE)",
            parser.CurrentLineNumber,
            parser.CurrentColumnNumber + 1,
        )

    def start(tag: str, attrs: dict[str, str]) -> None:
        elem = builder.start(_local(tag), attrs)
        lines[id(elem)] = parser.CurrentLineNumber

    parser.StartDoctypeDeclHandler = lambda *a: reject("a DOCTYPE declaration")
    parser.EntityDeclHandler = lambda *a: reject("an ENTITY declaration")
    parser.ExternalEntityRefHandler = lambda *a: reject("an external entity reference")  # type: ignore[assignment]
    parser.StartElementHandler = start
    parser.EndElementHandler = lambda tag: builder.end(_local(tag))
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except _Rejected as exc:
        raise EvidenceError(exc.message, source=source, line=exc.line, column=exc.column) from None
    except expat.ExpatError as exc:
        raise EvidenceError(
            f"not well-formed XML: {expat.ErrorString(exc.code)}",
            source=source,
            line=exc.lineno,
            column=exc.offset + 1,
        ) from None
    root = builder.close()
    return root, lines


class _Reader:
    def __init__(self, source: str, lines: dict[int, int]) -> None:
        self.source = source
        self.lines = lines

    def error(self, elem: ET.Element, message: str) -> EvidenceError:
        return EvidenceError(message, source=self.source, line=self.lines.get(id(elem)))

    def count(self, elem: ET.Element, attr: str) -> int | None:
        raw = elem.get(attr)
        if raw is None or raw.strip() == "":
            return None
        try:
            value = int(raw.strip())
        except ValueError:
            raise self.error(elem, f"<{elem.tag}> attribute {attr}={raw!r} is not an integer") from None
        if value < 0:
            raise self.error(elem, f"<{elem.tag}> attribute {attr}={raw!r} is negative")
        return value

    def seconds(self, elem: ET.Element) -> float:
        raw = elem.get("time")
        if raw is None or raw.strip() == "":
            return 0.0
        try:
            # Some tools write thousands separators ("1,234.5"); they are not decimal commas.
            return float(raw.strip().replace(",", ""))
        except ValueError:
            raise self.error(elem, f"<{elem.tag}> attribute time={raw!r} is not a number") from None

    def case(self, elem: ET.Element) -> tuple[TestCaseResult, int]:
        """One ``<testcase>`` and how many failed runs it lists besides its outcome (reruns)."""
        outcome: Outcome = "passed"
        message: str | None = None
        reruns = flaky_runs = 0
        rerun_message: str | None = None
        for child in elem:
            tag = child.tag
            if tag == "error":
                outcome, message = "error", _message(child)
            elif tag == "failure" and outcome != "error":
                outcome, message = "failed", _message(child)
            elif tag == "skipped" and outcome == "passed":
                outcome, message = "skipped", child.get("message")
            elif tag in _RERUN:
                reruns += 1
                rerun_message = rerun_message or _message(child)
            elif tag in _FLAKY:
                flaky_runs += 1
        name = elem.get("name")
        if name is None:
            raise self.error(elem, "<testcase> has no 'name' attribute")
        flaky = False
        if reruns and outcome in ("passed", "skipped"):
            # Surefire lists rerunFailure only beside the final failure; alone it still says "failed".
            outcome, message, reruns = "failed", rerun_message, reruns - 1
        if flaky_runs and outcome == "passed":
            flaky = True
        runs = 1 + reruns + flaky_runs
        result = TestCaseResult(
            elem.get("classname", ""), name, outcome, self.seconds(elem), message, flaky, runs
        )
        return result, reruns + flaky_runs

    def walk(self, elem: ET.Element, notes: list[str]) -> tuple[list[SuiteResult], _Tally]:
        """The suites of ``elem``'s subtree (each with its own cases), and the subtree's totals.

        Each test is counted once, in the suite that lists it; a suite's declared totals cover its
        whole subtree (PHPUnit declares 12 on the outer suite of 2 + 10 nested tests) and are only
        compared with what the subtree lists.
        """
        cases, failed_reruns, folded = _fold([self.case(c) for c in elem if c.tag == "testcase"])
        own = _Tally.of(cases, failed_reruns, folded)
        out: list[SuiteResult] = []
        sub = _Tally()
        nested = [c for c in elem if c.tag == "testsuite"]
        for child in nested:
            suites, tally = self.walk(child, notes)
            out.extend(suites)
            sub = sub + tally
        total = own + sub
        declared = {a: self.count(elem, a) for a in ("tests", "failures", "errors", "skipped")}
        if declared["skipped"] is None:
            declared["skipped"] = self.count(elem, "disabled")
        name = elem.get("name", "")
        if not cases and not nested:
            if elem.tag != "testsuite":
                return out, total
            # A suite that lists no test cases: its declared counts are all there is.
            n = {k: v or 0 for k, v in declared.items()}
            tests = max(n["tests"], n["failures"] + n["errors"] + n["skipped"])
            suite = SuiteResult(name, tests, n["failures"], n["errors"], n["skipped"], self.seconds(elem))
            return [suite], _Tally(tests, n["failures"], n["errors"], n["skipped"])
        unlisted = 0
        where = f"line {self.lines.get(id(elem))}: <{elem.tag}{f' name={name!r}' if name else ''}>"
        if declared["failures"] is not None or declared["errors"] is not None:
            said = (declared["failures"] or 0) + (declared["errors"] or 0)
            shown = total.failures + total.errors
            if said > shown + total.failed_reruns:
                unlisted = said - shown - total.failed_reruns
                notes.append(
                    f"{where} declares {said} failures and errors, its test cases show {shown}: "
                    f"{unlisted} unlisted failure(s) counted"
                )
        # unlisted failures are tests too, but the conservative reading takes them from the passes
        tests = max(own.tests, own.failures + unlisted + own.errors + own.skipped)
        if declared["tests"] is not None:
            listed = total.tests + tests - own.tests
            if not listed <= declared["tests"] <= listed + total.folded_runs:
                notes.append(f"{where} declares {declared['tests']} tests, its test cases show {total.tests}")
        if cases or unlisted:
            suite = SuiteResult(
                name=name,
                tests=tests,
                failures=own.failures + unlisted,
                errors=own.errors,
                skipped=own.skipped,
                time_s=self.seconds(elem),
                cases=cases,
                flaky=own.flaky,
                unlisted_failures=unlisted,
            )
            out.insert(0, suite)
            total = total + _Tally(tests - own.tests, unlisted)
        return out, total


def _message(elem: ET.Element) -> str | None:
    return elem.get("message") or (elem.text or "").strip()[:500] or None


_RERUN = frozenset({"rerunFailure", "rerunError"})  # failed reruns of a test that failed in the end
_FLAKY = frozenset({"flakyFailure", "flakyError"})  # failed runs of a test that passed in the end


@dataclass(frozen=True)
class _Tally:
    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    flaky: int = 0
    #: failed runs that reruns account for (a producer may count each in its declared totals)
    failed_reruns: int = 0
    #: runs of a test listed several times, beyond the first
    folded_runs: int = 0

    @staticmethod
    def of(cases: tuple[TestCaseResult, ...], failed_reruns: int, folded_runs: int) -> _Tally:
        return _Tally(
            len(cases),
            sum(c.outcome == "failed" for c in cases),
            sum(c.outcome == "error" for c in cases),
            sum(c.outcome == "skipped" for c in cases),
            sum(c.flaky for c in cases),
            failed_reruns,
            folded_runs,
        )

    def __add__(self, other: _Tally) -> _Tally:
        return _Tally(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def _fold(runs: list[tuple[TestCaseResult, int]]) -> tuple[tuple[TestCaseResult, ...], int, int]:
    """Fold the runs of one test listed several times in a suite into one test.

    Retrying runners (Gradle test-retry, gotestsum ``--rerun-fails``, fastlane trainer,
    web-test-runner) write one ``<testcase>`` per run.  A test with a passed and a failed run
    passed on a rerun: one test, passed and flaky.  Runs that all failed are one failure (an
    error if every run errored); runs that all passed are one pass; a test skipped in every run
    is one skip.  Returns the cases, the failed runs folded away (a producer may count each in
    its declared failures) and all runs folded away (in its declared tests)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (case, _) in enumerate(runs):
        groups.setdefault((case.classname, case.name), []).append(i)
    out: list[TestCaseResult | None] = [c for c, _ in runs]
    failed_reruns = sum(n for _, n in runs)
    folded = 0
    for idx in groups.values():
        if len(idx) < 2:
            continue
        cases = [runs[i][0] for i in idx]
        ran = [c for c in cases if c.outcome != "skipped"] or cases
        failed = [c for c in ran if c.outcome in ("failed", "error")]
        outcome: Outcome
        if not failed:
            outcome = ran[-1].outcome
        elif len(failed) < len(ran):
            outcome = "passed"
        else:
            outcome = "error" if all(c.outcome == "error" for c in failed) else "failed"
        flaky = outcome == "passed" and (bool(failed) or any(c.flaky for c in ran))
        failed_reruns += len(failed) - (0 if outcome == "passed" else 1)
        folded += len(idx) - 1
        for i in idx:
            out[i] = None
        first = cases[0]
        out[idx[0]] = TestCaseResult(
            first.classname,
            first.name,
            outcome,
            sum(c.time_s for c in cases),
            next((c.message for c in (failed if outcome != "passed" else ran) if c.message), None),
            flaky=flaky,
            runs=sum(c.runs for c in cases),
        )
    return tuple(c for c in out if c is not None), failed_reruns, folded


def parse_junit(data: bytes | str, *, source: str = "<junit>") -> TestReport:
    """Parse a JUnit XML report; raises ``EvidenceError`` (with the line) on anything untrustworthy."""
    if not data or not (data.strip() if isinstance(data, str) else data.strip()):
        raise EvidenceError("the report is empty", source=source, line=1)
    root, lines = _build(data, source)
    reader = _Reader(source, lines)
    if root.tag not in ("testsuites", "testsuite"):
        expected = "a JUnit report has <testsuites> or <testsuite>"
        raise reader.error(root, f"root element is <{root.tag}>; {expected}")
    notes: list[str] = []
    suites, _ = reader.walk(root, notes)
    if root.tag == "testsuites" and not suites:
        # An empty <testsuites/> is a valid file but proves nothing; keep its declared counts, if any.
        n = {a: reader.count(root, a) or 0 for a in ("tests", "failures", "errors", "skipped")}
        tests = max(n["tests"], n["failures"] + n["errors"] + n["skipped"])
        suites = [
            SuiteResult(
                root.get("name", ""), tests, n["failures"], n["errors"], n["skipped"], reader.seconds(root)
            )
        ]
    return TestReport(suites=tuple(suites), digest=sha256_digest(data), source=source, notes=tuple(notes))
