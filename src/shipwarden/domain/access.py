"""Access decisions (E5): who may do what, from where, for how long, and how often they may fail.

Every rule here is a pure function over state the caller loads and an injected
``now``; the web layer asks, then applies the answer (and audits it).  Keeping
the decisions in one module means one place to read when an auditor asks "why
could this person promote to production?".

* **RBAC** — six roles, one permission enum, one table (:data:`MATRIX`).  A role
  can be bound globally or to a set of services/teams; permissions that are not
  about one service (user management, audit export, policy) need a global binding.
* **Fresh MFA** — production-affecting permissions need a TOTP check within a
  configurable window (default 15 min), not just a logged-in session.
* **IP allowlist** — ``X-Forwarded-For`` is client-controlled text, so it is
  honoured only when the TCP peer is one of our proxies, and then read from the
  right: the right-most address that is not a trusted proxy is the client.  The
  user's, a role's and a token's lists apply together: the effective allowlist is
  their intersection (:func:`effective_allowlist`), so each can only narrow.
* **Sessions** — OWASP defaults: 15 min idle, 8 h absolute, server-side; a
  concurrent-session cap; a new id on login and on every privilege change.
* **Lockout** — exponential back-off per account and per source address after
  N failures, decided from the failure history alone.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Literal

__all__ = [
    "ACCOUNT_LOCKOUT",
    "ADDRESS_LOCKOUT",
    "GLOBAL_ONLY",
    "Allowlist",
    "MATRIX",
    "PRODUCTION_AFFECTING",
    "Admission",
    "Binding",
    "ForwardedForError",
    "IpAddress",
    "IpNetwork",
    "LockoutDecision",
    "LockoutPolicy",
    "MfaPolicy",
    "Permission",
    "Role",
    "SessionPolicy",
    "SessionState",
    "SessionStatus",
    "StaleAccess",
    "Target",
    "address_allowed",
    "admit_session",
    "check_login",
    "check_session",
    "client_ip",
    "effective_allowlist",
    "ip_allowed",
    "is_allowed",
    "lockout_decision",
    "mfa_satisfied",
    "new_session_id",
    "outside_of",
    "parse_networks",
    "permissions_of",
    "rotate_session",
    "touch_session",
]


# ---------------------------------------------------------------------------------------------
# RBAC


class Role(StrEnum):
    """The roles a person or token can hold."""

    VIEWER = "viewer"
    """Reads deployments and their status."""
    DEVELOPER = "developer"
    """Starts deployments of their services and attaches evidence; cannot approve or promote."""
    RELEASE_MANAGER = "release-manager"
    """Runs releases: approves change requests, promotes, rolls back, aborts."""
    SRE = "sre"
    """Operates production: promotes, rolls back, aborts; does not approve changes (segregation)."""
    ADMIN = "admin"
    """Manages users, tokens and the policy; holds every permission."""
    AUDITOR = "auditor"
    """Reads and exports the audit trail and deployment records; changes nothing."""
    CONTROLLER = "controller"
    """A machine identity: the ``reconcile`` daemon that drives deployments others started."""


class Permission(StrEnum):
    DEPLOYMENT_READ = "deployment.read"
    DEPLOYMENT_CREATE = "deployment.create"
    DEPLOYMENT_PROMOTE = "deployment.promote"
    DEPLOYMENT_ROLLBACK = "deployment.rollback"
    DEPLOYMENT_ABORT = "deployment.abort"
    DEPLOYMENT_RECONCILE = "deployment.reconcile"
    """Drive deployments already started to their end (the controller loop).  It starts nothing
    and decides nothing: every deployment and operator request it carries out was authorised
    when it was made, and its rollbacks are the policy's.  So it needs no fresh MFA, and a
    daemon can hold it."""
    CHANGE_APPROVE = "change.approve"
    EVIDENCE_WRITE = "evidence.write"
    AUDIT_READ = "audit.read"
    AUDIT_EXPORT = "audit.export"
    POLICY_WRITE = "policy.write"
    USER_MANAGE = "user.manage"
    TOKEN_MANAGE = "token.manage"
    INCIDENT_MANAGE = "incident.manage"
    """Open incidents, move them, name their commander, fill in their report, track action items.
    Rolling back from an incident still needs ``deployment.rollback`` on the suspect's service."""
    K8S_AUDIT_WRITE = "k8s_audit.write"
    """Held by the token the kube-apiserver's audit webhook uses; granted to no person by default."""


