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

GitHub signs no timestamp and no delivery id: ``X-GitHub-Delivery`` is an
unsigned header, so a captured body re-sent under a fresh GUID passes the id
check.  What is signed is the body, so the digest of every accepted body is
kept too and a body already accepted is refused (``duplicate-body``) whatever
id it comes with.  A provider never sends the same bytes twice as two different
events (each body carries its own run/suite/event id and timestamps), so this
refuses only replays and redeliveries.  ``delivered_at=None`` skips the window
check; seen ids and digests must be kept at least as long as the window.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal


@dataclass(frozen=True)
class ReplayDecision:
    accepted: bool
    reason: Literal["new", "duplicate", "duplicate-body", "too-old", "in-the-future"]
    detail: str = ""


@dataclass(frozen=True)
class ReplayGuard:
    window: timedelta = timedelta(hours=1)
    #: tolerated clock skew for timestamps ahead of ``now``
    max_skew: timedelta = timedelta(minutes=5)

    def decide(
        self,
        event_id: str,
        delivered_at: datetime | None,
        now: datetime,
        seen: Container[str],
        *,
        body_digest: str | None = None,
        seen_digests: Container[str] = (),
    ) -> ReplayDecision:
        if not event_id:
            return ReplayDecision(False, "duplicate", "event has no id, so it cannot be deduplicated")
        if event_id in seen:
            return ReplayDecision(False, "duplicate", f"event {event_id} was already processed")
        if body_digest is not None and body_digest in seen_digests:
            return ReplayDecision(
                False, "duplicate-body", f"this body (sha256 {body_digest[:16]}…) was already accepted"
            )
        if delivered_at is not None:
            if delivered_at < now - self.window:
                return ReplayDecision(
                    False, "too-old", f"event time {delivered_at.isoformat()} is older than {self.window}"
                )
            if delivered_at > now + self.max_skew:
                ahead = f"event time {delivered_at.isoformat()} is ahead of {now.isoformat()}"
                return ReplayDecision(False, "in-the-future", ahead)
        return ReplayDecision(True, "new")
