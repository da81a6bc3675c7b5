"""Kubernetes audit webhook backend receiver (audit.k8s.io/v1 EventList batches).

Point the apiserver's ``--audit-webhook-config-file`` (kubeconfig format) at
``https://shipwarden/k8s/audit`` with ``token: swt_…`` — an API token whose only
scope is ``k8s_audit.write``.  Each valid event is stored; each invalid one is recorded as
rejected with why, and the answer is still 200 (a 400 would make the apiserver retry and then
drop the whole batch).  Clusters that ship the log backend's file may POST its JSON lines.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from shipwarden.domain.access import Permission
from shipwarden.entrypoints.http.deps import ContainerDep, Principal, require

router = APIRouter(prefix="/k8s", tags=["kubernetes"])

Writer = Annotated[Principal, require(Permission.K8S_AUDIT_WRITE)]


class IngestOut(BaseModel):
    accepted: int
    rejected: int = 0
    problems: list[dict[str, str]] = []


@router.post("/audit")
async def ingest(request: Request, who: Writer, c: ContainerDep) -> IngestOut:
    body = await request.body()  # at most limits.ROUTE_LIMITS["/k8s/audit"]: BodyLimit answered 413 otherwise
    # An EventList or log-backend JSON lines (depth and integers bounded); bad events are recorded
    # as rejected, not a 400.
    done = await run_in_threadpool(c.audit.ingest_k8s_body, body)
    problems = [{"path": p.path, "message": p.message} for r in done.rejected for p in r.problems]
    return IngestOut(accepted=done.accepted, rejected=len(done.rejected), problems=problems[:100])
