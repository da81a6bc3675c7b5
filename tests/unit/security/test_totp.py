"""TOTP: RFC 6238 vector, drift window, replay refusal, enrolment URI, recovery codes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest

from shipwarden.security.totp import (
    TotpResult,
    enroll,
    generate_recovery_codes,
    time_step,
    totp_at,
    use_recovery_code,
    verify_totp,
)

RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
T59 = datetime.fromtimestamp(59, UTC)
NOW = datetime(2025, 3, 1, 12, 0, 10, tzinfo=UTC)


def test_rfc6238_test_vector() -> None:
    assert time_step(T59) == 1
    assert totp_at(RFC_SECRET, 1, digits=8) == "94287082"
    assert totp_at(RFC_SECRET, 1) == "287082"
    assert verify_totp(RFC_SECRET, "94287082", T59, None, digits=8).ok
    assert verify_totp(RFC_SECRET, "287082", T59, None).step == 1


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        time_step(datetime(2025, 1, 1))


def test_wrong_and_malformed_codes() -> None:
    secret = enroll("alice").secret
    right = totp_at(secret, time_step(NOW))
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    for code in (wrong, "", "12345", "1234567", "abcdef", "１２３４５６"):
        assert verify_totp(secret, code, NOW, None).result is TotpResult.INVALID
    assert verify_totp(secret, f" {right[:3]} {right[3:]} ", NOW, None).ok  # spaces as shown in apps


@pytest.mark.parametrize(("offset", "ok"), [(-2, False), (-1, True), (0, True), (1, True), (2, False)])
def test_drift_window_is_one_step(offset: int, ok: bool) -> None:
    secret = enroll("alice").secret
    step = time_step(NOW) + offset
    check = verify_totp(secret, totp_at(secret, step), NOW, None)
    assert check.ok is ok
    if ok:
        assert check.step == step


def test_replay_is_refused_and_older_codes_after_a_newer_one() -> None:
    secret = enroll("alice").secret
    t = time_step(NOW)
    first = verify_totp(secret, totp_at(secret, t), NOW, None)
    assert first.ok and first.step == t
    again = verify_totp(secret, totp_at(secret, t), NOW + timedelta(seconds=5), first.step)
    assert again.result is TotpResult.REPLAYED
    older = verify_totp(secret, totp_at(secret, t - 1), NOW, first.step)
    assert older.result is TotpResult.REPLAYED
    nxt = verify_totp(secret, totp_at(secret, t + 1), NOW + timedelta(seconds=30), first.step)
    assert nxt.ok and nxt.step == t + 1


def test_enrolment_uri_and_secret_strength() -> None:
    e = enroll("alice@example.com", issuer="Ship Warden")
    assert len(base64.b32decode(e.secret)) == 20
    u = urlparse(e.uri)
    assert (u.scheme, u.netloc) == ("otpauth", "totp")
    q = parse_qs(u.query)
    assert q["secret"] == [e.secret] and q["issuer"] == ["Ship Warden"]
    assert "alice%40example.com" in u.path or "alice@example.com" in u.path
    parsed = pyotp.parse_uri(e.uri)
    assert isinstance(parsed, pyotp.TOTP) and parsed.now() == pyotp.TOTP(e.secret).now()
    assert enroll("alice").secret != enroll("alice").secret


def test_recovery_codes_are_hashed_and_single_use() -> None:
    codes, hashes = generate_recovery_codes(10)
    assert len(set(codes)) == 10 and all(len(c) == 19 for c in codes)
    assert not any(c in h or c.replace("-", "") in h for c in codes for h in hashes)
    i = use_recovery_code(codes[3].upper().replace("-", " "), hashes)
    assert i == 3
    hashes[3] = None  # type: ignore[call-overload]
    assert use_recovery_code(codes[3], hashes) is None
    assert use_recovery_code("aaaa-bbbb-cccc-dddd", hashes) is None
