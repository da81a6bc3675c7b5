"""Use cases: start, drive, roll back and steer deployments.

``RolloutService.run`` is the reconciler.  Each tick it: takes (or renews) the
deployment's lease, makes the current phase's entry effect true (idempotent),
observes the world, asks the pure ``domain.rollout.decide`` where to go, and
persists the transition before the next tick performs the next effect.  It
holds no state that matters across ticks except health-probe streaks, which
are cheap to rebuild — so a killed driver is resumed by any other process
(the same ``deploy`` command, ``rollback``, or ``reconcile``) once its lease
expires.

A tick always reaches ``decide``.  Whatever the effect or the observation
raises becomes an ``EffectFailure`` in the observation (persisted in the
phase's step as ``effect_failure``, so the count survives a restart); the
effect is retried with backoff, and ``decide`` still reads the operator's
requests and the deadlines, and gives up on the phase when the retry budget
is spent (see "Effects that fail" in ``domain.rollout``).
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from shipwarden.domain.policy import AnalysisStep, LoadedPolicy, Pause, ServiceSpec
from shipwarden.domain.rollout import (
    EFFECTS,
    CanaryStepSpec,
    Check,
    Effect,
    EffectFailure,
    Observation,
    OperatorRequest,
    Phase,
    Plan,
    RolloutState,
    ZoneCount,
    analysis_watches,
    canary_weights,
    decide,
    first_failure,
    promote_refusal,
    stable_replacements,
    stable_short,
    zone_new_share,
    zone_short,
    zone_weights,
)
from shipwarden.ports.platform import Instance, InstanceState, Platform
from shipwarden.ports.routing import Listener, Pool, Routes, TrafficRouter
from shipwarden.ports.store import Deployment, DeploymentStore, StoreError
from shipwarden.services.analysis import AnalysisController

log = logging.getLogger(__name__)


class DeployError(RuntimeError):
    """A deployment could not be started or steered (bad request; nothing changed)."""


def plan_for(spec: ServiceSpec, *, skip_steps: bool = False, zones: tuple[str, ...] = ()) -> Plan:
    """The policy reduced to the numbers the state machine reads (``zones``: the service's zone
    order, from ``Policy.zone_order``; a rollout goes zone by zone unless it skips steps)."""
    st = spec.strategy
    inst, start_s = spec.run.instances, spec.health.start_timeout
    zr = st.zones
    pause = zr.pause_between if zr is not None else "none"
    zoned: dict[str, Any] = {
        "zones": zones,
        "zone_waves": bool(zones) and not skip_steps,
        "pause_between": pause if isinstance(pause, str) else "timed",
        "pause_between_s": float(pause) if not isinstance(pause, str) else 0.0,
        "min_healthy_per_zone": (zr.min_healthy(inst) if zr is not None else 1) if zones else 0,
    }
    if st.blue_green is not None:
        bg = st.blue_green
        return Plan(
            **zoned,
            strategy="blueGreen",
            instances=inst,
            health_start_timeout_s=start_s,
            healthy_threshold=spec.health.healthy_threshold,
            skip_steps=skip_steps,
            scale_down_delay_s=bg.scale_down_delay,
            auto_promotion=bg.auto_promotion,
            progress_deadline_s=bg.progress_deadline,
            pre_promotion_analysis=bg.pre_promotion_analysis is not None and not skip_steps,
            post_promotion_analysis=bg.post_promotion_analysis is not None and not skip_steps,
        )
    c = st.canary
    assert c is not None
    steps = tuple(
        CanaryStepSpec(pause=True, pause_s=s.pause.duration)
        if isinstance(s, Pause)
        else CanaryStepSpec(analysis=True)
        if isinstance(s, AnalysisStep)
        else CanaryStepSpec(weight=s.set_weight)
        for s in c.steps
    )
    return Plan(
        **zoned,
        strategy="canary",
        instances=inst,
        health_start_timeout_s=start_s,
        healthy_threshold=spec.health.healthy_threshold,
        skip_steps=skip_steps,
        scale_down_delay_s=c.scale_down_delay,
        canary_steps=steps,
        progress_deadline_s=c.progress_deadline,
        on_inconclusive=c.on_inconclusive,
        background_analysis_from=c.analysis.starting_step if c.analysis else None,
        confirm_weight_increase=c.confirm.before_weight_increase,
        confirm_promotion=c.confirm.before_promotion,
        confirm_timeout_s=c.confirm.timeout,
        confirm_on_timeout=c.confirm.on_timeout,
        min_available=c.min_available,
    )


def _plan_from_json(data: dict[str, Any]) -> Plan:
    data = dict(data)
    data["canary_steps"] = tuple(CanaryStepSpec(**s) for s in data.get("canary_steps", ()))
    data["zones"] = tuple(data.get("zones", ()))
    return Plan(**data)


@dataclass
class _Health:
    """Consecutive health-probe results per instance (thresholds from the policy)."""

    ok: dict[str, int] = field(default_factory=dict)
    bad: dict[str, int] = field(default_factory=dict)
    probes: dict[str, int] = field(default_factory=dict)  # total probes by this process


@dataclass(frozen=True)
class Tick:
    deployment: Deployment
    observation: Observation


class RolloutService:
    def __init__(
        self,
        store: DeploymentStore,
        platform: Platform,
        router: TrafficRouter,
        policy: LoadedPolicy,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        tick_s: float = 0.2,
        lease_ttl_s: float = 5.0,
        analysis: AnalysisController | None = None,
        alerts: Callable[[Deployment], object] | None = None,
    ) -> None:
        self.store, self.platform, self.router, self.loaded = store, platform, router, policy
        self.clock, self.sleep, self.tick_s, self.lease_ttl_s = clock, sleep, tick_s, lease_ttl_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"
        """This process; a lease names the driving thread too (:meth:`lease_owner`)."""
        self.analysis = analysis or AnalysisController(store, router, {}, clock)
        self._replaced: dict[str, int] = {}  # dead stable instances replaced, per deployment
        self._held: dict[str, str | None] = {}  # the hold last recorded, per deployment
        self._health = _Health()
        #: told every deployment the controller moved (``services.alerts.RolloutAlerts``)
        self.alerts = alerts
        self._router_ready = False  # listeners exposed and the data plane started by this process
        #: the effect failures of each deployment's current step, as this process last read or wrote
        #: them (the store's copy in the step's detail is the truth; read once per step and driver)
        self._failures: dict[str, tuple[tuple[str, int, float], EffectFailure | None]] = {}
        self._effects: dict[Effect, Callable[[_World], dict[str, Any]]] = {
            Effect.NONE: lambda w: {},
            Effect.START_NEW: self._start_new,
            Effect.ROUTE_PREVIEW: self._route_preview,
            Effect.ROUTE_CANARY: self._route_canary,
            Effect.ROUTE_NEW: self._route_new,
            Effect.STOP_OLD: self._stop_old,
            Effect.ROUTE_OLD: self._route_old,
        }
        """One function per ``Effect``: what makes the phase's entry effect true (idempotent)."""

    # -- starting ----------------------------------------------------------------------------
    def spec(self, service: str) -> ServiceSpec:
        return self.loaded.policy.service(service)

    def listener(self, spec: ServiceSpec) -> Listener:
        return Listener(spec.name, spec.routing.port, spec.routing.preview_port)

    def start(self, service: str, version: str, *, actor: str, commit_sha: str | None = None) -> Deployment:
        """Record a deployment of ``version``; ``run`` drives it."""
        spec = self.spec(service)
        active = self.store.active(service)
        if active is not None:
            if active.to_version == version and active.kind == "deploy":
                return active  # re-running the same command resumes it
            raise DeployError(
                f"{service} has deployment {active.id} in progress ({active.phase}); "
                f"wait for it, or `shipwarden rollback {service}`"
            )
        missing = self.analysis.missing_providers(spec)
        if missing:
            raise DeployError(
                f"{service}'s analysis uses metric provider(s) {sorted(missing)} that are not configured "
                "(set SHIPWARDEN_PROMETHEUS_URL or SHIPWARDEN_NEWRELIC_API_KEY/_ACCOUNT_ID)"
            )
        stable, _ = self.store.stable_version(service)
        if stable == version:
            raise DeployError(f"{version} is already the stable version of {service}")
        return self.store.create_deployment(
            service=service,
            kind="deploy",
            strategy=spec.strategy.kind,
            from_version=stable,
            to_version=version,
            actor=actor,
            policy_digest=self.loaded.digest,
            policy_source=self.loaded.source,
            plan=_plan_json(plan_for(spec, zones=self.loaded.policy.zone_order(spec))),
            commit_sha=commit_sha,
        )

    def rollback(self, service: str, *, actor: str) -> Deployment:
        """Roll back at once: steer the active deployment back, or deploy the previous version again."""
        spec = self.spec(service)
        active = self.store.active(service)
        if active is not None and active.phase is not Phase.SCALING_DOWN:
            return self.store.request(active.id, OperatorRequest.ROLLBACK, actor)
        if active is not None:  # old instances are already going: finish, then redeploy the previous version
            self.run(active.id)
        stable, previous = self.store.stable_version(service)
        if previous is None:
            raise DeployError(
                f"{service} has no previous version to roll back to (stable: {stable or 'none'})"
            )
        return self.store.create_deployment(
            service=service,
            kind="rollback",
            strategy=spec.strategy.kind,
            from_version=stable,
            to_version=previous,
            actor=actor,
            policy_digest=self.loaded.digest,
            policy_source=self.loaded.source,
            plan=_plan_json(plan_for(spec, skip_steps=True, zones=self.loaded.policy.zone_order(spec))),
        )

    def request(self, service: str, request: OperatorRequest, *, actor: str) -> Deployment:
        active = self.store.active(service)
        if active is None:
            raise DeployError(f"{service} has no deployment in progress")
        if request is OperatorRequest.PROMOTE:
            why = promote_refusal(_plan_from_json(active.plan), active.phase, active.step_index)
            if why is not None:
                raise DeployError(f"{service} ({active.id}): {why}")
        if request is OperatorRequest.ROLLBACK and active.phase is Phase.SCALING_DOWN:
            raise DeployError(
                f"{service} ({active.id}) is stopping the old version {active.from_version}: it cannot be "
                f"aborted back to it; `shipwarden rollback {service}` finishes and deploys it again"
            )
        return self.store.request(active.id, request, actor)

    # -- the reconciler ----------------------------------------------------------------------
    def run(
        self,
        dep_id: str,
        on_tick: Callable[[Tick], None] | None = None,
        until: Callable[[Deployment], bool] | None = None,
    ) -> Deployment:
        """Drive a deployment to a terminal phase (or until ``until`` says stop).

        The lease is renewed once half of it is spent, not every tick: one write per
        ``lease_ttl_s / 2`` rather than five a second, for each of a hundred processes at once."""
        owner = self.lease_owner()
        renew_at = 0.0  # when this driver's lease is half spent
        try:
            while True:
                dep = self.store.get(dep_id)
                if dep.phase.terminal:
                    return self.ended(dep)
                if until is not None and until(dep):
                    return dep
                now = self.clock()
                if now >= renew_at or dep.lease_owner != owner:
                    if not self.store.acquire_lease(dep.id, owner, self.lease_ttl_s):
                        self._failures.pop(dep.id, None)  # the other driver may count on; read it again
                        renew_at = 0.0
                        self.sleep(self.tick_s)  # another live driver has it; watch
                        continue
                    renew_at = now + self.lease_ttl_s / 2
                after = self.reconcile_once(dep, None, on_tick)
                moved = (after.phase, after.step_index) != (dep.phase, dep.step_index)
                if not after.phase.terminal and not moved:
                    self.sleep(self.tick_s)  # nothing moved: wait; a transition's next effect goes at once
        finally:
            self.store.release_lease(dep_id, owner)

    def tick(self, dep_id: str) -> Deployment:
        """One tick of a deployment whose lease the caller holds and renews (``serve``'s controller,
        which schedules the ticks of many deployments on a few threads)."""
        dep = self.store.get(dep_id)
        if dep.phase.terminal:
            return self.ended(dep)
        return self.reconcile_once(dep)

    def ended(self, dep: Deployment) -> Deployment:
        """A deployment found in a terminal phase: send what a crash may have left unsent, and
        forget what this process kept about it."""
        for kept in (self._failures, self._held, self._replaced):
            kept.pop(dep.id, None)
        self.analysis.forget(dep.id)
        self._alert(dep)
        return dep

    def lease_owner(self) -> str:
        """The lease name of the calling thread: two threads of one process (the API's controller
        and continuous delivery's driver, say) exclude each other like two processes do."""
        return f"{self.owner}:{threading.get_ident()}"

    def reconcile_once(
        self,
        dep: Deployment,
        spec: ServiceSpec | None = None,
        on_tick: Callable[[Tick], None] | None = None,
    ) -> Deployment:
        """One tick: effect → observe → decide → persist.  Raises only what the store raises."""
        plan = _plan_from_json(dep.plan)
        failure = self._failure(dep)
        obs: Observation | None = None
        if failure is None or self.clock() >= failure.retry_at:
            effect = EFFECTS[dep.phase]
            what = "observe" if effect is Effect.NONE else effect.value
            try:
                spec = spec or self.spec(dep.service)  # the service may have left the policy
                self._prepare_router()
                detail = self._apply(dep, spec, plan)
                if detail:
                    self.store.record_detail(dep.id, detail)
                what = "observe"
                obs = self._observe(dep, spec, plan)
            except Exception as exc:  # whatever it is, the decision below must still be made
                failure = self._failed(dep, failure, what, exc)
            else:
                if failure is not None:  # recovered: keep the evidence, stop counting
                    self._set_failure(dep, None)
                    failure = None
        if obs is None:
            obs = self._glance(dep)
        obs = replace(obs, effect_failure=failure)
        if on_tick is not None:
            on_tick(Tick(dep, obs))
        state = RolloutState(
            dep.phase,
            dep.phase_entered_at,
            has_stable=dep.from_version is not None,
            step_index=dep.step_index,
            paused=dep.paused,
            paused_by_analysis=dep.paused and dep.pause_cause == "analysis",
            wave=dep.wave,
        )
        t = decide(state, plan, obs)
        if t is None:
            held = stable_short(state, plan, obs) or zone_short(state, plan, obs)
            if held != self._held.get(dep.id):  # say it once, in the step's record, when it changes
                self._held[dep.id] = held
                self.store.record_detail(dep.id, {"holding": held})
            return dep
        try:
            moved = self.store.transition(
                dep, t, actor=dep.operator_actor or f"controller:{dep.actor}", detail=_check_detail(obs)
            )
        except StoreError:
            return self.store.get(dep.id)
        self._alert(moved)
        return moved

    def _prepare_router(self) -> None:
        """Expose every service of the policy at once (a later first deployment of another service
        then finds its listener in place and reloads nothing under that service's traffic) and
        start the data plane, as part of a tick, so a router that cannot start is a failing effect
        like any other, not an error that stops the decision.  The listeners once per process; the
        start every tick (a no-op while it runs): a router found down — stopped, crashed, never
        started — is started again by whichever driver comes first, instead of failing them all."""
        if not self._router_ready:
            self.router.ensure_listeners([self.listener(s) for s in self.loaded.policy.services])
            self._router_ready = True
        self.router.start()

    @staticmethod
    def _step_key(dep: Deployment) -> tuple[str, int, float]:
        return (dep.phase.value, dep.step_index, dep.phase_entered_at)

    def _failure(self, dep: Deployment) -> EffectFailure | None:
        """The failures of this phase's effect so far (kept in the phase's step)."""
        key, known = self._failures.get(dep.id, (None, None))
        if key == self._step_key(dep):
            return known
        steps = self.store.steps(dep.id)
        data = steps[-1].detail.get("effect_failure") if steps else None
        failure = EffectFailure.from_dict(data) if isinstance(data, dict) else None
        self._failures[dep.id] = (self._step_key(dep), failure)
        return failure

    def _set_failure(self, dep: Deployment, failure: EffectFailure | None) -> None:
        """Persist this step's failures (None: the effect succeeded again, the evidence is kept)."""
        before = self._failure(dep)
        if failure is not None:
            self.store.record_detail(dep.id, {"effect_failure": failure.as_dict()})
        elif before is not None:
            self.store.record_detail(dep.id, {"effect_failure": None, "effect_recovered": before.as_dict()})
        self._failures[dep.id] = (self._step_key(dep), failure)

    def _failed(
        self, dep: Deployment, before: EffectFailure | None, what: str, exc: Exception
    ) -> EffectFailure:
        """Record one more failed attempt of this phase's effect; log it once per attempt."""
        now, error = self.clock(), f"{type(exc).__name__}: {exc}"
        failure = first_failure(now, what, error) if before is None else before.then(now, what, error)
        self._set_failure(dep, failure)
        log.warning(
            "%s (%s): %s failed, attempt %d; next try in %.0fs: %s",
            dep.id, dep.phase.value, what, failure.attempts, failure.retry_at - now, error,
            exc_info=before is None,  # the traceback once, then one line per (backed-off) attempt
        )  # fmt: skip
        return failure

    def _glance(self, dep: Deployment) -> Observation:
        """What can be seen while the phase's effect fails: the instances, the operator, the clock."""
        base = Observation(
            now=self.clock(),
            new_version=dep.to_version,
            old_version=dep.from_version,
            operator=dep.operator_request,
        )
        try:
            new, old = self._split(dep)
        except Exception:
            return replace(base, observed=False)
        return replace(
            base,
            new_running=sum(i.state is InstanceState.RUNNING for i in new),
            new_dead=sum(i.state is InstanceState.DEAD for i in new),
            old_running=sum(i.state is InstanceState.RUNNING for i in old),
            new_stopped=not new,
            old_stopped=not old,
        )

    def _alert(self, dep: Deployment) -> None:
        if self.alerts is None:
            return
        try:
            self.alerts(dep)
        except Exception:  # an alert must never stop a rollout or a rollback
            log.exception("rollout alert for %s failed", dep.id)

    # -- effects -----------------------------------------------------------------------------
    def _split(self, dep: Deployment) -> tuple[list[Instance], list[Instance]]:
        insts = self.platform.instances(dep.service)
        new = [i for i in insts if i.version == dep.to_version]
        old = [i for i in insts if dep.from_version is not None and i.version == dep.from_version]
        return new, old

    def _healthy_new(self, new: list[Instance], spec: ServiceSpec) -> list[Instance]:
        return [i for i in new if self._health.ok.get(i.id, 0) >= spec.health.healthy_threshold]

    def _restore_stable(
        self, dep: Deployment, spec: ServiceSpec, plan: Plan, old: list[Instance]
    ) -> list[str]:
        """Replace the stable instances that died while a canary runs (``minAvailable``)."""
        dead = [i for i in old if i.state is InstanceState.DEAD]
        if not dead:
            return []
        if dep.id not in self._replaced:  # a resumed controller goes on with the stored budget
            done = self.store.audit_entries(deployment_id=dep.id, action="rollout.stable_replaced")
            self._replaced[dep.id] = sum(len(e.detail.get("started", [])) for e in done)
        replaced = self._replaced[dep.id]
        n = stable_replacements(plan, dep.phase, dep.from_version is not None, len(dead), replaced)
        if n == 0 or dep.from_version is None:
            return []
        started: list[Instance] = []
        gone: list[Instance] = []  # the dead ones replaced
        for zone in (plan.zones or (None,)):  # each in the zone it died in
            here = [i for i in dead[:n] if i.zone == zone or not plan.zones]
            if not here:
                continue
            try:
                started += self.platform.start(spec, dep.from_version, len(here), zone)
                gone += here
            except Exception as exc:
                if not plan.zones:
                    raise
                # zones: a zone that cannot be restored must not stop the phase's routing (which
                # takes it out); the rollout holds below minHealthyPerZone until its deadline
                log.warning("%s: cannot restore %s in zone %s: %s", dep.id, dep.from_version, zone, exc)
                self.store.record_detail(dep.id, {"restore_failed": f"zone {zone}: {exc}"})
        if not started:
            return []
        self.platform.stop(gone, 0)  # already gone: this only forgets them (once replaced: a
        # start that fails leaves them listed, so the next tick tries again)
        self._replaced[dep.id] = replaced + len(gone)
        addresses = [i.address for i in started]
        self.store.audit(
            actor=f"controller:{dep.actor}",
            action="rollout.stable_replaced",
            service=dep.service,
            deployment_id=dep.id,
            detail={"version": dep.from_version, "dead": [i.address for i in gone], "started": addresses},
        )
        log.warning("%s: %d stable instance(s) died; started %s", dep.id, len(gone), addresses)
        return addresses

    def _apply(self, dep: Deployment, spec: ServiceSpec, plan: Plan) -> dict[str, Any]:
        new, old = self._split(dep)
        replaced = self._restore_stable(dep, spec, plan, old)
        if replaced and not plan.zones:
            return {"replaced_stable": replaced}  # routed on the next tick, once counted as running
        if replaced:  # zones: the effect still runs (a dead zone leaves the table now); the new
            new, old = self._split(dep)  # stable instances are routed once healthy (``warming``)
        done = self._effects[EFFECTS[dep.phase]](self._world(dep, spec, plan, new, old))
        return {"replaced_stable": replaced, **done} if replaced else done

    def _world(
        self, dep: Deployment, spec: ServiceSpec, plan: Plan, new: list[Instance], old: list[Instance]
    ) -> _World:
        warming = frozenset(
            i.id for i in self._replacements(dep, plan, old)
            if self._health.ok.get(i.id, 0) < spec.health.healthy_threshold
        )  # fmt: skip
        return _World(dep, spec, plan, new, old, warming)

    @staticmethod
    def _replacements(dep: Deployment, plan: Plan, old: list[Instance]) -> list[Instance]:
        """Stable instances started during this zone rollout (to replace dead ones): probed like
        new ones, routed once healthy."""
        if not plan.zones:
            return []
        since = dep.created_at
        return [i for i in old if i.state is InstanceState.RUNNING and (i.started_at or 0.0) >= since]

    def _start_new(self, w: _World) -> dict[str, Any]:
        if any(i.state is InstanceState.DEAD for i in w.new):
            return {}  # the decision rolls back
        started: list[Instance] = []
        for zone in w.plan.zones_through(w.dep.wave) or (None,):
            live = [i for i in w.new_live if zone is None or i.zone == zone]
            missing = w.plan.instances - len(live)
            if missing > 0:
                started += self.platform.start(w.spec, w.dep.to_version, missing, zone)
        return {"started": [i.address for i in started]} if started else {}

    def _route_preview(self, w: _World) -> dict[str, Any]:
        if w.plan.zones:
            preview = w.wave_pool
            if preview is not None:
                self._route(w.dep.service, Routes(production=w.zone_production(), preview=(preview,)))
            return {}
        if w.new_pool is not None:
            production = (_full(w.old_pool),) if w.old_pool else ()
            self._route(w.dep.service, Routes(production=production, preview=(_full(w.new_pool),)))
        return {}

    def _route_canary(self, w: _World) -> dict[str, Any]:
        if w.new_pool is None:
            return {}
        if w.plan.zones:
            self._route(w.dep.service, Routes(production=w.zone_production(), preview=(_full(w.new_pool),)))
            return {}
        weight = canary_weights(w.plan, w.dep.step_index)
        prod = [Pool(w.new_pool.version, w.new_pool.addresses, weight)] if weight > 0 else []
        if w.old_pool is not None and weight < 100:
            prod.append(Pool(w.old_pool.version, w.old_pool.addresses, 100 - weight))
        elif w.old_pool is None:
            prod = [_full(w.new_pool)]
        self._route(w.dep.service, Routes(production=tuple(prod), preview=(_full(w.new_pool),)))
        return {}

    def _route_new(self, w: _World) -> dict[str, Any]:
        if w.plan.zones and w.new_pool is not None:
            self._route(w.dep.service, Routes(production=w.zone_production(), preview=(_full(w.new_pool),)))
            return {}
        if w.new_pool is not None:
            self._route(w.dep.service, Routes(production=(_full(w.new_pool),), preview=(_full(w.new_pool),)))
        return {}

    def _stop_old(self, w: _World) -> dict[str, Any]:
        if not w.old:
            return {}
        self._ensure_not_routed(w.dep.service, {i.address for i in w.old})
        self.platform.stop(w.old, w.spec.run.stop_timeout)
        return {"stopped": [i.address for i in w.old]}

    def _route_old(self, w: _World) -> dict[str, Any]:
        production = w.zone_production() if w.plan.zones and w.old_pool else None
        routes = Routes(production=production or ((_full(w.old_pool),) if w.old_pool else ()), preview=())
        self._route(w.dep.service, routes)
        if w.dep.traffic_restored_at is None:
            self.store.mark_traffic_restored(w.dep.id)
        if not w.new:
            return {}
        self._ensure_not_routed(w.dep.service, {i.address for i in w.new})
        self.platform.stop(w.new, w.spec.run.stop_timeout)
        return {"stopped": [i.address for i in w.new]}

    def _route(self, service: str, routes: Routes) -> None:
        if self.router.current(service) != routes:
            self.router.apply(service, routes)

    def _ensure_not_routed(self, service: str, addresses: set[str]) -> None:
        cur = self.router.current(service)
        if cur is None:
            return
        for pool in (*cur.production, *cur.preview):
            if addresses & set(pool.addresses):
                raise DeployError(f"refusing to stop {sorted(addresses)}: still routed in {service}")

    # -- observation -------------------------------------------------------------------------
    def _probe_health(self, spec: ServiceSpec, insts: list[Instance]) -> None:
        for i in insts:
            self._health.probes[i.id] = self._health.probes.get(i.id, 0) + 1
            if self.platform.healthy(spec, i):
                self._health.ok[i.id] = self._health.ok.get(i.id, 0) + 1
                self._health.bad[i.id] = 0
            else:
                self._health.bad[i.id] = self._health.bad.get(i.id, 0) + 1
                self._health.ok[i.id] = 0

    def _observe(self, dep: Deployment, spec: ServiceSpec, plan: Plan) -> Observation:
        now = self.clock()
        new, old = self._split(dep)
        running_new = [i for i in new if i.state is InstanceState.RUNNING]
        self._probe_health(spec, running_new + self._replacements(dep, plan, old))
        probes = min((self._health.probes.get(i.id, 0) for i in running_new), default=None)
        failing = [
            i
            for i in new
            if i.state is InstanceState.RUNNING
            and self._health.bad.get(i.id, 0) >= spec.health.unhealthy_threshold
            and (dep.phase is not Phase.STARTING or (plan.zones and i.zone not in plan.wave_zones(dep.wave)))
        ]  # starting: only the zones of earlier waves (serving already) count a failing instance
        dead = [i for i in new if i.state is InstanceState.DEAD] + failing
        cur = self.router.current(dep.service)
        preview = prod = None
        if dep.phase is Phase.PREVIEW:
            preview = self._verify("preview", dep, spec, {dep.to_version: 100})
        elif plan.zones and (
            dep.phase is Phase.PROMOTING
            or (dep.phase is Phase.CANARY_STEP and plan.canary_steps[dep.step_index].weight is not None)
        ):
            expected = Routes(self._world(dep, spec, plan, new, old).zone_production()).weights()
            if cur is not None and cur.production and cur.weights() != expected:
                # An instance went live (or died) between this tick's effect and this observation —
                # a zone's restored instance: the data plane serves the table the effect applied,
                # and the next tick's effect routes the newcomer.  Check what is routed now.
                expected = cur.weights()
            prod = self._verify(
                "production", dep, spec, {k: v for k, v in expected.items() if v > 0},
                routing_only=dep.phase is Phase.CANARY_STEP and analysis_watches(plan, dep.step_index),
            )  # fmt: skip
        elif dep.phase is Phase.PROMOTING:
            prod = self._verify("production", dep, spec, {dep.to_version: 100})
        elif dep.phase is Phase.CANARY_STEP and plan.canary_steps[dep.step_index].weight is not None:
            w = canary_weights(plan, dep.step_index)
            expected = {dep.to_version: w, **({dep.from_version: 100 - w} if dep.from_version else {})}
            prod = self._verify(
                "production",
                dep,
                spec,
                {k: v for k, v in expected.items() if v > 0},
                routing_only=analysis_watches(plan, dep.step_index),
            )
        analysis, inconclusive, numbers = self.analysis.observe(dep, spec)
        if numbers and (analysis is not None or inconclusive):
            self.store.record_detail(dep.id, {"analysis": numbers})
        return Observation(
            now=now,
            analysis=analysis,
            analysis_inconclusive=inconclusive,
            new_running=sum(i.state is InstanceState.RUNNING for i in new),
            new_healthy=len(self._healthy_new(new, spec)),
            new_dead=len(dead),
            old_running=sum(i.state is InstanceState.RUNNING for i in old),
            production_weights=cur.weights() if cur else {},
            new_version=dep.to_version,
            old_version=dep.from_version,
            preview_check=preview,
            production_check=prod,
            operator=dep.operator_request,
            new_stopped=not new,
            old_stopped=not old,
            health_probes=probes,
            new_started_at=max((i.started_at for i in running_new if i.started_at), default=None),
            zones=self._zone_counts(plan, new, old, spec),
        )

    def _zone_counts(
        self, plan: Plan, new: list[Instance], old: list[Instance], spec: ServiceSpec
    ) -> dict[str, ZoneCount]:
        healthy = {i.id for i in self._healthy_new(new, spec)}
        return {
            z: ZoneCount(
                new_healthy=sum(1 for i in new if i.zone == z and i.id in healthy),
                old_running=sum(1 for i in old if i.zone == z and i.state is InstanceState.RUNNING),
            )
            for z in plan.zones
        }

    def _verify(
        self,
        route: str,
        dep: Deployment,
        spec: ServiceSpec,
        expected: dict[str, int],
        *,
        routing_only: bool = False,
    ) -> Check:
        """Send real requests through ``route`` and check who answered matches ``expected`` weights.

        ``routing_only``: 5xx answered by a version count as routed to it (an analysis judges
        the error rate); transport errors and the router's own 5xx still fail the check.
        """
        st = spec.strategy.blue_green or spec.strategy.canary
        assert st is not None
        n = (
            spec.strategy.blue_green.preview.requests
            if (route == "preview" and spec.strategy.blue_green)
            else st.verify_requests
        )
        res = self.router.probe(dep.service, route, n)
        seen = dict(res.versions)
        answered = sum(res.server_errors.values())
        note = ""
        if routing_only and answered:
            seen = dict(res.versions + res.server_errors)
            note = f"; 5xx answered {dict(res.server_errors)} (left to the analysis)"
        unrouted = res.failures - (answered if routing_only else 0)
        if unrouted:
            return Check(
                False, f"{unrouted}/{res.total} requests failed on {route}; versions {seen}", self.clock()
            )
        for version, weight in expected.items():
            got = seen.get(version, 0)
            p = weight / 100
            slack = 4 * math.sqrt(n * p * (1 - p)) + 1
            if abs(got - n * p) > slack:
                return Check(
                    False, f"{route}: {version} answered {got}/{n}, expected ≈{weight}%", self.clock()
                )
        unexpected = set(seen) - set(expected)
        if unexpected:
            return Check(False, f"{route}: unexpected versions answered: {sorted(unexpected)}", self.clock())
        return Check(True, f"{route}: {n} requests, versions {seen}{note}", self.clock())


