"""The rollout state machine — pure, and the only place that decides.

Why level-triggered
-------------------
A rollout spans minutes and several processes may drive it (the CLI that
started it, a controller that resumes it after a crash, an operator who rolls
it back from another terminal).  So nothing here remembers what it *did*; it
looks at what *is*.  Each tick the reconciler gathers an ``Observation``
(instances and their health, the routing table the data plane reports, the
results of the last verification probes, operator requests, the clock) and
asks ``decide`` what phase the deployment should be in.  The reconciler
persists a transition *before* it performs the phase's entry effect, and the
entry effects are idempotent ("make production route to v2", not "flip
production").  A crash between the two simply re-runs the effect on resume.

Phases and effects
------------------
Every ``Phase`` has one idempotent entry effect (``EFFECTS``) and an exit
rule in ``decide``.  Blue-green walks::

    PENDING → STARTING → PREVIEW → PROMOTING → SCALE_DOWN_WAIT → SCALING_DOWN → SUCCEEDED

and a canary replaces PREVIEW/PROMOTING with one CANARY_STEP per declared
step (set weight / pause) before PROMOTING.  Any failure before traffic moved
goes to ROLLING_BACK, which routes production back to the stable version
(whose instances were never stopped), then stops the new ones.

Safety rules encoded here, not in the reconciler:

* a new version that is not fully healthy never receives production traffic;
* the old version is stopped only after the data plane was *observed* to
  serve the new version (convergence), and after ``scale_down_delay``;
* rollback is possible from every non-terminal phase, and only to a version
  whose instances are observed running — otherwise the deployment fails
  loudly instead of routing to nothing.

Effects that fail
-----------------
An entry effect can raise: a version whose workdir is gone, a command the
platform cannot spawn, a router that is down.  Such a failure must never
leave a deployment where no rule can reach it (it once stayed in STARTING
forever: every tick raised before ``decide`` ran, so neither ``abort`` nor a
deadline was ever read).  So a failure is *observed*, not thrown past the
decision: the reconciler records it (``EffectFailure``: how many attempts in
this phase, since when, the last error — persisted with the phase's step, so
a restarted controller keeps counting) and still calls ``decide``.  With a
failure in the observation ``decide`` moves nothing forward — the world is
not what the phase needs — but it still takes every way *out*: the
operator's rollback, the phase's deadline, and the retry budget.  The
reconciler retries the effect with exponential backoff (``effect_backoff``);
after ``effect_attempts(phase)`` failures the deployment rolls back with the
failure as its cause, and a rollback whose own effect keeps failing ends
FAILED.  Every non-terminal phase therefore ends, whatever its effect raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Phase(StrEnum):
    PENDING = "pending"
    """Recorded, nothing done yet."""
    STARTING = "starting"
    """New-version instances are started beside the stable ones; waiting for health."""
    PREVIEW = "preview"
    """The preview route points at the new version; verification requests run through it."""
    CANARY_STEP = "canary_step"
    """A canary step is in force (``step_index``): a production weight or a pause."""
    PROMOTING = "promoting"
    """Production routes all traffic to the new version; waiting to observe it."""
    SCALE_DOWN_WAIT = "scale_down_wait"
    """New version serves everything; the old one stays warm for instant rollback."""
    SCALING_DOWN = "scaling_down"
    """Draining and stopping the old version."""
    ROLLING_BACK = "rolling_back"
    """Production routed back to the stable version; new instances being stopped."""
    SUCCEEDED = "succeeded"
    """Terminal: the new version is the stable version."""
    ROLLED_BACK = "rolled_back"
    """Terminal: the stable version serves everything again; the new one is gone."""
    FAILED = "failed"
    """Terminal: could not complete nor roll back (e.g. nothing to roll back to)."""

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED)


class Effect(StrEnum):
    """Idempotent things the reconciler makes true on entering a phase."""

    NONE = "none"
    START_NEW = "start_new"  # ensure desired count of new instances exists
    ROUTE_PREVIEW = "route_preview"  # preview → new; production unchanged
    ROUTE_CANARY = "route_canary"  # production weights per current canary step
    ROUTE_NEW = "route_new"  # production → 100 % new
    STOP_OLD = "stop_old"  # drain and stop old instances
    ROUTE_OLD = "route_old"  # production → 100 % old, preview → nothing; then stop new


EFFECTS: Mapping[Phase, Effect] = {
    Phase.PENDING: Effect.NONE,
    Phase.STARTING: Effect.START_NEW,
    Phase.PREVIEW: Effect.ROUTE_PREVIEW,
    Phase.CANARY_STEP: Effect.ROUTE_CANARY,
    Phase.PROMOTING: Effect.ROUTE_NEW,
    Phase.SCALE_DOWN_WAIT: Effect.NONE,
    Phase.SCALING_DOWN: Effect.STOP_OLD,
    Phase.ROLLING_BACK: Effect.ROUTE_OLD,
    Phase.SUCCEEDED: Effect.NONE,
    Phase.ROLLED_BACK: Effect.NONE,
    Phase.FAILED: Effect.NONE,
}


class OperatorRequest(StrEnum):
    ROLLBACK = "rollback"
    PROMOTE = "promote"  # end the canary's current pause/analysis step, or promote a waiting preview
    PROMOTE_FULL = "promote-full"  # skip every remaining canary step and promote now
    CONFIRM = "confirm"  # pass a confirm gate (before a weight increase / before promotion)
    PAUSE = "pause"
    RESUME = "resume"


@dataclass(frozen=True)
class EffectFailure:
    """The current phase's tick failed: its entry effect (or the look at the world after it) raised.

    ``attempts`` counts the failed attempts since the phase was entered (a success resets it);
    ``what`` names the failing part (an ``Effect`` value, or "observe")."""

    attempts: int
    first_at: float
    last_at: float
    what: str
    error: str

    def as_dict(self) -> dict[str, object]:
        return {
            "attempts": self.attempts,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "what": self.what,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> EffectFailure:
        return cls(
            attempts=int(str(data["attempts"])),
            first_at=float(str(data["first_at"])),
            last_at=float(str(data["last_at"])),
            what=str(data["what"]),
            error=str(data["error"]),
        )

    def then(self, now: float, what: str, error: str) -> EffectFailure:
        """This failure after one more failed attempt."""
        return EffectFailure(self.attempts + 1, self.first_at, now, what, error)

    @property
    def retry_at(self) -> float:
        """When the effect is tried again."""
        return self.last_at + effect_backoff(self.attempts)


#: failed attempts of a phase's effect before the deployment gives up on the phase: retried after
#: 1, 2, 4, 8, 16 s, a forward phase rolls back on the 6th failure (about 31 s after the first)
EFFECT_ATTEMPTS = 6
#: a rollback is the way back to safety: it is retried longer (about 2.5 min) before it fails
ROLLBACK_ATTEMPTS = 10
EFFECT_BACKOFF_CAP_S = 30.0


def effect_backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th consecutive failure before trying again."""
    return float(min(EFFECT_BACKOFF_CAP_S, 2.0 ** max(0, attempts - 1)))


