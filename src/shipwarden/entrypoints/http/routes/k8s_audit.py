"""Kubernetes audit webhook backend receiver (audit.k8s.io/v1 EventList batches).

Point the apiserver's ``--audit-webhook-config-file`` (kubeconfig format) at
``https://shipwarden/k8s/audit`` with ``token: swt_…`` — an API token whose only
scope is ``k8s_audit.write``.  A batch is stored whole or not at all; a malformed
one is refused with 400 and every problem's JSON path (the apiserver retries with
back-off, so a transient failure loses nothing).
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from shipwarden.domain.access import Permission
from shipwarden.entrypoints.http.deps import ContainerDep, Principal, require

router = APIRouter(prefix="/k8s", tags=["kubernetes"])

Writer = Annotated[Principal, require(Permission.K8S_AUDIT_WRITE)]
MAX_BODY = 10 * 1024 * 1024 + 65536  # the apiserver's --audit-webhook-truncate-max-batch-size, plus slack


class IngestOut(BaseModel):
    accepted: int


@router.post("/audit")
async def ingest(request: Request, who: Writer, c: ContainerDep) -> IngestOut:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, f"batch larger than {MAX_BODY} bytes")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(400, f"body is not JSON: {exc}") from None
    return IngestOut(accepted=await run_in_threadpool(c.audit.ingest_k8s, payload))
