"""Incident use cases (D12): open from alerts or by hand, move, command, track, correlate, roll back.

:class:`IncidentService` is alerting's ``IncidentSink`` (``ports.incidents``): alerting calls
:meth:`IncidentService.alert_changed` after it recorded each alert change, and the pure
:func:`~shipwarden.domain.incidents.on_alert` decides whether that opens an incident (a firing
critical alert with no incident open for its service), attaches to one, or marks it restored.
The commander is whoever :class:`~shipwarden.ports.incidents.OnCallLookup` says is on call.

People then move it (:meth:`set_status`, :meth:`acknowledge`, :meth:`set_commander`,
:meth:`set_notes`), track action items to closure, and read its timeline and suspects
(:meth:`timeline`, :meth:`suspects`), both derived from the audit log every time, never
stored.  :meth:`rollback_suspect` is the one-command rollback of the top suspect: the incident
records the request first, then calls the existing rollback use case (whose permission the
entrypoint checked, as for ``shipwarden rollback``), then records what it started.

This module depends on ports only: the store, the audit log, on-call, metric history, the
rollback use case and the report writer are all handed in by ``bootstrap``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shipwarden.domain.audit import format_ts
from shipwarden.domain.incidents import (
    DEFAULT_WEIGHTS,
    ActionItem,
    AlertFacts,
    History,
    Incident,
    IncidentError,
    Ranking,
    Severity,
    Status,
    TimelineEntry,
    Weights,
    acknowledge,
    assemble,
    candidates_from_audit,
    change_status,
    check_id,
    check_text,
    close_action_item,
    on_alert,
    rank,
    severity_of,
)
from shipwarden.domain.incidents.lifecycle import NAME_MAX, NOTE_SECTIONS, TEXT_MAX, TITLE_MAX
from shipwarden.ports.incidents import (
    AlertSignal,
    AuditReader,
    IncidentStore,
    MetricHistory,
    OnCallLookup,
    ServiceRollback,
)

__all__ = ["IncidentService", "RollbackStarted"]

log = logging.getLogger(__name__)

CORRELATION_PREFIXES = (
    "deployment.", "rollout.", "change.merged", "secret.put", "dr.failover", "dr.switchover",
)  # fmt: skip
"""The audit entries candidates are read from (each prefix one indexed query)."""


@dataclass(frozen=True)
class RollbackStarted:
    incident_id: str
    suspect: str
    service: str
    rolled_back: str
    """The suspect deployment's id."""
    rollback: str
    """The id of the deployment that rolls back (or the active one steered back)."""


