"""Authorisation: may this principal use this permission on this target?

How a request is judged (:meth:`Authorization.authorize`), in order:

1. anonymous → 401;
2. the per-user / per-token CIDR allowlist (empty = unrestricted) → 403;
3. role bindings whose role has a CIDR list (``Settings.role_cidrs``) count only
   from inside it;
4. a token must carry the permission (and service) in its scopes — and its owner's
   *current* roles must grant it too, so demoting a person demotes their tokens;
5. the RBAC matrix over the remaining bindings and the target (service/team);
6. production-affecting permissions need a TOTP check within the MFA window on the
   session (tokens are minted only by a session with fresh MFA, since minting is
   itself production-affecting).
"""

from __future__ import annotations

from shipwarden.domain.access import Permission, Target, ip_allowed, is_allowed, mfa_satisfied
from shipwarden.services.access.bindings import binding_text, parse_cidrs
from shipwarden.services.access.core import AccessCore
from shipwarden.services.access.principal import Decision, Principal


class Authorization(AccessCore):
    """Answers with a ``Decision`` (never raises for a refusal); the entrypoints enforce it."""

    def authorize(
        self, p: Principal, permission: Permission | None, target: Target | None = None
    ) -> Decision:
        """May ``p`` use ``permission`` on ``target``?  ``None`` = any authenticated principal."""
        if not p.authenticated:
            return Decision(False, 401, "authentication required: a session cookie or a Bearer API token")
        if p.cidrs and p.ip != "local" and not ip_allowed(p.ip, parse_cidrs(p.cidrs)):
            return Decision(False, 403, f"requests from {p.ip} are not allowed for {p.name} ({p.via})")
        if permission is None:
            return Decision(True)
        bindings = [
            b
            for b in p.bindings
            if b.role not in self._role_nets or p.ip == "local" or ip_allowed(p.ip, self._role_nets[b.role])
        ]
        svc = target.service if target else None
        team = self.config.teams.get(svc) if svc is not None else None
        if target is not None and target.team is None and team is not None:
            target = Target(service=svc, team=team)
        if p.kind == "token":
            if p.token_scopes is None or permission not in p.token_scopes:
                return Decision(False, 403, f"API token {p.token_id} is not scoped for {permission.value}")
            if p.token_services is not None and svc not in p.token_services:
                return Decision(False, 403, f"API token {p.token_id} is not scoped for service {svc!r}")
        if not is_allowed(bindings, permission, target):
            where = f" on service {svc!r}" if svc else ""
            held = ", ".join(binding_text(b) for b in p.bindings) or "no role"
            extra = " from this address" if len(bindings) < len(p.bindings) else ""
            return Decision(
                False, 403, f"{permission.value}{where} is not granted to {p.name} ({held}){extra}"
            )
        # Sessions, and local (CLI) users once users exist; the bootstrap operator has no user to verify.
        person = p.kind == "session" or (p.kind == "local" and p.user_id is not None)
        if (
            self.config.mfa_required
            and person
            and not mfa_satisfied(permission, p.mfa_verified_at, self.clock(), self.config.mfa)
        ):
            mins = int(self.config.mfa.window.total_seconds() // 60)
            if not p.mfa_enabled:
                how = "enrol a second factor first (POST /auth/mfa/enroll)"
            elif p.kind == "local":
                how = "give a current code with --otp CODE (or SHIPWARDEN_OTP)"
            else:
                how = "verify a code at POST /auth/mfa/verify"
            return Decision(
                False,
                403,
                f"MFA required: {permission.value} affects production and needs a TOTP check within the last "
                f"{mins} min; {how}",
                mfa=True,
            )
        return Decision(True)
