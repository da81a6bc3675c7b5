"""Ports of on-call and escalation (E8): what the escalation engine needs, and what alerting calls.

* :class:`EscalationSink` — alerting's side of the seam: "alert group opened/resolved" (its
  routing tree picked the escalation policy, or the service's default applies).
* :class:`Notifier` — how a page reaches one contact, with a dedupe key.  The engine writes
  every page to its own durable table first (:class:`EscalationStore`), so a notifier is only
  the last hop: SMTP, Apprise, or alerting's delivery outbox once it is wired.
* :class:`EscalationStore` — escalations, their pages and spent link nonces; every change one
  transaction with its audit entry.
* :class:`RecentChanges` — the service's last deployments and changes, for deployment-aware pages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from shipwarden.domain.oncall.escalation import Escalation
from shipwarden.domain.oncall.page import RecentChange

__all__ = [
    "AlertGroup",
    "Contact",
    "Delivery",
    "EscalationNotFound",
    "EscalationSink",
    "EscalationStore",
    "FeedToken",
    "LinkSpent",
    "Notifier",
    "PageDraft",
    "PendingPage",
    "RecentChanges",
    "RotaStore",
    "StoredOverride",
]


@dataclass(frozen=True)
class AlertGroup:
    """An alert group as alerting reports it: opened (firing) or resolved."""

    key: str
    """Alertmanager's ``groupKey`` (or alerting's own): one escalation per open group."""
    status: Literal["firing", "resolved"]
    title: str
    service: str | None = None
    summary: str = ""
    severity: str = "critical"
    escalation: str | None = None
    """The escalation policy the route chose; None: the service's (``oncall.services``) or default."""
    labels: Mapping[str, str] = field(default_factory=dict)


class EscalationSink(Protocol):
    def group_changed(self, group: AlertGroup) -> None: ...


@dataclass(frozen=True)
class Contact:
    """One address to page: an e-mail address, or the name of a secret holding an Apprise URL."""

    kind: Literal["email", "apprise"]
    address: str
    person: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.address}"


@dataclass(frozen=True)
class Delivery:
    ok: bool
    detail: str = ""


class Notifier(Protocol):
    def send(self, target: Contact, subject: str, body: str, dedupe_key: str) -> Delivery:
        """Deliver one page; failures are returned, never raised."""
        ...


@dataclass(frozen=True)
class PageDraft:
    contact: Contact
    subject: str
    body: str
    dedupe_key: str


@dataclass(frozen=True)
class PendingPage:
    id: int
    escalation_id: str
    step: int
    contact: Contact
    subject: str
    body: str
    dedupe_key: str
    attempts: int


class EscalationNotFound(LookupError):
    pass


class LinkSpent(RuntimeError):
    """The link's nonce was used already: a link acts once."""


Change = Callable[[Escalation], tuple[Escalation, list[PageDraft], dict[str, Any]]]


class EscalationStore(Protocol):
    def create(self, e: Escalation, *, actor: str, detail: Mapping[str, Any]) -> tuple[Escalation, bool]:
        """Store a new escalation; if one is open for ``e.key`` already, that one and False."""
        ...

    def get(self, escalation_id: str) -> Escalation: ...

    def open_for(self, key: str) -> Escalation | None: ...

    def find(
        self, *, open_only: bool = False, service: str | None = None, limit: int = 50
    ) -> list[Escalation]: ...

    def due(self, now: float, limit: int = 100) -> list[Escalation]:
        """Triggered escalations whose next step is due at ``now``, earliest first."""
        ...

    def next_due(self) -> float | None: ...

    def apply(
        self, escalation_id: str, change: Change, *, actor: str, action: str, nonce: str | None = None
    ) -> Escalation:
        """Read the escalation for update, apply ``change`` (raising stores nothing), store the
        result, its pages (once per dedupe key) and the audit entry with ``change``'s detail — one
        transaction.  ``nonce``: spend a link's nonce in it (:class:`LinkSpent` if spent)."""
        ...

    def apply_many(
        self, changes: Sequence[tuple[str, Change]], *, actor: str, action: str
    ) -> list[Escalation]:
        """:meth:`apply` of several escalations in one transaction; one whose change raises
        ``EscalationError`` (or that is gone) is skipped.  The escalations stored."""
        ...

    def pending(self, now: float, limit: int = 50) -> list[PendingPage]: ...

    def delivered(self, page_id: int, delivery: Delivery, *, retry_at: float | None) -> None:
        """Record an attempt: sent, or failed and retried at ``retry_at`` (None: given up)."""
        ...

    def pages(self, escalation_id: str) -> list[dict[str, Any]]: ...


class RecentChanges(Protocol):
    def recent(self, service: str | None, limit: int = 5) -> list[RecentChange]: ...


@dataclass(frozen=True)
class StoredOverride:
    """An override made from the CLI or the API (beside the policy's own); times are epoch s."""

    id: str
    schedule: str
    person: str
    start: float
    end: float
    reason: str
    created_at: float
    created_by: str
    removed_at: float | None = None
    removed_by: str | None = None


@dataclass(frozen=True)
class FeedToken:
    """A person's calendar feed token (its secret is never stored, only its SHA-256)."""

    id: str
    person: str
    secret_sha256: str
    created_at: float
    created_by: str
    revoked_at: float | None = None
    revoked_by: str | None = None


class RotaStore(Protocol):
    """Overrides and feed tokens; every change with its audit entry, one transaction."""

    def add_override(self, o: StoredOverride) -> None: ...

    def remove_override(self, override_id: str, *, actor: str, now: float) -> StoredOverride | None:
        """Mark it removed (None: no such override, or removed already)."""
        ...

    def overrides(self, *, schedule: str | None = None, removed: bool = False) -> list[StoredOverride]: ...

    def add_feed_token(self, t: FeedToken) -> None: ...

    def revoke_feed_token(self, token_id: str, *, actor: str, now: float) -> FeedToken | None: ...

    def feed_token(self, token_id: str) -> FeedToken | None: ...

    def feed_tokens(self, *, person: str | None = None) -> list[FeedToken]: ...
