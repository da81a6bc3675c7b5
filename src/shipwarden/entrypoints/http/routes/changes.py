"""Changes: list, show, explain; approve / reject (change control, UAT sign-off); delivery record.

Approving needs ``change.approve`` **and** the role the change asks for: a
role the policy's ``delivery.approvers`` gives the user, or an RBAC role of
the same name.  Every decision — and every refusal — is audited.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from shipwarden.domain.access import Permission
from shipwarden.entrypoints.http.deps import ContainerDep, Principal, require
from shipwarden.entrypoints.http.routes.webhooks import change_service, http_error
from shipwarden.services.changes import ChangeError, ChangeService, render_explanation

router = APIRouter(tags=["changes"])

Reader = Annotated[Principal, require(Permission.DEPLOYMENT_READ)]
Approver = Annotated[Principal, require(Permission.CHANGE_APPROVE)]


class DecisionIn(BaseModel):
    role: str = Field(min_length=1, max_length=64)
    comment: str = Field("", max_length=2000)


def _svc(request: Request, c: Any) -> ChangeService:
    try:
        return change_service(request, c)
    except ChangeError as exc:
        raise http_error(exc) from None


@router.get("/changes")
def list_changes(
    request: Request,
    who: Reader,
    c: ContainerDep,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    svc = _svc(request, c)
    return [
        {
            "id": ch.id,
            "branch": ch.branch,
            "commit": ch.head_sha,
            "status": ch.status,
            "reason": ch.reason,
            "merge_commit": ch.merge_sha,
            "deployment_id": ch.deployment_id,
        }
        for ch in svc.repo.list_changes(status=status, limit=limit)
    ]


@router.get("/changes/{change_id}")
def show_change(request: Request, change_id: str, who: Reader, c: ContainerDep) -> dict[str, Any]:
    try:
        return _svc(request, c).change_doc(change_id)
    except ChangeError as exc:
        raise http_error(exc) from None


@router.get("/explain/{ref}", response_model=None)
def explain(
    request: Request,
    ref: str,
    who: Reader,
    c: ContainerDep,
    format: Annotated[str, Query(pattern="^(json|text)$")] = "json",
) -> Any:
    """Every gate of a change (or of the change behind a deployment) with pass/fail and its evidence."""
    try:
        doc = _svc(request, c).explain(ref)
    except ChangeError as exc:
        raise http_error(exc) from None
    return PlainTextResponse(render_explanation(doc)) if format == "text" else doc


def _decide(request: Request, change_id: str, body: DecisionIn, who: Principal, c: Any, approve: bool) -> Any:
    svc = _svc(request, c)
    fn = svc.approve if approve else svc.reject
    try:
        ch = fn(
            change_id, user=who.name, role=body.role, comment=body.comment, extra_roles=frozenset(who.roles)
        )
    except ChangeError as exc:
        raise http_error(exc) from None
    return {
        "id": ch.id,
        "status": ch.status,
        "reason": ch.reason,
        "merge_commit": ch.merge_sha,
        "deployment_id": ch.deployment_id,
    }


@router.post("/changes/{change_id}/approve")
def approve(request: Request, change_id: str, body: DecisionIn, who: Approver, c: ContainerDep) -> Any:
    return _decide(request, change_id, body, who, c, True)


@router.post("/changes/{change_id}/reject")
def reject(request: Request, change_id: str, body: DecisionIn, who: Approver, c: ContainerDep) -> Any:
    return _decide(request, change_id, body, who, c, False)


@router.get("/deliveries/{deployment_id}")
def delivery_record(request: Request, deployment_id: str, who: Reader, c: ContainerDep) -> dict[str, Any]:
    """The deployment record with the change, evidence, approvals, merge commit and the three phases."""
    try:
        return _svc(request, c).delivery_record(deployment_id)
    except ChangeError as exc:
        raise http_error(exc) from None
