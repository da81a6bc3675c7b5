"""Who is asking (``Principal``) and the answer to "may they?" (``Decision``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shipwarden.domain.access import Allowlist, Binding, Permission


@dataclass(frozen=True)
class Principal:
    """Who is asking, as established by authentication (never by the request body)."""

    name: str
    kind: str  # "anonymous" | "session" | "token" | "local"
    ip: str
    user_id: int | None = None
    bindings: tuple[Binding, ...] = ()
    allowlist: Allowlist = None
    """Where this principal may act from: the intersection of its user's and its token's lists
    (``domain.access.effective_allowlist``); role lists narrow it further per binding."""
    session_hash: str | None = None
    token_id: str | None = None
    token_scopes: frozenset[Permission] | None = None
    token_services: frozenset[str] | None = None
    mfa_verified_at: datetime | None = None
    mfa_enabled: bool = False
    generation: int | None = None
    """For an API token: the access generation it was verified at (it may come from the cache of
    verified tokens); the request's access entry is committed only at that generation
    (``domain.access.StaleAccess``).  None for sessions and the local operator."""

    @classmethod
    def anonymous(cls, ip: str) -> Principal:
        return cls(name="anonymous", kind="anonymous", ip=ip)

    @property
    def authenticated(self) -> bool:
        return self.kind != "anonymous"

    @property
    def via(self) -> str:
        if self.kind == "token":
            return f"token {self.token_id}"
        if self.kind == "session" and self.session_hash:
            return f"session {self.session_hash[:12]}"
        return self.kind

    @property
    def roles(self) -> list[str]:
        return sorted({b.role.value for b in self.bindings})


@dataclass(frozen=True)
class Decision:
    allowed: bool
    status: int = 200
    reason: str = ""
    mfa: bool = False
    """Refused only for want of a fresh TOTP check (the role would allow it)."""
    address: bool = False
    """Refused for where the request comes from (an address allowlist), not for the role."""