P = Permission
_OPERATE = frozenset(
    {
        P.DEPLOYMENT_READ,
        P.DEPLOYMENT_CREATE,
        P.DEPLOYMENT_PROMOTE,
        P.DEPLOYMENT_ROLLBACK,
        P.DEPLOYMENT_ABORT,
        P.DEPLOYMENT_RECONCILE,
        P.EVIDENCE_WRITE,
        P.AUDIT_READ,
        P.INCIDENT_MANAGE,
    }
)

MATRIX: Mapping[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({P.DEPLOYMENT_READ}),
    Role.DEVELOPER: frozenset({P.DEPLOYMENT_READ, P.DEPLOYMENT_CREATE, P.EVIDENCE_WRITE}),
    Role.RELEASE_MANAGER: _OPERATE | {P.CHANGE_APPROVE},
    Role.SRE: _OPERATE,
    Role.ADMIN: frozenset(Permission),
    Role.AUDITOR: frozenset({P.DEPLOYMENT_READ, P.AUDIT_READ, P.AUDIT_EXPORT}),
    Role.CONTROLLER: frozenset({P.DEPLOYMENT_READ, P.DEPLOYMENT_RECONCILE}),
}
"""The permission matrix — the only place that says which role may do what."""

GLOBAL_ONLY: frozenset[Permission] = frozenset(
    {
        P.AUDIT_READ,
        P.AUDIT_EXPORT,
        P.POLICY_WRITE,
        P.USER_MANAGE,
        P.TOKEN_MANAGE,
        P.K8S_AUDIT_WRITE,
    }
)
"""Permissions about the whole installation: a binding scoped to some services never grants them."""

PRODUCTION_AFFECTING: frozenset[Permission] = frozenset(
    {
        P.DEPLOYMENT_CREATE,
        P.DEPLOYMENT_PROMOTE,
        P.DEPLOYMENT_ROLLBACK,
        P.DEPLOYMENT_ABORT,
        P.CHANGE_APPROVE,
        P.POLICY_WRITE,
        P.USER_MANAGE,
        P.TOKEN_MANAGE,
    }
)
"""Permissions that change production or who can change it: these need a fresh MFA check."""


@dataclass(frozen=True, slots=True)
class Target:
    """What a request acts on: a service and the team that owns it (either may be unknown)."""

    service: str | None = None
    team: str | None = None


@dataclass(frozen=True, slots=True)
class Binding:
    """A role held by a principal, optionally limited to some services and/or teams.

    ``services`` and ``teams`` are ``None`` for "everywhere".  When both are given,
    a target matches if either its service or its team is listed.
    """

    role: Role
    services: frozenset[str] | None = None
    teams: frozenset[str] | None = None

    @property
    def is_global(self) -> bool:
        return self.services is None and self.teams is None

    def covers(self, target: Target | None) -> bool:
        if self.is_global:
            return True
        if target is None:
            return False  # a scoped binding must be checked against what is being touched
        return bool(
            (self.services is not None and target.service in self.services)
            or (self.teams is not None and target.team in self.teams)
        )


def permissions_of(role: Role) -> frozenset[Permission]:
    return MATRIX[role]


def is_allowed(
    binding: Binding | Role | Iterable[Binding], permission: Permission, target: Target | None = None
) -> bool:
    """May a principal holding ``binding`` (or several) use ``permission`` on ``target``?

    A bare ``Role`` means a global binding.  Scoped bindings need a target inside
    their scope, and never grant :data:`GLOBAL_ONLY` permissions.
    """
    if isinstance(binding, Role):
        binding = Binding(binding)
    bindings = (binding,) if isinstance(binding, Binding) else tuple(binding)
    for b in bindings:
        if permission not in MATRIX[b.role]:
            continue
        if permission in GLOBAL_ONLY and not b.is_global:
            continue
        if b.covers(target):
            return True
    return False


@dataclass(frozen=True, slots=True)
class MfaPolicy:
    """How recent a TOTP check must be for production-affecting actions."""

    window: timedelta = timedelta(minutes=15)
    permissions: frozenset[Permission] = PRODUCTION_AFFECTING


