"""CircleCI webhooks: v1 HMAC (spec test vectors), anti-downgrade, both payload shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shipwarden.adapters.ci.base import CiStatus, IgnoredEvent, PayloadError, SignatureError, hmac_sha256_hex
from shipwarden.adapters.ci.circleci import CircleCiWebhook, parse_circleci_event, verify_circleci_signature

SECRET = "s3cr3t-webhook-token"
SHA = "9c2ed4b5c0dff8a1a1b2c3d4e5f60718293a4b5c"


def workflow_event_vcs(status: str = "success") -> dict[str, Any]:
    """workflow-completed for a GitHub OAuth project (``pipeline.vcs`` shape)."""
    return {
        "id": "3888f21b-eaa7-38e3-8f3d-75a63bba8895",
        "type": "workflow-completed",
        "happened_at": "2026-11-23T11:58:02.211Z",
        "webhook": {"id": "cf8c4fdd-0587-4da1-b4ca-4846e9640af9", "name": "shipwarden"},
        "project": {
            "id": "84996744-a854-4f5e-aea3-04e2851dc1d2",
            "name": "payments",
            "slug": "github/acme/payments",
        },
        "organization": {"id": "f22b6566-597d-46d5-ba74-99ef5bb3d85c", "name": "acme"},
        "workflow": {
            "id": "fda08377-fe7e-46b1-8992-3a7aaecac9c3",
            "name": "build-and-test",
            "created_at": "2026-11-23T11:53:39.336Z",
            "stopped_at": "2026-11-23T11:58:02.199Z",
            "url": "https://app.circleci.com/pipelines/github/acme/payments/130/workflows/fda08377",
            "status": status,
        },
        "pipeline": {
            "id": "1285fe1d-d3a6-44fc-8886-8979558254c4",
            "number": 130,
            "created_at": "2026-11-23T11:53:38.901Z",
            "trigger": {"type": "webhook"},
            "vcs": {
                "provider_name": "github",
                "origin_repository_url": "https://github.com/acme/payments",
                "target_repository_url": "https://github.com/acme/payments",
                "revision": SHA,
                "commit": {"subject": "Add refunds", "body": "", "author": {"name": "Dev", "email": "d@x"}},
                "branch": "feature/refunds",
            },
        },
    }


def job_event_trigger_parameters() -> dict[str, Any]:
    """job-completed for a GitLab / GitHub App project: no ``vcs``, ``trigger_parameters`` instead."""
    return {
        "id": "e6a3ea8c-6f9c-4d5b-b3d1-b0d95c4fbd2c",
        "type": "job-completed",
        "happened_at": "2026-11-23T11:59:10.000Z",
        "webhook": {"id": "w", "name": "shipwarden"},
        "project": {"id": "p", "name": "payments", "slug": "circleci/8e1d2b3c/4f5a6b7c"},
        "organization": {"id": "o", "name": "acme"},
        "workflow": {
            "id": "wf-2",
            "name": "build-and-test",
            "created_at": "2026-11-23T11:55:00Z",
            "url": "u",
        },
        "job": {
            "id": "job-uuid",
            "number": 4242,
            "name": "unit-tests",
            "status": "failed",
            "started_at": "2026-11-23T11:55:10Z",
            "stopped_at": "2026-11-23T11:59:09Z",
        },
        "pipeline": {
            "id": "pl-2",
            "number": 77,
            "created_at": "2026-11-23T11:55:00Z",
            "trigger": {"type": "gitlab"},
            "trigger_parameters": {
                "git": {
                    "tag": "",
                    "checkout_sha": SHA,
                    "ref": "refs/heads/main",
                    "branch": "main",
                    "checkout_url": "https://gitlab.com/acme/payments.git",
                },
                "circleci": {
                    "event_time": "2026-11-23T11:55:00Z",
                    "event_type": "push",
                    "trigger_type": "gitlab",
                },
                "gitlab": {"commit_sha": SHA, "branch": "main"},
            },
        },
    }


def signed(doc: dict[str, Any], secret: str = SECRET) -> tuple[dict[str, str], bytes]:
    body = json.dumps(doc).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "CircleCI-Webhook/1.0",
        "Circleci-Event-Type": doc["type"],
        "Circleci-Signature": f"v1={hmac_sha256_hex(secret, body)}",
    }
    return headers, body


class TestSignature:
    @pytest.mark.parametrize(
        ("body", "digest"),
        [
            (b"hello world", "734cc62f32841568f45715aeb9f4d7891324e6d948e4c6c60c0621cdac48623a"),
            (b"foo", "773ba44693c7553d6ee20f61ea5d2757a9a4f4a44d2841ae4e95b52e4cd62db4"),
        ],
    )
    def test_documented_vectors(self, body: bytes, digest: str) -> None:
        assert hmac_sha256_hex("secret", body) == digest
        verify_circleci_signature("secret", body, f"v1={digest}")

    def test_several_pairs_only_v1_checked(self) -> None:
        digest = "734cc62f32841568f45715aeb9f4d7891324e6d948e4c6c60c0621cdac48623a"
        verify_circleci_signature("secret", b"hello world", f"v2=deadbeef, v1={digest}")

    def test_unsupported_version_only_is_refused(self) -> None:
        with pytest.raises(SignatureError, match="no supported signature version.*got v2"):
            verify_circleci_signature("secret", b"hello world", "v2=whatever")

    def test_wrong_digest(self) -> None:
        with pytest.raises(SignatureError, match="does not match"):
            verify_circleci_signature(
                "secret",
                b"hello world!",
                "v1=734cc62f32841568f45715aeb9f4d7891324e6d948e4c6c60c0621cdac48623a",
            )

    def test_valid_v1_does_not_let_a_bad_v1_win_or_vice_versa(self) -> None:
        good = hmac_sha256_hex("secret", b"x")
        verify_circleci_signature("secret", b"x", f"v1=00,v1={good}")  # rotation: any v1 may match
        with pytest.raises(SignatureError):
            verify_circleci_signature("secret", b"x", "v1=00,v1=11")

    @pytest.mark.parametrize("header", [None, "", "garbage", "=abc"])
    def test_missing_or_malformed_header(self, header: str | None) -> None:
        with pytest.raises(SignatureError):
            verify_circleci_signature("secret", b"x", header)

    def test_no_secret_configured_refuses(self) -> None:
        with pytest.raises(SignatureError, match="no webhook secret"):
            verify_circleci_signature("", b"x", "v1=" + hmac_sha256_hex("", b"x"))

    def test_tampered_body_refused_before_parsing(self) -> None:
        headers, body = signed(workflow_event_vcs())
        with pytest.raises(SignatureError):
            CircleCiWebhook(SECRET).receive(headers, body.replace(b"success", b"failed!"))


class TestNormalisation:
    def test_workflow_completed_vcs_shape(self) -> None:
        headers, body = signed(workflow_event_vcs())
        e = CircleCiWebhook(SECRET).receive(headers, body)
        assert e.provider == "circleci"
        assert e.event_id == "3888f21b-eaa7-38e3-8f3d-75a63bba8895"
        assert e.delivered_at == datetime(2026, 11, 23, 11, 58, 2, 211000, tzinfo=UTC)
        assert (e.commit_sha, e.branch, e.repository) == (SHA, "feature/refunds", "github/acme/payments")
        assert (e.pipeline_id, e.pipeline_number) == ("1285fe1d-d3a6-44fc-8886-8979558254c4", 130)
        assert (e.workflow_name, e.status, e.job_name) == ("build-and-test", CiStatus.SUCCESS, None)
        assert (e.stage_name, e.stage_status) == ("build-and-test", CiStatus.SUCCESS)

    def test_job_completed_trigger_parameters_shape(self) -> None:
        headers, body = signed(job_event_trigger_parameters())
        e = CircleCiWebhook(SECRET).receive(headers, body)
        assert (e.commit_sha, e.branch) == (SHA, "main")
        assert (e.job_name, e.job_status, e.job_number) == ("unit-tests", CiStatus.FAILED, 4242)
        assert e.status is None  # job events carry no workflow status
        assert (e.stage_name, e.stage_status) == ("unit-tests", CiStatus.FAILED)

    @pytest.mark.parametrize(
        ("raw", "status"),
        [
            ("failed", CiStatus.FAILED),
            ("error", CiStatus.FAILED),
            ("canceled", CiStatus.CANCELED),
            ("unauthorized", CiStatus.FAILED),
        ],
    )
    def test_status_mapping_never_invents_success(self, raw: str, status: CiStatus) -> None:
        assert parse_circleci_event(json.dumps(workflow_event_vcs(raw)).encode()).status is status

    def test_status_outside_the_documented_enum_is_refused(self) -> None:
        with pytest.raises(PayloadError) as exc:
            parse_circleci_event(json.dumps(workflow_event_vcs("brand-new-status")).encode())
        assert exc.value.path == "$.workflow.status"

    def test_unknown_keys_ignored(self) -> None:
        doc = workflow_event_vcs()
        doc["new_field"] = {"x": 1}
        doc["pipeline"]["vcs"]["new"] = True
        assert parse_circleci_event(json.dumps(doc).encode()).commit_sha == SHA

    def test_no_commit_anywhere(self) -> None:
        doc = workflow_event_vcs()
        del doc["pipeline"]["vcs"]
        with pytest.raises(PayloadError, match="no commit") as exc:
            parse_circleci_event(json.dumps(doc).encode())
        assert exc.value.path == "$.pipeline"

    def test_missing_id(self) -> None:
        doc = workflow_event_vcs()
        del doc["id"]
        with pytest.raises(PayloadError) as exc:
            parse_circleci_event(json.dumps(doc).encode())
        assert exc.value.path == "$.id"

    def test_bad_timestamp(self) -> None:
        doc = workflow_event_vcs()
        doc["happened_at"] = "yesterday"
        with pytest.raises(PayloadError, match="ISO 8601") as exc:
            parse_circleci_event(json.dumps(doc).encode())
        assert exc.value.path == "$.happened_at"

    def test_job_event_without_job(self) -> None:
        doc = job_event_trigger_parameters()
        del doc["job"]
        with pytest.raises(PayloadError) as exc:
            parse_circleci_event(json.dumps(doc).encode())
        assert exc.value.path == "$.job"

    def test_ping_is_ignored(self) -> None:
        with pytest.raises(IgnoredEvent):
            parse_circleci_event(b'{"type": "ping", "id": "x"}')

    def test_not_json(self) -> None:
        with pytest.raises(PayloadError, match="not JSON"):
            parse_circleci_event(b"{nope")


class TestAsCheck:
    def test_workflow_event_becomes_ci_check(self) -> None:
        e = parse_circleci_event(json.dumps(workflow_event_vcs("failed")).encode())
        check = e.as_check()
        assert check is not None
        assert (check.provider, check.name, check.status, check.pipeline_id) == (
            "circleci",
            "build-and-test",
            "failed",
            "1285fe1d-d3a6-44fc-8886-8979558254c4",
        )

    def test_job_event_checks_the_job(self) -> None:
        e = parse_circleci_event(json.dumps(job_event_trigger_parameters()).encode())
        check = e.as_check()
        assert check is not None and (check.name, check.status) == ("unit-tests", "failed")
