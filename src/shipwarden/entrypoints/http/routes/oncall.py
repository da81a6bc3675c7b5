"""On-call and escalations (E8): who is on call, calendar feeds, escalations, acknowledge/resolve.

Reading needs ``deployment.read``; acknowledging, resolving and opening an escalation by hand
``incident.manage`` (on the escalation's service, as for incidents).  ``/oncall/links/{token}``
is the signed link carried in pages: authenticated by its HMAC (expiring, single-use), not by a
session — so it is public like the CI webhooks.  ``GET`` only shows a confirmation page (mail
scanners fetch links); the form's ``POST`` acts.  Refused links are audited (``oncall.link.refused``).
``/oncall/feeds/{token}.ics`` is a person's calendar feed for calendar apps, which cannot log in:
the token in the URL (``shipwarden oncall feed create``) is the credential, revocable; an unknown,
malformed or revoked token gets the same 404, audited (``oncall.feed.refused``).
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import AwareDatetime, BaseModel, Field

from shipwarden.bootstrap import OnCallParts, Services
from shipwarden.domain.access import Permission, Target
from shipwarden.domain.oncall import EscalationError
from shipwarden.domain.oncall.escalation import escalation_document
from shipwarden.domain.oncall.links import LinkError
from shipwarden.entrypoints.http.deps import ContainerDep, Principal, require
from shipwarden.ports.oncall import EscalationNotFound, LinkSpent
from shipwarden.services.oncall import OnCallError

router = APIRouter(tags=["oncall"])

EscId = Annotated[str, Path(pattern=r"^esc-[0-9a-f]{12}$")]
Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")]
Token = Annotated[str, Path(min_length=10, max_length=700, pattern=r"^[A-Za-z0-9_.-]+$")]


def _oncall(c: Services) -> OnCallParts:
    if c.oncall is None:
        raise HTTPException(409, "the policy has no 'oncall' section")
    return c.oncall


def _esc_target(request: Request, c: Services) -> Target | None:
    try:
        e = _oncall(c).engine.store.get(request.path_params["escalation_id"])
    except (EscalationNotFound, HTTPException):
        return None
    return Target(service=e.service) if e.service else None


P = Permission
Reader = Annotated[Principal, require(P.DEPLOYMENT_READ)]
ListReader = Annotated[Principal, require(P.DEPLOYMENT_READ, scope="service")]
EscReader = Annotated[Principal, require(P.DEPLOYMENT_READ, scope=_esc_target)]
Manager = Annotated[Principal, require(P.INCIDENT_MANAGE, scope=_esc_target)]
Opener = Annotated[Principal, require(P.INCIDENT_MANAGE, scope="service")]


def _refused(exc: Exception) -> HTTPException:
    if isinstance(exc, EscalationNotFound):
        return HTTPException(404, str(exc).strip("'\""))
    if isinstance(exc, LinkSpent | EscalationError):
        return HTTPException(409, str(exc))
    return HTTPException(422, str(exc))


@router.get("/oncall/who")
def who(
    who: Reader,
    c: ContainerDep,
    at: AwareDatetime | None = None,
    schedule: Annotated[str | None, Query(max_length=128)] = None,
) -> dict[str, Any]:
    """Who is on call per schedule (now, or at ``at``), and by which layer or override."""
    when = at or c.clock()
    if not 1970 <= when.year <= 2200:
        raise HTTPException(422, "at: a time between 1970 and 2200")
    try:
        found = _oncall(c).rota.who(when, schedule)
    except OnCallError as exc:
        raise HTTPException(404, str(exc)) from None
    return {
        "at": when.isoformat(),
        "schedules": {n: {"person": p, "layer": layer} for n, (p, layer) in found.items()},
    }


ICS = "text/calendar; charset=utf-8"


@router.get("/oncall/{schedule}.ics", response_class=Response, responses={200: {"content": {ICS: {}}}})
def schedule_feed(schedule: Name, who: Reader, c: ContainerDep) -> Response:
    """The schedule's iCalendar feed (RFC 5545): the last week and the next eight."""
    try:
        data = _oncall(c).rota.ical(schedule=schedule, now=c.clock())
    except OnCallError as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(data, media_type=ICS)


