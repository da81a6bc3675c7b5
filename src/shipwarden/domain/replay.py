"""Replay protection for inbound webhooks, as a pure decision.

A valid signature proves who sent a body, not that it is new: a captured
delivery can be replayed, and providers themselves redeliver (CircleCI retries
on any non-2xx or time-out and says to dedupe on the payload ``id``; GitHub
redeliveries carry their ``X-GitHub-Delivery`` GUID).  So a verified event is
accepted only if

* its id was not seen before (the caller keeps the seen ids, e.g. in the store,
  at least for ``window``), and
* when the provider signs a timestamp (CircleCI's ``happened_at`` is inside the
  signed body), that timestamp is inside ``window`` around ``now`` — older
  deliveries could have been replayed after the seen-id record expired.

GitHub signs no timestamp, so ``delivered_at=None`` skips the window check and
dedupe alone protects; that is why seen ids must be kept at least as long as
the window.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal


@dataclass(frozen=True)
class ReplayDecision:
    accepted: bool
    reason: Literal["new", "duplicate", "too-old", "in-the-future"]
    detail: str = ""


@dataclass(frozen=True)
class ReplayGuard:
    window: timedelta = timedelta(hours=1)
    #: tolerated clock skew for timestamps ahead of ``now``
    max_skew: timedelta = timedelta(minutes=5)

    def decide(
        self, event_id: str, delivered_at: datetime | None, now: datetime, seen: Container[str]
    ) -> ReplayDecision:
        if not event_id:
            return ReplayDecision(False, "duplicate", "event has no id, so it cannot be deduplicated")
        if event_id in seen:
            return ReplayDecision(False, "duplicate", f"event {event_id} was already processed")
        if delivered_at is not None:
            if delivered_at < now - self.window:
                return ReplayDecision(
                    False, "too-old", f"event time {delivered_at.isoformat()} is older than {self.window}"
                )
            if delivered_at > now + self.max_skew:
                ahead = f"event time {delivered_at.isoformat()} is ahead of {now.isoformat()}"
                return ReplayDecision(False, "in-the-future", ahead)
        return ReplayDecision(True, "new")