def mfa_satisfied(
    permission: Permission, mfa_verified_at: datetime | None, now: datetime, policy: MfaPolicy = MfaPolicy()
) -> bool:
    """True if ``permission`` needs no fresh MFA, or the last TOTP check is within the window.

    A check dated in the future (clock skew, forged state) does not count.
    """
    if permission not in policy.permissions:
        return True
    return mfa_verified_at is not None and timedelta(0) <= now - mfa_verified_at <= policy.window


# ---------------------------------------------------------------------------------------------
# IP allowlist

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ForwardedForError(ValueError):
    """An ``X-Forwarded-For`` entry added by a trusted proxy is not an address: refuse the request."""


def parse_networks(cidrs: Iterable[str]) -> tuple[IpNetwork, ...]:
    """Parse CIDR strings (a bare address is a /32 or /128); every bad entry is named in the error."""
    nets: list[IpNetwork] = []
    bad: list[str] = []
    for c in cidrs:
        try:
            nets.append(ipaddress.ip_network(c.strip(), strict=False))
        except ValueError:
            bad.append(c)
    if bad:
        raise ValueError(f"not a CIDR network or address: {', '.join(map(repr, bad))}")
    return tuple(nets)


@lru_cache(maxsize=4096)
def _parse_ip(text: str) -> IpAddress:
    """An address as a proxy may write it: ``1.2.3.4``, ``1.2.3.4:5678``, ``[::1]:80``, ``::1``.
    Cached: every request parses its peer's address, and clients come back (an invalid address
    raises, and is not cached)."""
    t = text.strip().strip('"')
    if t.startswith("["):
        t = t[1 : t.index("]")] if "]" in t else t
    elif t.count(":") == 1:
        t = t.split(":", 1)[0]
    ip = ipaddress.ip_address(t)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1 for allowlisting
    return ip


def _in_any(ip: IpAddress, nets: Sequence[IpNetwork]) -> bool:
    return any(ip.version == n.version and ip in n for n in nets)


def client_ip(peer: str, xff_header: str | None, trusted_proxies: Sequence[IpNetwork]) -> IpAddress:
    """The address to judge a request by.

    ``X-Forwarded-For`` is used only when ``peer`` (the TCP peer) is a trusted proxy.
    Reading right to left, each trusted proxy appended the address it saw, so the
    first entry that is *not* a trusted proxy is the client; everything left of it
    was written by the client and is ignored.  If every hop is trusted, the
    left-most is the best we know.  A malformed entry inside the trusted part
    raises :class:`ForwardedForError` rather than guessing.
    """
    ip = _parse_ip(peer)
    if not xff_header or not _in_any(ip, trusted_proxies):
        return ip
    hops = [h for h in xff_header.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ip = _parse_ip(hop)
        except ValueError as exc:
            raise ForwardedForError(f"X-Forwarded-For entry {hop.strip()!r} is not an IP address") from exc
        if not _in_any(ip, trusted_proxies):
            return ip
    return ip


def ip_allowed(ip: IpAddress | str, cidrs: Sequence[IpNetwork]) -> bool:
    """Is ``ip`` inside one of ``cidrs``?  An empty list allows nothing (deny by default):
    whether the allowlist is switched on at all is configuration, decided by the caller."""
    addr = _parse_ip(ip) if isinstance(ip, str) else ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return _in_any(addr, [_unmapped(n) for n in cidrs])


Allowlist = tuple[IpNetwork, ...] | None
"""Where requests may come from: ``None`` — no restriction at this level; a tuple — only from
these networks (an empty tuple: from nowhere)."""

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _unmapped(net: IpNetwork) -> IpNetwork:
    """``::ffff:10.0.0.0/104`` is ``10.0.0.0/8``: addresses are judged unmapped (see :func:`client_ip`)."""
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.subnet_of(_MAPPED):
        mapped = net.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, net.prefixlen - 96))
    return net


def _collapse(networks: Iterable[IpNetwork]) -> tuple[IpNetwork, ...]:
    nets = list(networks)
    v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    return (*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6))


