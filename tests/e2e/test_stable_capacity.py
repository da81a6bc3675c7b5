"""minAvailable end to end: a stable instance dies in the middle of a canary; the controller
replaces it, holds traffic where it is until the stable fleet is back, audits it, and the
release goes on (real nginx, real processes)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from shipwarden.adapters.platforms.base import InstanceState
from shipwarden.domain.rollout import OperatorRequest, Phase
from tests.fixtures.deploy_env import make_env, teardown_env

pytestmark = pytest.mark.integration

CANARY = """\
canary:
  steps: [{setWeight: 20}, {pause: {duration: 4s}}, {setWeight: 50}, {pause: {duration: 1s}}]
  minAvailable: 2
  scaleDownDelay: 1s
  verifyRequests: 40
  progressDeadline: 60s
"""


@pytest.fixture
def capacity_env(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = make_env(tmp_path, strategy=CANARY)
    env.app().router.start()
    yield env
    teardown_env(env)


def test_a_stable_instance_dying_mid_canary_is_replaced_before_traffic_moves(capacity_env, load) -> None:  # type: ignore[no-untyped-def]
    app = capacity_env.app()
    app.rollout.run(app.rollout.start("web", "v1", actor="tester").id)
    with load(capacity_env.url, concurrency=3, max_seconds=60):
        dep = app.rollout.start("web", "v2", actor="tester")
        driver = threading.Thread(target=app.rollout.run, args=(dep.id,), daemon=True)
        driver.start()
        deadline = time.monotonic() + 30
        while (cur := app.store.get(dep.id)).phase is not Phase.CANARY_STEP or cur.step_index != 1:
            assert time.monotonic() < deadline, cur
            time.sleep(0.05)
        victim = next(i for i in app.platform.instances("web") if i.version == "v1")
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)  # the stable fleet is one short during the pause
        driver.join(60)
    dep = app.store.get(dep.id)
    assert dep.phase is Phase.SUCCEEDED, dep.reason
    entries = app.store.audit_entries(deployment_id=dep.id)
    replaced = [e for e in entries if e.action == "rollout.stable_replaced"]
    assert len(replaced) == 1 and replaced[0].detail["dead"] == [victim.address], replaced
    new_v1 = replaced[0].detail["started"]
    assert len(new_v1) == 1 and new_v1 != [victim.address]
    # the 50 % step began only once the replacement counted as running: the step that held has it
    steps = app.store.steps(dep.id)
    held = next(s for s in steps if "replaced_stable" in (s.detail or {}))
    assert held.detail["replaced_stable"] == new_v1 and held.detail.get("step_index") == 1
    assert all(i.state is InstanceState.RUNNING for i in app.platform.instances("web"))
    assert {i.version for i in app.platform.instances("web")} == {"v2"}


def test_the_replacement_budget_survives_a_new_controller_and_the_hold_keeps_traffic(capacity_env) -> None:  # type: ignore[no-untyped-def]
    """A stable version that keeps dying is not restarted forever, also across controller restarts:
    with the budget (2 × instances) already spent, a dead stable instance is not replaced, and the
    canary holds at its weight instead of moving more traffic onto itself."""
    app = capacity_env.app()
    app.rollout.run(app.rollout.start("web", "v1", actor="tester").id)
    dep = app.rollout.start("web", "v2", actor="tester")
    app.rollout.run(dep.id, until=lambda d: d.phase is Phase.CANARY_STEP and d.step_index == 1)
    spent = [f"127.0.0.1:{p}" for p in (1, 2, 3, 4)]  # what an earlier controller replaced
    app.store.audit(
        actor="controller:tester", action="rollout.stable_replaced", service="web",
        deployment_id=dep.id, detail={"version": "v1", "dead": spent, "started": spent},
    )  # fmt: skip
    victim = next(i for i in app.platform.instances("web") if i.version == "v1")
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    resumed = capacity_env.app()  # a new controller: its budget comes from the audit log
    t_end = time.monotonic() + 7.0  # the pause step is 4 s: without the hold it would move on
    held = resumed.rollout.run(dep.id, until=lambda _d: time.monotonic() > t_end)
    assert held.phase is Phase.CANARY_STEP and held.step_index == 1, held  # the 4 s pause is long over
    v1 = [i for i in resumed.platform.instances("web") if i.version == "v1"]
    assert sum(i.state is InstanceState.RUNNING for i in v1) == 1  # not replaced: budget spent
    step = resumed.store.steps(dep.id)[-1]
    assert step.detail.get("holding") == "holding at step 2: 1 stable instance(s) running < minAvailable 2"
    resumed.rollout.request("web", OperatorRequest.ROLLBACK, actor="oncall")
    assert resumed.rollout.run(dep.id).phase is Phase.ROLLED_BACK
