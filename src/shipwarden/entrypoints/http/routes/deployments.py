"""Deployments: list, record, dossier; start, roll back, promote, pause, resume, abort.

Routes only *record* intent through ``RolloutService`` (start / operator requests) and
answer 202 with the deployment id; the controller (``shipwarden reconcile --watch``)
drives every rollout, so an HTTP request never blocks on a rollout.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field, TypeAdapter
from typing_extensions import TypedDict

from shipwarden.bootstrap import Services
from shipwarden.domain.access import Permission, Target
from shipwarden.domain.rollout import OperatorRequest, Phase
from shipwarden.domain.version import Version
from shipwarden.entrypoints.http.deps import ContainerDep, Principal, access_check, require
from shipwarden.entrypoints.http.direct import DirectRoute
from shipwarden.ports.store import Deployment, NotFound
from shipwarden.services.records import deployment_record
from shipwarden.services.rollout import RolloutService

router = APIRouter(tags=["deployments"])


def _deployment_target(request: Request, c: Services) -> Target | None:
    try:
        return Target(service=c.store.get(request.path_params["deployment_id"]).service)
    except NotFound:
        return None  # only a global binding gets past; the route then answers 404


P = Permission
Reader = Annotated[Principal, require(P.DEPLOYMENT_READ, scope="service")]
RecordReader = Annotated[Principal, require(P.DEPLOYMENT_READ, scope=_deployment_target)]
Exporter = Annotated[Principal, require(P.AUDIT_EXPORT, scope=_deployment_target)]
Deployer = Annotated[Principal, require(P.DEPLOYMENT_CREATE, scope="service")]
RollerBack = Annotated[Principal, require(P.DEPLOYMENT_ROLLBACK, scope="service")]
Promoter = Annotated[Principal, require(P.DEPLOYMENT_PROMOTE, scope="service")]
Aborter = Annotated[Principal, require(P.DEPLOYMENT_ABORT, scope="service")]


class DeploymentOut(BaseModel):
    id: str
    service: str
    kind: str
    strategy: str
    from_version: str | None
    to_version: str
    commit: str | None
    phase: str
    outcome: str
    paused: bool
    actor: str
    reason: str
    operator_request: str | None
    created_at: float
    finished_at: float | None


class DeployIn(BaseModel):
    version: Version  # the one version rule (domain/version.py): 422 with its message
    commit: str | None = Field(None, pattern=r"^[0-9a-f]{7,64}$")


class Accepted(BaseModel):
    id: str
    service: str
    status: str
    record: str


def _rollout(c: Services) -> RolloutService:
    if c.rollout is None:
        raise HTTPException(503, "no policy loaded: start the server with --policy to manage deployments")
    return c.rollout


def _accepted(d: Deployment, message: str) -> Accepted:
    return Accepted(id=d.id, service=d.service, status=message, record=f"/deployments/{d.id}")


class _DeploymentItem(TypedDict):
    """``DeploymentOut`` as the dict ``Store.deployment_list`` builds (same fields, same types)."""

    id: str
    service: str
    kind: str
    strategy: str
    from_version: str | None
    to_version: str
    commit: str | None
    phase: str
    outcome: str
    paused: bool
    actor: str
    reason: str
    operator_request: str | None
    created_at: float
    finished_at: float | None


_DEPLOYMENTS = TypeAdapter(list[_DeploymentItem])


@router.get("/deployments", response_model=list[DeploymentOut])
def list_deployments(
    who: Reader, c: ContainerDep, service: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 20
) -> Response:
    """Newest first; a role scoped to some services must filter by one of them."""
    # The hot read of the API: the store's list view (one indexed query through the driver) encoded
    # by pydantic-core as it is — its dicts are DeploymentOut's fields with their types already —
    # not built as Deployment objects, then models, then validated again by FastAPI.
    body = _DEPLOYMENTS.dump_json(c.store.deployment_list(service, limit))  # type: ignore[arg-type]
    return Response(body, media_type="application/json")


_SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
_READ_ACCESS = access_check(Reader)
_READS = ThreadPoolExecutor(4, thread_name_prefix="deployment-reads")
"""The direct route's reads run here, not through anyio's ``run_in_threadpool``: a plain executor
hop cost 20-30 % less CPU per request in-process (no capacity limiter, cancel scope or
per-call context lookups); four threads, each holding at most one pooled connection."""


async def _list_deployments_direct(request: Request, query: dict[str, str]) -> Response:
    """``list_deployments`` for a plain query string, without FastAPI's machinery (``direct``):
    the same access check (and access entry, awaited), the same read, the same bytes."""
    await _READ_ACCESS(request)
    c: Services = request.app.state.container
    limit = int(query.get("limit", "20"))
    loop = asyncio.get_running_loop()
    rows = await loop.run_in_executor(_READS, c.store.deployment_list, query.get("service"), limit)
    return Response(_DEPLOYMENTS.dump_json(rows), media_type="application/json")  # type: ignore[arg-type]


DIRECT = [
    DirectRoute(
        "GET",
        "/deployments",
        {
            "service": _SERVICE_NAME.fullmatch,  # type: ignore[dict-item]
            "limit": lambda v: v.isdigit() and v[0] != "0" and len(v) <= 3 and int(v) <= 500,
        },
        _list_deployments_direct,
    )
]
"""Requests ``GET /deployments`` whose query is only ``service`` (a service name) and ``limit``
(1-500, no leading zero), each at most once, are answered directly; any other goes to FastAPI."""


@router.get("/deployments/{deployment_id}")
def get_record(deployment_id: str, who: RecordReader, c: ContainerDep) -> dict[str, Any]:
    """The complete record (D11): versions, policy digest, every step, outcome, audit entries."""
    return deployment_record(c.store, deployment_id)


@router.get("/deployments/{deployment_id}/dossier")
def get_dossier(deployment_id: str, who: Exporter, c: ContainerDep) -> Response:
    """The signed dossier: verify offline with `shipwarden dossier verify FILE --public-key PEM`."""
    blob = c.audit.dossier(deployment_id)
    return Response(
        blob,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{deployment_id}.dossier.json"'},
    )


@router.post("/services/{service}/deployments", status_code=202)
def deploy(service: str, body: DeployIn, who: Deployer, c: ContainerDep) -> Accepted:
    """Record a deployment of ``version``; the controller drives it (202 + its id)."""
    d = _rollout(c).start(service, body.version, actor=who.name, commit_sha=body.commit)
    return _accepted(d, f"{d.phase.value}: the controller drives it")


@router.post("/services/{service}/rollback", status_code=202)
def rollback(service: str, who: RollerBack, c: ContainerDep) -> Accepted:
    """Steer the active deployment back, or record a redeploy of the previous version."""
    r = _rollout(c)
    r.spec(service)  # 404 for an unknown service before anything else
    active = c.store.active(service)
    if active is not None and active.phase is Phase.SCALING_DOWN:
        raise HTTPException(409, f"{active.id} is scaling down the old version; retry in a few seconds")
    d = r.rollback(service, actor=who.name)
    return _accepted(d, "rollback requested")


def _operator(request: OperatorRequest) -> Any:
    def handler(service: str, c: ContainerDep, who: Principal) -> Accepted:
        r = _rollout(c)
        r.spec(service)
        d = r.request(service, request, actor=who.name)
        return _accepted(d, f"{request.value} requested")

    return handler


@router.post("/services/{service}/promote", status_code=202)
def promote(service: str, who: Promoter, c: ContainerDep, full: bool = False) -> Accepted:
    """End the canary's current pause or analysis step (409 at a setWeight step); ``?full=true``
    skips every step left."""
    request = OperatorRequest.PROMOTE_FULL if full else OperatorRequest.PROMOTE
    return _operator(request)(service, c, who)  # type: ignore[no-any-return]


@router.post("/services/{service}/confirm", status_code=202)
def confirm(service: str, who: Promoter, c: ContainerDep) -> Accepted:
    """Pass the confirm gate the rollout waits at (before a weight increase or promotion)."""
    return _operator(OperatorRequest.CONFIRM)(service, c, who)  # type: ignore[no-any-return]


@router.post("/services/{service}/pause", status_code=202)
def pause(service: str, who: Promoter, c: ContainerDep) -> Accepted:
    return _operator(OperatorRequest.PAUSE)(service, c, who)  # type: ignore[no-any-return]


@router.post("/services/{service}/resume", status_code=202)
def resume(service: str, who: Promoter, c: ContainerDep) -> Accepted:
    return _operator(OperatorRequest.RESUME)(service, c, who)  # type: ignore[no-any-return]


@router.post("/services/{service}/abort", status_code=202)
def abort(service: str, who: Aborter, c: ContainerDep) -> Accepted:
    return _operator(OperatorRequest.ROLLBACK)(service, c, who)  # type: ignore[no-any-return]
