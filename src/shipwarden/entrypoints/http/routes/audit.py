"""The central audit log: query, signed export bundle, verification, checkpoints."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from shipwarden.domain.access import Permission
from shipwarden.domain.audit import ChainHead, format_ts
from shipwarden.entrypoints.http.deps import ContainerDep, Principal, require

router = APIRouter(prefix="/audit", tags=["audit"])

Reader = Annotated[Principal, require(Permission.AUDIT_READ)]
Exporter = Annotated[Principal, require(Permission.AUDIT_EXPORT)]


class Filters(BaseModel):
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    service: str | None = None
    action: str | None = None
    action_prefix: str | None = None
    source: Literal["shipwarden", "kubernetes"] | None = None
    deployment_id: str | None = None
    outcome: str | None = None
    after_seq: int = Field(0, ge=0, le=2**63 - 1)  # a BIGINT column: larger was an OverflowError (500)

    def kwargs(self) -> dict[str, Any]:
        out = self.model_dump(exclude={"since", "until"}, exclude_none=True)
        if self.since is not None:
            out["ts_from"] = format_ts(self.since)
        if self.until is not None:
            out["ts_to"] = format_ts(self.until)
        return out


FiltersDep = Annotated[Filters, Query()]


class VerifyOut(BaseModel):
    ok: bool
    entries_checked: int
    checkpoints_checked: int
    anchors_checked: int
    unsealed: int
    head_seq: int
    head_hash: str
    seq: int | None
    problem: str | None
    message: str


class CheckpointOut(BaseModel):
    seq: int
    hash: str
    ts: str
    key_id: str
    signature: str
    entries: int | None = None
    prev: str | None = None
    every: int | None = None


_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
"""What FastAPI's ``JSONResponse`` writes; the entries are JSON already (columns and stored detail)."""


@router.get("", response_model=list[dict[str, Any]])
def query(
    who: Reader, c: ContainerDep, f: FiltersDep, limit: Annotated[int, Query(ge=1, le=10000)] = 1000
) -> Response:
    """Entries in seq order, shipwarden's and Kubernetes' side by side; filter by time, actor, service,
    action, source.  Page with ``after_seq`` = the last seq received."""
    # Encoded here in one pass, not walked by FastAPI's jsonable_encoder entry by entry.
    entries = c.audit.query(limit=limit, **f.kwargs())
    return Response(_JSON.encode(entries).encode(), media_type="application/json")


@router.get("/export")
def export(who: Exporter, c: ContainerDep, f: FiltersDep) -> StreamingResponse:
    """A signed bundle: JSON Lines, one entry per line with its canonical text and hash, then a
    signed manifest; check it offline with `shipwarden audit verify-export FILE --public-key PEM`."""
    return StreamingResponse(c.audit.export(**f.kwargs()), media_type="application/x-ndjson")


@router.get("/verify")
def verify(
    who: Reader,
    c: ContainerDep,
    fast: bool = False,
    expect_head: Annotated[str | None, Query(pattern=r"^[1-9][0-9]{0,18}:[0-9a-f]{64}$")] = None,
) -> VerifyOut:
    """Walk the whole chain, the checkpoint chain and grid, and the witness file (and
    ``expect_head=SEQ:HASH``, a head kept elsewhere); says where the first problem is."""
    head = None
    if expect_head is not None:
        seq, digest = expect_head.split(":")
        head = ChainHead(int(seq), digest)
    r = c.audit.verify(fast=fast, expect_head=head)
    return VerifyOut(
        ok=r.ok,
        entries_checked=r.entries_checked,
        checkpoints_checked=r.checkpoints_checked,
        anchors_checked=r.anchors_checked,
        unsealed=r.unsealed,
        head_seq=r.head.seq,
        head_hash=r.head.hash,
        seq=r.seq,
        problem=r.problem.value if r.problem else None,
        message=r.message,
    )


@router.post("/checkpoints", status_code=201)
def checkpoint(who: Exporter, c: ContainerDep) -> CheckpointOut | None:
    """Sign the current head now."""
    cp = c.audit.checkpoint()
    return CheckpointOut(**cp.to_row()) if cp else None
