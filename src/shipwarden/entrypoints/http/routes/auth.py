"""Login, logout, sessions and the second factor (TOTP enrolment, step-up, recovery codes)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from shipwarden.domain.access import MATRIX
from shipwarden.entrypoints.http.deps import SESSION_COOKIE, ClientIp, ContainerDep, Principal, require

router = APIRouter(prefix="/auth", tags=["auth"])

Anyone = Annotated[Principal, require(None)]
SessionOnly = Annotated[Principal, require(None, session_only=True)]


class LoginIn(BaseModel):
    user: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=4096)


class SessionOut(BaseModel):
    user: str
    roles: list[str]
    created_at: datetime
    expires_at: datetime
    idle_timeout_s: float
    mfa_enabled: bool
    mfa_verified_at: datetime | None = None


class CodeIn(BaseModel):
    code: str = Field(min_length=1, max_length=64)


class EnrollOut(BaseModel):
    secret: str
    provisioning_uri: str


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]
    note: str = "shown once: store them offline"


class MfaOut(BaseModel):
    mfa_verified_at: datetime
    recovery_codes_left: int | None = None


class MeOut(BaseModel):
    user: str
    via: str
    ip: str
    roles: list[str]
    permissions: list[str]
    mfa_enabled: bool
    mfa_verified_at: datetime | None


class SessionInfo(BaseModel):
    handle: str
    created_at: datetime
    last_seen_at: datetime
    ip: str | None
    current: bool


def _set_cookie(response: Response, c: ContainerDep, sid: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        sid,
        httponly=True,
        secure=c.settings.cookie_secure,
        samesite="strict",
        path="/",
        max_age=int(c.access.config.session.absolute.total_seconds()),
    )


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


@router.post("/login")
def login(body: LoginIn, ip: ClientIp, c: ContainerDep, response: Response) -> SessionOut:
    """Password login: a new session (a new id every time), limited to N concurrent per user."""
    sid, state = c.access.login(body.user, body.password, ip)
    _set_cookie(response, c, sid)
    pol = c.access.config.session
    user = c.access.user(body.user)
    return SessionOut(
        user=state.user,
        roles=sorted({b.role.value for b in state.bindings}),
        created_at=state.created_at,
        expires_at=state.created_at + pol.absolute,
        idle_timeout_s=pol.idle.total_seconds(),
        mfa_enabled=user.mfa_enabled,
    )


@router.post("/logout", status_code=204)
def logout(who: SessionOnly, c: ContainerDep, response: Response) -> None:
    c.access.logout(who)
    response.delete_cookie(SESSION_COOKIE, path="/")


@router.get("/me")
def me(who: Anyone) -> MeOut:
    perms = sorted({p.value for b in who.bindings for p in MATRIX[b.role]})
    if who.token_scopes is not None:
        perms = sorted(set(perms) & {p.value for p in who.token_scopes})
    return MeOut(
        user=who.name,
        via=who.via,
        ip=who.ip,
        roles=who.roles,
        permissions=perms,
        mfa_enabled=who.mfa_enabled,
        mfa_verified_at=who.mfa_verified_at,
    )


@router.get("/sessions")
def my_sessions(who: SessionOnly, c: ContainerDep) -> list[SessionInfo]:
    return [
        SessionInfo(
            handle=s.id_hash[:12],
            created_at=_dt(s.created_at),
            last_seen_at=_dt(s.last_seen_at),
            ip=s.client_ip,
            current=s.id_hash == who.session_hash,
        )
        for s in c.access.sessions(who.name)
    ]


@router.delete("/sessions/{handle}", status_code=204)
def end_session(handle: str, who: SessionOnly, c: ContainerDep) -> None:
    """End one of your own sessions (e.g. a forgotten browser)."""
    c.access.revoke_session(who.name, who.name, handle)


@router.post("/mfa/enroll")
def mfa_enroll(who: SessionOnly, c: ContainerDep) -> EnrollOut:
    """A new TOTP secret and its otpauth:// URI; inactive until confirmed with one code."""
    secret, uri = c.access.mfa_enroll(who)
    return EnrollOut(secret=secret, provisioning_uri=uri)


@router.post("/mfa/confirm")
def mfa_confirm(body: CodeIn, who: SessionOnly, c: ContainerDep, response: Response) -> RecoveryCodesOut:
    """Activate the enrolment with a first code; returns recovery codes (once); the session id rotates."""
    sid, codes = c.access.mfa_confirm(who, body.code)
    _set_cookie(response, c, sid)
    return RecoveryCodesOut(recovery_codes=codes)


@router.post("/mfa/verify")
def mfa_verify(body: CodeIn, who: SessionOnly, c: ContainerDep, response: Response) -> MfaOut:
    """Step-up: a current TOTP code makes the session fresh for production actions; the id rotates."""
    sid = c.access.mfa_verify(who, body.code)
    _set_cookie(response, c, sid)
    return MfaOut(mfa_verified_at=c.clock())


@router.post("/mfa/recover")
def mfa_recover(body: CodeIn, who: SessionOnly, c: ContainerDep, response: Response) -> MfaOut:
    """Step-up with a single-use recovery code (lost phone); the id rotates."""
    sid, left = c.access.mfa_recover(who, body.code)
    _set_cookie(response, c, sid)
    return MfaOut(mfa_verified_at=c.clock(), recovery_codes_left=left)
