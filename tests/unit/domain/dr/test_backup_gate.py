"""The checklist's "backup verified" gate reads the stored restore tests when shipwarden manages
the databases: a failed or too old verification fails it, and an uploaded claim does not count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shipwarden.domain.evidence import BackupVerification, Evidence
from shipwarden.domain.gates import GatePolicy, evaluate_gates

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)
POLICY = GatePolicy.model_validate(
    {
        "suites": {"unit": {}, "integration": {}, "security": {}},
        "checklist": {"securityScan": None, "rollbackPlan": None, "backup": {"maxAge": "6h"}},
    }
)
UPLOADED = Evidence("e-1", "backup", BackupVerification("bk", NOW - timedelta(minutes=1), True), NOW, None)


def gate(
    backups: dict[str, BackupVerification | None] | None, evidence: list[Evidence] | None = None
) -> object:
    results = evaluate_gates(POLICY, evidence or [], [], NOW, backups=backups)
    return next(r for r in results if r.gate == "backup")


def v(age_h: float, ok: bool = True, detail: str = "checksums equal") -> BackupVerification:
    return BackupVerification("hello/b-1", NOW - timedelta(hours=age_h), ok, detail)


def test_fresh_passing_verification_passes() -> None:
    g = gate({"hello": v(1)})
    assert g.passed and g.reason == "ok" and "hello/b-1" in g.detail  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("backups", "reason", "words"),
    [
        ({"hello": v(7)}, "stale", "last verified 7:00:00 ago (max 6:00:00)"),
        ({"hello": v(1, ok=False, detail="2 table(s) differ")}, "violated", "2 table(s) differ"),
        ({"hello": None}, "missing", "never verified"),
        ({"hello": v(1), "cart": v(8)}, "stale", "cart"),
        ({"hello": v(1), "cart": v(0.5, ok=False)}, "violated", "cart"),
    ],
)
def test_failed_old_or_absent_verification_fails(
    backups: dict[str, BackupVerification | None], reason: str, words: str
) -> None:
    g = gate(backups, [UPLOADED])  # an uploaded claim changes nothing
    assert not g.passed and g.reason == reason and words in g.detail  # type: ignore[attr-defined]


def test_without_managed_databases_uploads_are_judged_as_before() -> None:
    assert gate(None, [UPLOADED]).passed  # type: ignore[attr-defined]
    assert not gate(None, []).passed  # type: ignore[attr-defined]
