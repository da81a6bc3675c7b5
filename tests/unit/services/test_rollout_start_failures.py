"""Issue 9, class 1 at the platform and router ports: a version that cannot start, a router that is
down, a service gone from the policy — each ends the deployment with its cause, never leaves it
stuck (before the fix the first raised PlatformError out of every tick, forever).

The fakes raise what the real drivers raise (PlatformError, RouterError); the real LocalPlatform
cases (missing workdir, undefined placeholder, bad env name, a command that exits at once) are in
``tests/integration/test_start_failures.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shipwarden.adapters.platforms.base import PlatformError
from shipwarden.adapters.routers.base import RouterError
from shipwarden.domain.rollout import OperatorRequest, Phase
from tests.fakes.world import BLUE_GREEN, World

#: a failing effect is retried a bounded number of times (domain.rollout.EFFECT_ATTEMPTS)
BOUND = 6


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    made: list[World] = []

    def make(strategy: str = BLUE_GREEN, **kw: Any) -> World:
        root = tmp_path / str(len(made))
        root.mkdir()
        w = World(root, strategy=strategy, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def still_stable(w: World, dep_id: str) -> None:
    dep = w.store.get(dep_id)
    assert dep.phase is Phase.ROLLED_BACK, dep.reason
    assert w.production() == {"v1": 100}
    assert w.versions_running() == {"v1"}
    assert any(d.id == dep.id and d.phase is Phase.ROLLING_BACK for d in w.alerted)
    assert w.unhealthy_routed == []


def test_the_failure_count_survives_a_controller_restart(make_world: Callable[..., World]) -> None:
    w = make_world()
    w.release("v1")
    w.platform.faults.fail("start")  # a version that cannot start, at the platform
    dep = w.drive_to(w.deploy("v2").id, Phase.STARTING)
    for _ in range(7):  # retried after 1 s and 2 s: three attempts
        w.tick(dep.id)
    assert w.platform.faults.raised["start"] == 3
    first = w.store.steps(dep.id)[-1].detail["effect_failure"]
    assert first["attempts"] == 3 and first["what"] == "start_new"
    w.restart()  # a new controller: no memory, the count is read from the store
    dep = w.drive(dep.id, max_ticks=400)
    assert w.platform.faults.raised["start"] <= BOUND
    still_stable(w, dep.id)


def test_a_version_that_cannot_start_is_rolled_back_and_the_next_deploy_is_accepted(
    make_world: Callable[..., World],
) -> None:
    """The reported case: every start raises.  Before the fix the tick raised PlatformError."""
    w = make_world()
    w.release("v1")
    w.platform.faults.fail("start", error=lambda _m: PlatformError("workdir releases/v9 does not exist"))
    dep = w.drive(w.deploy("v9").id, max_ticks=400)
    still_stable(w, dep.id)
    assert "starting the new version failed" in dep.reason and "releases/v9" in dep.reason
    assert w.platform.faults.raised["start"] <= BOUND
    w.platform.faults.heal()
    assert w.release("v2").to_version == "v2"  # no "deployment in progress" refusal


def test_a_first_deployment_that_cannot_start_fails(make_world: Callable[..., World]) -> None:
    w = make_world()
    w.platform.faults.fail("start")
    dep = w.drive(w.deploy("v1").id, max_ticks=400)
    assert dep.phase is Phase.FAILED, dep.reason
    assert "starting the new version failed" in dep.reason
    assert w.platform.all() == [] and w.production() == {}
    assert any(d.phase in (Phase.FAILED, Phase.ROLLING_BACK) for d in w.alerted)


def test_a_start_that_fails_twice_then_works_goes_on(make_world: Callable[..., World]) -> None:
    w = make_world()
    w.release("v1")
    w.platform.faults.fail("start", times=2)
    dep = w.drive(w.deploy("v2").id, max_ticks=400)
    assert dep.phase is Phase.SUCCEEDED, dep.reason
    starting = next(s for s in w.store.steps(dep.id) if s.phase == Phase.STARTING.value)
    assert starting.detail["effect_failure"] is None  # recovered ...
    assert starting.detail["effect_recovered"]["attempts"] == 2  # ... and the record kept


def test_a_router_that_is_down_fails_the_rollout_and_ends_it(make_world: Callable[..., World]) -> None:
    """No data plane at all: every route fails, so does the rollback; it ends FAILED, not stuck."""
    w = make_world()
    w.release("v1")
    dep = w.drive_to(w.deploy("v2").id, Phase.PREVIEW)
    w.router.faults.fail("apply", error=lambda m: RouterError(f"admin port unreachable ({m})"))
    w.router.faults.fail("current", error=lambda m: RouterError(f"admin port unreachable ({m})"))
    dep = w.drive(dep.id, max_ticks=600)
    assert dep.phase is Phase.FAILED, dep.reason
    assert "rollback could not complete" in dep.reason and "admin port unreachable" in dep.reason
    assert w.production() == {"v1": 100}  # the table the data plane served is untouched


def test_a_router_that_cannot_start_does_not_stop_the_decision(make_world: Callable[..., World]) -> None:
    """The data plane is started inside the tick: if it cannot start, abort still works."""
    w = make_world()
    w.release("v1")
    dep = w.deploy("v2")
    w.router.stop()
    w.router.faults.fail("start")
    w.svc = w.service()  # a new process: it starts the router on its first tick
    dep = w.tick(dep.id)
    assert dep.phase is Phase.PENDING and w.store.steps(dep.id)[-1].detail["effect_failure"]
    w.store.request(dep.id, OperatorRequest.ROLLBACK, "operator")
    dep = w.tick(dep.id)
    assert dep.phase is Phase.ROLLING_BACK
    w.router.faults.heal()
    dep = w.drive(dep.id, max_ticks=100)
    assert dep.phase is Phase.ROLLED_BACK and w.production() == {"v1": 100}


def test_a_service_removed_from_the_policy_ends_failed(make_world: Callable[..., World]) -> None:
    w = make_world()
    w.release("v1")
    dep = w.drive_to(w.deploy("v2").id, Phase.STARTING)
    w.svc.spec = lambda name: (_ for _ in ()).throw(KeyError(f"no service {name!r} in the policy"))  # type: ignore[method-assign]
    for _ in range(400):
        d = w.store.get(dep.id)
        if d.phase.terminal:
            break
        if w.store.acquire_lease(d.id, w.svc.lease_owner(), 5):
            w.svc.reconcile_once(d)
        w.clock.advance(1)
    d = w.store.get(dep.id)
    assert d.phase is Phase.FAILED and "no service 'web' in the policy" in d.reason, d.reason
