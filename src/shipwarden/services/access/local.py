"""The operator at the machine (the CLI): single-operator mode until the first user, ``--otp`` step-up,
and enrolling one's own second factor (``shipwarden user mfa enroll|confirm``)."""

from __future__ import annotations

from dataclasses import replace

from shipwarden.domain.access import Binding, Role
from shipwarden.services.access.errors import InvalidInput
from shipwarden.services.access.mfa import Mfa
from shipwarden.services.access.principal import Principal


class LocalOperator(Mfa):
    """Establishes the CLI's principal; there is no session, so a TOTP check lasts one invocation."""

    def has_users(self) -> bool:
        """False until the first user is created: the CLI's single-operator mode."""
        return self.repo.count_users() > 0

    def local_principal(self, actor: str) -> Principal:
        """The operator at the machine (CLI).  With no users yet, the first one bootstraps as admin."""
        u = self.repo.user(actor)
        if u is None:
            if self.repo.count_users() == 0:
                return Principal(name=actor, kind="local", ip="local", bindings=(Binding(Role.ADMIN),))
            return Principal(name=actor, kind="local", ip="local")
        if u.disabled:
            return Principal(name=actor, kind="local", ip="local")
        return Principal(
            name=actor,
            kind="local",
            ip="local",
            user_id=u.id,
            bindings=u.bindings,
            allowlist=self._allowlist(u),
            mfa_enabled=u.mfa_enabled,
        )

    def _own(self, p: Principal) -> None:
        if p.kind != "local" or p.user_id is None:
            raise InvalidInput("only a local user can enrol their own second factor here")

    def enroll_local_mfa(self, p: Principal) -> tuple[str, str]:
        """Start enrolling the local user's own second factor: (secret, otpauth URI), inactive until
        :meth:`confirm_local_mfa`.  Replacing an active one needs a fresh check (``p`` verified)."""
        self._own(p)
        return self.mfa_enroll(p)

    def confirm_local_mfa(self, p: Principal, code: str) -> list[str]:
        """Activate the local user's pending enrolment with its first code (throttled, each code
        once, audited as ``auth.mfa_confirm`` via the CLI); returns the recovery codes, shown once."""
        self._own(p)
        audit = {"actor": p.name, "action": "auth.mfa_confirm", "detail": {"ip": p.ip, "via": "cli"}}
        return self._activate(p, code, audit)

    def verify_local_otp(self, p: Principal, code: str) -> Principal:
        """Step-up for the operator at the machine (CLI ``--otp``): the same TOTP check as
        :meth:`mfa_verify` — throttled, audited, each code accepted once — fresh for this one
        invocation only (there is no session to carry it)."""
        if p.kind != "local" or p.user_id is None:
            raise InvalidInput("only a local user can verify a TOTP code here")
        self._verify_enabled(p, code)
        self.store.audit(actor=p.name, action="auth.mfa", detail={"ip": p.ip, "method": "totp", "via": "cli"})
        return replace(p, mfa_verified_at=self.clock(), mfa_enabled=True)
