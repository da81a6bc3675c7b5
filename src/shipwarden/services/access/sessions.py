"""Password login and browser sessions: opening, authenticating, rotating, listing and ending them.

The session id is shown to the client once and stored only as its SHA-256; the rules (limits,
idle and absolute expiry) are ``domain.access``.  Every login opens a *new* id, and a gain of
privilege (a fresh MFA check) rotates it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from shipwarden.domain.access import (
    SessionState,
    SessionStatus,
    address_allowed,
    admit_session,
    check_session,
    new_session_id,
)
from shipwarden.ports.access import SessionRecord, UserRecord
from shipwarden.security.passwords import hash_password, needs_rehash, verify_password
from shipwarden.services.access.core import AccessCore
from shipwarden.services.access.errors import AuthenticationError, Conflict, NotFoundError, PermissionDenied
from shipwarden.services.access.principal import Principal

TOUCH_EVERY_S = 10.0
"""A session's ``last_seen_at`` is written when it is at least this old (or 1 % of the idle
time-out, if less), not on every request: a write per request put every request of a browser
behind the database's writer lock.  Idleness counts from the last write, so a session can expire
up to this much *earlier* than with a write per request, never later."""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Sessions(AccessCore):
    """Logs users in and judges, rotates and ends their sessions."""

    def login(self, name: str, password: str, ip: str) -> tuple[str, SessionState]:
        """Password login → a new session id (shown once; stored hashed).  Always a *new* id (rotation)."""
        attempt = self.lockout.reserve(name, ip)  # counted before the password is looked at
        now, ts = self._now()
        u = self.repo.user(name)
        ok = verify_password(u.password_hash if u else None, password)
        if not ok or u is None or u.disabled:
            self.lockout.record_failure(attempt, "disabled" if (ok and u is not None) else "bad credentials")
            raise AuthenticationError("wrong user name or password")
        if not address_allowed(ip, self._allowlist(u)):
            self.lockout.record_failure(attempt, "address not allowed")
            raise PermissionDenied(f"logins for {name!r} are not allowed from {ip}")
        self.lockout.succeeded(attempt)
        if u.password_hash and needs_rehash(u.password_hash):
            self.repo.update_user(u.id, password_hash=hash_password(password))
        existing = [self._state(r, u) for r in self.repo.user_sessions(u.id)]
        adm = admit_session(existing, now, self.config.session)
        if not adm.allowed:
            self.store.audit(
                actor=name, action="auth.login", outcome="denied", detail={"ip": ip, "reason": adm.reason}
            )
            raise Conflict(adm.reason)
        sid = new_session_id()
        rec = SessionRecord(_sha(sid), u.id, ts, ts, None, None, ip)
        self.repo.open_session(
            rec,
            now=ts,
            evict=list(adm.evict),
            audit={
                "actor": name,
                "action": "auth.login",
                "detail": {"ip": ip, "session": rec.id_hash[:12], "evicted": [e[:12] for e in adm.evict]},
            },
        )
        return sid, self._state(rec, u)

    @staticmethod
    def _state(r: SessionRecord, u: UserRecord) -> SessionState:
        # SessionState.session_id carries the id *hash*: the store never has the id itself.
        return SessionState(
            session_id=r.id_hash,
            user=u.name,
            created_at=datetime.fromtimestamp(r.created_at, tz=UTC),
            last_seen_at=datetime.fromtimestamp(r.last_seen_at, tz=UTC),
            revoked=r.revoked_at is not None,
            mfa_verified_at=datetime.fromtimestamp(r.mfa_at, tz=UTC) if r.mfa_at is not None else None,
            bindings=u.bindings,
        )

    def authenticate_session(self, session_id: str, ip: str) -> Principal:
        now, ts = self._now()
        found = self.repo.session_auth(_sha(session_id)) if session_id else None
        if found is None:
            raise AuthenticationError("unknown session: log in again")
        r, u = found
        status = check_session(self._state(r, u), now, self.config.session)
        if status is not SessionStatus.OK:
            if status is not SessionStatus.REVOKED:  # expiry is enforced server-side: the id is dead for good
                self.repo.revoke_sessions(id_hashes=[r.id_hash], now=ts)
            pol = self.config.session
            msg = {
                SessionStatus.REVOKED: "session was revoked (logged out, rotated or ended by an admin)",
                SessionStatus.EXPIRED_IDLE: f"session expired after {pol.idle} without activity",
                SessionStatus.EXPIRED_ABSOLUTE: f"session expired: older than {pol.absolute}",
            }[status]
            raise AuthenticationError(f"{msg}; log in again")
        if u.disabled:
            raise AuthenticationError("account is disabled")
        if ts - r.last_seen_at >= min(TOUCH_EVERY_S, self.config.session.idle.total_seconds() / 100):
            self.repo.touch_session(r.id_hash, ts)
        return Principal(
            name=u.name,
            kind="session",
            ip=ip,
            user_id=u.id,
            bindings=u.bindings,
            allowlist=self._allowlist(u),
            session_hash=r.id_hash,
            mfa_verified_at=self._dt(r.mfa_at),
            mfa_enabled=u.mfa_enabled,
        )

    def _rotate(self, p: Principal, *, mfa: bool, action: str, detail: dict[str, Any]) -> str:
        """A new id for the same session (keeps the absolute deadline), the old id revoked with it."""
        assert p.session_hash is not None and p.user_id is not None
        old = self.repo.session(p.session_hash)
        if old is None:
            raise AuthenticationError("unknown session: log in again")
        _, ts = self._now()
        sid = new_session_id()
        rec = SessionRecord(_sha(sid), p.user_id, old.created_at, ts, ts if mfa else old.mfa_at, None, p.ip)
        self.repo.open_session(
            rec,
            now=ts,
            replaces=p.session_hash,
            audit={
                "actor": p.name,
                "action": action,
                "detail": {
                    **detail,
                    "ip": p.ip,
                    "session": rec.id_hash[:12],
                    "replaces": p.session_hash[:12],
                },
            },
        )
        return sid

    def logout(self, p: Principal) -> None:
        if p.session_hash:
            _, ts = self._now()
            self.repo.revoke_sessions(
                id_hashes=[p.session_hash],
                now=ts,
                audit={"actor": p.name, "action": "auth.logout", "detail": {"session": p.session_hash[:12]}},
            )

    def sessions(self, user: str) -> list[SessionRecord]:
        u = self._user(user)
        now = self.clock()
        return [
            r
            for r in self.repo.user_sessions(u.id)
            if check_session(self._state(r, u), now) is SessionStatus.OK
        ]

    def revoke_session(self, actor: str, user: str, handle: str) -> None:
        """End one of ``user``'s sessions by its public handle (first 12 hex of the id hash)."""
        u = self._user(user)
        match = [r.id_hash for r in self.repo.user_sessions(u.id) if r.id_hash.startswith(handle)]
        if len(handle) < 8 or len(match) != 1:
            raise NotFoundError(f"no active session {handle!r} for {user!r}")
        _, ts = self._now()
        self.repo.revoke_sessions(
            id_hashes=match,
            now=ts,
            audit={"actor": actor, "action": "session.revoke", "detail": {"user": user, "session": handle}},
        )

    def revoke_all_sessions(self, actor: str, user: str) -> int:
        u = self._user(user)
        _, ts = self._now()
        return self.repo.revoke_sessions(
            user_id=u.id,
            now=ts,
            audit={"actor": actor, "action": "session.revoke_all", "detail": {"user": user}},
        )
