"""The rollout state machine, table-driven: every phase's exits, and the safety rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shipwarden.domain.rollout import (
    EFFECT_ATTEMPTS,
    EFFECTS,
    ROLLBACK_ATTEMPTS,
    CanaryStepSpec,
    Check,
    Effect,
    EffectFailure,
    Observation,
    OperatorRequest,
    Phase,
    Plan,
    RolloutState,
    analysis_watches,
    canary_weights,
    decide,
    effect_backoff,
    promote_refusal,
    stable_replacements,
    stable_short,
)

BG = Plan(strategy="blueGreen", instances=2, health_start_timeout_s=30, scale_down_delay_s=10)
CANARY = Plan(
    strategy="canary",
    instances=2,
    health_start_timeout_s=30,
    scale_down_delay_s=10,
    canary_steps=(
        CanaryStepSpec(weight=20),
        CanaryStepSpec(pause=True, pause_s=5),
        CanaryStepSpec(weight=50),
        CanaryStepSpec(pause=True),
    ),
)
OK = Check(True, "fine")
BAD = Check(False, "3/20 failed")


def st(
    phase: Phase, entered: float = 0.0, has_stable: bool = True, step: int = 0, paused: bool = False
) -> RolloutState:
    return RolloutState(phase, entered, has_stable, step, paused)


def obs(now: float = 1.0, **kw: object) -> Observation:
    base: dict[str, object] = {"new_version": "v2", "old_version": "v1", "old_running": 2}
    base.update(kw)
    return Observation(now=now, **base)  # type: ignore[arg-type]


class TestBlueGreenHappyPath:
    def test_walks_every_phase_in_order(self) -> None:
        path = [
            (st(Phase.PENDING), obs()),
            (st(Phase.STARTING), obs(new_running=2, new_healthy=2)),
            (st(Phase.PREVIEW), obs(new_running=2, new_healthy=2, preview_check=OK)),
            (st(Phase.PROMOTING), obs(production_check=OK)),
            (st(Phase.SCALE_DOWN_WAIT, entered=0), obs(now=11)),
            (st(Phase.SCALING_DOWN), obs(old_running=0, old_stopped=True)),
        ]
        got = [decide(s, BG, o).phase for s, o in path]  # type: ignore[union-attr]
        assert got == [
            Phase.STARTING,
            Phase.PREVIEW,
            Phase.PROMOTING,
            Phase.SCALE_DOWN_WAIT,
            Phase.SCALING_DOWN,
            Phase.SUCCEEDED,
        ]

    def test_every_phase_has_an_effect(self) -> None:
        assert set(EFFECTS) == set(Phase)
        assert EFFECTS[Phase.PROMOTING] is Effect.ROUTE_NEW
        assert EFFECTS[Phase.ROLLING_BACK] is Effect.ROUTE_OLD


class TestSafety:
    def test_unhealthy_green_never_gets_traffic(self) -> None:
        assert decide(st(Phase.STARTING), BG, obs(new_running=2, new_healthy=1)) is None
        t = decide(st(Phase.STARTING, entered=0), BG, obs(now=31, new_running=2, new_healthy=1))
        assert t is not None and t.phase is Phase.ROLLING_BACK and "1/2 healthy" in t.reason

    def test_crashing_green_rolls_back_before_traffic(self) -> None:
        t = decide(st(Phase.STARTING), BG, obs(new_dead=1))
        assert t is not None and t.phase is Phase.ROLLING_BACK

    def test_preview_failure_rolls_back(self) -> None:
        t = decide(st(Phase.PREVIEW), BG, obs(preview_check=BAD))
        assert t is not None and t.phase is Phase.ROLLING_BACK and "3/20" in t.reason

    def test_switch_must_be_observed_before_scale_down(self) -> None:
        assert decide(st(Phase.PROMOTING), BG, obs(production_check=None)) is None
        t = decide(st(Phase.PROMOTING), BG, obs(production_check=BAD))
        assert t is not None and t.phase is Phase.ROLLING_BACK

    def test_old_kept_warm_for_scale_down_delay(self) -> None:
        assert decide(st(Phase.SCALE_DOWN_WAIT, entered=0), BG, obs(now=9.9)) is None
        t = decide(st(Phase.SCALE_DOWN_WAIT, entered=0), BG, obs(now=10))
        assert t is not None and t.phase is Phase.SCALING_DOWN

    def test_new_dying_after_switch_rolls_back_while_old_is_warm(self) -> None:
        t = decide(st(Phase.SCALE_DOWN_WAIT), BG, obs(new_dead=1))
        assert t is not None and t.phase is Phase.ROLLING_BACK

    def test_rollback_without_running_stable_fails_loudly_after_traffic_moved(self) -> None:
        t = decide(st(Phase.SCALE_DOWN_WAIT), BG, obs(new_dead=1, old_running=0))
        assert t is not None and t.phase is Phase.FAILED and "no stable version" in t.reason

    def test_first_deploy_failure_stops_new_and_fails(self) -> None:
        t = decide(st(Phase.STARTING, has_stable=False), BG, obs(new_dead=2, old_running=0))
        assert t is not None and t.phase is Phase.ROLLING_BACK
        t2 = decide(st(Phase.ROLLING_BACK, has_stable=False), BG, obs(new_stopped=True, old_running=0))
        assert t2 is not None and t2.phase is Phase.FAILED

    def test_first_deploy_skips_warm_wait(self) -> None:
        t = decide(st(Phase.SCALE_DOWN_WAIT, has_stable=False, entered=0), BG, obs(now=1, old_running=0))
        assert t is not None and t.phase is Phase.SCALING_DOWN

    def test_terminal_phases_never_move(self) -> None:
        for p in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED):
            assert decide(st(p), BG, obs(operator=OperatorRequest.ROLLBACK, new_dead=3)) is None


class TestOperator:
    @pytest.mark.parametrize(
        "phase",
        [
            Phase.PENDING,
            Phase.STARTING,
            Phase.PREVIEW,
            Phase.CANARY_STEP,
            Phase.PROMOTING,
            Phase.SCALE_DOWN_WAIT,
            Phase.SCALING_DOWN,
        ],
    )
    def test_rollback_from_any_phase(self, phase: Phase) -> None:
        t = decide(st(phase), CANARY, obs(operator=OperatorRequest.ROLLBACK))
        assert t is not None and t.phase is Phase.ROLLING_BACK and "operator" in t.reason

    def test_rolling_back_completes_when_new_is_gone(self) -> None:
        assert decide(st(Phase.ROLLING_BACK), BG, obs(new_stopped=False)) is None
        t = decide(st(Phase.ROLLING_BACK), BG, obs(new_stopped=True))
        assert t is not None and t.phase is Phase.ROLLED_BACK

    def test_manual_promotion_waits_for_promote(self) -> None:
        plan = Plan(
            strategy="blueGreen",
            instances=1,
            health_start_timeout_s=5,
            scale_down_delay_s=5,
            auto_promotion=False,
        )
        assert decide(st(Phase.PREVIEW), plan, obs(preview_check=OK)) is None
        t = decide(st(Phase.PREVIEW), plan, obs(preview_check=OK, operator=OperatorRequest.PROMOTE))
        assert t is not None and t.phase is Phase.PROMOTING

    def test_pause_and_resume(self) -> None:
        t = decide(st(Phase.CANARY_STEP), CANARY, obs(operator=OperatorRequest.PAUSE))
        assert t is not None and t.paused is True and t.phase is Phase.CANARY_STEP
        assert decide(st(Phase.CANARY_STEP, paused=True), CANARY, obs(production_check=OK)) is None
        t = decide(st(Phase.CANARY_STEP, paused=True), CANARY, obs(operator=OperatorRequest.RESUME))
        assert t is not None and t.paused is False


class TestCanary:
    def test_steps_advance_after_observed_weights_and_pauses(self) -> None:
        t = decide(st(Phase.STARTING), CANARY, obs(new_healthy=2))
        assert t is not None and (t.phase, t.step_index) == (Phase.CANARY_STEP, 0)
        assert decide(st(Phase.CANARY_STEP, step=0), CANARY, obs()) is None  # weight not yet observed
        t = decide(st(Phase.CANARY_STEP, step=0), CANARY, obs(production_check=OK))
        assert t is not None and t.step_index == 1
        assert decide(st(Phase.CANARY_STEP, step=1, entered=0), CANARY, obs(now=4)) is None
        t = decide(st(Phase.CANARY_STEP, step=1, entered=0), CANARY, obs(now=5))
        assert t is not None and t.step_index == 2

    def test_promote_ends_a_pause_and_the_analysis_after_it_still_runs(self) -> None:
        steps = (CanaryStepSpec(weight=20), CanaryStepSpec(pause=True), CanaryStepSpec(analysis=True))
        plan = replace(CANARY, canary_steps=steps)
        t = decide(st(Phase.CANARY_STEP, step=1), plan, obs(operator=OperatorRequest.PROMOTE))
        assert t is not None and t.phase is Phase.CANARY_STEP and t.step_index == 2
        assert t.consumes_request and "pause ended by operator" in t.reason
        # the analysis step is not skipped: it waits for its verdict like any other
        assert decide(st(Phase.CANARY_STEP, step=2), plan, obs()) is None
        full = decide(st(Phase.CANARY_STEP, step=2), plan, obs(operator=OperatorRequest.PROMOTE_FULL))
        assert full is not None and full.phase is Phase.PROMOTING and "remaining steps skipped" in full.reason

    def test_promote_accepts_an_analysis_that_paused_inconclusive(self) -> None:
        steps = (CanaryStepSpec(weight=20), CanaryStepSpec(analysis=True), CanaryStepSpec(weight=50))
        plan = replace(CANARY, canary_steps=steps)
        paused = RolloutState(Phase.CANARY_STEP, 0, True, 1, paused=True, paused_by_analysis=True)
        assert decide(paused, plan, obs()) is None  # held for a human
        t = decide(paused, plan, obs(operator=OperatorRequest.PROMOTE))
        assert t is not None and t.step_index == 2 and t.paused is False and t.consumes_request
        assert "analysis ended by operator" in t.reason
        # an operator pause at a setWeight step is not ended by promote (only --full moves it)
        at_weight = RolloutState(Phase.CANARY_STEP, 0, True, 0, paused=True)
        assert decide(at_weight, plan, obs(operator=OperatorRequest.PROMOTE, production_check=OK)) is None
        full = decide(at_weight, plan, obs(operator=OperatorRequest.PROMOTE_FULL))
        assert full is not None and full.phase is Phase.PROMOTING and full.paused is False

    def test_promote_is_refused_where_it_would_end_no_pause(self) -> None:
        assert promote_refusal(CANARY, Phase.CANARY_STEP, 1) is None  # a pause: fine
        why = promote_refusal(CANARY, Phase.CANARY_STEP, 0)
        assert why is not None and "step 1 of 4 (setWeight)" in why and "--full" in why
        analysed = replace(CANARY, canary_steps=(CanaryStepSpec(analysis=True),))
        assert promote_refusal(analysed, Phase.CANARY_STEP, 0) is None  # accepting an analysis
        assert promote_refusal(CANARY, Phase.STARTING, 0) is not None
        assert promote_refusal(CANARY, Phase.PROMOTING, 3) is None
        assert promote_refusal(BG, Phase.PREVIEW, 0) is None  # blue-green: promote a waiting preview

    def test_indefinite_pause_waits_for_promote(self) -> None:
        assert decide(st(Phase.CANARY_STEP, step=3, entered=0), CANARY, obs(now=1e6)) is None
        t = decide(st(Phase.CANARY_STEP, step=3), CANARY, obs(operator=OperatorRequest.PROMOTE))
        assert t is not None and t.phase is Phase.PROMOTING

    def test_failed_analysis_rolls_back(self) -> None:
        t = decide(st(Phase.CANARY_STEP), CANARY, obs(analysis=Check(False, "error rate 0.2 > 0.01")))
        assert t is not None and t.phase is Phase.ROLLING_BACK and "0.2" in t.reason

    def test_first_deployment_has_no_baseline_and_skips_steps(self) -> None:
        t = decide(st(Phase.STARTING, has_stable=False), CANARY, obs(new_healthy=2, old_running=0))
        assert t is not None and t.phase is Phase.PROMOTING and "no baseline" in t.reason

    def test_weights_carry_through_pauses(self) -> None:
        assert [canary_weights(CANARY, i) for i in range(4)] == [20, 20, 50, 50]

    def test_known_good_rollback_skips_steps(self) -> None:
        plan = Plan(
            strategy="canary",
            instances=2,
            health_start_timeout_s=5,
            scale_down_delay_s=5,
            canary_steps=CANARY.canary_steps,
            skip_steps=True,
        )
        t = decide(st(Phase.STARTING), plan, obs(new_healthy=2))
        assert t is not None and t.phase is Phase.PROMOTING


class TestStableCapacity:
    PLAN = replace(CANARY, min_available=2)

    def test_traffic_holds_while_the_stable_fleet_is_below_min_available(self) -> None:
        ready = {"production_check": OK}
        assert decide(st(Phase.CANARY_STEP, step=0), self.PLAN, obs(old_running=1, **ready)) is None
        t = decide(st(Phase.CANARY_STEP, step=0), self.PLAN, obs(old_running=2, **ready))
        assert t is not None and t.step_index == 1
        # without a floor the same observation moves on
        assert decide(st(Phase.CANARY_STEP, step=0), CANARY, obs(old_running=1, **ready)) is not None

    def test_the_hold_says_why(self) -> None:
        why = stable_short(st(Phase.CANARY_STEP, step=1), self.PLAN, obs(old_running=1))
        assert why == "holding at step 2: 1 stable instance(s) running < minAvailable 2"
        assert stable_short(st(Phase.CANARY_STEP, step=1), self.PLAN, obs(old_running=2)) is None
        assert stable_short(st(Phase.PROMOTING), self.PLAN, obs(old_running=0)) is None

    def test_a_hold_still_rolls_back_on_failure_and_at_the_deadline(self) -> None:
        bad = obs(old_running=1, production_check=OK, analysis=Check(False, "errors"))
        t = decide(st(Phase.CANARY_STEP, step=0), self.PLAN, bad)
        assert t is not None and t.phase is Phase.ROLLING_BACK
        late = obs(now=10_000, old_running=1, production_check=OK)
        t = decide(st(Phase.CANARY_STEP, step=0), self.PLAN, late)
        assert t is not None and t.phase is Phase.ROLLING_BACK and "progress deadline" in t.reason

    def test_dead_stable_instances_are_replaced_within_a_budget(self) -> None:
        assert stable_replacements(self.PLAN, Phase.CANARY_STEP, True, dead_stable=1, replaced=0) == 1
        assert stable_replacements(self.PLAN, Phase.STARTING, True, dead_stable=2, replaced=0) == 2
        assert stable_replacements(self.PLAN, Phase.CANARY_STEP, True, dead_stable=2, replaced=3) == 1
        assert stable_replacements(self.PLAN, Phase.CANARY_STEP, True, dead_stable=1, replaced=4) == 0
        assert stable_replacements(self.PLAN, Phase.PROMOTING, True, dead_stable=1, replaced=0) == 0
        assert stable_replacements(self.PLAN, Phase.CANARY_STEP, False, dead_stable=1, replaced=0) == 0
        assert stable_replacements(CANARY, Phase.CANARY_STEP, True, dead_stable=1, replaced=0) == 0
        assert stable_replacements(BG, Phase.PREVIEW, True, dead_stable=1, replaced=0) == 0


class TestGatesAndDeadlines:
    GATED = Plan(
        strategy="canary",
        instances=2,
        health_start_timeout_s=30,
        scale_down_delay_s=10,
        canary_steps=(CanaryStepSpec(weight=20), CanaryStepSpec(weight=50)),
        confirm_weight_increase=True,
        confirm_promotion=True,
        confirm_timeout_s=60,
        progress_deadline_s=100,
    )

    def test_weight_increase_waits_for_confirmation(self) -> None:
        assert decide(st(Phase.CANARY_STEP, step=0), self.GATED, obs(production_check=OK)) is None
        t = decide(
            st(Phase.CANARY_STEP, step=0),
            self.GATED,
            obs(production_check=OK, operator=OperatorRequest.CONFIRM),
        )
        assert t is not None and t.step_index == 1 and "confirmed" in t.reason
        assert t.consumes_request  # one confirm opens one gate

    def test_a_step_without_a_gate_leaves_a_pending_confirm_for_the_next_gate(self) -> None:
        ungated = replace(self.GATED, confirm_weight_increase=False)
        t = decide(
            st(Phase.CANARY_STEP, step=0), ungated, obs(production_check=OK, operator=OperatorRequest.CONFIRM)
        )
        assert t is not None and t.step_index == 1 and not t.consumes_request
        t = decide(
            st(Phase.CANARY_STEP, step=1), ungated, obs(production_check=OK, operator=OperatorRequest.CONFIRM)
        )
        assert t is not None and t.phase is Phase.PROMOTING and t.consumes_request

    def test_unconfirmed_gate_times_out_into_rollback(self) -> None:
        t = decide(st(Phase.CANARY_STEP, step=1, entered=0), self.GATED, obs(now=61, production_check=OK))
        assert t is not None and t.phase is Phase.ROLLING_BACK and "before promotion" in t.reason

    def test_progress_deadline_aborts_a_stuck_step(self) -> None:
        plan = Plan(
            strategy="canary",
            instances=2,
            health_start_timeout_s=30,
            scale_down_delay_s=10,
            canary_steps=(CanaryStepSpec(analysis=True),),
            progress_deadline_s=100,
        )
        assert decide(st(Phase.CANARY_STEP, entered=0), plan, obs(now=99)) is None
        t = decide(st(Phase.CANARY_STEP, entered=0), plan, obs(now=101))
        assert t is not None and t.phase is Phase.ROLLING_BACK and "progress deadline" in t.reason

    def test_indefinite_pause_is_not_stuck(self) -> None:
        assert decide(st(Phase.CANARY_STEP, step=3, entered=0), CANARY, obs(now=10_000)) is None

    def test_inconclusive_pauses_and_the_deadline_still_runs(self) -> None:
        plan = Plan(
            strategy="canary",
            instances=2,
            health_start_timeout_s=30,
            scale_down_delay_s=10,
            canary_steps=(CanaryStepSpec(analysis=True),),
            progress_deadline_s=100,
        )
        t = decide(st(Phase.CANARY_STEP), plan, obs(analysis_inconclusive="no data"))
        assert t is not None and t.paused is True and "inconclusive" in t.reason
        paused = RolloutState(Phase.CANARY_STEP, 0, True, 0, paused=True, paused_by_analysis=True)
        t = decide(paused, plan, obs(now=101, analysis_inconclusive="no data"))
        assert t is not None and t.phase is Phase.ROLLING_BACK

    def test_analysis_step_passes_only_on_a_passing_verdict(self) -> None:
        plan = Plan(
            strategy="canary",
            instances=2,
            health_start_timeout_s=30,
            scale_down_delay_s=10,
            canary_steps=(CanaryStepSpec(analysis=True),),
        )
        assert decide(st(Phase.CANARY_STEP), plan, obs()) is None
        t = decide(st(Phase.CANARY_STEP), plan, obs(analysis=OK))
        assert t is not None and t.phase is Phase.PROMOTING

    def test_post_promotion_analysis_keeps_old_warm(self) -> None:
        plan = Plan(
            strategy="blueGreen",
            instances=2,
            health_start_timeout_s=30,
            scale_down_delay_s=1,
            post_promotion_analysis=True,
        )
        assert decide(st(Phase.SCALE_DOWN_WAIT, entered=0), plan, obs(now=50)) is None
        t = decide(st(Phase.SCALE_DOWN_WAIT, entered=0), plan, obs(now=50, analysis=BAD))
        assert t is not None and t.phase is Phase.ROLLING_BACK


def test_analysis_watches_a_weight_step_when_an_analysis_comes_at_or_after_it() -> None:
    from dataclasses import replace

    assert not any(analysis_watches(CANARY, i) for i in range(4))  # no analysis: probes stay strict
    stepped = replace(CANARY, canary_steps=(*CANARY.canary_steps[:2], CanaryStepSpec(analysis=True)))
    assert [analysis_watches(stepped, i) for i in range(3)] == [True, True, True]
    late = replace(
        CANARY,
        canary_steps=(CanaryStepSpec(weight=20), CanaryStepSpec(analysis=True), CanaryStepSpec(weight=50)),
    )
    assert [analysis_watches(late, i) for i in range(3)] == [True, True, False]
    background = replace(CANARY, background_analysis_from=2)
    assert [analysis_watches(background, i) for i in range(4)] == [False, False, True, True]


def test_a_resumed_controller_probes_before_the_start_timeout_can_fail_the_rollout() -> None:
    """Health streaks live in memory: after a crash the start timeout may already be over, but
    the new controller must see ``healthyThreshold`` probes before calling the version unhealthy."""
    from dataclasses import replace

    plan = replace(BG, healthy_threshold=2)
    late = st(Phase.STARTING, entered=0.0)
    first_look = Observation(now=60.0, new_running=2, new_healthy=0, old_running=2, health_probes=1)
    assert decide(late, plan, first_look) is None  # one probe: too early to judge
    healthy = replace(first_look, health_probes=2, new_healthy=2)
    assert decide(late, plan, healthy).phase is Phase.PREVIEW  # type: ignore[union-attr]
    sick = replace(first_look, health_probes=2)
    t = decide(late, plan, sick)
    assert t is not None and t.phase is Phase.ROLLING_BACK and "0/2 healthy" in t.reason


def test_the_start_timeout_runs_from_when_the_instances_were_started() -> None:
    """Killed right after entering STARTING, before any instance was started: the resumed
    controller starts them much later, and they get the whole start time-out from then."""
    late = st(Phase.STARTING, entered=0.0)
    booting = Observation(now=40.0, new_running=2, old_running=2, health_probes=3, new_started_at=35.0)
    assert decide(late, BG, booting) is None  # 5 s since they started, timeout 30 s
    stuck = Observation(now=70.0, new_running=2, old_running=2, health_probes=50, new_started_at=35.0)
    t = decide(late, BG, stuck)
    assert t is not None and t.phase is Phase.ROLLING_BACK


class TestEffectFailures:
    """A failing effect moves nothing forward; the ways out stay open (issue 9, class 1)."""

    FAIL = EffectFailure(attempts=2, first_at=0.0, last_at=1.0, what="start_new", error="PlatformError: x")

    def test_nothing_moves_forward_while_the_effect_fails(self) -> None:
        o = obs(new_running=2, new_healthy=2, preview_check=OK, production_check=OK, effect_failure=self.FAIL)
        for p in (Phase.PENDING, Phase.STARTING, Phase.PREVIEW, Phase.PROMOTING, Phase.ROLLING_BACK):
            assert decide(st(p), BG, replace(o, new_stopped=True)) is None, p

    def test_abort_is_read_whatever_the_effect_raises(self) -> None:
        for p in (Phase.PENDING, Phase.STARTING, Phase.PREVIEW, Phase.PROMOTING, Phase.SCALE_DOWN_WAIT):
            t = decide(st(p), BG, obs(operator=OperatorRequest.ROLLBACK, effect_failure=self.FAIL))
            assert t is not None and t.phase is Phase.ROLLING_BACK, p

    def test_the_retry_budget_rolls_back_then_fails_a_rollback(self) -> None:
        spent = replace(self.FAIL, attempts=EFFECT_ATTEMPTS)
        t = decide(st(Phase.PREVIEW), BG, obs(effect_failure=spent))
        assert t is not None and t.phase is Phase.ROLLING_BACK and "failed 6 time(s)" in t.reason
        assert decide(st(Phase.ROLLING_BACK), BG, obs(effect_failure=spent)) is None  # retried longer
        t = decide(st(Phase.ROLLING_BACK), BG, obs(effect_failure=replace(spent, attempts=ROLLBACK_ATTEMPTS)))
        assert (
            t is not None and t.phase is Phase.FAILED and t.reason.startswith("rollback could not complete")
        )

    def test_the_start_timeout_still_runs(self) -> None:
        t = decide(st(Phase.STARTING), BG, obs(now=31.0, effect_failure=self.FAIL))
        assert t is not None and t.phase is Phase.ROLLING_BACK and "PlatformError: x" in t.reason

    def test_unobserved_abort_does_not_claim_there_is_no_stable_version(self) -> None:
        t = decide(st(Phase.PROMOTING), BG, obs(old_running=0, observed=False, effect_failure=self.FAIL,
                                                 operator=OperatorRequest.ROLLBACK))  # fmt: skip
        assert t is not None and t.phase is Phase.ROLLING_BACK

    def test_backoff_doubles_up_to_its_cap(self) -> None:
        assert [effect_backoff(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
        assert self.FAIL.retry_at == 3.0


class TestScalingDown:
    def test_an_abort_once_the_old_version_is_gone_lets_it_finish(self) -> None:
        t = decide(
            st(Phase.SCALING_DOWN),
            BG,
            obs(old_running=0, old_stopped=True, operator=OperatorRequest.ROLLBACK),
        )
        assert t is not None and t.phase is Phase.SUCCEEDED and "rollback requested" in t.reason

    def test_the_goal_is_seen_even_when_the_stop_raised(self) -> None:
        f = EffectFailure(1, 0.0, 0.0, "stop_old", "PlatformError: y")
        t = decide(st(Phase.SCALING_DOWN), BG, obs(old_running=0, effect_failure=f))
        assert t is not None and t.phase is Phase.SUCCEEDED


def test_a_timed_pause_held_past_its_duration_meets_the_progress_deadline() -> None:
    plan = replace(CANARY, progress_deadline_s=60, min_available=2)
    held = obs(now=10 + 5 + 61, old_running=1)  # step 2 is a 5 s pause; 1 < minAvailable 2
    t = decide(st(Phase.CANARY_STEP, entered=10, step=1), plan, held)
    assert t is not None and t.phase is Phase.ROLLING_BACK and t.reason.startswith("progress deadline")
    assert decide(st(Phase.CANARY_STEP, entered=10, step=1), plan, replace(held, now=10 + 5 + 59)) is None
