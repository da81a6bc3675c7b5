"""The seam between alerting (E7, E8) and incidents (D12).

Alerting owns alerts: it receives them (Alertmanager webhook, shipwarden's own rollout alerts,
NRQL conditions), groups, dedupes, routes, escalates and pages.  Incidents own the response:
an incident opens from a critical alert, its commander is whoever is on call, and its timeline
and report are built from the audit log.  Each side depends on this module only, never on the
other's code; ``bootstrap`` connects them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from shipwarden.domain.audit import AuditEntry, ChainHead
from shipwarden.domain.incidents import ActionItem, History, Incident

__all__ = [
    "AlertSignal",
    "AuditReader",
    "IncidentConflict",
    "IncidentNotFound",
    "IncidentSink",
    "IncidentStore",
    "MetricHistory",
    "OnCallLookup",
    "ReportError",
    "ReportFiles",
    "ReportWriter",
    "ServiceRollback",
]


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


# -- what the incident use cases need (D12); implemented by adapters, wired by bootstrap ----------


class IncidentNotFound(LookupError):
    """No incident (or action item) with that id."""


class IncidentConflict(RuntimeError):
    """The incident changed under the request (another writer); nothing was changed by it."""


class IncidentStore(Protocol):
    """Incidents, the alerts attached to them and their action items.  Every write is one
    transaction together with its audit entry (``incident.*``, ``detail.incident`` = the id)."""

    def create(self, incident: Incident, *, actor: str, detail: Mapping[str, Any]) -> Incident: ...

    def get(self, incident_id: str) -> Incident:
        """Raises :class:`IncidentNotFound`."""
        ...

    def find(self, *, open_only: bool = False, service: str | None = None, limit: int = 50) -> list[Incident]:
        """Newest first."""
        ...

    def update(
        self,
        incident_id: str,
        change: Callable[[Incident], Incident],
        *,
        actor: str,
        action: str,
        detail: Mapping[str, Any],
        outcome: str = "ok",
    ) -> Incident:
        """Apply ``change`` to the stored incident (read for update) and store the result with its
        audit entry, in one transaction.  ``change`` raising stores nothing."""
        ...

    def record(
        self, incident_id: str, *, actor: str, action: str, detail: Mapping[str, Any], outcome: str = "ok"
    ) -> None:
        """An audit entry about the incident that changes none of its fields (a rollback asked for)."""
        ...

    def attach_alert(self, incident_id: str, alert: AlertSignal, *, actor: str) -> bool:
        """Record that ``alert`` changed while the incident was open; ``False``: already recorded
        (alerting delivers at least once)."""
        ...

    def alerts(self, incident_id: str) -> list[dict[str, Any]]: ...

    def add_item(self, item: ActionItem, *, actor: str) -> ActionItem:
        """Stored with the next free number of its incident."""
        ...

    def update_item(
        self,
        incident_id: str,
        number: int,
        change: Callable[[ActionItem], ActionItem],
        *,
        actor: str,
        detail: Mapping[str, Any],
    ) -> ActionItem: ...

    def items(self, incident_id: str | None = None, *, open_only: bool = False) -> list[ActionItem]: ...


class AuditReader(Protocol):
    """The audit log as the timeline and the correlation read it (``AuditRepo`` is one)."""

    def entries(
        self,
        *,
        after_seq: int = 0,
        action_prefix: str | None = None,
        service: str | None = None,
        deployment_id: str | None = None,
        ts_from: str | None = None,
        ts_to: str | None = None,
        limit: int | None = None,
    ) -> Iterator[AuditEntry]: ...

    def head(self) -> ChainHead: ...


class MetricHistory(Protocol):
    """Request, error and latency history of a service's production route (the router's counters)."""

    def history(
        self, service: str, start: datetime, end: datetime, *, impact: tuple[datetime, datetime] | None = None
    ) -> History:
        """Series from ``start`` to ``end``; ``impact`` (onset, restored) asks the source for its own
        count of failed requests in that window when it has one."""
        ...


class ServiceRollback(Protocol):
    """The existing rollback use case (``RolloutService.rollback``), as an incident calls it."""

    def current(self, service: str) -> tuple[str | None, str | None]:
        """``(active deployment id or None, stable version or None)`` of ``service``."""
        ...

    def deployment(self, deployment_id: str) -> tuple[str, str, str]:
        """``(service, to_version, phase)`` of a deployment."""
        ...

    def rollback(self, service: str, *, actor: str) -> str:
        """Roll ``service`` back now; the id of the deployment that does it (raises on refusal)."""
        ...


@dataclass(frozen=True)
class ReportFiles:
    directory: Path
    json: Path
    html: Path
    pdf: Path | None
    plots: Sequence[Path] = ()


class ReportError(RuntimeError):
    """The report could not be written (Chromium missing or failing when a PDF was required)."""


class ReportWriter(Protocol):
    """Lays a report document out as files (HTML with its plots, PDF)."""

    def write(self, doc: Mapping[str, Any], directory: Path, *, pdf: bool = True) -> ReportFiles: ...

    def html(self, doc: Mapping[str, Any]) -> str:
        """The report as one self-contained HTML page (plots embedded)."""
        ...
