"""TOTP second factor (RFC 6238): enrolment, verification with drift and replay protection, recovery codes.

Verification accepts the current 30-second step and one step either side (RFC 6238
§5.2 recommends at most one step of network delay).  Replay protection is the
RFC's MUST: a code, once accepted, is never accepted again.  We store the *step*
of the last accepted code per user and refuse any step at or before it — which
also refuses an older, still-in-window code once a newer one was used.

Everything is a pure function of the secret, the code, ``now`` and the stored
last step; the caller persists the returned step (and keeps the secret encrypted
at rest with :mod:`shipwarden.security.envelope`).

Recovery codes are 80 random bits each, shown once, stored as SHA-256 hashes.
With that much entropy a slow hash buys nothing (like API tokens, and unlike
passwords), and checking ten of them stays instant.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import pyotp

__all__ = [
    "PERIOD",
    "TotpCheck",
    "TotpEnrollment",
    "TotpResult",
    "enroll",
    "generate_recovery_codes",
    "hash_recovery_code",
    "time_step",
    "totp_at",
    "use_recovery_code",
    "verify_totp",
]

PERIOD = 30
DIGITS = 6
DRIFT_STEPS = 1
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: codes are typed from paper


@dataclass(frozen=True, slots=True)
class TotpEnrollment:
    """A new secret (base32, 160 bits) and the ``otpauth://`` URI an authenticator app scans."""

    secret: str
    uri: str


def enroll(account: str, issuer: str = "shipwarden", *, digits: int = DIGITS) -> TotpEnrollment:
    """Create a secret for ``account``.  Activate it only after the user proves it with one code."""
    secret = pyotp.random_base32(length=32)  # 32 base32 chars = 160 bits, the HMAC-SHA1 output size
    otp = pyotp.TOTP(secret, digits=digits, interval=PERIOD)
    uri = otp.provisioning_uri(name=account, issuer_name=issuer)
    return TotpEnrollment(secret, uri)


def time_step(now: datetime, period: int = PERIOD) -> int:
    """RFC 6238 ``T = floor((unix_time - T0) / X)`` with ``T0 = 0``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (a naive time would be read as local time)")
    return int(now.timestamp()) // period


def totp_at(secret: str, step: int, *, digits: int = DIGITS) -> str:
    """The code for time step ``step``."""
    return str(pyotp.TOTP(secret, digits=digits).generate_otp(step))


class TotpResult(StrEnum):
    OK = "ok"
    INVALID = "invalid"
    """Wrong code, or right code outside the ±1 step window."""
    REPLAYED = "replayed"
    """A code for a step at or before the last accepted one: already used (or superseded)."""


@dataclass(frozen=True, slots=True)
class TotpCheck:
    result: TotpResult
    step: int | None = None
    """The accepted step: store it as the user's new ``last_step``."""

    @property
    def ok(self) -> bool:
        return self.result is TotpResult.OK


def verify_totp(
    secret: str,
    code: str,
    now: datetime,
    last_step: int | None,
    *,
    digits: int = DIGITS,
    drift: int = DRIFT_STEPS,
) -> TotpCheck:
    """Check ``code`` at ``now`` against steps T-drift..T+drift, refusing steps ≤ ``last_step``."""
    code = code.strip().replace(" ", "") if isinstance(code, str) else ""
    if len(code) != digits or not code.isdigit() or not code.isascii():
        return TotpCheck(TotpResult.INVALID)
    otp = pyotp.TOTP(secret, digits=digits)
    now_step = time_step(now)
    matched: int | None = None
    for step in range(now_step - drift, now_step + drift + 1):  # check all: constant work per call
        if hmac.compare_digest(str(otp.generate_otp(step)), code) and matched is None:
            matched = step
    if matched is None:
        return TotpCheck(TotpResult.INVALID)
    if last_step is not None and matched <= last_step:
        return TotpCheck(TotpResult.REPLAYED, matched)
    return TotpCheck(TotpResult.OK, matched)


def _normalise_recovery(code: str) -> str:
    return "".join(c for c in code.lower() if c.isalnum())


def hash_recovery_code(code: str) -> str:
    return hashlib.sha256(_normalise_recovery(code).encode()).hexdigest()


def generate_recovery_codes(n: int = 10) -> tuple[list[str], list[str]]:
    """``n`` codes like ``k7mq-x2pd-9tfa-hr4w`` (16 chars ≈ 79 bits) and their hashes to store."""
    codes = []
    for _ in range(n):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes, [hash_recovery_code(c) for c in codes]


def use_recovery_code(code: str, stored_hashes: Sequence[str | None]) -> int | None:
    """Index of the stored hash ``code`` matches (the caller deletes it: single use), else ``None``.

    Dashes, spaces and case are ignored.  Used slots may be ``None``.
    """
    h = hash_recovery_code(code)
    found: int | None = None
    for i, stored in enumerate(stored_hashes):
        if stored is not None and hmac.compare_digest(stored, h) and found is None:
            found = i
    return found
