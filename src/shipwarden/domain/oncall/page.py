"""What a page says (E8).  Pure.

Deployment-aware: every page lists the service's last deployments and changes, because the
first question of whoever is woken is "what changed?" — the paging services know nothing of
deployments (PagerDuty shows related changes on Enterprise only); shipwarden has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from shipwarden.domain.oncall.escalation import Escalation

__all__ = ["Page", "RecentChange", "compose"]


@dataclass(frozen=True)
class RecentChange:
    at: float
    kind: str
    """``deployment`` or the audit action of a change (``change.merged``, ``secret.put`` …)."""
    ref: str
    summary: str


@dataclass(frozen=True)
class Page:
    subject: str
    body: str


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def compose(
    e: Escalation,
    step: int,
    *,
    person: str | None,
    changes: Sequence[RecentChange],
    ack_url: str | None,
    resolve_url: str | None,
) -> Page:
    snap = e.snapshot
    level = step % len(snap.levels) + 1
    rounds = f", round {step // len(snap.levels) + 1} of {snap.repeat + 1}" if snap.repeat else ""
    subject = f"[shipwarden] PAGE {e.title}" + (f" ({e.service})" if e.service else "")
    lines = [
        e.title,
        f"service: {e.service or '-'}",
        f"escalation: {e.id} (policy {snap.policy}, level {level} of {len(snap.levels)}{rounds})",
        f"opened: {_ts(e.opened_at)}",
    ]
    if person:
        lines.append(f"paging: {person}")
    if e.body:
        lines += ["", e.body]
    lines += ["", f"last deployments and changes of {e.service or 'the installation'}:"]
    if changes:
        lines += [f"  {_ts(c.at)}  {c.kind:<14} {c.ref}  {c.summary}" for c in changes]
    else:
        lines.append("  (none recorded)")
    lines.append("")
    if ack_url:
        lines.append(f"acknowledge: {ack_url}")
    if resolve_url:
        lines.append(f"resolve:     {resolve_url}")
    lines.append(f"or: shipwarden alerts ack {e.id}   /   shipwarden alerts resolve {e.id}")
    return Page(subject, "\n".join(lines))
