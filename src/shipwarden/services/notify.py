"""Stakeholder notifications through Apprise (E4 preparation, E8 routing later).

Apprise URLs carry their credentials in the URL itself (``slack://TokenA/…``,
``mailto://user:pass@…``, ``json://user:pass@host/…``), so the URLs are
secrets: the policy names them, the caller resolves the names, and nothing
here ever logs or returns a URL unmasked — results carry Apprise's own
privacy rendering (``url(privacy=True)``) or, if a URL cannot be parsed, only
its scheme.  Each URL is notified on its own so the result says which target
failed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import apprise

log = logging.getLogger(__name__)

Kind = Literal["info", "success", "warning", "failure"]


def mask_url(url: str) -> str:
    """A printable form of an Apprise URL with its secrets hidden."""
    try:
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    except Exception:  # pragma: no cover - apprise raises only with suppress_exceptions=False
        plugin = None
    if plugin is not None:
        try:
            return str(plugin.url(privacy=True)).split("?", 1)[0]  # type: ignore[no-untyped-call]
        except Exception:  # pragma: no cover - defensive: a plugin that cannot render itself
            pass
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return f"{scheme.group(1)}://***" if scheme else "***"


@dataclass(frozen=True)
class TargetResult:
    name: str  # the secret's name, never its value
    target: str  # masked URL
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class NotifyResult:
    targets: tuple[TargetResult, ...]

    @property
    def ok(self) -> bool:
        return bool(self.targets) and all(t.ok for t in self.targets)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "targets": [
                {"name": t.name, "target": t.target, "ok": t.ok, "detail": t.detail} for t in self.targets
            ],
        }


class Notifier:
    """Send one message to named Apprise URLs; failures are reported, never raised."""

    def __init__(self, urls: Sequence[tuple[str, str | None]], *, timeout: float = 10.0) -> None:
        #: (secret name, resolved URL or None when the secret is not set)
        self._urls = list(urls)
        self._timeout = timeout

    def send(self, title: str, body: str, kind: Kind = "info") -> NotifyResult:
        results = []
        for name, url in self._urls:
            if not url:
                results.append(TargetResult(name, "", False, f"secret {name!r} is not set"))
                continue
            masked = mask_url(url)
            ap = apprise.Apprise()
            if not ap.add(url):
                results.append(TargetResult(name, masked, False, "not a valid Apprise URL"))
                log.warning("notification target %s (%s) is not a valid Apprise URL", name, masked)
                continue
            try:
                sent = bool(ap.notify(body=body, title=title, notify_type=kind, timeout=self._timeout))
            except Exception as exc:  # apprise plugins may raise on transport errors
                sent = False
                log.warning("notification to %s (%s) failed: %s", name, masked, type(exc).__name__)
            results.append(TargetResult(name, masked, sent, "delivered" if sent else "delivery failed"))
            log.info("notification to %s (%s): %s", name, masked, "delivered" if sent else "failed")
        return NotifyResult(tuple(results))