@router.get("/oncall/people/{person}.ics", response_class=Response, responses={200: {"content": {ICS: {}}}})
def person_feed(person: Name, who: Reader, c: ContainerDep) -> Response:
    """One person's shifts across every schedule (iCalendar)."""
    try:
        data = _oncall(c).rota.ical(person=person, now=c.clock())
    except OnCallError as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(data, media_type=ICS)


FeedToken = Annotated[str, Path(min_length=10, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$")]


@router.get("/oncall/feeds/{token}.ics", response_class=Response, responses={200: {"content": {ICS: {}}}})
def token_feed(token: FeedToken, request: Request, c: ContainerDep) -> Response:
    """A person's shifts for a calendar app: the URL's token is the credential (no session)."""
    rota = _oncall(c).rota
    person = rota.feed_person(token)
    if person is None:
        refusals = getattr(request.app.state, "refusals", None)
        client = request.client.host if request.client else "unknown"
        if refusals is not None:
            refusals.refuse(source=client, actor="anonymous", action="oncall.feed.refused",
                            detail={"token": token.split(".", 1)[0][:20], "ip": client})  # fmt: skip
        raise HTTPException(404, "no such feed (unknown or revoked)")
    try:
        data = rota.ical(person=person, now=c.clock())
    except OnCallError as exc:  # the person left the policy since
        raise HTTPException(404, str(exc)) from None
    return Response(data, media_type=ICS, headers={"Cache-Control": "private, max-age=300"})


class OverrideIn(BaseModel):
    schedule: Annotated[str, Field(min_length=1, max_length=64)]
    person: Annotated[str, Field(min_length=1, max_length=128)]
    start: AwareDatetime
    end: AwareDatetime
    reason: Annotated[str, Field(min_length=1, max_length=500)]


OverrideId = Annotated[str, Path(pattern=r"^ovr-[0-9a-f]{12}$")]
AnyManager = Annotated[Principal, require(P.INCIDENT_MANAGE)]


@router.get("/oncall/overrides")
def list_overrides(
    who: Reader, c: ContainerDep, schedule: Annotated[str | None, Query(max_length=64)] = None
) -> list[dict[str, Any]]:
    """Overrides made through the CLI or the API (the policy's own are in the policy)."""
    return [vars(o) for o in _oncall(c).rota.overrides(schedule)]


@router.post("/oncall/overrides", status_code=201)
def add_override(body: OverrideIn, who: AnyManager, c: ContainerDep) -> dict[str, Any]:
    """``person`` is on call in ``schedule`` from ``start`` until ``end`` (audited)."""
    if not (1970 <= body.start.year <= 2200 and 1970 <= body.end.year <= 2200):
        raise HTTPException(422, "start and end: times between 1970 and 2200")
    try:
        o = _oncall(c).rota.add_override(
            body.schedule, body.person, body.start, body.end, reason=body.reason, actor=who.name
        )
    except OnCallError as exc:
        raise HTTPException(422, str(exc)) from None
    return vars(o)


@router.delete("/oncall/overrides/{override_id}")
def remove_override(override_id: OverrideId, who: AnyManager, c: ContainerDep) -> dict[str, Any]:
    try:
        return vars(_oncall(c).rota.remove_override(override_id, actor=who.name))
    except OnCallError as exc:
        raise HTTPException(404, str(exc)) from None


class TriggerIn(BaseModel):
    title: Annotated[str, Field(min_length=1, max_length=200)]
    service: Annotated[str | None, Field(max_length=64)] = None
    policy: Annotated[str | None, Field(max_length=128)] = None
    key: Annotated[str | None, Field(max_length=255)] = None
    body: Annotated[str, Field(max_length=4000)] = ""


@router.get("/escalations")
def list_escalations(
    who: ListReader,
    c: ContainerDep,
    service: str | None = None,
    open: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    found = _oncall(c).engine.store.find(open_only=open, service=service, limit=limit)
    return [escalation_document(e) for e in found]


@router.post("/escalations", status_code=201)
def trigger(body: TriggerIn, who: Opener, c: ContainerDep) -> dict[str, Any]:
    """Open an escalation by hand (alerting opens them from alert groups)."""
    key = body.key or f"manual/{body.service or '-'}/{body.title}"
    try:
        e = _oncall(c).engine.open(
            key, title=body.title, service=body.service, body=body.body, policy=body.policy, actor=who.name
        )
    except OnCallError as exc:
        raise HTTPException(422, str(exc)) from None
    return escalation_document(e)


@router.get("/escalations/{escalation_id}")
def get_escalation(escalation_id: EscId, who: EscReader, c: ContainerDep) -> dict[str, Any]:
    engine = _oncall(c).engine
    doc = escalation_document(engine.store.get(escalation_id))
    return {**doc, "pages": engine.store.pages(escalation_id)}


@router.post("/escalations/{escalation_id}/ack")
def acknowledge(escalation_id: EscId, who: Manager, c: ContainerDep) -> dict[str, Any]:
    try:
        return escalation_document(_oncall(c).engine.acknowledge(escalation_id, actor=who.name, via="api"))
    except (EscalationError, EscalationNotFound) as exc:
        raise _refused(exc) from None


@router.post("/escalations/{escalation_id}/resolve")
def resolve(escalation_id: EscId, who: Manager, c: ContainerDep) -> dict[str, Any]:
    try:
        return escalation_document(_oncall(c).engine.resolve(escalation_id, actor=who.name, via="api"))
    except (EscalationError, EscalationNotFound) as exc:
        raise _refused(exc) from None


# -- signed links (public: the HMAC is the credential) ---------------------------------------------
def _audit_refusal(request: Request, reason: str) -> None:
    refusals = getattr(request.app.state, "refusals", None)
    client = request.client.host if request.client else "unknown"
    if refusals is not None:
        refusals.refuse(
            source=client,
            actor="anonymous",
            action="oncall.link.refused",
            detail={"reason": reason[:200], "ip": client},
        )


def _page(title: str, text: str, form: str = "") -> HTMLResponse:
    body = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{form}</body></html>"
    )
    return HTMLResponse(body)


@router.get("/oncall/links/{token}", response_class=HTMLResponse)
def link_confirm(token: Token, request: Request, c: ContainerDep) -> HTMLResponse:
    """Shows what the link will do and a button; nothing changes until the form is posted."""
    parts = _oncall(c)
    try:
        claim = parts.engine.check_link(token)
        e = parts.engine.store.get(claim.escalation)
    except (LinkError, OnCallError, EscalationNotFound) as exc:
        _audit_refusal(request, str(exc))
        return HTMLResponse(_page("Link refused", str(exc)).body, status_code=_refused(exc).status_code)
    verb = "Acknowledge" if claim.action == "ack" else "Resolve"
    form = (
        f"<form method='post'><button type='submit'>{verb} as {html.escape(claim.person)}</button></form>"
        f"<p>expires {datetime.fromtimestamp(claim.expires).isoformat()}</p>"
    )
    return _page(f"{verb}: {e.title}", f"{e.id} ({e.status.value}) on {e.service or '-'}", form)


@router.post("/oncall/links/{token}", response_class=HTMLResponse)
def link_act(token: Token, request: Request, c: ContainerDep) -> HTMLResponse:
    """Carries the link out once (audited as its person, ``via: link``)."""
    try:
        claim, e = _oncall(c).engine.act_by_link(token)
    except (LinkError, LinkSpent, EscalationError, EscalationNotFound, OnCallError) as exc:
        _audit_refusal(request, str(exc))
        return HTMLResponse(_page("Not done", str(exc)).body, status_code=_refused(exc).status_code)
    done = "acknowledged" if claim.action == "ack" else "resolved"
    return _page(f"{e.id} {done}", f"{e.title}: {done} by {claim.person}.")
