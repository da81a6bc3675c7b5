"""One controller, four releases at once: its workers share one rollout service, store,
platform and nginx router, and the deployments must not disturb each other — no failed request,
every route ends on the new version, every deployment's steps complete and in order, the audit
chain whole.

The controller's own list of drivers is read from other threads (``driving``: ``reconcile
--watch``; ``stop``) while its loop thread ticks; the last test hammers that without processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shipwarden.adapters.net import free_port, wait_for_port
from shipwarden.bootstrap import Services, build_service, load_policy
from shipwarden.domain.rollout import Phase
from shipwarden.loadgen import Load
from shipwarden.services.controller import Controller
from tests.fixtures.deploy_env import DeployEnv, make_env, teardown_env

pytestmark = pytest.mark.integration

SERVICES = {"web": 2, "api": 1, "jobs": 2, "auth": 1}  # name: instances

SERVICE = """\
  - name: {name}
    run:
      command: ["{{python}}", "start.py"]
      workdir: "releases/{{version}}"
      instances: {instances}
      stopTimeout: 5s
    health: {{path: /healthz, interval: 100ms, timeout: 1s, healthyThreshold: 2, startTimeout: 15s}}
    routing: {{port: {port}, previewPort: {preview}}}
    strategy:
      blueGreen: {{preview: {{path: /, requests: 10}}, scaleDownDelay: 1s, verifyRequests: 20}}
"""

BLUE_GREEN_STEPS = [
    "pending",
    "starting",
    "preview",
    "promoting",
    "scale_down_wait",
    "scaling_down",
    "succeeded",
]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DeployEnv]:
    env = make_env(tmp_path)
    body = "".join(
        SERVICE.format(name=name, instances=n, port=free_port(), preview=free_port())
        for name, n in SERVICES.items()
    )
    head = env.policy_path.read_text().split("services:\n", 1)[0]
    env.policy_path.write_text(f"{head}services:\n{body}")
    try:
        yield env
    finally:
        teardown_env(env)  # stops every service's instances and nginx


@pytest.fixture
def services(env: DeployEnv) -> Iterator[Services]:
    svc = build_service(env.settings, load_policy(env.policy_path))
    try:
        yield svc
    finally:
        svc.store.engine.dispose()


def _record_all(svc: Services, version: str) -> dict[str, str]:
    """What four ``POST /services/{service}/deployments`` do: record only; {service: id}."""
    assert svc.rollout is not None
    return {name: svc.rollout.start(name, version, actor="tester").id for name in SERVICES}


def _wait_succeeded(
    svc: Services, ids: dict[str, str], ctl: Controller, timeout: float = 40.0
) -> set[str]:
    """Wait for every deployment to end, polling ``ctl.driving`` meanwhile as ``reconcile --watch``
    does; the most deployments seen driven at one time."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not all(svc.store.get(i).phase.terminal for i in ids.values()):
        assert time.monotonic() < deadline, {n: svc.store.get(i).phase.value for n, i in ids.items()}
        now = set(ctl.driving)
        seen = now if len(now) > len(seen) else seen
        time.sleep(0.05)
    outcome = {n: (svc.store.get(i).phase.value, svc.store.get(i).reason) for n, i in ids.items()}
    assert all(phase == Phase.SUCCEEDED.value for phase, _ in outcome.values()), outcome
    return seen


