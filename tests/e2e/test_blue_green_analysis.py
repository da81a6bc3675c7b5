"""Blue-green pre-promotion analysis end to end: the judge compares green on the preview route
with blue on production (real nginx, real processes) before any production request reaches green."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipwarden.domain.rollout import Phase
from tests.fixtures.deploy_env import make_env, teardown_env

pytestmark = pytest.mark.integration

BLUE_GREEN_ANALYSED = """\
blueGreen:
  preview: {path: /, requests: 20}
  scaleDownDelay: 1s
  progressDeadline: 120s
  prePromotionAnalysis:
    judge:
      algorithm: sequential
      samples: 60
      minRequests: 150
      warmup: 0s  # green on the preview route has no cold start worth five intervals of a loaded machine
      metrics: {errorRate: {negligible: 0.01}, latency: {tolerance: 0.5, regression: 3.0}}
"""


@pytest.fixture
def analysed_env(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = make_env(tmp_path, strategy=BLUE_GREEN_ANALYSED)
    env.app().router.start()
    yield env
    teardown_env(env)


def _release(env, load, version: str):  # type: ignore[no-untyped-def]
    """Deploy v1, then ``version`` while users hit production and a smoke load hits the preview."""
    app = env.app()
    app.rollout.run(app.rollout.start("web", "v1", actor="tester").id)
    with (
        load(env.url, concurrency=4, max_seconds=150) as users,
        load(f"http://127.0.0.1:{env.preview_port}/", concurrency=3, max_seconds=150),
    ):
        app = env.app()
        dep = app.rollout.run(app.rollout.start("web", version, actor="tester").id)
    return app, dep, users.result


def test_a_good_green_passes_the_judge_on_preview_traffic_then_takes_production(analysed_env, load) -> None:  # type: ignore[no-untyped-def]
    app, dep, users = _release(analysed_env, load, "v2")
    assert dep.phase is Phase.SUCCEEDED, dep.reason
    assert users.failures == 0, users.errors
    preview = next(s for s in app.store.steps(dep.id) if s.phase == "promoting")
    assert "analysis" in preview.reason and "[pre]" in preview.reason, preview.reason
    judged = [r for r in app.store.analysis_records(dep.id, "pre") if r["kind"] == "judge"]
    assert judged, "the pre-promotion judge's samples are stored with the deployment"
    assert sum(r["canary"]["requests"] for r in judged) >= 150  # judged on real preview traffic
    assert app.router.probe("web", "production", 20).versions == {"v2": 20}


def test_a_slow_green_is_rolled_back_before_production_sees_it(analysed_env, load) -> None:  # type: ignore[no-untyped-def]
    app, dep, users = _release(analysed_env, load, "slow")  # +200 ms: preview checks pass, the judge does not
    assert dep.phase is Phase.ROLLED_BACK, dep.reason
    assert "analysis failed" in dep.reason and "latency" in dep.reason, dep.reason
    assert dep.operator_actor is None  # nobody asked: the analysis did
    assert users.failures == 0, users.errors
    assert set(users.versions) == {"v1"}  # no production request ever reached green
    assert app.router.probe("web", "production", 20).versions == {"v1": 20}
    assert {i.version for i in app.platform.instances("web")} == {"v1"}
    assert app.store.stable_version("web")[0] == "v1"