def effective_allowlist(*levels: Iterable[IpNetwork] | None) -> Allowlist:
    """The networks a request may come from when several allowlists apply — the user's, a role's,
    a token's: their **intersection**.  Each level can only narrow what the others allow, never
    widen it (a token minted with its own list is still held to its owner's).

    ``None`` at a level means that level does not restrict; all ``None`` gives ``None``.  Two CIDR
    blocks either nest or are disjoint, so the intersection is, pairwise, the smaller block of
    each nested pair; IPv4 and IPv6 never meet.  An empty result means *from nowhere*.
    """
    result: tuple[IpNetwork, ...] | None = None
    for level in levels:
        if level is None:
            continue
        nets = _collapse(_unmapped(n) for n in level)
        if result is None:
            result = nets
            continue
        both: list[IpNetwork] = []
        for a in result:
            for b in nets:
                if a.version != b.version:
                    continue
                if a.subnet_of(b):  # type: ignore[arg-type]  # same version, checked above
                    both.append(a)
                elif b.subnet_of(a):  # type: ignore[arg-type]
                    both.append(b)
        result = _collapse(both)
    return result


def address_allowed(ip: IpAddress | str, allowlist: Allowlist) -> bool:
    """Is ``ip`` inside ``allowlist`` (an :func:`effective_allowlist`)?  ``None``: unrestricted."""
    return allowlist is None or ip_allowed(ip, allowlist)


def outside_of(inner: Iterable[IpNetwork], outer: Allowlist) -> tuple[IpNetwork, ...]:
    """The networks of ``inner`` that reach outside ``outer`` (empty: ``inner`` only narrows it)."""
    if outer is None:
        return ()
    return tuple(n for n in _collapse(_unmapped(x) for x in inner) if effective_allowlist(outer, [n]) != (n,))


# ---------------------------------------------------------------------------------------------
# Sessions


class SessionStatus(StrEnum):
    OK = "ok"
    EXPIRED_IDLE = "expired_idle"
    EXPIRED_ABSOLUTE = "expired_absolute"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """OWASP Session Management defaults for an all-day office tool.

    ``on_limit`` decides what happens when a user already has ``max_concurrent``
    live sessions and logs in again: ``"evict_oldest"`` (default) ends the session
    idle the longest — a forgotten laptop should not lock its owner out — while
    ``"refuse"`` denies the new login, for stricter installations.
    """

    idle: timedelta = timedelta(minutes=15)
    absolute: timedelta = timedelta(hours=8)
    max_concurrent: int = 3
    on_limit: Literal["evict_oldest", "refuse"] = "evict_oldest"

    def __post_init__(self) -> None:
        if self.on_limit not in ("evict_oldest", "refuse"):
            raise ValueError("on_limit must be 'evict_oldest' or 'refuse'")
        if self.max_concurrent < 1 or self.idle <= timedelta(0) or self.absolute < self.idle:
            raise ValueError("need max_concurrent >= 1 and 0 < idle <= absolute")


@dataclass(frozen=True, slots=True)
class SessionState:
    """What the server keeps per session (the cookie holds only ``session_id``)."""

    session_id: str
    user: str
    created_at: datetime
    last_seen_at: datetime
    revoked: bool = False
    mfa_verified_at: datetime | None = None
    bindings: tuple[Binding, ...] = field(default_factory=tuple)


def new_session_id() -> str:
    """256 random bits, URL-safe: unguessable, so the id alone is the bearer secret."""
    return secrets.token_urlsafe(32)


def check_session(
    state: SessionState, now: datetime, policy: SessionPolicy = SessionPolicy()
) -> SessionStatus:
    """Is the session usable at ``now``?  Revocation wins, then the absolute limit, then idleness."""
    if state.revoked:
        return SessionStatus.REVOKED
    if now - state.created_at >= policy.absolute:
        return SessionStatus.EXPIRED_ABSOLUTE
    if now - state.last_seen_at >= policy.idle:
        return SessionStatus.EXPIRED_IDLE
    return SessionStatus.OK


def touch_session(state: SessionState, now: datetime) -> SessionState:
    """Record activity (only ever moves forward)."""
    return replace(state, last_seen_at=max(state.last_seen_at, now))


def rotate_session(
    state: SessionState,
    now: datetime,
    *,
    new_id: str | None = None,
    mfa_verified_at: datetime | None = None,
    bindings: tuple[Binding, ...] | None = None,
) -> SessionState:
    """The same session under a new id, for a privilege change (MFA step-up, new roles).

    The absolute deadline is kept (``created_at`` unchanged) so rotation cannot be
    used to live forever; the caller must revoke the old id in the same transaction.
    """
    return replace(
        state,
        session_id=new_id or new_session_id(),
        last_seen_at=now,
        mfa_verified_at=mfa_verified_at if mfa_verified_at is not None else state.mfa_verified_at,
        bindings=bindings if bindings is not None else state.bindings,
    )


