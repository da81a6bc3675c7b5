"""The controller loop the API service runs: drive every recorded deployment to its end.

``POST /services/{service}/deployments`` (and rollback, and continuous delivery) only
*record* a deployment; something must drive it.  :class:`Controller` is that something inside
``shipwarden serve``: a background thread that, every ``interval_s``, takes the active
deployments oldest first and runs each through :meth:`RolloutService.run` — the same
level-triggered reconciler the CLI uses, so a deployment left half-way by a crash is resumed
here too.

Each deployment gets its own driver thread, so a long canary of one service does not hold up
another service's release (a service has at most one active deployment; the platform and the
router lock what they share).  A deployment whose lease another live driver holds (a CLI
``deploy``, ``reconcile --watch``, or continuous delivery's own thread — leases name the thread)
is left to it; when that driver dies its lease expires and the controller takes over.
:meth:`stop` interrupts every driver at its next tick and releases their leases, so another
process can resume them.

A driver ends with an exception only when something beneath the reconciler fails (the store, the
database): a phase's failing effect is decided inside the tick and never gets here.  A deployment
whose driver failed is retried with exponential backoff (``interval_s`` doubling, at most
``MAX_RETRY_S``), and its traceback is logged once, then one line per retry — not a traceback a
second forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from shipwarden.adapters.store.repository import Deployment, Store
from shipwarden.services.rollout import RolloutService

log = logging.getLogger(__name__)

MAX_RETRY_S = 60.0


class Controller:
    def __init__(
        self,
        rollout: RolloutService,
        store: Store,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rollout, self.store, self.interval_s, self.clock = rollout, store, interval_s, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drivers: dict[str, threading.Thread] = {}
        # ``driving`` and ``stop`` read ``_drivers`` from other threads while the loop ticks: a
        # tick registers a driver (after checking ``_stop``) and ``stop`` takes its list of drivers
        # to join under this lock, so no driver is started that ``stop`` does not wait for.
        self._lock = threading.Lock()
        self._retry: dict[str, tuple[int, float]] = {}  # deployment → (driver failures, not before)

    def _driven_elsewhere(self, dep: Deployment) -> bool:
        return (
            dep.lease_owner is not None
            and dep.lease_owner != self.rollout.lease_owner()
            and dep.lease_expires_at > self.clock()
        )

    def tick(self) -> list[str]:
        """Start a driver for each active deployment nobody drives yet; the ids started."""
        with self._lock:
            self._drivers = {k: t for k, t in self._drivers.items() if t.is_alive()}
        started = []
        for dep in sorted(self.store.all_active(), key=lambda d: d.created_at):
            with self._lock:
                if self._stop.is_set():
                    break
                if dep.id in self._drivers or self._driven_elsewhere(dep):
                    continue
                if self.clock() < self._retry.get(dep.id, (0, 0.0))[1]:
                    continue  # its driver failed lately: back off
                t = threading.Thread(target=self._drive, args=(dep.id,), name=f"drive-{dep.id}", daemon=True)
                self._drivers[dep.id] = t
                t.start()
            started.append(dep.id)
        return started

    def _drive(self, dep_id: str) -> None:
        try:
            self.rollout.run(dep_id, until=lambda _d: self._stop.is_set())
        except Exception as exc:  # a later tick starts a new driver for it, after a backoff
            with self._lock:
                failures = self._retry.get(dep_id, (0, 0.0))[0] + 1
                delay = min(MAX_RETRY_S, self.interval_s * 2 ** (failures - 1))
                self._retry[dep_id] = (failures, self.clock() + delay)
            if failures == 1:
                log.exception("controller: driving %s failed; retrying in %.0fs", dep_id, delay)
            else:
                log.warning(
                    "controller: driving %s failed again (%d times); retrying in %.0fs: %s: %s",
                    dep_id, failures, delay, type(exc).__name__, exc,
                )  # fmt: skip
        else:
            with self._lock:
                self._retry.pop(dep_id, None)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("controller tick failed")
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="shipwarden-controller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        with self._lock:  # after this no tick starts a driver
            drivers = list(self._drivers.values())
        for t in [self._thread, *drivers]:
            if t is not None:
                t.join(max(0.0, deadline - time.monotonic()))

    @property
    def driving(self) -> list[str]:
        """Ids of the deployments a driver of this controller is on now."""
        with self._lock:
            drivers = list(self._drivers.items())
        return [k for k, t in drivers if t.is_alive()]
