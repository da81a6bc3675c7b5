"""Apprise as a delivery channel: Slack, e-mail, Microsoft Teams, generic webhooks (``json://``).

One channel per Apprise URL (a secret: it carries its credentials); nothing here prints the
URL unmasked.  A failed notify is an outcome, retried by the outbox with backoff.  Apprise's
own retries are off: one attempt per outbox attempt, so a receiver that is down costs one
connection per backoff step, not a burst.
"""

from __future__ import annotations

import logging

import apprise

from shipwarden.ports.alerting import DeliveryOutcome, GroupNotice
from shipwarden.ports.alerting_notice import text

__all__ = ["AppriseChannel", "warm_up"]

log = logging.getLogger(__name__)

_KIND = {"critical": "failure", "warning": "warning"}


def warm_up() -> None:
    """Load Apprise's plugins now: the first ``Apprise.add`` of a process imports every plugin
    (about 2 s of CPU here), which would otherwise delay the first page after a start."""
    apprise.Apprise().add("json://127.0.0.1/")


class AppriseChannel:
    def __init__(self, name: str, url: str, *, masked: str = "", timeout: float = 10.0) -> None:
        self._name, self._url, self._masked, self._timeout = name, url, masked, timeout

    @property
    def name(self) -> str:
        return f"apprise:{self._name}"

    def deliver(self, notice: GroupNotice) -> DeliveryOutcome:
        ap = apprise.Apprise()
        if not ap.add(self._url):
            return DeliveryOutcome(False, f"{self._name}: not a valid Apprise URL", retry=False)
        title, body = text(notice)
        kind = "success" if notice.status == "resolved" else _KIND.get(notice.severity, "info")
        try:
            ok = bool(ap.notify(title=title, body=body, notify_type=kind))
        except Exception as exc:  # plugins may raise on transport errors
            return DeliveryOutcome(False, f"{self._masked or self._name}: {type(exc).__name__}")
        return DeliveryOutcome(ok, "delivered" if ok else f"{self._masked or self._name}: delivery failed")
