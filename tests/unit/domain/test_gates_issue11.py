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
