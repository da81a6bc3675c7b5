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
from shipwarden.domain.rollout import Phase
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
