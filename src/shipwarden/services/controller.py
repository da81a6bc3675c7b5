"""The controller loop the API service runs: drive every recorded deployment to its end.

``POST /services/{service}/deployments`` (and rollback, and continuous delivery) only
*record* a deployment; something must drive it.  :class:`Controller` is that something inside
``shipwarden serve``: a background thread that, every ``interval_s``, takes the active
deployments oldest first and runs each through :meth:`RolloutService.run` — the same
level-triggered reconciler the CLI uses, so a deployment left half-way by a crash is resumed
here too.

A deployment whose lease another live driver holds (a CLI ``deploy``, ``reconcile --watch``,
or continuous delivery's own thread) is left to it; when that driver dies its lease expires and
the controller takes over.  Deployments are driven one at a time: a release of one service
waits for the one before it.  :meth:`stop` interrupts the deployment being driven at its next
tick and releases its lease, so another process can resume it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from shipwarden.adapters.store.repository import Deployment, Store
from shipwarden.services.rollout import RolloutService

log = logging.getLogger(__name__)


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

    def _driven_elsewhere(self, dep: Deployment) -> bool:
        return (
            dep.lease_owner is not None
            and dep.lease_owner != self.rollout.lease_owner()
            and dep.lease_expires_at > self.clock()
        )

    def tick(self) -> list[str]:
        """Drive each active deployment nobody else drives, oldest first; the ids driven."""
        driven = []
        for dep in sorted(self.store.all_active(), key=lambda d: d.created_at):
            if self._stop.is_set():
                break
            if self._driven_elsewhere(dep):
                continue
            try:
                self.rollout.run(dep.id, until=lambda _d: self._stop.is_set())
            except Exception:  # one deployment's trouble must not stop the others being driven
                log.exception("controller: driving %s failed; retrying next tick", dep.id)
            driven.append(dep.id)
        return driven

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
        if self._thread is not None:
            self._thread.join(timeout)