def effect_attempts(phase: Phase) -> int:
    """How many failed attempts of ``phase``'s effect end the phase."""
    return ROLLBACK_ATTEMPTS if phase is Phase.ROLLING_BACK else EFFECT_ATTEMPTS


def first_failure(now: float, what: str, error: str) -> EffectFailure:
    return EffectFailure(1, now, now, what, error)


@dataclass(frozen=True)
class CanaryStepSpec:
    """A canary step reduced to what the state machine needs."""

    weight: int | None = None  # set production weight of the new version
    pause_s: float | None = None  # wait this long; None with pause=True means until promoted
    pause: bool = False
    analysis: bool = False  # run the step's analysis and wait for its verdict


@dataclass(frozen=True)
class Plan:
    """The policy, reduced to the numbers the state machine reads."""

    strategy: str  # "blueGreen" | "canary"
    instances: int
    health_start_timeout_s: float
    scale_down_delay_s: float
    healthy_threshold: int = 1  # consecutive good probes that make an instance healthy
    auto_promotion: bool = True
    canary_steps: tuple[CanaryStepSpec, ...] = ()
    progress_deadline_s: float = 600.0
    skip_steps: bool = False  # fast rollback to a known-good version: no preview/steps
    pre_promotion_analysis: bool = False  # blue-green: must pass in PREVIEW
    post_promotion_analysis: bool = False  # must pass in SCALE_DOWN_WAIT before the old version goes
    background_analysis_from: int | None = None  # canary: background analysis from this step on
    on_inconclusive: str = "pause"  # "pause" | "rollback"
    confirm_weight_increase: bool = False
    confirm_promotion: bool = False
    confirm_timeout_s: float = 600.0
    confirm_on_timeout: str = "rollback"  # "rollback" | "proceed"
    min_available: int = 0  # canary: stable instances that must run before traffic moves further