@dataclass(frozen=True, slots=True)
class Admission:
    """Answer to a login: allowed or not, and which existing sessions to end first."""

    allowed: bool
    evict: tuple[str, ...] = ()
    reason: str = ""


def admit_session(
    existing: Iterable[SessionState], now: datetime, policy: SessionPolicy = SessionPolicy()
) -> Admission:
    """May the user open one more session, given their ``existing`` ones?

    Expired or revoked sessions do not count.  At the limit, either the least
    recently used sessions are evicted to make room, or the login is refused.
    """
    live = sorted(
        (s for s in existing if check_session(s, now, policy) is SessionStatus.OK),
        key=lambda s: (s.last_seen_at, s.created_at),
    )
    excess = len(live) - policy.max_concurrent + 1
    if excess <= 0:
        return Admission(True)
    if policy.on_limit == "refuse":
        return Admission(False, (), f"already {len(live)} active sessions (limit {policy.max_concurrent})")
    return Admission(
        True,
        tuple(s.session_id for s in live[:excess]),
        f"limit {policy.max_concurrent} reached: ending the least recently used session(s)",
    )


# ---------------------------------------------------------------------------------------------
# Lockout / back-off


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """After ``threshold`` failures within ``window``, each further attempt waits
    ``base_delay * 2**(failures - threshold)``, capped at ``max_delay``.

    Back-off rather than a hard lock keeps an attacker from locking a victim out for
    good while still making online guessing hopeless.  Per source address the
    threshold is higher, because many honest users can share one NAT address.
    """

    threshold: int = 5
    base_delay: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(minutes=15)
    window: timedelta = timedelta(hours=1)


ACCOUNT_LOCKOUT = LockoutPolicy()
ADDRESS_LOCKOUT = LockoutPolicy(threshold=20, base_delay=timedelta(seconds=10))


@dataclass(frozen=True, slots=True)
class LockoutDecision:
    allowed: bool
    retry_after: timedelta = timedelta(0)
    failures: int = 0


def lockout_decision(
    failures: Iterable[datetime], now: datetime, policy: LockoutPolicy = ACCOUNT_LOCKOUT
) -> LockoutDecision:
    """May another attempt be made at ``now``, given the failure times since the last success?"""
    recent = sorted(t for t in failures if timedelta(0) <= now - t <= policy.window)
    n = len(recent)
    if n < policy.threshold:
        return LockoutDecision(True, timedelta(0), n)
    exponent = min(n - policy.threshold, 32)  # 2**32 * any sane base is past any cap
    delay = min(policy.base_delay * (2**exponent), policy.max_delay)
    wait = recent[-1] + delay - now
    if wait <= timedelta(0):
        return LockoutDecision(True, timedelta(0), n)
    return LockoutDecision(False, wait, n)


def check_login(
    account_failures: Iterable[datetime],
    address_failures: Iterable[datetime],
    now: datetime,
    account_policy: LockoutPolicy = ACCOUNT_LOCKOUT,
    address_policy: LockoutPolicy = ADDRESS_LOCKOUT,
) -> LockoutDecision:
    """Both the account and the source address must be allowed; the longer wait wins."""
    a = lockout_decision(account_failures, now, account_policy)
    b = lockout_decision(address_failures, now, address_policy)
    if a.allowed and b.allowed:
        return LockoutDecision(True, timedelta(0), max(a.failures, b.failures))
    worst = a if a.retry_after >= b.retry_after else b
    return LockoutDecision(False, worst.retry_after, worst.failures)


# ---------------------------------------------------------------------------------------------
# Cached verdicts


class StaleAccess(Exception):
    """A decision made from a credential verified earlier (cached) at an *access generation* the
    store has since moved past: a token was revoked or a user's roles, allowlist or standing
    changed meanwhile.  The decision is not committed; judge the request again from the store.

    The generation is a counter the store bumps with every such change (in the change's own
    transaction); ``current`` is its value when the refusal was made, if known."""

    def __init__(self, expected: int, current: int | None) -> None:
        super().__init__(f"access rules changed since the credential was verified (generation {expected}, "
                         f"now {current if current is not None else 'later'})")  # fmt: skip
        self.expected = expected
        self.current = current
