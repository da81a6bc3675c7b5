"""Authorisation: may this principal use this permission on this target?

How a request is judged (:meth:`Authorization.authorize`), in order:

1. anonymous → 401;
2. the principal's allowlist — the intersection of its user's and its token's lists
   (``domain.access.effective_allowlist``; a level with no list does not restrict) → 403;
3. a role binding counts only from inside that allowlist intersected with the role's
   own list (``Settings.role_cidrs``): user ∩ role ∩ token, each can only narrow;
4. a token must carry the permission (and service) in its scopes — and its owner's
   *current* roles must grant it too, so demoting a person demotes their tokens;
5. the RBAC matrix over the remaining bindings and the target (service/team);
6. production-affecting permissions need a TOTP check within the MFA window on the
   session (tokens are minted only by a session with fresh MFA, since minting is
   itself production-affecting).
"""

from __future__ import annotations

from shipwarden.domain.access import (
    Allowlist,
    Permission,
    Target,
    address_allowed,
    effective_allowlist,
    is_allowed,
    mfa_satisfied,
)
from shipwarden.services.access.bindings import binding_text
from shipwarden.services.access.core import AccessCore
from shipwarden.services.access.principal import Decision, Principal


def from_allowed(p: Principal, allowlist: Allowlist) -> bool:
    """May ``p`` act from where it is, under ``allowlist``?  The operator at the machine (CLI,
    ``ip == "local"``) crosses no network, so any list that admits some address admits it; a
    list that admits no address at all (lists that do not overlap) refuses it too."""
    if p.ip == "local":
        return allowlist is None or bool(allowlist)
    return address_allowed(p.ip, allowlist)


class Authorization(AccessCore):
    """Answers with a ``Decision`` (never raises for a refusal); the entrypoints enforce it."""

    def authorize(
        self, p: Principal, permission: Permission | None, target: Target | None = None
    ) -> Decision:
        """May ``p`` use ``permission`` on ``target``?  ``None`` = any authenticated principal."""
        if not p.authenticated:
            return Decision(False, 401, "authentication required: a session cookie or a Bearer API token")
        if p.allowlist == ():
            return Decision(
                False,
                403,
                f"no address is allowed for {p.name} ({p.via}): "
                "the user's and the token's address allowlists do not overlap",
                address=True,
            )
        if not from_allowed(p, p.allowlist):
            return Decision(
                False, 403, f"requests from {p.ip} are not allowed for {p.name} ({p.via})", address=True
            )
        if permission is None:
            return Decision(True)
        roles = self._role_nets
        bindings = [
            b for b in p.bindings if from_allowed(p, effective_allowlist(p.allowlist, roles.get(b.role)))
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
            by_address = is_allowed(p.bindings, permission, target)  # a role would, but not from here
            extra = " from this address" if len(bindings) < len(p.bindings) else ""
            if by_address and p.ip == "local":
                extra = " from anywhere: the user's and the role's address allowlists do not overlap"
            return Decision(
                False,
                403,
                f"{permission.value}{where} is not granted to {p.name} ({held}){extra}",
                address=by_address,
            )
        # Sessions, and local (CLI) users once users exist; the bootstrap operator has no user to verify.
        person = p.kind == "session" or (p.kind == "local" and p.user_id is not None)
        if (
            self.config.mfa_required
            and person
            and not mfa_satisfied(permission, p.mfa_verified_at, self.clock(), self.config.mfa)
        ):
            mins = int(self.config.mfa.window.total_seconds() // 60)
            if not p.mfa_enabled and p.kind == "local":
                how = f"enrol a second factor first (shipwarden user mfa enroll {p.name})"
            elif not p.mfa_enabled:
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
