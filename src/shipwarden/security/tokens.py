"""API tokens: random bearer secrets, shown once, stored only as SHA-256, scoped, expiring, revocable.

A token looks like ``swt_<id>_<secret>``: the 12-hex-character id is public (it
names the token in lists, audit entries and revocations), the 43-character
secret carries 256 random bits.  The store keeps ``sha256(token)`` and looks
tokens up by that hash; with 256 bits of entropy a fast hash is as safe as a slow
one, and a leaked table gives nothing that can be presented.

A token's scopes are permissions (``deployment.promote`` …), optionally limited to
some services.  What a request may do is the intersection of the token's scopes
and its owner's current roles — the service checks both, so demoting a person
also demotes their tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from shipwarden.domain.access import Permission

__all__ = [
    "MAX_TTL",
    "TOKEN_PREFIX",
    "ApiToken",
    "TokenStatus",
    "check_token",
    "hash_token",
    "issue_token",
    "revoke_token",
    "token_id_of",
]

TOKEN_PREFIX = "swt_"
MAX_TTL = timedelta(days=366)
_TOKEN = re.compile(r"^swt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class ApiToken:
    """What the store keeps about a token (never the token itself)."""

    token_id: str
    token_hash: str
    owner: str
    name: str
    scopes: frozenset[Permission]
    services: frozenset[str] | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None


class TokenStatus(StrEnum):
    OK = "ok"
    INVALID = "invalid"
    """Malformed, or does not match this record."""
    EXPIRED = "expired"
    REVOKED = "revoked"
    OUT_OF_SCOPE = "out_of_scope"
    """Valid token, but it was not issued for this permission or service."""


def hash_token(token: str) -> str:
    """What the store indexes: hex SHA-256 of the whole token text."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_id_of(token: str) -> str | None:
    """The public id inside a well-formed token, else ``None``."""
    m = _TOKEN.match(token.strip()) if isinstance(token, str) else None
    return m.group(1) if m else None


def issue_token(
    owner: str,
    name: str,
    scopes: Iterable[Permission | str],
    now: datetime,
    ttl: timedelta,
    services: Iterable[str] | None = None,
) -> tuple[str, ApiToken]:
    """Mint a token: returns the plaintext (show it once) and the record to store.

    Every token expires (at most :data:`MAX_TTL`) and needs at least one scope;
    unknown scope names are refused.
    """
    perms = frozenset(Permission(s) for s in scopes)  # ValueError names an unknown scope
    if not perms:
        raise ValueError("a token needs at least one scope")
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ValueError(f"token lifetime must be between 0 and {MAX_TTL.days} days")
    token_id = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    record = ApiToken(
        token_id=token_id,
        token_hash=hash_token(token),
        owner=owner,
        name=name,
        scopes=perms,
        services=frozenset(services) if services is not None else None,
        created_at=now,
        expires_at=now + ttl,
    )
    return token, record


def check_token(
    record: ApiToken,
    presented: str,
    now: datetime,
    required: Permission | None = None,
    service: str | None = None,
) -> TokenStatus:
    """Is ``presented`` this record's token, alive at ``now``, and scoped for ``required`` on ``service``?

    A service-limited token used without a service counts as out of scope.
    """
    if token_id_of(presented) != record.token_id or not hmac.compare_digest(
        hash_token(presented.strip()), record.token_hash
    ):
        return TokenStatus.INVALID
    if record.revoked_at is not None and record.revoked_at <= now:
        return TokenStatus.REVOKED
    if now >= record.expires_at:
        return TokenStatus.EXPIRED
    if required is not None and required not in record.scopes:
        return TokenStatus.OUT_OF_SCOPE
    if record.services is not None and (service is None or service not in record.services):
        return TokenStatus.OUT_OF_SCOPE
    return TokenStatus.OK


def revoke_token(record: ApiToken, now: datetime) -> ApiToken:
    """The record, revoked from ``now`` on (revoking twice keeps the first time)."""
    return record if record.revoked_at is not None else replace(record, revoked_at=now)
