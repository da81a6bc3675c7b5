"""An API service on a temporary state dir with an injected clock, and helpers to act as each role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shipwarden.bootstrap import Services, build_service, load_policy
from shipwarden.entrypoints.http import create_app
from shipwarden.entrypoints.http.deps import SESSION_COOKIE
from shipwarden.security.totp import time_step, totp_at
from shipwarden.services.access import parse_binding
from shipwarden.settings import Settings
from tests.fixtures.deploy_env import make_env

PASSWORD = "correct horse battery staple"


class Clock:
    """Time moves only when a test says so."""

    def __init__(self) -> None:
        self.now = datetime(2031, 3, 4, 9, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@dataclass
class Api:
    services: Services
    clock: Clock
    root: Path
    secrets: dict[str, str] = field(default_factory=dict)

    def client(self, ip: str = "127.0.0.1") -> TestClient:
        return TestClient(create_app(self.services), client=(ip, 40000), raise_server_exceptions=True)

    def user(self, name: str, *roles: str, mfa: bool = True, cidrs: tuple[str, ...] = ()) -> None:
        """Create a user (through the service, as the bootstrap admin would) and enrol MFA."""
        self.services.access.create_user("setup", name, PASSWORD, [parse_binding(r) for r in roles], cidrs)
        if mfa:
            c = self.client()
            self.login(c, name)
            r = c.post("/auth/mfa/enroll")
            assert r.status_code == 200, r.text
            self.secrets[name] = r.json()["secret"]
            r = c.post("/auth/mfa/confirm", json={"code": self.code(name)})
            assert r.status_code == 200, r.text
            self.clock.advance(seconds=30)  # the next code is a new step

    def code(self, name: str, offset_steps: int = 0) -> str:
        return totp_at(self.secrets[name], time_step(self.clock()) + offset_steps)

    def login(self, c: TestClient, name: str, password: str = PASSWORD) -> int:
        r = c.post("/auth/login", json={"user": name, "password": password})
        return r.status_code

    def session(self, name: str, *, fresh_mfa: bool = True, ip: str = "127.0.0.1") -> TestClient:
        c = self.client(ip)
        assert self.login(c, name) == 200
        if fresh_mfa and name in self.secrets:
            r = c.post("/auth/mfa/verify", json={"code": self.code(name)})
            assert r.status_code == 200, r.text
            self.clock.advance(seconds=30)
        assert c.cookies.get(SESSION_COOKIE)
        return c

    def audit(self, **filters: object) -> list[dict[str, object]]:
        return self.services.audit.query(limit=100000, **filters)


def make_api(tmp_path: Path, **settings: object) -> Api:
    env = make_env(tmp_path)
    clock = Clock()
    s = Settings(
        state_dir=tmp_path / "state",
        policy=env.policy_path,
        cookie_secure=False,
        **settings,  # type: ignore[arg-type]
    )
    return Api(build_service(s, load_policy(env.policy_path), clock=clock), clock, tmp_path)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    a = make_api(tmp_path, trusted_proxies=["10.99.0.0/16"])
    yield a
    a.services.store.engine.dispose()
