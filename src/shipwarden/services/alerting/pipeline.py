"""The alerting pipeline (E8): ingest → group → inhibit/silence → dedupe → outbox → deliver.

Alertmanager's notification pipeline (``notify/notify.go``: inhibit → silence → wait → dedup →
retry → record), made durable:

* :meth:`AlertPipeline.ingest` stores a batch of alerts and the groups they join (one
  transaction; the sender's 200 waits for the commit) and schedules each touched group's flush
  (``domain.alerting.nflog.next_flush``: ``group_wait`` for a new group, ``group_interval`` for a
  change, at once for an all-clear).
* :meth:`flush` takes the groups that are due, drops what is muted (a rollback's own symptoms,
  inhibitions, silences), asks the notification log whether anything changed
  (``needs_update``) and, if so, records the new log entry, the notice in the outbox and its
  ``alert.notice`` audit entry in one transaction.  The notice id is ``{dedup key}/{seq}``: a
  second process flushing the same group writes the same id and is refused by the outbox's
  unique key, so a change is queued once.
* :meth:`deliver` leases due outbox items, hands each to its target — an Apprise URL, a
  PagerDuty routing key, the on-call side's escalation engine, the incident sink — and settles
  it: delivered, or retried with exponential backoff (1 s … 60 s) for up to ``give_up_after``.
  A process killed mid-delivery loses nothing: the lease expires and another attempt is made
  (at least once; the same notice id lets a receiver that keys on it drop the repeat).

:class:`AlertEngine` runs sweep and flush in one background thread, woken by every ingest that
changed something, and delivery in another, woken by every notice queued (no polling between).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shipwarden.domain.alerting import (
    Alert,
    AlertingPolicy,
    Inhibitor,
    Rollback,
    Route,
    after_notice,
    group_key,
    group_labels,
    match_routes,
    muted,
    needs_update,
    next_flush,
)
from shipwarden.ports.alerting import (
    AlertingStore,
    AlertView,
    Channel,
    DeliveryOutcome,
    EscalationSink,
    GroupNotice,
    GroupState,
    OutboxItem,
    Placement,
    QueuedNotice,
)
from shipwarden.ports.alerting_notice import notice_from_json, notice_to_json
from shipwarden.ports.incidents import AlertSignal, IncidentSink

__all__ = ["AlertEngine", "AlertPipeline", "Hooks"]

log = logging.getLogger(__name__)


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, tz=UTC)


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = dict(maps[0])
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


@dataclass
class Hooks:
    """Observers (shipwarden's own ``/metrics``); every one optional."""

    ingested: Callable[[str, int, int], None] | None = None
    """``(source, alerts, changed)``"""
    notice: Callable[[GroupNotice], None] | None = None
    delivered: Callable[[str, bool, float], None] | None = None
    """``(target kind, ok, seconds)``"""


@dataclass
class AlertPipeline:
    store: AlertingStore
    policy: AlertingPolicy
    channel_for: Callable[[str], Channel]
    """``apprise:SECRET`` / ``pagerduty:SECRET`` → a delivery target (bootstrap builds adapters)."""
    escalation: EscalationSink | None = None
    incidents: IncidentSink | None = None
    rollbacks: Callable[[], Sequence[Rollback]] = lambda: ()
    context: Callable[[str], Sequence[str]] = lambda service: ()
    """Deployment awareness: the last deployments and changes of a service, one line each."""
    clock: Callable[[], float] = time.time
    external_url: str = ""
    give_up_after: float = 24 * 3600.0
    lease: float = 30.0
    hooks: Hooks = field(default_factory=Hooks)
    on_queued: Callable[[], None] = lambda: None
    """Called once a notice is durably in the outbox (the engine wakes its sender)."""

    def __post_init__(self) -> None:
        self._tree = self.policy.tree()
        self._routes: dict[str, Route] = {r.id: r for r in self._tree.walk()}
        self._rules = self.policy.inhibitions()
        self._receivers = {r.name: r for r in self.policy.receivers}
        self._placed: dict[str, list[Placement]] = {}

    # -- ingest ---------------------------------------------------------------------------------
    def placements(self, alert: Alert) -> list[Placement]:
        """The groups ``alert`` joins (a pure function of its labels, memoised by fingerprint:
        Prometheus and Alertmanager re-send the same alerts over and over)."""
        got = self._placed.get(alert.fingerprint)
        if got is None:
            got = self._place(alert)
            if len(self._placed) >= 16_384:
                self._placed.clear()
            self._placed[alert.fingerprint] = got
        return list(got)

    def _place(self, alert: Alert) -> list[Placement]:
        return [
            Placement(
                group_key(r, alert.labels),
                r.receiver,
                r.id,
                group_labels(r, alert.labels),
                r.group_wait,
                r.group_interval,
                r.repeat_interval,
            )
            for r in match_routes(self._tree, alert.labels)
        ]

    def _schedule(self, now: float) -> Callable[[Placement, float, float | None, float | None, bool], float]:
        def schedule(
            p: Placement, first: float, last: float | None, sched: float | None, clear: bool
        ) -> float:
            return next_flush(
                now=now,
                first_at=first,
                last_flush_at=last,
                scheduled=sched,
                all_resolved=clear,
                group_wait=p.group_wait,
                group_interval=p.group_interval,
            )

        return schedule

    def ingest(self, alerts: Sequence[Alert], *, source: str) -> int:
        """Store ``alerts`` durably; returns how many changed state."""
        now = self.clock()
        changed = self.store.ingest(
            alerts, self.placements, source=source, now=now, schedule=self._schedule(now)
        )
        if self.hooks.ingested:
            self.hooks.ingested(source, len(alerts), changed)
        return changed

    def sweep(self) -> int:
        now = self.clock()
        return self.store.sweep(now, self.placements, self._schedule(now))

    # -- flush ----------------------------------------------------------------------------------
    def flush(self, *, limit: int = 200) -> int:
        """Flush due groups; returns how many notices were queued."""
        now = self.clock()
        due = self.store.due_groups(now, limit)
        if not due:
            return 0
        sources = [a for a in self.store.firing() if not a.resolved(now)] if self._rules else []
        firing = Inhibitor(self._rules, sources)
        silences = self.store.silences(now=now)
        rollbacks = list(self.rollbacks())
        sent = 0
        for g in due:
            try:
                sent += self._flush_one(g, now, firing, silences, rollbacks)
            except Exception:  # one bad group must not stop the others
                log.exception("flushing alert group %s failed", g.key)
        return sent

    def _flush_one(
        self, g: GroupState, now: float, firing_all: Inhibitor | list[Alert], silences: Any, rollbacks: Any
    ) -> int:
        route = self._routes.get(g.route_id, self._tree)
        spec = self._receivers.get(g.receiver)
        firing: dict[str, Alert] = {}
        resolved: dict[str, Alert] = {}
        mutes = 0
        for a in g.alerts:
            if a.resolved(now):
                resolved[a.fingerprint] = a
            elif (
                muted(
                    a,
                    now=now,
                    firing=firing_all,
                    rules=self._rules,
                    silences=silences,
                    rollbacks=rollbacks,
                    rollback_grace=self.policy.rollback_grace,
                )
                is None
            ):
                firing[a.fingerprint] = a
            else:
                mutes += 1
        entry = g.entry
        send_resolved = spec.send_resolved if spec is not None else True
        told_resolved = set(entry.resolved) if entry is not None else set()
        if spec is None or not needs_update(
            entry,
            set(firing),
            set(resolved),
            now=now,
            repeat_interval=route.repeat_interval,
            send_resolved=send_resolved,
        ):
            drop = [fp for fp in resolved if fp in told_resolved or entry is None or not entry.firing]
            nxt = None
            if firing and entry is not None:
                nxt = entry.sent_at + route.repeat_interval
            if mutes:
                nxt = min(nxt or now + route.group_interval, now + route.group_interval)
            self.store.flushed(g.id, now=now, next_flush_at=nxt, drop=drop)
            return 0
        new = after_notice(entry, set(firing), set(resolved), now=now)
        alerts = sorted(firing.values(), key=lambda a: a.starts_at) + sorted(
            resolved.values(), key=lambda a: a.starts_at
        )
        labels = [a.labels for a in alerts]
        service = g.group_labels.get("service") or _common(labels).get("service")
        dedup_key = f"sw-{g.id}-{int(new.opened_at * 1000)}"
        notice = GroupNotice(
            key=g.key,
            receiver=g.receiver,
            seq=new.seq,
            status="firing" if firing else "resolved",
            group_labels=dict(g.group_labels),
            common_labels=_common(labels),
            common_annotations=_common([a.annotations for a in alerts]),
            alerts=tuple(
                AlertView(
                    a.fingerprint,
                    "firing" if fp in firing else "resolved",
                    dict(a.labels),
                    dict(a.annotations),
                    _dt(a.starts_at),
                    _dt(a.ends_at) if fp in resolved else None,
                    a.generator_url,
                )
                for fp, a in [(x.fingerprint, x) for x in alerts]
            ),
            dedup_key=dedup_key,
            opened_at=_dt(new.opened_at) or datetime.now(UTC),
            context=tuple(self.context(service)) if service else (),
            external_url=self.external_url,
        )
        payload = notice_to_json(notice)
        queued: list[QueuedNotice] = []
        tell_channels = notice.status == "firing" or send_resolved
        if tell_channels:
            queued += [
                QueuedNotice(notice.notice_id, f"apprise:{n}", g.receiver, payload) for n in spec.apprise
            ]
            queued += [
                QueuedNotice(notice.notice_id, f"pagerduty:{n}", g.receiver, payload) for n in spec.pagerduty
            ]
        if spec.escalation:
            op = "resolve" if not firing else ("open" if entry is None or not entry.firing else "update")
            queued.append(
                QueuedNotice(
                    notice.notice_id, f"escalation:{spec.escalation}", g.receiver, {**payload, "op": op}
                )
            )
        incident = []
        if self.incidents is not None:
            before_firing = set(entry.firing) if entry is not None else set()
            for a in alerts:
                if a.severity != "critical":
                    continue
                fp = a.fingerprint
                status = "firing" if fp in firing else "resolved"
                if (status == "firing" and fp not in before_firing) or (
                    status == "resolved" and fp not in told_resolved
                ):
                    incident.append(
                        {
                            "notice_id": f"incident/{fp}/{status}/{int(a.starts_at * 1000)}",
                            "fingerprint": fp,
                            "status": status,
                            "labels": dict(a.labels),
                            "annotations": dict(a.annotations),
                            "starts_at": a.starts_at,
                            "ends_at": a.ends_at if status == "resolved" else None,
                        }
                    )
        audit = {
            "actor": "alerting",
            "action": "alert.notice",
            "service": service,
            "detail": {
                "group": g.key,
                "receiver": g.receiver,
                "seq": new.seq,
                "status": notice.status,
                "notice": notice.notice_id,
                "dedup_key": dedup_key,
                "firing": len(firing),
                "resolved": len(resolved),
                "alerts": [
                    {
                        "fingerprint": a.fingerprint,
                        "alertname": a.name,
                        "severity": a.severity,
                        "status": "firing" if a.fingerprint in firing else "resolved",
                    }
                    for a in alerts[:50]
                ],
                "targets": [q.target for q in queued],
            },
        }
        nxt = now + route.repeat_interval if firing else None
        if mutes and firing:
            nxt = min(nxt or now, now + route.group_interval)
        ok = self.store.flushed(
            g.id,
            now=now,
            next_flush_at=nxt,
            entry=new,
            drop=list(resolved),
            outbox=queued,
            audit=audit,
            incident_payloads=incident,
        )
        if ok and (queued or incident):
            self.on_queued()
        if ok and self.hooks.notice:
            self.hooks.notice(notice)
        return 1 if ok else 0

    # -- deliver --------------------------------------------------------------------------------
    def backoff(self, attempts: int) -> float:
        return float(min(60.0, 2.0 ** max(0, attempts - 1)))

    def deliver(self, *, pool: ThreadPoolExecutor | None = None, limit: int = 50) -> int:
        """Deliver due outbox items; returns how many were delivered."""
        items = self.store.claim(self.clock(), lease=self.lease, limit=limit)
        if not items:
            return 0
        if pool is None:
            return sum(self._deliver_one(i) for i in items)
        return sum(pool.map(self._deliver_one, items))

    def _deliver_one(self, item: OutboxItem) -> int:
        kind, _, name = item.target.partition(":")
        started = time.monotonic()
        try:
            outcome = self._hand_over(kind, name, item)
        except Exception as exc:  # a target's bug is a failed attempt, retried
            log.warning("delivery of %s to %s raised %s", item.notice_id, item.target, type(exc).__name__)
            outcome = DeliveryOutcome(False, f"{type(exc).__name__}: {exc}"[:500])
        now = self.clock()
        if self.hooks.delivered:
            self.hooks.delivered(kind, outcome.ok, time.monotonic() - started)
        if outcome.ok:
            audit = None
            if kind in ("apprise", "pagerduty"):
                audit = {
                    "actor": "alerting",
                    "action": "alert.delivered",
                    "service": item.payload.get("group_labels", {}).get("service"),
                    "detail": {"notice": item.notice_id, "target": item.target, "attempts": item.attempts},
                }
            self.store.settle(item.id, now=now, ok=True, detail=outcome.detail, retry_at=None, audit=audit)
            return 1
        give_up = not outcome.retry or now - item.created_at > self.give_up_after
        audit = None
        if give_up:
            audit = {
                "actor": "alerting",
                "action": "alert.undeliverable",
                "outcome": "failed",
                "detail": {
                    "notice": item.notice_id,
                    "target": item.target,
                    "attempts": item.attempts,
                    "error": outcome.detail[:500],
                },
            }
        retry_at = None if give_up else now + self.backoff(item.attempts)
        self.store.settle(item.id, now=now, ok=False, detail=outcome.detail, retry_at=retry_at, audit=audit)
        return 0

    def _hand_over(self, kind: str, name: str, item: OutboxItem) -> DeliveryOutcome:
        if kind in ("apprise", "pagerduty"):
            return self.channel_for(item.target).deliver(notice_from_json(item.payload))
        if kind == "escalation":
            if self.escalation is None:
                return DeliveryOutcome(False, "no escalation engine is configured", retry=True)
            notice = notice_from_json(item.payload)
            op = item.payload.get("op", "update")
            if op == "open":
                self.escalation.open(notice, name)
            elif op == "resolve":
                self.escalation.resolve(notice)
            else:
                self.escalation.update(notice)
            return DeliveryOutcome(True, op)
        if kind == "incident":
            if self.incidents is None:
                return DeliveryOutcome(True, "no incident sink")
            p = item.payload
            labels = dict(p["labels"])
            sev = labels.get("severity", "critical")
            self.incidents.alert_changed(
                AlertSignal(
                    fingerprint=p["fingerprint"],
                    name=labels.get("alertname", ""),
                    severity=sev if sev in ("critical", "warning", "info") else "critical",
                    status=p["status"],
                    starts_at=_dt(p["starts_at"]) or datetime.now(UTC),
                    ends_at=_dt(p.get("ends_at")),
                    service=labels.get("service"),
                    labels=labels,
                    annotations=dict(p.get("annotations") or {}),
                    audit_seq=p.get("audit_seq"),
                )
            )
            return DeliveryOutcome(True, "incident told")
        return DeliveryOutcome(False, f"unknown target kind {kind!r}", retry=False)

    def enqueue(self, notice: GroupNotice, receiver: str) -> bool:
        """``ports.alerting.ChannelDelivery``: queue a notice for a receiver's channels."""
        spec = self._receivers.get(receiver)
        if spec is None:
            raise KeyError(f"unknown receiver {receiver!r}")
        payload = notice_to_json(notice)
        items = [QueuedNotice(notice.notice_id, f"apprise:{n}", receiver, payload) for n in spec.apprise]
        items += [QueuedNotice(notice.notice_id, f"pagerduty:{n}", receiver, payload) for n in spec.pagerduty]
        new = self.store.enqueue(items, now=self.clock()) > 0
        if new:
            self.on_queued()
        return new


class AlertEngine:
    """Two background threads: the *flusher* (sweep → flush) and the *sender* (deliver).

    Nothing waits on a poll: :meth:`wake` (after an ingest that changed something) starts a
    flush at once, and every notice the pipeline queues (a flush's commit, an on-call
    ``enqueue``) sets the sender's event, so delivery starts the moment the notice is durable —
    while the flusher goes on with the next due group, and a slow or unreachable receiver never
    holds up the next flush.  Timers only cover what nobody announces: a group's
    ``group_wait``/``group_interval``, a retry's backoff, an alert's ``endsAt`` (each thread
    sleeps until the store's next such time, at most ``idle``)."""

    def __init__(self, pipeline: AlertPipeline, *, workers: int = 4, idle: float = 1.0) -> None:
        self.pipeline = pipeline
        self._wake = threading.Event()
        self._send = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="alert-deliver")
        self._threads: list[threading.Thread] = []
        self.idle = idle
        self.last_cycle = 0.0
        """Monotonic time of the last completed flush cycle (a stalled engine shows here)."""
        pipeline.on_queued = self._send.set

    def wake(self) -> None:
        self._wake.set()

    def cycle(self) -> int:
        """One sweep → flush → deliver, synchronously (tests, the CLI)."""
        work = self._flush_cycle()
        work += self.pipeline.deliver(pool=self._pool)
        return work

    def _flush_cycle(self) -> int:
        p = self.pipeline
        p.sweep()
        work = p.flush()
        self.last_cycle = time.monotonic()
        return work

    def _sleep(self, event: threading.Event, nxt: Callable[[], float | None]) -> None:
        wait = self.idle
        try:
            due = nxt()
        except Exception:
            due = None
        if due is not None:
            wait = max(0.005, min(wait, due - self.pipeline.clock()))
        event.wait(wait)

    def _loop(self, event: threading.Event, step: Callable[[], int], nxt: Callable[[], float | None]) -> None:
        while not self._stop.is_set():
            event.clear()  # before the step: a wake-up during it is not lost
            try:
                busy = step()
            except Exception:
                log.exception("alert engine step failed")
                busy = 0
            if not busy:
                self._sleep(event, nxt)

    def start(self) -> None:
        if self._threads:
            return
        store = self.pipeline.store
        self._threads = [
            threading.Thread(
                target=self._loop,
                args=(self._wake, self._flush_cycle, store.next_flush),
                name="alert-engine",
                daemon=True,
            ),
            threading.Thread(
                target=self._loop,
                args=(self._send, lambda: self.pipeline.deliver(pool=self._pool), store.next_delivery),
                name="alert-sender",
                daemon=True,
            ),
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._send.set()
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        self._pool.shutdown(wait=False, cancel_futures=True)
