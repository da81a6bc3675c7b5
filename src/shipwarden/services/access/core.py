"""What every part of ``AccessService`` shares: its configuration, collaborators and clock.

``AccessCore`` is the base of the concern classes in this package; it holds state, configuration
and the user lookup only, so that each concern can be read knowing just the classes it builds on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shipwarden.domain.access import (
    ACCOUNT_LOCKOUT,
    ADDRESS_LOCKOUT,
    Allowlist,
    LockoutPolicy,
    MfaPolicy,
    Role,
    SessionPolicy,
    effective_allowlist,
)
from shipwarden.ports.access import AccessRepository, UserRecord
from shipwarden.ports.store import UnitOfWork
from shipwarden.security.envelope import Envelope
from shipwarden.services.access.bindings import parse_cidrs, stored_allowlist
from shipwarden.services.access.errors import NotFoundError
from shipwarden.services.access.lockout import Lockout
from shipwarden.services.access.secret_store import SecretStore
from shipwarden.services.access.token_cache import VerifiedTokens


@dataclass
class AccessConfig:
    session: SessionPolicy = field(default_factory=SessionPolicy)
    mfa: MfaPolicy = field(default_factory=MfaPolicy)
    mfa_required: bool = True
    account_lockout: LockoutPolicy = ACCOUNT_LOCKOUT
    address_lockout: LockoutPolicy = ADDRESS_LOCKOUT
    role_cidrs: Mapping[str, Sequence[str]] = field(default_factory=dict)
    issuer: str = "shipwarden"
    teams: Mapping[str, str] = field(default_factory=dict)
    """Service → the team that owns it (the policy file's ``team``): what ``role:team=x`` matches."""


class AccessCore:
    """Collaborators and configuration of access control; no use case lives here.

    Two concerns are services of their own, composed here (or given): the throttle of guesses
    (``lockout``) and the named secrets (``secret_store``)."""

    def __init__(
        self,
        store: UnitOfWork,
        envelope: Envelope,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        config: AccessConfig | None = None,
        *,
        lockout: Lockout | None = None,
        secret_store: SecretStore | None = None,
    ) -> None:
        self.store = store
        self.repo: AccessRepository = store.access
        self.clock = clock
        self.config = config or AccessConfig()
        self.lockout = lockout or Lockout(
            self.repo, store, clock, account=self.config.account_lockout, address=self.config.address_lockout
        )
        self.secret_store = secret_store or SecretStore(self.repo, envelope, store, clock)
        self.envelope = envelope
        self._role_nets = {Role(r): parse_cidrs(c) for r, c in self.config.role_cidrs.items()}
        self.verified_tokens = VerifiedTokens()
        self.repo.changed = self.verified_tokens.clear  # this process changed access: forget at once

    @property
    def envelope(self) -> Envelope:
        """The keyring's envelope, one for TOTP secrets and named secrets (a new keyring — KEK
        rotation — replaces both)."""
        return self._envelope

    @envelope.setter
    def envelope(self, envelope: Envelope) -> None:
        self._envelope = self.secret_store.envelope = envelope

    def _now(self) -> tuple[datetime, float]:
        now = self.clock()
        return now, now.timestamp()

    @staticmethod
    def _dt(ts: float | None) -> datetime | None:
        return datetime.fromtimestamp(ts, tz=UTC) if ts is not None else None

    @staticmethod
    def _allowlist(u: UserRecord, token_cidrs: Sequence[str] = ()) -> Allowlist:
        """Where ``u`` (through a token with ``token_cidrs``) may act from: user ∩ token, for every
        authentication path (login, session, token, CLI).  ``authorize`` narrows it by role."""
        return effective_allowlist(stored_allowlist(u.cidrs), stored_allowlist(token_cidrs))

    def _user(self, name: str) -> UserRecord:
        u = self.repo.user(name)
        if u is None:
            raise NotFoundError(f"no user {name!r}")
        return u
