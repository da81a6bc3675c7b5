"""What operators type about access, parsed: role bindings (``role:svc``, ``role:team=x``) and CIDR lists."""

from __future__ import annotations

from collections.abc import Sequence

from shipwarden.domain.access import Allowlist, Binding, IpNetwork, Role, parse_networks
from shipwarden.services.access.errors import InvalidInput


def parse_binding(text: str) -> Binding:
    """``role`` or ``role:svc1,svc2`` or ``role:team=payments`` (several ``team=`` allowed)."""
    role_s, _, scope = text.partition(":")
    try:
        role = Role(role_s.strip())
    except ValueError:
        raise InvalidInput(f"unknown role {role_s!r}; roles: {', '.join(r.value for r in Role)}") from None
    if not scope.strip():
        return Binding(role)
    services, teams = set(), set()
    for part in (p.strip() for p in scope.split(",") if p.strip()):
        if part.startswith("team="):
            teams.add(part[5:])
        else:
            services.add(part)
    return Binding(role, frozenset(services) or None, frozenset(teams) or None)


def binding_text(b: Binding) -> str:
    if b.is_global:
        return b.role.value
    parts = sorted(b.services or ()) + [f"team={t}" for t in sorted(b.teams or ())]
    return f"{b.role.value}:{','.join(parts)}"


def parse_cidrs(cidrs: Sequence[str]) -> tuple[IpNetwork, ...]:
    """An address allowlist (user, token or role); a malformed entry is the caller's error (422)."""
    try:
        return parse_networks(cidrs)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def stored_allowlist(cidrs: Sequence[str]) -> Allowlist:
    """A user's or token's stored list as one level of ``effective_allowlist``: none stored means
    that level does not restrict (``None``), not "from nowhere"."""
    return parse_cidrs(cidrs) if cidrs else None
