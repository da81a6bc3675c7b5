"""Fault-injected incident histories for bench/incidents.py — written without looking at the ranker.

Each incident gets its own services and its own ten-day slot of time in one real store, and a
history written through the store's own APIs (``Store.create_deployment`` / ``transition``, audit
entries for merges, secrets and database failovers, exactly as the change pipeline, the secret
store and the DR failover write them).  Four kinds of fault:

* ``bad_deployment`` — a deployment of the service; the trouble starts a while after it took
  traffic (log-normal delay, median 8 min, σ 1.1, 1 min – 2 h), sometimes while still a canary, and its
  analysis passed in 40 % of cases (slow faults get past a canary analysis);
* ``bad_config`` — the same, shipped as a policy change (the deployment's policy digest differs);
* ``db_failover`` — the service's database failed over shortly before (0.2 – 5 min);
* ``no_change`` — nothing changed: the trouble came from outside.

Noise on top, independent of the kind: deployments of other services (often closer to the onset
than the cause), an older benign deployment of the same service, a same-service deployment
that its analysis failed and rolled back, merges not yet deployed, a secret changed, another
service's database failing over — and, for failovers and no-change faults, a benign deployment
of the same service shortly before the onset (the hard case: the ranker has every reason to
blame it, and is wrong to).

The truth of each incident is the ``ref`` of what was injected (``deployment:<id>``,
``failover:<service>@<seq>``) or ``None``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shipwarden.adapters.store.audit_repo import AuditRepo
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.audit import AuditChain, EntryDraft
from shipwarden.domain.rollout import Phase, Transition
from shipwarden.ports.store import Deployment

KINDS = ("bad_deployment", "bad_config", "db_failover", "no_change")
SLOT_S = 10 * 86400.0
T0 = 1_900_000_000.0
PHASE_GAP = 30.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, tz=UTC)


@dataclass
class Case:
    index: int
    kind: str
    service: str
    onset: float
    detected: float
    truth: str | None = None
    bad_deployment: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Ev:
    at: float
    order: int
    run: Callable[[], None]


class Generator:
    def __init__(self, store: Store, clock: Clock, seed: int) -> None:
        self.store, self.clock, self.rng = store, clock, random.Random(seed)
        self.audit = AuditRepo(store)
        self.chain = AuditChain(clock.now, checkpoint_every=100_000)
        self._n = 0

    # -- primitive writes ---------------------------------------------------------------------------
    def _deploy_events(self, out: list[_Ev], service: str, at: float, *, frm: str, to: str, digest: str,
                       phases: tuple[Phase, ...], verdict: bool | None, holder: dict[str, Any],
                       kind: str = "deploy") -> None:  # fmt: skip
        def create() -> None:
            holder["dep"] = self.store.create_deployment(
                service=service, kind=kind, strategy="canary", from_version=frm, to_version=to, actor="dev",
                policy_digest=digest, policy_source="team.yaml", plan={},
            )  # fmt: skip

        out.append(_Ev(at, self._next(), create))
        for i, p in enumerate(phases, 1):
            detail: dict[str, Any] = {}
            if p is Phase.CANARY_STEP:
                detail["weights"] = {frm: 75, to: 25}
            if verdict is not None and p in (Phase.PROMOTING, Phase.ROLLING_BACK):
                detail["analysis_verdict"] = {"ok": verdict, "detail": "judge"}

            def step(p: Phase = p, detail: dict[str, Any] = detail) -> None:
                dep: Deployment = holder["dep"]
                holder["dep"] = self.store.transition(dep, Transition(p, p.value), actor="controller",
                                                      detail=detail)  # fmt: skip

            out.append(_Ev(at + i * PHASE_GAP, self._next(), step))

    def _entry(self, out: list[_Ev], at: float, holder: dict[str, Any], **draft: Any) -> None:
        def write() -> None:
            holder["seq"] = self.audit.append([EntryDraft(**draft)], self.chain).seq

        out.append(_Ev(at, self._next(), write))

    def _next(self) -> int:
        self._n += 1
        return self._n

    # -- one incident ---------------------------------------------------------------------------------
    def case(self, index: int, kind: str) -> Case:
        rng = self.rng
        base = T0 + index * SLOT_S
        onset = base + SLOT_S / 2 + rng.uniform(0, 3600)
        svc = f"s{index}"
        others = [f"s{index}o{j}" for j in range(4)]
        case = Case(index, kind, svc, onset, onset + rng.uniform(20, 300))
        events: list[_Ev] = []
        digest = {s: f"{rng.getrandbits(256):064x}" for s in [svc, *others]}
        versions = dict.fromkeys([svc, *others], 1)
        busy: dict[str, list[tuple[float, float]]] = {}

        def free(s: str, at: float, length: float = 6 * PHASE_GAP) -> bool:
            return all(at + length < a or at > b + 60 for a, b in busy.get(s, []))

        def deploy(s: str, at: float, *, phases: tuple[Phase, ...] = (Phase.STARTING, Phase.CANARY_STEP,
                   Phase.PROMOTING, Phase.SUCCEEDED), verdict: bool | None = None, new_digest: bool = False,
                   ) -> dict[str, Any]:  # fmt: skip
            holder: dict[str, Any] = {}
            if new_digest:
                digest[s] = f"{rng.getrandbits(256):064x}"
            frm, to = f"v{versions[s]}", f"v{versions[s] + 1}"
            versions[s] += 1
            busy.setdefault(s, []).append((at, at + len(phases) * PHASE_GAP))
            self._deploy_events(events, s, at, frm=frm, to=to, digest=digest[s], phases=phases,
                                verdict=verdict, holder=holder)  # fmt: skip
            return holder

        def delay() -> float:  # exposure → onset
            return min(7200.0, max(60.0, rng.lognormvariate(6.2, 1.1)))

        # -- the fault
        cause_holder: dict[str, Any] | None = None
        fault_at = None
        if kind in ("bad_deployment", "bad_config"):
            canary_only = rng.random() < 0.25
            phases = (Phase.STARTING, Phase.CANARY_STEP) if canary_only else (
                Phase.STARTING, Phase.CANARY_STEP, Phase.PROMOTING, Phase.SUCCEEDED)
            exposed_after = 2 * PHASE_GAP  # the canary step
            fault_at = onset - delay() - exposed_after
            verdict = True if (not canary_only and rng.random() < 0.4) else None
            cause_holder = deploy(svc, fault_at, phases=phases, verdict=verdict,
                                  new_digest=kind == "bad_config")
        elif kind == "db_failover":
            fault_at = onset - rng.uniform(12, 300)
            cause_holder = {}
            self._entry(events, fault_at, cause_holder, actor="shipwarden:dr", action="dr.failover.decided",
                        service=svc, detail={"primary": "127.0.0.1:3307", "epoch": 2})
        # -- noise
        for _ in range(rng.choice((1, 2, 3, 3, 4, 5))):  # other services
            s = rng.choice(others)
            at = onset - rng.uniform(60, 6 * 3600)
            if free(s, at):
                deploy(s, at, new_digest=rng.random() < 0.2)
        if rng.random() < 0.6:  # an older benign deployment of the same service
            at = onset - rng.uniform(3, 20) * 3600
            if free(svc, at) and (fault_at is None or at < fault_at - 600):
                deploy(svc, at)
        if rng.random() < 0.25:  # a same-service deployment whose analysis failed and rolled back
            at = onset - rng.uniform(10 * 60, 3 * 3600)
            if free(svc, at) and (fault_at is None or at < fault_at - 600):
                deploy(svc, at, phases=(Phase.STARTING, Phase.CANARY_STEP, Phase.ROLLING_BACK,
                                         Phase.ROLLED_BACK), verdict=False)  # fmt: skip
                versions[svc] -= 1
        if kind in ("db_failover", "no_change") and rng.random() < 0.35:  # benign, same service, close
            lo = 5 * 60 if kind == "db_failover" else 10 * 60
            at = onset - rng.uniform(lo, 4 * 3600)
            if free(svc, at):
                deploy(svc, at)
                case.notes.append("benign same-service deployment before the onset")
        for _ in range(rng.choice((0, 1, 1, 2))):  # merges not deployed
            s = rng.choice([svc, *others])
            sha = f"{rng.getrandbits(160):040x}"
            self._entry(events, onset - rng.uniform(60, 8 * 3600), {}, actor="shipwarden",
                        action="change.merged", service=s, detail={"change_id": f"c{index}x{self._n}",
                                                                   "merge_sha": sha})
        if rng.random() < 0.2:
            self._entry(events, onset - rng.uniform(60, 12 * 3600), {}, actor="admin", action="secret.put",
                        detail={"name": f"KEY_{index}"})
        if rng.random() < 0.2:
            self._entry(events, onset - rng.uniform(60, 3 * 3600), {}, actor="shipwarden:dr",
                        action="dr.failover.decided", service=rng.choice(others),
                        detail={"primary": "x", "epoch": 3})
        # -- write it, in time order
        for ev in sorted(events, key=lambda e: (e.at, e.order)):
            self.clock.t = ev.at
            ev.run()
        if cause_holder is not None:
            if "dep" in cause_holder:
                case.bad_deployment = cause_holder["dep"].id
                case.truth = f"deployment:{cause_holder['dep'].id}"
            else:
                case.truth = f"failover:{svc}@{cause_holder['seq']}"
        return case
