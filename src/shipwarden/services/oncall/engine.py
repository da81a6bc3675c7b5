"""The escalation engine (E8): due steps fire on time, pages go out once, people acknowledge.

**Durable timing.**  Every escalation's next step is a due time in the store
(``EscalationStore.due``/``next_due``).  The engine thread sleeps until the earliest one (or at
most ``poll`` seconds, to see escalations other processes opened), fires what is due, and
sleeps again.  Nothing lives only in memory: an engine started after a restart finds the same
due times and fires each step at its time — or at once, if the time passed while no engine
ran.  Firing a step is one transaction (``EscalationStore.apply``): the state moves on, the
pages it sends are written (unique per dedupe key) and its audit entry carries how late it
fired.  Two engines may run: the row is read for update and :func:`~shipwarden.domain.oncall.
escalation.fire` refuses a step that is not due any more, so each step fires once.

**Delivery apart from timing.**  A sender thread delivers the written pages through the
:class:`~shipwarden.ports.oncall.Notifier` (retrying with backoff), so a slow mail server never
delays the next step of another escalation.

**Acknowledge and resolve** from the CLI and the API (:meth:`acknowledge`, :meth:`resolve`) or
from the signed link in a page (:meth:`act_by_link`: HMAC, expiry, nonce spent in the same
transaction — a link acts once); each is audited with who and how (``via``).  An
acknowledgement also acknowledges the service's open incident (``on_acknowledged``), whose
commander was named from the same rota.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shipwarden.domain.oncall import escalation as esc
from shipwarden.domain.oncall.escalation import Escalation, EscalationError, Status, freeze
from shipwarden.domain.oncall.links import Claim, sign, verify
from shipwarden.domain.oncall.page import RecentChange, compose
from shipwarden.ports.oncall import (
    AlertGroup,
    Change,
    Delivery,
    EscalationStore,
    Notifier,
    PageDraft,
    PendingPage,
    RecentChanges,
)
from shipwarden.services.oncall.rota import OnCallError, Rota

__all__ = ["EscalationEngine", "LinkSigner"]

log = logging.getLogger(__name__)


class LinkSigner:
    """Signs the acknowledge/resolve links of pages (``base_url`` None: pages carry no links)."""

    def __init__(self, key: bytes, base_url: str | None, expiry: float = 86400.0) -> None:
        self.key, self.base_url, self.expiry = key, base_url.rstrip("/") if base_url else None, expiry

    def url(self, escalation_id: str, action: esc_action, person: str, now: float) -> str | None:
        if self.base_url is None:
            return None
        claim = Claim(escalation_id, action, person, int(now + self.expiry), secrets.token_hex(12))
        return f"{self.base_url}/oncall/links/{sign(self.key, claim)}"

    def check(self, token: str, now: float) -> Claim:
        return verify(self.key, token, now)


esc_action = Any  # "ack" | "resolve" (kept loose for the signer's callers)


def backoff(attempt: int) -> float | None:
    """Seconds until the next delivery attempt after ``attempt`` failures; None: give up (~1 h)."""
    return None if attempt >= 12 else min(600.0, 2.0**attempt)


@dataclass(frozen=True)
class StepFired:
    escalation: str
    step: int
    due: float
    fired_at: float


class EscalationEngine:
    def __init__(
        self,
        store: EscalationStore,
        rota: Rota,
        notifier: Notifier,
        *,
        changes: RecentChanges | None = None,
        links: LinkSigner | None = None,
        clock: Callable[[], float] = time.time,
        actor: str = "shipwarden:oncall",
        on_acknowledged: Callable[[Escalation, str], None] | None = None,
        poll: float = 0.5,
        senders: int = 2,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        self.store, self.rota, self.notifier, self.changes, self.links = store, rota, notifier, changes, links
        self.clock, self.actor, self.on_acknowledged, self.poll = clock, actor, on_acknowledged, poll
        self.senders, self.heartbeat = senders, heartbeat
        self._beat_written = 0.0
        self.beat = time.monotonic()
        """When the engine loop last went round (the watchdog reads it)."""
        self.fired: list[StepFired] = []
        """Steps this process fired (bounded; the bench reads their lateness)."""
        self._wake, self._send = threading.Event(), threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- opening ---------------------------------------------------------------------------------
    def open(
        self,
        key: str,
        *,
        title: str,
        actor: str,
        service: str | None = None,
        body: str = "",
        policy: str | None = None,
    ) -> Escalation:
        """Start escalating the alert group ``key`` (idempotent while it is open).  The policy is
        frozen into the escalation now: later edits of the policy do not change it."""
        p = self.rota.policy
        name = policy or p.escalation_for(service)
        if name is None:
            raise OnCallError(
                f"no escalation policy for {service or 'this alert group'}: "
                "map the service in oncall.services or set oncall.defaultEscalation"
            )
        spec = p.escalation.get(name)
        if spec is None:
            raise OnCallError(f"no escalation policy {name[:64]!r} in oncall.escalation")
        snap = freeze(
            name, [([(r.kind, r.name) for r in lv.notify], lv.timeout) for lv in spec.levels], spec.repeat
        )
        now = self.clock()
        e = Escalation(
            id=f"esc-{secrets.token_hex(6)}",
            key=key[:255],
            service=service,
            title=title.strip()[:200] or key[:200],
            body=body[:4000],
            snapshot=snap,
            status=Status.TRIGGERED,
            step=0,
            due=now,
            opened_at=now,
        )
        detail = {
            "policy": name,
            "snapshot": snap.digest,
            "title": e.title,
            "levels": len(snap.levels),
            "repeat": snap.repeat,
        }
        stored, new = self.store.create(e, actor=actor, detail=detail)
        if new:
            self._wake.set()
        return stored

    def group_changed(self, group: AlertGroup) -> None:
        """``ports.oncall.EscalationSink``: a group that fires escalates; one that resolves stops."""
        if group.status == "firing":
            try:
                self.open(group.key, title=group.title, service=group.service, body=group.summary,
                          policy=group.escalation, actor="alerting")  # fmt: skip
            except OnCallError:  # configuration: retrying cannot help (the policy check refuses it)
                log.exception("alert group %s cannot escalate", group.key[:200])
            return
        found = self.store.open_for(group.key[:255])
        if found is not None:
            try:
                self.resolve(found.id, actor="alerting", via="alert resolved")
            except EscalationError:
                pass  # resolved meanwhile

    # -- people ------------------------------------------------------------------------------------
    def acknowledge(
        self, escalation_id: str, *, actor: str, via: str = "cli", nonce: str | None = None
    ) -> Escalation:
        def change(e: Escalation) -> tuple[Escalation, list[PageDraft], dict[str, Any]]:
            after = esc.acknowledge(e, self.clock(), actor)
            return (
                after,
                [],
                {
                    "by": actor,
                    "via": via,
                    "step": e.step,
                    "after_s": round(after.acked_at - e.opened_at, 3) if after.acked_at else None,
                },
            )

        after = self.store.apply(
            escalation_id, change, actor=actor, action="escalation.acknowledged", nonce=nonce
        )
        if self.on_acknowledged is not None:
            try:
                self.on_acknowledged(after, actor)
            except Exception:  # noqa: BLE001 - the acknowledgement stands; the incident is told best-effort
                log.exception("incident acknowledgement for %s failed", after.id)
        return after

    def resolve(
        self, escalation_id: str, *, actor: str, via: str = "cli", nonce: str | None = None
    ) -> Escalation:
        def change(e: Escalation) -> tuple[Escalation, list[PageDraft], dict[str, Any]]:
            return esc.resolve(e, self.clock(), actor), [], {"by": actor, "via": via, "step": e.step}

        return self.store.apply(escalation_id, change, actor=actor, action="escalation.resolved", nonce=nonce)

    def check_link(self, token: str) -> Claim:
        if self.links is None:
            raise OnCallError("links are not configured in this process")
        return self.links.check(token, self.clock())

    def act_by_link(self, token: str) -> tuple[Claim, Escalation]:
        """Carry out a signed link (raises ``LinkError``, ``LinkSpent`` or ``EscalationError``)."""
        claim = self.check_link(token)
        actor = f"{claim.person} (link)"
        act = self.acknowledge if claim.action == "ack" else self.resolve
        return claim, act(claim.escalation, actor=actor, via="link", nonce=claim.nonce)

    # -- the engine --------------------------------------------------------------------------------
    def _recent(self, service: str | None) -> list[RecentChange]:
        if self.changes is None:
            return []
        try:
            return self.changes.recent(service, 5)
        except Exception:  # noqa: BLE001 - a page must go out even if the history cannot be read
            log.exception("recent changes of %s", service)
            return []

    def _step(self, changes: list[RecentChange]) -> Change:
        def change(e: Escalation) -> tuple[Escalation, list[PageDraft], dict[str, Any]]:
            now = self.clock()
            fired = esc.fire(e, now)
            at = datetime.fromtimestamp(now, UTC)
            pages: list[PageDraft] = []
            people: list[str] = []
            nobody: list[str] = []
            for t in fired.level.targets:
                if t.kind != "channel":
                    found = self.rota.people_of(t, at)
                    people += [p for p in found if p not in people]
                    if t.kind == "schedule" and not found:
                        nobody.append(t.name)
                for c in self.rota.resolve(t, at):
                    who = c.person or f"channel:{c.address}"
                    ack = self.links.url(e.id, "ack", who, now) if self.links else None
                    res = self.links.url(e.id, "resolve", who, now) if self.links else None
                    page = compose(
                        e, fired.step, person=c.person, changes=changes, ack_url=ack, resolve_url=res
                    )
                    pages.append(
                        PageDraft(c, page.subject, page.body, f"{e.id}/{fired.step}/{c.label}"[:255])
                    )
            detail = {
                "step": fired.step,
                "level": fired.step % len(e.snapshot.levels) + 1,
                "due": round(fired.due, 3),
                "late_ms": round(fired.late * 1000, 1),
                "people": people,
                "pages": len(pages),
                "targets": [f"{t.kind}:{t.name}" for t in fired.level.targets],
                "nobody_on_call": nobody,
                "snapshot": e.snapshot.digest,
                "last": fired.escalation.due is None,
            }
            return fired.escalation, pages, detail

        return change

    def tick(self) -> list[Escalation]:
        """Fire every step that is due now, all in one transaction (a backlog after a pause or a
        burst of time-outs costs one commit, not one per step); the escalations moved."""
        due = self.store.due(self.clock())
        if not due:
            return []
        recent: dict[str | None, list[RecentChange]] = {}
        for e in due:  # one read of a service's history per tick, outside the write
            if e.service not in recent:
                recent[e.service] = self._recent(e.service)
        moved = self.store.apply_many(
            [(e.id, self._step(recent[e.service])) for e in due], actor=self.actor, action="escalation.step"
        )
        fired_at = self.clock()
        by_id = {e.id: e for e in due}
        for after in moved:
            e = by_id[after.id]
            assert e.due is not None
            self.fired.append(StepFired(e.id, e.step, e.due, fired_at))
        del self.fired[:-1000]
        if moved:
            self._send.set()
        return moved

    def _deliver_one(self, p: PendingPage) -> bool:
        try:
            d = self.notifier.send(p.contact, p.subject, p.body, p.dedupe_key)
        except Exception as exc:  # noqa: BLE001 - a notifier must not kill the sender
            d = Delivery(False, f"{type(exc).__name__}: {exc}"[:300])
        retry = None if d.ok else backoff(p.attempts + 1)
        self.store.delivered(p.id, d, retry_at=None if retry is None else self.clock() + retry)
        return d.ok

    def deliver(self) -> int:
        """Send the pages that are waiting, a few at once (one slow receiver does not hold up the
        others); the number delivered."""
        pending = self.store.pending(self.clock())
        if len(pending) <= 1 or self.senders <= 1:
            return sum(self._deliver_one(p) for p in pending)
        with ThreadPoolExecutor(min(self.senders, len(pending)), thread_name_prefix="oncall-page") as pool:
            return sum(pool.map(self._deliver_one, pending))

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.beat = time.monotonic()
            if self.heartbeat is not None and self.beat - self._beat_written >= 1.0:
                try:  # for a watchdog in another process (``shipwarden oncall watchdog``)
                    self.heartbeat()
                    self._beat_written = self.beat
                except OSError:
                    log.exception("engine heartbeat")
            try:
                self.tick()
                nxt = self.store.next_due()
            except Exception:  # noqa: BLE001 - keep going; the watchdog pages if this persists
                log.exception("escalation engine tick failed")
                nxt = None
            wait = self.poll if nxt is None else min(self.poll, max(0.0, nxt - self.clock()))
            if self._wake.wait(wait):
                self._wake.clear()

    def _sender(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver()
            except Exception:  # noqa: BLE001
                log.exception("page delivery failed")
            if self._send.wait(1.0):
                self._send.clear()

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._loop, name="oncall-engine", daemon=True),
            threading.Thread(target=self._sender, name="oncall-sender", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._send.set()
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)