def test_four_releases_driven_at_once_by_one_controller(
    env: DeployEnv, services: Services, load: type[Load]
) -> None:
    rollout = services.rollout
    assert rollout is not None
    router = rollout.router
    ctl = Controller(rollout, services.store, interval_s=0.2)
    try:
        # four first deploys, one tick: a driver each, all at once; four listeners added concurrently
        first = _record_all(services, "v1")
        assert sorted(ctl.tick()) == sorted(first.values())
        ctl.start()  # its workers tick them; its loop takes what is recorded next
        _wait_succeeded(services, first, ctl)
        ports = {name: rollout.spec(name).routing.port for name in SERVICES}
        with ExitStack() as stack:
            traffic = {
                name: stack.enter_context(load(f"http://127.0.0.1:{port}/", concurrency=2, max_seconds=60))
                for name, port in ports.items()
            }
            time.sleep(0.3)  # traffic on v1 first
            ids = _record_all(services, "v2")  # the running controller, as in ``serve``, picks all four up
            driven = _wait_succeeded(services, ids, ctl)
    finally:
        ctl.stop()
    assert driven == set(ids.values()), driven  # all four were driven at the same time
    assert ctl.driving == []

    for name, t in traffic.items():
        r = t.result
        assert r.failures == 0, (name, r.errors, r.requests)
        assert r.requests > 20, (name, r.requests)
        assert set(r.versions) <= {"v1", "v2"} and "v2" in r.versions, (name, r.versions)
    for name in SERVICES:
        assert router.probe(name, "production", 20).versions == {"v2": 20}, name
        assert {i.version for i in rollout.platform.instances(name)} == {"v2"}, name
        assert services.store.stable_version(name) == ("v2", "v1")

    for name, dep_id in ids.items():
        steps = services.store.steps(dep_id)
        assert [s.phase for s in steps] == BLUE_GREEN_STEPS, (name, [s.phase for s in steps])
        assert [s.seq for s in steps] == list(range(1, len(steps) + 1)), name
        assert all(s.outcome == "ok" and s.finished_at is not None for s in steps), (name, steps)
        for a, b in zip(steps, steps[1:], strict=False):
            assert a.started_at <= a.finished_at <= b.started_at, (name, a, b)  # type: ignore[operator]
        assert "preview" in steps[2].detail.get("preview_check", {}).get("detail", ""), (name, steps[2])
        actions = [e.action for e in services.store.audit_entries(deployment_id=dep_id)]
        expected = ["deployment.deploy", *(f"rollout.{p}" for p in BLUE_GREEN_STEPS[1:])]
        assert actions == expected, (name, actions)

    report = services.audit.verify()
    assert report.ok, report
    assert report.entries_checked == services.store.count_audit()


def test_a_first_release_exposes_every_service_so_the_next_reloads_nothing(
    env: DeployEnv, services: Services, load: type[Load]
) -> None:
    """A reload drops requests that race an old worker closing its idle keep-alive connections,
    so the first deployment of one service must not be what reloads nginx under another's traffic."""
    rollout = services.rollout
    assert rollout is not None
    rollout.run(rollout.start("web", "v1", actor="tester").id)
    for name in SERVICES:  # every service of the policy is listening already
        assert wait_for_port("127.0.0.1", rollout.spec(name).routing.port, 5), name
    workers = rollout.router.worker_pids()
    url = f"http://127.0.0.1:{rollout.spec('web').routing.port}/"
    with load(url, concurrency=4, max_seconds=60) as traffic:
        for name in ("api", "jobs", "auth"):
            dep = rollout.run(rollout.start(name, "v1", actor="tester").id)
            assert dep.phase is Phase.SUCCEEDED, (name, dep.reason)
    assert rollout.router.worker_pids() == workers  # no reload: the same nginx workers throughout
    assert traffic.result.failures == 0 and traffic.result.requests > 20, traffic.result.errors


# -- the controller's own bookkeeping, read from other threads while it ticks -----------------------
class _BusyRollout:
    """Stands in for ``RolloutService``: each tick takes a little while and never ends the deployment."""

    owner = "this-process"
    lease_ttl_s = 5.0
    tick_s = 0.001

    def __init__(self) -> None:
        self.ticking: set[str] = set()
        self.twice: list[str] = []  # a deployment ticked by two workers at once
        self._lock = threading.Lock()

    def tick(self, dep_id: str) -> Any:
        with self._lock:
            if dep_id in self.ticking:
                self.twice.append(dep_id)
            self.ticking.add(dep_id)
        try:
            time.sleep(0.002)
            return SimpleNamespace(id=dep_id, phase=Phase.PREVIEW, step_index=0)
        finally:
            with self._lock:
                self.ticking.discard(dep_id)


