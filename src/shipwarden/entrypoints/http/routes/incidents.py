"""Incidents (D12): list, open, move, command, notes, timeline, suspects, rollback, action items, report.

Reading needs ``deployment.read`` and changing ``incident.manage``, both on the incident's service
(an incident of no service: a global binding).  Rolling back the suspect needs what
``POST /services/{s}/rollback`` needs — ``deployment.rollback`` on the suspect's service — and goes
through the same use case.  ``GET /incidents/{id}/report`` is the report document (JSON, every
timeline line with its audit seq and hash); ``/report.html`` the same laid out (without the PDF,
which ``shipwarden incident report`` writes).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import AwareDatetime, BaseModel, Field

from shipwarden.bootstrap import Incidents, Services
from shipwarden.domain.access import Permission, Target
from shipwarden.domain.incidents import Incident, IncidentError, times
from shipwarden.domain.incidents.report import incident_json, item_json
from shipwarden.entrypoints.http.deps import ContainerDep, Principal, require
from shipwarden.ports.incidents import IncidentNotFound

router = APIRouter(prefix="/incidents", tags=["incidents"])

IncidentId = Annotated[str, Path(pattern=r"^inc-[0-9]{8}-[0-9a-f]{6}$")]


def _incidents(c: Services) -> Incidents:
    if c.incidents is None:
        raise HTTPException(503, "incidents are not configured in this process")
    return c.incidents


def _incident_target(request: Request, c: Services) -> Target | None:
    try:
        inc = _incidents(c).service.get(request.path_params["incident_id"])
    except (IncidentNotFound, IncidentError, HTTPException):
        return None  # only a global binding gets past; the route then answers 404/422
    return Target(service=inc.service) if inc.service else None


def _suspect_target(request: Request, c: Services) -> Target | None:
    try:
        _, _, service = _incidents(c).service.rollback_target(
            request.path_params["incident_id"], request.query_params.get("suspect")
        )
    except (IncidentNotFound, IncidentError, HTTPException):
        return None  # the route says why (no suspect, not a deployment, …)
    return Target(service=service)


P = Permission
Reader = Annotated[Principal, require(P.DEPLOYMENT_READ, scope=_incident_target)]
ListReader = Annotated[Principal, require(P.DEPLOYMENT_READ, scope="service")]
Manager = Annotated[Principal, require(P.INCIDENT_MANAGE, scope=_incident_target)]
Opener = Annotated[Principal, require(P.INCIDENT_MANAGE, scope="service")]
RollerBack = Annotated[Principal, require(P.DEPLOYMENT_ROLLBACK, scope=_suspect_target)]

Text = Annotated[str, Field(max_length=20_000)]
Name = Annotated[str, Field(min_length=1, max_length=128)]


class OpenIn(BaseModel):
    title: Annotated[str, Field(min_length=1, max_length=200)]
    service: Annotated[str | None, Field(max_length=64)] = None
    severity: Literal["sev1", "sev2", "sev3", "sev4"] = "sev2"
    onset: AwareDatetime | None = None
    commander: Name | None = None
    summary: Text = ""


class StatusIn(BaseModel):
    status: Literal["investigating", "identified", "monitoring", "resolved"]
    note: Text = ""


class CommanderIn(BaseModel):
    commander: Name


class NotesIn(BaseModel):
    section: Literal["summary", "root_cause", "lessons"]
    text: Text


class ItemIn(BaseModel):
    title: Annotated[str, Field(min_length=1, max_length=200)]
    owner: Name | None = None
    due: Annotated[str | None, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")] = None


class ItemUpdateIn(BaseModel):
    status: Literal["open", "done", "wontfix"]
    note: Annotated[str, Field(max_length=1000)] = ""


def _out(inc: Incident, c: Services) -> dict[str, Any]:
    return {**incident_json(inc), "times": times(inc, c.clock()).to_json()}


@router.get("")
def list_incidents(
    who: ListReader, c: ContainerDep, service: str | None = None, open: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:  # fmt: skip
    """Newest first; a role scoped to some services must filter by one of them."""
    return [_out(i, c) for i in _incidents(c).service.find(open_only=open, service=service, limit=limit)]


@router.post("", status_code=201)
def open_incident(body: OpenIn, who: Opener, c: ContainerDep) -> dict[str, Any]:
    """Open an incident by hand (critical alerts open them by themselves)."""
    if body.service is not None and c.rollout is not None:
        c.rollout.spec(body.service)  # 404 for a service the policy does not know
    inc = _incidents(c).service.open(
        title=body.title, service=body.service, severity=body.severity, actor=who.name,
        onset=body.onset, commander=body.commander, summary=body.summary,
    )  # fmt: skip
    return _out(inc, c)


@router.get("/{incident_id}")
def get_incident(incident_id: IncidentId, who: Reader, c: ContainerDep) -> dict[str, Any]:
    svc = _incidents(c).service
    inc = svc.get(incident_id)
    items = [item_json(i) for i in svc.items(inc.id)]
    return {**_out(inc, c), "alerts": svc.alerts(inc.id), "action_items": items}


@router.post("/{incident_id}/status")
def set_status(incident_id: IncidentId, body: StatusIn, who: Manager, c: ContainerDep) -> dict[str, Any]:
    return _out(_incidents(c).service.set_status(incident_id, body.status, actor=who.name, note=body.note), c)


@router.post("/{incident_id}/ack")
def acknowledge(incident_id: IncidentId, who: Manager, c: ContainerDep) -> dict[str, Any]:
    return _out(_incidents(c).service.acknowledge(incident_id, actor=who.name), c)


@router.post("/{incident_id}/commander")
def set_commander(
    incident_id: IncidentId, body: CommanderIn, who: Manager, c: ContainerDep
) -> dict[str, Any]:
    return _out(_incidents(c).service.set_commander(incident_id, body.commander, actor=who.name), c)


@router.post("/{incident_id}/notes")
def set_notes(incident_id: IncidentId, body: NotesIn, who: Manager, c: ContainerDep) -> dict[str, Any]:
    return _out(_incidents(c).service.set_notes(incident_id, body.section, body.text, actor=who.name), c)


@router.get("/{incident_id}/timeline")
def timeline(incident_id: IncidentId, who: Reader, c: ContainerDep) -> list[dict[str, Any]]:
    """Every line an audit entry: its seq, hash and canonical text."""
    return [t.to_json() for t in _incidents(c).service.timeline(incident_id)]


@router.get("/{incident_id}/suspects")
def suspects(incident_id: IncidentId, who: Reader, c: ContainerDep) -> dict[str, Any]:
    """The changes that preceded the onset, ranked, each with its features and why."""
    return _incidents(c).service.suspects(incident_id).to_json()


@router.post("/{incident_id}/rollback", status_code=202)
def rollback(
    incident_id: IncidentId, who: RollerBack, c: ContainerDep,
    suspect: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:  # fmt: skip
    """Roll back the top suspect (or ``?suspect=deployment:ID``) through the rollback use case."""
    if c.rollout is None:
        raise HTTPException(503, "no policy loaded: start the server with --policy to manage deployments")
    started = _incidents(c).service.rollback_suspect(incident_id, actor=who.name, ref=suspect)
    return {"incident": started.incident_id, "suspect": started.suspect, "service": started.service,
            "rolled_back": started.rolled_back, "rollback": started.rollback,
            "record": f"/deployments/{started.rollback}"}  # fmt: skip


@router.get("/{incident_id}/action-items")
def action_items(incident_id: IncidentId, who: Reader, c: ContainerDep) -> list[dict[str, Any]]:
    return [item_json(i) for i in _incidents(c).service.items(incident_id)]


@router.post("/{incident_id}/action-items", status_code=201)
def add_action_item(incident_id: IncidentId, body: ItemIn, who: Manager, c: ContainerDep) -> dict[str, Any]:
    svc = _incidents(c).service
    item = svc.add_item(incident_id, body.title, actor=who.name, owner=body.owner, due=body.due)
    return item_json(item)


@router.post("/{incident_id}/action-items/{number}")
def update_action_item(
    incident_id: IncidentId, number: Annotated[int, Path(ge=1, le=1_000_000)], body: ItemUpdateIn,
    who: Manager, c: ContainerDep,
) -> dict[str, Any]:  # fmt: skip
    item = _incidents(c).service.close_item(incident_id, number, body.status, actor=who.name, note=body.note)
    return item_json(item)


@router.get("/{incident_id}/report")
def report(incident_id: IncidentId, who: Reader, c: ContainerDep) -> dict[str, Any]:
    """The report document (``shipwarden incident verify-report`` checks it offline)."""
    return _incidents(c).reports.document(incident_id)


@router.get("/{incident_id}/report.html", response_class=HTMLResponse)
def report_html(incident_id: IncidentId, who: Reader, c: ContainerDep) -> HTMLResponse:
    return HTMLResponse(
        _incidents(c).reports.html(incident_id),
        headers={"Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'"},
    )
