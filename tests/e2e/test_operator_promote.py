"""promote vs promote --full on a live canary (real nginx, processes): promote ends the pause the
canary waits in and the steps after it still run; at a setWeight step it is refused; --full
skips every remaining step."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from shipwarden.domain.rollout import OperatorRequest, Phase
from shipwarden.services.rollout import DeployError
from tests.fixtures.deploy_env import make_env, teardown_env

pytestmark = pytest.mark.integration

PAUSED = """\
canary:
  steps: [{setWeight: 20}, {pause: {}}, {setWeight: 50}, {pause: {}}, {setWeight: 80}]
  scaleDownDelay: 1s
  verifyRequests: 40
  progressDeadline: 90s
"""


@pytest.fixture
def paused_env(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = make_env(tmp_path, strategy=PAUSED)
    env.app().router.start()
    yield env
    teardown_env(env)


def _at(app, dep_id: str, step: int):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while (d := app.store.get(dep_id)).phase is not Phase.CANARY_STEP or d.step_index != step:
        assert time.monotonic() < deadline and not d.phase.terminal, d
        time.sleep(0.05)
    return d


def test_promote_ends_one_pause_and_full_skips_the_rest(paused_env, load) -> None:  # type: ignore[no-untyped-def]
    app = paused_env.app()
    app.rollout.run(app.rollout.start("web", "v1", actor="tester").id)
    with load(paused_env.url, concurrency=4, max_seconds=60) as traffic:
        dep = app.rollout.start("web", "v2", actor="tester")
        driver = threading.Thread(target=app.rollout.run, args=(dep.id,), daemon=True)
        driver.start()
        _at(app, dep.id, 1)  # waiting in the first pause, at 20 %
        app.rollout.request("web", OperatorRequest.PROMOTE, actor="rm")
        _at(app, dep.id, 3)  # went through 50 % and now waits in the *second* pause
        time.sleep(1.0)
        assert app.store.get(dep.id).step_index == 3  # one promote ended one pause, not two
        split = app.router.probe("web", "production", 200).versions
        assert 60 <= split.get("v2", 0) <= 140, split  # 50 %, within noise
        app.rollout.request("web", OperatorRequest.PROMOTE_FULL, actor="rm")
        driver.join(60)
    dep = app.store.get(dep.id)
    assert dep.phase is Phase.SUCCEEDED, dep.reason
    assert traffic.result.failures == 0, traffic.result.errors
    reasons = [s.reason for s in app.store.steps(dep.id)]
    assert any("pause ended by operator" in r for r in reasons), reasons
    assert any("remaining steps skipped" in r for r in reasons), reasons
    assert not any(s.detail.get("step_index") == 4 for s in app.store.steps(dep.id))  # 80 % skipped
    actions = [e.action for e in app.store.audit_entries(deployment_id=dep.id) if e.actor == "rm"]
    # each request, and the one transition it caused, are the operator's; the rest the controller's
    expected = ["operator.promote", "rollout.canary_step", "operator.promote-full", "rollout.promoting"]
    assert actions == expected
    assert dep.operator_actor is None  # used up: a later automatic rollback would not be "by rm"


def test_promote_at_a_step_that_is_not_a_pause_is_refused_and_changes_nothing(paused_env) -> None:  # type: ignore[no-untyped-def]
    app = paused_env.app()
    app.rollout.run(app.rollout.start("web", "v1", actor="tester").id)
    dep = app.rollout.start("web", "v2", actor="tester")
    with pytest.raises(DeployError, match="still starting"):
        app.rollout.request("web", OperatorRequest.PROMOTE, actor="rm")
    assert app.store.get(dep.id).operator_request is None
    app.rollout.run(dep.id, until=lambda d: d.phase is Phase.CANARY_STEP)
    with pytest.raises(DeployError, match=r"step 1 of 5 \(setWeight\); promote ends a pause.*--full"):
        app.rollout.request("web", OperatorRequest.PROMOTE, actor="rm")
    assert app.store.get(dep.id).operator_request is None
    app.rollout.request("web", OperatorRequest.ROLLBACK, actor="rm")
    assert app.rollout.run(dep.id).phase is Phase.ROLLED_BACK
