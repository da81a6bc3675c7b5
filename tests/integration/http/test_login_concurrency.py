"""The login lockout under concurrency, through a real ``shipwarden serve`` socket (E5).

Sequentially an account locks after ``threshold`` (5) failed passwords.  Here 40 wrong
passwords for one account arrive at once — from one address, and spread over 30 addresses
(``X-Forwarded-For`` from a trusted proxy on loopback) — and the number of passwords the
server actually *evaluated* must still be at most the threshold.  Each evaluation of a wrong
password is one ``auth.login`` ``denied`` audit entry and one 401; every other request must be
refused before the password is looked at (423 account locked / 429 address throttled).

The store behind the server is each of SQLite, MariaDB and PostgreSQL.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
import pytest

from shipwarden.bootstrap import build_service
from shipwarden.domain.access import ACCOUNT_LOCKOUT
from shipwarden.services.access import parse_binding
from shipwarden.settings import Settings
from tests.fixtures.serve import run_serve

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
REQUESTS = 40


def _storm(url: str, addresses: list[str]) -> list[int]:
    """REQUESTS wrong-password logins for 'victim', released together; their status codes."""
    clients = [httpx.Client(base_url=url, trust_env=False, timeout=120) for _ in range(REQUESTS)]
    for c in clients:  # open every connection first, so the logins themselves start together
        assert c.get("/healthz").status_code == 200
    gate = threading.Barrier(REQUESTS)
    codes: list[int] = [0] * REQUESTS

    def one(i: int) -> None:
        gate.wait()
        r = clients[i].post(
            "/auth/login",
            json={"user": "victim", "password": f"wrong password {i}"},
            headers={"X-Forwarded-For": addresses[i % len(addresses)]},
        )
        codes[i] = r.status_code

    threads = [threading.Thread(target=one, args=(i,)) for i in range(REQUESTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    return codes


@pytest.mark.parametrize("sources", [1, 30], ids=["one-address", "thirty-addresses"])
def test_concurrent_wrong_passwords_evaluate_at_most_the_threshold(
    tmp_path: Path, database_url: str, sources: int
) -> None:
    env = {
        **os.environ,
        "SHIPWARDEN_STATE_DIR": str(tmp_path / "state"),
        "SHIPWARDEN_POLICY": str(tmp_path / "none.yaml"),
        "SHIPWARDEN_DATABASE_URL": database_url,
        "SHIPWARDEN_TRUSTED_PROXIES": '["127.0.0.0/8"]',
    }
    state, policy = tmp_path / "state", tmp_path / "none.yaml"
    setup = build_service(Settings(state_dir=state, database_url=database_url, policy=policy))
    try:
        setup.access.create_user("setup", "victim", PASSWORD, [parse_binding("viewer")])
        addresses = [f"198.51.100.{i + 1}" for i in range(sources)]
        with run_serve(env) as url:
            codes = _storm(url, addresses)
        evaluated = [
            e
            for e in setup.audit.query(limit=100000, actor="victim", action="auth.login", outcome="denied")
            if e["detail"].get("reason") == "bad credentials"
        ]
    finally:
        setup.store.engine.dispose()
    limit = ACCOUNT_LOCKOUT.threshold
    print(f"{sources} source address(es): {len(evaluated)} of {REQUESTS} passwords evaluated (limit {limit})")
    assert sorted(set(codes)) <= [401, 423, 429], codes
    assert codes.count(401) == len(evaluated), (codes, len(evaluated))
    assert len(evaluated) <= limit, f"{len(evaluated)} passwords evaluated; at most {limit} may be"
    assert len(evaluated) >= 1
