"""The reconciler (``services/rollout.py``) against the fakes: every phase, every transition,
operator requests in every phase, deadlines, and a crash between every pair of store writes.

The pure ``decide`` has its own table tests (``tests/unit/domain/test_rollout.py``); these drive
the real RolloutService — effects, observation, the real SQLite store, leases, alerts — on a
FakePlatform and FakeRouter with a fake clock, so a whole rollout takes milliseconds.  Effects
that raise are in ``test_rollout_effect_failures.py``; generated sequences in
``test_rollout_properties.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipwarden.adapters.store.repository import Store
from shipwarden.domain.rollout import (
    CanaryStepSpec,
    Check,
    EffectFailure,
    Observation,
    OperatorRequest,
    Phase,
    Plan,
    RolloutState,
    ZoneCount,
    decide,
)
from shipwarden.ports.store import Deployment
from shipwarden.services.rollout import DeployError
from tests.fakes.platform import CRASH, SICK, Behaviour
from tests.fakes.world import BLUE_GREEN, BLUE_GREEN_ZONES, CANARY, CANARY_ZONES, World

P = Phase
#: every transition the state machine has (self-transitions — pause, resume — aside)
ALL_TRANSITIONS = {
    (P.PENDING, P.STARTING), (P.PENDING, P.ROLLING_BACK),
    (P.STARTING, P.PREVIEW), (P.STARTING, P.CANARY_STEP), (P.STARTING, P.PROMOTING),
    (P.STARTING, P.ROLLING_BACK),
    (P.PREVIEW, P.PROMOTING), (P.PREVIEW, P.ROLLING_BACK),
    (P.CANARY_STEP, P.CANARY_STEP), (P.CANARY_STEP, P.PROMOTING), (P.CANARY_STEP, P.ROLLING_BACK),
    (P.CANARY_STEP, P.FAILED),
    (P.PROMOTING, P.SCALE_DOWN_WAIT), (P.PROMOTING, P.ROLLING_BACK), (P.PROMOTING, P.FAILED),
    (P.SCALE_DOWN_WAIT, P.SCALING_DOWN), (P.SCALE_DOWN_WAIT, P.ROLLING_BACK), (P.SCALE_DOWN_WAIT, P.FAILED),
    (P.SCALING_DOWN, P.SUCCEEDED), (P.SCALING_DOWN, P.ROLLING_BACK),
    (P.ROLLING_BACK, P.ROLLED_BACK), (P.ROLLING_BACK, P.FAILED),
    # zones (E2): a wave per zone; a later wave that fails with nothing to go back to fails
    (P.PROMOTING, P.STARTING), (P.PROMOTING, P.ZONE_WAIT),
    (P.ZONE_WAIT, P.STARTING), (P.ZONE_WAIT, P.ROLLING_BACK), (P.ZONE_WAIT, P.FAILED),
    (P.ZONE_WAIT, P.SCALE_DOWN_WAIT),
    (P.STARTING, P.FAILED), (P.PREVIEW, P.FAILED),
}  # fmt: skip
#: in the table for a state no rollout reaches (a wait after the last zone): no scenario takes it
UNREACHABLE = {(P.ZONE_WAIT, P.SCALE_DOWN_WAIT)}

CANARY_NO_MIN = CANARY.replace("minAvailable: 1", "minAvailable: 0")
MANUAL = BLUE_GREEN.replace("scaleDownDelay: 5s", "scaleDownDelay: 5s\n        autoPromotion: false")
CANARY_GATES = (
    CANARY.replace(
        "pause: {duration: 10s}\n          - setWeight: 50", "pause: {}\n          - setWeight: 50"
    )
    + "        confirm: {beforePromotion: true, timeout: 30s}\n"
)


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    made: list[World] = []

    def make(strategy: str = BLUE_GREEN, **kw: Any) -> World:
        root = tmp_path / f"w{len(made)}"
        root.mkdir()
        w = World(root, strategy=strategy, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def healthy_end(w: World, dep: Deployment) -> None:
    """What must hold whenever a deployment ended: no leak, no unhealthy instance ever routed."""
    assert dep.phase.terminal, dep
    assert w.unhealthy_routed == [], w.unhealthy_routed
    w.assert_no_leak(dep)


# -- every phase, every transition ---------------------------------------------------------------
def s_blue_green(w: World) -> Deployment:
    w.release("v1")
    return w.drive(w.deploy("v2").id)


def s_canary(w: World) -> Deployment:
    w.release("v1")
    return w.drive(w.deploy("v2").id)


def s_first_canary(w: World) -> Deployment:
    return w.drive(w.deploy("v1").id)  # no baseline: straight to promotion


def s_rollback_deployment(w: World) -> Deployment:
    w.release("v1")
    w.release("v2")
    return w.drive(w.svc.rollback("web", actor="tester").id)  # a known-good version: no steps


def s_crash(w: World) -> Deployment:
    w.release("v1")
    w.platform.behaviours["v2"] = CRASH
    return w.drive(w.deploy("v2").id)


def s_first_crash(w: World) -> Deployment:
    w.platform.behaviours["v1"] = CRASH
    return w.drive(w.deploy("v1").id)


def s_sick(w: World) -> Deployment:
    w.release("v1")
    w.platform.behaviours["v2"] = SICK
    return w.drive(w.deploy("v2").id)


def s_preview_fails(w: World) -> Deployment:
    w.release("v1")
    w.platform.behaviours["v2"] = Behaviour(status=500)  # healthy, but answers 500
    return w.drive(w.deploy("v2").id)


def s_canary_traffic_does_not_move(w: World) -> Deployment:
    w.release("v1")
    dep = w.drive_to(w.deploy("v2").id, P.CANARY_STEP)
    w.router.ignore_applies = True  # the data plane does not take the canary's weights ...
    return _until_rolling_back(w, dep.id)


def s_switch_not_observed(w: World) -> Deployment:
    w.release("v1")
    dep = w.drive_to(w.deploy("v2").id, P.PROMOTING)
    w.router.ignore_applies = True
    return _until_rolling_back(w, dep.id)


def _until_rolling_back(w: World, dep_id: str) -> Deployment:
    """... until the rollback began; then the data plane takes tables again (the way back)."""
    w.drive_to(dep_id, P.ROLLING_BACK)
    w.router.ignore_applies = False
    return w.drive(dep_id)


def _kill(w: World, version: str, n: int | None = None) -> None:
    victims = [i for i in w.platform.all() if i.version == version]
    for i in victims[:n]:
        w.platform.kill(i.id)


def s_switch_not_observed_and_no_stable(w: World) -> Deployment:
    w.release("v1")
    dep = w.drive_to(w.deploy("v2").id, P.PROMOTING)
    _kill(w, "v1")
    w.router.ignore_applies = True
    return w.drive(dep.id)  # nothing to roll back to: FAILED at once


def s_canary_dies_without_stable(w: World) -> Deployment:
    w.release("v1")
    dep = w.drive_to(w.deploy("v2").id, P.CANARY_STEP)
    w.tick(dep.id)
    _kill(w, "v1")
    _kill(w, "v2", 1)
    return w.drive(dep.id)


def s_new_dies_while_warm(w: World) -> Deployment:
    w.release("v1")
    dep = w.drive_to(w.deploy("v2").id, P.SCALE_DOWN_WAIT)
    _kill(w, "v2", 1)
    return w.drive(dep.id)


def s_new_dies_while_warm_and_no_stable(w: World) -> Deployment:
    w.release("v1")
    dep = w.drive_to(w.deploy("v2").id, P.SCALE_DOWN_WAIT)
    _kill(w, "v1")
    _kill(w, "v2", 1)
    return w.drive(dep.id)


def s_abort_while_scaling_down(w: World) -> Deployment:
    w.release("v1")
    dep = w.drive_to(w.deploy("v2").id, P.SCALING_DOWN)
    w.platform.faults.fail("stop", times=1)  # the old version is still there ...
    w.store.request(dep.id, OperatorRequest.ROLLBACK, "operator")  # ... so it can take traffic back
    return w.drive(dep.id)


def s_scaling_down_blind(w: World) -> Deployment:
    w.release("v1")
    dep = w.drive_to(w.deploy("v2").id, P.SCALING_DOWN)
    w.platform.faults.fail("instances")  # the platform cannot even be listed: nothing is known
    return w.drive(dep.id, max_ticks=400)


def s_abort_pending(w: World) -> Deployment:
    w.release("v1")
    dep = w.deploy("v2")
    w.store.request(dep.id, OperatorRequest.ROLLBACK, "operator")
    return w.drive(dep.id)


def s_pause_resume(w: World) -> Deployment:
    w.release("v1")
    dep = w.drive_to(w.deploy("v2").id, P.CANARY_STEP)
    w.store.request(dep.id, OperatorRequest.PAUSE, "operator")
    for _ in range(30):  # paused: no progress, no deadline
        dep = w.tick(dep.id)
    assert dep.phase is P.CANARY_STEP and dep.step_index == 0 and dep.paused
    w.store.request(dep.id, OperatorRequest.RESUME, "operator")
    return w.drive(dep.id)


def _zone(w: World, version: str, zone: str) -> list[str]:
    return [i.id for i in w.platform.all() if i.version == version and i.zone == zone]


def s_zones(w: World) -> Deployment:
    w.release("v1")
    return w.drive(w.deploy("v2").id)


ZONES_CONFIRM = BLUE_GREEN_ZONES.replace(
    "minHealthyPerZone: 1", "minHealthyPerZone: 1\n        pauseBetween: confirm"
)


def _release_confirming(w: World, version: str) -> None:
    """Release ``version`` to the end, confirming each zone as an operator would."""
    dep = w.deploy(version)
    for _ in range(2000):
        dep = w.tick(dep.id)
        if dep.phase.terminal:
            break
        if dep.phase is P.ZONE_WAIT and w.store.get(dep.id).operator_request is None:
            w.store.request(dep.id, OperatorRequest.CONFIRM, "operator")
    assert dep.phase is P.SUCCEEDED, dep.reason


def s_zones_confirmed(w: World) -> Deployment:
    _release_confirming(w, "v1")
    dep = w.drive_to(w.deploy("v2").id, P.ZONE_WAIT)
    for _ in range(30):  # waits by design: no deadline
        dep = w.tick(dep.id)
    assert dep.phase is P.ZONE_WAIT and dep.wave == 0, dep
    w.svc.request("web", OperatorRequest.CONFIRM, actor="operator")
    dep = w.drive_to(dep.id, P.ZONE_WAIT, max_ticks=200) if w.store.get(dep.id).wave == 0 else dep
    for _ in range(200):  # the second pause
        dep = w.tick(dep.id)
        if dep.phase is P.ZONE_WAIT and dep.wave == 1:
            break
    w.svc.request("web", OperatorRequest.CONFIRM, actor="operator")
    return w.drive(dep.id)


def s_zones_later_zone_fails(w: World) -> Deployment:
    """Zone c's new instances die after zones a and b serve v2: every zone goes back to v1."""
    w.release("v1")
    dep = w.deploy("v2")
    for _ in range(500):
        dep = w.tick(dep.id)
        if dep.wave == 2 and dep.phase is P.PREVIEW:
            break
    assert w.production() == {"v2": 67, "v1": 33}, w.production()
    for iid in _zone(w, "v2", "c"):
        w.platform.kill(iid)
    return w.drive(dep.id)


