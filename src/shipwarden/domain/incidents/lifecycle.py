"""An incident's life: how it opens, which status may follow which, and what an alert does to it.

An incident opens from a critical alert (:func:`on_alert`) or by hand, with a severity, a
commander (whoever is on call for the service when it opens) and the status
``investigating``.  People move it on::

    investigating ──▶ identified ──▶ monitoring ──▶ resolved
         ▲   ╲──────────────────────▶╱   │             │
         └───────────────────────────────┘◀────────────┘  (regressed / reopened)

Any open status may go to any other (a fix can be in before the cause is named), and a
resolved incident can only be reopened (``investigating``).  Each move stamps the moment it
first happened — ``identified_at``, ``mitigated_at`` (first ``monitoring``), ``resolved_at`` —
and the first human action on the incident stamps ``acknowledged_at``.  ``restored_at`` is when
the service was well again: the triggering alert resolving, or the first ``monitoring``,
whichever came first.  Those stamps are what the report's detection, acknowledge and restore
times are made of (:mod:`.impact`).

Everything here is pure: functions take an :class:`Incident` and return a new one, or raise
:class:`IncidentError` with a message fit for the person who asked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "ACTION_ITEM_STATUSES",
    "TRANSITIONS",
    "ActionItem",
    "AlertDecision",
    "AlertFacts",
    "Incident",
    "IncidentError",
    "Severity",
    "Status",
    "acknowledge",
    "change_status",
    "check_text",
    "close_action_item",
    "on_alert",
    "severity_of",
]


class IncidentError(ValueError):
    """A request the incident's state or the input does not allow; nothing was changed."""


class Status(StrEnum):
    INVESTIGATING = "investigating"
    """Something is wrong and people are looking; the cause is not known yet."""
    IDENTIFIED = "identified"
    """The cause is known (a suspect confirmed, say); the fix is not in yet."""
    MONITORING = "monitoring"
    """A fix or mitigation is in; watching that the service stays well."""
    RESOLVED = "resolved"
    """Over.  The post-incident report and its action items follow."""


class Severity(StrEnum):
    SEV1 = "sev1"
    """Critical: a service down or badly degraded for many users."""
    SEV2 = "sev2"
    """Major: a significant part of a service degraded."""
    SEV3 = "sev3"
    """Minor: limited impact, a workaround exists."""
    SEV4 = "sev4"
    """Low: no user-visible impact yet."""


TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.INVESTIGATING: frozenset({Status.IDENTIFIED, Status.MONITORING, Status.RESOLVED}),
    Status.IDENTIFIED: frozenset({Status.INVESTIGATING, Status.MONITORING, Status.RESOLVED}),
    Status.MONITORING: frozenset({Status.INVESTIGATING, Status.IDENTIFIED, Status.RESOLVED}),
    Status.RESOLVED: frozenset({Status.INVESTIGATING}),
}
"""Which status may follow which (the one transition table)."""

_ID = re.compile(r"^inc-[0-9]{8}-[0-9a-f]{6}$")
TITLE_MAX = 200
TEXT_MAX = 20_000
NAME_MAX = 128


def check_text(name: str, value: str, *, max_len: int, empty: bool = False) -> str:
    """``value`` stripped, refused when empty (unless ``empty``), too long or holding control characters."""
    if not isinstance(value, str):
        raise IncidentError(f"{name} must be text")
    text = value.strip()
    if not text and not empty:
        raise IncidentError(f"{name} must not be empty")
    if len(text) > max_len:
        raise IncidentError(f"{name} is {len(text)} characters; at most {max_len}")
    if any(ord(c) < 32 and c not in "\n\t" for c in text) or "\x7f" in text:
        raise IncidentError(f"{name} must not hold control characters")
    return text


def check_id(incident_id: str) -> str:
    if not isinstance(incident_id, str) or not _ID.fullmatch(incident_id):
        raise IncidentError(f"{str(incident_id)[:80]!r} is not an incident id (inc-YYYYMMDD-xxxxxx)")
    return incident_id


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    title: str
    service: str | None
    severity: Severity
    status: Status
    commander: str | None
    opened_at: datetime
    opened_by: str
    onset_at: datetime
    """When the trouble began: the triggering alert's ``startsAt``, or what the opener said."""
    detected_at: datetime
    """When shipwarden knew: the triggering alert reached it, or the incident was opened by hand."""
    alert_fingerprint: str | None = None
    """The alert that opened it (none: opened by hand)."""
    acknowledged_at: datetime | None = None
    identified_at: datetime | None = None
    mitigated_at: datetime | None = None
    restored_at: datetime | None = None
    resolved_at: datetime | None = None
    summary: str = ""
    notes: Mapping[str, str] = field(default_factory=dict)
    """Free-text sections people fill in: ``root_cause``, ``lessons``."""

    @property
    def open(self) -> bool:
        return self.status is not Status.RESOLVED


NOTE_SECTIONS = ("root_cause", "lessons", "summary")


