"""The FakeStore answers exactly as the real Store does (differential, generated sequences).

Random sequences of the store operations the reconciler uses — create, transition (current or
stale), operator requests, leases, step details, audit — run on the real Store (SQLite, migrated
by Alembic) and on the FakeStore with one clock; after every operation both must agree on every
deployment, step, stable version, audit entry and refusal.  This is what lets the generated
reconciler sequences (``test_rollout_properties.py``) run on the fake.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from shipwarden.adapters.store.repository import Store
from shipwarden.domain.rollout import OperatorRequest, Phase, Transition
from shipwarden.ports.store import Deployment, StoreError
from tests.fakes.clock import FakeClock
from tests.fakes.store import FakeStore
from tests.fakes.world import _migrated_copy

IDX = st.integers(0, 5)


class SameAnswers(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="shipwarden-store-diff-"))
        self.clock = FakeClock()
        self.engine = _migrated_copy(self.tmp / "store.db")
        self.stores: tuple[Any, Any] = (Store(self.engine, clock=self.clock), FakeStore(self.clock))
        self.ids: list[tuple[str, str]] = []  # (real id, fake id) in creation order
        self.seen: list[tuple[Deployment, Deployment]] = []  # snapshots: stale ones included

    def both(
        self, op: str, args: Callable[[int], tuple[Any, ...]] = lambda _n: (), **kw: Any
    ) -> tuple[Any, Any]:
        """Run ``op`` on the real store (n=0) and the fake (n=1); a refusal must be the same."""
        out: list[Any] = []
        for n, store in enumerate(self.stores):
            try:
                out.append(getattr(store, op)(*args(n), **kw))
            except StoreError as exc:
                out.append(type(exc))
        real, fake = out
        if isinstance(real, type) or isinstance(fake, type):
            assert real == fake, (op, real, fake)
        return real, fake

    def _ids(self, i: int) -> tuple[str, str] | None:
        return self.ids[i % len(self.ids)] if self.ids else None

    @rule(seconds=st.sampled_from([0.5, 3.0, 20.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(
        service=st.sampled_from(["a", "b"]),
        kind=st.sampled_from(["deploy", "rollback"]),
        stable=st.sampled_from([None, "v1"]),
    )
    def create(self, service: str, kind: str, stable: str | None) -> None:
        kw: dict[str, Any] = {
            "service": service,
            "kind": kind,
            "strategy": "blueGreen",
            "from_version": stable,
            "to_version": "v2",
            "actor": "tester",
            "policy_digest": "d",
            "policy_source": "p",
            "plan": {"x": 1},
        }
        real, fake = self.both("create_deployment", **kw)
        if not isinstance(real, type):
            self.ids.append((real.id, fake.id))
            self.seen.append((real, fake))

    @rule(
        i=st.integers(0, 30),
        phase=st.sampled_from(list(Phase)),
        step=st.none() | st.integers(0, 2),
        paused=st.none() | st.booleans(),
        consumes=st.booleans(),
        verdict=st.booleans(),
    )
    def transition(
        self, i: int, phase: Phase, step: int | None, paused: bool | None, consumes: bool, verdict: bool
    ) -> None:
        if not self.seen:
            return
        real_dep, fake_dep = self.seen[i % len(self.seen)]  # the latest read, or a stale one
        t = Transition(phase, f"to {phase.value}", step_index=step, paused=paused, consumes_request=consumes)
        detail = {"analysis_verdict": {"ok": True}} if verdict else {"instances": {"n": 1}}
        out = []
        for store, dep in zip(self.stores, (real_dep, fake_dep), strict=True):
            try:
                out.append(store.transition(dep, t, actor="controller", detail=detail))
            except StoreError as exc:
                out.append(type(exc))
        if not isinstance(out[0], type):
            self.seen.append((out[0], out[1]))
        else:
            assert out[0] == out[1], out

    @rule(i=IDX, request=st.sampled_from(list(OperatorRequest)))
    def request(self, i: int, request: OperatorRequest) -> None:
        if ids := self._ids(i):
            self.both("request", lambda n: (ids[n], request, "operator"))

    @rule(i=IDX, owner=st.sampled_from(["x", "y"]), ttl=st.sampled_from([0.5, 1.0, 10.0]))
    def lease(self, i: int, owner: str, ttl: float) -> None:
        if ids := self._ids(i):
            real, fake = self.both("acquire_lease", lambda n: (ids[n], owner, ttl))
            assert real == fake

    @rule(i=IDX, owner=st.sampled_from(["x", "y"]))
    def release(self, i: int, owner: str) -> None:
        if ids := self._ids(i):
            self.both("release_lease", lambda n: (ids[n], owner))

    @rule(i=IDX, n=st.integers(0, 3), analysis=st.booleans())
    def record(self, i: int, n: int, analysis: bool) -> None:
        detail: dict[str, Any] = {"analysis": {"p": n}} if analysis else {"effect_failure": None, "k": n}
        if ids := self._ids(i):
            self.both("record_detail", lambda n: (ids[n], detail))

    @rule(i=IDX)
    def restored(self, i: int) -> None:
        if ids := self._ids(i):
            self.both("mark_traffic_restored", lambda n: (ids[n],))

    @rule(i=IDX)
    def audit(self, i: int) -> None:
        if ids := self._ids(i):
            for store, dep_id in zip(self.stores, ids, strict=True):
                store.audit(
                    actor="c",
                    action="rollout.stable_replaced",
                    service="a",
                    deployment_id=dep_id,
                    detail={"started": ["x"]},
                )

    @invariant()
    def same_state(self) -> None:
        real, fake = self.stores
        for rid, fid in self.ids:
            r, f = real.get(rid), fake.get(fid)
            assert replace(r, id="") == replace(f, id=""), (r, f)
            assert real.steps(rid) == fake.steps(fid)
        for service in ("a", "b"):
            assert real.stable_version(service) == fake.stable_version(service)
            ra, fa = real.active(service), fake.active(service)
            assert (ra is None) == (fa is None)
        mapping = {dep_id: n for n, pair in enumerate(self.ids) for dep_id in pair}

        def log(store: Any) -> list[tuple[Any, ...]]:
            return [
                (e.actor, e.action, e.outcome, e.service, mapping.get(e.deployment_id), e.detail)
                for e in store.audit_entries()
            ]

        assert log(real) == log(fake)
        for rid, fid in self.ids:
            assert len(list(real.audit_entries(deployment_id=rid, action="rollout.stable_replaced"))) == len(
                list(fake.audit_entries(deployment_id=fid, action="rollout.stable_replaced"))
            )

    def teardown(self) -> None:
        self.engine.dispose()
        shutil.rmtree(self.tmp, ignore_errors=True)


SameAnswers.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestSameAnswers = SameAnswers.TestCase


def test_a_lease_is_taken_over_only_after_it_expired_in_both() -> None:
    """The boundary the generated sequences reach only by luck: now == expiry is still held."""
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as tmp:
        engine = _migrated_copy(Path(tmp) / "store.db")
        for store in (Store(engine, clock=clock), FakeStore(clock)):
            dep = store.create_deployment(
                service="a", kind="deploy", strategy="blueGreen", from_version=None, to_version="v1",
                actor="t", policy_digest="d", policy_source="p", plan={},
            )  # fmt: skip
            start = clock()
            assert store.acquire_lease(dep.id, "x", 0.5)
            clock.t = start + 0.5
            assert not store.acquire_lease(dep.id, "y", 5.0), type(store)
            clock.t = start + 0.75
            assert store.acquire_lease(dep.id, "y", 5.0), type(store)
            clock.t = start
        engine.dispose()
