"""A real store (SQLite, MariaDB, PostgreSQL) with the incident use cases wired to it, and a clock
tests move by hand; alerting and on-call are the stand-ins of ``tests/fakes/incidents.py``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shipwarden.adapters.store.audit_repo import AuditRepo
from shipwarden.adapters.store.engine import make_engine, migrate
from shipwarden.adapters.store.incidents_repo import IncidentRepo
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.audit import AuditChain
from shipwarden.domain.rollout import Phase, Transition
from shipwarden.ports.store import Deployment
from shipwarden.services.incidents import IncidentService
from tests.fakes.incidents import FakeAlerting, FakeOnCall, FakeRollbacks

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, tz=UTC)

    def advance(self, seconds: float) -> datetime:
        self.t += seconds
        return self.now()


@dataclass
class World:
    clock: Clock
    store: Store
    audit: AuditRepo
    chain: AuditChain
    repo: IncidentRepo
    oncall: FakeOnCall
    rollbacks: FakeRollbacks
    incidents: IncidentService
    alerting: FakeAlerting

    def deploy(
        self,
        service: str,
        to: str,
        *,
        frm: str | None = "v1",
        phases: tuple[Phase, ...] = (Phase.STARTING, Phase.CANARY_STEP, Phase.PROMOTING, Phase.SUCCEEDED),
        gap: float = 30.0,
        commit: str | None = None,
        digest: str = "d" * 64,
        kind: str = "deploy",
        detail: dict[str, Any] | None = None,
    ) -> Deployment:
        dep = self.store.create_deployment(
            service=service, kind=kind, strategy="canary", from_version=frm, to_version=to, actor="alice",
            policy_digest=digest, policy_source="team.yaml", plan={}, commit_sha=commit,
        )  # fmt: skip
        for p in phases:
            self.clock.advance(gap)
            extra = dict(detail or {})
            if p is Phase.CANARY_STEP:
                extra.setdefault("weights", {frm or "none": 80, to: 20})
            dep = self.store.transition(dep, Transition(p, f"to {p.value}"), actor="controller", detail=extra)
        return dep


@pytest.fixture
def world_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sw.db'}"


def make_world(url: str) -> Iterator[World]:
    engine = make_engine(url)
    migrate(engine)
    clock = Clock()
    store = Store(engine, clock=clock)
    audit = AuditRepo(store)
    chain = AuditChain(clock.now, checkpoint_every=1000)
    repo = IncidentRepo(store)
    oncall = FakeOnCall({"checkout": ["carol"], None: ["olivia"]})
    rollbacks = FakeRollbacks()
    incidents = IncidentService(repo, audit, oncall=oncall, rollbacks=rollbacks, clock=clock.now)
    yield World(clock, store, audit, chain, repo, oncall, rollbacks, incidents,
                FakeAlerting(audit, chain, incidents))  # fmt: skip
    engine.dispose()


@pytest.fixture
def world(world_url: str) -> Iterator[World]:
    yield from make_world(world_url)


@pytest.fixture
def any_db_world(database_url: str) -> Iterator[World]:
    yield from make_world(database_url)
