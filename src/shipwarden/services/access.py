"""Access use cases (E5, E6): users, sessions, MFA, API tokens, authorisation, secrets.

The decisions are ``domain.access`` (matrix, MFA freshness, allowlist, session and
lockout rules) and the primitives are ``security`` (argon2id, TOTP, tokens,
envelopes); this module loads the state, asks, applies the answer and audits it.

How a request is judged (:meth:`AccessService.authorize`), in order:

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

Secrets never leave this module in clear except to the caller that asked: the
session id and token are stored as SHA-256, TOTP secrets and named secrets as
envelope blobs, passwords as argon2id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shipwarden.adapters.store.access_repo import (
    AccessRepo,
    AlreadyExists,
    SessionRecord,
    TokenRecord,
    UserRecord,
)
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.access import (
    ACCOUNT_LOCKOUT,
    ADDRESS_LOCKOUT,
    Binding,
    IpNetwork,
    LockoutPolicy,
    MfaPolicy,
    Permission,
    Role,
    SessionPolicy,
    SessionState,
    SessionStatus,
    Target,
    admit_session,
    check_session,
    ip_allowed,
    is_allowed,
    lockout_decision,
    mfa_satisfied,
    new_session_id,
    parse_networks,
)
from shipwarden.security.envelope import DecryptionError, Envelope
from shipwarden.security.passwords import hash_password, needs_rehash, verify_password
from shipwarden.security.tokens import (
    ApiToken,
    TokenStatus,
    check_token,
    hash_token,
    issue_token,
    token_id_of,
)
from shipwarden.security.totp import (
    TotpResult,
    enroll,
    generate_recovery_codes,
    hash_recovery_code,
    use_recovery_code,
    verify_totp,
)

__all__ = [
    "AccessError",
    "AccessService",
    "AuthenticationError",
    "Conflict",
    "Decision",
    "InvalidInput",
    "LoginThrottled",
    "MfaRequired",
    "NotFoundError",
    "PermissionDenied",
    "Principal",
    "parse_binding",
]


# -- errors: the entrypoints map each to one status code ------------------------------------------
class AccessError(Exception):
    """Base of the errors below; the message is safe to show to the caller."""


class AuthenticationError(AccessError):
    """401: no credentials, or they are wrong, expired or revoked."""


class PermissionDenied(AccessError):
    """403: authenticated, but not allowed (role, scope, address)."""


class MfaRequired(PermissionDenied):
    """403: allowed by role, but the action needs a fresh TOTP check."""


class NotFoundError(AccessError):
    """404."""


class Conflict(AccessError):
    """409: the request contradicts current state (name taken, session limit)."""


class InvalidInput(AccessError):
    """422: a field is malformed (bad CIDR, unknown role or scope)."""


class LoginThrottled(AccessError):
    """429 (per source address) or 423 (per account): too many failures; retry after ``retry_after``."""

    def __init__(self, message: str, retry_after: timedelta, *, account: bool) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.account = account


# -- principal and decision ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Principal:
    """Who is asking, as established by authentication (never by the request body)."""

    name: str
    kind: str  # "anonymous" | "session" | "token" | "local"
    ip: str
    user_id: int | None = None
    bindings: tuple[Binding, ...] = ()
    cidrs: tuple[str, ...] = ()
    session_hash: str | None = None
    token_id: str | None = None
    token_scopes: frozenset[Permission] | None = None
    token_services: frozenset[str] | None = None
    mfa_verified_at: datetime | None = None
    mfa_enabled: bool = False

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


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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


def _cidrs(cidrs: Sequence[str]) -> tuple[IpNetwork, ...]:
    try:
        return parse_networks(cidrs)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


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


def _times(stamps: Iterable[float]) -> list[datetime]:
    return [datetime.fromtimestamp(t, tz=UTC) for t in stamps]


class AccessService:
    def __init__(
        self,
        store: Store,
        envelope: Envelope,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        config: AccessConfig | None = None,
    ) -> None:
        self.store = store
        self.repo = AccessRepo(store)
        self.envelope = envelope
        self.clock = clock
        self.config = config or AccessConfig()
        self._role_nets = {Role(r): _cidrs(c) for r, c in self.config.role_cidrs.items()}

    def _now(self) -> tuple[datetime, float]:
        now = self.clock()
        return now, now.timestamp()

    @staticmethod
    def _dt(ts: float | None) -> datetime | None:
        return datetime.fromtimestamp(ts, tz=UTC) if ts is not None else None

    def _user(self, name: str) -> UserRecord:
        u = self.repo.user(name)
        if u is None:
            raise NotFoundError(f"no user {name!r}")
        return u

    # -- users ----------------------------------------------------------------------------------
    def create_user(
        self,
        actor: str,
        name: str,
        password: str | None,
        bindings: Sequence[Binding],
        cidrs: Sequence[str] = (),
    ) -> UserRecord:
        if not name or len(name) > 128 or not name.isprintable() or name != name.strip():
            raise InvalidInput("user name must be 1-128 printable characters without surrounding spaces")
        if name == "anonymous":
            raise InvalidInput("'anonymous' is reserved")
        _cidrs(cidrs)
        try:
            pw = hash_password(password) if password else None
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        _, ts = self._now()
        try:
            return self.repo.create_user(
                name,
                pw,
                bindings,
                cidrs,
                ts,
                audit={
                    "actor": actor,
                    "action": "user.create",
                    "detail": {
                        "user": name,
                        "roles": [binding_text(b) for b in bindings],
                        "cidrs": list(cidrs),
                    },
                },
            )
        except AlreadyExists as exc:
            raise Conflict(str(exc)) from None

    def users(self) -> list[UserRecord]:
        return self.repo.users()

    def user(self, name: str) -> UserRecord:
        return self._user(name)

    def set_roles(self, actor: str, name: str, bindings: Sequence[Binding]) -> UserRecord:
        """Replace a user's role bindings; their sessions end (privilege change → new session)."""
        u = self._user(name)
        _, ts = self._now()
        rec = self.repo.update_user(
            u.id,
            audit={
                "actor": actor,
                "action": "user.roles",
                "detail": {
                    "user": name,
                    "from": [binding_text(b) for b in u.bindings],
                    "to": [binding_text(b) for b in bindings],
                },
            },
            bindings=bindings,
        )
        self.repo.revoke_sessions(user_id=u.id, now=ts)
        return rec

    def set_cidrs(self, actor: str, name: str, cidrs: Sequence[str]) -> UserRecord:
        _cidrs(cidrs)
        u = self._user(name)
        return self.repo.update_user(
            u.id,
            audit={"actor": actor, "action": "user.cidrs", "detail": {"user": name, "cidrs": list(cidrs)}},
            cidrs=cidrs,
        )

    def set_password(self, actor: str, name: str, password: str) -> None:
        u = self._user(name)
        try:
            pw = hash_password(password)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        _, ts = self._now()
        self.repo.update_user(
            u.id,
            audit={"actor": actor, "action": "user.password", "detail": {"user": name}},
            password_hash=pw,
        )
        self.repo.revoke_sessions(user_id=u.id, now=ts)

    def set_disabled(self, actor: str, name: str, disabled: bool) -> UserRecord:
        u = self._user(name)
        _, ts = self._now()
        rec = self.repo.update_user(
            u.id,
            audit={
                "actor": actor,
                "action": "user.disable" if disabled else "user.enable",
                "detail": {"user": name},
            },
            disabled=disabled,
        )
        if disabled:
            self.repo.revoke_sessions(user_id=u.id, now=ts)
        return rec

    def reset_mfa(self, actor: str, name: str) -> None:
        u = self._user(name)
        self.repo.update_user(
            u.id,
            audit={"actor": actor, "action": "user.mfa_reset", "detail": {"user": name}},
            mfa_secret=None,
            recovery_hashes=None,
            mfa_last_step=0,
        )

    # -- login and sessions ---------------------------------------------------------------------------
    def _throttle(self, name: str, ip: str, now: datetime, ts: float, kind: str = "user") -> None:
        cfg = self.config
        acct = lockout_decision(
            _times(self.repo.failures(f"{kind}:{name}", ts - cfg.account_lockout.window.total_seconds())),
            now,
            cfg.account_lockout,
        )
        addr = lockout_decision(
            _times(self.repo.failures(f"ip:{ip}", ts - cfg.address_lockout.window.total_seconds())),
            now,
            cfg.address_lockout,
        )
        for d, account, what in ((acct, True, f"account {name!r}"), (addr, False, f"address {ip}")):
            if not d.allowed:
                secs = max(1, int(d.retry_after.total_seconds() + 0.999))
                self.store.audit(
                    actor=name,
                    action=f"auth.{'login' if kind == 'user' else 'mfa'}",
                    outcome="locked",
                    detail={"ip": ip, "failures": d.failures, "retry_after_s": secs, "locked": what},
                )
                raise LoginThrottled(
                    f"too many failed attempts for {what}: try again in {secs} s",
                    d.retry_after,
                    account=account,
                )

    def login(self, name: str, password: str, ip: str) -> tuple[str, SessionState]:
        """Password login → a new session id (shown once; stored hashed).  Always a *new* id (rotation)."""
        now, ts = self._now()
        self._throttle(name, ip, now, ts)
        u = self.repo.user(name)
        ok = verify_password(u.password_hash if u else None, password)
        if not ok or u is None or u.disabled:
            self.repo.add_failure([f"user:{name}", f"ip:{ip}"], ts)
            why = "disabled" if (ok and u is not None) else "bad credentials"
            self.store.audit(
                actor=name, action="auth.login", outcome="denied", detail={"ip": ip, "reason": why}
            )
            raise AuthenticationError("wrong user name or password")
        if u.cidrs and not ip_allowed(ip, _cidrs(u.cidrs)):
            self.store.audit(
                actor=name,
                action="auth.login",
                outcome="denied",
                detail={"ip": ip, "reason": "address not allowed"},
            )
            raise PermissionDenied(f"logins for {name!r} are not allowed from {ip}")
        self.repo.clear_failures(f"user:{name}")
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
        r = self.repo.session(_sha(session_id)) if session_id else None
        u = self.repo.user_by_id(r.user_id) if r else None
        if r is None or u is None:
            raise AuthenticationError("unknown session: log in again")
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
        self.repo.touch_session(r.id_hash, ts)
        return Principal(
            name=u.name,
            kind="session",
            ip=ip,
            user_id=u.id,
            bindings=u.bindings,
            cidrs=u.cidrs,
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

    # -- MFA -------------------------------------------------------------------------------------------
    def _aad(self, user_id: int) -> bytes:
        return f"user:{user_id}:totp".encode()

    def mfa_enroll(self, p: Principal) -> tuple[str, str]:
        """Start (or restart) enrolment: a new secret, pending until confirmed with a code.

        Replacing an *active* second factor needs a fresh MFA check: a stolen password alone
        must not be enough to move the second factor to the thief's phone."""
        u = self._user(p.name)
        if u.mfa_enabled and not mfa_satisfied(
            Permission.USER_MANAGE, p.mfa_verified_at, self.clock(), self.config.mfa
        ):
            raise MfaRequired(
                "MFA is already enabled: verify a current code (POST /auth/mfa/verify) to replace it"
            )
        en = enroll(u.name, self.config.issuer)
        self.repo.update_user(
            u.id,
            audit={"actor": p.name, "action": "auth.mfa_enroll", "detail": {"ip": p.ip}},
            mfa_secret=self.envelope.encrypt(en.secret.encode(), self._aad(u.id)),
            recovery_hashes=None,
            mfa_last_step=0,
        )
        return en.secret, en.uri

    def _secret(self, u: UserRecord) -> str:
        if u.mfa_secret is None:
            raise InvalidInput("no MFA enrolment: POST /auth/mfa/enroll first")
        return self.envelope.decrypt(u.mfa_secret, self._aad(u.id)).decode()

    def _check_code(self, p: Principal, u: UserRecord, code: str) -> None:
        now, ts = self._now()
        self._throttle(u.name, p.ip, now, ts, kind="mfa")
        chk = verify_totp(self._secret(u), code, now, u.mfa_last_step)
        if chk.ok and chk.step is not None and not self.repo.advance_mfa_step(u.id, chk.step):
            chk = type(chk)(TotpResult.REPLAYED, chk.step)
        if not chk.ok:
            self.repo.add_failure([f"mfa:{u.name}", f"ip:{p.ip}"], ts)
            self.store.audit(
                actor=p.name,
                action="auth.mfa",
                outcome="denied",
                detail={"ip": p.ip, "reason": chk.result.value},
            )
            if chk.result is TotpResult.REPLAYED:
                raise AuthenticationError("this code was already used: wait for the next one")
            raise AuthenticationError(
                "wrong code (or outside the allowed ±30 s clock drift): check the authenticator's time"
            )
        self.repo.clear_failures(f"mfa:{u.name}")

    def mfa_confirm(self, p: Principal, code: str) -> tuple[str, list[str]]:
        """Activate a pending enrolment with a first code; returns (new session id, recovery codes)."""
        u = self._user(p.name)
        if u.mfa_enabled:
            raise Conflict("MFA is already enabled")
        self._check_code(p, u, code)
        codes, hashes = generate_recovery_codes()
        self.repo.update_user(u.id, recovery_hashes=hashes)
        sid = self._rotate(p, mfa=True, action="auth.mfa_confirm", detail={})
        return sid, codes

    def mfa_verify(self, p: Principal, code: str) -> str:
        """Step-up: check a TOTP code; the session gets fresh MFA and a new id."""
        u = self._user(p.name)
        if not u.mfa_enabled:
            raise InvalidInput("MFA is not enabled for this account: enrol first (POST /auth/mfa/enroll)")
        self._check_code(p, u, code)
        return self._rotate(p, mfa=True, action="auth.mfa", detail={"method": "totp"})

    def mfa_recover(self, p: Principal, code: str) -> tuple[str, int]:
        """Step-up with a single-use recovery code; returns (new session id, codes left)."""
        now, ts = self._now()
        u = self._user(p.name)
        self._throttle(u.name, p.ip, now, ts, kind="mfa")
        idx = use_recovery_code(code, u.recovery_hashes) if u.mfa_enabled else None
        if idx is None or not self.repo.consume_recovery_code(u.id, idx, hash_recovery_code(code)):
            self.repo.add_failure([f"mfa:{u.name}", f"ip:{p.ip}"], ts)
            self.store.audit(
                actor=p.name, action="auth.mfa", outcome="denied", detail={"ip": p.ip, "reason": "recovery"}
            )
            raise AuthenticationError("not a valid, unused recovery code")
        left = sum(1 for h in u.recovery_hashes if h is not None) - 1
        return self._rotate(p, mfa=True, action="auth.mfa", detail={"method": "recovery", "left": left}), left

    # -- tokens ---------------------------------------------------------------------------------------
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
        _cidrs(cidrs)
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
        from shipwarden.domain.access import MATRIX

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

    def authenticate_token(self, presented: str, ip: str) -> Principal:
        now, ts = self._now()
        if token_id_of(presented) is None:
            raise AuthenticationError("malformed API token")
        rec = self.repo.token_by_hash(hash_token(presented.strip()))
        if rec is None:
            raise AuthenticationError("unknown API token")
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
        u = self.repo.user_by_id(rec.user_id)
        if u is None or u.disabled:
            raise AuthenticationError(f"the owner of API token {rec.id} is disabled")
        self.repo.touch_token(rec.id, ts)
        return Principal(
            name=u.name,
            kind="token",
            ip=ip,
            user_id=u.id,
            bindings=u.bindings,
            cidrs=rec.cidrs or u.cidrs,
            token_id=rec.id,
            token_scopes=rec.scopes,
            token_services=rec.services,
        )

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
            mfa_enabled=u.mfa_enabled,
        )

    def verify_local_otp(self, p: Principal, code: str) -> Principal:
        """Step-up for the operator at the machine (CLI ``--otp``): the same TOTP check as
        :meth:`mfa_verify` — throttled, audited, each code accepted once — fresh for this one
        invocation only (there is no session to carry it)."""
        if p.kind != "local" or p.user_id is None:
            raise InvalidInput("only a local user can verify a TOTP code here")
        u = self._user(p.name)
        if not u.mfa_enabled:
            raise InvalidInput("MFA is not enabled for this account: enrol first (POST /auth/mfa/enroll)")
        self._check_code(p, u, code)
        self.store.audit(actor=p.name, action="auth.mfa", detail={"ip": p.ip, "method": "totp", "via": "cli"})
        return replace(p, mfa_verified_at=self.clock(), mfa_enabled=True)

    # -- authorisation -------------------------------------------------------------------------------
    def authorize(
        self, p: Principal, permission: Permission | None, target: Target | None = None
    ) -> Decision:
        """May ``p`` use ``permission`` on ``target``?  ``None`` = any authenticated principal."""
        if not p.authenticated:
            return Decision(False, 401, "authentication required: a session cookie or a Bearer API token")
        if p.cidrs and p.ip != "local" and not ip_allowed(p.ip, _cidrs(p.cidrs)):
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

    # -- secrets (webhook secrets, provider API keys, notifier URLs) -----------------------------------------
    @staticmethod
    def _secret_aad(name: str) -> bytes:
        return f"secret:{name}".encode()

    def put_secret(self, actor: str, name: str, value: str) -> None:
        if not name or len(name) > 128:
            raise InvalidInput("secret name must be 1-128 characters")
        if not value:
            raise InvalidInput("secret value must not be empty")
        _, ts = self._now()
        blob = self.envelope.encrypt(value.encode("utf-8"), self._secret_aad(name))
        self.repo.put_secret(
            name,
            blob,
            self.envelope.keyring.primary,
            ts,
            audit={"actor": actor, "action": "secret.put", "detail": {"name": name}},  # never the value
        )

    def get_secret(self, name: str) -> str:
        blob = self.repo.secret(name)
        if blob is None:
            raise NotFoundError(f"no secret {name!r}")
        return self.envelope.decrypt(blob, self._secret_aad(name)).decode("utf-8")

    def secrets(self) -> list[tuple[str, str, float]]:
        return self.repo.secret_names()

    def rotate_keys(self, actor: str) -> dict[str, int]:
        """Re-wrap every data key under the primary KEK, one row at a time (no downtime: readers
        keep working throughout because the keyring still holds the old KEK).  Payloads are untouched."""
        primary = self.envelope.keyring.primary
        done = kept = failed = 0
        for kind, key, blob in self.repo.sealed_blobs():
            try:
                if Envelope.key_id(blob) == primary:
                    kept += 1
                    continue
                new = self.envelope.rewrap(blob)
            except DecryptionError:
                failed += 1
                continue
            if self.repo.replace_blob(kind, key, blob, new, primary):
                done += 1
            else:
                kept += 1  # changed meanwhile: a fresh write is already under the primary KEK
        self.store.audit(
            actor=actor,
            action="secret.rotate",
            outcome="ok" if not failed else "failed",
            detail={"primary": primary, "rewrapped": done, "current": kept, "unreadable": failed},
        )
        return {"rewrapped": done, "current": kept, "unreadable": failed}
