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

Counting rules: the root may be ``<testsuites>`` (pytest) or ``<testsuite>``
(Surefire); nested suites are flattened.  Counts missing from the attributes
are derived from the ``<testcase>`` children; when both exist the larger value
wins, so a report can never claim fewer failures than it lists.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
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

    def case(self, elem: ET.Element) -> TestCaseResult:
        outcome: Outcome = "passed"
        message: str | None = None
        for child in elem:
            if child.tag in ("failure", "rerunFailure") and outcome not in ("error",):
                outcome, message = "failed", child.get("message") or (child.text or "").strip()[:500] or None
            elif child.tag == "error":
                outcome, message = "error", child.get("message") or (child.text or "").strip()[:500] or None
            elif child.tag == "skipped" and outcome == "passed":
                outcome, message = "skipped", child.get("message")
        name = elem.get("name")
        if name is None:
            raise self.error(elem, "<testcase> has no 'name' attribute")
        return TestCaseResult(elem.get("classname", ""), name, outcome, self.seconds(elem), message)

    def suite(self, elem: ET.Element) -> SuiteResult:
        cases = tuple(self.case(c) for c in elem if c.tag == "testcase")
        derived = {
            "tests": len(cases),
            "failures": sum(c.outcome == "failed" for c in cases),
            "errors": sum(c.outcome == "error" for c in cases),
            "skipped": sum(c.outcome == "skipped" for c in cases),
        }
        counts: dict[str, int] = {}
        for attr, from_children in derived.items():
            declared = self.count(elem, attr)
            if attr == "skipped" and declared is None:
                declared = self.count(elem, "disabled")
            counts[attr] = max(declared or 0, from_children)
        if counts["failures"] + counts["errors"] + counts["skipped"] > counts["tests"]:
            counts["tests"] = counts["failures"] + counts["errors"] + counts["skipped"]
        return SuiteResult(
            name=elem.get("name", ""),
            tests=counts["tests"],
            failures=counts["failures"],
            errors=counts["errors"],
            skipped=counts["skipped"],
            time_s=self.seconds(elem),
            cases=cases,
        )


def _suites(elem: ET.Element) -> list[ET.Element]:
    """Every ``<testsuite>`` that holds test cases (or is a leaf), depth first, in document order."""
    out: list[ET.Element] = []
    nested = [c for c in elem if c.tag == "testsuite"]
    if elem.tag == "testsuite" and (any(c.tag == "testcase" for c in elem) or not nested):
        out.append(elem)
    for child in nested:
        out.extend(_suites(child))
    return out


def parse_junit(data: bytes | str, *, source: str = "<junit>") -> TestReport:
    """Parse a JUnit XML report; raises ``EvidenceError`` (with the line) on anything untrustworthy."""
    if not data or not (data.strip() if isinstance(data, str) else data.strip()):
        raise EvidenceError("the report is empty", source=source, line=1)
    root, lines = _build(data, source)
    reader = _Reader(source, lines)
    if root.tag not in ("testsuites", "testsuite"):
        expected = "a JUnit report has <testsuites> or <testsuite>"
        raise reader.error(root, f"root element is <{root.tag}>; {expected}")
    suites = tuple(reader.suite(s) for s in _suites(root))
    if root.tag == "testsuites" and not suites:
        # An empty <testsuites/> is a valid file but proves nothing; keep its declared counts, if any.
        n = {a: reader.count(root, a) or 0 for a in ("tests", "failures", "errors", "skipped")}
        tests = max(n["tests"], n["failures"] + n["errors"] + n["skipped"])
        suites = (
            SuiteResult(
                root.get("name", ""), tests, n["failures"], n["errors"], n["skipped"], reader.seconds(root)
            ),
        )
    return TestReport(suites=suites, digest=sha256_digest(data), source=source)