def severity_of(labels: Mapping[str, str], alert_severity: str) -> Severity:
    """An alert's incident severity: its ``incident_severity`` label (sev1…sev4) if it has a valid
    one, else sev2 for a critical alert and sev3 for anything else."""
    wanted = (labels.get("incident_severity") or "").strip().lower()
    if wanted in {s.value for s in Severity}:
        return Severity(wanted)
    return Severity.SEV2 if alert_severity == "critical" else Severity.SEV3


def acknowledge(inc: Incident, at: datetime) -> Incident:
    """Stamp the first human response (later ones change nothing)."""
    return inc if inc.acknowledged_at is not None else replace(inc, acknowledged_at=at)


def change_status(inc: Incident, to: Status, at: datetime) -> Incident:
    """Move ``inc`` to ``to``; stamps the first time each stage was reached."""
    if to is inc.status:
        raise IncidentError(f"incident {inc.id} is already {to.value}")
    if to not in TRANSITIONS[inc.status]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[inc.status]))
        raise IncidentError(
            f"incident {inc.id} is {inc.status.value}: it can go to {allowed}, not {to.value}"
        )
    changes: dict[str, Any] = {"status": to}
    if to is Status.IDENTIFIED and inc.identified_at is None:
        changes["identified_at"] = at
    if to is Status.MONITORING:
        if inc.mitigated_at is None:
            changes["mitigated_at"] = at
        if inc.restored_at is None:
            changes["restored_at"] = at
    if to is Status.RESOLVED:
        changes["resolved_at"] = at
        if inc.restored_at is None:
            changes["restored_at"] = at
    if to is Status.INVESTIGATING and inc.status is Status.RESOLVED:
        changes["resolved_at"] = None  # reopened: it is not over
    return acknowledge(replace(inc, **changes), at)


# -- alerts ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AlertFacts:
    """What :func:`on_alert` reads of an alert (``ports.incidents.AlertSignal`` has these)."""

    fingerprint: str
    name: str
    severity: str
    status: Literal["firing", "resolved"]
    starts_at: datetime
    ends_at: datetime | None
    service: str | None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlertDecision:
    """What an alert change does: ``open`` a new incident, ``attach`` to ``incident_id`` (and,
    for the triggering alert resolving, ``restored``), or ``ignore`` (``reason`` says why)."""

    action: Literal["open", "attach", "ignore"]
    incident_id: str | None = None
    restored: bool = False
    reason: str = ""


def on_alert(open_incidents: Iterable[Incident], alert: AlertFacts) -> AlertDecision:
    """Decide what one alert state change does, given the incidents not yet resolved.

    * an incident that this alert opened, or one open for the alert's service, takes the change
      (so a re-sent or re-grouped alert never opens a second incident for the same trouble);
    * otherwise a *firing critical* alert opens a new incident; anything else is ignored;
    * the triggering alert resolving marks the service restored (the incident stays open for
      people to resolve).
    """
    incidents = list(open_incidents)
    own = [i for i in incidents if i.alert_fingerprint == alert.fingerprint]
    same = [i for i in incidents if alert.service is not None and i.service == alert.service]
    matches = own or same
    target = matches[0] if matches else None
    if target is not None:
        restored = (
            alert.status == "resolved"
            and target.alert_fingerprint == alert.fingerprint
            and target.restored_at is None
        )
        return AlertDecision("attach", target.id, restored=restored)
    if alert.status == "firing" and alert.severity == "critical":
        return AlertDecision("open")
    why = "resolved" if alert.status == "resolved" else f"{alert.severity}, not critical"
    return AlertDecision("ignore", reason=f"alert {alert.name} is {why} and no incident is open for it")


# -- action items ------------------------------------------------------------------------------
ACTION_ITEM_STATUSES = ("open", "done", "wontfix")


@dataclass(frozen=True, slots=True)
class ActionItem:
    """A follow-up from the post-incident review, tracked until it is closed."""

    incident_id: str
    number: int
    title: str
    owner: str | None
    status: Literal["open", "done", "wontfix"]
    created_at: datetime
    created_by: str
    due: str | None = None
    """ISO date (YYYY-MM-DD) it is due, if one was set."""
    closed_at: datetime | None = None
    note: str = ""


def close_action_item(item: ActionItem, status: str, at: datetime, note: str = "") -> ActionItem:
    """Close (``done`` / ``wontfix``) or reopen (``open``) an action item."""
    if status not in ACTION_ITEM_STATUSES:
        raise IncidentError(f"status must be one of {', '.join(ACTION_ITEM_STATUSES)}, not {status[:40]!r}")
    if status == item.status:
        raise IncidentError(f"action item {item.incident_id}#{item.number} is already {status}")
    note = check_text("note", note, max_len=TITLE_MAX * 5, empty=True)
    return replace(
        item,
        status=status,  # type: ignore[arg-type]
        closed_at=None if status == "open" else at,
        note=note or item.note,
    )