#: replacements of dead stable instances per deployment, as a multiple of ``instances``: a stable
#: version that keeps dying is not fixed by starting it again (the hold and the deadline decide)
STABLE_REPLACEMENT_BUDGET = 2


def stable_replacements(plan: Plan, phase: Phase, has_stable: bool, dead_stable: int, replaced: int) -> int:
    """How many dead stable instances to replace now (the stable version is a canary's fallback).

    While a canary is being started or stepped, the old version serves the rest of production
    and is what a rollback returns to: instances of it that died are replaced, like a replica
    set would, up to ``STABLE_REPLACEMENT_BUDGET × instances`` per deployment."""
    if plan.strategy != "canary" or not has_stable or plan.min_available <= 0:
        return 0
    if phase not in (Phase.STARTING, Phase.CANARY_STEP):
        return 0
    left = STABLE_REPLACEMENT_BUDGET * plan.instances - replaced
    return max(0, min(dead_stable, left))


@dataclass(frozen=True)
class RolloutState:
    """What the store knows about one deployment."""

    phase: Phase
    phase_entered_at: float
    has_stable: bool  # is there an old (stable) version to fall back to?
    step_index: int = 0
    paused: bool = False
    paused_by_analysis: bool = False  # an inconclusive analysis paused it (the deadline still runs)


@dataclass(frozen=True)
class Check:
    """Result of an active verification (preview or production probe, analysis)."""

    ok: bool
    detail: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class Observation:
    now: float
    new_running: int = 0
    new_healthy: int = 0
    new_dead: int = 0
    old_running: int = 0
    production_weights: Mapping[str, int] = field(default_factory=dict)  # observed on the data plane
    new_version: str = ""
    old_version: str | None = None
    preview_check: Check | None = None  # result of verification after entering PREVIEW
    production_check: Check | None = None  # probe: did all traffic reach the expected version(s)?
    analysis: Check | None = None  # verdict of the analysis active in this phase (None = still running)
    analysis_inconclusive: str | None = None  # why the active analysis cannot decide (no data, …)
    operator: OperatorRequest | None = None
    new_stopped: bool = False  # rollback: new instances are gone
    old_stopped: bool = False  # scale-down: old instances are gone
    # health probes *this controller* has made of each running new instance (the fewest); None if
    # not tracked.  Streaks live in memory, so a resumed controller must probe before judging.
    health_probes: int | None = None
    # when the newest running new instance was started (a resumed controller may start them long
    # after STARTING was entered): the health start time-out runs from here
    new_started_at: float | None = None
    # the phase's effect (or the observation after it) failed this tick or is waiting for its retry:
    # the rest of this observation is then only what could be seen without it
    effect_failure: EffectFailure | None = None
    # False: not even the instances could be listed (``old_running`` is unknown, not 0)
    observed: bool = True


@dataclass(frozen=True)
class Transition:
    phase: Phase
    reason: str
    step_index: int | None = None
    paused: bool | None = None
    #: the operator's request was used up by this transition (a confirm opens one gate, not all)
    consumes_request: bool = False


