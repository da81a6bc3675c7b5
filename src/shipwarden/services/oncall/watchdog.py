"""The pager watches itself (E8): a stalled escalation engine pages through a second path.

The engine loop stamps ``beat`` every time it goes round (at least every ``poll`` seconds).
The watchdog runs in its own thread and checks the stamp every second; older than ``stall``
(10 s by default) means the engine is stuck — a hung database, a lock, a bug — and every page
it should send is late.  The watchdog then pages its own targets through a **second notifier**
that shares nothing with the engine's path (no store, no page table: direct delivery), once per
stall, and says so again when the engine recovers.  Grafana OnCall's escalation auditor with
its heartbeat URL is the same idea.  A whole process that stops (SIGSTOP, OOM) stops its
watchdog too: ``shipwarden oncall watchdog`` is the same check from another process, reading the
heartbeat file every engine touches each second (``bootstrap.make_oncall``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from shipwarden.ports.oncall import Contact, Delivery, Notifier

__all__ = ["Watchdog"]

log = logging.getLogger(__name__)


class Watchdog:
    def __init__(
        self,
        beat: Callable[[], float],
        notifier: Notifier,
        contacts: Sequence[Contact] | Callable[[], Sequence[Contact]],
        *,
        stall: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        record: Callable[[str, dict[str, object]], None] | None = None,
        name: str = "escalation engine",
    ) -> None:
        self.beat, self.notifier, self.stall = beat, notifier, stall
        self.contacts = contacts if callable(contacts) else (lambda fixed=list(contacts): fixed)
        """Who to page, looked up when it pages (a schedule's person then, not at start-up)."""
        self.clock, self.record, self.name = clock, record, name
        self.stalled_since: float | None = None
        self.pages: list[tuple[str, Delivery]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._n = 0

    def check(self) -> bool | None:
        """One look: True when it paged a stall now, False when it announced a recovery."""
        age = self.clock() - self.beat()
        if age > self.stall and self.stalled_since is None:
            self.stalled_since = self.clock() - age
            self._n += 1
            self._page(
                f"[shipwarden] PAGER STALLED: the {self.name} has not run for {age:.0f}s",
                f"The {self.name} last went round {age:.1f}s ago (limit {self.stall:.0f}s): "
                "escalation steps are not firing.  Check the shipwarden service.",
                f"stall-{self._n}",
            )
            return True
        if age <= self.stall and self.stalled_since is not None:
            took = self.clock() - self.stalled_since
            self.stalled_since = None
            self._page(
                f"[shipwarden] pager recovered after {took:.0f}s",
                f"The {self.name} runs again (stalled for {took:.1f}s).",
                f"recovered-{self._n}",
            )
            return False
        return None

    def _page(self, subject: str, body: str, key: str) -> None:
        results = []
        try:
            contacts = list(self.contacts())
        except Exception:  # noqa: BLE001 - the rota may be unreadable: log, page nobody
            log.exception("watchdog contacts")
            contacts = []
        for c in contacts:
            try:
                d = self.notifier.send(c, subject, body, f"watchdog/{key}/{c.label}")
            except Exception as exc:  # noqa: BLE001
                d = Delivery(False, f"{type(exc).__name__}: {exc}"[:200])
            self.pages.append((subject, d))
            results.append({"to": c.label, "ok": d.ok, "detail": d.detail[:200]})
        log.warning("%s", subject)
        if self.record is not None:
            try:
                self.record(subject, {"key": key, "results": results})
            except Exception:  # noqa: BLE001 - the store may be what is stuck
                log.exception("watchdog could not record %s", key)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.check()
            except Exception:  # noqa: BLE001
                log.exception("watchdog check failed")

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="oncall-watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(3.0)
            self._thread = None
