"""Alerting → on-call: ``ports.alerting.EscalationSink`` over the escalation engine.

Alerting's routing tree sends a group to a receiver that names an escalation policy; its
durable outbox then calls :meth:`AlertingEscalations.open` (the group fires), ``update`` (its
firing set changed) and ``resolve`` (nothing fires any more), at least once each.  One
escalation per (receiver, group key) while it is open — a repeated ``open`` is a no-op — and the
policy is frozen into it then.
"""

from __future__ import annotations

import logging

from shipwarden.domain.oncall import EscalationError
from shipwarden.ports.alerting import GroupNotice
from shipwarden.services.oncall.engine import EscalationEngine
from shipwarden.services.oncall.rota import OnCallError

__all__ = ["AlertingEscalations"]

log = logging.getLogger(__name__)


def _title(notice: GroupNotice) -> str:
    firing = notice.firing or list(notice.alerts)
    names = sorted({a.name for a in firing if a.name}) or ["alert group"]
    more = f" (+{len(names) - 1})" if len(names) > 1 else ""
    return f"{names[0]}{more}"[:200]


def _body(notice: GroupNotice) -> str:
    lines = [f"{len(notice.firing)} alert(s) firing in group {notice.key} (receiver {notice.receiver})"]
    for a in notice.firing[:10]:
        summary = a.annotations.get("summary") or a.annotations.get("description") or ""
        labels = ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()) if k != "alertname")
        lines.append(f"- {a.name} [{a.severity or '-'}] {summary} ({labels})"[:400])
    if notice.external_url:
        lines.append(f"alerts: {notice.external_url}")
    return "\n".join(lines)


class AlertingEscalations:
    def __init__(self, engine: EscalationEngine) -> None:
        self.engine = engine

    @staticmethod
    def key(notice: GroupNotice) -> str:
        return f"{notice.receiver}/{notice.key}"[:255]

    def open(self, notice: GroupNotice, policy: str) -> None:
        try:
            self.engine.open(
                self.key(notice),
                title=_title(notice),
                service=notice.service,
                body=_body(notice),
                policy=policy,
                actor="alerting",
            )
        except OnCallError:  # the policy check refuses such a policy; an old process may still run one
            log.exception("escalation policy %r of receiver %s", policy, notice.receiver)

    def update(self, notice: GroupNotice) -> None:
        """The firing set changed: the running escalation goes on as it was frozen."""

    def resolve(self, notice: GroupNotice) -> None:
        found = self.engine.store.open_for(self.key(notice))
        if found is None:
            return
        try:
            self.engine.resolve(found.id, actor="alerting", via="alert resolved")
        except EscalationError:
            pass  # resolved by someone meanwhile