def _rollback(state: RolloutState, obs: Observation, why: str) -> Transition:
    if not state.has_stable or (obs.observed and obs.old_running == 0):
        if state.phase in (Phase.PENDING, Phase.STARTING, Phase.PREVIEW):
            # nothing of the new version ever served production: stop it and fail.
            return Transition(Phase.ROLLING_BACK, f"{why}; no stable version running — stopping the new one")
        return Transition(Phase.FAILED, f"{why}; cannot roll back: no stable version is running")
    return Transition(Phase.ROLLING_BACK, why)


def decide(state: RolloutState, plan: Plan, obs: Observation) -> Transition | None:
    """The phase this deployment should move to, or None to stay.

    Pure: everything it needs is in its arguments.  ``obs`` must describe the
    world *after* the entry effect of ``state.phase`` was applied (the
    reconciler guarantees it by applying the effect before observing).
    """
    p = state.phase
    if p.terminal:
        return None
    elapsed = obs.now - state.phase_entered_at

    # Operator requests first: a rollback wins over everything else — but once the old version is
    # stopped there is nothing to go back to at once: the scale-down finishes (the old version
    # becomes the previous one, which ``rollback`` deploys again) instead of failing with the new
    # version serving and a stale stable version on record.
    too_late = p is Phase.SCALING_DOWN and _old_gone(state, obs)
    if obs.operator is OperatorRequest.ROLLBACK and p is not Phase.ROLLING_BACK and not too_late:
        return _rollback(state, obs, "rollback requested by operator")
    if obs.operator is OperatorRequest.PAUSE and not state.paused:
        return Transition(p, "paused by operator", paused=True)
    if obs.operator is OperatorRequest.RESUME and state.paused:
        return Transition(p, "resumed by operator", paused=False)

    # The phase's effect failed: nothing moves forward, only the ways out are decided.
    if obs.effect_failure is not None:
        return _failing(state, plan, obs, elapsed)

    # A failed analysis rolls back from wherever traffic or verification is in progress (D8).
    watching = _WATCHING
    if p in watching and obs.analysis is not None and not obs.analysis.ok:
        return _rollback(state, obs, f"analysis failed: {obs.analysis.detail}")
    if p in watching and obs.analysis_inconclusive and not state.paused:
        if plan.on_inconclusive == "rollback":
            return _rollback(state, obs, f"analysis inconclusive: {obs.analysis_inconclusive}")
        return Transition(p, f"paused: analysis inconclusive: {obs.analysis_inconclusive}", paused=True)

    # A rollout that neither progresses nor aborts is the worst state: abort it.
    if _past_progress_deadline(state, plan, elapsed):
        return _rollback(state, obs, f"progress deadline: {plan.progress_deadline_s:.0f}s in {p.value}")

    # Once production traffic may reach the new version, its instances dying is a failed check.
    if p in (Phase.CANARY_STEP, Phase.PROMOTING, Phase.SCALE_DOWN_WAIT) and obs.new_dead > 0:
        return _rollback(state, obs, f"{obs.new_dead} new instance(s) died")

    if p is Phase.PENDING:
        return Transition(Phase.STARTING, "starting the new version beside the stable one")

    if p is Phase.STARTING:
        if obs.new_dead > 0:
            return _rollback(state, obs, f"{obs.new_dead} new instance(s) exited during start-up")
        if obs.new_healthy >= plan.instances:
            if plan.skip_steps:
                return Transition(
                    Phase.PROMOTING, "all new instances healthy; known-good version, skipping steps"
                )
            if plan.strategy == "canary" and not state.has_stable:
                return Transition(
                    Phase.PROMOTING, "all new instances healthy; first deployment: no baseline to compare"
                )
            if plan.strategy == "canary":
                return Transition(Phase.CANARY_STEP, "all new instances healthy; canary step 1", step_index=0)
            return Transition(Phase.PREVIEW, f"all {plan.instances} new instances healthy")
        if _past_start_timeout(state, plan, obs):
            return _rollback(
                state,
                obs,
                f"health: {obs.new_healthy}/{plan.instances} healthy "
                f"after {plan.health_start_timeout_s:.0f}s",
            )
        return None

    if p is Phase.PREVIEW:
        if obs.new_dead > 0:
            return _rollback(state, obs, f"{obs.new_dead} new instance(s) died during preview")
        if obs.preview_check is None:
            return None
        if not obs.preview_check.ok:
            return _rollback(state, obs, f"preview verification failed: {obs.preview_check.detail}")
        if plan.pre_promotion_analysis and (obs.analysis is None or not obs.analysis.ok):
            return None  # pre-promotion analysis still running
        if not plan.auto_promotion and obs.operator not in _PROMOTES:
            return None  # waits for `shipwarden promote`
        extra = f"; analysis: {obs.analysis.detail}" if plan.pre_promotion_analysis and obs.analysis else ""
        return Transition(Phase.PROMOTING, f"preview verified: {obs.preview_check.detail}{extra}")

    if p is Phase.CANARY_STEP:
        unpause = False if state.paused else None
        if obs.operator is OperatorRequest.PROMOTE_FULL:
            return Transition(
                Phase.PROMOTING, "fully promoted by operator: remaining steps skipped", paused=unpause
            )
        step = plan.canary_steps[state.step_index]
        # an operator's promote ends the step the canary waits in: a pause, or an analysis (even
        # one that paused inconclusive) — never the steps after it
        ended = (step.pause or step.analysis) and obs.operator is OperatorRequest.PROMOTE
        if state.paused and not ended:
            return None
        if step.weight is not None:
            if obs.production_check is None:
                return None
            if not obs.production_check.ok:
                return _rollback(state, obs, f"traffic did not converge: {obs.production_check.detail}")
        elif step.pause:
            if not ended and (step.pause_s is None or elapsed < step.pause_s):
                return None
        elif step.analysis:
            if not ended and (obs.analysis is None or not obs.analysis.ok):
                return None  # still measuring
        if stable_short(state, plan, obs):
            return None  # hold: no more traffic onto the canary while the fallback is short
        nxt = state.step_index + 1
        gate = _confirm_gate(plan, state.step_index)
        if gate and obs.operator is not OperatorRequest.CONFIRM:
            if elapsed < plan.confirm_timeout_s:
                return None  # waits for `shipwarden confirm`
            if plan.confirm_on_timeout == "rollback":
                return _rollback(state, obs, f"no confirmation {gate} within {plan.confirm_timeout_s:.0f}s")
        used = gate is not None and obs.operator is OperatorRequest.CONFIRM
        what = "pause" if step.pause else "analysis"
        confirmed = f" ({gate} confirmed)" if used else (f" ({what} ended by operator)" if ended else "")
        used = used or ended
        unpause = unpause if ended else None
        if nxt >= len(plan.canary_steps):
            return Transition(
                Phase.PROMOTING, f"all canary steps passed{confirmed}", paused=unpause, consumes_request=used
            )
        return Transition(
            Phase.CANARY_STEP, f"canary step {nxt + 1}{confirmed}", step_index=nxt,
            paused=unpause, consumes_request=used,
        )  # fmt: skip

    if p is Phase.PROMOTING:
        if obs.production_check is None:
            return None
        if not obs.production_check.ok:
            return _rollback(
                state, obs, f"switch not observed on the data plane: {obs.production_check.detail}"
            )
        return Transition(
            Phase.SCALE_DOWN_WAIT,
            f"all production traffic on the new version ({obs.production_check.detail})",
        )

    if p is Phase.SCALE_DOWN_WAIT:
        if plan.post_promotion_analysis and (obs.analysis is None or not obs.analysis.ok):
            return None  # the old version stays warm until post-promotion analysis passed
        if elapsed >= plan.scale_down_delay_s or obs.operator in _PROMOTES or not state.has_stable:
            return Transition(
                Phase.SCALING_DOWN, f"old version kept warm {min(elapsed, plan.scale_down_delay_s):.0f}s"
            )
        return None

    if p is Phase.SCALING_DOWN:
        if obs.old_stopped or obs.old_running == 0:
            late = "" if obs.operator is not OperatorRequest.ROLLBACK else (
                " (rollback requested when the old version was already stopped: "
                "`shipwarden rollback` deploys it again)"
            )  # fmt: skip
            return Transition(Phase.SUCCEEDED, f"old version stopped; new version is stable{late}")
        return None

    if p is Phase.ROLLING_BACK:
        if obs.new_stopped:
            return Transition(Phase.ROLLED_BACK if state.has_stable else Phase.FAILED, "new version stopped")
        return None

    raise AssertionError(f"unhandled phase {p}")  # pragma: no cover


