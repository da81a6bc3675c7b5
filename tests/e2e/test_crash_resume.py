"""kill -9 of the deploying process at every phase, then re-running the command: the
rollout completes or rolls back, and production traffic is served throughout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from shipwarden.domain.rollout import Phase

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "shipwarden.entrypoints.cli"]


def _cli(env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([*CLI, *args], env=env.env(), capture_output=True, text=True, timeout=timeout)


def _phase(store) -> Phase | None:  # type: ignore[no-untyped-def]
    dep = store.active("web")
    return dep.phase if dep else None


@pytest.mark.parametrize("kill_in", [Phase.STARTING, Phase.PREVIEW, Phase.SCALE_DOWN_WAIT])
def test_kill_9_mid_rollout_then_rerun_completes(deploy_env, load, kill_in: Phase) -> None:  # type: ignore[no-untyped-def]
    first = _cli(deploy_env, "deploy", "web", "--version", "v1")
    assert first.returncode == 0, first.stdout + first.stderr
    with load(deploy_env.url, concurrency=4) as traffic:
        proc = subprocess.Popen(
            [*CLI, "deploy", "web", "--version", "v2"],
            env=deploy_env.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        seen = None
        store = deploy_env.app().store  # built once: a whole app per look missed the short preview
        while time.monotonic() < deadline:
            assert proc.poll() is None, "deploy finished before it could be killed"
            seen = _phase(store)
            if seen is kill_in:
                os.kill(proc.pid, signal.SIGKILL)  # at once: the phase may be short
                break
            time.sleep(0.01)
        assert seen is kill_in
        proc.wait()
        time.sleep(0.5)  # traffic keeps flowing with no driver at all
        again = _cli(deploy_env, "deploy", "web", "--version", "v2")
    assert again.returncode == 0, again.stdout + again.stderr
    dep = deploy_env.app().store.history("web", 1)[0]
    steps = [(s.phase, s.detail) for s in deploy_env.app().store.steps(dep.id)]
    assert dep.phase is Phase.SUCCEEDED and dep.to_version == "v2", (dep.reason, steps)
    assert traffic.result.failures == 0, traffic.result.errors
    assert {i.version for i in deploy_env.app().platform.instances("web")} == {"v2"}


def test_cli_status_history_show_and_rollback(deploy_env) -> None:  # type: ignore[no-untyped-def]
    assert _cli(deploy_env, "deploy", "web", "--version", "v1").returncode == 0
    assert _cli(deploy_env, "deploy", "web", "--version", "v2").returncode == 0
    hist = _cli(deploy_env, "history", "web")
    assert hist.returncode == 0 and "v1" in hist.stdout and "succeeded" in hist.stdout
    dep_id = deploy_env.app().store.history("web", 1)[0].id
    shown = _cli(deploy_env, "show", dep_id, "--json")
    import json

    record = json.loads(shown.stdout)
    assert (
        record["to_version"] == "v2" and record["outcome"] == "succeeded" and record["started_by"] == "tester"
    )
    assert all(s["started_at"] for s in record["steps"])
    status = _cli(deploy_env, "status", "web", "--once")
    assert "succeeded" in status.stdout
    rb = _cli(deploy_env, "rollback", "web")
    assert rb.returncode == 0, rb.stdout + rb.stderr
    assert deploy_env.app().store.stable_version("web")[0] == "v1"
    unknown = _cli(deploy_env, "show", "d-nope")
    assert unknown.returncode == 2 and "no deployment" in unknown.stderr
