"""Alert receivers, silences and alert state.

* ``POST /alerting/webhook`` — Alertmanager's webhook (``webhook_configs``; payload version 4).
* ``POST /api/v2/alerts`` — Prometheus' own alert body, so Prometheus can point its
  ``alerting.alertmanagers`` at shipwarden directly (no Alertmanager in between).

Both are authenticated by the shared secret (``Authorization: Bearer``, as Alertmanager's and
Prometheus' ``authorization`` config sends it, or an HMAC-SHA256 of the body in
``X-Shipwarden-Signature: sha256=…``), never by a user's token, and answer only after the alerts
are stored: 200 ``{"alerts", "changed"}``; 401 no or wrong credentials; 400 outside the
contract (with the JSON path); 409 no ``alerting`` section in the policy.  Refusals go to the
refusal log (bounded audit).

Silences and alert lists are user routes: reading needs ``deployment.read``, adding or
expiring a silence ``incident.manage`` (the responders' permission).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from shipwarden.bootstrap import Services
from shipwarden.domain.access import Permission
from shipwarden.domain.alerting import Silence
from shipwarden.entrypoints.http.deps import ContainerDep, Principal, audit_access_async, require
from shipwarden.services.alerting.service import AlertingError, AlertingService

router = APIRouter(tags=["alerting"])

P = Permission
Reader = Annotated[Principal, require(P.DEPLOYMENT_READ)]
Responder = Annotated[Principal, require(P.INCIDENT_MANAGE)]


def _alerting(c: Services) -> AlertingService:
    if c.alerting is None:
        raise HTTPException(409, "the policy has no 'alerting' section")
    return c.alerting


async def _receive(kind: Literal["webhook", "prometheus"], request: Request, c: Services) -> JSONResponse:
    body = await request.body()
    ip = request.client.host if request.client else "unknown"
    actor = "alertmanager" if kind == "webhook" else "prometheus"
    try:
        svc = _alerting(c)
        result = await run_in_threadpool(
            svc.receive, {k.lower(): v for k, v in request.headers.items()}, body, kind
        )
    except (AlertingError, HTTPException) as exc:
        status = exc.status if isinstance(exc, AlertingError) else exc.status_code
        message = exc.message if isinstance(exc, AlertingError) else str(exc.detail)
        refusals = getattr(request.app.state, "refusals", None)
        if refusals is not None:
            refusals.refuse(
                source=ip,
                actor=actor,
                action="alert.rejected",
                detail={"status": status, "path": request.url.path, "ip": ip, "reason": message[:300]},
            )
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"detail": message}, status_code=status, headers=headers)
    await audit_access_async(request, c, actor=actor, allowed=True, via="shared-secret")
    return JSONResponse(result)


@router.post("/alerting/webhook")
async def alertmanager_webhook(request: Request, c: ContainerDep) -> JSONResponse:
    """Alertmanager's webhook notification (version "4")."""
    return await _receive("webhook", request, c)


@router.post("/api/v2/alerts")
async def prometheus_alerts(request: Request, c: ContainerDep) -> JSONResponse:
    """Prometheus' alerts, as it posts them to an Alertmanager."""
    return await _receive("prometheus", request, c)


def _silence(s: Silence, now: float) -> dict[str, Any]:
    return {
        "id": s.id,
        "matchers": [str(m) for m in s.matchers],
        "owner": s.owner,
        "comment": s.comment,
        "starts_at": s.starts_at,
        "ends_at": s.ends_at,
        "state": s.state(now),
    }


class SilenceIn(BaseModel):
    matchers: list[str] = Field(min_length=1, max_length=20)
    owner: str = Field(min_length=1, max_length=128)
    comment: str = Field(min_length=1, max_length=2000)
    duration_s: float = Field(gt=0, le=90 * 86400)


def _http(exc: AlertingError) -> HTTPException:
    return HTTPException(exc.status, exc.message)


@router.get("/alerting/silences")
def list_silences(c: ContainerDep, who: Reader, expired: bool = False) -> list[dict[str, Any]]:
    svc = _alerting(c)
    now = svc.clock()
    return [_silence(s, now) for s in svc.silences(include_expired=expired)]


@router.post("/alerting/silences", status_code=201)
def add_silence(body: SilenceIn, c: ContainerDep, who: Responder) -> dict[str, Any]:
    svc = _alerting(c)
    try:
        s = svc.add_silence(
            body.matchers, owner=body.owner, comment=body.comment, duration=body.duration_s, actor=who.name
        )
    except AlertingError as exc:
        raise _http(exc) from None
    return _silence(s, svc.clock())


@router.delete("/alerting/silences/{silence_id}")
def expire_silence(silence_id: str, c: ContainerDep, who: Responder) -> dict[str, Any]:
    svc = _alerting(c)
    try:
        s = svc.expire_silence(silence_id[:64], actor=who.name)
    except AlertingError as exc:
        raise _http(exc) from None
    return _silence(s, svc.clock())


@router.get("/alerting/alerts")
def list_alerts(
    c: ContainerDep, who: Reader, state: Literal["firing", "resolved"] | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    svc = _alerting(c)
    rows = svc.store.alerts(state=state, limit=max(1, min(limit, 1000)))
    return [
        {
            "fingerprint": a.fingerprint,
            "state": st,
            "labels": dict(a.labels),
            "annotations": dict(a.annotations),
            "starts_at": a.starts_at,
            "ends_at": a.ends_at,
        }
        for a, st in rows
    ]


@router.get("/alerting/outbox")
def list_outbox(
    c: ContainerDep,
    who: Reader,
    state: Literal["pending", "delivered", "failed"] | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    svc = _alerting(c)
    return [
        {
            k: r[k]
            for k in (
                "id",
                "notice_id",
                "target",
                "receiver",
                "attempts",
                "state",
                "created_at",
                "delivered_at",
                "next_attempt_at",
                "last_error",
            )
        }
        for r in svc.store.outbox(state=state, limit=max(1, min(limit, 1000)))
    ]