@dataclass(frozen=True)
class _World:
    """What an effect works on: the deployment and the instances this tick listed."""

    dep: Deployment
    spec: ServiceSpec
    plan: Plan
    new: list[Instance]
    old: list[Instance]
    warming: frozenset[str] = frozenset()  # stable replacements not yet healthy: not routed

    @property
    def new_live(self) -> list[Instance]:
        return [i for i in self.new if i.state is InstanceState.RUNNING]

    @property
    def new_pool(self) -> Pool | None:
        live = self.new_live
        return Pool(self.dep.to_version, tuple(i.address for i in live)) if live else None

    @property
    def wave_pool(self) -> Pool | None:
        """The new version's live instances in the current wave's zone(s): the preview of a zone."""
        zones = self.plan.wave_zones(self.dep.wave)
        live = [i for i in self.new_live if i.zone in zones]
        zone = zones[0] if len(zones) == 1 else None  # labelled: the zone's judge counts it
        return Pool(self.dep.to_version, tuple(i.address for i in live), 100, zone) if live else None

    def zone_production(self) -> tuple[Pool, ...]:
        """The production table of a zone rollout: one pool per (version, zone), each zone an equal
        share split by ``zone_new_share``.  A zone that should serve the new version only and has
        none of it live keeps serving the old one (capacity held); any other zone without the
        live instances its share needs is left out (its traffic goes to the others)."""
        dep, plan = self.dep, self.plan
        shares = zone_new_share(plan, dep.phase, dep.wave, dep.step_index)
        old_live = [
            i for i in self.old if i.state is InstanceState.RUNNING and i.id not in self.warming
        ] if dep.from_version else []  # fmt: skip
        by_zone: dict[str, dict[str, tuple[str, ...]]] = {}
        serving = []
        for z in plan.zones:
            new = tuple(i.address for i in self.new_live if i.zone == z)
            old = tuple(i.address for i in old_live if i.zone == z)
            if shares[z] == 100 and not new and old:
                shares[z] = 0  # the zone's new instances are gone: the old ones hold its capacity
            needs_new, needs_old = shares[z] > 0, shares[z] < 100 and dep.from_version is not None
            if (needs_new and not new) or (needs_old and not old) or not (needs_new or needs_old):
                continue
            by_zone[z] = {"new": new, "old": old}
            serving.append(z)
        weights = zone_weights(shares, serving, dep.from_version is not None)
        version = {"new": dep.to_version, "old": dep.from_version or ""}
        return tuple(
            Pool(version[kind], by_zone[z][kind], w, z) for (z, kind), w in weights.items()
        )

    @property
    def old_pool(self) -> Pool | None:
        live = [i for i in self.old if i.state is InstanceState.RUNNING and i.id not in self.warming]
        if self.dep.from_version is None or not live:
            return None
        return Pool(self.dep.from_version, tuple(i.address for i in live))


def _full(pool: Pool | None) -> Pool:
    assert pool is not None
    return Pool(pool.version, pool.addresses, 100)


def _plan_json(plan: Plan) -> dict[str, Any]:
    data = asdict(plan)
    data["canary_steps"] = [asdict(s) for s in plan.canary_steps]
    return data


def _check_detail(obs: Observation) -> dict[str, Any]:
    """What the closing step keeps of the observation that moved it.  The analysis verdict goes
    beside (not over) the ``analysis`` numbers the tick recorded: the numbers behind a verdict
    are what a person needs to trust it (D11)."""
    out: dict[str, Any] = {}
    for name, key in (
        ("preview_check", "preview_check"),
        ("production_check", "production_check"),
        ("analysis", "analysis_verdict"),
    ):
        c = getattr(obs, name)
        if c is not None:
            out[key] = {"ok": c.ok, "detail": c.detail}
    out["instances"] = {
        "new_running": obs.new_running,
        "new_healthy": obs.new_healthy,
        "new_dead": obs.new_dead,
        "old_running": obs.old_running,
    }
    if obs.production_weights:
        out["weights"] = dict(obs.production_weights)
    if obs.effect_failure is not None:
        out["effect_failure"] = obs.effect_failure.as_dict()
    return out
