"""Access control's records (users, sessions, API tokens) and errors; the SQL repository
(``adapters/store/access_repo.py``) builds them from its rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shipwarden.domain.access import Binding, Permission
from shipwarden.ports.store import StoreError

Audit = Mapping[str, Any] | None
"""The audit entry detail a write records (None: no entry)."""

__all__ = [
    "AccessRepository",
    "AlreadyExists",
    "AttemptLedger",
    "Audited",
    "SecretRows",
    "SessionRecord",
    "TokenAuth",
    "TokenRecord",
    "UserRecord",
]


class AlreadyExists(StoreError):
    pass


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    password_hash: str | None
    bindings: tuple[Binding, ...]
    cidrs: tuple[str, ...]
    mfa_secret: bytes | None
    mfa_enabled: bool
    mfa_last_step: int | None
    recovery_hashes: tuple[str | None, ...]
    disabled: bool
    created_at: float




@dataclass(frozen=True)
class SessionRecord:
    id_hash: str
    user_id: int
    created_at: float
    last_seen_at: float
    mfa_at: float | None
    revoked_at: float | None
    client_ip: str | None


@dataclass(frozen=True)
class TokenRecord:
    id: str
    user_id: int
    owner: str
    name: str
    token_hash: str
    scopes: frozenset[Permission]
    services: frozenset[str] | None
    cidrs: tuple[str, ...]
    created_at: float
    expires_at: float
    revoked_at: float | None
    last_used_at: float | None


@dataclass(frozen=True)
class TokenAuth:
    """What authenticating an API token needs, read in one statement: the token, its owner, and
    the access generation they were read at."""

    token: TokenRecord
    user: UserRecord
    generation: int


class Audited(Protocol):
    """Where a use case writes an audit entry of its own (``UnitOfWork.audit``)."""

    def audit(self, **kw: Any) -> None: ...


class AttemptLedger(Protocol):
    """The throttle's table: attempts reserved atomically per key (``services.access.lockout``)."""

    def reserve_attempt(
        self, since: Mapping[str, float], admit: Callable[[Mapping[str, list[float]]], float | None]
    ) -> list[int] | None: ...

    def release_attempt(self, ids: Sequence[int], clear: str | None = None) -> None: ...


class SecretRows(Protocol):
    """Named secrets as sealed blobs, and every sealed blob for re-wrapping (``secret_store``)."""

    def put_secret(self, name: str, blob: bytes, kek_id: str, now: float, audit: Audit = None) -> None: ...

    def secret(self, name: str) -> bytes | None: ...

    def secret_names(self) -> list[tuple[str, str, float]]: ...

    def sealed_blobs(self) -> list[tuple[str, str, bytes]]: ...

    def replace_blob(self, kind: str, key: str, old: bytes, new: bytes, kek_id: str) -> bool: ...


class AccessRepository(AttemptLedger, SecretRows, Protocol):
    """Users, sessions, API tokens, throttles, secrets and the access generation."""

    changed: Callable[[], None]
    """Called after this process changed access (the token cache forgets at once)."""

    def user(self, name: str) -> UserRecord | None: ...

    def user_by_id(self, user_id: int) -> UserRecord | None: ...

    def users(self) -> list[UserRecord]: ...

    def count_users(self) -> int: ...

    def create_user(
        self,
        name: str,
        password_hash: str | None,
        bindings: Sequence[Binding],
        cidrs: Sequence[str],
        now: float,
        audit: Audit = None,
    ) -> UserRecord: ...

    def update_user(self, user_id: int, audit: Audit = None, **changes: Any) -> UserRecord: ...

    def advance_mfa_step(self, user_id: int, step: int) -> bool: ...

    def consume_recovery_code(self, user_id: int, index: int, expected: str) -> bool: ...

    def session(self, id_hash: str) -> SessionRecord | None: ...

    def session_auth(self, id_hash: str) -> tuple[SessionRecord, UserRecord] | None: ...

    def user_sessions(self, user_id: int) -> list[SessionRecord]: ...

    def open_session(
        self,
        rec: SessionRecord,
        *,
        now: float,
        evict: Sequence[str] = (),
        replaces: str | None = None,
        audit: Audit = None,
    ) -> None: ...

    def touch_session(self, id_hash: str, now: float) -> None: ...

    def revoke_sessions(
        self, *, id_hashes: Sequence[str] = (), user_id: int | None = None, now: float, audit: Audit = None
    ) -> int: ...

    def failures(self, key: str, since: float) -> list[float]: ...

    def add_token(
        self,
        *,
        token_id: str,
        user_id: int,
        name: str,
        token_hash: str,
        scopes: Sequence[Permission],
        services: Sequence[str] | None,
        cidrs: Sequence[str],
        created_at: float,
        expires_at: float,
        audit: Audit = None,
    ) -> None: ...

    def token_auth(self, token_hash: str) -> TokenAuth | None: ...

    def generation(self) -> int: ...

    def token(self, token_id: str) -> TokenRecord | None: ...

    def tokens(self, user_id: int | None = None) -> list[TokenRecord]: ...

    def revoke_token(self, token_id: str, now: float, audit: Audit = None) -> bool: ...

    def touch_token(self, token_id: str, now: float) -> None: ...

    def delete_secret(self, name: str, audit: Audit = None) -> bool: ...

