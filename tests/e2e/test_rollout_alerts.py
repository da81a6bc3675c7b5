"""Rollout alerts through Apprise to a real HTTP receiver: an automatic rollback pages the team once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shipwarden.bootstrap import App
from shipwarden.domain.rollout import Phase
from shipwarden.ports.store import Deployment
from shipwarden.services.alerts import ACTION
from tests.fixtures.deploy_env import DeployEnv

pytestmark = pytest.mark.integration

ALERTS = """
alerts:
  rollout:
    urls: [OPS_HOOK]
    events: [rollback, failed, succeeded]
"""


class Receiver:
    """An HTTP endpoint for Apprise's ``json://`` notifications (what a chat or pager webhook gets)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.posts.append({"path": self.path, **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    r = Receiver()
    # the secret holds the URL, credentials and all; the policy only names it
    monkeypatch.setenv("SHIPWARDEN_SECRET_OPS_HOOK", f"json://ops:hunter2@127.0.0.1:{r.port}/page")
    yield r
    r.close()


@pytest.fixture
def env(deploy_env: DeployEnv) -> DeployEnv:
    deploy_env.policy_path.write_text(deploy_env.policy_path.read_text() + ALERTS)
    return deploy_env


def deploy(env: DeployEnv, version: str) -> tuple[App, Deployment]:
    app = env.app()
    dep = app.rollout.start("web", version, actor="tester")
    return app, app.rollout.run(dep.id)


def test_an_automatic_rollback_pages_the_team_once_with_the_reason(
    env: DeployEnv, receiver: Receiver
) -> None:
    deploy(env, "v1")
    assert [p["title"] for p in receiver.posts] == ["[shipwarden] web: v1 is live"]
    receiver.posts.clear()

    app, dep = deploy(env, "sick")
    assert dep.phase is Phase.ROLLED_BACK
    assert len(receiver.posts) == 1, receiver.posts
    page = receiver.posts[0]
    assert page["path"] == "/page" and page["type"] == "failure"
    # sent the moment the rollback was decided, before the old version took the traffic back
    assert page["title"] == "[shipwarden] web: sick being rolled back automatically"
    reason = next(ln for ln in page["message"].splitlines() if ln.startswith("reason: "))
    assert dep.id in page["message"] and dep.reason.startswith(reason.removeprefix("reason: "))
    assert "healthy" in reason

    # the ledger: one audit entry, targets masked; driving the finished deployment again sends nothing
    entries = list(app.store.audit_entries(deployment_id=dep.id, action=ACTION))
    assert [e.detail["key"] for e in entries] == ["rollback"] and entries[0].outcome == "ok"
    assert "hunter2" not in json.dumps(entries[0].detail)
    app.rollout.run(dep.id)
    assert len(receiver.posts) == 1


def test_an_alert_lost_to_a_crash_is_sent_when_the_deployment_is_driven_again(
    env: DeployEnv, receiver: Receiver
) -> None:
    deploy(env, "v1")
    receiver.posts.clear()
    app = env.app()
    alerts, app.rollout.alerts = app.rollout.alerts, None  # the process dies before it can send
    dep = app.rollout.run(app.rollout.start("web", "crash", actor="tester").id)
    assert dep.phase is Phase.ROLLED_BACK and receiver.posts == []

    resumed = env.app()  # any later process that drives it (deploy, rollback, reconcile)
    assert resumed.rollout.alerts is not None and alerts is not None
    resumed.rollout.run(dep.id)
    resumed.rollout.run(dep.id)
    assert [p["title"] for p in receiver.posts] == ["[shipwarden] web: crash rolled back automatically"]


def test_an_unreachable_target_is_recorded_and_does_not_stop_the_rollback(
    env: DeployEnv, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy(env, "v1")
    receiver.close()  # nobody listens any more
    app, dep = deploy(env, "sick")
    assert dep.phase is Phase.ROLLED_BACK
    (entry,) = app.store.audit_entries(deployment_id=dep.id, action=ACTION)
    assert entry.outcome == "failed" and entry.detail["targets"][0]["ok"] is False
