"""Evidence: ``POST /evidence`` (a CI job uploads a report for a commit), ``GET /evidence``.

The request body is the report file itself (JUnit XML, SARIF, k6 JSON,
Locust CSV, or a backup / rollback-plan JSON); what it is and what it belongs
to are query parameters.  A malformed report is 422 with where it is wrong
(``where.line``/``where.path``) and is not stored.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from shipwarden.domain.access import Permission
from shipwarden.entrypoints.http.deps import ContainerDep, Principal, require
from shipwarden.entrypoints.http.routes.webhooks import change_service, http_error
from shipwarden.services.changes import ChangeError, _evidence_doc

router = APIRouter(tags=["evidence"])

Writer = Annotated[Principal, require(Permission.EVIDENCE_WRITE)]
Reader = Annotated[Principal, require(Permission.DEPLOYMENT_READ)]


def _doc(e: Any) -> dict[str, Any]:
    return _evidence_doc(e)


@router.post("/evidence", status_code=201)
async def upload(
    request: Request,
    who: Writer,
    c: ContainerDep,
    commit: Annotated[str, Query(description="Full sha of the commit the report is about.")],
    kind: Annotated[str, Query(description="junit | sarif | k6 | locust | backup | rollback-plan")],
    category: Annotated[
        str | None, Query(description="Suite category for junit: unit, integration, …")
    ] = None,
    filename: Annotated[str | None, Query(max_length=256)] = None,
    branch: Annotated[str | None, Query(max_length=256)] = None,
    provider: Annotated[str | None, Query(max_length=32)] = None,
    pipeline_id: Annotated[str | None, Query(max_length=128)] = None,
    pipeline_number: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    job: Annotated[str | None, Query(max_length=256)] = None,
) -> dict[str, Any]:
    data = await request.body()  # at most limits.ROUTE_LIMITS["/evidence"]: BodyLimit answered 413 otherwise
    pipeline = {
        k: v
        for k, v in {
            "provider": provider,
            "pipeline_id": pipeline_id,
            "pipeline_number": pipeline_number,
            "job": job,
        }.items()
        if v is not None
    }
    try:
        svc = change_service(request, c)
        stored, change = await run_in_threadpool(
            svc.upload_evidence,
            commit_sha=commit,
            kind=kind,
            data=data,
            actor=who.name,
            category=category,
            filename=filename,
            pipeline=pipeline,
            branch=branch,
        )
    except ChangeError as exc:
        raise http_error(exc) from None
    out: dict[str, Any] = {"evidence": _doc(stored)}
    if change is not None:
        out["change"] = {"id": change.id, "status": change.status, "reason": change.reason}
    return out


@router.get("/evidence")
def list_evidence(
    request: Request, who: Reader, c: ContainerDep, commit: Annotated[str, Query(pattern=r"^[0-9a-f]{40}$")]
) -> list[dict[str, Any]]:
    try:
        svc = change_service(request, c)
    except ChangeError as exc:
        raise http_error(exc) from None
    return [_doc(e) for e in svc.repo.evidence_for(commit)]


@router.get("/evidence/{evidence_id}")
def get_evidence(request: Request, evidence_id: str, who: Reader, c: ContainerDep) -> dict[str, Any]:
    try:
        svc = change_service(request, c)
    except ChangeError as exc:
        raise http_error(exc) from None
    return _doc(svc.repo.evidence(evidence_id))  # NotFound → 404 by the app's handler
