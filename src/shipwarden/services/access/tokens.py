"""API tokens: minting, listing, revoking, and authenticating a presented token.

The plaintext is returned once at minting and stored only as its hash.  A token's scopes may not
exceed what its owner's roles grant when it is minted; per request, ``authorize`` judges both the
scopes and the owner's *current* roles.  Likewise a token's address allowlist may only narrow its
owner's: minting refuses networks outside it, and per request the token is held to the
intersection of its list and its owner's *current* one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shipwarden.domain.access import MATRIX, Binding, Permission, outside_of
from shipwarden.ports.access import TokenRecord
from shipwarden.security.tokens import (
    ApiToken,
    TokenStatus,
    check_token,
    hash_token,
    issue_token,
    token_id_of,
)
from shipwarden.services.access.bindings import parse_cidrs
from shipwarden.services.access.core import AccessCore
from shipwarden.services.access.errors import AuthenticationError, Conflict, InvalidInput, NotFoundError
from shipwarden.services.access.principal import Principal


class Tokens(AccessCore):
    """Mints, revokes and authenticates API tokens."""

    def issue_token(
        self,
        actor: str,
        owner: str,
        name: str,
        scopes: Sequence[str],
        ttl: timedelta,
        services: Sequence[str] | None = None,
        cidrs: Sequence[str] = (),
    ) -> tuple[str, TokenRecord]:
        """Mint a token for ``owner``; the plaintext is returned once and never stored."""
        u = self._user(owner)
        wider = outside_of(parse_cidrs(cidrs), self._allowlist(u))
        if wider:
            raise InvalidInput(
                f"a token can only narrow its owner's address allowlist: {', '.join(map(str, wider))} "
                f"reaches outside {owner!r}'s ({', '.join(u.cidrs)})"
            )
        now, ts = self._now()
        try:
            token, rec = issue_token(owner, name, scopes, now, ttl, services)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        ungranted = sorted(p.value for p in rec.scopes if not any(p in self._perms(b) for b in u.bindings))
        if ungranted:
            raise InvalidInput(f"{owner!r} holds no role granting {', '.join(ungranted)}")
        self.repo.add_token(
            token_id=rec.token_id,
            user_id=u.id,
            name=name,
            token_hash=rec.token_hash,
            scopes=sorted(rec.scopes),
            services=sorted(rec.services) if rec.services is not None else None,
            cidrs=cidrs,
            created_at=ts,
            expires_at=rec.expires_at.timestamp(),
            audit={
                "actor": actor,
                "action": "token.create",
                "detail": {
                    "token": rec.token_id,
                    "owner": owner,
                    "name": name,
                    "scopes": sorted(p.value for p in rec.scopes),
                    "services": sorted(rec.services) if rec.services is not None else None,
                    "expires_at": rec.expires_at.isoformat(),
                },
            },
        )
        stored = self.repo.token(rec.token_id)
        assert stored is not None
        return token, stored

    @staticmethod
    def _perms(b: Binding) -> frozenset[Permission]:
        return MATRIX[b.role]

    def tokens(self, owner: str | None = None) -> list[TokenRecord]:
        return self.repo.tokens(self._user(owner).id if owner else None)

    def revoke_token(self, actor: str, token_id: str) -> None:
        rec = self.repo.token(token_id)
        if rec is None:
            raise NotFoundError(f"no token {token_id!r}")
        _, ts = self._now()
        if not self.repo.revoke_token(
            token_id, ts, audit={"actor": actor, "action": "token.revoke", "detail": {"token": token_id}}
        ):
            raise Conflict(f"token {token_id} is already revoked")

    def cached_token(self, presented: str, ip: str) -> Principal | None:
        """The principal of a token this process verified recently (``VerifiedTokens``), or None:
        then call :meth:`authenticate_token`.  No I/O — safe on the event loop."""
        if token_id_of(presented) is None:
            return None
        p = self.verified_tokens.get(hash_token(presented.strip()), self._now()[1])
        return replace(p, ip=ip) if p is not None else None

    def authenticate_token(self, presented: str, ip: str) -> Principal:
        """Verify ``presented`` against the store (one read: token, owner, access generation) and
        keep the verdict in ``verified_tokens``."""
        now, ts = self._now()
        if token_id_of(presented) is None:
            raise AuthenticationError("malformed API token")
        token_hash = hash_token(presented.strip())
        found = self.repo.token_auth(token_hash)
        if found is None:
            raise AuthenticationError("unknown API token")
        rec, u = found.token, found.user
        api = ApiToken(
            token_id=rec.id,
            token_hash=rec.token_hash,
            owner=rec.owner,
            name=rec.name,
            scopes=rec.scopes,
            services=rec.services,
            created_at=datetime.fromtimestamp(rec.created_at, tz=UTC),
            expires_at=datetime.fromtimestamp(rec.expires_at, tz=UTC),
            revoked_at=self._dt(rec.revoked_at),
        )
        status = check_token(api, presented, now)
        # Scope (permission, service) is judged per request in authorize(); here only validity.
        if status not in (TokenStatus.OK, TokenStatus.OUT_OF_SCOPE):
            raise AuthenticationError(f"API token {rec.id} is {status.value}")
        if u.disabled:
            raise AuthenticationError(f"the owner of API token {rec.id} is disabled")
        self.repo.touch_token(rec.id, ts)
        p = Principal(
            name=u.name,
            kind="token",
            ip=ip,
            user_id=u.id,
            bindings=u.bindings,
            allowlist=self._allowlist(u, rec.cidrs),
            token_id=rec.id,
            token_scopes=rec.scopes,
            token_services=rec.services,
            generation=found.generation,
        )
        self.verified_tokens.put(token_hash, replace(p, ip=""), rec.expires_at, ts)
        return p
