"""JUnit XML parsing: both roots, derived counts, failures never understated, precise errors, no XXE."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipwarden.domain.evidence import EvidenceError, parse_junit

DATA = Path(__file__).parents[3] / "data" / "evidence"


def read(name: str) -> bytes:
    return (DATA / name).read_bytes()


class TestPytestReport:
    def test_counts_and_outcomes(self) -> None:
        report = parse_junit(read("pytest-junit.xml"), source="pytest-junit.xml")
        assert (report.tests, report.failures, report.errors, report.skipped, report.passed) == (
            5,
            1,
            1,
            1,
            2,
        )
        (suite,) = report.suites
        assert suite.name == "pytest"
        assert suite.time_s == pytest.approx(1.234)
        outcomes = {c.name: c.outcome for c in suite.cases}
        assert outcomes == {
            "test_get_ok": "passed",
            "test_post_validates": "failed",
            "test_db": "error",
            "test_slow": "skipped",
            "test_roundtrip[utf-8]": "passed",
        }
        failed = next(c for c in suite.cases if c.outcome == "failed")
        assert failed.message == "AssertionError: assert 400 == 422"
        assert failed.classname == "tests.unit.test_api"

    def test_digest_is_sha256_of_exact_bytes(self) -> None:
        raw = read("pytest-junit.xml")
        assert parse_junit(raw).digest == "sha256:" + hashlib.sha256(raw).hexdigest()
        assert parse_junit(raw + b"\n").digest != parse_junit(raw).digest

    def test_str_and_bytes_agree(self) -> None:
        raw = read("pytest-junit-green.xml")
        assert parse_junit(raw.decode()).tests == parse_junit(raw).tests == 4


class TestSurefireReport:
    def test_testsuite_root(self) -> None:
        report = parse_junit(read("TEST-com.example.PaymentServiceIT.xml"))
        assert (report.tests, report.failures, report.errors, report.skipped) == (4, 1, 0, 1)
        assert report.suites[0].name == "com.example.PaymentServiceIT"
        failed = [c for c in report.suites[0].cases if c.outcome == "failed"]
        assert [c.name for c in failed] == ["rejectsExpiredCard"]
        assert failed[0].message == "expected: <DECLINED> but was: <APPROVED>"


class TestCounting:
    def test_missing_counts_are_derived_from_children(self) -> None:
        report = parse_junit(read("junit-no-counts.xml"))
        assert (report.tests, report.failures, report.errors, report.skipped) == (3, 1, 0, 1)

    def test_declared_zero_failures_cannot_hide_a_listed_failure(self) -> None:
        report = parse_junit(read("junit-understated.xml"))
        assert report.failures == 1
        assert report.tests == 2

    def test_declared_counts_kept_when_cases_are_not_listed(self) -> None:
        report = parse_junit('<testsuite name="s" tests="10" failures="2" errors="0" skipped="0"/>')
        assert (report.tests, report.failures) == (10, 2)

    def test_nested_suites_are_flattened(self) -> None:
        xml = (
            '<testsuites><testsuite name="outer">'
            '<testsuite name="a"><testcase name="t1"/></testsuite>'
            '<testsuite name="b"><testcase name="t2"><error message="x"/></testcase></testsuite>'
            "</testsuite></testsuites>"
        )
        report = parse_junit(xml)
        assert [s.name for s in report.suites] == ["a", "b"]
        assert (report.tests, report.errors) == (2, 1)

    def test_namespaced_tags(self) -> None:
        xml = '<j:testsuite xmlns:j="urn:x"><j:testcase name="a"><j:failure/></j:testcase></j:testsuite>'
        assert parse_junit(xml).failures == 1

    def test_empty_testsuites_proves_no_tests(self) -> None:
        report = parse_junit("<testsuites/>")
        assert report.tests == 0


class TestErrors:
    def test_malformed_xml_reports_line(self) -> None:
        with pytest.raises(EvidenceError) as exc:
            parse_junit(read("junit-malformed.xml"), source="junit-malformed.xml")
        assert exc.value.line == 5
        assert "mismatched tag" in exc.value.message
        assert str(exc.value).startswith("junit-malformed.xml:5:")

    def test_bad_count_reports_line_of_element(self) -> None:
        with pytest.raises(EvidenceError) as exc:
            parse_junit(read("junit-bad-count.xml"))
        assert exc.value.line == 3
        assert "failures='many' is not an integer" in exc.value.message

    def test_billion_laughs_rejected_before_expansion(self) -> None:
        with pytest.raises(EvidenceError) as exc:
            parse_junit(read("junit-billion-laughs.xml"))
        assert exc.value.line == 2
        assert "DOCTYPE" in exc.value.message

    def test_external_entity_rejected(self) -> None:
        with pytest.raises(EvidenceError, match="DOCTYPE"):
            parse_junit(read("junit-xxe.xml"))

    @pytest.mark.parametrize("data", [b"", b"   \n", ""])
    def test_empty_input(self, data: bytes | str) -> None:
        with pytest.raises(EvidenceError, match="empty"):
            parse_junit(data)

    def test_wrong_root(self) -> None:
        with pytest.raises(EvidenceError, match=r"root element is <html>"):
            parse_junit("<html><body/></html>")

    def test_negative_count(self) -> None:
        with pytest.raises(EvidenceError, match="negative"):
            parse_junit('<testsuite tests="-1"/>')

    def test_testcase_without_name(self) -> None:
        with pytest.raises(EvidenceError, match="no 'name'") as exc:
            parse_junit('<testsuite>\n<testcase classname="a"/>\n</testsuite>')
        assert exc.value.line == 2

    def test_undefined_entity_is_a_syntax_error(self) -> None:
        with pytest.raises(EvidenceError, match="undefined entity"):
            parse_junit('<testsuite name="&foo;"/>')


class TestNeverUnderstates:
    """Whatever a report declares, the parsed counts are at least what its test cases show."""

    @given(
        outcomes=st.lists(st.sampled_from(["", "<failure/>", "<error/>", "<skipped/>"]), max_size=30),
        declared=st.fixed_dictionaries(
            {k: st.none() | st.integers(0, 40) for k in ("tests", "failures", "errors", "skipped")}
        ),
    )
    @settings(max_examples=200, deadline=None)
    def test_counts_are_lower_bounded(self, outcomes: list[str], declared: dict[str, int | None]) -> None:
        attrs = " ".join(f'{k}="{v}"' for k, v in declared.items() if v is not None)
        cases = "".join(f'<testcase name="t{i}">{o}</testcase>' for i, o in enumerate(outcomes))
        report = parse_junit(f"<testsuite {attrs}>{cases}</testsuite>")
        assert report.failures >= outcomes.count("<failure/>")
        assert report.errors >= outcomes.count("<error/>")
        assert report.skipped >= outcomes.count("<skipped/>")
        assert report.tests >= len(outcomes)
        assert report.tests >= report.failures + report.errors + report.skipped
        assert report.passed == report.tests - report.failures - report.errors - report.skipped


REAL = Path(__file__).parents[3] / "fixtures" / "real" / "junit"


class TestCountsFromTestCases:
    """Issue 11: declared totals are a cross-check; each test case is counted once."""

    def test_phpunit_suite_with_own_cases_and_nested_suites_is_not_counted_twice(self) -> None:
        # PHPUnit's outer suite declares tests="12" for its 2 own and 10 nested tests (read as 22 before).
        report = parse_junit((REAL / "phpunit-nested-dorny.xml").read_bytes())
        assert (report.tests, report.failures, report.errors, report.passed) == (12, 2, 0, 10)
        assert report.notes == ()

    def test_declared_failures_no_case_accounts_for_are_kept(self) -> None:
        xml = (
            '<testsuite name="s" tests="2" failures="2"><testcase name="a"/><testcase name="b"/></testsuite>'
        )
        report = parse_junit(xml)
        assert (report.tests, report.failures) == (2, 2)
        assert report.suites[0].unlisted_failures == 2
        assert "declares 2 failures and errors, its test cases show 0" in report.notes[0]

    def test_testcases_directly_under_testsuites_are_counted(self) -> None:
        report = parse_junit('<testsuites><testcase name="a"><failure/></testcase></testsuites>')
        assert (report.tests, report.failures) == (1, 1)


class TestReruns:
    def test_surefire_flaky_failure_is_passed_and_flaky(self) -> None:
        report = parse_junit((REAL / "surefire-flaky-mikepenz.xml").read_bytes())
        assert (report.tests, report.failures, report.errors, report.passed, report.flaky) == (1, 0, 0, 1, 1)
        (case,) = report.suites[0].cases
        assert case.flaky and case.outcome == "passed" and case.runs == 2

    def test_surefire_reruns_count_once_per_test(self) -> None:
        report = parse_junit((REAL / "surefire-reruns-enricomi.xml").read_bytes())
        # failsAssertionAlways: failure + 3 rerunFailure = 1 failure; throwsAlways: 1 error; 2 flaky passes
        assert (report.tests, report.failures, report.errors, report.passed, report.flaky) == (4, 1, 1, 2, 2)
        runs = {c.name: c.runs for c in report.suites[0].cases}
        assert runs == {
            "throwsAlways": 4,
            "failsAssertionAlways": 4,
            "failsAssertionOnlyFirstAttempt": 2,
            "throwsOnlyFirstAttempt": 2,
        }

    def test_a_test_listed_once_per_run_that_passed_on_rerun_is_one_flaky_pass(self) -> None:
        # Gradle test-retry / web-test-runner write one <testcase> per run and count each failed run.
        xml = (
            '<testsuite name="s" tests="3" failures="1">'
            '<testcase classname="C" name="retried"><failure message="flaky"/></testcase>'
            '<testcase classname="C" name="retried"/>'
            '<testcase classname="C" name="other"/>'
            "</testsuite>"
        )
        report = parse_junit(xml)
        assert (report.tests, report.failures, report.passed, report.flaky) == (2, 0, 2, 1)
        assert report.notes == ()

    def test_runs_that_all_failed_are_one_failure(self) -> None:
        xml = (
            '<testsuite name="s" tests="2" failures="2">'
            '<testcase classname="C" name="t"><failure/></testcase>'
            '<testcase classname="C" name="t"><failure/></testcase></testsuite>'
        )
        report = parse_junit(xml)
        assert (report.tests, report.failures, report.flaky, report.notes) == (1, 1, 0, ())

    def test_trainer_repetitions_fold_into_tests(self) -> None:
        # fastlane trainer (Xcode retries): 4 tests, one flaky pass, one failure in every repetition
        report = parse_junit((REAL / "xcode-trainer-retried-dorny.xml").read_bytes())
        assert (report.tests, report.failures, report.passed, report.flaky) == (4, 1, 3, 1)
        assert report.notes == ()

    def test_rerun_failure_alone_still_fails(self) -> None:
        xml = '<testsuite name="s"><testcase name="t"><rerunFailure message="boom"/></testcase></testsuite>'
        report = parse_junit(xml)
        assert (report.failures, report.flaky) == (1, 0)
