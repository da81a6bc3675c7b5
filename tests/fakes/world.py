"""A whole deployment world in memory: fake clock, FakePlatform, FakeRouter, the real SQLite Store.

``World`` wires the real :class:`RolloutService` (the reconciler under test) to the fakes, so a
unit test drives a deployment tick by tick without sleeping or starting a process.  The store is
the real one on a SQLite file migrated by the real Alembic migrations (copied from a template
migrated once per test session: a migration costs ~0.3 s, a copy ~1 ms).

``service()`` builds a new RolloutService on the same store, platform and router: what a
restarted controller (a new process, no memory) would see.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from shipwarden.adapters.platforms.base import InstanceState
from shipwarden.adapters.routers.base import Listener, Routes
from shipwarden.adapters.store.engine import make_engine, migrate
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.policy import LoadedPolicy, load_policy_text
from shipwarden.domain.rollout import Phase
from shipwarden.ports.store import Deployment
from shipwarden.services.rollout import RolloutService
from tests.fakes.clock import FakeClock
from tests.fakes.platform import Behaviour, FakePlatform
from tests.fakes.router import FakeRouter
from tests.fakes.store import FakeStore

BLUE_GREEN = """\
      blueGreen:
        preview: {path: /, requests: 10}
        scaleDownDelay: 5s
        verifyRequests: 20
        progressDeadline: 60s
"""

CANARY = """\
      canary:
        steps:
          - setWeight: 20
          - pause: {duration: 10s}
          - setWeight: 50
          - pause: {duration: 10s}
        scaleDownDelay: 5s
        verifyRequests: 20
        progressDeadline: 60s
        minAvailable: 1
"""

POLICY = """\
apiVersion: shipwarden/v1
team: test
{zones}services:
  - name: web
    run:
      command: ["serve", "{{version}}"]
      instances: 2
      stopTimeout: 1s
    health:
      path: /healthz
      healthyThreshold: 2
      unhealthyThreshold: 2
      startTimeout: 20s
    routing:
      port: 18080
      previewPort: 18081
    strategy:
{strategy}
"""

ZONES = ("a", "b", "c")
ZONE_ROLLOUT = """\
      zones:
        order: [a, b, c]
        minHealthyPerZone: 1