_WATCHING = (Phase.PREVIEW, Phase.CANARY_STEP, Phase.PROMOTING, Phase.SCALE_DOWN_WAIT)


def _past_progress_deadline(state: RolloutState, plan: Plan, elapsed: float) -> bool:
    return (
        state.phase in _WATCHING
        and (not state.paused or state.paused_by_analysis)
        and elapsed > plan.progress_deadline_s
        and not _waiting_by_design(state, plan, elapsed)
    )


def _past_start_timeout(state: RolloutState, plan: Plan, obs: Observation) -> bool:
    probed_enough = obs.health_probes is None or obs.health_probes >= plan.healthy_threshold
    since = max(state.phase_entered_at, obs.new_started_at or state.phase_entered_at)
    return state.phase is Phase.STARTING and obs.now - since > plan.health_start_timeout_s and probed_enough


_DOING = {
    Effect.NONE: "observing the deployment",
    Effect.START_NEW: "starting the new version",
    Effect.ROUTE_PREVIEW: "routing the preview to the new version",
    Effect.ROUTE_CANARY: "setting the canary's weights",
    Effect.ROUTE_NEW: "routing production to the new version",
    Effect.STOP_OLD: "stopping the old version",
    Effect.ROUTE_OLD: "routing back to the stable version and stopping the new one",
}


