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

``decide`` is the transition table ``TABLE`` read top-down: the first row whose phase and
condition apply decides (a transition, or ``STAY``).  The rows every phase shares come first —
the operator's rollback, pause and resume, a failing effect, a failed or inconclusive analysis,
the progress deadline, new instances dying once they may serve — then each phase's own rows.

Zones (E2)
----------
Where the policy declares zones, a rollout is a sequence of waves, one per zone (``Plan.zones``,
the state's ``wave``): STARTING starts the new version in that zone, PREVIEW / CANARY_STEP run in
it (a canary's weight applies to that zone's share of the traffic, ``zone_new_share``), PROMOTING
switches it; then the next zone's STARTING — through ZONE_WAIT when the policy pauses between
zones — and after the last zone SCALE_DOWN_WAIT.  The old version stays warm in every zone until
then, so ROLLING_BACK from any wave puts every zone back at once.  Traffic moves further only
while every zone is served by ``minHealthyPerZone`` instances (``zone_short``); the reconciler
restores dead stable instances in their zone meanwhile.

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

from collections.abc import Callable, Mapping, Sequence
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
    ZONE_WAIT = "zone_wait"
    """A zone's wave is done (it serves the new version); waiting for a confirm or a pause before
    the next zone's wave starts."""
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
    ROUTE_NEW = "route_new"  # production → 100 % new (with zones: the zones of the waves so far)
    STOP_OLD = "stop_old"  # drain and stop old instances
    ROUTE_OLD = "route_old"  # production → 100 % old, preview → nothing; then stop new


EFFECTS: Mapping[Phase, Effect] = {
    Phase.PENDING: Effect.NONE,
    Phase.STARTING: Effect.START_NEW,
    Phase.PREVIEW: Effect.ROUTE_PREVIEW,
    Phase.CANARY_STEP: Effect.ROUTE_CANARY,
    Phase.PROMOTING: Effect.ROUTE_NEW,
    Phase.ZONE_WAIT: Effect.NONE,
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
    CONFIRM = "confirm"  # pass a confirm gate (before a weight increase / promotion / the next zone)
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
    #: the zones instances run in, in rollout order (E2); ``instances`` is then per zone
    zones: tuple[str, ...] = ()
    zone_waves: bool = False  # one wave per zone (else every zone at once: a fast rollback)
    pause_between: str = "none"  # "none" | "confirm" | "timed": between two zones' waves
    pause_between_s: float = 0.0  # "timed": how long
    min_healthy_per_zone: int = 0  # instances serving each zone below which traffic moves no further

    @property
    def waves(self) -> int:
        """How many waves the rollout has: one per zone, or one."""
        return len(self.zones) if self.zones and self.zone_waves else 1

    def wave_zones(self, wave: int) -> tuple[str, ...]:
        """The zones whose instances start in ``wave`` (every zone when not waving)."""
        if not self.zones:
            return ()
        return (self.zones[wave],) if self.zone_waves else self.zones

    def zones_through(self, wave: int) -> tuple[str, ...]:
        """The zones of waves 0..``wave``."""
        if not self.zones:
            return ()
        return self.zones[: wave + 1] if self.zone_waves else self.zones

    def new_target(self, wave: int) -> int:
        """New instances that must be healthy to leave STARTING in ``wave``."""
        return self.instances * max(1, len(self.zones_through(wave)))


#: replacements of dead stable instances per deployment, as a multiple of ``instances``: a stable
#: version that keeps dying is not fixed by starting it again (the hold and the deadline decide)
STABLE_REPLACEMENT_BUDGET = 2


_ZONE_REPLACING = (Phase.STARTING, Phase.PREVIEW, Phase.CANARY_STEP, Phase.PROMOTING, Phase.ZONE_WAIT)


def stable_replacements(plan: Plan, phase: Phase, has_stable: bool, dead_stable: int, replaced: int) -> int:
    """How many dead stable instances to replace now (the stable version is a canary's fallback).

    While a canary is being started or stepped, the old version serves the rest of production
    and is what a rollback returns to: instances of it that died are replaced, like a replica
    set would, up to ``STABLE_REPLACEMENT_BUDGET × instances`` per deployment.  A zone rollout
    (both strategies) does the same in every zone until the last zone is promoted: the old
    version serves the zones not yet rolled, and every zone rolls back to it."""
    if not has_stable:
        return 0
    if plan.zones and plan.min_healthy_per_zone > 0:
        if phase not in _ZONE_REPLACING:
            return 0
        left = STABLE_REPLACEMENT_BUDGET * plan.instances * len(plan.zones) - replaced
        return max(0, min(dead_stable, left))
    if plan.strategy != "canary" or plan.min_available <= 0:
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
    wave: int = 0  # the zone wave (index in ``Plan.zones``)


@dataclass(frozen=True)
class Check:
    """Result of an active verification (preview or production probe, analysis)."""

    ok: bool
    detail: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class ZoneCount:
    """One zone's instances as observed: what serves it, whichever version that is."""

    new_healthy: int = 0
    old_running: int = 0


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
    zones: Mapping[str, ZoneCount] = field(default_factory=dict)  # per zone, where the plan has zones


@dataclass(frozen=True)
class Transition:
    phase: Phase
    reason: str
    step_index: int | None = None
    paused: bool | None = None
    #: the operator's request was used up by this transition (a confirm opens one gate, not all)
    consumes_request: bool = False
    wave: int | None = None  # the zone wave entered (None: unchanged)
    pause_cause: str | None = None  # with ``paused=True``: "operator" | "analysis"


def _rollback(state: RolloutState, obs: Observation, why: str) -> Transition:
    if not state.has_stable or (obs.observed and obs.old_running == 0):
        first_wave = state.phase is Phase.PENDING or state.wave == 0  # no zone serves the new version yet
        if state.phase in (Phase.PENDING, Phase.STARTING, Phase.PREVIEW) and first_wave:
            # nothing of the new version ever served production: stop it and fail.
            return Transition(Phase.ROLLING_BACK, f"{why}; no stable version running — stopping the new one")
        return Transition(Phase.FAILED, f"{why}; cannot roll back: no stable version is running")
    return Transition(Phase.ROLLING_BACK, why)


@dataclass(frozen=True)
class _At:
    """One decision's inputs, as the rules of ``TABLE`` read them."""

    state: RolloutState
    plan: Plan
    obs: Observation

    @property
    def phase(self) -> Phase:
        return self.state.phase

    @property
    def elapsed(self) -> float:
        return self.obs.now - self.state.phase_entered_at

    @property
    def op(self) -> OperatorRequest | None:
        return self.obs.operator

    def rollback(self, why: str) -> Transition:
        return _rollback(self.state, self.obs, why)


_PROMOTES = (OperatorRequest.PROMOTE, OperatorRequest.PROMOTE_FULL)

STAY = None
"""A rule's outcome that keeps the deployment where it is (and ends the decision)."""

Outcome = Callable[[_At], "Transition | None"]


@dataclass(frozen=True)
class Rule:
    """One row of the transition table: in ``phases`` (None: any live phase), ``when`` holds →
    ``then`` (a Transition, or ``STAY``).  The first row that applies decides."""

    name: str
    phases: frozenset[Phase] | None
    when: Callable[[_At], bool]
    then: Outcome

    def applies(self, at: _At) -> bool:
        return (self.phases is None or at.phase in self.phases) and self.when(at)


def _in(*phases: Phase) -> frozenset[Phase]:
    return frozenset(phases)


def _always(at: _At) -> bool:
    return True


def _stay(at: _At) -> Transition | None:
    return STAY


def decide(state: RolloutState, plan: Plan, obs: Observation) -> Transition | None:
    """The phase this deployment should move to, or None to stay: the first row of ``TABLE``
    that applies.

    Pure: everything it needs is in its arguments.  ``obs`` must describe the
    world *after* the entry effect of ``state.phase`` was applied (the
    reconciler guarantees it by applying the effect before observing).
    """
    if state.phase.terminal:
        return None
    at = _At(state, plan, obs)
    for rule in TABLE:
        if rule.applies(at):
            return rule.then(at)
    raise AssertionError(f"no rule for {state.phase}")  # pragma: no cover — every phase ends in a row


# -- the rows' conditions and outcomes, in the order the table reads them -------------------------
def _operator_rollback(at: _At) -> bool:
    # a rollback wins over everything else — but once the old version is stopped there is nothing
    # to go back to at once: the scale-down finishes (the old version becomes the previous one,
    # which ``rollback`` deploys again) instead of failing with the new version serving
    too_late = at.phase is Phase.SCALING_DOWN and _old_gone(at.state, at.obs)
    return at.op is OperatorRequest.ROLLBACK and at.phase is not Phase.ROLLING_BACK and not too_late


def _analysis_failed(at: _At) -> bool:
    return at.obs.analysis is not None and not at.obs.analysis.ok


def _inconclusive(at: _At) -> Transition | None:
    why = f"analysis inconclusive: {at.obs.analysis_inconclusive}"
    if at.plan.on_inconclusive == "rollback":
        return at.rollback(why)
    return Transition(at.phase, f"paused: {why}", paused=True, pause_cause="analysis")


def _started(at: _At) -> Transition | None:
    plan, state = at.plan, at.state
    zone = _zone_note(plan, state.wave)
    if plan.skip_steps:
        return Transition(Phase.PROMOTING, "all new instances healthy; known-good version, skipping steps")
    if plan.strategy == "canary" and not state.has_stable:
        return Transition(
            Phase.PROMOTING, f"all new instances healthy{zone}; first deployment: no baseline to compare"
        )
    if plan.strategy == "canary":
        return Transition(Phase.CANARY_STEP, f"all new instances healthy{zone}; canary step 1", step_index=0)
    return Transition(Phase.PREVIEW, f"all {plan.new_target(state.wave)} new instances healthy{zone}")


def _preview_verified(at: _At) -> Transition | None:
    obs, plan = at.obs, at.plan
    assert obs.preview_check is not None
    extra = f"; analysis: {obs.analysis.detail}" if plan.pre_promotion_analysis and obs.analysis else ""
    zone = _zone_note(plan, at.state.wave)
    return Transition(Phase.PROMOTING, f"preview verified{zone}: {obs.preview_check.detail}{extra}")


def _step(at: _At) -> CanaryStepSpec:
    return at.plan.canary_steps[at.state.step_index]


def _step_ended(at: _At) -> bool:
    """The operator's promote ends the step the canary waits in: a pause, or an analysis (even one
    that paused inconclusive) — never the steps after it."""
    step = _step(at)
    return (step.pause or step.analysis) and at.op is OperatorRequest.PROMOTE


def _step_waits(at: _At) -> bool:
    """The current step's own condition is not met yet (converged weight, pause, analysis)."""
    step, ended = _step(at), _step_ended(at)
    if step.weight is not None:
        return at.obs.production_check is None
    if step.pause:
        return not ended and (step.pause_s is None or at.elapsed < step.pause_s)
    if step.analysis:
        return not ended and (at.obs.analysis is None or not at.obs.analysis.ok)
    return False


def _gate_waits(at: _At) -> bool:
    gate = _confirm_gate(at.plan, at.state.step_index)
    waiting = at.op is not OperatorRequest.CONFIRM and at.elapsed < at.plan.confirm_timeout_s
    return gate is not None and waiting


def _gate_timed_out(at: _At) -> bool:
    gate = _confirm_gate(at.plan, at.state.step_index)
    return (
        gate is not None and at.op is not OperatorRequest.CONFIRM and at.plan.confirm_on_timeout == "rollback"
    )


def _next_step(at: _At) -> Transition | None:
    state, plan = at.state, at.plan
    step, ended = _step(at), _step_ended(at)
    gate = _confirm_gate(plan, state.step_index)
    used = gate is not None and at.op is OperatorRequest.CONFIRM
    what = "pause" if step.pause else "analysis"
    confirmed = f" ({gate} confirmed)" if used else (f" ({what} ended by operator)" if ended else "")
    used = used or ended
    unpause = (False if state.paused else None) if ended else None
    nxt = state.step_index + 1
    zone = _zone_note(plan, state.wave)
    if nxt >= len(plan.canary_steps):
        why = f"all canary steps passed{zone}{confirmed}"
        return Transition(Phase.PROMOTING, why, paused=unpause, consumes_request=used)
    return Transition(
        Phase.CANARY_STEP, f"canary step {nxt + 1}{zone}{confirmed}", step_index=nxt,
        paused=unpause, consumes_request=used,
    )  # fmt: skip


def _more_waves(at: _At) -> bool:
    return at.state.wave + 1 < at.plan.waves


def _promoted(at: _At) -> Transition | None:
    check = at.obs.production_check
    assert check is not None
    if not _more_waves(at):
        return Transition(
            Phase.SCALE_DOWN_WAIT, f"all production traffic on the new version ({check.detail})"
        )
    done, nxt = at.plan.zones[at.state.wave], at.plan.zones[at.state.wave + 1]
    if at.plan.pause_between == "none":
        return _next_wave(at, f"zone {done} serves the new version ({check.detail}); next zone {nxt}")
    return Transition(Phase.ZONE_WAIT, f"zone {done} serves the new version ({check.detail}); "
                                       f"{_pause_what(at.plan)} before zone {nxt}")  # fmt: skip


def _next_wave(at: _At, why: str, *, consumes: bool = False) -> Transition:
    return Transition(Phase.STARTING, why, step_index=0, wave=at.state.wave + 1, consumes_request=consumes)


def _pause_what(plan: Plan) -> str:
    return "waiting for `shipwarden confirm`" if plan.pause_between == "confirm" else (
        f"pausing {plan.pause_between_s:.0f}s"
    )  # fmt: skip


def _zone_confirmed(at: _At) -> bool:
    return at.plan.pause_between == "confirm" and (at.op is OperatorRequest.CONFIRM or at.op in _PROMOTES)


def _zone_pause_over(at: _At) -> bool:
    return at.plan.pause_between != "confirm" and at.elapsed >= at.plan.pause_between_s


def _zone_held(at: _At) -> bool:
    return zone_short(at.state, at.plan, at.obs) is not None


def _scale_down_due(at: _At) -> bool:
    plan = at.plan
    if plan.post_promotion_analysis and (at.obs.analysis is None or not at.obs.analysis.ok):
        return False  # the old version stays warm until post-promotion analysis passed
    return at.elapsed >= plan.scale_down_delay_s or at.op in _PROMOTES or not at.state.has_stable


def _scaled_down(at: _At) -> Transition | None:
    late = "" if at.op is not OperatorRequest.ROLLBACK else (
        " (rollback requested when the old version was already stopped: "
        "`shipwarden rollback` deploys it again)"
    )  # fmt: skip
    return Transition(Phase.SUCCEEDED, f"old version stopped; new version is stable{late}")


_WATCHING = (Phase.PREVIEW, Phase.CANARY_STEP, Phase.PROMOTING, Phase.SCALE_DOWN_WAIT)
#: phases where production traffic may reach the new version
_SERVING_NEW = _in(Phase.CANARY_STEP, Phase.PROMOTING, Phase.ZONE_WAIT, Phase.SCALE_DOWN_WAIT)

P = Phase
TABLE: tuple[Rule, ...] = (
    # -- the operator, then a failing effect: the ways out, whatever the phase ----------------------
    Rule("operator rollback", None, _operator_rollback,
         lambda at: at.rollback("rollback requested by operator")),
    Rule("operator pause", None, lambda at: at.op is OperatorRequest.PAUSE and not at.state.paused,
         lambda at: Transition(at.phase, "paused by operator", paused=True, pause_cause="operator")),
    Rule("operator resume", None, lambda at: at.op is OperatorRequest.RESUME and at.state.paused,
         lambda at: Transition(at.phase, "resumed by operator", paused=False)),
    Rule("effect failing", None, lambda at: at.obs.effect_failure is not None,
         lambda at: _failing(at.state, at.plan, at.obs, at.elapsed)),
    # -- what fails a rollout wherever it is (D8) ----------------------------------------------------
    Rule("analysis failed", _in(*_WATCHING), _analysis_failed,
         lambda at: at.rollback(f"analysis failed: {at.obs.analysis.detail}")),  # type: ignore[union-attr]
    Rule("analysis inconclusive", _in(*_WATCHING),
         lambda at: bool(at.obs.analysis_inconclusive) and not at.state.paused, _inconclusive),
    Rule("progress deadline", None, lambda at: _past_progress_deadline(at.state, at.plan, at.elapsed),
         lambda at: at.rollback(
             f"progress deadline: {at.plan.progress_deadline_s:.0f}s in {at.phase.value}")),
    Rule("new instances died", _SERVING_NEW, lambda at: at.obs.new_dead > 0,
         lambda at: at.rollback(f"{at.obs.new_dead} new instance(s) died")),
    # -- PENDING → STARTING → PREVIEW | CANARY_STEP | PROMOTING --------------------------------------
    Rule("start", _in(P.PENDING), _always,
         lambda at: Transition(Phase.STARTING, "starting the new version beside the stable one")),
    Rule("start-up crash", _in(P.STARTING), lambda at: at.obs.new_dead > 0,
         lambda at: at.rollback(f"{at.obs.new_dead} new instance(s) exited during start-up")),
    Rule("all healthy", _in(P.STARTING), lambda at: at.obs.new_healthy >= at.plan.new_target(at.state.wave),
         _started),
    Rule("start time-out", _in(P.STARTING), lambda at: _past_start_timeout(at.state, at.plan, at.obs),
         lambda at: at.rollback(f"health: {at.obs.new_healthy}/{at.plan.new_target(at.state.wave)} healthy "
                                f"after {at.plan.health_start_timeout_s:.0f}s")),
    Rule("starting", _in(P.STARTING), _always, _stay),
    # -- PREVIEW (blue-green): verified, analysed, promoted ------------------------------------------
    Rule("preview crash", _in(P.PREVIEW), lambda at: at.obs.new_dead > 0,
         lambda at: at.rollback(f"{at.obs.new_dead} new instance(s) died during preview")),
    Rule("preview probing", _in(P.PREVIEW), lambda at: at.obs.preview_check is None, _stay),
    Rule("preview failed", _in(P.PREVIEW), lambda at: not at.obs.preview_check.ok,  # type: ignore[union-attr]
         lambda at: at.rollback(f"preview verification failed: {at.obs.preview_check.detail}")),  # type: ignore[union-attr]
    Rule("pre-promotion analysis", _in(P.PREVIEW),
         lambda at: at.plan.pre_promotion_analysis and (at.obs.analysis is None or not at.obs.analysis.ok),
         _stay),
    Rule("manual promotion", _in(P.PREVIEW), lambda at: not at.plan.auto_promotion and at.op not in _PROMOTES,
         _stay),
    Rule("zone short (preview)", _in(P.PREVIEW), _zone_held, _stay),
    Rule("promote", _in(P.PREVIEW), _always, _preview_verified),
    # -- CANARY_STEP: one row per reason to wait, then the next step ---------------------------------
    Rule("promote --full", _in(P.CANARY_STEP), lambda at: at.op is OperatorRequest.PROMOTE_FULL,
         lambda at: Transition(Phase.PROMOTING, "fully promoted by operator: remaining steps skipped",
                               paused=False if at.state.paused else None)),
    Rule("paused", _in(P.CANARY_STEP), lambda at: at.state.paused and not _step_ended(at), _stay),
    Rule("weight not converged", _in(P.CANARY_STEP),
         lambda at: _step(at).weight is not None and at.obs.production_check is not None
         and not at.obs.production_check.ok,
         lambda at: at.rollback(f"traffic did not converge: {at.obs.production_check.detail}")),  # type: ignore[union-attr]
    Rule("step in progress", _in(P.CANARY_STEP), _step_waits, _stay),
    Rule("stable short", _in(P.CANARY_STEP), lambda at: stable_short(at.state, at.plan, at.obs) is not None,
         _stay),
    Rule("zone short (canary)", _in(P.CANARY_STEP), _zone_held, _stay),
    Rule("confirm gate", _in(P.CANARY_STEP), _gate_waits, _stay),
    Rule("confirm timed out", _in(P.CANARY_STEP), _gate_timed_out,
         lambda at: at.rollback(f"no confirmation {_confirm_gate(at.plan, at.state.step_index)} "
                                f"within {at.plan.confirm_timeout_s:.0f}s")),
    Rule("next step", _in(P.CANARY_STEP), _always, _next_step),
    # -- PROMOTING → the next zone's wave | SCALE_DOWN_WAIT ------------------------------------------
    Rule("switch probing", _in(P.PROMOTING), lambda at: at.obs.production_check is None, _stay),
    Rule("switch failed", _in(P.PROMOTING), lambda at: not at.obs.production_check.ok,  # type: ignore[union-attr]
         lambda at: at.rollback(
             f"switch not observed on the data plane: {at.obs.production_check.detail}")),  # type: ignore[union-attr]
    Rule("switched", _in(P.PROMOTING), _always, _promoted),
    # -- ZONE_WAIT: between two zones' waves ---------------------------------------------------------
    Rule("no zone left", _in(P.ZONE_WAIT), lambda at: not _more_waves(at),
         lambda at: Transition(Phase.SCALE_DOWN_WAIT, "no zone left to roll out")),
    Rule("zone confirmed", _in(P.ZONE_WAIT), _zone_confirmed,
         lambda at: _next_wave(
             at, f"next zone {at.plan.zones[at.state.wave + 1]} (confirmed)", consumes=True)),
    Rule("zone pause over", _in(P.ZONE_WAIT), _zone_pause_over,
         lambda at: _next_wave(at, f"next zone {at.plan.zones[at.state.wave + 1]} "
                                   f"after {at.plan.pause_between_s:.0f}s")),
    Rule("zone waiting", _in(P.ZONE_WAIT), _always, _stay),
    # -- SCALE_DOWN_WAIT → SCALING_DOWN → SUCCEEDED ---------------------------------------------------
    Rule("keep warm", _in(P.SCALE_DOWN_WAIT), lambda at: not _scale_down_due(at), _stay),
    Rule("scale down", _in(P.SCALE_DOWN_WAIT), _always,
         lambda at: Transition(Phase.SCALING_DOWN, f"old version kept warm "
                                                   f"{min(at.elapsed, at.plan.scale_down_delay_s):.0f}s")),
    Rule("old gone", _in(P.SCALING_DOWN), lambda at: at.obs.old_stopped or at.obs.old_running == 0,
         _scaled_down),
    Rule("scaling down", _in(P.SCALING_DOWN), _always, _stay),
    # -- ROLLING_BACK → ROLLED_BACK | FAILED -----------------------------------------------------------
    Rule("new gone", _in(P.ROLLING_BACK), lambda at: at.obs.new_stopped,
         lambda at: Transition(
             Phase.ROLLED_BACK if at.state.has_stable else Phase.FAILED, "new version stopped")),
    Rule("rolling back", _in(P.ROLLING_BACK), _always, _stay),
)  # fmt: skip
"""The rollout decision, read top-down: the first row that applies decides (``decide``)."""


def _zone_note(plan: Plan, wave: int) -> str:
    return f" in zone {plan.zones[wave]}" if plan.zones and plan.zone_waves else ""


def zone_new_share(plan: Plan, phase: Phase, wave: int, step_index: int) -> dict[str, int]:
    """Per zone, the percentage of its production traffic the new version gets in this state.

    Zones of the waves before ``wave`` serve the new version, the zones after it the old one; the
    wave's own zone follows the phase (a canary step's weight, all once promoted).  After the last
    wave (keeping the old version warm, scaling it down) every zone is on the new version; a
    rollback puts every zone back on the old one."""
    if not plan.zones:
        return {}
    if phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.FAILED):
        return dict.fromkeys(plan.zones, 0)
    if phase in (Phase.SCALE_DOWN_WAIT, Phase.SCALING_DOWN, Phase.SUCCEEDED):
        return dict.fromkeys(plan.zones, 100)
    current = set(plan.wave_zones(wave))
    done = set(plan.zones_through(wave)) - current
    if phase in (Phase.PROMOTING, Phase.ZONE_WAIT):
        here = 100
    elif phase is Phase.CANARY_STEP:
        here = canary_weights(plan, step_index)
    else:
        here = 0
    return {z: 100 if z in done else here if z in current else 0 for z in plan.zones}


def zone_short(state: RolloutState, plan: Plan, obs: Observation) -> str | None:
    """Why traffic moves no further now: a zone serves with fewer than ``minHealthyPerZone``
    instances of the version(s) serving it (a zone that lost its instances is out of routing and
    being restored), or None."""
    if not plan.zones or plan.min_healthy_per_zone <= 0 or not obs.zones:
        return None
    shares = zone_new_share(plan, state.phase, state.wave, state.step_index)
    short = []
    for z in plan.zones:
        count = obs.zones.get(z, ZoneCount())
        serving = []
        if shares.get(z, 0) > 0:
            serving.append(("new", count.new_healthy))
        if shares.get(z, 0) < 100 and state.has_stable:
            serving.append(("old", count.old_running))
        for version, n in serving:
            if n < plan.min_healthy_per_zone:
                short.append(f"{z}: {n} {version}")
    if not short:
        return None
    return (f"holding: zone(s) below minHealthyPerZone {plan.min_healthy_per_zone} "
            f"({', '.join(short)})")  # fmt: skip


def _past_progress_deadline(state: RolloutState, plan: Plan, elapsed: float) -> bool:
    return (
        (state.phase in _WATCHING or state.phase is Phase.ZONE_WAIT)
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
            state, obs, f"health: {obs.new_healthy}/{plan.new_target(state.wave)} healthy after "
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
    if state.phase is Phase.ZONE_WAIT:  # a zone still short after the pause meets the deadline
        return plan.pause_between == "confirm" or elapsed <= plan.pause_between_s + plan.progress_deadline_s
    return False



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


def zone_weights(
    shares: Mapping[str, int], serving: Sequence[str], has_stable: bool
) -> dict[tuple[str, str], int]:
    """Production weights per (zone, "new" | "old") for the zones that can serve: each zone gets an
    equal share of the traffic, split between the versions by ``shares`` (percent on the new one).

    Integer percentages summing to 100 (largest remainder); a zone left out of ``serving`` (it lost
    the instances its share needs) gets nothing, and the others take its traffic."""
    if not serving:
        return {}
    each = 100.0 / len(serving)
    exact: dict[tuple[str, str], float] = {}
    for z in serving:
        new = shares.get(z, 0)
        if new > 0:
            exact[(z, "new")] = each * new / 100
        if new < 100 and has_stable:
            exact[(z, "old")] = each * (100 - new) / 100
    total = sum(exact.values())
    if total <= 0:
        return {}
    scaled = {k: v * 100 / total for k, v in exact.items()}
    out = {k: int(v) for k, v in scaled.items()}
    rest = 100 - sum(out.values())
    for k in sorted(scaled, key=lambda k: (out[k] - scaled[k], k))[:rest]:
        out[k] += 1
    return out