class _ActiveStore:
    def __init__(self, n: int) -> None:
        self.deps = [
            SimpleNamespace(id=f"d-{i:03}", created_at=float(i), lease_owner=None, lease_expires_at=0.0)
            for i in range(n)
        ]
        self.leases: dict[str, str] = {}
        self._lock = threading.Lock()

    def all_active(self) -> list[Any]:
        return list(self.deps)

    def acquire_lease(self, dep_id: str, owner: str, ttl: float) -> bool:
        with self._lock:
            if self.leases.get(dep_id, owner) != owner:
                return False
            self.leases[dep_id] = owner
            return True

    def renew_leases(self, dep_ids: list[str], owner: str, ttl: float) -> set[str]:
        return {d for d in dep_ids if self.acquire_lease(d, owner, ttl)}

    def release_lease(self, dep_id: str, owner: str) -> None:
        with self._lock:
            if self.leases.get(dep_id) == owner:
                del self.leases[dep_id]


def _stop_mid_tick() -> tuple[list[BaseException], _BusyRollout, _ActiveStore]:
    """Start a controller over 40 deployments, poll ``driving`` as ``reconcile --watch`` does, and
    stop it while its first scan is still taking deployments; (errors, rollout, store)."""
    rollout, store = _BusyRollout(), _ActiveStore(40)
    ctl = Controller(rollout, store, interval_s=0.05, workers=4)  # type: ignore[arg-type]
    errors: list[BaseException] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                assert isinstance(ctl.driving, list)
            except BaseException as exc:  # what the watcher would die of
                errors.append(exc)
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    ctl.start()
    deadline = time.monotonic() + 5
    while len(ctl.driving) < 10 and time.monotonic() < deadline:
        time.sleep(0.001)
    try:
        ctl.stop(10)
    except BaseException as exc:
        errors.append(exc)
    done.set()
    watcher.join(5)
    return errors, rollout, store


def test_driving_and_stop_are_safe_while_a_tick_starts_drivers() -> None:
    """``driving`` (polled from another thread) and ``stop`` (which may come mid-scan) must not trip
    over a deployment being taken; no deployment is ticked by two workers at once; ``stop``
    returns only once no tick runs, and leaves no lease held."""
    for _ in range(10):
        errors, rollout, store = _stop_mid_tick()
        assert not errors, errors
        assert not rollout.ticking, f"ticks still running after stop(): {sorted(rollout.ticking)}"
        assert not rollout.twice, rollout.twice
        assert not store.leases, f"leases still held after stop(): {sorted(store.leases)}"


def test_a_hundred_deployments_are_ticked_by_a_few_threads_each_in_turn() -> None:
    """A hundred deployments driven at once: every one is ticked again and again, by the
    controller's few workers (not a thread each, with a connection each), never two ticks of one
    deployment at the same time."""
    rollout, store = _BusyRollout(), _ActiveStore(100)
    counts: dict[str, int] = {}
    most = [0]
    tick = rollout.tick

    def counting(dep_id: str) -> Any:
        counts[dep_id] = counts.get(dep_id, 0) + 1
        most[0] = max(most[0], len(rollout.ticking) + 1)
        return tick(dep_id)

    rollout.tick = counting  # type: ignore[method-assign]
    before = threading.active_count()
    ctl = Controller(rollout, store, interval_s=0.05, workers=4)  # type: ignore[arg-type]
    ctl.start()
    try:
        deadline = time.monotonic() + 30
        while (len(counts) < 100 or min(counts.values()) < 3) and time.monotonic() < deadline:
            time.sleep(0.01)
        threads = threading.active_count() - before
    finally:
        ctl.stop(10)
    assert len(counts) == 100 and min(counts.values()) >= 3, counts
    assert threads <= 5, threads  # four workers and the loop
    assert most[0] <= 4
    assert not rollout.twice, rollout.twice
    assert not store.leases
