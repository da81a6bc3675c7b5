"""Issue 11: gates judged on real files (reruns, k6 verdicts, SARIF levels, crashed scans)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shipwarden.domain.evidence import Evidence, parse_junit
from shipwarden.domain.gates import GatePolicy, GateResult, evaluate_gates

REAL = Path(__file__).parents[2] / "fixtures" / "real"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SHA = "c" * 40


def real(fmt: str, name: str) -> bytes:
    return (REAL / fmt / name).read_bytes()


def gates(checklist: dict[str, Any] | None = None, **suite_rule: Any) -> GatePolicy:
    rule = {"minTests": 1, **suite_rule}
    return GatePolicy.model_validate(
        {
            "suites": {"unit": rule, "integration": {"minTests": 0}, "security": {"minTests": 0}},
            "checklist": checklist or {"securityScan": None, "backup": None, "rollbackPlan": None},
        }
    )


def judge(policy: GatePolicy, *items: tuple[str, Any]) -> dict[str, GateResult]:
    evidence = [
        Evidence(f"e{i}", cat, rep, NOW - timedelta(minutes=1), SHA) for i, (cat, rep) in enumerate(items)
    ]
    return {r.gate: r for r in evaluate_gates(policy, evidence, [], NOW, commit_sha=SHA)}


class TestFlaky:
    def test_a_test_that_passed_on_rerun_does_not_block_by_default(self) -> None:
        report = parse_junit(real("junit", "surefire-flaky-mikepenz.xml"))
        g = judge(gates(), ("unit", report))["suite:unit"]
        assert g.passed, g.detail
        assert "1 flaky" in g.detail

    def test_the_policy_may_refuse_flaky_tests(self) -> None:
        report = parse_junit(real("junit", "surefire-flaky-mikepenz.xml"))
        g = judge(gates(maxFlaky=0), ("unit", report))["suite:unit"]
        assert (g.passed, g.reason) == (False, "violated")
        assert "1 flaky" in g.detail and "MicrosoftTeamsCrudTest.createWebhook" in g.detail

    def test_nested_phpunit_suites_do_not_inflate_min_tests(self) -> None:
        report = parse_junit(real("junit", "phpunit-nested-dorny.xml"))
        g = judge(gates(minTests=13, maxFailures=2), ("unit", report))["suite:unit"]
        assert (g.passed, g.reason) == (False, "violated")
        assert "12 tests ran, at least 13 required" in g.detail


def sarif(tool: str, results: list[dict[str, Any]], **run: Any) -> Any:
    import json

    from shipwarden.domain.evidence import parse_sarif

    doc = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": tool}}, "results": results, **run}]}
    return parse_sarif(json.dumps(doc))


SCAN_ONLY = {"backup": None, "rollbackPlan": None}


class TestSecurityScan:
    def test_vendor_high_findings_fail_a_high_zero_gate(self) -> None:
        result = {"ruleId": "SA1", "message": {"text": "XSS"}, "properties": {"Severity": "High"}}
        g = judge(
            gates({**SCAN_ONLY, "securityScan": {"maxFindings": {"high": 0}}}),
            ("security-scan", sarif("HCL AppScan Static Analyzer", [result])),
        )
        assert (g["security-scan"].passed, g["security-scan"].reason) == (False, "violated")
        assert "1 high" in g["security-scan"].detail

    def test_the_real_appscan_file_fails_a_high_zero_gate_with_its_60_highs(self) -> None:
        """HCL AppScan's own SARIF (WebGoat 2023.8): severity only in properties.Severity, no level."""
        from shipwarden.domain.evidence import parse_sarif

        report = parse_sarif(real("sarif", "appscan-static-analyzer-webgoat-2023.8.sarif"))
        strict = gates({**SCAN_ONLY, "securityScan": {"maxFindings": {"high": 0}}})
        scan = judge(strict, ("security-scan", report))["security-scan"]
        assert (scan.passed, scan.reason) == (False, "violated")
        assert "60 high" in scan.detail
        ok = judge(
            gates({**SCAN_ONLY, "securityScan": {"maxFindings": {"high": 60, "medium": 21, "low": 7}}}),
            ("security-scan", report),
        )["security-scan"]
        assert ok.passed, ok.detail

    def test_a_real_codeql_run_is_complete_and_its_critical_finding_counts(self) -> None:
        """CodeQL 2.11.0: level-none notifications are no crash; the result's rule is found by ruleIndex."""
        from shipwarden.domain.evidence import parse_sarif

        report = parse_sarif(real("sarif", "codeql-2.11.0-filter-sarif-python.sarif"))
        strict = gates({**SCAN_ONLY, "securityScan": {"maxFindings": {"critical": 0}}})
        scan = judge(strict, ("security-scan", report))["security-scan"]
        assert (scan.passed, scan.reason) == (False, "violated")
        assert "1 critical" in scan.detail and "incomplete" not in scan.detail

    def test_a_crashed_scan_fails_and_says_so(self) -> None:
        inv = [
            {
                "executionSuccessful": False,
                "toolExecutionNotifications": [{"level": "error", "message": {"text": "killed"}}],
            }
        ]
        g = judge(
            gates({**SCAN_ONLY, "securityScan": {}}),
            ("security-scan", sarif("Semgrep OSS", [], invocations=inv)),
        )
        scan = g["security-scan"]
        assert (scan.passed, scan.reason) == (False, "missing")
        assert scan.detail.startswith("incomplete: a scan that did not complete is not evidence")
        assert "Semgrep OSS" in scan.detail and "killed" in scan.detail

    def test_a_completed_rerun_replaces_the_crashed_scan(self) -> None:
        inv = [{"executionSuccessful": False}]
        crashed = sarif("Semgrep OSS", [], invocations=inv)
        rerun = sarif("Semgrep OSS", [], invocations=[{"executionSuccessful": True}])
        g = judge(
            gates({**SCAN_ONLY, "securityScan": {}}), ("security-scan", crashed), ("security-scan", rerun)
        )
        assert g["security-scan"].passed, g["security-scan"].detail

    def test_policy_says_which_levels_count_for_a_tool(self) -> None:
        style = {"ruleId": "no-unused-vars", "level": "error", "message": {"text": "x unused"}}
        warn = {"ruleId": "security/detect-eval", "level": "warning", "message": {"text": "eval"}}
        report = sarif("ESLint", [style, style, warn])
        loose = gates(
            {
                **SCAN_ONLY,
                "securityScan": {
                    "maxFindings": {"high": 0, "medium": 0},
                    "tools": {"eslint": {"levels": ["warning"]}},
                },
            }
        )
        g = judge(loose, ("security-scan", report))["security-scan"]
        assert (g.passed, g.reason) == (False, "violated")
        assert g.detail.startswith("1 medium") and "2 result(s)" not in g.detail
        none = gates(
            {
                **SCAN_ONLY,
                "securityScan": {
                    "maxFindings": {"high": 0, "medium": 0},
                    "tools": {"ESLint": {"levels": []}},
                },
            }
        )
        g = judge(none, ("security-scan", report))["security-scan"]
        assert g.passed and "3 result(s) at levels their tool's rule does not count" in g.detail


