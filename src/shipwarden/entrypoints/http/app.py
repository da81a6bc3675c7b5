"""``create_app(container)``: the FastAPI application, its routers and its error mapping.

Routes raise the services' own exceptions; this module maps each family to one
status code, so every bad input gets a precise message and nothing changes:

=====  =====================================================================
 400   malformed request (bad X-Forwarded-For, malformed Kubernetes EventList or webhook payload)
 401   not authenticated: no/unknown/expired/revoked credentials, wrong password or code
 403   authenticated but not allowed: role, token scope, address, missing fresh MFA
 404   unknown deployment, service, user, token, session
 409   conflicts with current state: deployment in progress, name taken, session limit, replay,
       an incident move its status does not allow
 413   request body over its route's limit (``limits.BodyLimit``, counted while streaming)
 415   a webhook that is not ``application/json``
 422   invalid field values (unknown role or scope, bad CIDR, bad timestamp)
 423   account locked after repeated failures (Retry-After)
 429   source address throttled after repeated failures (Retry-After)
 431   request header block over ``server.MAX_HEADER_BYTES`` (answered by ``server.HeaderGuard``)
 503   no policy loaded, so no deployments can be started
=====  =====================================================================

Refusals at the edge (413, 431, webhook refusals) are audited through one ``RefusalLog`` per
app (``app.state.refusals``), which bounds how many entries a flood from one source can write.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp

from shipwarden.bootstrap import Services
from shipwarden.domain.audit import AuditError, K8sAuditError
from shipwarden.domain.incidents import IncidentError
from shipwarden.domain.policy import UnknownService
from shipwarden.entrypoints.http.deps import ACCESS_ATTR, PUBLIC
from shipwarden.entrypoints.http.direct import DirectRoute, DirectRoutes
from shipwarden.entrypoints.http.limits import BodyLimit
from shipwarden.ports.incidents import IncidentNotFound
from shipwarden.ports.store import NotFound, StoreError
from shipwarden.services.access import (
    AuthenticationError,
    Conflict,
    InvalidInput,
    LoginThrottled,
    NotFoundError,
    PermissionDenied,
)
from shipwarden.services.refusals import RefusalLog
from shipwarden.services.rollout import DeployError
from shipwarden.services.telemetry import Telemetry

__all__ = ["ROUTERS", "create_app"]

ROUTERS: list[str] = [
    "deployments",
    "webhooks",
    "audit",
    "auth",
    "users",
    "tokens",
    "k8s_audit",
    "evidence",
    "changes",
    "incidents",
    "oncall",
    "alerting",
]
"""Modules of ``entrypoints.http.routes`` whose ``router`` is mounted; add one line per resource.

