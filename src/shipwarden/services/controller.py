"""The controller loop the API service runs: drive every recorded deployment to its end.

``POST /services/{service}/deployments`` (and rollback, and continuous delivery) only
*record* a deployment; something must drive it.  :class:`Controller` is that something inside
``shipwarden serve``: every ``interval_s`` it takes the active deployments nobody drives (their
lease, oldest first) and ticks each through :meth:`RolloutService.tick` — the same
level-triggered reconciler the CLI uses, so a deployment left half-way by a crash is resumed
here too.

**A scheduler, not a thread per deployment.**  A tick is short (an effect that is made true,
an observation, a decision, a write), and between ticks a deployment only waits.  A thread per
deployment made a hundred releases a hundred threads polling the store and fighting for the
GIL and the connection pool (and, past the pool's size, waiting for a connection).  Here a
deployment between ticks is a timer in a heap; ``workers`` threads take whichever deployment is
due, so the number of threads and database connections is bounded whatever the number of
deployments, and a slow tick (nginx reloading, an old instance draining) holds one worker while
the others go on.  A deployment is never ticked by two workers at once.  After a tick that moved
the deployment its next tick is due at once (the next phase's effect goes now); otherwise after
the rollout's ``tick_s``.

**Leases.**  The controller holds the lease of every deployment it drives and renews them all
in one write every third of the lease's life — not one write per deployment per tick.  A
deployment whose lease another live driver holds (a CLI ``deploy``, ``reconcile --watch``, or
continuous delivery's own thread — leases name the thread) is left to it; when that driver dies
its lease expires and the controller takes over.  :meth:`stop` lets the ticks in flight finish
and releases the leases, so another process can resume at once.

A tick ends with an exception only when something beneath the reconciler fails (the store, the
database): a phase's failing effect is decided inside the tick and never gets here.  Such a
deployment is let go (its lease released) and taken again after an exponential backoff
(``interval_s`` doubling, at most ``MAX_RETRY_S``); its traceback is logged once, then one line
per retry — not a traceback a second forever.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

from shipwarden.ports.store import Deployment, DeploymentStore
from shipwarden.services.rollout import RolloutService
from shipwarden.services.serving import ServingWatch

log = logging.getLogger(__name__)

MAX_RETRY_S = 60.0
WORKERS = 8
"""Threads that run ticks.  A tick mostly waits (HTTP to nginx and the instances, the store), so
a few threads keep a hundred deployments moving; each holds at most one database connection."""


class Controller:
    def __init__(
        self,
        rollout: RolloutService,
        store: DeploymentStore,
        *,
        interval_s: float = 1.0,
        workers: int = WORKERS,
        clock: Callable[[], float] = time.time,
        serving: ServingWatch | None = None,
    ) -> None:
        self.rollout, self.store, self.interval_s, self.clock = rollout, store, interval_s, clock
        self.serving = serving
        """Keeps the tables of services between rollouts on live instances (``services/serving``)."""
        self.workers = workers
        self.owner = f"{rollout.owner}:controller:{secrets.token_hex(2)}"
        """The lease name of this controller's deployments (whichever worker ticks them)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        # Everything below is read and changed by the loop, the workers and callers of ``driving``
        # and ``stop``; all under this one condition, which workers also wait on for due work.
        self._cond = threading.Condition()
        self._driven: set[str] = set()  # deployments whose lease this controller holds
        self._busy: set[str] = set()  # a worker is ticking it now
        self._ready: deque[str] = deque()  # due now, in order
        self._timers: list[tuple[float, int, str]] = []  # (due, monotonic clock; seq; deployment)
        self._seq = itertools.count()
        self._seen: dict[str, tuple[str, int]] = {}  # phase and step after the last tick
        self._retry: dict[str, tuple[int, float]] = {}  # deployment → (failed ticks, not before)
        self._renewed = 0.0

    def _driven_elsewhere(self, dep: Deployment) -> bool:
        other = dep.lease_owner is not None and dep.lease_owner != self.owner
        return other and dep.lease_expires_at > self.clock()

    # -- taking deployments ----------------------------------------------------------------
    def tick(self) -> list[str]:
        """Take each active deployment nobody drives yet (its lease; its first tick due now);
        the ids taken.  The workers tick them once :meth:`start` has started them."""
        taken = []
        for dep in sorted(self.store.all_active(), key=lambda d: d.created_at):
            with self._cond:
                if self._stop.is_set():
                    break
                if dep.id in self._driven or self._driven_elsewhere(dep):
                    continue
                if self.clock() < self._retry.get(dep.id, (0, 0.0))[1]:
                    continue  # its last tick failed lately: back off
            if not self.store.acquire_lease(dep.id, self.owner, self.rollout.lease_ttl_s):
                continue  # another driver took it meanwhile
            with self._cond:
                stopped = self._stop.is_set()
                if not stopped:
                    self._driven.add(dep.id)
                    self._ready.append(dep.id)
                    self._cond.notify()
            if stopped:  # stopped meanwhile: give it back
                self._release(dep.id)
                break
            taken.append(dep.id)
        return taken

    def _renew(self) -> None:
        """Renew every lease held, in one write, once a third of their life is spent."""
        ttl = self.rollout.lease_ttl_s
        if time.monotonic() - self._renewed < ttl / 3:
            return
        with self._cond:
            ids = sorted(self._driven)
        held = self.store.renew_leases(ids, self.owner, ttl)
        self._renewed = time.monotonic()
        lost = set(ids) - held
        if lost:
            with self._cond:
                self._driven -= lost  # taken over (our lease had expired) or ended: no more ticks
            log.warning("controller: lost the lease of %s", ", ".join(sorted(lost)))

    # -- the workers -----------------------------------------------------------------------
    def _due(self) -> str | None:
        """(Under the condition.)  A deployment due now that no worker is ticking, marked busy."""
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            self._ready.append(heapq.heappop(self._timers)[2])
        while self._ready:
            dep_id = self._ready.popleft()
            if dep_id in self._driven and dep_id not in self._busy:
                self._busy.add(dep_id)
                return dep_id
        return None

    def _next(self) -> str | None:
        """Wait for a deployment that is due and not being ticked; None once stopped."""
        with self._cond:
            while not self._stop.is_set():
                dep_id = self._due()
                if dep_id is not None:
                    return dep_id
                self._cond.wait(self._timers[0][0] - time.monotonic() if self._timers else None)
            return None

    def _work(self) -> None:
        while (dep_id := self._next()) is not None:
            self._tick(dep_id)

    def run_due(self) -> int:
        """Tick, in the calling thread, every deployment due now, as a worker would; how many."""
        done = 0
        while True:
            with self._cond:
                dep_id = self._due()
            if dep_id is None:
                return done
            self._tick(dep_id)
            done += 1

    def _tick(self, dep_id: str) -> None:
        try:
            dep = self.rollout.tick(dep_id)
        except Exception as exc:
            self._failed(dep_id, exc)
        else:
            self._ticked(dep)

    def _ticked(self, dep: Deployment) -> None:
        before = self._seen.get(dep.id)
        now = (dep.phase.value, dep.step_index)
        with self._cond:
            self._busy.discard(dep.id)
            self._retry.pop(dep.id, None)
            if dep.phase.terminal:
                self._forget(dep.id)
        if dep.phase.terminal:
            self._release(dep.id)  # the store cleared it with the last transition; a crash may not have
            return
        with self._cond:
            self._seen[dep.id] = now
            if dep.id not in self._driven or self._stop.is_set():
                return  # lease lost, or stopping
            if before is not None and before != now:
                self._ready.append(dep.id)  # it moved: the next phase's effect goes at once
            else:
                due = time.monotonic() + self.rollout.tick_s
                heapq.heappush(self._timers, (due, next(self._seq), dep.id))
            self._cond.notify()

    def _failed(self, dep_id: str, exc: Exception) -> None:
        """Let the deployment go (another process may take it) and take it again after a backoff."""
        with self._cond:
            self._busy.discard(dep_id)
            failures = self._retry.get(dep_id, (0, 0.0))[0] + 1
            delay = min(MAX_RETRY_S, self.interval_s * 2 ** (failures - 1))
            self._retry[dep_id] = (failures, self.clock() + delay)
            self._forget(dep_id)
        self._release(dep_id)
        if failures == 1:
            log.exception("controller: driving %s failed; retrying in %.0fs", dep_id, delay)
        else:
            log.warning(
                "controller: driving %s failed again (%d times); retrying in %.0fs: %s: %s",
                dep_id, failures, delay, type(exc).__name__, exc,
            )  # fmt: skip

    def _forget(self, dep_id: str) -> None:
        """(Under the condition.)  Stop driving ``dep_id``."""
        self._driven.discard(dep_id)
        self._seen.pop(dep_id, None)

    def _release(self, dep_id: str) -> None:
        try:
            self.store.release_lease(dep_id, self.owner)
        except Exception:  # it expires anyway
            log.warning("controller: could not release the lease of %s", dep_id, exc_info=True)

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._renew()
                self.tick()
            except Exception:
                log.exception("controller tick failed")
            if self.serving is not None:
                try:
                    self.serving.tick()
                except Exception:
                    log.exception("serving watch failed")
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._workers = [
            threading.Thread(target=self._work, name=f"shipwarden-tick-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for w in self._workers:
            w.start()
        self._thread = threading.Thread(target=self._loop, name="shipwarden-controller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Let the ticks in flight finish (up to ``timeout``), then release every lease held."""
        with self._cond:  # after this no deployment is taken and no tick starts
            self._stop.set()
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in [self._thread, *self._workers]:
            if t is not None:
                t.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            idle = sorted(self._driven - self._busy)  # a tick still running keeps its lease until it expires
            for dep_id in idle:
                self._forget(dep_id)
            self._ready.clear()
            self._timers.clear()
        for dep_id in idle:
            self._release(dep_id)

    @property
    def driving(self) -> list[str]:
        """Ids of the deployments this controller drives now."""
        with self._cond:
            return sorted(self._driven)
