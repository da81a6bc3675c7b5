"""The seams of alerting (E7, E8): escalation, delivery channels, and the alert feed.

Alerting receives alerts (Alertmanager's webhook, shipwarden's own rollout alerts, NRQL
conditions), groups them by the policy's routing tree, applies inhibitions and silences,
deduplicates them against a durable notification log and hands each group change to its
*receiver*.  A receiver of the policy's ``alerting.receivers`` is either

* a set of **channels** (Apprise URLs, PagerDuty routing keys) that alerting delivers to
  itself through its durable outbox (:class:`Channel`), or
* an **escalation policy** (``escalation: NAME``): alerting calls :class:`EscalationSink`,
  implemented by the on-call side (levels, time-outs, acknowledgements, schedules), which
  may in turn deliver through the same channels (:class:`ChannelDelivery`).

Every call here happens *after* alerting recorded the change durably and at least once per
change (a crash between the record and the call repeats the call on restart): implementations
must be idempotent per ``(group.key, group.receiver, group.seq)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from shipwarden.domain.alerting import Alert, LogEntry, Silence

__all__ = [
    "AlertingStore",
    "GroupState",
    "OutboxItem",
    "Placement",
    "QueuedNotice",
    "AlertView",
    "Channel",
    "ChannelDelivery",
    "DeliveryOutcome",
    "EscalationSink",
    "GroupNotice",
]


@dataclass(frozen=True)
class AlertView:
    """One alert as a notification shows it (Alertmanager's webhook ``alerts[]`` item)."""

    fingerprint: str
    status: Literal["firing", "resolved"]
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    generator_url: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")


@dataclass(frozen=True)
class GroupNotice:
    """One change of an alert group, as handed to a receiver.

    ``seq`` grows by one with each notice of the group for this receiver (the notification
    log's counter); ``dedup_key`` is stable for the group and receiver across notices (a
    PagerDuty incident key: trigger and resolve carry the same one), and ``notice_id`` =
    ``f"{dedup_key}/{seq}"`` identifies this very notice (an idempotency key).
    """

    key: str
    """The group key (the route's path and the values of its ``group_by`` labels)."""
    receiver: str
    """Name of the receiver in the policy."""
    seq: int
    status: Literal["firing", "resolved"]
    """``firing`` while any alert of the group fires."""
    group_labels: Mapping[str, str]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]
    alerts: Sequence[AlertView]
    """Firing alerts first, then those resolved since the last notice."""
    dedup_key: str
    opened_at: datetime
    """When the group first fired (a resolve carries the same instant)."""
    context: Sequence[str] = ()
    """Deployment awareness: the service's last deployments and changes, one line each."""
    external_url: str = ""

    @property
    def notice_id(self) -> str:
        return f"{self.dedup_key}/{self.seq}"

    @property
    def service(self) -> str | None:
        return self.group_labels.get("service") or self.common_labels.get("service")

    @property
    def severity(self) -> str:
        return self.common_labels.get("severity", "")

    @property
    def firing(self) -> list[AlertView]:
        return [a for a in self.alerts if a.status == "firing"]


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one attempt to deliver a notice to one target answered."""

    ok: bool
    detail: str = ""
    retry: bool = True
    """``False``: retrying cannot help (the target refused the message as invalid)."""


class Channel(Protocol):
    """One delivery target (an Apprise URL, a PagerDuty routing key).  ``deliver`` never raises:
    failures are outcomes, retried by alerting's outbox with backoff."""

    @property
    def name(self) -> str:
        """The printable name (masked; never a secret)."""
        ...

    def deliver(self, notice: GroupNotice) -> DeliveryOutcome: ...


class ChannelDelivery(Protocol):
    """Alerting's durable outbox, offered to the on-call side: a notice queued here reaches the
    channels of ``receiver`` at least once, and once per ``notice.notice_id``, even across a
    crash or a target that is down for a while."""

    def enqueue(self, notice: GroupNotice, receiver: str) -> bool:
        """Queue ``notice`` for the channels of the policy's receiver ``receiver``; ``False`` if
        that notice id was already queued for it (nothing done)."""
        ...


