"""What the inbound-hardening tests share: an API with the change pipeline configured (policy with
gates and delivery, a real git remote, webhook secrets), the real ``shipwarden serve`` process,
signed deliveries of both providers, raw-socket requests, and a digest of every table."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, MetaData, select

from shipwarden.adapters.ci.base import hmac_sha256_hex
from shipwarden.adapters.net import free_port
from shipwarden.bootstrap import Services, build_service, load_policy
from shipwarden.entrypoints.http import create_app
from shipwarden.settings import Settings
from tests.fixtures.git_repos import GitRemote
from tests.integration.http.conftest import Clock

CIRCLE_SECRET = "circle-webhook-secret"
GITHUB_SECRET = "github-webhook-secret"
SECRET_ENV = {
    "SHIPWARDEN_SECRET_CIRCLE_SECRET": CIRCLE_SECRET,
    "SHIPWARDEN_SECRET_GITHUB_SECRET": GITHUB_SECRET,
}

POLICY = """\
apiVersion: shipwarden/v1
team: test
services:
  - name: web
    run: {{command: ["{{python}}", "start.py"], workdir: "releases/{{version}}"}}
    routing: {{port: {port}, previewPort: {preview}}}
    strategy: {{blueGreen: {{}}}}
gates:
  suites:
    unit: {{minTests: 1}}
    integration: {{minTests: 1}}
    security: {{minTests: 1}}
  ci: {{required: [build-and-test]}}
delivery:
  repository: {{url: {repo}, mainBranch: main}}
  services: [web]
  webhooks: {{circleci: CIRCLE_SECRET, github: GITHUB_SECRET}}
"""


@dataclass
class Pipeline:
    """An API process's worth of configuration: state dir, policy, git remote."""

    root: Path
    remote: GitRemote
    settings: Settings

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            **SECRET_ENV,
            "SHIPWARDEN_STATE_DIR": str(self.settings.state_dir),
            "SHIPWARDEN_POLICY": str(self.settings.policy),
            "SHIPWARDEN_ACTOR": "tester",
            "SHIPWARDEN_COOKIE_SECURE": "false",
        }

    def services(self, clock: Clock | None = None) -> Services:
        return build_service(self.settings, load_policy(self.settings.policy), clock=clock)


def make_pipeline(root: Path, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    for k, v in SECRET_ENV.items():
        monkeypatch.setenv(k, v)
    remote = GitRemote(root)
    policy = root / "policy.yaml"
    policy.write_text(POLICY.format(port=free_port(), preview=free_port(), repo=json.dumps(remote.url)))
    settings = Settings(state_dir=root / "state", policy=policy, cookie_secure=False)
    return Pipeline(root, remote, settings)


@dataclass
class InProcess:
    """The ASGI app over an in-process client (fast; what the per-class tests use)."""

    pipeline: Pipeline
    services: Services
    clock: Clock

    def client(self) -> httpx.Client:
        from fastapi.testclient import TestClient

        app = create_app(self.services)
        return TestClient(app, client=("127.0.0.1", 40000), raise_server_exceptions=False)


@pytest.fixture
def pipeline_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcess]:
    p = make_pipeline(tmp_path, monkeypatch)
    clock = Clock()
    clock.now = datetime.now(UTC)  # CircleCI's happened_at is checked against it
    svc = p.services(clock)
    yield InProcess(p, svc, clock)
    svc.store.engine.dispose()


# -- deliveries -------------------------------------------------------------------------------------------
def circleci_doc(
    sha: str, branch: str, *, status: str = "success", event_id: str | None = None
) -> dict[str, Any]:
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "id": event_id or str(uuid.uuid4()),
        "type": "workflow-completed",
        "happened_at": at,
        "webhook": {"id": str(uuid.uuid4()), "name": "shipwarden"},
        "project": {"id": str(uuid.uuid4()), "name": "web", "slug": "github/acme/web"},
        "organization": {"id": str(uuid.uuid4()), "name": "acme"},
        "workflow": {"id": str(uuid.uuid4()), "name": "build-and-test", "created_at": at, "status": status},
        "pipeline": {
            "id": str(uuid.uuid4()),
            "number": 42,
            "created_at": at,
            "vcs": {"provider_name": "github", "revision": sha, "branch": branch},
        },
    }


def circleci_request(
    doc: dict[str, Any] | bytes, secret: str = CIRCLE_SECRET
) -> tuple[dict[str, str], bytes]:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    headers = {
        "content-type": "application/json",
        "circleci-event-type": "workflow-completed",
        "circleci-signature": "v1=" + hmac_sha256_hex(secret, body),
    }
    return headers, body


def workflow_run_doc(
    sha: str, branch: str, *, conclusion: str = "success", run_id: int = 30433642
) -> dict[str, Any]:
    return {
        "action": "completed",
        "workflow_run": {
            "id": run_id,
            "name": "build-and-test",
            "head_branch": branch,
            "head_sha": sha,
            "status": "completed",
            "conclusion": conclusion,
            "run_number": 562,
            "check_suite_id": 414944374,
            "pull_requests": [],
        },
        "repository": {"full_name": "acme/web"},
    }


def github_request(
    doc: dict[str, Any] | bytes,
    *,
    event: str = "workflow_run",
    delivery: str | None = None,
    secret: str = GITHUB_SECRET,
) -> tuple[dict[str, str], bytes]:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    headers = {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery or str(uuid.uuid4()),
        "x-hub-signature-256": "sha256=" + hmac_sha256_hex(secret, body),
    }
    return headers, body


# -- the database, whole ------------------------------------------------------------------------------------
BOOKKEEPING = {"api_tokens": {"last_used_at"}, "sessions": {"last_seen_at"}}
"""Columns that authenticating a request updates (when a token or session was last used): not state."""


_REFLECTED: dict[int, MetaData] = {}


def db_digest(engine: Engine, skip: Collection[str] = ()) -> dict[str, str]:
    """sha256 of every row of every table but ``skip``, per table: equal digests mean nothing was
    written (apart from the ``BOOKKEEPING`` columns that every authenticated request touches)."""
    meta = _REFLECTED.get(id(engine))
    if meta is None:
        meta = _REFLECTED[id(engine)] = MetaData()
        meta.reflect(engine)
    out: dict[str, str] = {}
    with engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            if name in skip:
                continue
            h = hashlib.sha256()
            cols = [c for c in table.columns if c.name not in BOOKKEEPING.get(name, set())]
            order = list(table.primary_key.columns) or cols
            for row in conn.execute(select(*cols).order_by(*order)):
                h.update(repr(tuple(row)).encode())
            out[name] = h.hexdigest()
    return out


def changed_tables(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))


# -- the real server --------------------------------------------------------------------------------------
@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def serve(p: Pipeline) -> Served:
    """``shipwarden serve --insecure-http`` on a free port (the controller off), up and answering."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipwarden.entrypoints.cli", "serve", "--insecure-http", "--no-controller"]
        + ["--port", str(port)],
        env=p.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return Served(proc, port)
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else "timeout"
                raise AssertionError(f"serve did not come up: {err}") from None
            time.sleep(0.2)


def stop(s: Served) -> None:
    os.killpg(s.proc.pid, signal.SIGTERM)
    try:
        s.proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(s.proc.pid, signal.SIGKILL)
        s.proc.wait(10)


def read_status(sock: socket.socket, timeout: float = 30.0) -> tuple[int | None, bytes]:
    """The status code of the first response on ``sock`` (None if the connection ended without one)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, TimeoutError, OSError):
        pass
    if not data.startswith(b"HTTP/1.1 "):
        return None, data
    return int(data[9:12]), data