def failure_cause(phase: Phase, failure: EffectFailure) -> str:
    """What failed, as the deployment's reason says it."""
    doing = "observing the deployment" if failure.what == "observe" else _DOING[EFFECTS[phase]]
    span = failure.last_at - failure.first_at
    return f"{doing} failed {failure.attempts} time(s) in {span:.0f}s: {failure.error}"


def _old_gone(state: RolloutState, obs: Observation) -> bool:
    """No old version runs (or there never was one)."""
    return not state.has_stable or (obs.observed and obs.old_running == 0)


def _failing(state: RolloutState, plan: Plan, obs: Observation, elapsed: float) -> Transition | None:
    """The ways out of a phase whose effect fails: the retry budget and the phase's deadlines.

    (The operator's rollback was decided before.)  Nothing moves forward: the observation does
    not describe the world after the phase's effect, which is what every forward rule needs."""
    p, failure = state.phase, obs.effect_failure
    assert failure is not None
    if p is Phase.SCALING_DOWN and _old_gone(state, obs):
        # the scale-down's goal needs no effect to be seen: the old version runs no more (traffic
        # was verified on the new one before); failing here would leave a stale stable version
        return Transition(
            Phase.SUCCEEDED, f"old version not running; new version is stable ({failure_cause(p, failure)})"
        )
    if failure.attempts >= effect_attempts(p):
        cause = failure_cause(p, failure)
        if p is Phase.ROLLING_BACK:
            return Transition(Phase.FAILED, f"rollback could not complete: {cause}")
        return _rollback(state, obs, cause)
    if _past_progress_deadline(state, plan, elapsed):
        return _rollback(
            state, obs, f"progress deadline: {plan.progress_deadline_s:.0f}s in {p.value} "
            f"({failure_cause(p, failure)})",
        )  # fmt: skip
    if _past_start_timeout(state, plan, obs):
        return _rollback(
            state, obs, f"health: {obs.new_healthy}/{plan.instances} healthy after "
            f"{plan.health_start_timeout_s:.0f}s ({failure_cause(p, failure)})",
        )  # fmt: skip
    return None