def s_zones_confirm_aborted(w: World) -> Deployment:
    _release_confirming(w, "v1")
    dep = w.drive_to(w.deploy("v2").id, P.ZONE_WAIT)
    w.store.request(dep.id, OperatorRequest.ROLLBACK, "operator")
    return w.drive(dep.id)


def s_zones_no_stable_later(w: World) -> Deployment:
    """Zone b fails to start once zone a serves v2 and v1 is gone everywhere: nothing to go back to."""
    _release_confirming(w, "v1")
    dep = w.drive_to(w.deploy("v2").id, P.ZONE_WAIT)
    _kill(w, "v1")
    w.platform.faults.fail("start")  # no replacement either
    w.svc.request("web", OperatorRequest.CONFIRM, actor="operator")
    return w.drive(dep.id)


def s_zones_wait_new_dies_no_stable(w: World) -> Deployment:
    _release_confirming(w, "v1")
    dep = w.drive_to(w.deploy("v2").id, P.ZONE_WAIT)
    w.platform.faults.fail("start")
    _kill(w, "v1")
    _kill(w, "v2", 1)
    return w.drive(dep.id)


def s_zones_preview_no_stable(w: World) -> Deployment:
    w.release("v1")
    dep = w.deploy("v2")
    for _ in range(500):
        dep = w.tick(dep.id)
        if dep.wave == 1 and dep.phase is P.PREVIEW:
            break
    _kill(w, "v1")
    w.platform.faults.fail("start")
    w.platform.behaviours["v2"] = Behaviour(status=500)
    return w.drive(dep.id)


