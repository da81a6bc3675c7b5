"""The seam between alerting (E7, E8) and incidents (D12).

Alerting owns alerts: it receives them (Alertmanager webhook, shipwarden's own rollout alerts,
NRQL conditions), groups, dedupes, routes, escalates and pages.  Incidents own the response:
an incident opens from a critical alert, its commander is whoever is on call, and its timeline
and report are built from the audit log.  Each side depends on this module only, never on the
other's code; ``bootstrap`` connects them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

__all__ = ["AlertSignal", "IncidentSink", "OnCallLookup"]


@dataclass(frozen=True)
class AlertSignal:
    """One alert's state change, after alerting has recorded it durably (its audit entry)."""

    fingerprint: str
    """Stable identity of the alert (Alertmanager's fingerprint, or a hash of its sorted labels)."""
    name: str
    """``alertname``."""
    severity: Literal["critical", "warning", "info"]
    status: Literal["firing", "resolved"]
    starts_at: datetime
    ends_at: datetime | None = None
    service: str | None = None
    """The ``service`` label, when the alert is about one service of the policy."""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    audit_seq: int | None = None
    """Sequence number of the audit entry that recorded this change (timelines cite it)."""


class IncidentSink(Protocol):
    """Told of every alert state change; opens, updates or annotates incidents."""

    def alert_changed(self, alert: AlertSignal) -> None: ...


class OnCallLookup(Protocol):
    """Who is on call: used to name an incident's commander."""

    def on_call(self, service: str | None, at: datetime) -> list[str]:
        """User names on call for ``service`` (its escalation policy's first level) at ``at``."""
        ...
