"""Kubernetes audit webhook backend receiver (audit.k8s.io/v1 EventList batches).

Point the apiserver's ``--audit-webhook-config-file`` (kubeconfig format) at
``https://shipwarden/k8s/audit`` with ``token: swt_…`` — an API token whose only
scope is ``k8s_audit.write``.  A batch is stored whole or not at all; a malformed
one is refused with 400 and every problem's JSON path (the apiserver retries with
back-off, so a transient failure loses nothing).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from shipwarden.domain.access import Permission
from shipwarden.domain.jsonlimits import JsonLimitError, loads_bounded
from shipwarden.entrypoints.http.deps import ContainerDep, Principal, require

router = APIRouter(prefix="/k8s", tags=["kubernetes"])

Writer = Annotated[Principal, require(Permission.K8S_AUDIT_WRITE)]
MAX_DEPTH = 64
"""Kubernetes objects in requestObject/responseObject nest about 20 levels; 64 leaves room."""


class IngestOut(BaseModel):
    accepted: int


@router.post("/audit")
async def ingest(request: Request, who: Writer, c: ContainerDep) -> IngestOut:
    body = await request.body()  # at most limits.ROUTE_LIMITS["/k8s/audit"]: BodyLimit answered 413 otherwise
    try:
        payload = loads_bounded(body, max_depth=MAX_DEPTH)
    except JsonLimitError as exc:
        raise HTTPException(400, f"body is not a JSON EventList within limits: {exc}") from None
    return IngestOut(accepted=await run_in_threadpool(c.audit.ingest_k8s, payload))