Requests are matched against the routes in this order, one path pattern after another, so the
most frequent requests (deployment reads, webhooks, audit queries) come first: a request for the
last route of the last router is tested against every pattern before it.  The order changes
nothing else: no two routers have paths in common (``test_http_routes`` holds them apart)."""


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    headers = extra.pop("headers", None)
    return JSONResponse({"detail": message, **extra}, status_code=status, headers=headers)


def _access_rule(route: APIRoute) -> dict[str, Any]:
    stack = list(route.dependant.dependencies)
    while stack:
        d = stack.pop()
        rule = getattr(d.call, ACCESS_ATTR, None)
        if rule is not None:
            return dict(rule)
        stack.extend(d.dependencies)
    return dict(PUBLIC)


class Measured:
    """Counts and times every request by method, route template and status (``/metrics``)."""

    def __init__(self, app: Any, telemetry: Telemetry) -> None:
        self.app, self.telemetry = app, telemetry

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "(unmatched)"
            elapsed = time.perf_counter() - started
            self.telemetry.observe_http(scope.get("method", ""), path, status[0], elapsed)


def _telemetry(c: Services) -> Telemetry:
    t = Telemetry()

    def read() -> dict[str, Any]:
        data = c.store_counts()
        writer = getattr(c.audit, "writer", None)
        if writer is not None:
            data["audit_queue"] = writer._q.qsize()
            data["audit_committed"] = writer.committed
        return data

    t.watch_store(read)
    if c.alerting is not None:
        hooks = c.alerting.pipeline.hooks
        hooks.ingested, hooks.notice, hooks.delivered = t.ingested, t.notice, t.delivered
    return t


class _App(FastAPI):
    """FastAPI with the routers' ``DIRECT`` routes (``direct.DirectRoutes``) in front of its router,
    inside its ``ExceptionMiddleware`` (so their exceptions get the app's handlers)."""

    direct: list[tuple[DirectRoute, APIRoute]]

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        layer: Any = stack
        while layer is not None and not isinstance(layer, ExceptionMiddleware):
            layer = getattr(layer, "app", None)
        if layer is None:
            raise RuntimeError("no ExceptionMiddleware in FastAPI's middleware stack: direct routes need one")
        if self.direct:
            layer.app = DirectRoutes(layer.app, self.direct)
        return stack


def _direct_routes(modules: list[Any]) -> list[tuple[DirectRoute, APIRoute]]:
    """Each router module's ``DIRECT`` routes, with the FastAPI route each one is a way into."""
    out = []
    for module in modules:
        for d in getattr(module, "DIRECT", ()):
            same = [
                r
                for r in module.router.routes
                if isinstance(r, APIRoute) and r.path == d.path and d.method in (r.methods or ())
            ]
            if len(same) != 1:
                raise RuntimeError(f"direct route {d.method} {d.path} has no single FastAPI route")
            out.append((d, same[0]))
    return out


def create_app(container: Services) -> FastAPI:
    refusals = RefusalLog(container.store.audit)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        oncall = container.oncall if container.run_engines else None
        if oncall is not None:  # the escalation engine and its watchdog run with the API
            oncall.engine.start()
            if oncall.watchdog is not None:
                oncall.watchdog.start()
        yield
        if oncall is not None:
            if oncall.watchdog is not None:
                oncall.watchdog.stop()
            oncall.engine.stop()
        refusals.flush()  # the last window's count of refusals not written one by one

    app = _App(
        title="shipwarden",
        version="0.1.0",
        description="Production deployment control plane. Every route states its access rule in "
        "`x-shipwarden-access` (permission, authentication, scope).",
        lifespan=lifespan,
    )
    app.state.container = container
    app.state.refusals = refusals

    def refused_at_edge(scope: Any, status: int, detail: dict[str, Any]) -> None:
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        path = str(scope.get("path", ""))[:256]
        info = {"status": status, "method": scope.get("method"), "path": path, "ip": ip}
        refusals.refuse(source=ip, actor="anonymous", action="http.refused", detail={**info, **detail})

    app.add_middleware(BodyLimit, on_refuse=refused_at_edge)
    telemetry = _telemetry(container)
    app.state.telemetry = telemetry
    app.add_middleware(Measured, telemetry=telemetry)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", tags=["meta"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """shipwarden's own metrics in the Prometheus text format (``services.telemetry``)."""
        return PlainTextResponse(telemetry.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    modules = [importlib.import_module(f"shipwarden.entrypoints.http.routes.{n}") for n in ROUTERS]
    routers = [m.router for m in modules]
    for route in [r for router in [app.router, *routers] for r in router.routes]:
        if isinstance(route, APIRoute):  # publish each route's access rule in the OpenAPI document
            route.openapi_extra = {**(route.openapi_extra or {}), "x-shipwarden-access": _access_rule(route)}
    for router in routers:
        app.include_router(router)
    app.direct = _direct_routes(modules)

    @app.exception_handler(AuthenticationError)
    def _401(_: Request, exc: AuthenticationError) -> JSONResponse:
        return _error(401, str(exc), headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(PermissionDenied)
    def _403(_: Request, exc: PermissionDenied) -> JSONResponse:
        return _error(403, str(exc))

    @app.exception_handler(NotFoundError)
    @app.exception_handler(NotFound)
    @app.exception_handler(IncidentNotFound)
    @app.exception_handler(UnknownService)
    def _404(_: Request, exc: Exception) -> JSONResponse:
        return _error(404, str(exc).strip("'\""))

    @app.exception_handler(Conflict)
    @app.exception_handler(IncidentError)
    @app.exception_handler(DeployError)
    @app.exception_handler(StoreError)
    def _409(_: Request, exc: Exception) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(InvalidInput)
    @app.exception_handler(AuditError)
    def _422(_: Request, exc: Exception) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(K8sAuditError)
    def _400(_: Request, exc: K8sAuditError) -> JSONResponse:
        return _error(400, str(exc), problems=[{"path": p.path, "message": p.message} for p in exc.problems])

    @app.exception_handler(LoginThrottled)
    def _429(_: Request, exc: LoginThrottled) -> JSONResponse:
        secs = str(max(1, int(exc.retry_after.total_seconds() + 0.999)))
        return _error(423 if exc.account else 429, str(exc), headers={"Retry-After": secs})

    return app