class TestK6Verdicts:
    SUMMARY = (Path(__file__).parents[2] / "data" / "evidence" / "k6-summary-export.json").read_bytes()

    def test_a_failed_k6_threshold_fails_the_gate_though_the_policy_is_looser(self) -> None:
        from shipwarden.domain.evidence import parse_k6_summary

        report = parse_k6_summary(self.SUMMARY)  # k6 saw p(99)<400 fail: p95 231.56, p99 512.02
        loose = gates({**SCAN_ONLY, "securityScan": None, "performance": {"p95Ms": 1000, "p99Ms": 1000}})
        g = judge(loose, ("performance", report))["performance"]
        assert (g.passed, g.reason) == (False, "violated")
        assert "k6 threshold(s) failed: http_req_duration: p(99)<400" in g.detail

    def test_the_policy_may_ignore_k6_verdicts(self) -> None:
        from shipwarden.domain.evidence import parse_k6_summary

        report = parse_k6_summary(self.SUMMARY)
        perf = {"p95Ms": 1000, "p99Ms": 1000, "toolThresholds": "ignore"}
        g = judge(gates({**SCAN_ONLY, "securityScan": None, "performance": perf}), ("performance", report))
        assert (
            g["performance"].passed
            and "1 k6 threshold(s) failed; ignored by policy" in g["performance"].detail
        )


class TestLocust:
    def test_locust_0x_counts_failures_outside_requests(self) -> None:
        from shipwarden.domain.evidence import parse_locust_stats

        report = parse_locust_stats(real("locust", "locust-0x-docs-example_requests.csv"))
        # 109 successful requests and 56 failures: 56 / 165, not 56 / 109 (0.514)
        assert report.error_rate is not None and round(report.error_rate, 3) == 0.339
        assert report.requests == 165
        g = judge(
            gates({**SCAN_ONLY, "securityScan": None, "performance": {"maxErrorRate": 0.4}}),
            ("performance", report),
        )
        assert g["performance"].passed, g["performance"].detail

    def test_a_csv_in_another_encoding_is_read(self) -> None:
        from shipwarden.domain.evidence import parse_locust_stats

        utf8 = real("locust", "locust-0x-docs-example_requests.csv").decode()
        latin1 = utf8.replace("/does_not_exist", "/café/über").encode("cp1252")
        report = parse_locust_stats(latin1)
        assert report.requests == 165 and report.throughput_rps == 1.89
        utf16 = utf8.replace("/does_not_exist", "/café").encode("utf-16")
        assert parse_locust_stats(utf16).requests == 165
