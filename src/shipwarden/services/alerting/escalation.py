"""Alerting's escalation seam over the on-call engine's.

Alerting calls ``ports.alerting.EscalationSink`` (``open`` / ``update`` / ``resolve`` of a group
notice); the on-call engine listens on ``ports.oncall.EscalationSink.group_changed``.  The
escalation is keyed by the notice's ``dedup_key`` — stable while the group fires, new when it
fires again after an all-clear — so each episode escalates once, and a repeated call (the
outbox delivers at least once) finds the escalation already open.  ``update`` (the set of firing
alerts changed) leaves a running escalation as it is.
"""

from __future__ import annotations

from shipwarden.ports.alerting import GroupNotice
from shipwarden.ports.alerting_notice import text
from shipwarden.ports.oncall import AlertGroup
from shipwarden.ports.oncall import EscalationSink as GroupChanged

__all__ = ["OnCallEscalation"]


def _group(notice: GroupNotice, status: str, policy: str | None) -> AlertGroup:
    title, body = text(notice)
    return AlertGroup(
        key=notice.dedup_key,
        status="firing" if status == "firing" else "resolved",
        title=title,
        service=notice.service,
        summary=body,
        severity=notice.severity or "critical",
        escalation=policy,
        labels=dict(notice.common_labels),
    )


class OnCallEscalation:
    def __init__(self, engine: GroupChanged) -> None:
        self.engine = engine

    def open(self, notice: GroupNotice, policy: str) -> None:
        self.engine.group_changed(_group(notice, "firing", policy))

    def update(self, notice: GroupNotice) -> None:
        return None

    def resolve(self, notice: GroupNotice) -> None:
        self.engine.group_changed(_group(notice, "resolved", None))
