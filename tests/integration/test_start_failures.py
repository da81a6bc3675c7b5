"""Issue 9, class 1 end to end: a version that cannot start, on the real LocalPlatform and nginx.

The four causes the issue names — a workdir that does not exist for that version, a
``{placeholder}`` the policy does not define, an environment name with ``=`` or whitespace, a
command that exits at once — each end the deployment (rolled back onto the stable version, or
failed when there is none) with the cause in ``shipwarden show`` and the audit log, leave no
instance of the bad version behind, and a later deploy of the service is accepted.  Before the
fix the first three raised out of every tick and the deployment stayed in ``starting`` forever.

The policy loader may come to reject the placeholder and env-name cases at load time; the
reconciler must survive them anyway (a policy changes under a running controller, a workdir
vanishes), so the broken spec is given to the service directly, past the loader.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from shipwarden.bootstrap import App
from shipwarden.domain.policy import ServiceSpec
from shipwarden.domain.rollout import Phase
from tests.fixtures.deploy_env import DeployEnv

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "shipwarden.entrypoints.cli"]

Breaker = Callable[[ServiceSpec], ServiceSpec]


def _run(**update: object) -> Breaker:
    def breaker(spec: ServiceSpec) -> ServiceSpec:
        return spec.model_copy(update={"run": spec.run.model_copy(update=update)})

    return breaker


def _same(spec: ServiceSpec) -> ServiceSpec:
    return spec


# name: (version, what breaks the spec, what the cause says)
CAUSES: dict[str, tuple[str, Breaker, str]] = {
    "missing-workdir": ("v9", _same, "releases/v9, which does not exist"),
    "undefined-placeholder": (
        "v2",
        _run(command=["{python}", "start.py", "--tier={tier}"]),
        "uses {tier}, which is not defined",
    ),
    "env-name-with-space": (
        "v2",
        _run(env={"LOG LEVEL": "debug"}),
        "'LOG LEVEL' is not a valid environment variable name",
    ),
    "env-name-with-equals": ("v2", _run(env={"A=B": "1"}), "'A=B' is not a valid environment variable name"),
    "exits-at-once": ("crash", _same, "exited during start-up"),
}


def _cli(env: DeployEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env.env(), capture_output=True, text=True, timeout=180)


def _deploy_broken(env: DeployEnv, version: str, breaker: Breaker) -> tuple[App, str]:
    app = env.app()
    good = app.rollout.spec("web")
    app.rollout.spec = lambda _name: breaker(good)  # type: ignore[method-assign]
    dep = app.rollout.start("web", version, actor="tester")
    app.rollout.run(dep.id)
    return app, dep.id


def _assert_cause_recorded(env: DeployEnv, dep_id: str, cause: str) -> None:
    shown = _cli(env, "show", dep_id, "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    record = json.loads(shown.stdout)
    assert cause in record["reason"], record["reason"]
    assert any(
        e["action"] in ("rollout.rolling_back", "rollout.failed") and cause in e["detail"]["reason"]
        for e in record["audit"]
    ), [e["action"] for e in record["audit"]]


@pytest.mark.parametrize("name", sorted(CAUSES))
def test_a_version_that_cannot_start_is_rolled_back_with_its_cause(deploy_env: DeployEnv, name: str) -> None:
    version, breaker, cause = CAUSES[name]
    first = _cli(deploy_env, "deploy", "web", "--version", "v1")
    assert first.returncode == 0, first.stdout + first.stderr

    app, dep_id = _deploy_broken(deploy_env, version, breaker)

    dep = app.store.get(dep_id)
    assert dep.phase is Phase.ROLLED_BACK, dep.reason
    assert {i.version for i in app.platform.instances("web")} == {"v1"}  # nothing of it left
    assert app.router.probe("web", "production", 20).versions == {"v1": 20}  # traffic on stable
    _assert_cause_recorded(deploy_env, dep_id, cause)
    again = _cli(deploy_env, "deploy", "web", "--version", "v2")  # accepted: nothing in progress
    assert again.returncode == 0, again.stdout + again.stderr
    assert deploy_env.app().store.stable_version("web") == ("v2", "v1")


@pytest.mark.parametrize("name", sorted(CAUSES))
def test_a_first_version_that_cannot_start_fails_with_its_cause(deploy_env: DeployEnv, name: str) -> None:
    version, breaker, cause = CAUSES[name]
    app, dep_id = _deploy_broken(deploy_env, version, breaker)

    dep = app.store.get(dep_id)
    assert dep.phase is Phase.FAILED, dep.reason
    assert app.platform.instances("web") == []
    _assert_cause_recorded(deploy_env, dep_id, cause)
    assert app.store.active("web") is None
    assert env_accepts_a_deploy(deploy_env)


def env_accepts_a_deploy(env: DeployEnv) -> bool:
    app = env.app()
    dep = app.rollout.start("web", "v1", actor="tester")  # no DeployError: nothing in progress
    return app.rollout.run(dep.id).phase is Phase.SUCCEEDED
