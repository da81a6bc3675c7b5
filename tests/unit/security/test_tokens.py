"""API tokens: shown once, stored hashed, scoped, expiring, revocable."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shipwarden.domain.access import Permission
from shipwarden.security.tokens import (
    TokenStatus,
    check_token,
    hash_token,
    issue_token,
    revoke_token,
    token_id_of,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
P = Permission


def test_issue_stores_only_the_sha256() -> None:
    token, rec = issue_token("ci-bot", "deploys", [P.DEPLOYMENT_CREATE], NOW, timedelta(days=30))
    assert token.startswith("swt_") and token_id_of(token) == rec.token_id
    assert rec.token_hash == hashlib.sha256(token.encode()).hexdigest() == hash_token(token)
    secret = token.split("_", 2)[2]  # swt_<id>_<secret>; the secret itself may contain "_"
    assert token not in repr(rec) and secret not in repr(rec)
    assert rec.expires_at == NOW + timedelta(days=30)
    other, _ = issue_token("ci-bot", "deploys", [P.DEPLOYMENT_CREATE], NOW, timedelta(days=30))
    assert other != token


def test_check_ok_scope_and_service() -> None:
    token, rec = issue_token("ci", "t", ["deployment.create", "evidence.write"], NOW, timedelta(hours=1),
                             services=["checkout"])
    assert check_token(rec, token, NOW, P.EVIDENCE_WRITE, "checkout") is TokenStatus.OK
    assert check_token(rec, token, NOW, P.DEPLOYMENT_PROMOTE, "checkout") is TokenStatus.OUT_OF_SCOPE
    assert check_token(rec, token, NOW, P.EVIDENCE_WRITE, "search") is TokenStatus.OUT_OF_SCOPE
    assert check_token(rec, token, NOW, P.EVIDENCE_WRITE) is TokenStatus.OUT_OF_SCOPE


def test_wrong_token_expiry_and_revocation() -> None:
    token, rec = issue_token("ci", "t", [P.K8S_AUDIT_WRITE], NOW, timedelta(hours=1))
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert check_token(rec, forged, NOW) is TokenStatus.INVALID
    assert check_token(rec, "Bearer " + token, NOW) is TokenStatus.INVALID
    assert check_token(replace(rec, token_hash="0" * 64), token, NOW) is TokenStatus.INVALID
    assert check_token(rec, token, NOW + timedelta(minutes=59)) is TokenStatus.OK
    assert check_token(rec, token, NOW + timedelta(hours=1)) is TokenStatus.EXPIRED
    revoked = revoke_token(rec, NOW + timedelta(minutes=5))
    assert check_token(revoked, token, NOW + timedelta(minutes=4)) is TokenStatus.OK
    assert check_token(revoked, token, NOW + timedelta(minutes=6)) is TokenStatus.REVOKED
    assert revoke_token(revoked, NOW + timedelta(minutes=9)).revoked_at == revoked.revoked_at


@pytest.mark.parametrize(("scopes", "ttl"), [
    ([], timedelta(days=1)), (["deployment.nuke"], timedelta(days=1)),
    ([P.AUDIT_READ], timedelta(0)), ([P.AUDIT_READ], timedelta(days=400)),
])
def test_issue_refuses_bad_requests(scopes: list[str], ttl: timedelta) -> None:
    with pytest.raises(ValueError):
        issue_token("x", "t", scopes, NOW, ttl)
