"""Blue-green post-promotion analysis end to end: after the switch, Prometheus threshold checks
on the new version run while the old one is kept warm; a failing check switches back to it
(real nginx, real Prometheus scraping the router every second, real processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipwarden.adapters.net import free_port
from shipwarden.domain.rollout import Phase
from tests.fixtures.deploy_env import GOOD, make_env, teardown_env

pytestmark = pytest.mark.integration

R = 'shipwarden_router_requests_total{service="{service}",route="production",version="{version}"'
ERROR_RATE = f'(sum(rate({R},code=~"5.."}}[{{window}}])) or vector(0)) / sum(rate({R}}}[{{window}}]))'

POST = f"""\
blueGreen:
  preview: {{path: /, requests: 10}}
  scaleDownDelay: 1s
  progressDeadline: 90s
  postPromotionAnalysis:
    metrics:
      - name: error-rate
        provider: prometheus
        query: '{ERROR_RATE}'
        interval: 2s
        window: 5s
        initialDelay: 4s
        count: 3
        failureCondition: {{min: 0.05}}
        consecutiveErrorLimit: 2
        errorRetryInterval: 1s
"""


@pytest.fixture
def post_env(tmp_path: Path, prometheus_server):  # type: ignore[no-untyped-def]
    env = make_env(tmp_path, strategy=POST, router_admin_port=free_port())
    env.app().router.start()
    prom = prometheus_server(targets=[f"127.0.0.1:{env.settings.router_admin_port}"])
    prom.wait_for_targets_up()
    env.settings = env.settings.model_copy(update={"prometheus_url": prom.url})
    yield env
    teardown_env(env)


# passes its health checks and the preview, then fails half its requests from 3 s after start:
# only an analysis after the switch can catch it
LATE_BAD = GOOD.replace(
    "import os, sys\n",
    "import os, sys, time\nos.environ['SAMPLE_ERROR_RATE'] = '0.5'\n"
    "os.environ['SAMPLE_ERRORS_FROM'] = str(time.time() + 3)\n",
)


def _release(env, load, version: str):  # type: ignore[no-untyped-def]
    """v1 — its checks measure it once it serves (with no old version they alone decide), so it
    needs traffic too — then ``version`` under the users' load."""
    (env.root / "releases" / "late-bad").mkdir(exist_ok=True)
    (env.root / "releases" / "late-bad" / "start.py").write_text(LATE_BAD)
    app = env.app()
    with load(env.url, concurrency=2, max_seconds=60):  # errors until v1 listens: not users
        first = app.rollout.run(app.rollout.start("web", "v1", actor="tester").id)
    assert first.phase is Phase.SUCCEEDED, first.reason
    with load(env.url, concurrency=4, max_seconds=90) as users:
        app = env.app()
        dep = app.rollout.run(app.rollout.start("web", version, actor="tester").id)
    return app, dep, users.result


def test_a_good_release_passes_its_post_promotion_checks_before_blue_goes(post_env, load) -> None:  # type: ignore[no-untyped-def]
    app, dep, users = _release(post_env, load, "v2")
    assert dep.phase is Phase.SUCCEEDED, dep.reason
    assert users.failures == 0, users.errors
    measured = [r for r in app.store.analysis_records(dep.id, "post") if r["kind"] == "metric"]
    assert len(measured) >= 3 and all(r["canary"]["type"] == "value" for r in measured[-3:]), measured
    waited = next(s for s in app.store.steps(dep.id) if s.phase == "scale_down_wait")
    assert "[post]" in waited.detail["analysis_verdict"]["detail"], waited.detail


def test_errors_after_the_switch_send_traffic_back_to_warm_blue(post_env, load) -> None:  # type: ignore[no-untyped-def]
    app, dep, users = _release(post_env, load, "late-bad")
    assert dep.phase is Phase.ROLLED_BACK, dep.reason
    assert "v2" not in users.versions and "late-bad" in users.versions  # it did take production
    assert "analysis failed" in dep.reason and "error-rate" in dep.reason, dep.reason
    assert dep.detected_at is not None and dep.traffic_restored_at is not None
    assert app.router.probe("web", "production", 20).versions == {"v1": 20}  # blue was still warm
    assert {i.version for i in app.platform.instances("web")} == {"v1"}
    assert app.store.stable_version("web")[0] == "v1"
