"""Rollout alerts (D7, D8): which deployment states tell the operations team, and what they say.

The ``alerts`` section of a policy names the targets (secrets holding Apprise URLs, as
``delivery.notify`` does) and the events that page them::

    alerts:
      rollout:
        urls: [OPS_ALERT_URL]              # names of secrets, never the URLs themselves
        events: [rollback, failed, paused] # the default: rollback and failed

Events, each sent at most once per deployment (``paused`` once per step):

* ``rollback`` — a deployment is being, or has been, rolled back: automatically
  (failed health, failed analysis, progress deadline) or by an operator; the alert says
  which, why, and the detection and restore times when they are known;
* ``failed`` — a deployment could neither complete nor roll back;
* ``paused`` — an analysis was inconclusive and the rollout waits for an operator;
* ``succeeded`` — opt-in, for teams that want every release announced.

Everything here is pure: :func:`rollout_alert` reads a deployment's state and returns
the alert it calls for, or ``None``.  The state is read, not the transition, so a
controller that crashed between a transition and its alert sends the alert when it
resumes (the service keeps a ledger of the alerts it sent, in the audit log).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import Field

from shipwarden.domain._base import _Strict
from shipwarden.domain.delivery import NotifyTargets
from shipwarden.domain.rollout import Phase


class RolloutEvent(StrEnum):
    ROLLBACK = "rollback"
    FAILED = "failed"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"


class RolloutAlertSpec(NotifyTargets):
    events: list[RolloutEvent] = Field(default_factory=lambda: [RolloutEvent.ROLLBACK, RolloutEvent.FAILED])


class AlertsPolicy(_Strict):
    rollout: RolloutAlertSpec | None = None


@dataclass(frozen=True, slots=True)
class DeploymentView:
    """What an alert needs to know about a deployment (the store's ``Deployment`` has these)."""

    id: str
    service: str
    kind: str
    from_version: str | None
    to_version: str
    phase: Phase
    step_index: int
    paused: bool
    reason: str
    actor: str
    operator_actor: str | None
    created_at: float
    detected_at: float | None
    traffic_restored_at: float | None
    pause_cause: str | None = None  # "analysis" | "operator" while paused


Severity = Literal["info", "success", "warning", "failure"]


@dataclass(frozen=True, slots=True)
class Alert:
    event: RolloutEvent
    key: str
    """Identifies the alert within its deployment: the ledger sends each key once."""
    severity: Severity
    title: str
    body: str


_ROLLING_BACK = (Phase.ROLLING_BACK, Phase.ROLLED_BACK)


def _event(d: DeploymentView) -> tuple[RolloutEvent, str] | None:
    if d.phase in _ROLLING_BACK and d.kind == "deploy":
        return RolloutEvent.ROLLBACK, "rollback"
    if d.phase is Phase.FAILED:
        return RolloutEvent.FAILED, "failed"
    if d.paused and d.pause_cause == "analysis":
        return RolloutEvent.PAUSED, f"paused@{d.step_index}"
    if d.phase is Phase.SUCCEEDED:
        return RolloutEvent.SUCCEEDED, "succeeded"
    return None


def rollout_alert(d: DeploymentView, spec: RolloutAlertSpec) -> Alert | None:
    """The alert ``d``'s current state calls for under ``spec``, or ``None``."""
    found = _event(d)
    if found is None or found[0] not in spec.events:
        return None
    event, key = found
    versions = f"{d.from_version or '(none)'} → {d.to_version}"
    lines = [f"service: {d.service}", f"deployment: {d.id} ({versions})", f"reason: {d.reason}"]
    if event is RolloutEvent.ROLLBACK:
        by = f"by operator {d.operator_actor}" if d.operator_actor else "automatically"
        done = "rolled back" if d.phase is Phase.ROLLED_BACK else "being rolled back"
        title = f"[shipwarden] {d.service}: {d.to_version} {done} {by}"
        if d.detected_at is not None:
            lines.append(f"detected {d.detected_at - d.created_at:.1f}s after the deployment started")
        if d.detected_at is not None and d.traffic_restored_at is not None:
            restore = d.traffic_restored_at - d.detected_at
            lines.append(f"traffic back on {d.from_version} {restore:.2f}s later")
        severity: Severity = "failure" if not d.operator_actor else "warning"
    elif event is RolloutEvent.FAILED:
        title = f"[shipwarden] {d.service}: deployment of {d.to_version} FAILED — needs an operator"
        severity = "failure"
    elif event is RolloutEvent.PAUSED:
        title = (
            f"[shipwarden] {d.service}: {d.to_version} paused at step {d.step_index}, analysis inconclusive"
        )
        lines.append(f"continue: shipwarden promote {d.service}   stop: shipwarden rollback {d.service}")
        severity = "warning"
    else:
        title = f"[shipwarden] {d.service}: {d.to_version} is live"
        severity = "success"
    lines.append(f"record: shipwarden show {d.id}")
    return Alert(event, key, severity, title, "\n".join(lines))
