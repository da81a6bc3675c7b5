"""SARIF 2.1.0: GitHub's security-severity buckets (9.0 → critical), level fallback, JSON-path errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipwarden.domain.evidence import EvidenceError, Severity, parse_sarif, severity_from_score

DATA = Path(__file__).parents[3] / "data" / "evidence"


def read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def sarif(results: list[dict[str, object]], rules: list[dict[str, object]] | None = None) -> str:
    driver: dict[str, object] = {"name": "t", "rules": rules or []}
    return json.dumps({"version": "2.1.0", "runs": [{"tool": {"driver": driver}, "results": results}]})


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (10.0, Severity.CRITICAL),
        (9.1, Severity.CRITICAL),
        (9.0, Severity.CRITICAL),  # documented decision: GitHub leaves 9.0 in no range; CVSS says critical
        (8.9, Severity.HIGH),
        (7.0, Severity.HIGH),
        (6.9, Severity.MEDIUM),
        (4.0, Severity.MEDIUM),
        (3.9, Severity.LOW),
        (0.1, Severity.LOW),
        (0.0, Severity.NONE),
    ],
)
def test_score_buckets(score: float, expected: Severity) -> None:
    assert severity_from_score(score) is expected


class TestCodeQL:
    def test_counts_by_severity_and_rule_ids(self) -> None:
        report = parse_sarif(read("codeql.sarif"), source="codeql.sarif")
        assert report.tools == ("CodeQL",)
        counts = report.counts()
        assert counts[Severity.CRITICAL] == 1  # 9.3 code injection
        assert counts[Severity.HIGH] == 2  # 8.8 sql injection, 7.5 weak hashing (warning level, but scored)
        assert counts[Severity.MEDIUM] == 1  # 5.4 stack trace (the second one is suppressed)
        assert counts[Severity.LOW] == 1  # unused import: no score, level note
        assert report.rule_ids(Severity.HIGH) == ("py/sql-injection", "py/weak-sensitive-data-hashing")
        assert len(report.suppressed) == 1 and report.suppressed[0].rule_id == "py/stack-trace-exposure"

    def test_finding_details(self) -> None:
        report = parse_sarif(read("codeql.sarif"))
        sqli = next(f for f in report.findings if f.rule_id == "py/sql-injection")
        assert (sqli.uri, sqli.line, sqli.score, sqli.severity_source) == (
            "app/db.py",
            42,
            8.8,
            "security-severity",
        )
        note = next(f for f in report.findings if f.rule_id == "py/unused-import")
        assert (note.severity_source, note.level) == ("level", "note")


class TestLevelsAndExtensions:
    def test_levels_fallback_and_extension_rules(self) -> None:
        report = parse_sarif(read("semgrep-levels.sarif"))
        assert report.tools == ("Semgrep OSS", "Trivy")
        by_rule = {(f.rule_id, f.uri): f.severity for f in report.findings}
        assert by_rule[("python.lang.security.audit.eval-detected", "app/calc.py")] is Severity.HIGH  # error
        assert (
            by_rule[("python.flask.security.audit.debug-enabled", "app/main.py")] is Severity.LOW
        )  # result note
        assert (
            by_rule[("python.flask.security.audit.debug-enabled", "app/wsgi.py")] is Severity.MEDIUM
        )  # warning
        assert by_rule[("CVE-2024-6345", "requirements.txt")] is Severity.CRITICAL  # 9.0 from extension rule
        assert len(report.findings) == 4  # baselineState=absent is skipped

    def test_result_level_defaults_to_warning(self) -> None:
        report = parse_sarif(sarif([{"ruleId": "X", "message": {"text": "m"}}]))
        assert report.findings[0].severity is Severity.MEDIUM

    def test_result_score_overrides_rule_score(self) -> None:
        data = sarif(
            [{"ruleId": "X", "message": {"text": "m"}, "properties": {"security-severity": "9.8"}}],
            [{"id": "X", "properties": {"security-severity": "3.0"}}],
        )
        assert parse_sarif(data).findings[0].severity is Severity.CRITICAL

    def test_numeric_score_accepted(self) -> None:
        data = sarif(
            [{"ruleId": "X", "message": {"text": "m"}}], [{"id": "X", "properties": {"security-severity": 7}}]
        )
        assert parse_sarif(data).findings[0].severity is Severity.HIGH

    def test_clean_scan(self) -> None:
        report = parse_sarif(read("sarif-clean.sarif"))
        assert report.findings == ()
        assert all(n == 0 for n in report.counts().values())


class TestErrors:
    def test_non_numeric_severity_names_json_path(self) -> None:
        with pytest.raises(EvidenceError) as exc:
            parse_sarif(read("sarif-bad-severity.sarif"), source="bad.sarif")
        assert exc.value.path == '$.runs[0].tool.driver.rules[1].properties["security-severity"]'
        assert "'high' is not a number" in exc.value.message

    def test_truncated_json_names_line(self) -> None:
        with pytest.raises(EvidenceError) as exc:
            parse_sarif(read("sarif-truncated.sarif"))
        assert exc.value.line is not None and exc.value.line >= 5
        assert "not valid JSON" in exc.value.message

    def test_wrong_version(self) -> None:
        with pytest.raises(EvidenceError) as exc:
            parse_sarif('{"version": "2.0.0", "runs": []}')
        assert exc.value.path == "$.version"

    def test_out_of_range_score(self) -> None:
        data = sarif(
            [{"ruleId": "X", "message": {"text": "m"}}],
            [{"id": "X", "properties": {"security-severity": "11"}}],
        )
        with pytest.raises(EvidenceError, match="outside"):
            parse_sarif(data)

    def test_bad_level_names_path(self) -> None:
        with pytest.raises(EvidenceError) as exc:
            parse_sarif(sarif([{"ruleId": "X", "level": "fatal", "message": {"text": "m"}}]))
        assert exc.value.path == "$.runs[0].results[0].level"

    def test_missing_message(self) -> None:
        with pytest.raises(EvidenceError) as exc:
            parse_sarif(sarif([{"ruleId": "X"}]))
        assert exc.value.path == "$.runs[0].results[0].message"

    def test_run_without_results_is_not_a_clean_scan(self) -> None:
        with pytest.raises(EvidenceError, match="missing") as exc:
            parse_sarif('{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "t"}}}]}')
        assert exc.value.path == "$.runs[0].results"

    def test_no_runs(self) -> None:
        with pytest.raises(EvidenceError, match="no runs"):
            parse_sarif('{"version": "2.1.0", "runs": []}')

    def test_dangling_rule_index(self) -> None:
        with pytest.raises(EvidenceError) as exc:
            parse_sarif(sarif([{"ruleId": "X", "ruleIndex": 3, "message": {"text": "m"}}]))
        assert exc.value.path == "$.runs[0].results[0].ruleIndex"

    def test_not_an_object(self) -> None:
        with pytest.raises(EvidenceError) as exc:
            parse_sarif("[]")
        assert exc.value.path == "$"


class TestRealScannerQuirks:
    """Issue 11: shapes real scanners write that were rejected or misread."""

    @staticmethod
    def run(rules: list[dict[str, object]], results: list[dict[str, object]], **extra: object) -> str:
        driver = {"name": extra.pop("tool", "Snyk Open Source"), "rules": rules}
        run = {"tool": {"driver": driver}, "results": results, **extra}
        return json.dumps({"version": "2.1.0", "runs": [run]})

    @pytest.mark.parametrize("value", ["undefined", "null", "", None])
    def test_snyk_licence_issue_without_a_score_falls_back_to_the_level(self, value: object) -> None:
        # Snyk Open Source writes "security-severity": "undefined" (or "null") on licence rules
        rules = [{"id": "snyk:lic:pip:barman:GPL-3.0", "properties": {"security-severity": value}}]
        results = [
            {"ruleId": "snyk:lic:pip:barman:GPL-3.0", "level": "error", "message": {"text": "GPL-3.0"}}
        ]
        report = parse_sarif(self.run(rules, results))
        (finding,) = report.findings
        assert (finding.severity, finding.severity_source, finding.score) == (Severity.HIGH, "level", None)

    def test_appscan_vendor_severity_is_used(self) -> None:
        # HCL AppScan keeps its severity in result.properties.Severity and sets no level
        results = [
            {
                "ruleId": "SA2251137538",
                "message": {"text": "JQuery HTML Function Use"},
                "properties": {
                    "Severity": "High",
                    "Status": "Open",
                    "IssueType": "CrossSiteScripting.Reflected",
                },
            },
            {
                "ruleId": "SA3760839856",
                "message": {"text": "Web, Local Storage Insecure"},
                "properties": {"Severity": "Medium", "Status": "Open", "IssueType": "Validation.Required"},
            },
        ]
        report = parse_sarif(self.run([], results, tool="HCL AppScan Static Analyzer"))
        assert [(f.severity, f.severity_source) for f in report.findings] == [
            (Severity.HIGH, "vendor"),
            (Severity.MEDIUM, "vendor"),
        ]

    def test_a_crashed_run_is_incomplete_not_clean(self) -> None:
        invocations = [
            {
                "executionSuccessful": False,
                "exitCode": 2,
                "toolExecutionNotifications": [{"level": "error", "message": {"text": "out of memory"}}],
            }
        ]
        report = parse_sarif(self.run([], [], tool="Semgrep OSS", invocations=invocations))
        assert report.findings == ()
        (why,) = report.incomplete
        assert why == (
            "Semgrep OSS ($.runs[0]): the tool reports executionSuccessful: false (exit code 2): "
            "out of memory"
        )

    def test_error_notifications_without_results_are_incomplete(self) -> None:
        invocations = [
            {"toolExecutionNotifications": [{"level": "error", "message": {"text": "parse error"}}]}
        ]
        report = parse_sarif(self.run([], [], tool="CodeQL", invocations=invocations))
        assert report.incomplete and "parse error" in report.incomplete[0]

    def test_error_notifications_beside_results_do_not_make_a_run_incomplete(self) -> None:
        invocations = [
            {
                "executionSuccessful": True,
                "toolExecutionNotifications": [{"level": "error", "message": {"text": "one file skipped"}}],
            }
        ]
        results = [{"ruleId": "r", "level": "note", "message": {"text": "x"}}]
        report = parse_sarif(self.run([], results, tool="CodeQL", invocations=invocations))
        assert report.incomplete == ()

    def test_passing_results_are_not_findings(self) -> None:
        results = [{"ruleId": "r", "kind": "pass", "message": {"text": "held"}}]
        assert parse_sarif(self.run([], results, tool="Checkov")).findings == ()
