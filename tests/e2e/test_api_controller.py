"""The API service's controller: deployments the API records are driven to their end by
``shipwarden serve`` itself — through real nginx and real instances — and left alone while
another live driver holds them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from shipwarden.adapters.net import free_port
from shipwarden.bootstrap import Services, build_service, load_policy
from shipwarden.domain.rollout import Phase
from shipwarden.services.controller import Controller
from tests.fixtures.deploy_env import DeployEnv

pytestmark = pytest.mark.integration


SECOND = """\
  - name: api
    run:
      command: ["{{python}}", "start.py"]
      workdir: "releases/{{version}}"
      instances: 1
      stopTimeout: 5s
    health: {{path: /healthz, interval: 200ms, timeout: 1s, healthyThreshold: 2, startTimeout: 8s}}
    routing: {{port: {port}, previewPort: {preview}}}
    strategy:
      blueGreen: {{preview: {{path: /, requests: 10}}, scaleDownDelay: 1s}}
"""


@pytest.fixture
def services(deploy_env: DeployEnv) -> Iterator[Services]:
    # a second service, so two releases can be in flight at once
    text = deploy_env.policy_path.read_text().replace(
        "services:\n", "services:\n" + SECOND.format(port=free_port(), preview=free_port()), 1
    )
    deploy_env.policy_path.write_text(text)
    svc = build_service(deploy_env.settings, load_policy(deploy_env.policy_path))
    yield svc
    assert svc.rollout is not None
    svc.rollout.platform.stop(svc.rollout.platform.instances("api"), 3)
    svc.store.engine.dispose()


def _wait_terminal(svc: Services, dep_id: str, timeout: float = 90.0) -> Phase:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        phase = svc.store.get(dep_id).phase
        if phase.terminal:
            return phase
        time.sleep(0.1)
    raise AssertionError(f"{dep_id} still {svc.store.get(dep_id).phase} after {timeout}s")


def test_recorded_deployments_are_driven_in_order_until_stopped(
    deploy_env: DeployEnv, services: Services
) -> None:
    assert services.rollout is not None
    ctl = Controller(services.rollout, services.store, interval_s=0.2)
    ctl.start()
    try:
        # what POST /services/web/deployments does: record, answer 202
        first = services.rollout.start("web", "v1", actor="alice")
        assert _wait_terminal(services, first.id) is Phase.SUCCEEDED
        second = services.rollout.start("web", "v2", actor="alice")
        assert _wait_terminal(services, second.id) is Phase.SUCCEEDED
        assert httpx.get(deploy_env.url, timeout=5).headers["x-version"] == "v2"
    finally:
        ctl.stop()
    assert ctl._thread is not None and not ctl._thread.is_alive() and ctl.driving == []


def test_releases_of_two_services_are_driven_at_the_same_time(services: Services) -> None:
    assert services.rollout is not None
    web = services.rollout.start("web", "v1", actor="alice")
    api = services.rollout.start("api", "v1", actor="bob")
    ctl = Controller(services.rollout, services.store, interval_s=0.2)
    try:
        assert ctl.tick() == [web.id, api.id]  # oldest first, both taken at once
        assert sorted(ctl.driving) == sorted([web.id, api.id])
        assert ctl.tick() == []  # already driven
        ctl.start()  # its workers tick both
        assert _wait_terminal(services, web.id) is Phase.SUCCEEDED
        assert _wait_terminal(services, api.id) is Phase.SUCCEEDED
    finally:
        ctl.stop()
    assert ctl.driving == []


def test_a_deployment_another_live_driver_holds_is_left_to_it(services: Services) -> None:
    assert services.rollout is not None
    dep = services.rollout.start("web", "v1", actor="alice")
    assert services.store.acquire_lease(dep.id, "cli-on-another-host:1234", 60.0)
    ctl = Controller(services.rollout, services.store, interval_s=0.2)
    assert ctl.tick() == []
    assert services.store.get(dep.id).phase is Phase.PENDING


def test_another_thread_of_this_process_driving_it_is_left_alone(services: Services) -> None:
    """Continuous delivery drives its deployment in its own thread of the same process: the
    controller must not drive it a second time (leases name the thread, not only the process)."""
    import threading

    assert services.rollout is not None
    rollout = services.rollout
    dep = rollout.start("web", "v1", actor="cd")
    taken: list[str] = []

    def cd_thread() -> None:
        owner = rollout.lease_owner()
        assert services.store.acquire_lease(dep.id, owner, 60.0)
        taken.append(owner)

    t = threading.Thread(target=cd_thread)
    t.start()
    t.join()
    assert taken and taken[0] != rollout.lease_owner()
    assert not services.store.acquire_lease(dep.id, rollout.lease_owner(), 60.0)
    assert Controller(rollout, services.store, interval_s=0.2).tick() == []
    assert services.store.get(dep.id).phase is Phase.PENDING


def test_reconcile_watch_reports_each_deployment_taken_and_its_outcome(services: Services) -> None:
    """What ``reconcile --watch`` prints while the controller drives two releases at once."""
    import io

    from rich.console import Console

    from shipwarden.entrypoints.cli.views import follow_controller

    assert services.rollout is not None
    web = services.rollout.start("web", "v1", actor="alice")
    api = services.rollout.start("api", "v1", actor="bob")
    out = io.StringIO()
    ctl = Controller(services.rollout, services.store, interval_s=0.2)
    ctl.start()
    try:

        def both_done() -> bool:
            return all(services.store.get(d.id).phase.terminal for d in (web, api)) and not ctl.driving

        follow_controller(Console(file=out, width=200), services.store, lambda: ctl.driving, both_done, 0.1)
    finally:
        ctl.stop()
    text = out.getvalue()
    for dep, service in ((web, "web"), (api, "api")):
        assert f"driving {dep.id}: {service} (none) → v1" in text, text
        assert f"{dep.id} succeeded: " in text, text


def test_shipwarden_serve_drives_what_its_api_records(deploy_env: DeployEnv) -> None:
    """The real ``shipwarden serve`` process: a CI token POSTs a deployment, the service's own
    controller drives it through nginx, and the record says succeeded."""
    import os
    import signal
    import subprocess
    import sys
    from datetime import timedelta

    from shipwarden.services.access import parse_binding

    setup = build_service(deploy_env.settings)  # as an admin would, beforehand; its store reads the record
    try:
        setup.access.create_user("setup", "ci", None, [parse_binding("developer:web")])
        scopes = ["deployment.create"]
        token, _ = setup.access.issue_token("setup", "ci", "pipeline", scopes, timedelta(days=1))
    except BaseException:
        setup.store.engine.dispose()
        raise
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipwarden.entrypoints.cli", "serve", "--insecure-http", "--port", str(port)],
        env={**deploy_env.env(), "SHIPWARDEN_TICK_S": "0.1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url, auth = f"http://127.0.0.1:{port}", {"authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.2)
        r = httpx.post(f"{url}/services/web/deployments", json={"version": "v1"}, headers=auth, timeout=10)
        assert r.status_code == 202, r.text
        dep_id = r.json()["id"]
        deadline = time.monotonic() + 90
        while not (phase := setup.store.get(dep_id).phase).terminal:
            assert time.monotonic() < deadline and proc.poll() is None, f"{dep_id} stuck in {phase}"
            time.sleep(0.2)
        assert phase is Phase.SUCCEEDED, setup.store.get(dep_id).reason
        assert httpx.get(deploy_env.url, timeout=5).headers["x-version"] == "v1"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        setup.store.engine.dispose()
