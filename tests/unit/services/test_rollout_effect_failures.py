"""Issue 9, class 1: a deployment whose phase effect fails is never stuck.

Before the fix an exception from the entry effect (a version that cannot start, a router that is
down) escaped the tick before ``decide`` ran: the deployment stayed in its phase forever — abort,
rollback and every deadline unread, every later deploy refused, the controller retrying once a
second.  These tests walk every phase, make its effect raise, and show that an abort still ends
it at once, that the deadlines / the retry budget end it without anyone, that retries back off
(bounded attempts, not one per tick) and that the count survives a controller restart.

Everything runs on the fakes and the fake clock: no process, no sleep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shipwarden.domain.rollout import (
    EFFECT_ATTEMPTS,
    EFFECTS,
    ROLLBACK_ATTEMPTS,
    Effect,
    OperatorRequest,
    Phase,
    effect_backoff,
)
from shipwarden.ports.store import Deployment
from tests.fakes.world import BLUE_GREEN, BLUE_GREEN_ZONES, CANARY, World

BG_PHASES = [
    Phase.PENDING,
    Phase.STARTING,
    Phase.PREVIEW,
    Phase.PROMOTING,
    Phase.SCALE_DOWN_WAIT,
    Phase.SCALING_DOWN,
    Phase.ROLLING_BACK,
]
CANARY_PHASES = [p for p in BG_PHASES if p is not Phase.PREVIEW] + [Phase.CANARY_STEP]
#: zones (E2): the wait between two zones' waves, and a wave's switch (zone a's, with b and c on v1)
ZONE_PHASES = [Phase.ZONE_WAIT, Phase.PROMOTING]
CASES = (
    [("blueGreen", p) for p in BG_PHASES]
    + [("canary", p) for p in CANARY_PHASES]
    + [("zones", p) for p in ZONE_PHASES]
)
STRATEGIES = {
    "blueGreen": BLUE_GREEN,
    "canary": CANARY,
    "zones": BLUE_GREEN_ZONES.replace("minHealthyPerZone: 1", "pauseBetween: 30s"),
}


def test_the_cases_walk_every_phase() -> None:
    assert {p for _, p in CASES} == {p for p in Phase if not p.terminal}


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    made: list[World] = []

    def make(strategy: str = BLUE_GREEN, **kw: Any) -> World:
        w = World(tmp_path / str(len(made)), strategy=strategy, **kw)
        made.append(w)
        return w

    for i in range(8):
        (tmp_path / str(i)).mkdir()
    yield make
    for w in made:
        w.close()


def at_phase(w: World, phase: Phase) -> Deployment:
    """v1 released, then a deployment of v2 that has just entered ``phase`` (effect not yet run)."""
    w.release("v1")
    dep = w.deploy("v2")
    if phase is Phase.ROLLING_BACK:
        w.drive_to(dep.id, Phase.STARTING)
        w.tick(dep.id)  # the new instances are started ...
        w.store.request(dep.id, OperatorRequest.ROLLBACK, "operator")  # ... and then aborted
    return w.drive_to(dep.id, phase)


class Boom(RuntimeError):
    pass


def break_effect(w: World, phase: Phase) -> list[float]:
    """Make ``phase``'s entry effect raise from now on; returns the times it was attempted."""
    attempts: list[float] = []

    def boom(_world: object) -> dict[str, Any]:
        attempts.append(w.clock())
        raise Boom(f"injected: {EFFECTS[phase].value} cannot be done")

    w.svc._effects[EFFECTS[phase]] = boom
    return attempts


def still_stable(w: World, dep: Deployment) -> None:
    """Rolled back: production on v1 only, v2's instances gone, the alert sent."""
    assert dep.phase is Phase.ROLLED_BACK, dep.reason
    assert w.production() == {"v1": 100}
    assert w.versions_running() == {"v1"}
    assert any(d.id == dep.id and d.phase is Phase.ROLLING_BACK for d in w.alerted)
    assert w.unhealthy_routed == []


@pytest.mark.parametrize(("strategy", "phase"), CASES)
def test_abort_ends_a_phase_whose_effect_fails(
    make_world: Callable[..., World], strategy: str, phase: Phase
) -> None:
    w = make_world(STRATEGIES[strategy])
    dep = at_phase(w, phase)
    attempts = break_effect(w, phase)
    for _ in range(3):
        dep = w.tick(dep.id)
    assert dep.phase is phase and attempts, "the effect is failing, the deployment waits in its phase"
    w.store.request(dep.id, OperatorRequest.ROLLBACK, "operator")
    dep = w.tick(dep.id)
    if phase is Phase.ROLLING_BACK:  # already on its way back: the budget ends it (next test)
        assert dep.phase is Phase.ROLLING_BACK
        return
    assert dep.phase in (Phase.ROLLING_BACK, Phase.FAILED), "abort acts on the next tick"
    dep = w.drive(dep.id, max_ticks=20)
    still_stable(w, dep)  # (in SCALING_DOWN the old version's stop failed: it still runs)
    assert "rollback requested by operator" in dep.reason


@pytest.mark.parametrize(("strategy", "phase"), CASES)
def test_deadline_ends_a_phase_whose_effect_fails(
    make_world: Callable[..., World], strategy: str, phase: Phase
) -> None:
    w = make_world(STRATEGIES[strategy])
    dep = at_phase(w, phase)
    attempts = break_effect(w, phase)
    dep = w.drive(dep.id, max_ticks=400)  # no operator: time alone must end it
    budget = ROLLBACK_ATTEMPTS if phase is Phase.ROLLING_BACK else EFFECT_ATTEMPTS
    assert 1 <= len(attempts) <= budget, "bounded retries, not one per tick"
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert all(g >= effect_backoff(n + 1) for n, g in enumerate(gaps)), gaps  # backed off
    if phase is Phase.ROLLING_BACK:
        assert dep.phase is Phase.FAILED
        assert "rollback could not complete" in dep.reason, dep.reason
        assert len(attempts) == ROLLBACK_ATTEMPTS
    else:
        still_stable(w, dep)
    assert "injected" in dep.reason, dep.reason  # the cause is in the outcome ...
    entry = next(
        e for e in w.store.audit_entries(deployment_id=dep.id)
        if e.action in ("rollout.rolling_back", "rollout.failed") and "injected" in e.detail["reason"]
    )  # fmt: skip
    assert entry.detail["effect_failure"]["error"].startswith("Boom: injected")  # ... and the audit


@pytest.mark.parametrize(("strategy", "phase"), CASES)
def test_abort_ends_a_paused_deployment_whose_effect_fails(
    make_world: Callable[..., World], strategy: str, phase: Phase
) -> None:
    w = make_world(STRATEGIES[strategy])
    dep = at_phase(w, phase)
    break_effect(w, phase)
    w.store.request(dep.id, OperatorRequest.PAUSE, "operator")
    dep = w.tick(dep.id)
    assert dep.paused
    w.store.request(dep.id, OperatorRequest.ROLLBACK, "operator")
    dep = w.drive(dep.id, max_ticks=200)
    if phase is Phase.ROLLING_BACK:
        assert dep.phase is Phase.FAILED and "rollback could not complete" in dep.reason
    else:
        still_stable(w, dep)


def test_every_effect_has_a_function(make_world: Callable[..., World]) -> None:
    assert set(make_world().svc._effects) == set(Effect)


def test_the_start_failure_tests_use_the_real_budget() -> None:
    from tests.unit.services.test_rollout_start_failures import BOUND

    assert BOUND == EFFECT_ATTEMPTS
