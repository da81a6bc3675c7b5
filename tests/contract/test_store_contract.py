"""The deployment store's port (``ports.store.DeploymentStore``), run against the FakeStore the
reconciler's unit tests use, the SQL Store on SQLite and the SQL Store on the machine's MariaDB
(127.0.0.1:3306, a fresh database dropped afterwards; skipped with the reason if unreachable).

What the reconciler relies on: one active deployment per service; a transition persists only from
the state it was read in (optimistic), closing the step it ends; a lease is held by one owner
until it expires; the stable version follows a success; analysis evidence reads back in order;
every change has its audit entry.  ``tests/unit/services/test_fake_store.py`` compares the fake
with the SQLite store on generated sequences; this suite states the contract, once per driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipwarden.adapters.store.engine import make_engine, migrate
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.rollout import OperatorRequest, Phase, Transition
from shipwarden.ports.store import DeploymentStore, NotFound, StoreError
from tests.fakes.clock import FakeClock
from tests.fakes.store import FakeStore
from tests.fixtures.databases import MARIADB, _server_db

pytestmark = pytest.mark.xdist_group("store_contract")


@pytest.fixture(params=["fake", "sqlite", "mariadb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[DeploymentStore, FakeClock]]:
    clock = FakeClock()
    if request.param == "fake":
        yield FakeStore(clock), clock
        return
    sqlite = f"sqlite:///{tmp_path / 'sw.db'}"
    urls: Iterator[str] = iter([sqlite]) if request.param == "sqlite" else _server_db(MARIADB, "mysql")
    url = next(urls)
    engine = make_engine(url)
    try:
        migrate(engine)
        yield Store(engine, clock=clock), clock
    finally:
        engine.dispose()
        next(urls, None)  # MariaDB: drops the database


def create(store: DeploymentStore, service: str = "web", **kw: Any) -> Any:
    args: dict[str, Any] = {
        "service": service, "kind": "deploy", "strategy": "blueGreen", "from_version": "v1",
        "to_version": "v2", "actor": "tester", "policy_digest": "d", "policy_source": "p",
        "plan": {"instances": 2},
    }  # fmt: skip
    return store.create_deployment(**{**args, **kw})


def test_one_active_deployment_per_service(store: tuple[DeploymentStore, FakeClock]) -> None:
    s, _ = store
    dep = create(s)
    assert dep.phase is Phase.PENDING and dep.active and s.get(dep.id) == dep
    assert s.active("web") == dep and s.active("api") is None
    with pytest.raises(StoreError):
        create(s)
    other = create(s, "api")
    assert {d.id for d in s.all_active()} == {dep.id, other.id}
    with pytest.raises(NotFound):
        s.get("d-00000000-000000")


def test_a_transition_persists_only_from_the_state_it_was_read_in(
    store: tuple[DeploymentStore, FakeClock],
) -> None:
    s, clock = store
    dep = create(s)
    clock.advance(1.0)
    moved = s.transition(dep, Transition(Phase.STARTING, "start green"), actor="controller", detail={"n": 1})
    assert moved.phase is Phase.STARTING and moved.reason == "start green"
    with pytest.raises(StoreError):  # ``dep`` is stale now: another controller moved it
        s.transition(dep, Transition(Phase.ROLLING_BACK, "late"), actor="other")
    assert s.get(dep.id).phase is Phase.STARTING
    steps = s.steps(dep.id)
    assert [st.phase for st in steps] == ["pending", "starting"]
    assert steps[0].finished_at is not None and steps[-1].finished_at is None
    assert any(e.deployment_id == dep.id for e in s.audit_entries(deployment_id=dep.id))


def test_the_stable_version_follows_a_success(store: tuple[DeploymentStore, FakeClock]) -> None:
    s, _ = store
    assert s.stable_version("web") == (None, None)
    dep = create(s, from_version=None, to_version="v1")
    done = s.transition(dep, Transition(Phase.SUCCEEDED, "done"), actor="controller")
    assert not done.active and done.phase.terminal and s.active("web") is None
    assert s.stable_version("web")[0] == "v1"
    assert s.history("web")[0].id == dep.id


def test_a_lease_has_one_owner_until_it_expires(store: tuple[DeploymentStore, FakeClock]) -> None:
    s, clock = store
    dep = create(s)
    assert s.acquire_lease(dep.id, "a", 5.0)
    assert s.acquire_lease(dep.id, "a", 5.0)  # renewing one's own
    assert not s.acquire_lease(dep.id, "b", 5.0)
    assert s.renew_leases([dep.id], "b", 5.0) == set()
    assert s.renew_leases([dep.id], "a", 5.0) == {dep.id}
    clock.advance(5.5)
    assert s.acquire_lease(dep.id, "b", 5.0)  # expired: taken over
    s.release_lease(dep.id, "a")  # not the owner: nothing happens
    assert not s.acquire_lease(dep.id, "a", 5.0)
    s.release_lease(dep.id, "b")
    assert s.acquire_lease(dep.id, "a", 5.0)


def test_operator_requests_and_evidence_read_back(store: tuple[DeploymentStore, FakeClock]) -> None:
    s, _ = store
    dep = create(s)
    asked = s.request(dep.id, OperatorRequest.ROLLBACK, "oncall")
    assert asked.operator_request is OperatorRequest.ROLLBACK and asked.operator_actor == "oncall"
    for n, key in enumerate(["pre", "pre", "post"]):
        s.record_analysis(dep.id, key=key, kind="judge", name="judge", at=100.0 + n, step_index=0,
                          canary={"requests": n}, baseline=None)  # fmt: skip
    assert [r["canary"]["requests"] for r in s.analysis_records(dep.id, "pre")] == [0, 1]
    assert [r["key"] for r in s.analysis_records(dep.id)] == ["pre", "pre", "post"]
    s.record_detail(dep.id, {"effect_failure": {"attempts": 1}})
    assert s.steps(dep.id)[-1].detail.get("effect_failure") == {"attempts": 1}
