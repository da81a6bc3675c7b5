"""The second factor: TOTP enrolment and confirmation, step-up verification, recovery codes.

The TOTP secret is stored as an envelope bound to the user's id; each code is accepted once
(the last used step is advanced atomically), and wrong codes count towards the ``mfa`` lockout.
A successful check gives the session fresh MFA under a new id.
"""

from __future__ import annotations

from typing import Any

from shipwarden.domain.access import Permission, mfa_satisfied
from shipwarden.ports.access import UserRecord
from shipwarden.security.totp import (
    TotpResult,
    enroll,
    generate_recovery_codes,
    hash_recovery_code,
    use_recovery_code,
    verify_totp,
)
from shipwarden.services.access.errors import AuthenticationError, Conflict, InvalidInput, MfaRequired
from shipwarden.services.access.principal import Principal
from shipwarden.services.access.sessions import Sessions


class Mfa(Sessions):
    """Enrols, checks and recovers a user's second factor."""

    def _aad(self, user_id: int) -> bytes:
        return f"user:{user_id}:totp".encode()

    def mfa_enroll(self, p: Principal) -> tuple[str, str]:
        """Start (or restart) enrolment: a new secret, pending until confirmed with a code.

        Replacing an *active* second factor needs a fresh MFA check: a stolen password alone
        must not be enough to move the second factor to the thief's phone."""
        u = self._user(p.name)
        if u.mfa_enabled and not mfa_satisfied(
            Permission.USER_MANAGE, p.mfa_verified_at, self.clock(), self.config.mfa
        ):
            raise MfaRequired(
                "MFA is already enabled: verify a current code (POST /auth/mfa/verify) to replace it"
            )
        en = enroll(u.name, self.config.issuer)
        self.repo.update_user(
            u.id,
            audit={"actor": p.name, "action": "auth.mfa_enroll", "detail": {"ip": p.ip}},
            mfa_secret=self.envelope.encrypt(en.secret.encode(), self._aad(u.id)),
            recovery_hashes=None,
            mfa_last_step=0,
        )
        return en.secret, en.uri

    def _secret(self, u: UserRecord) -> str:
        if u.mfa_secret is None:
            raise InvalidInput(
                f"no MFA enrolment to confirm: start one first (shipwarden user mfa enroll {u.name}, "
                "or POST /auth/mfa/enroll)"
            )
        return self.envelope.decrypt(u.mfa_secret, self._aad(u.id)).decode()

    def _check_code(self, p: Principal, u: UserRecord, code: str) -> None:
        secret = self._secret(u)
        attempt = self.lockout.reserve(u.name, p.ip, kind="mfa")  # counted before the code is looked at
        now = self.clock()
        chk = verify_totp(secret, code, now, u.mfa_last_step)
        if chk.ok and chk.step is not None and not self.repo.advance_mfa_step(u.id, chk.step):
            chk = type(chk)(TotpResult.REPLAYED, chk.step)
        if not chk.ok:
            self.lockout.record_failure(attempt, chk.result.value, actor=p.name)
            if chk.result is TotpResult.REPLAYED:
                raise AuthenticationError("this code was already used: wait for the next one")
            raise AuthenticationError(
                "wrong code (or outside the allowed ±30 s clock drift): check the authenticator's time"
            )
        self.lockout.succeeded(attempt)

    def _verify_enabled(self, p: Principal, code: str) -> None:
        """The step-up check of an enrolled user (session or CLI): their current TOTP code."""
        u = self._user(p.name)
        if not u.mfa_enabled:
            raise InvalidInput("MFA is not enabled for this account: enrol first (POST /auth/mfa/enroll)")
        self._check_code(p, u, code)

    def _activate(self, p: Principal, code: str, audit: dict[str, Any] | None = None) -> list[str]:
        """Check the first code of a pending enrolment and make it active; its recovery codes."""
        u = self._user(p.name)
        if u.mfa_enabled:
            raise Conflict("MFA is already enabled")
        self._check_code(p, u, code)
        codes, hashes = generate_recovery_codes()
        self.repo.update_user(u.id, audit=audit, recovery_hashes=hashes)
        return codes

    def mfa_confirm(self, p: Principal, code: str) -> tuple[str, list[str]]:
        """Activate a pending enrolment with a first code; returns (new session id, recovery codes)."""
        codes = self._activate(p, code)
        sid = self._rotate(p, mfa=True, action="auth.mfa_confirm", detail={})
        return sid, codes

    def mfa_verify(self, p: Principal, code: str) -> str:
        """Step-up: check a TOTP code; the session gets fresh MFA and a new id."""
        self._verify_enabled(p, code)
        return self._rotate(p, mfa=True, action="auth.mfa", detail={"method": "totp"})

    def mfa_recover(self, p: Principal, code: str) -> tuple[str, int]:
        """Step-up with a single-use recovery code; returns (new session id, codes left)."""
        u = self._user(p.name)
        attempt = self.lockout.reserve(u.name, p.ip, kind="mfa")
        idx = use_recovery_code(code, u.recovery_hashes) if u.mfa_enabled else None
        if idx is None or not self.repo.consume_recovery_code(u.id, idx, hash_recovery_code(code)):
            self.lockout.record_failure(attempt, "recovery", actor=p.name)
            raise AuthenticationError("not a valid, unused recovery code")
        self.lockout.succeeded(attempt)
        left = sum(1 for h in u.recovery_hashes if h is not None) - 1
        return self._rotate(p, mfa=True, action="auth.mfa", detail={"method": "recovery", "left": left}), left
