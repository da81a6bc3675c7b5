"""Audit entries for refused requests, bounded so that a flood cannot grow the audit log without end.

Every refusal at the HTTP edge is audited: a bad webhook signature, an oversized body (413) or
header block (431), an invalid or replayed payload.  Most of those requests are unauthenticated,
so writing one hash-chained entry per request would let anyone on the network grow the audit log
(and its database) at line rate.  ``RefusalLog`` keeps the record complete but bounded:

* Time is cut into fixed windows (``window_s``, 60 s by default).  In each window the first
  ``per_source`` refusals from one source (client address; the actor for authenticated callers)
  are written individually, each with its full detail, up to ``total`` individual entries over
  all sources together.
* Everything past those budgets is **counted, not written**: per source and per action.  When
  the window is over (at the next refusal, or at ``flush()`` — the API calls it on shutdown), one
  ``refusals.suppressed`` entry records how many refusals were not written individually, how many
  sources sent them, and the ``top`` sources and actions by count.  At most ``max_sources``
  sources are tracked per window; the rest are counted under ``"other"``.

So a window adds at most ``total + 1`` entries whatever arrives, memory holds at most
``max_sources`` counters, and no refusal goes uncounted.  Thread-safe (sync routes run in a pool).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = ["RefusalLog"]

AuditAppend = Callable[..., None]
"""``append(actor=, action=, outcome=, detail=, service=)``: writes one audit entry (``Store.audit``)."""


class RefusalLog:
    def __init__(
        self,
        append: AuditAppend,
        clock: Callable[[], float] = time.monotonic,
        *,
        window_s: float = 60.0,
        per_source: int = 20,
        total: int = 200,
        max_sources: int = 10_000,
        top: int = 20,
    ) -> None:
        self._append = append
        self._clock = clock
        self.window_s, self.per_source, self.total = window_s, per_source, total
        self.max_sources, self.top = max_sources, top
        self._lock = threading.Lock()
        self._start = clock()
        self._written: Counter[str] = Counter()
        self._suppressed: Counter[str] = Counter()
        self._actions: Counter[str] = Counter()
        self._n_written = 0

    def refuse(
        self,
        *,
        source: str,
        actor: str,
        action: str,
        detail: dict[str, Any],
        service: str | None = None,
    ) -> bool:
        """Audit one refusal: written now (True) or counted into the window's summary (False)."""
        with self._lock:
            summary = self._roll()
            write = self._written[source] < self.per_source and self._n_written < self.total
            if write:
                self._written[source] += 1
                self._n_written += 1
            else:
                known = source in self._suppressed or len(self._suppressed) < self.max_sources
                key = source if known else "other"
                self._suppressed[key] += 1
                self._actions[action] += 1
        if summary is not None:
            self._append(**summary)
        if write:
            who = actor[:128] or "anonymous"
            self._append(actor=who, action=action, outcome="denied", service=service, detail=detail)
        return write

    def flush(self) -> None:
        """Write the current window's summary now (if anything was suppressed) and start a new window."""
        with self._lock:
            summary = self._roll(force=True)
        if summary is not None:
            self._append(**summary)

    def _roll(self, force: bool = False) -> dict[str, Any] | None:
        now = self._clock()
        if not force and now - self._start < self.window_s:
            return None
        summary = None
        if self._suppressed:
            summary = {
                "actor": "shipwarden",
                "action": "refusals.suppressed",
                "outcome": "denied",
                "detail": {
                    "window_s": round(now - self._start, 3),
                    "suppressed": sum(self._suppressed.values()),
                    "sources": len(self._suppressed),
                    "top_sources": dict(self._suppressed.most_common(self.top)),
                    "actions": dict(self._actions.most_common(self.top)),
                    "written": self._n_written,
                },
            }
        self._start = now
        self._written.clear()
        self._suppressed.clear()
        self._actions.clear()
        self._n_written = 0
        return summary
