"""kill -9 of the deploying process while a canary's judge is gathering evidence, then the same
command again: the resumed judge continues from the stored samples (it does not start over),
the canary is promoted, and production traffic is served throughout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shipwarden.domain.rollout import Phase
from tests.fixtures.deploy_env import make_env, teardown_env

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "shipwarden.entrypoints.cli"]

JUDGED = """\
canary:
  steps: [{setWeight: 20}, {analysis: {}}, {setWeight: 50}, {pause: {duration: 1s}}]
  scaleDownDelay: 1s
  verifyRequests: 40
  progressDeadline: 120s
  analysis:
    interval: 1s
    judge:
      samples: 60
      minRequests: 1500
      metrics: {errorRate: {negligible: 0.01}, latency: {tolerance: 0.5, regression: 3.0}}
"""


@pytest.fixture
def judged_env(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = make_env(tmp_path, strategy=JUDGED)
    yield env
    teardown_env(env)


def _cli(env, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([*CLI, *args], env=env.env(), capture_output=True, text=True, timeout=150)


def test_kill_9_while_judging_then_rerun_resumes_the_evidence(judged_env, load) -> None:  # type: ignore[no-untyped-def]
    first = _cli(judged_env, "deploy", "web", "--version", "v1")
    assert first.returncode == 0, first.stdout + first.stderr
    with load(judged_env.url, concurrency=4, max_seconds=120) as traffic:
        proc = subprocess.Popen(
            [*CLI, "deploy", "web", "--version", "v2"],
            env=judged_env.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        store = judged_env.app().store
        deadline = time.monotonic() + 60
        before: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the deploy finished before it could be killed"
            dep = store.active("web")
            if dep is not None and dep.phase is Phase.CANARY_STEP and dep.step_index == 1:
                before = [r for r in store.analysis_records(dep.id, "step-1") if r["kind"] == "judge"]
                if len(before) >= 3:
                    os.kill(proc.pid, signal.SIGKILL)  # mid-analysis: samples stored, no verdict yet
                    break
            time.sleep(0.05)
        assert len(before) >= 3, "never saw the judge gathering samples"
        proc.wait()
        time.sleep(0.5)  # no driver at all for a moment; traffic keeps flowing at 20 %
        again = _cli(judged_env, "deploy", "web", "--version", "v2")
    assert again.returncode == 0, again.stdout + again.stderr
    dep = judged_env.app().store.history("web", 1)[0]
    assert dep.phase is Phase.SUCCEEDED, dep.reason
    assert traffic.result.failures == 0, traffic.result.errors
    after = [r for r in judged_env.app().store.analysis_records(dep.id, "step-1") if r["kind"] == "judge"]
    assert after[: len(before)] == before  # nothing gathered before the crash was lost or rewritten
    judged = [s.detail["analysis"] for s in judged_env.app().store.steps(dep.id) if "analysis" in s.detail]
    verdict = next(a["step-1"]["judge"] for a in judged if "step-1" in a and "judge" in a["step-1"])
    assert verdict["decision"] == "pass"
    # the verdict counts the pre-crash samples too: its requests cover every stored interval
    stored = sum(int(r["canary"]["requests"]) for r in after[: verdict["samples"]])  # type: ignore[index]
    assert verdict["canaryRequests"] == stored and verdict["samples"] > len(before)
