"""Login lockout atomicity in the store, on real SQLite, MariaDB and PostgreSQL (E5).

The lockout's check-then-act (count the recent attempts, then admit one more) is one locked step
in the store (``AccessRepo.reserve_attempt``): here many threads, each with its own connection,
attempt at once, and no more than the rule allows may get through — first at the store's own
level, then through ``AccessService.login`` with the password hasher counting its evaluations.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shipwarden.bootstrap import Services, build_service
from shipwarden.domain.access import ACCOUNT_LOCKOUT
from shipwarden.services.access import AccessError, parse_binding
from shipwarden.services.access import sessions as sessions_module
from shipwarden.settings import Settings

pytestmark = pytest.mark.integration

THREADS = 40
PASSWORD = "correct horse battery staple"


@pytest.fixture
def svc(tmp_path: Path, database_url: str) -> Iterator[Services]:
    s = build_service(Settings(state_dir=tmp_path / "s", database_url=database_url, policy=tmp_path / "x"))
    yield s
    s.store.engine.dispose()


def _together(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(0..n-1)`` in ``n`` threads released at once; their results (or exceptions)."""
    gate = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        gate.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - reported to the test as a value
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_reservations_admit_no_more_than_the_rule(svc: Services) -> None:
    repo = svc.access.repo
    limit = 5

    def attempt(i: int) -> list[int] | None:
        return repo.reserve_attempt(
            {"user:victim": 0.0, f"ip:192.0.2.{i % 30}": 0.0},
            lambda history: 1000.0 + i if len(history["user:victim"]) < limit else None,
        )

    results = _together(THREADS, attempt)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    admitted = [r for r in results if r is not None]
    assert len(admitted) == limit, results
    assert len(repo.failures("user:victim", 0.0)) == limit  # exactly the admitted ones are recorded
    assert sum(len(repo.failures(f"ip:192.0.2.{k}", 0.0)) for k in range(30)) == limit
    # releasing a success drops its own record (and forgives the account key)
    repo.release_attempt(admitted[0], clear="user:victim")
    assert repo.failures("user:victim", 0.0) == []
    assert sum(len(repo.failures(f"ip:192.0.2.{k}", 0.0)) for k in range(30)) == limit - 1


@pytest.mark.parametrize("sources", [1, 30], ids=["one-address", "thirty-addresses"])
def test_concurrent_wrong_passwords_are_checked_at_most_threshold_times(
    svc: Services, monkeypatch: pytest.MonkeyPatch, sources: int
) -> None:
    svc.access.create_user("setup", "victim", PASSWORD, [parse_binding("viewer")])
    checked: list[str] = []
    real = sessions_module.verify_password

    def counting(stored: str | None, password: str) -> bool:
        checked.append(password)
        return real(stored, password)

    monkeypatch.setattr(sessions_module, "verify_password", counting)
    results = _together(
        THREADS, lambda i: svc.access.login("victim", f"wrong password {i}", f"198.51.100.{i % sources + 1}")
    )
    unexpected = [r for r in results if not isinstance(r, AccessError)]
    assert not unexpected, unexpected
    limit = ACCOUNT_LOCKOUT.threshold
    print(f"{sources} source address(es): {len(checked)} of {THREADS} passwords checked (limit {limit})")
    assert len(checked) <= limit
    # the account is now locked even for the right password, from anywhere
    with pytest.raises(AccessError, match="too many failed attempts for account 'victim'"):
        svc.access.login("victim", PASSWORD, "203.0.113.1")
    assert len(checked) <= limit
