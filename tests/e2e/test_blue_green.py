"""Blue-green end to end: real nginx, real processes, the real reconciler, traffic under load."""

from __future__ import annotations

import pytest

from shipwarden.domain.rollout import Phase
from shipwarden.services.records import deployment_record
from shipwarden.services.rollout import DeployError

pytestmark = pytest.mark.integration


def deploy(env, version: str):  # type: ignore[no-untyped-def]
    app = env.app()
    dep = app.rollout.start("web", version, actor="tester")
    return app, app.rollout.run(dep.id)


def test_first_deploy_then_switch_under_load_fails_no_request(routed_env, load) -> None:  # type: ignore[no-untyped-def]
    """Through each router driver the policy can name (``routing.driver: nginx | haproxy``)."""
    deploy_env = routed_env
    app, first = deploy(deploy_env, "v1")
    assert first.phase is Phase.SUCCEEDED
    driver = {"nginx": "NginxRouter", "haproxy": "HaproxyRouter"}[deploy_env.router]
    assert type(app.router).__name__ == driver
    with load(deploy_env.url, concurrency=6) as traffic:
        app, second = deploy(deploy_env, "v2")
    assert second.phase is Phase.SUCCEEDED, second.reason
    assert traffic.result.failures == 0, traffic.result.errors
    assert traffic.result.requests > 100
    assert set(traffic.result.versions) == {"v1", "v2"}  # the switch happened while requests were flowing
    assert {i.version for i in app.platform.instances("web")} == {"v2"}  # blue stopped after the delay
    assert app.router.probe("web", "production", 20).versions == {"v2": 20}
    record = deployment_record(app.store, second.id)
    assert [s["phase"] for s in record["steps"]] == [
        "pending",
        "starting",
        "preview",
        "promoting",
        "scale_down_wait",
        "scaling_down",
        "succeeded",
    ]
    assert record["from_version"] == "v1" and record["policy"]["digest"] == app.rollout.loaded.digest
    assert any(
        "preview" in (s["detail"].get("preview_check") or {}).get("detail", "") for s in record["steps"]
    )


@pytest.mark.parametrize("bad", ["crash", "sick"])
def test_unhealthy_green_never_gets_traffic(deploy_env, load, bad: str) -> None:  # type: ignore[no-untyped-def]
    deploy(deploy_env, "v1")
    with load(deploy_env.url, concurrency=4) as traffic:
        app, dep = deploy(deploy_env, bad)
    assert dep.phase is Phase.ROLLED_BACK
    assert "health" in dep.reason or "exited" in dep.reason or "died" in dep.reason, dep.reason
    assert traffic.result.failures == 0 and set(traffic.result.versions) == {"v1"}
    assert {i.version for i in app.platform.instances("web")} == {"v1"}
    assert app.store.stable_version("web")[0] == "v1"


def test_rollback_after_release_redeploys_previous(deploy_env, load) -> None:  # type: ignore[no-untyped-def]
    deploy(deploy_env, "v1")
    deploy(deploy_env, "v2")
    app = deploy_env.app()
    with load(deploy_env.url, concurrency=4) as traffic:
        dep = app.rollout.rollback("web", actor="oncall")
        dep = app.rollout.run(dep.id)
    assert dep.kind == "rollback" and dep.phase is Phase.SUCCEEDED and dep.to_version == "v1"
    assert [s.phase for s in app.store.steps(dep.id)][:3] == [
        "pending",
        "starting",
        "promoting",
    ]  # known good
    assert traffic.result.failures == 0
    assert app.store.stable_version("web") == ("v1", "v2")


def test_rollback_while_old_is_warm_is_instant(deploy_env, load) -> None:  # type: ignore[no-untyped-def]
    deploy(deploy_env, "v1")
    app = deploy_env.app()
    dep = app.rollout.start("web", "v2", actor="tester")
    dep = app.rollout.run(dep.id, until=lambda d: d.phase is Phase.SCALE_DOWN_WAIT)
    assert app.router.probe("web", "production", 10).versions == {"v2": 10}
    with load(deploy_env.url, concurrency=4) as traffic:
        app.rollout.rollback("web", actor="oncall")
        dep = app.rollout.run(dep.id)
    assert dep.phase is Phase.ROLLED_BACK and "operator" in (app.store.steps(dep.id)[-2].reason)
    assert traffic.result.failures == 0
    assert app.router.probe("web", "production", 10).versions == {"v1": 10}
    assert dep.detected_at is not None and dep.rolled_back_at is not None


def test_bad_requests_change_nothing(deploy_env) -> None:  # type: ignore[no-untyped-def]
    deploy(deploy_env, "v1")
    app = deploy_env.app()
    before = app.store.count_audit()
    with pytest.raises(LookupError, match="unknown service"):
        app.rollout.start("nope", "v2", actor="x")
    with pytest.raises(DeployError, match="already the stable version"):
        app.rollout.start("web", "v1", actor="x")
    with pytest.raises(DeployError, match="no deployment in progress"):
        from shipwarden.domain.rollout import OperatorRequest

        app.rollout.request("web", OperatorRequest.PROMOTE, actor="x")
    assert app.store.count_audit() == before
