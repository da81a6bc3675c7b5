"""Canary end to end: real nginx, real Prometheus scraping the router, real sample processes,
the live judge and threshold checks, automatic rollback with no operator action."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from shipwarden.adapters.net import free_port
from shipwarden.domain.rollout import Phase
from tests.fixtures.deploy_env import make_env, teardown_env

pytestmark = pytest.mark.integration

# "or vector(0)": no 5xx series at all means 0 errors, not "no data"
ERROR_RATE = (
    '(sum(rate(shipwarden_router_requests_total{service="{service}",route="production",version="{version}",'
    'code=~"5.."}[{window}])) or vector(0)) / sum(rate(shipwarden_router_requests_total{service="{service}",'
    'route="production",version="{version}"}[{window}]))'
)

CANARY = f"""\
canary:
  steps:
    - setWeight: 20
    - analysis: {{}}
    - setWeight: 50
    - pause: {{duration: 1s}}
  scaleDownDelay: 1s
  verifyRequests: 40
  progressDeadline: 150s
  analysis:
    interval: 1s
    judge:
      algorithm: sequential
      samples: 40
      minRequests: 150
      warmup: 3s
      metrics: {{errorRate: {{negligible: 0.01}}, latency: {{tolerance: 0.5, regression: 3.0}}}}
    metrics:
      - name: error-rate
        provider: prometheus
        query: '{ERROR_RATE}'
        interval: 2s
        window: 5s  # rate() needs two scrapes (1 s apart) inside it, even on a slow machine
        initialDelay: 3s
        failureCondition: {{min: 0.05}}
        consecutiveErrorLimit: 2
        errorRetryInterval: 1s
"""


@pytest.fixture
def canary_env(tmp_path: Path, prometheus_server):  # type: ignore[no-untyped-def]
    """A canary policy; Prometheus scrapes the router's per-version metrics every second."""
    env = make_env(tmp_path, strategy=CANARY, router_admin_port=free_port())
    app = env.app()
    app.router.start()
    prom = prometheus_server(targets=[f"127.0.0.1:{env.settings.router_admin_port}"])
    # Prometheus applies its targets up to 5 s after start: until the first scrape every query is
    # "no data", which a policy with inconclusiveLimit 0 rightly treats as a reason to pause
    prom.wait_for_targets_up()
    env.settings = env.settings.model_copy(update={"prometheus_url": prom.url})
    yield env
    teardown_env(env)


def _deploy(env, version: str):  # type: ignore[no-untyped-def]
    app = env.app()
    dep = app.rollout.start("web", version, actor="tester")
    return app, app.rollout.run(dep.id)


def _story(app, dep) -> str:  # type: ignore[no-untyped-def]
    """Why a deployment ended as it did: each step's phase, timing, reason and analysis numbers."""
    import json

    lines = [f"{dep.phase}: {dep.reason}"]
    for s in app.store.steps(dep.id):
        analysis = json.dumps(s.detail.get("analysis"), default=str)[:1500] if s.detail else ""
        lines.append(f"  {s.phase} @{s.started_at:.1f} {s.reason} {analysis}")
    return "\n".join(lines)


def test_good_canary_is_promoted_through_every_step(canary_env, load) -> None:  # type: ignore[no-untyped-def]
    _deploy(canary_env, "v1")
    # the load outlasts the progress deadline (150 s): a slow machine must not starve the judge
    with load(canary_env.url, concurrency=6, max_seconds=180) as traffic:
        app, dep = _deploy(canary_env, "v2")
    assert dep.phase is Phase.SUCCEEDED, _story(app, dep)
    assert traffic.result.failures == 0, traffic.result.errors
    phases = [(s.phase, s.detail.get("step_index")) for s in app.store.steps(dep.id)]
    assert [p for p, i in phases if p == "canary_step"] == ["canary_step"] * 4
    records = app.store.analysis_records(dep.id)
    assert {r["kind"] for r in records} == {"judge", "metric"}
    judged = [s.detail["analysis"] for s in app.store.steps(dep.id) if "analysis" in s.detail]
    # the verdict that passed step-1, with the numbers behind it, is in the deployment record
    verdict = next(a["step-1"]["judge"] for a in judged if "judge" in a.get("step-1", {}))
    assert verdict["decision"] == "pass" and verdict["metrics"], verdict
    assert all("detectableRatio" in m for m in verdict["metrics"])
    # what-if: the same recorded metrics through the same policy promote; through a policy that
    # tolerates no errors at all (failure at >= 0) they would have rolled back
    from shipwarden.services.whatif import replay

    same = replay(app.store, dep.id, app.rollout.loaded.policy)
    assert {a["key"]: a["decision"] for a in same["analyses"]}["step-1"] == "promote"
    strict_text = canary_env.policy_path.read_text().replace(
        "failureCondition: {min: 0.05}", "failureCondition: {min: 0.0}"
    )
    from shipwarden.domain.policy import load_policy_text

    strict = replay(app.store, dep.id, load_policy_text(strict_text).policy)
    assert {a["key"]: a["decision"] for a in strict["analyses"]}["step-1"] == "rollback"


@pytest.mark.parametrize(("bad", "why"), [("bad", "error"), ("slow", "latency")])
def test_bad_canary_rolls_back_automatically(canary_env, load, bad: str, why: str) -> None:  # type: ignore[no-untyped-def]
    _deploy(canary_env, "v1")
    with load(canary_env.url, concurrency=6, max_seconds=120):
        app, dep = _deploy(canary_env, bad)
    assert dep.phase is Phase.ROLLED_BACK, dep.reason
    # caught by the analysis (the convergence probe checks routing only while an analysis
    # watches the canary, so its 5xx are left to the judge, which has the baseline to compare)
    assert "analysis failed" in dep.reason and why in dep.reason.lower(), dep.reason
    assert dep.operator_actor is None  # nobody asked: the analysis did
    runs = [r for s in app.store.steps(dep.id) for r in s.detail.get("analysis", {}).values()]
    failed = [r for r in runs if r.get("judge", {}).get("decision") == "fail"] + [
        m for r in runs for m in r.get("metrics", []) if m.get("phase") == "failed"
    ]
    assert failed, runs  # the numbers behind the rollback are in the deployment record ...
    audited = [e for e in app.store.audit_entries(deployment_id=dep.id) if e.action == "rollout.rolling_back"]
    assert len(audited) == 1 and audited[0].detail["analysis"], audited  # ... and in the audit log
    assert dep.detected_at is not None and dep.traffic_restored_at is not None
    assert dep.detected_at <= dep.traffic_restored_at <= dep.rolled_back_at
    assert app.router.probe("web", "production", 30).versions == {"v1": 30}
    assert {i.version for i in app.platform.instances("web")} == {"v1"}


def test_provider_outage_rolls_back_never_promotes(canary_env, load) -> None:  # type: ignore[no-untyped-def]
    _deploy(canary_env, "v1")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here: every query is a connection error
    canary_env.settings = canary_env.settings.model_copy(update={"prometheus_url": dead})
    with load(canary_env.url, concurrency=4, max_seconds=120):
        app, dep = _deploy(canary_env, "v2")
    assert dep.phase is Phase.ROLLED_BACK, dep.reason
    assert "error-rate" in dep.reason and "error" in dep.reason, dep.reason
    assert app.store.stable_version("web")[0] == "v1"
    assert httpx.get(canary_env.url, timeout=5).headers["x-version"] == "v1"
