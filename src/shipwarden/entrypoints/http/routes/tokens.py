"""API tokens: scoped to permissions (and optionally services), expiring, revocable, shown once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from shipwarden.domain.access import Permission
from shipwarden.entrypoints.http.deps import ContainerDep, Principal, require
from shipwarden.ports.access import TokenRecord

router = APIRouter(prefix="/tokens", tags=["tokens"])

Manager = Annotated[Principal, require(Permission.TOKEN_MANAGE)]


class TokenIn(BaseModel):
    owner: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=128)
    scopes: list[str] = Field(min_length=1)
    services: list[str] | None = None
    ttl_days: float = Field(30, gt=0, le=366)
    cidrs: list[str] = Field(default_factory=list)


class TokenOut(BaseModel):
    id: str
    owner: str
    name: str
    scopes: list[str]
    services: list[str] | None
    cidrs: list[str]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class NewTokenOut(TokenOut):
    token: str = Field(description="The bearer secret: shown this once, stored only as a hash.")


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, tz=UTC) if ts is not None else None


def _out(t: TokenRecord) -> dict[str, object]:
    return {
        "id": t.id,
        "owner": t.owner,
        "name": t.name,
        "scopes": sorted(p.value for p in t.scopes),
        "services": sorted(t.services) if t.services is not None else None,
        "cidrs": list(t.cidrs),
        "created_at": _dt(t.created_at),
        "expires_at": _dt(t.expires_at),
        "revoked_at": _dt(t.revoked_at),
        "last_used_at": _dt(t.last_used_at),
    }


@router.get("")
def list_tokens(who: Manager, c: ContainerDep, owner: str | None = None) -> list[TokenOut]:
    return [TokenOut(**_out(t)) for t in c.access.tokens(owner)]


@router.post("", status_code=201)
def create_token(body: TokenIn, who: Manager, c: ContainerDep) -> NewTokenOut:
    token, rec = c.access.issue_token(
        who.name, body.owner, body.name, body.scopes, timedelta(days=body.ttl_days), body.services, body.cidrs
    )
    return NewTokenOut(token=token, **_out(rec))


@router.delete("/{token_id}", status_code=204)
def revoke_token(token_id: str, who: Manager, c: ContainerDep) -> None:
    c.access.revoke_token(who.name, token_id)
