"""Many services released together: ``shipwarden deploy`` processes started at once, one per
service, on a new state directory (first deployments: every process migrates the store, starts
the router, exposes the services), then again after the router went down (the next deployments
find it down and start it, once).  Every process must succeed, every service end on its new
version, and the audit chain stay whole."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipwarden.adapters.net import free_port
from shipwarden.bootstrap import build_service, load_policy
from tests.fixtures.deploy_env import DeployEnv, make_env, teardown_env

pytestmark = pytest.mark.integration

N = 10
CLI = [sys.executable, "-m", "shipwarden.entrypoints.cli"]

SERVICE = """\
  - name: {name}
    run:
      command: ["{{python}}", "start.py"]
      workdir: "releases/{{version}}"
      instances: 1
      stopTimeout: 5s
    health: {{path: /healthz, interval: 100ms, timeout: 2s, healthyThreshold: 1, startTimeout: 60s}}
    routing: {{port: {port}, previewPort: {preview}}}
    strategy:
      blueGreen: {{preview: {{path: /, requests: 4}}, scaleDownDelay: 0s, verifyRequests: 4}}
"""
NAMES = [f"svc{i:02}" for i in range(N)]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DeployEnv]:
    env = make_env(tmp_path)
    ports: set[int] = {env.port, env.preview_port}
    while len(ports) < 2 * N + 2:  # distinct: a closed port may be handed out again
        ports.add(free_port())
    free = iter(sorted(ports - {env.port, env.preview_port}))
    body = "".join(SERVICE.format(name=n, port=next(free), preview=next(free)) for n in NAMES)
    head = env.policy_path.read_text().split("services:\n", 1)[0]
    env.policy_path.write_text(f"{head}services:\n{body}")
    try:
        yield env
    finally:
        teardown_env(env)  # every service's instances, and nginx


def _deploy_all(env: DeployEnv, version: str) -> None:
    procs = [
        subprocess.Popen(
            [*CLI, "deploy", name, "--version", version], env=env.env(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        for name in NAMES
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    failed = {n: o[-1500:] for n, p, o in zip(NAMES, procs, outs, strict=True) if p.returncode != 0}
    assert not failed, failed
    assert not [n for n, o in zip(NAMES, outs, strict=True) if "Traceback" in o]


def test_deploy_processes_started_at_once_all_succeed(env: DeployEnv) -> None:
    _deploy_all(env, "v1")  # a new state dir: store, keys, router all created by the crowd
    app = env.app()
    for name in NAMES:
        assert app.router.probe(name, "production", 4).versions == {"v1": 4}, name

    app.router.stop()  # the router goes down between releases
    _deploy_all(env, "v2")
    app = env.app()
    assert app.router.running()
    for name in NAMES:
        assert app.router.probe(name, "production", 4).versions == {"v2": 4}, name
        assert {i.version for i in app.platform.instances(name)} == {"v2"}, name
        assert app.store.stable_version(name) == ("v2", "v1")
    svc = build_service(env.settings, load_policy(env.policy_path))
    try:
        report = svc.audit.verify()
        assert report.ok, report
    finally:
        svc.store.engine.dispose()
