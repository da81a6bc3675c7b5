"""Pure parts of continuous delivery: the policy section, verdicts, release notes, masking, report storage."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from shipwarden.adapters.store.changes_repo import report_from_json, report_to_json
from shipwarden.domain.delivery import (
    Commit,
    DeliveryPolicy,
    PerfValidation,
    SmokeCheck,
    missing_headers,
    perf_verdict,
    release_notes,
    smoke_verdict,
    summarize_latencies,
    version_for,
)
from shipwarden.domain.evidence import (
    BackupVerification,
    CiCheck,
    Migration,
    RollbackPlan,
    parse_junit,
    parse_k6_summary,
    parse_sarif,
)
from shipwarden.domain.policy import PolicyError, load_policy_text
from shipwarden.services.changes import _parse, render_explanation
from shipwarden.services.notify import Notifier, mask_url

DATA = Path(__file__).parents[2] / "data" / "evidence"
SHA = "0123456789abcdef0123456789abcdef01234567"

BASE = """\
apiVersion: shipwarden/v1
team: t
services:
  - name: web
    run: {command: ["x"]}
    routing: {port: 1, previewPort: 2}
    strategy: {blueGreen: {}}
"""


def delivery(**kw: object) -> DeliveryPolicy:
    doc: dict[str, object] = {"repository": {"url": "../origin.git"}, "services": ["web"], **kw}
    return DeliveryPolicy.model_validate(doc)


class TestPolicySection:
    def test_defaults(self) -> None:
        d = delivery()
        assert d.repository.main_branch == "main" and d.repository.merge_mode == "merge-commit"
        assert d.version == "{short}" and d.releases == "releases"
        assert d.post_deployment.rollback_on_failure and d.preparation.require_backup
        assert [s.path for s in d.post_deployment.smoke] == ["/healthz"]

    def test_roles_of(self) -> None:
        d = delivery(approvers={"cab": ["carol", "dan"], "qa": ["carol"]})
        assert d.roles_of("carol") == {"cab", "qa"} and d.roles_of("mallory") == frozenset()

    @pytest.mark.parametrize(
        ("kw", "message"),
        [
            ({"version": "release"}, "must contain {short} or {sha}"),
            ({"version": "{short}/../x"}, "contains a path separator"),
            ({"version": "{short}{x}"}, "only the {short} and {sha} placeholders"),
            ({"notify": {"urls": ["slack://T/B/C"]}}, "is not a secret name"),
            ({"services": ["web", "web"]}, "listed twice"),
            ({"postDeployment": {"security": {"url": "ftp://x"}}}, "http:// or https://"),
            ({"postDeployment": {"smoke": [{"path": "healthz"}]}}, "must start with '/'"),
            ({"webhooks": {"circleci": "has space"}}, "String should match pattern"),
        ],
    )
    def test_invalid(self, kw: dict[str, object], message: str) -> None:
        with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("(", r"\(")):
            delivery(**kw)

    def test_in_a_policy_file_with_line_numbers(self) -> None:
        text = BASE + "delivery:\n  repository: {url: x}\n  services: [web]\n  bogus: 1\n"
        with pytest.raises(PolicyError) as exc:
            load_policy_text(text, "p.yaml")
        assert str(exc.value.issues[0]).startswith("p.yaml:11: delivery.bogus")
        ok = load_policy_text(BASE + "delivery:\n  repository: {url: x}\n  services: [web]\n", "p.yaml")
        assert ok.policy.delivery is not None and ok.policy.delivery.services == ["web"]

    def test_version_for(self) -> None:
        assert version_for("{short}", SHA) == "0123456789ab"
        assert version_for("web-{sha}", SHA) == f"web-{SHA}"


class TestVerdicts:
    def test_latency_summary_nearest_rank(self) -> None:
        s = summarize_latencies([float(i) for i in range(1, 101)], errors=2)
        assert (s.requests, s.errors, s.p50_ms, s.p95_ms, s.max_ms) == (102, 2, 50.0, 95.0, 100.0)
        assert summarize_latencies([], errors=3).p95_ms is None

    def test_perf_against_baseline(self) -> None:
        spec = PerfValidation(maxRegression=0.5, slackMs=5)
        base = summarize_latencies([10.0] * 20)
        assert perf_verdict(base, summarize_latencies([19.0] * 20), spec).ok  # ≤ 10 * 1.5 + 5
        bad = perf_verdict(base, summarize_latencies([21.0] * 20), spec)
        assert (
            not bad.ok and "latency regression: p95 21.0 ms vs baseline 10.0 ms (limit 20.0 ms)" in bad.detail
        )
        first = perf_verdict(None, summarize_latencies([50.0] * 5), spec)
        assert first.ok and "no pre-deployment baseline" in first.detail
        errs = perf_verdict(base, summarize_latencies([10.0] * 9, errors=1), spec)
        assert not errs.ok and "error rate 10.0%" in errs.detail
        assert not perf_verdict(base, summarize_latencies([], errors=5), spec).ok

    def test_smoke_and_headers(self) -> None:
        spec = SmokeCheck(path="/", contains='"version"')
        assert smoke_verdict(200, '{"version": "v2"}', spec).ok
        assert "lacks" in smoke_verdict(200, "{}", spec).detail
        assert "answered 502, expected 200" in smoke_verdict(502, "", spec).detail
        headers = {"Strict-Transport-Security": "max-age=1", "X-Version": "v2"}
        assert missing_headers(headers, ["strict-transport-security", "content-security-policy"]) == [
            "content-security-policy"
        ]

    def test_release_notes(self) -> None:
        at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
        commits = [Commit("a" * 40, "Dana", at, "Faster checkout"), Commit("b" * 40, "Eve", at, "Fix\nbug")]
        text = release_notes("web", "v1", "v2", commits, at=at, change_id="c-1", deployment_id="d-1")
        assert text.splitlines()[0] == "## web v2 — 2026-11-23 12:00 UTC"
        assert "from v1; deployment d-1, change c-1; 2 commit(s):" in text
        assert (
            "- aaaaaaaaaaaa Faster checkout (Dana, 2026-11-23)" in text and "- bbbbbbbbbbbb Fix bug" in text
        )
        assert "first release" in release_notes("web", None, "v1", [], at=at)


class TestStoredReports:
    @pytest.mark.parametrize(
        "report",
        [
            parse_junit((DATA / "pytest-junit.xml").read_bytes(), source="pytest-junit.xml"),
            parse_sarif((DATA / "codeql.sarif").read_bytes(), source="codeql.sarif"),
            parse_k6_summary((DATA / "k6-summary-export.json").read_bytes()),
            BackupVerification("snap-1", datetime(2026, 1, 1, tzinfo=UTC), True, "restored"),
            RollbackPlan("v1", (Migration("0001", True), Migration("0002", False))),
            CiCheck("circleci", "build", "success", "pl-1"),
        ],
        ids=lambda r: type(r).__name__,
    )
    def test_round_trip_is_exact(self, report: object) -> None:
        import json

        doc = json.loads(json.dumps(report_to_json(report)))  # type: ignore[arg-type]
        assert report_from_json(doc) == report


class TestEvidenceParsing:
    def test_backup_and_rollback_plan_documents(self) -> None:
        b = _parse(
            "backup", b'{"backupId": "s1", "verifiedAt": "2026-01-01T00:00:00Z", "ok": true}', "b.json"
        )
        assert isinstance(b, BackupVerification) and b.ok and b.verified_at.tzinfo is not None
        from shipwarden.domain.evidence import EvidenceError

        with pytest.raises(EvidenceError, match=r"b.json at \$.verifiedAt: .* has no timezone"):
            _parse("backup", b'{"backupId": "s1", "verifiedAt": "2026-01-01T00:00:00", "ok": true}', "b.json")
        with pytest.raises(EvidenceError, match=r"r.json at \$.migrations\[1\]"):
            _parse(
                "rollback-plan",
                b'{"migrations": [{"name": "a", "reversible": true}, {"name": "b"}]}',
                "r.json",
            )
        with pytest.raises(EvidenceError, match=r"r.json:1:2: not JSON"):
            _parse("rollback-plan", b"{x", "r.json")


class TestNotify:
    def test_masking_hides_credentials_and_query_secrets(self) -> None:
        masked = mask_url("json://user:s3cret@127.0.0.1:9/hook?+X-Token=abc")
        assert "s3cret" not in masked and "abc" not in masked and masked.startswith("json://user:")
        assert "XXXsecretXXX" not in mask_url("slack://T1234/B5678/XXXsecretXXX/#chan")
        assert mask_url("nonsense") == "***" and mask_url("bogus://tok@x") == "bogus://***"

    def test_unset_and_unreachable_targets_fail_without_raising(self) -> None:
        res = Notifier([("UNSET", None), ("DOWN", "json://127.0.0.1:9/x")], timeout=2).send("t", "b")
        assert not res.ok
        assert [(t.name, t.ok) for t in res.targets] == [("UNSET", False), ("DOWN", False)]
        assert res.targets[0].detail == "secret 'UNSET' is not set"


def test_render_explanation_without_gates() -> None:
    doc = {
        "id": "c-1",
        "branch": "f",
        "commit": SHA,
        "status": "pending",
        "reason": "waiting for evidence",
        "gates": [],
        "evidence": [],
        "approvals": [],
    }
    out = render_explanation(doc)
    assert out.splitlines()[:3] == [
        "change c-1: f @ 0123456789ab",
        "status: pending — waiting for evidence",
        "gates (evaluated never):",
    ]
    assert "merged: no" in out and "deployment: none" in out
