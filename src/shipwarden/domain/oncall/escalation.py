"""Escalations: who is paged when, until somebody acknowledges (E8).  Pure.

An escalation policy is an ordered list of **levels**; each names people, schedules (whoever is
on call there when the level fires) and channels, and a **time-out**: unless somebody
acknowledges within it, the next level fires.  ``repeat: N`` runs the whole list N more times.
So the steps are ``levels × (repeat + 1)``, step ``i`` paging ``levels[i mod len]``.

**Frozen when the group opens.**  :func:`freeze` copies the policy into a :class:`Snapshot`
stored with the escalation; editing the policy mid-incident changes no running escalation
(Grafana OnCall's escalation snapshot).  Schedules are read when a level fires — the snapshot
says *which* schedule, the rota says who holds it *now*.

**Due times, not sleeps.**  An escalation stores the instant its next step is due.  Step 0 is
due when it opens; step ``i+1`` is due ``timeout(i)`` after step ``i`` was *due* (not after it
happened to fire), so lateness never accumulates and a process that restarts during a wait
fires the step at the stored time (GoAlert's SQL state machine; OnCall #1206 lost escalations
on a worker restart).  :func:`fire` is the one transition the engine applies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "Escalation",
    "EscalationError",
    "FrozenLevel",
    "Snapshot",
    "Status",
    "Target",
    "acknowledge",
    "fire",
    "freeze",
    "resolve",
]


class EscalationError(ValueError):
    """A request the escalation's state refuses (acknowledging a resolved one, …)."""


class Status(StrEnum):
    TRIGGERED = "triggered"
    """Open, nobody acknowledged: steps fire at their due times."""
    ACKNOWLEDGED = "acknowledged"
    """Somebody took it: no further steps."""
    RESOLVED = "resolved"
    """Over (the alert group resolved, or a person resolved it)."""


@dataclass(frozen=True)
class Target:
    kind: Literal["person", "schedule", "channel"]
    name: str


@dataclass(frozen=True)
class FrozenLevel:
    targets: tuple[Target, ...]
    timeout: float


@dataclass(frozen=True)
class Snapshot:
    policy: str
    levels: tuple[FrozenLevel, ...]
    repeat: int

    @property
    def steps(self) -> int:
        return len(self.levels) * (self.repeat + 1)

    def level(self, step: int) -> FrozenLevel:
        return self.levels[step % len(self.levels)]

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "repeat": self.repeat,
            "levels": [
                {"timeout": lv.timeout, "notify": [{"kind": t.kind, "name": t.name} for t in lv.targets]}
                for lv in self.levels
            ],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Snapshot:
        return cls(
            policy=str(doc["policy"]),
            repeat=int(doc["repeat"]),
            levels=tuple(
                FrozenLevel(tuple(Target(t["kind"], t["name"]) for t in lv["notify"]), float(lv["timeout"]))
                for lv in doc["levels"]
            ),
        )

    @property
    def digest(self) -> str:
        raw = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


def freeze(name: str, levels: Sequence[tuple[Sequence[tuple[str, str]], float]], repeat: int) -> Snapshot:
    """A snapshot from ``(targets as (kind, name), timeout)`` per level."""
    if not levels:
        raise EscalationError(f"escalation policy {name!r} has no levels")
    return Snapshot(
        name,
        tuple(FrozenLevel(tuple(Target(k, n) for k, n in ts), float(t)) for ts, t in levels),  # type: ignore[arg-type]
        repeat,
    )


@dataclass(frozen=True)
class Escalation:
    id: str
    key: str
    """The alert group's key (one open escalation per key)."""
    service: str | None
    title: str
    body: str
    snapshot: Snapshot
    status: Status
    step: int
    """The next step to fire (``snapshot.steps``: all fired)."""
    due: float | None
    """When step ``step`` is due (epoch seconds); None: nothing more will fire."""
    opened_at: float
    acked_at: float | None = None
    acked_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    version: int = 0

    @property
    def open(self) -> bool:
        return self.status is not Status.RESOLVED


@dataclass(frozen=True)
class Fired:
    """What :func:`fire` did: step ``step`` (level ``level``), ``late`` seconds after its due time."""

    escalation: Escalation
    step: int
    level: FrozenLevel
    due: float
    late: float


def fire(e: Escalation, now: float) -> Fired:
    """Fire the step that is due: the next state, and what to page."""
    if e.status is not Status.TRIGGERED:
        raise EscalationError(f"escalation {e.id} is {e.status.value}: nothing fires")
    if e.due is None or e.step >= e.snapshot.steps:
        raise EscalationError(f"escalation {e.id} has no step left")
    if now < e.due:
        raise EscalationError(f"step {e.step} of {e.id} is due at {e.due:.3f}, not yet")
    level = e.snapshot.level(e.step)
    nxt = e.step + 1
    due = e.due + level.timeout if nxt < e.snapshot.steps else None
    return Fired(replace(e, step=nxt, due=due), e.step, level, e.due, now - e.due)


def acknowledge(e: Escalation, now: float, by: str) -> Escalation:
    if e.status is Status.RESOLVED:
        raise EscalationError(f"escalation {e.id} was resolved by {e.resolved_by}: nothing to acknowledge")
    if e.status is Status.ACKNOWLEDGED:
        raise EscalationError(f"escalation {e.id} was already acknowledged by {e.acked_by}")
    return replace(e, status=Status.ACKNOWLEDGED, acked_at=now, acked_by=by, due=None)


def resolve(e: Escalation, now: float, by: str) -> Escalation:
    if e.status is Status.RESOLVED:
        raise EscalationError(f"escalation {e.id} was already resolved by {e.resolved_by}")
    return replace(e, status=Status.RESOLVED, resolved_at=now, resolved_by=by, due=None)

def escalation_document(e: Escalation) -> dict[str, Any]:
    """An escalation as the CLI's --json and the API answer it."""
    return {
        "id": e.id,
        "group": e.key,
        "service": e.service,
        "title": e.title,
        "status": e.status.value,
        "step": e.step,
        "steps": e.snapshot.steps,
        "next_due": e.due,
        "opened_at": e.opened_at,
        "acknowledged_at": e.acked_at,
        "acknowledged_by": e.acked_by,
        "resolved_at": e.resolved_at,
        "resolved_by": e.resolved_by,
        "policy": e.snapshot.to_json(),
        "snapshot": e.snapshot.digest,
    }
