"""Authentication and authorisation for every route — the one place that decides.

A route states what it needs in its signature::

    Reader = Annotated[Principal, require(Permission.DEPLOYMENT_READ, scope="service")]

    @router.get("/services/{service}/deployments")
    def history(service: str, who: Reader, c: ContainerDep) -> ...

``require`` resolves the principal (Bearer API token, else the session cookie, else
anonymous), takes the client address from the socket — or from ``X-Forwarded-For``
only when the peer is a trusted proxy — asks ``AccessService.authorize`` (matrix,
scopes, allowlists, fresh MFA), writes one audit entry for the decision, allowed or
denied, and raises 401/403 with the reason.  Each dependency also carries its rule
(``ACCESS_ATTR``) so ``app.create_app`` can publish it in the OpenAPI document as
``x-shipwarden-access`` and tests can walk every route against the matrix.

Webhook routes (authenticated by provider signatures, not by tokens) use
:func:`audit_access` (or, on the event loop, :func:`audit_access_async`) to record their own
allowed/denied decisions.

Cost per request.  The access entry goes through the audit service's group commit: the
request waits until its entry is committed (so no access takes effect unaudited) but shares
the transaction with every other request waiting at that moment.  ``require``'s dependency is
``async``: it authorises on the event loop (``authorize`` is pure) and awaits the commit
without holding a worker thread.  An API token verified recently is authenticated from memory
(``AccessService.verified_tokens``), its decision committed only if the store's access
generation has not moved since (else judged again from the store: ``StaleAccess``), so a
revocation or role change takes effect at once; only a lookup in the store (a token not seen
lately, a session) and a callable scope run in the thread pool.  ``get_container`` and
``client_address`` are ``async`` too: FastAPI would otherwise hop to a thread for each.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from shipwarden.bootstrap import Services
from shipwarden.domain.access import ForwardedForError, Permission, StaleAccess, Target, client_ip
from shipwarden.services.access import AuthenticationError, Decision, Principal

__all__ = [
    "ACCESS_ATTR",
    "SESSION_COOKIE",
    "ClientIp",
    "ContainerDep",
    "CurrentPrincipal",
    "Principal",
    "Scope",
    "access_check",
    "audit_access",
    "audit_access_async",
    "get_container",
    "require",
]

SESSION_COOKIE = "sw_session"
ACCESS_ATTR = "__shipwarden_access__"

Scope = str | Callable[[Request, Services], Target | None] | None
"""What a request acts on: a path/query parameter naming the service, or a function."""


async def get_container(request: Request) -> Services:
    services: Services = request.app.state.container
    return services


ContainerDep = Annotated[Services, Depends(get_container)]


def audit_access(
    request: Request,
    c: Services,
    *,
    actor: str,
    allowed: bool,
    via: str,
    ip: str | None = None,
    permission: Permission | None = None,
    service: str | None = None,
    reason: str = "",
    status: int | None = None,
) -> None:
    """Record one access decision (for routes with their own authentication, e.g. webhooks);
    returns once it is committed.  Blocks: from ``async`` code use :func:`audit_access_async`."""
    c.audit.access(**_decision(request, actor, allowed, via, ip, permission, service, reason, status))


async def audit_access_async(
    request: Request,
    c: Services,
    *,
    actor: str,
    allowed: bool,
    via: str,
    ip: str | None = None,
    permission: Permission | None = None,
    service: str | None = None,
    reason: str = "",
    status: int | None = None,
    generation: int | None = None,
) -> None:
    """:func:`audit_access` for the event loop: awaits the commit without holding a thread.
    ``generation``: see ``AuditService.access`` (raises ``StaleAccess`` if it moved)."""
    decision = _decision(request, actor, allowed, via, ip, permission, service, reason, status)
    await c.audit.access_async(generation=generation, **decision)


def _decision(
    request: Request,
    actor: str,
    allowed: bool,
    via: str,
    ip: str | None,
    permission: Permission | None,
    service: str | None,
    reason: str,
    status: int | None,
) -> dict[str, Any]:
    return {
        "actor": actor,
        "allowed": allowed,
        "method": request.scope["method"],
        "path": _url_path(request.scope["path"]),
        "ip": ip or (request.client.host if request.client else "unknown"),
        "via": via,
        "permission": permission.value if permission else None,
        "service": service,
        "reason": reason,
        "status": status,
    }


def _url_path(path: str) -> str:
    """``request.url.path`` without building the URL: the scope's path as Starlette's ``URL`` has it
    (``?``, ``#`` and ``\\`` escaped; tab, CR and LF dropped, as ``urllib.parse.urlsplit`` does)."""
    if _PLAIN_PATH.fullmatch(path):
        return path
    path = path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    return path.replace("\t", "").replace("\r", "").replace("\n", "")


_PLAIN_PATH = re.compile(r"/[^?#\\\t\r\n]*")


async def client_address(request: Request, c: ContainerDep) -> str:
    peer = request.client.host if request.client else "0.0.0.0"
    try:
        return str(client_ip(peer, request.headers.get("x-forwarded-for"), c.trusted_proxies))
    except (ForwardedForError, ValueError) as exc:
        await audit_access_async(
            request, c, actor="anonymous", allowed=False, via="none", ip=peer, reason=str(exc), status=400
        )
        raise HTTPException(400, str(exc)) from None


ClientIp = Annotated[str, Depends(client_address)]


async def current_principal(request: Request, c: ContainerDep, ip: ClientIp) -> Principal:
    """Bearer API token first, then the session cookie; neither → anonymous (rejected by ``require``).

    A token this process verified recently is taken from ``AccessService.verified_tokens`` on the
    event loop; otherwise the lookup reads the store, in a worker thread.  A refusal's audit entry
    is awaited here, so no worker thread waits for a commit."""
    return await _authenticate(request, c, ip, cached=True)


async def _authenticate(request: Request, c: Services, ip: str, *, cached: bool) -> Principal:
    header = request.headers.get("authorization")
    via = "none"
    try:
        if header is not None:
            via = "token"
            scheme, _, cred = header.partition(" ")
            if scheme.lower() != "bearer" or not cred.strip():
                raise AuthenticationError("Authorization header must be 'Bearer <API token>'")
            principal = c.access.cached_token(cred.strip(), ip) if cached else None
            if principal is None:
                principal = await run_in_threadpool(c.access.authenticate_token, cred.strip(), ip)
            return principal
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            via = "session"
            cross = _cross_site(request)
            if cross:
                await audit_access_async(
                    request, c, actor="anonymous", allowed=False, via=via, ip=ip, reason=cross, status=403
                )
                raise HTTPException(403, cross)
            principal = await run_in_threadpool(c.access.authenticate_session, cookie, ip)
            return principal
    except AuthenticationError as exc:
        await audit_access_async(
            request, c, actor="anonymous", allowed=False, via=via, ip=ip, reason=str(exc), status=401
        )
        raise
    return Principal.anonymous(ip)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _cross_site(request: Request) -> str | None:
    """CSRF defence for cookie sessions, beside the SameSite=Strict cookie: a state-changing
    request whose ``Origin`` (else ``Referer``) names another site is refused (OWASP "verify
    origin with standard headers").  Clients that send neither (CLI tools) are not browsers."""
    if request.method in SAFE_METHODS:
        return None
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return None
    host = request.headers.get("host", "")
    got = urlsplit(source).netloc if source != "null" else "null"
    if got.lower() == host.lower():
        return None
    return (
        f"cross-site request refused: Origin {source!r} is not this service ({host}); "
        "a session cookie is only accepted from the service's own pages"
    )


async def _target(scope: Scope, request: Request, c: Services) -> Target | None:
    if scope is None:
        return None
    if callable(scope):  # may read the store (e.g. a deployment's service): off the event loop
        return await run_in_threadpool(scope, request, c)
    value = request.path_params.get(scope) or request.query_params.get(scope)
    return Target(service=value) if value else None


STALE_RETRIES = 3
"""Times a request is judged again after its decision turned out stale (``StaleAccess``: access
changed between the credential's verification and the commit of its access entry).  Each retry
reads the store afresh; the last attempt is committed unconditionally — decided from the store
just before, as every request was before verdicts were cached."""


def require(permission: Permission | None, *, scope: Scope = None, session_only: bool = False) -> Any:
    """A dependency admitting principals allowed ``permission`` (``None``: any authenticated one)."""

    async def dependency(request: Request) -> Principal:
        # One dependency, not three nested ones (container, address, principal): each level costs
        # FastAPI a pass over its parameters, per request.
        c: Services = request.app.state.container
        ip = await client_address(request, c)
        p = await _authenticate(request, c, ip, cached=True)
        target = await _target(scope, request, c)
        for attempt in range(STALE_RETRIES + 1):
            decision = c.access.authorize(p, permission, target)
            if decision.allowed and session_only and p.kind != "session":
                decision = Decision(False, 403, "this endpoint needs a logged-in session, not an API token")
            try:
                await audit_access_async(
                    request,
                    c,
                    actor=p.name,
                    allowed=decision.allowed,
                    via=p.via,
                    ip=p.ip,
                    permission=permission,
                    service=target.service if target else None,
                    reason=decision.reason,
                    status=None if decision.allowed else decision.status,
                    generation=p.generation if attempt < STALE_RETRIES else None,
                )
                break
            except StaleAccess as exc:  # access changed since p was verified: nothing was recorded
                c.access.verified_tokens.saw(exc.current)
                p = await _authenticate(request, c, p.ip, cached=False)
        if not decision.allowed:
            headers = {"WWW-Authenticate": "Bearer"} if decision.status == 401 else None
            raise HTTPException(decision.status, decision.reason, headers=headers)
        return p

    rule = {
        "permission": permission.value if permission else None,
        "authentication": "session" if session_only else "required",
        "scope": scope if isinstance(scope, str) else ("custom" if scope else None),
    }
    setattr(dependency, ACCESS_ATTR, rule)
    return Depends(dependency)


def access_check(annotated: Any) -> Callable[[Request], Awaitable[Principal]]:
    """The dependency of a ``require(...)`` annotation (e.g. ``Reader``), to call with a request
    outside FastAPI's dependency injection (``direct`` routes): the same decision and audit entry."""
    depends = next(m for m in annotated.__metadata__ if getattr(m, "dependency", None) is not None)
    if getattr(depends.dependency, ACCESS_ATTR, None) is None:
        raise TypeError(f"{annotated} is not a require(...) annotation")
    check: Callable[[Request], Awaitable[Principal]] = depends.dependency
    return check


PUBLIC = {"permission": None, "authentication": "none", "scope": None}
"""The rule published for routes without ``require`` (login, health, OpenAPI)."""
