"""CI webhooks: ``POST /webhooks/circleci`` and ``POST /webhooks/github``.

Authenticated by the provider's HMAC signature over the raw body (the secret
named in ``delivery.webhooks``), never by an API token.  Answers:

* 202 accepted (the change was evaluated; merge/deploy may follow) or ignored
  (an authentic event that carries no CI result, e.g. a ping);
* 401 missing/wrong signature, or no secret configured — nothing stored;
* 400 payload outside the provider's documented contract (with the JSON path),
  or a missing event header — nothing stored;
* 409 replay: an already-processed delivery id or body, or a signed timestamp
  outside the replay window — nothing stored;
* 413 body over 25 MB (``limits.BodyLimit``, before the body is buffered);
* 415 not ``application/json``.

Every answer is audited: an accepted delivery by ``webhook.accepted`` plus the
access log; a refusal by one ``webhook.rejected`` entry that is also its access
record (method, path, address), written through the app's ``RefusalLog`` so an
unauthenticated flood cannot grow the audit log without bound.
A deployment that follows a merge runs in the background; the response does
not wait for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from shipwarden.bootstrap import Services, make_changes
from shipwarden.entrypoints.http.deps import ContainerDep, audit_access_async
from shipwarden.services.changes import ChangeError, ChangeService, NotConfigured

router = APIRouter(tags=["webhooks"])


def _background(fn: Callable[[], None]) -> None:
    threading.Thread(target=fn, name="shipwarden-cd", daemon=True).start()


def change_service(request: Request, c: Services) -> ChangeService:
    """The process's ``ChangeService`` (built once; tests may preset ``app.state.changes``)."""
    return shared_change_service(request.app, c)


def shared_change_service(app: Any, c: Services) -> ChangeService:
    """``change_service`` for whatever holds the app (a request, ``serve``'s main watch): one per
    process, so that one git scratch clone serves them all (its lock serialises them)."""
    svc: ChangeService | None = getattr(app.state, "changes", None)
    if svc is not None:
        return svc
    with _BUILD:
        return _build_change_service(app, c)


_BUILD = threading.Lock()


def _build_change_service(app: Any, c: Services) -> ChangeService:
    svc: ChangeService | None = getattr(app.state, "changes", None)
    if svc is not None:
        return svc
    if c.rollout is None:
        raise NotConfigured("no policy is loaded: changes cannot be evaluated")

    svc = make_changes(
        c.settings,
        c.store,
        c.rollout,
        c.rollout.loaded,
        access=c.access,
        schedule=_background,
        refusals=getattr(app.state, "refusals", None),
        clock=c.clock,
    )
    app.state.changes = svc
    return svc


def http_error(exc: ChangeError) -> HTTPException:
    detail: Any = exc.message
    if exc.extra:
        detail = {"message": exc.message, **exc.extra}
    return HTTPException(exc.status, detail)


async def _receive(provider: str, request: Request, c: Services) -> JSONResponse:
    body = await request.body()  # at most limits.ROUTE_LIMITS[path]: BodyLimit answered 413 otherwise
    actor = f"webhook:{provider}"
    ip = request.client.host if request.client else "unknown"
    access = {"method": request.method, "path": request.url.path, "ip": ip, "via": "signature"}
    try:
        svc = change_service(request, c)
        # database work and audit commits: off the event loop
        result = await run_in_threadpool(
            svc.receive_webhook, provider, dict(request.headers), body, source=ip, access=access
        )
    except ChangeError as exc:
        raise http_error(exc) from None
    await audit_access_async(request, c, actor=actor, allowed=True, via="signature")
    return JSONResponse(result.as_dict(), status_code=result.status)


@router.post("/webhooks/circleci", status_code=202)
async def circleci(request: Request, c: ContainerDep) -> JSONResponse:
    """CircleCI ``workflow-completed`` / ``job-completed`` (``circleci-signature: v1=…``)."""
    return await _receive("circleci", request, c)


@router.post("/webhooks/github", status_code=202)
async def github(request: Request, c: ContainerDep) -> JSONResponse:
    """GitHub ``workflow_run``, ``check_suite``, ``check_run``, ``status``, ``pull_request``, ``push``
    (``X-Hub-Signature-256``)."""
    return await _receive("github", request, c)
