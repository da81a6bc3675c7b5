"""Generated sequences against the reconciler (Hypothesis stateful testing).

Each example builds a world (blue-green or canary; with or without a stable version; a new version
that is good, slow, crashing, never healthy, or answering 500), starts a deployment and then runs
a random sequence of: ticks with time jumps, operator requests, platform and router failures (a
few times or until healed), instances dying, a data plane that ignores tables, controller restarts
and crashes between two store writes.  At the end it drives the deployment on, promoting or
resuming what waits for a person.  Invariants:

* traffic only ever on healthy instances — every production pool with weight, at the moment the
  data plane takes it, names only instances that run and pass their health check;
* a terminal state is reached — within a bounded number of ticks, whatever failed;
* no instance leaks — at the end only the version that serves runs (or the reason says the
  rollback could not stop the new one, because the platform kept refusing);
* capacity per zone ≥ min (zone rollouts, E2) — every zone whose instances no rule killed is
  served, on the data plane, by at least ``minHealthyPerZone`` running instances after every step:
  the rollout's own starts, switches and stops never take a zone below it.

The sequences run on the FakeStore (``tests/fakes/store.py``; ``test_fake_store.py`` proves it
answers as the real one does): on the real SQLite store a sequence costs ~90 ms of ORM, on the
fake ~10 ms.  A smaller run on the real store keeps that honest too.
``SHIPWARDEN_PROPERTY_EXAMPLES`` sets the number of sequences on the fake (default below: 1,000
in ``make test``, which keeps the suite inside CI's budget since the zone strategies made each
sequence about three times longer; set it higher for a full run), and a twentieth of it on the real store.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from shipwarden.domain.rollout import OperatorRequest, Phase
from shipwarden.services.rollout import DeployError
from tests.fakes.platform import CRASH, GOOD, SICK, Behaviour
from tests.fakes.world import BLUE_GREEN, BLUE_GREEN_ZONES, CANARY, CANARY_ZONES, SERVICE, ZONES, World

EXAMPLES = int(os.environ.get("SHIPWARDEN_PROPERTY_EXAMPLES", "1000"))
REAL_STORE_EXAMPLES = max(10, EXAMPLES // 20)
STEPS = 30
WRITES = ("transition", "record_detail", "request", "acquire_lease", "release_lease", "audit",
          "mark_traffic_restored")  # fmt: skip
PLATFORM_OPS = ("start", "instances", "stop")
ROUTER_OPS = ("apply", "current", "probe")
BEHAVIOURS = {"good": GOOD, "slow": Behaviour(healthy_after=5.0), "crash": CRASH, "sick": SICK,
              "answers 500": Behaviour(status=500)}  # fmt: skip
STRATEGIES = {"blueGreen": BLUE_GREEN, "canary": CANARY, "canary minAvailable 0": CANARY.replace(
    "minAvailable: 1", "minAvailable: 0"), "canary zones": CANARY_ZONES,
    "zones, confirm between": BLUE_GREEN_ZONES.replace("minHealthyPerZone: 1", "minHealthyPerZone: 2\n"
                                                       "        pauseBetween: confirm")}  # fmt: skip


class Crash(BaseException):
    """The controller process dies between two store writes."""


class Rollouts(RuleBasedStateMachine):
    store_kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="shipwarden-prop-"))
        self.crash_in: int | None = None  # writes left before the armed crash
        self.hit: set[str | None] = set()  # zones where a rule killed an instance

    @initialize(
        strategy=st.sampled_from(sorted(STRATEGIES)),
        stable=st.booleans(),
        behaviour=st.sampled_from(sorted(BEHAVIOURS)),
    )
    def setup(self, strategy: str, stable: bool, behaviour: str) -> None:
        self.w = World(self.tmp, strategy=STRATEGIES[strategy], store_kind=self.store_kind)
        self.stable = stable
        if stable:
            self._release_v1()
        self.w.platform.behaviours["v2"] = BEHAVIOURS[behaviour]
        self.dep_id = self.w.deploy("v2").id
        for name in WRITES:  # a crash can be armed between any two store writes
            real = getattr(self.w.store, name)

            def write(*a: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
                if self.crash_in is not None:
                    self.crash_in -= 1
                    if self.crash_in <= 0:
                        self.crash_in = None
                        raise Crash(_name)
                return _real(*a, **kw)

            setattr(self.w.store, name, write)

    def _release_v1(self) -> None:
        dep = self.w.deploy("v1")
        for _ in range(2000):
            dep = self.w.tick(dep.id)
            if dep.phase.terminal:
                break
            if dep.phase is Phase.ZONE_WAIT and self.w.store.get(dep.id).operator_request is None:
                self.w.store.request(dep.id, OperatorRequest.CONFIRM, "operator")
        assert dep.phase is Phase.SUCCEEDED, dep.reason

    def _tick(self, seconds: float) -> None:
        try:
            self.w.tick(self.dep_id, seconds)
        except Crash:
            self.w.restart()

    # -- rules ---------------------------------------------------------------------------------
    @rule(seconds=st.sampled_from([0.2, 1.0, 3.0, 10.0, 40.0]))
    def tick(self, seconds: float) -> None:
        self._tick(seconds)

    @rule(n=st.integers(2, 15))
    def ticks(self, n: int) -> None:
        for _ in range(n):
            self._tick(1.0)

    @rule(request=st.sampled_from(list(OperatorRequest)))
    def operator(self, request: OperatorRequest) -> None:
        try:
            self.w.svc.request("web", request, actor="operator")
        except DeployError:
            pass  # refused (nothing in progress, promote at a setWeight step, …): nothing changed

    @rule(op=st.sampled_from(PLATFORM_OPS + ROUTER_OPS), times=st.none() | st.integers(1, 4))
    def fail(self, op: str, times: int | None) -> None:
        faults = self.w.platform.faults if op in PLATFORM_OPS else self.w.router.faults
        faults.fail(op, times)

    @rule()
    def heal(self) -> None:
        self.w.platform.faults.heal()
        self.w.router.faults.heal()

    @rule(version=st.sampled_from(["v1", "v2"]), index=st.integers(0, 3))
    def kill(self, version: str, index: int) -> None:
        mine = [i for i in self.w.platform.all() if i.version == version]
        if mine:
            victim = mine[index % len(mine)]
            self.hit.add(victim.zone)
            self.w.platform.kill(victim.id)

    @rule(zone=st.sampled_from(ZONES))
    def zone_dies(self, zone: str) -> None:
        if self.w.platform.kill_zone(zone):
            self.hit.add(zone)

    @rule(ignore=st.booleans())
    def data_plane_ignores_tables(self, ignore: bool) -> None:
        self.w.router.ignore_applies = ignore

    @rule()
    def restart(self) -> None:
        self.w.restart()

    @rule(k=st.integers(1, 6))
    def crash_between_writes(self, k: int) -> None:
        self.crash_in = k
        self._tick(1.0)
        self.crash_in = None

    # -- invariants ----------------------------------------------------------------------------
    @invariant()
    def traffic_only_on_healthy_instances(self) -> None:
        if hasattr(self, "w"):
            assert self.w.unhealthy_routed == [], self.w.unhealthy_routed

    @invariant()
    def capacity_per_zone_at_least_the_minimum(self) -> None:
        if not hasattr(self, "w") or not self.stable or not self.w.plan_zones():
            return
        table = self.w.router.tables.get(SERVICE)
        running = {i.address for i in self.w.platform.all() if i.state.value == "running"}
        for zone in self.w.plan_zones():
            if zone in self.hit:
                continue
            serving = {a for p in (table.production if table else ()) if p.zone == zone and p.weight > 0
                       for a in p.addresses if a in running}  # fmt: skip
            assert len(serving) >= self.w.min_per_zone(), (zone, table, self.hit)

    def teardown(self) -> None:
        if not hasattr(self, "w"):
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            dep = self._finish()
            assert dep.phase.terminal, f"not terminal: {dep.phase} {dep.reason}"
            assert self.w.unhealthy_routed == [], self.w.unhealthy_routed
            self.w.assert_no_leak(dep)
            if dep.phase is Phase.ROLLED_BACK and not self.w.router.ignore_applies:
                assert set(self.w.production()) <= {"v1"}, self.w.production()
        finally:
            self.w.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _finish(self) -> Any:
        """Drive on (5 s a tick): a terminal state must come; a person resumes or promotes what
        waits for one by design (a pause, a manual step)."""
        last, still = None, 0
        for _ in range(400):
            self._tick(5.0)
            dep = self.w.store.get(self.dep_id)
            if dep.phase.terminal:
                return dep
            now = (dep.phase, dep.step_index, dep.paused)
            still = still + 1 if now == last else 0
            last = now
            if still >= 8:
                nudge = OperatorRequest.RESUME if dep.paused else OperatorRequest.PROMOTE_FULL
                self.w.store.request(dep.id, nudge, "operator")
                still = 0
        return self.w.store.get(self.dep_id)


Rollouts.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestRollouts = Rollouts.TestCase


class RolloutsOnTheRealStore(Rollouts):
    store_kind = "sqlite"


RolloutsOnTheRealStore.TestCase.settings = settings(
    Rollouts.TestCase.settings, max_examples=REAL_STORE_EXAMPLES
)
TestRolloutsOnTheRealStore = RolloutsOnTheRealStore.TestCase