def _waiting_by_design(state: RolloutState, plan: Plan, elapsed: float) -> bool:
    """Phases where waiting is the point: pauses, confirm gates, manual promotion, the warm period.

    A timed pause waits by design only for its duration: a canary still at that step later (held
    for ``minAvailable``, say) gets the progress deadline from the pause's end, not never."""
    if state.phase is Phase.CANARY_STEP and plan.canary_steps:
        step = plan.canary_steps[state.step_index]
        if _confirm_gate(plan, state.step_index) is not None:
            return True
        if step.pause and step.pause_s is not None:
            return elapsed <= step.pause_s + plan.progress_deadline_s
        return step.pause
    if state.phase is Phase.PREVIEW:
        return not plan.auto_promotion
    if state.phase is Phase.SCALE_DOWN_WAIT:
        return not plan.post_promotion_analysis
    return False


_PROMOTES = (OperatorRequest.PROMOTE, OperatorRequest.PROMOTE_FULL)


def stable_short(state: RolloutState, plan: Plan, obs: Observation) -> str | None:
    """Why a canary holds its step for its fallback's capacity (``minAvailable``), or None."""
    if state.phase is Phase.CANARY_STEP and state.has_stable and obs.old_running < plan.min_available:
        return (
            f"holding at step {state.step_index + 1}: {obs.old_running} stable instance(s) running "
            f"< minAvailable {plan.min_available}"
        )
    return None


def promote_refusal(plan: Plan, phase: Phase, step_index: int) -> str | None:
    """Why a plain ``promote`` makes no sense now (``promote --full`` always does), or None.

    On a canary ``promote`` ends the step it waits in — a pause, or an analysis (an operator
    accepting an inconclusive one) — as Argo's does, so that promoting past a manual pause never
    skips the analysis steps after it.  At a setWeight step there is nothing to end: a request
    the rollout would only act on later, at some other step, is refused instead."""
    if plan.strategy != "canary" or plan.skip_steps:
        return None
    if phase in (Phase.PENDING, Phase.STARTING):
        return "the canary is still starting; promote ends a pause or analysis step (--full skips all)"
    if phase is Phase.CANARY_STEP:
        step = plan.canary_steps[step_index]
        if step.weight is not None:
            return (
                f"the canary is at step {step_index + 1} of {len(plan.canary_steps)} (setWeight); "
                "promote ends a pause or an analysis step — promote --full skips every remaining step"
            )
    return None


def _confirm_gate(plan: Plan, step_index: int) -> str | None:
    """Which confirm gate (if any) stands between ``step_index`` and the next step."""
    nxt = step_index + 1
    if nxt >= len(plan.canary_steps):
        return "before promotion" if plan.confirm_promotion else None
    weight = plan.canary_steps[nxt].weight
    if plan.confirm_weight_increase and weight is not None and weight > canary_weights(plan, step_index):
        return "before weight increase"
    return None


def analysis_watches(plan: Plan, step_index: int) -> bool:
    """Is the canary's health judged by an analysis at or after ``step_index``?

    Then the convergence probe of a weight step checks *routing* only — a 5xx
    answered by the canary still proves traffic reached it — and the error
    rate is left to the analysis, which compares it with the baseline and
    records the numbers.  Without any analysis, the probe's 5xx fail the step.
    """
    if plan.background_analysis_from is not None and step_index >= plan.background_analysis_from:
        return True
    return any(step.analysis for step in plan.canary_steps[step_index:])


def canary_weights(plan: Plan, step_index: int) -> int:
    """The new version's production weight in force at ``step_index`` (pauses keep the last weight)."""
    weight = 0
    for step in plan.canary_steps[: step_index + 1]:
        if step.weight is not None:
            weight = step.weight
    return weight