class EscalationSink(Protocol):
    """The on-call side's escalation engine, for receivers that name an escalation policy.

    ``open`` is called when a group starts firing (or fires again after it resolved) with the
    name of the escalation policy its receiver names; the engine freezes that policy's levels
    for the group (a later policy edit does not change a running escalation).  ``update`` is
    called when the set of firing alerts of an open group changes; ``resolve`` when none fires
    any more.  All three are idempotent per ``(notice.key, notice.receiver, notice.seq)``.
    """

    def open(self, notice: GroupNotice, policy: str) -> None: ...

    def update(self, notice: GroupNotice) -> None: ...

    def resolve(self, notice: GroupNotice) -> None: ...


# -- the pipeline's own store (implemented by ``adapters/store/alerting_repo.py``) ---------------


@dataclass(frozen=True)
class Placement:
    """Where an alert is grouped: one matching route, for its receiver."""

    group_key: str
    receiver: str
    route_id: str
    group_labels: Mapping[str, str]
    group_wait: float
    group_interval: float
    repeat_interval: float


@dataclass(frozen=True)
class GroupState:
    id: str
    key: str
    receiver: str
    route_id: str
    group_labels: Mapping[str, str]
    first_at: float
    last_flush_at: float | None
    next_flush_at: float | None
    entry: LogEntry | None
    """The notification log: what the last notice to this receiver said."""
    alerts: Sequence[Alert]


@dataclass(frozen=True)
class QueuedNotice:
    notice_id: str
    target: str
    """``apprise:SECRET``, ``pagerduty:SECRET``, ``escalation:POLICY``, ``incident:``."""
    receiver: str | None
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class OutboxItem:
    id: int
    notice_id: str
    target: str
    receiver: str | None
    payload: Mapping[str, Any]
    attempts: int
    created_at: float


Scheduler = Callable[[Placement, float, float | None, float | None, bool], float]


class AlertingStore(Protocol):
    def ingest(
        self,
        alerts: Sequence[Alert],
        placements: Callable[[Alert], Sequence[Placement]],
        *,
        source: str,
        now: float,
        schedule: Scheduler,
    ) -> int: ...

    def sweep(
        self, now: float, placements: Callable[[Alert], Sequence[Placement]], schedule: Scheduler
    ) -> int: ...

    def due_groups(self, now: float, limit: int = 200) -> list[GroupState]: ...

    def firing(self) -> list[Alert]:
        """The firing alerts for inhibition: labels, times and fingerprints (annotations empty)."""
        ...

    def alerts(self, *, state: str | None = None, limit: int = 500) -> list[tuple[Alert, str]]: ...

    def flushed(
        self,
        gid: str,
        *,
        now: float,
        next_flush_at: float | None,
        entry: LogEntry | None = None,
        drop: Sequence[str] = (),
        outbox: Sequence[QueuedNotice] = (),
        audit: Mapping[str, Any] | None = None,
        incident_payloads: Sequence[dict[str, Any]] = (),
    ) -> bool: ...

    def enqueue(self, items: Sequence[QueuedNotice], *, now: float) -> int: ...

    def claim(self, now: float, *, lease: float, limit: int = 50) -> list[OutboxItem]: ...

    def settle(
        self,
        item_id: int,
        *,
        now: float,
        ok: bool,
        detail: str,
        retry_at: float | None,
        audit: Mapping[str, Any] | None = None,
    ) -> None: ...

    def outbox_counts(self) -> dict[str, int]: ...

    def outbox(self, *, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...

    def next_due(self) -> float | None: ...

    def next_flush(self) -> float | None: ...

    def next_delivery(self) -> float | None: ...

    def add_silence(self, silence: Silence, *, actor: str, now: float) -> None: ...

    def silences(self, *, now: float | None = None, include_expired: bool = False) -> list[Silence]: ...

    def expire_silence(self, silence_id: str, *, actor: str, now: float) -> Silence | None: ...

    def reschedule_all(self, now: float) -> None: ...
