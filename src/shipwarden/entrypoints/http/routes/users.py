"""User administration: accounts, role bindings (optionally scoped), CIDR allowlists, sessions, MFA reset."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from shipwarden.domain.access import Permission
from shipwarden.entrypoints.http.deps import ContainerDep, Principal, require
from shipwarden.ports.access import UserRecord
from shipwarden.services.access import binding_text, parse_binding

router = APIRouter(prefix="/users", tags=["users"])

Admin = Annotated[Principal, require(Permission.USER_MANAGE)]


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    password: str | None = Field(None, min_length=12, max_length=4096)
    roles: list[str] = Field(default_factory=list, description="'role' or 'role:svc1,svc2' or 'role:team=x'")
    cidrs: list[str] = Field(default_factory=list)


class RolesIn(BaseModel):
    roles: list[str]


class CidrsIn(BaseModel):
    cidrs: list[str]


class PasswordIn(BaseModel):
    password: str = Field(min_length=12, max_length=4096)


class UserOut(BaseModel):
    name: str
    roles: list[str]
    cidrs: list[str]
    mfa_enabled: bool
    disabled: bool
    has_password: bool


def _out(u: UserRecord) -> UserOut:
    return UserOut(
        name=u.name,
        roles=[binding_text(b) for b in u.bindings],
        cidrs=list(u.cidrs),
        mfa_enabled=u.mfa_enabled,
        disabled=u.disabled,
        has_password=u.password_hash is not None,
    )


@router.get("")
def list_users(who: Admin, c: ContainerDep) -> list[UserOut]:
    return [_out(u) for u in c.access.users()]


@router.post("", status_code=201)
def create_user(body: UserIn, who: Admin, c: ContainerDep) -> UserOut:
    bindings = [parse_binding(r) for r in body.roles]
    return _out(c.access.create_user(who.name, body.name, body.password, bindings, body.cidrs))


@router.get("/{name}")
def get_user(name: str, who: Admin, c: ContainerDep) -> UserOut:
    return _out(c.access.user(name))


@router.put("/{name}/roles")
def set_roles(name: str, body: RolesIn, who: Admin, c: ContainerDep) -> UserOut:
    """Replace the role bindings; the user's sessions end (privilege change)."""
    return _out(c.access.set_roles(who.name, name, [parse_binding(r) for r in body.roles]))


@router.put("/{name}/cidrs")
def set_cidrs(name: str, body: CidrsIn, who: Admin, c: ContainerDep) -> UserOut:
    return _out(c.access.set_cidrs(who.name, name, body.cidrs))


@router.put("/{name}/password", status_code=204)
def set_password(name: str, body: PasswordIn, who: Admin, c: ContainerDep) -> None:
    c.access.set_password(who.name, name, body.password)


@router.post("/{name}/disable")
def disable(name: str, who: Admin, c: ContainerDep) -> UserOut:
    return _out(c.access.set_disabled(who.name, name, True))


@router.post("/{name}/enable")
def enable(name: str, who: Admin, c: ContainerDep) -> UserOut:
    return _out(c.access.set_disabled(who.name, name, False))


@router.delete("/{name}/mfa", status_code=204)
def reset_mfa(name: str, who: Admin, c: ContainerDep) -> None:
    c.access.reset_mfa(who.name, name)


@router.post("/{name}/sessions/revoke")
def revoke_sessions(name: str, who: Admin, c: ContainerDep) -> dict[str, int]:
    return {"revoked": c.access.revoke_all_sessions(who.name, name)}