def s_zones_start_no_stable(w: World) -> Deployment:
    w.release("v1")
    dep = w.deploy("v2")
    for _ in range(500):
        dep = w.tick(dep.id)
        if dep.wave == 1 and dep.phase is P.STARTING:
            break
    _kill(w, "v1")
    w.platform.faults.fail("start")
    return w.drive(dep.id)


SCENARIOS: dict[str, tuple[str, Callable[[World], Deployment], Phase]] = {
    "blue-green": (BLUE_GREEN, s_blue_green, P.SUCCEEDED),
    "canary": (CANARY, s_canary, P.SUCCEEDED),
    "first canary": (CANARY, s_first_canary, P.SUCCEEDED),
    "rollback deployment": (BLUE_GREEN, s_rollback_deployment, P.SUCCEEDED),
    "crash at start": (BLUE_GREEN, s_crash, P.ROLLED_BACK),
    "first crash at start": (BLUE_GREEN, s_first_crash, P.FAILED),
    "never healthy": (BLUE_GREEN, s_sick, P.ROLLED_BACK),
    "preview answers 500": (BLUE_GREEN, s_preview_fails, P.ROLLED_BACK),
    "canary weights not taken": (CANARY, s_canary_traffic_does_not_move, P.ROLLED_BACK),
    "switch not observed": (BLUE_GREEN, s_switch_not_observed, P.ROLLED_BACK),
    "switch not observed, stable dead": (BLUE_GREEN, s_switch_not_observed_and_no_stable, P.FAILED),
    "canary dies, stable dead": (CANARY_NO_MIN, s_canary_dies_without_stable, P.FAILED),
    "new dies while warm": (BLUE_GREEN, s_new_dies_while_warm, P.ROLLED_BACK),
    "new dies while warm, stable dead": (BLUE_GREEN, s_new_dies_while_warm_and_no_stable, P.FAILED),
    "abort while scaling down": (BLUE_GREEN, s_abort_while_scaling_down, P.ROLLED_BACK),
    "scaling down cannot see": (BLUE_GREEN, s_scaling_down_blind, P.FAILED),
    "abort before start": (BLUE_GREEN, s_abort_pending, P.ROLLED_BACK),
    "pause and resume": (CANARY, s_pause_resume, P.SUCCEEDED),
    "blue-green zones": (BLUE_GREEN_ZONES, s_zones, P.SUCCEEDED),
    "canary zones": (CANARY_ZONES, s_zones, P.SUCCEEDED),
    "zones confirmed": (ZONES_CONFIRM, s_zones_confirmed, P.SUCCEEDED),
    "zones: later zone fails": (BLUE_GREEN_ZONES, s_zones_later_zone_fails, P.ROLLED_BACK),
    "zones: aborted between zones": (ZONES_CONFIRM, s_zones_confirm_aborted, P.ROLLED_BACK),
    "zones: later zone, stable gone": (ZONES_CONFIRM, s_zones_no_stable_later, P.FAILED),
    "zones: new dies between zones, stable gone": (ZONES_CONFIRM, s_zones_wait_new_dies_no_stable, P.FAILED),
    "zones: later preview, stable gone": (BLUE_GREEN_ZONES, s_zones_preview_no_stable, P.FAILED),
    "zones: later start, stable gone": (BLUE_GREEN_ZONES, s_zones_start_no_stable, P.FAILED),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(make_world: Callable[..., World], name: str) -> None:
    strategy, scenario, outcome = SCENARIOS[name]
    w = make_world(strategy)
    dep = scenario(w)
    assert dep.phase is outcome, dep.reason
    if not w.platform.faults.permanent:
        healthy_end(w, dep)
    if outcome is P.SUCCEEDED:
        assert w.production() == {dep.to_version: 100}
        assert w.store.stable_version("web")[0] == dep.to_version
    if outcome is P.ROLLED_BACK:
        assert w.production() == {dep.from_version: 100}


def test_the_scenarios_take_every_transition_and_visit_every_phase(make_world: Callable[..., World]) -> None:
    seen: set[tuple[Phase, Phase]] = set()
    for strategy, scenario, _ in SCENARIOS.values():
        w = make_world(strategy)
        dep = scenario(w)
        seen |= {(P(a), P(b)) for a, b in w.transitions(dep.id)}
    assert ALL_TRANSITIONS - UNREACHABLE - seen == set()
    assert {p for pair in seen for p in pair} == set(Phase)
    assert {(a, b) for a, b in seen if a is b} >= {(P.CANARY_STEP, P.CANARY_STEP)}  # incl. pause/resume


PLANS = st.builds(
    Plan,
    strategy=st.sampled_from(["blueGreen", "canary"]),
    instances=st.integers(1, 3),
    health_start_timeout_s=st.sampled_from([5.0, 30.0]),
    scale_down_delay_s=st.sampled_from([0.0, 10.0]),
    auto_promotion=st.booleans(),
    canary_steps=st.lists(
        st.sampled_from(
            [CanaryStepSpec(weight=20), CanaryStepSpec(pause=True, pause_s=5), CanaryStepSpec(pause=True)]
        ),
        min_size=1,
        max_size=3,
    ).map(tuple),
    progress_deadline_s=st.sampled_from([10.0, 600.0]),
    skip_steps=st.booleans(),
    confirm_promotion=st.booleans(),
    min_available=st.integers(0, 2),
    zones=st.sampled_from([(), ("a", "b", "c")]),
    zone_waves=st.booleans(),
    pause_between=st.sampled_from(["none", "confirm", "timed"]),
    pause_between_s=st.sampled_from([0.0, 20.0]),
    min_healthy_per_zone=st.integers(0, 2),
)
ZONE_COUNTS = st.dictionaries(
    st.sampled_from(["a", "b", "c"]), st.builds(ZoneCount, st.integers(0, 2), st.integers(0, 2))
)
CHECKS = st.none() | st.builds(Check, ok=st.booleans(), detail=st.just("x"))


@settings(max_examples=1500, deadline=None)
@given(
    plan=PLANS,
    phase=st.sampled_from([p for p in Phase if not p.terminal]),
    has_stable=st.booleans(),
    step=st.integers(0, 2),
    paused=st.booleans(),
    now=st.sampled_from([1.0, 50.0, 1000.0]),
    counts=st.tuples(*[st.integers(0, 3)] * 4),
    checks=st.tuples(CHECKS, CHECKS, CHECKS),
    operator=st.none() | st.sampled_from(list(OperatorRequest)),
    gone=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    failure=st.none()
    | st.builds(EffectFailure, st.integers(1, 12), st.just(0.0), st.just(1.0), st.just("x"), st.just("y")),
    wave=st.integers(0, 2),
    zones=ZONE_COUNTS,
)
def test_decide_takes_no_transition_outside_the_table(
    plan: Plan, phase: Phase, has_stable: bool, step: int, paused: bool, now: float,
    counts: tuple[int, int, int, int], checks: tuple[Check | None, ...], operator: OperatorRequest | None,
    gone: tuple[bool, bool, bool], failure: EffectFailure | None, wave: int, zones: dict[str, ZoneCount],
) -> None:  # fmt: skip
    wave = min(wave, plan.waves - 1)
    state = RolloutState(phase, 0.0, has_stable, min(step, len(plan.canary_steps) - 1), paused, wave=wave)
    obs = Observation(
        now=now, new_running=counts[0], new_healthy=counts[1], new_dead=counts[2], old_running=counts[3],
        preview_check=checks[0], production_check=checks[1], analysis=checks[2], operator=operator,
        new_stopped=gone[0], old_stopped=gone[1], observed=gone[2], effect_failure=failure, zones=zones,
    )  # fmt: skip
    t = decide(state, plan, obs)
    assert t is None or t.phase is phase or (phase, t.phase) in ALL_TRANSITIONS, (phase, t)
    if t is not None and t.wave is not None:  # a wave only ever moves to the next zone
        assert t.wave == wave + 1 < plan.waves and t.phase is P.STARTING, (phase, t)


# -- operator requests in every phase ---------------------------------------------------------
_LATER = [P.PROMOTING, P.SCALE_DOWN_WAIT, P.SCALING_DOWN, P.ROLLING_BACK]
PHASES = {
    "blueGreen": [P.PENDING, P.STARTING, P.PREVIEW, *_LATER],
    "canary": [P.PENDING, P.STARTING, P.CANARY_STEP, *_LATER],
    # zones: the middle zone's (b) preview and switch, the wait before it, a rollback (the other
    # phases act as in blue-green; kept few for the CI budget)
    "zones": [P.PREVIEW, P.PROMOTING, P.ZONE_WAIT, P.ROLLING_BACK],
}


STRATEGY = {"blueGreen": MANUAL, "canary": CANARY_GATES, "zones": ZONES_CONFIRM}
#: the wave the operator's request comes in (zones: zone b's, the one between two others)
WAVE = {P.STARTING: 1, P.PREVIEW: 1, P.PROMOTING: 1, P.ZONE_WAIT: 0}


def _finish(w: World, dep_id: str) -> Deployment:
    """Drive to the end; what waits for an operator by design (a manual pause, a gate, manual
    promotion, an operator's pause) is resumed or promoted after a while, as a person would."""
    last, still = None, 0
    for _ in range(600):
        dep = w.tick(dep_id, seconds=2.0)
        if dep.phase.terminal:
            return dep
        now = (dep.phase, dep.step_index, dep.paused)
        still = still + 1 if now == last else 0
        last = now
        if still >= 5:
            nudge = OperatorRequest.RESUME if dep.paused else (
                OperatorRequest.PROMOTE_FULL if dep.phase is P.CANARY_STEP else OperatorRequest.PROMOTE
            )  # fmt: skip
            w.store.request(dep.id, nudge, "operator")
            still = 0
    raise AssertionError(f"not terminal: {w.store.get(dep_id)}")


def _release(w: World, version: str) -> None:
    dep = _finish(w, w.deploy(version).id)
    assert dep.phase is P.SUCCEEDED, dep.reason


@pytest.mark.parametrize("request_", list(OperatorRequest), ids=lambda r: r.value)
@pytest.mark.parametrize(
    ("strategy", "phase"), [(s, p) for s, phases in PHASES.items() for p in phases], ids=lambda x: str(x)
)
def test_operator_request_in_every_phase(
    make_world: Callable[..., World], strategy: str, phase: Phase, request_: OperatorRequest
) -> None:
    w = make_world(STRATEGY[strategy])
    _release(w, "v1")
    dep = w.deploy("v2")
    if phase is P.ROLLING_BACK:
        w.drive_to(dep.id, P.STARTING)
        w.tick(dep.id)
        w.store.request(dep.id, OperatorRequest.ROLLBACK, "operator")
    wave = WAVE.get(phase, 0) if strategy == "zones" else 0
    for _ in range(300):  # to the phase, helping past manual steps on the way
        dep = w.store.get(dep.id)
        if dep.phase is phase and (dep.wave == wave or phase in (P.SCALE_DOWN_WAIT, P.ROLLING_BACK)):
            break
        if dep.phase is P.ZONE_WAIT and dep.operator_request is None:
            w.store.request(dep.id, OperatorRequest.CONFIRM, "operator")
        if dep.phase is P.PREVIEW or (dep.phase is P.CANARY_STEP and phase is not P.CANARY_STEP):
            if dep.operator_request is None:
                nudge = (
                    OperatorRequest.PROMOTE_FULL if dep.phase is P.CANARY_STEP else OperatorRequest.PROMOTE
                )
                w.store.request(dep.id, nudge, "operator")
        w.tick(dep.id)
    assert dep.phase is phase and (dep.wave == wave or phase in (P.SCALE_DOWN_WAIT, P.ROLLING_BACK)), dep
    try:
        w.svc.request("web", request_, actor="operator")
    except DeployError as refused:  # refusals are precise and change nothing
        assert w.store.get(dep.id).operator_request is None and str(refused)
        assert (request_, phase) in REFUSED[strategy], (request_, phase, refused)
        return
    assert (request_, phase) not in REFUSED[strategy]
    after = w.tick(dep.id)
    if request_ is OperatorRequest.ROLLBACK and phase is not P.ROLLING_BACK:
        assert after.phase in (P.ROLLING_BACK, P.FAILED), "a rollback acts on the next tick"
    if request_ is OperatorRequest.PAUSE:
        assert after.paused and after.phase is phase, "a pause holds the phase on the next tick"
    end = _finish(w, dep.id)
    healthy_end(w, end)
    if request_ is OperatorRequest.ROLLBACK:
        assert end.phase is P.ROLLED_BACK and w.production() == {"v1": 100}, end.reason
    elif phase is P.ROLLING_BACK:
        assert end.phase is P.ROLLED_BACK and w.production() == {"v1": 100}, end.reason
    else:
        assert end.phase is P.SUCCEEDED and w.production() == {"v2": 100}, end.reason


REFUSED: dict[str, set[tuple[OperatorRequest, Phase]]] = {
    "blueGreen": {(OperatorRequest.ROLLBACK, P.SCALING_DOWN)},
    "zones": {(OperatorRequest.ROLLBACK, P.SCALING_DOWN)},
    "canary": {
        (OperatorRequest.ROLLBACK, P.SCALING_DOWN),
        (OperatorRequest.PROMOTE, P.PENDING),
        (OperatorRequest.PROMOTE, P.STARTING),
        (OperatorRequest.PROMOTE, P.CANARY_STEP),  # step 1 is a setWeight step
    },
}


def test_an_abort_that_comes_too_late_lets_the_scale_down_finish(make_world: Callable[..., World]) -> None:
    """Once the old version is stopped there is nothing to abort back to: the deployment succeeds
    (its reason says so) instead of failing with v2 serving and v1 left on record as stable."""
    w = make_world()
    w.release("v1")
    dep = w.drive_to(w.deploy("v2").id, P.SCALING_DOWN)
    w.store.request(dep.id, OperatorRequest.ROLLBACK, "operator")  # recorded; the tick stops v1 first
    dep = w.drive(dep.id)
    assert dep.phase is P.SUCCEEDED and w.store.stable_version("web") == ("v2", "v1"), dep.reason
    assert "rollback requested when the old version was already stopped" in dep.reason
    healthy_end(w, dep)


# -- deadlines ---------------------------------------------------------------------------------
def test_the_start_timeout_rolls_back_a_version_that_never_gets_healthy(
    make_world: Callable[..., World],
) -> None:
    w = make_world()
    w.release("v1")
    w.platform.behaviours["v2"] = SICK
    dep = w.drive(w.deploy("v2").id)
    assert dep.phase is P.ROLLED_BACK and dep.reason.startswith("health: 0/2 healthy after 20s")


def test_the_progress_deadline_rolls_back_a_canary_that_holds_too_long(
    make_world: Callable[..., World],
) -> None:
    """Holding for minAvailable is not waiting by design: the progress deadline ends it."""
    w = make_world(CANARY.replace("minAvailable: 1", "minAvailable: 2"))
    w.release("v1")
    dep = w.drive_to(w.deploy("v2").id, P.CANARY_STEP)
    while len(list(w.store.audit_entries(deployment_id=dep.id, action="rollout.stable_replaced"))) < 4:
        _kill(w, "v1", 1)  # the stable version keeps dying until its replacement budget is spent
        dep = w.tick(dep.id)
    _kill(w, "v1", 1)  # one more: 1 stable instance < minAvailable 2, held
    dep = w.drive(dep.id)
    assert dep.phase is P.ROLLED_BACK, dep.reason
    assert dep.reason.startswith("progress deadline: 60s in canary_step"), dep.reason


def test_a_manual_pause_waits_past_the_deadline_until_promoted(make_world: Callable[..., World]) -> None:
    w = make_world(CANARY_GATES)
    _release(w, "v1")
    dep = w.drive_to(w.deploy("v2").id, P.CANARY_STEP)
    for _ in range(200):
        dep = w.tick(dep.id)
    assert dep.phase is P.CANARY_STEP and dep.step_index == 1, "a pause without duration waits"
    w.store.request(dep.id, OperatorRequest.PROMOTE, "operator")
    end = _finish(w, dep.id)
    assert end.phase is P.SUCCEEDED


def test_an_unconfirmed_gate_rolls_back_after_its_timeout(make_world: Callable[..., World]) -> None:
    w = make_world(CANARY_GATES)
    _release(w, "v1")
    dep = w.drive_to(w.deploy("v2").id, P.CANARY_STEP)
    for _ in range(200):
        dep = w.tick(dep.id)
        if dep.phase is P.CANARY_STEP and dep.step_index == 1 and dep.operator_request is None:
            w.store.request(dep.id, OperatorRequest.PROMOTE, "operator")  # past the manual pause
        if dep.phase.terminal:
            break
    assert dep.phase is P.ROLLED_BACK and "no confirmation before promotion within 30s" in dep.reason


# -- a crash between every pair of store writes -----------------------------------------------
WRITES = (
    "create_deployment", "transition", "record_detail", "request", "acquire_lease", "release_lease",
    "audit", "mark_traffic_restored", "record_analysis",
)  # fmt: skip


class Crash(BaseException):
    """The controller process dies (not an Exception: nothing in it may catch this)."""


def count_writes(store: Store, crash_at: int | None = None) -> list[str]:
    """Instrument ``store``: every write is counted; the ``crash_at``-th one is never made."""
    done: list[str] = []
    crashed: list[str] = []
    for name in WRITES:
        real = getattr(store, name)

        def write(*a: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            if crash_at is not None and len(done) + 1 == crash_at and not crashed:
                crashed.append(_name)
                raise Crash(_name)
            done.append(_name)
            return _real(*a, **kw)

        setattr(store, name, write)
    return done


def doom_zone_c(w: World) -> None:
    """Version ``c-crash`` exits at once in zone c only (its zones a and b switch first)."""
    start = w.platform.start

    def start_dooming(spec: Any, version: str, count: int, zone: str | None = None) -> Any:
        started = start(spec, version, count, zone)
        if version == "c-crash" and zone == "c":
            for i in started:
                w.platform.kill(i.id)
        return started

    w.platform.start = start_dooming  # type: ignore[method-assign]


def _crashing_run(w: World, version: str, crash_at: int | None) -> tuple[Deployment, list[str]]:
    dep = w.deploy(version)
    done = count_writes(w.store, crash_at)
    crashed = False
    for _ in range(500):
        try:
            dep = w.tick(dep.id)
        except Crash:
            crashed = True
            w.restart()  # a new controller process resumes it once the lease expired
        if dep.phase.terminal:
            break
        dep = w.store.get(dep.id)
    assert crashed or crash_at is None or crash_at > len(done)
    return w.store.get(dep.id), done


@pytest.mark.parametrize(
    ("strategy", "version", "outcome", "stride"),
    [
        (BLUE_GREEN, "v2", P.SUCCEEDED, 1), (CANARY, "v2", P.SUCCEEDED, 1),
        (BLUE_GREEN, "crash", P.ROLLED_BACK, 1),
        # zones: three waves repeat the same writes; every fourth gap keeps it fast (CI budget)
        (BLUE_GREEN_ZONES, "v2", P.SUCCEEDED, 4), (BLUE_GREEN_ZONES, "c-crash", P.ROLLED_BACK, 4),
    ],
    ids=["blue-green", "canary", "rollback", "zones", "zones: last zone fails"],
)  # fmt: skip
def test_a_crash_between_any_two_store_writes_is_resumed(
    make_world: Callable[..., World], strategy: str, version: str, outcome: Phase, stride: int
) -> None:
    baseline = make_world(strategy, behaviours={"crash": CRASH})
    baseline.release("v1")
    doom_zone_c(baseline)
    dep, writes = _crashing_run(baseline, version, None)
    assert dep.phase is outcome and len(writes) > 5
    phases = [s.phase for s in baseline.store.steps(dep.id)]
    for k in range(1, len(writes) + 2, stride):  # before the first write, between each pair, after the last
        w = make_world(strategy, behaviours={"crash": CRASH})
        w.release("v1")
        doom_zone_c(w)
        resumed, _ = _crashing_run(w, version, k)
        assert resumed.phase is outcome, (k, writes[k - 1 : k + 1], resumed.reason)
        healthy_end(w, resumed)
        assert [s.phase for s in w.store.steps(resumed.id)] == phases, k  # each step once, in order
        assert w.production() == {resumed.to_version if outcome is P.SUCCEEDED else "v1": 100}
        w.close()