"""
#: the strategies going zone by zone through three zones (instances: 2 per zone)
BLUE_GREEN_ZONES = BLUE_GREEN + ZONE_ROLLOUT
CANARY_ZONES = CANARY + ZONE_ROLLOUT

SERVICE = "web"
TICK_S = 1.0
LEASE_TTL_S = 5.0

_template: Path | None = None


def _migrated_copy(dest: Path) -> Engine:
    global _template
    if _template is None:
        folder = Path(tempfile.mkdtemp(prefix="shipwarden-store-template-"))
        engine = make_engine(f"sqlite:///{folder / 'template.db'}")
        migrate(engine)
        engine.dispose()
        _template = folder / "template.db"
    shutil.copyfile(_template, dest)
    return make_engine(f"sqlite:///{dest}")


@functools.lru_cache(maxsize=32)
def policy(strategy: str = BLUE_GREEN) -> LoadedPolicy:
    """The policy with ``strategy`` (parsed once: parsing costs more than a whole fake rollout)."""
    zones = f"zones: [{', '.join(ZONES)}]\n" if "\n      zones:" in strategy else ""
    return load_policy_text(POLICY.format(strategy=strategy, zones=zones), "policy.yaml")


@dataclass
class World:
    root: Path
    strategy: str = BLUE_GREEN
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    #: "sqlite": the real Store on a migrated SQLite file; "memory": FakeStore (generated sequences)
    store_kind: str = "sqlite"

    def __post_init__(self) -> None:
        self.clock = FakeClock()
        self.engine: Engine | None = None
        if self.store_kind == "sqlite":
            self.engine = _migrated_copy(self.root / "store.db")
            self.store: Store = Store(self.engine, clock=self.clock)
        else:
            self.store = FakeStore(self.clock)  # type: ignore[assignment]
        self.platform = FakePlatform(self.clock, self.behaviours)
        self.router = FakeRouter(self.platform.serve)
        self.loaded = policy(self.strategy)
        self.alerted: list[Deployment] = []
        self.unhealthy_routed: list[str] = []  # "traffic only on healthy instances", checked per apply
        self.router.on_apply.append(self._check_routed)
        # what ``run`` does before its first tick (a data plane that is up, listeners exposed)
        self.router.ensure_listeners([self.svc_listener()])
        self.router.start()
        self.svc = self.service()

    def svc_listener(self) -> Listener:
        spec = self.loaded.policy.service(SERVICE)
        return Listener(SERVICE, spec.routing.port, spec.routing.preview_port)

    def _check_routed(self, service: str, routes: Routes) -> None:
        for pool in routes.production:
            for address in pool.addresses if pool.weight > 0 else ():
                if not self.platform.answers_healthy(address):
                    self.unhealthy_routed.append(f"{pool.version}@{address} (weight {pool.weight})")

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()

    def service(self) -> RolloutService:
        """A new controller process: same store and world, no memory."""
        return RolloutService(
            self.store,
            self.platform,
            self.router,
            self.loaded,
            clock=self.clock,
            sleep=self.clock.advance,
            tick_s=TICK_S,
            lease_ttl_s=LEASE_TTL_S,
            alerts=self.alerted.append,
        )

    def restart(self) -> RolloutService:
        """The controller dies (its lease expires) and a new one takes over."""
        self.clock.advance(LEASE_TTL_S + 0.1)
        self.svc = self.service()
        return self.svc

    # -- driving -------------------------------------------------------------------------------
    def deploy(self, version: str) -> Deployment:
        return self.svc.start(SERVICE, version, actor="tester")

    def tick(self, dep_id: str, seconds: float = TICK_S) -> Deployment:
        """One iteration of ``RolloutService.run``: take the lease, reconcile once, let time pass."""
        dep = self.store.get(dep_id)
        if dep.phase.terminal:
            return dep
        if self.store.acquire_lease(dep.id, self.svc.lease_owner(), LEASE_TTL_S):
            dep = self.svc.reconcile_once(dep, self.svc.spec(dep.service))
        self.clock.advance(seconds)
        return dep

    def drive(self, dep_id: str, max_ticks: int = 2000, seconds: float = TICK_S) -> Deployment:
        """Tick until the deployment is terminal; fail if it is not within ``max_ticks``."""
        for _ in range(max_ticks):
            dep = self.tick(dep_id, seconds)
            if dep.phase.terminal:
                return dep
        raise AssertionError(f"{dep_id} not terminal after {max_ticks} ticks: {self.store.get(dep_id)}")

    def drive_to(self, dep_id: str, phase: Phase, max_ticks: int = 500) -> Deployment:
        """Tick until the deployment has just entered ``phase`` (its effect not performed yet)."""
        for _ in range(max_ticks):
            dep = self.store.get(dep_id)
            if dep.phase is phase:
                return dep
            if dep.phase.terminal:
                raise AssertionError(f"{dep_id} ended {dep.phase} before reaching {phase}: {dep.reason}")
            self.tick(dep_id)
        raise AssertionError(f"{dep_id} did not reach {phase} in {max_ticks} ticks")

    def release(self, version: str) -> Deployment:
        """Deploy ``version`` to the end (it must succeed): the stable version of later tests."""
        dep = self.drive(self.deploy(version).id)
        assert dep.phase is Phase.SUCCEEDED, dep.reason
        return dep

    # -- what is true --------------------------------------------------------------------------
    def plan_zones(self) -> tuple[str, ...]:
        return self.loaded.policy.zone_order(self.loaded.policy.service(SERVICE))

    def min_per_zone(self) -> int:
        zr = self.loaded.policy.service(SERVICE).strategy.zones
        return zr.min_healthy(self.loaded.policy.service(SERVICE).run.instances) if zr else 0

    def versions_running(self) -> set[str]:
        return {i.version for i in self.platform.all()}

    def production(self) -> dict[str, int]:
        table = self.router.tables.get(SERVICE)
        return table.weights() if table else {}

    def transitions(self, dep_id: str) -> list[tuple[str, str]]:
        """Every transition of the deployment, from its audit entries: [(from, to), …]."""
        path = [
            e.action.removeprefix("rollout.")
            for e in self.store.audit_entries(deployment_id=dep_id)
            if e.action.startswith("rollout.")
        ]
        return list(zip([Phase.PENDING.value, *path], path, strict=False))

    def assert_no_leak(self, dep: Deployment) -> None:
        """At a terminal state only the version that serves has processes left (an instance that
        died stays listed, DEAD, where nothing was left to stop it: that is no running process)."""
        left = {i.version for i in self.platform.all() if i.state is InstanceState.RUNNING}
        if dep.phase is Phase.SUCCEEDED:
            assert left <= {dep.to_version}, (left, dep.reason)
        elif dep.phase is Phase.ROLLED_BACK:
            assert dep.to_version not in left, (left, dep.reason)
        elif dep.phase is Phase.FAILED and dep.to_version in left:
            # the new version stays only where it is all there is (nothing to roll back to), or
            # where the platform refused to stop it and the reason says the rollback failed
            assert "cannot roll back" in dep.reason or "rollback could not complete" in dep.reason, (
                left,
                dep.reason,
            )
