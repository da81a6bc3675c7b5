"""Confirm gates end to end: a canary waits at its weight for an operator's confirm, each
decision is audited, and an unconfirmed gate times out into a rollback (real nginx, processes)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from shipwarden.domain.rollout import OperatorRequest, Phase
from tests.fixtures.deploy_env import make_env, teardown_env

pytestmark = pytest.mark.integration

GATED = """\
canary:
  steps: [{setWeight: 20}, {setWeight: 50}]
  scaleDownDelay: 1s
  verifyRequests: 40
  progressDeadline: 90s
  confirm: {beforeWeightIncrease: true, beforePromotion: true, timeout: 8s}
"""


@pytest.fixture
def gated_env(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = make_env(tmp_path, strategy=GATED)
    env.app().router.start()
    yield env
    teardown_env(env)


def _wait_for(app, dep_id: str, pred, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep = app.store.get(dep_id)
        if pred(dep):
            return dep
        time.sleep(0.1)
    raise AssertionError(f"timed out; last: {app.store.get(dep_id)}")


def test_each_weight_increase_and_the_promotion_wait_for_a_confirm(gated_env, load) -> None:  # type: ignore[no-untyped-def]
    app = gated_env.app()
    app.rollout.run(app.rollout.start("web", "v1", actor="tester").id)
    with load(gated_env.url, concurrency=4, max_seconds=90) as traffic:
        dep = app.rollout.start("web", "v2", actor="tester")
        driver = threading.Thread(target=app.rollout.run, args=(dep.id,), daemon=True)
        driver.start()
        at_20 = _wait_for(app, dep.id, lambda d: d.phase is Phase.CANARY_STEP and d.step_index == 0)
        time.sleep(2.0)  # the gate holds: still at step 1 (20 %) with no confirm
        assert app.store.get(dep.id).step_index == 0 and at_20.phase is Phase.CANARY_STEP
        split = app.router.probe("web", "production", 200).versions
        assert set(split) == {"v1", "v2"} and split["v2"] < 80, split  # 20 % of 200, within noise
        app.rollout.request("web", OperatorRequest.CONFIRM, actor="rm")
        _wait_for(app, dep.id, lambda d: d.step_index == 1)
        time.sleep(2.0)  # and again before the promotion
        assert app.store.get(dep.id).phase is Phase.CANARY_STEP
        app.rollout.request("web", OperatorRequest.CONFIRM, actor="rm")
        driver.join(60)
    dep = app.store.get(dep.id)
    assert dep.phase is Phase.SUCCEEDED, dep.reason
    assert traffic.result.failures == 0, traffic.result.errors
    reasons = [s.reason for s in app.store.steps(dep.id)]
    assert any("before weight increase confirmed" in r for r in reasons), reasons
    assert any("before promotion confirmed" in r for r in reasons), reasons
    confirms = [e for e in app.store.audit_entries(deployment_id=dep.id) if e.action == "operator.confirm"]
    assert [e.actor for e in confirms] == ["rm", "rm"]  # each decision, by whom, in the audit log


def test_an_unconfirmed_gate_times_out_into_a_rollback(gated_env, load) -> None:  # type: ignore[no-untyped-def]
    app = gated_env.app()
    app.rollout.run(app.rollout.start("web", "v1", actor="tester").id)
    with load(gated_env.url, concurrency=4, max_seconds=60) as traffic:
        dep = app.rollout.run(app.rollout.start("web", "v2", actor="tester").id)
    assert dep.phase is Phase.ROLLED_BACK
    assert "no confirmation before weight increase within 8s" in dep.reason, dep.reason
    assert traffic.result.failures == 0, traffic.result.errors
    assert app.router.probe("web", "production", 20).versions == {"v1": 20}
    assert app.store.stable_version("web")[0] == "v1"