class IncidentService:
    def __init__(
        self,
        store: IncidentStore,
        audit: AuditReader,
        *,
        oncall: OnCallLookup | None = None,
        metrics: MetricHistory | None = None,
        rollbacks: ServiceRollback | None = None,
        related: Callable[[str | None], Collection[str]] = lambda s: (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        weights: Weights = DEFAULT_WEIGHTS,
        actor: str = "shipwarden:incidents",
        lookback: timedelta = timedelta(hours=24),
        timeline_before: timedelta = timedelta(hours=2),
    ) -> None:
        self.store, self.audit, self.oncall, self.metrics = store, audit, oncall, metrics
        self.rollbacks, self.related, self.clock, self.weights = rollbacks, related, clock, weights
        self.actor, self.lookback, self.timeline_before = actor, lookback, timeline_before

    # -- IncidentSink ---------------------------------------------------------------------------
    def alert_changed(self, alert: AlertSignal) -> None:
        """One alert change (alerting recorded it already): open, attach or restore.  Idempotent:
        the same change delivered twice is recorded once and opens nothing new."""
        facts = AlertFacts(alert.fingerprint, alert.name, alert.severity, alert.status, alert.starts_at,
                           alert.ends_at, alert.service, dict(alert.labels))  # fmt: skip
        decision = on_alert(self.store.find(open_only=True, limit=500), facts)
        if decision.action == "ignore":
            log.debug("alert %s: %s", alert.name, decision.reason)
            return
        if decision.action == "open":
            if any(i.alert_fingerprint == alert.fingerprint and i.onset_at == alert.starts_at
                   for i in self.store.find(service=alert.service, limit=20)):  # fmt: skip
                return  # this very firing opened an incident that is resolved since: not again
            inc = self._open_from(alert)
            self.store.attach_alert(inc.id, alert, actor=self.actor)
            return
        assert decision.incident_id is not None
        fresh = self.store.attach_alert(decision.incident_id, alert, actor=self.actor)
        if fresh and decision.restored:
            when = alert.ends_at or self.clock()
            self.store.update(
                decision.incident_id,
                lambda i: i if i.restored_at is not None else replace(i, restored_at=when),
                actor=self.actor, action="incident.restored",
                detail={"alert": alert.name, "fingerprint": alert.fingerprint, "restored_at": format_ts(when),
                        "alert_seq": alert.audit_seq},
            )  # fmt: skip

    def _open_from(self, alert: AlertSignal) -> Incident:
        summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
        title = f"{alert.name}" + (f" on {alert.service}" if alert.service else "")
        return self.open(
            title=title[:TITLE_MAX], service=alert.service,
            severity=severity_of(alert.labels, alert.severity), actor=self.actor, onset=alert.starts_at,
            summary=summary[:TEXT_MAX], fingerprint=alert.fingerprint, alert_seq=alert.audit_seq,
        )  # fmt: skip

    # -- opening and moving -----------------------------------------------------------------------
    def _commander(self, service: str | None, at: datetime) -> str | None:
        if self.oncall is None:
            return None
        try:
            names = self.oncall.on_call(service, at)
        except Exception:  # noqa: BLE001 - an incident must open even if the rota cannot be read
            log.exception("on-call lookup failed for %s", service)
            return None
        return names[0] if names else None

    def open(
        self,
        *,
        title: str,
        service: str | None,
        severity: Severity | str,
        actor: str,
        onset: datetime | None = None,
        commander: str | None = None,
        summary: str = "",
        fingerprint: str | None = None,
        alert_seq: int | None = None,
    ) -> Incident:
        """Open an incident (by hand: ``fingerprint`` None).  The commander defaults to who is on call."""
        now = self.clock()
        title = check_text("title", title, max_len=TITLE_MAX)
        summary = check_text("summary", summary, max_len=TEXT_MAX, empty=True)
        try:
            sev = Severity(severity)
        except ValueError:
            raise IncidentError(f"severity must be one of {', '.join(s.value for s in Severity)}") from None
        if onset is not None and onset.tzinfo is None:
            raise IncidentError("onset must carry a time zone")
        if onset is not None and onset > now + timedelta(minutes=5):
            raise IncidentError(f"onset {onset.isoformat()} is in the future")
        if commander is not None:
            commander = check_text("commander", commander, max_len=NAME_MAX)
        chosen = commander or self._commander(service, onset or now)
        inc = Incident(
            id=f"inc-{now:%Y%m%d}-{secrets.token_hex(3)}", title=title, service=service, severity=sev,
            status=Status.INVESTIGATING, commander=chosen, opened_at=now, opened_by=actor,
            onset_at=onset or now, detected_at=now, alert_fingerprint=fingerprint, summary=summary,
        )  # fmt: skip
        return self.store.create(
            inc, actor=actor,
            detail={"title": title, "severity": sev.value, "commander": chosen,
                    "onset": format_ts(inc.onset_at), "by": "alert" if fingerprint else "hand",
                    "fingerprint": fingerprint, "alert_seq": alert_seq},
        )  # fmt: skip

    def get(self, incident_id: str) -> Incident:
        return self.store.get(check_id(incident_id))

    def find(self, *, open_only: bool = False, service: str | None = None, limit: int = 50) -> list[Incident]:
        return self.store.find(open_only=open_only, service=service, limit=limit)

    def set_status(self, incident_id: str, status: Status | str, *, actor: str, note: str = "") -> Incident:
        try:
            to = Status(status)
        except ValueError:
            raise IncidentError(f"status must be one of {', '.join(s.value for s in Status)}") from None
        note = check_text("note", note, max_len=TEXT_MAX, empty=True)
        now = self.clock()
        return self.store.update(
            check_id(incident_id), lambda i: change_status(i, to, now), actor=actor, action="incident.status",
            detail={"status": to.value, "note": note},
        )  # fmt: skip

    def acknowledge(self, incident_id: str, *, actor: str) -> Incident:
        now = self.clock()

        def ack(i: Incident) -> Incident:
            if i.acknowledged_at is not None:
                raise IncidentError(f"incident {i.id} was acknowledged at {i.acknowledged_at.isoformat()}")
            return acknowledge(i, now)

        return self.store.update(check_id(incident_id), ack, actor=actor, action="incident.acknowledged",
                                 detail={"by": actor})  # fmt: skip

    def set_commander(self, incident_id: str, commander: str, *, actor: str) -> Incident:
        name = check_text("commander", commander, max_len=NAME_MAX)
        now = self.clock()
        return self.store.update(
            check_id(incident_id), lambda i: acknowledge(replace(i, commander=name), now), actor=actor,
            action="incident.commander", detail={"commander": name},
        )  # fmt: skip

    def set_notes(self, incident_id: str, section: str, text: str, *, actor: str) -> Incident:
        """Fill in ``summary``, ``root_cause`` or ``lessons`` (the report's sections for people)."""
        if section not in NOTE_SECTIONS:
            raise IncidentError(f"section must be one of {', '.join(NOTE_SECTIONS)}, not {section[:40]!r}")
        body = check_text(section, text, max_len=TEXT_MAX, empty=True)

        def put(i: Incident) -> Incident:
            if section == "summary":
                return replace(i, summary=body)
            return replace(i, notes={**i.notes, section: body})

        return self.store.update(check_id(incident_id), put, actor=actor, action="incident.notes",
                                 detail={"section": section, "chars": len(body)})  # fmt: skip

    # -- action items -----------------------------------------------------------------------------
    def add_item(
        self, incident_id: str, title: str, *, actor: str, owner: str | None = None, due: str | None = None
    ) -> ActionItem:
        self.get(incident_id)
        title = check_text("title", title, max_len=TITLE_MAX)
        if owner is not None:
            owner = check_text("owner", owner, max_len=NAME_MAX)
        if due is not None:
            try:
                due = datetime.strptime(due, "%Y-%m-%d").date().isoformat()
            except ValueError:
                raise IncidentError(f"due must be a date YYYY-MM-DD, not {due[:40]!r}") from None
        item = ActionItem(incident_id, 0, title, owner, "open", self.clock(), actor, due)
        return self.store.add_item(item, actor=actor)

    def close_item(
        self, incident_id: str, number: int, status: str, *, actor: str, note: str = ""
    ) -> ActionItem:
        now = self.clock()
        return self.store.update_item(
            check_id(incident_id), number, lambda it: close_action_item(it, status, now, note), actor=actor,
            detail={"note": note[:500]},
        )  # fmt: skip

    def items(self, incident_id: str | None = None, *, open_only: bool = False) -> list[ActionItem]:
        return self.store.items(check_id(incident_id) if incident_id else None, open_only=open_only)

    # -- analysis ---------------------------------------------------------------------------------
    def services_of(self, inc: Incident) -> set[str]:
        out = set(self.related(inc.service))
        if inc.service:
            out.add(inc.service)
        return out

    def _window_entries(self, prefixes: tuple[str, ...], start: datetime, end: datetime) -> list[Any]:
        seen: dict[int, Any] = {}
        for p in prefixes:
            for e in self.audit.entries(action_prefix=p, ts_from=format_ts(start), ts_to=format_ts(end)):
                seen[e.seq] = e
        return [seen[k] for k in sorted(seen)]

    def suspects(self, incident_id: str | Incident) -> Ranking:
        """The ranked changes that preceded the onset (the correlation)."""
        inc = incident_id if isinstance(incident_id, Incident) else self.get(incident_id)
        onset = inc.onset_at
        # deployments further back, so each one's policy digest is compared with its predecessor's
        start = onset - self.lookback - timedelta(days=7)
        entries = self._window_entries(CORRELATION_PREFIXES, start, inc.resolved_at or self.clock())
        candidates = candidates_from_audit(entries, onset=onset, lookback=self.lookback)
        return rank(candidates, onset=onset, service=inc.service, related=self.related(inc.service),
                    weights=self.weights)  # fmt: skip

    def timeline(self, incident_id: str | Incident, ranking: Ranking | None = None) -> list[TimelineEntry]:
        """The incident's timeline from the audit log (every line with its entry's seq and hash)."""
        inc = incident_id if isinstance(incident_id, Incident) else self.get(incident_id)
        ranking = ranking if ranking is not None else self.suspects(inc)
        # the suspects worth a look: on the timeline even when of another service
        top = [s.candidate for s in ranking.suspects[:5] if s.probability >= ranking.threshold]
        since = min([inc.onset_at - self.timeline_before, *(c.started_at for c in top)])
        until = inc.resolved_at or self.clock()
        deployments = {c.deployment_id for c in top if c.deployment_id}
        changes = {c.change_id for c in top if c.change_id}
        entries = self.audit.entries(ts_from=format_ts(since), ts_to=format_ts(until))
        return assemble(entries, incident_id=inc.id, services=self.services_of(inc), deployments=deployments,
                        changes=changes, since=since, until=until)  # fmt: skip

    def history(self, inc: Incident) -> History:
        if self.metrics is None or inc.service is None:
            why = "no metric source configured" if self.metrics is None else "the incident names no service"
            return History(source=f"none ({why})", step_s=0)
        end = inc.resolved_at or self.clock()
        start = inc.onset_at - timedelta(minutes=30)
        restored = inc.restored_at or end
        try:
            return self.metrics.history(inc.service, start, max(end, restored + timedelta(minutes=5)),
                                        impact=(inc.onset_at, restored))  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - the report is written without plots rather than not at all
            log.warning("metric history for %s unavailable: %s", inc.service, exc)
            return History(source=f"none (metric source failed: {str(exc)[:200]})", step_s=0)

    # -- rollback of the suspect ------------------------------------------------------------------
    def rollback_target(self, incident_id: str, ref: str | None = None) -> tuple[Incident, str, str]:
        """``(incident, suspect ref, service)`` a rollback from the incident would act on (for the
        entrypoint's permission check, before anything is recorded)."""
        inc = self.get(incident_id)
        ranking = self.suspects(inc)
        pick = None
        if ref is None:
            pick = ranking.top
            if pick is None:
                raise IncidentError(
                    f"incident {inc.id}: no suspect reaches the threshold (no change caused this, as far "
                    "as the audit log tells); name one with --suspect"
                )
        else:
            pick = next((s for s in ranking.suspects if s.candidate.ref == ref), None)
            if pick is None:
                raise IncidentError(f"incident {inc.id} has no suspect {ref[:80]!r}")
        c = pick.candidate
        if c.deployment_id is None or c.service is None or c.kind == "rollback":
            raise IncidentError(
                f"suspect {c.ref} is a {c.kind}: only a deployment can be rolled back from an incident"
                + (" (a failover is undone with `shipwarden db failover`)" if c.kind == "failover" else "")
            )
        return inc, c.ref, c.service

    def rollback_suspect(self, incident_id: str, *, actor: str, ref: str | None = None) -> RollbackStarted:
        """Roll back the suspect deployment through the rollout service's own rollback.

        Refused (nothing recorded) unless the suspect is what production runs now: the service's
        active deployment or its stable version — rolling back anything older would not undo it."""
        if self.rollbacks is None:
            raise IncidentError("no policy loaded: deployments cannot be rolled back here")
        inc, suspect, service = self.rollback_target(incident_id, ref)
        dep_id = suspect.split(":", 1)[1]
        _, to_version, phase = self.rollbacks.deployment(dep_id)
        active, stable = self.rollbacks.current(service)
        if active != dep_id and not (phase == "succeeded" and stable == to_version):
            now_runs = f"deployment {active} is in progress" if active else f"stable is {stable or 'none'}"
            raise IncidentError(
                f"suspect {dep_id} ({to_version}, {phase}) is not what {service} runs now ({now_runs}): "
                f"rolling back would not undo it; use `shipwarden rollback {service}` if that is meant"
            )
        detail = {"suspect": suspect, "deployment": dep_id, "service_rolled_back": service}
        self.store.record(inc.id, actor=actor, action="incident.rollback", outcome="requested", detail=detail)
        try:
            started = self.rollbacks.rollback(service, actor=actor)
        except Exception as exc:
            self.store.record(inc.id, actor=actor, action="incident.rollback", outcome="failed",
                              detail={**detail, "error": str(exc)[:500]})  # fmt: skip
            raise
        done = {**detail, "rollback": started}
        self.store.record(inc.id, actor=actor, action="incident.rollback", detail=done)
        return RollbackStarted(inc.id, suspect, service, dep_id, started)

    def head(self) -> tuple[int, str]:
        h = self.audit.head()
        return h.seq, h.hash

    def alerts(self, incident_id: str) -> list[dict[str, Any]]:
        return self.store.alerts(check_id(incident_id))


def related_from(mapping: Mapping[str, Collection[str]]) -> Callable[[str | None], Collection[str]]:
    """A ``related`` function from ``service → services it depends on`` (both directions count)."""

    def related(service: str | None) -> Collection[str]:
        if service is None:
            return ()
        out = set(mapping.get(service, ()))
        out |= {s for s, deps in mapping.items() if service in deps}
        out.discard(service)
        return out

    return related
