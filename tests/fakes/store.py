"""FakeStore: the part of ``adapters/store/repository.Store`` the reconciler uses, in dicts.

Only for the generated-sequence tests, where thousands of rollouts on the real SQLite store would
take minutes (the ORM costs ~1 ms a transaction).  ``tests/unit/services/test_fake_store.py``
runs the same random operation sequences on this and on the real Store and compares every
result, so this cannot drift from the store the reconciler really runs on.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from shipwarden.domain.rollout import OperatorRequest, Phase, Transition
from shipwarden.ports.store import Deployment, NotFound, Step, StoreError


@dataclass
class AuditEntry:
    seq: int
    actor: str
    action: str
    outcome: str
    service: str | None
    deployment_id: str | None
    detail: dict[str, Any]
    source: str = "shipwarden"


@dataclass
class _Step:
    seq: int
    phase: str
    started_at: float
    finished_at: float | None
    outcome: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)

    def frozen(self) -> Step:
        return Step(
            self.seq,
            self.phase,
            self.started_at,
            self.finished_at,
            self.outcome,
            self.reason,
            dict(self.detail),
        )


class FakeStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._deps: dict[str, Deployment] = {}
        self._steps: dict[str, list[_Step]] = {}
        self._audit: list[AuditEntry] = []
        self._state: dict[str, tuple[str | None, str | None]] = {}
        self._analysis: list[tuple[str, dict[str, Any]]] = []  # (deployment, record) in order

    # -- audit ------------------------------------------------------------------------------------
    def audit(
        self,
        *,
        actor: str,
        action: str,
        outcome: str = "ok",
        service: str | None = None,
        deployment_id: str | None = None,
        detail: dict[str, Any] | None = None,
        source: str = "shipwarden",
    ) -> None:
        self._audit.append(
            AuditEntry(
                len(self._audit) + 1,
                actor,
                action,
                outcome,
                service,
                deployment_id,
                dict(detail or {}),
                source,
            )
        )

    def audit_entries(
        self,
        *,
        since_seq: int = 0,
        actor: str | None = None,
        action: str | None = None,
        service: str | None = None,
        source: str | None = None,
        deployment_id: str | None = None,
        **_: Any,
    ) -> Iterator[AuditEntry]:
        for e in list(self._audit):
            if e.seq <= since_seq:
                continue
            wanted = (
                (actor, e.actor),
                (action, e.action),
                (service, e.service),
                (source, e.source),
                (deployment_id, e.deployment_id),
            )
            if all(w is None or w == v for w, v in wanted):
                yield e

    def count_audit(self) -> int:
        return len(self._audit)

    # -- deployments ------------------------------------------------------------------------------
    def create_deployment(
        self,
        *,
        service: str,
        kind: str,
        strategy: str,
        from_version: str | None,
        to_version: str,
        actor: str,
        policy_digest: str,
        policy_source: str,
        plan: dict[str, Any],
        commit_sha: str | None = None,
    ) -> Deployment:
        now = self._clock()
        busy = self.active(service)
        if busy is not None:
            raise StoreError(f"service {service!r} already has an active deployment {busy.id}")
        dep_id = "d-" + time.strftime("%Y%m%d", time.gmtime(now)) + "-" + secrets.token_hex(3)
        dep = Deployment(
            id=dep_id,
            service=service,
            kind=kind,
            strategy=strategy,
            from_version=from_version,
            to_version=to_version,
            commit_sha=commit_sha,
            phase=Phase.PENDING,
            step_index=0,
            paused=False,
            active=True,
            phase_entered_at=now,
            actor=actor,
            policy_digest=policy_digest,
            policy_source=policy_source,
            plan=dict(plan),
            reason="created",
            operator_request=None,
            operator_actor=None,
            lease_owner=None,
            lease_expires_at=0.0,
            created_at=now,
            finished_at=None,
            detected_at=None,
            rolled_back_at=None,
        )
        self._deps[dep_id] = dep
        self._steps[dep_id] = [_Step(1, Phase.PENDING.value, now, None, "running", "created", {})]
        self.audit(
            actor=actor,
            action=f"deployment.{kind}",
            service=service,
            deployment_id=dep_id,
            detail={
                "from": from_version,
                "to": to_version,
                "strategy": strategy,
                "policy_digest": policy_digest,
                "commit": commit_sha,
            },
        )
        return dep

    def get(self, dep_id: str) -> Deployment:
        if dep_id not in self._deps:
            raise NotFound(f"no deployment {dep_id!r}")
        return self._deps[dep_id]

    def active(self, service: str) -> Deployment | None:
        return next((d for d in self._deps.values() if d.service == service and d.active), None)

    def all_active(self) -> list[Deployment]:
        return [d for d in self._deps.values() if d.active]

    def history(self, service: str | None = None, limit: int = 20) -> list[Deployment]:
        deps = [d for d in self._deps.values() if service is None or d.service == service]
        return sorted(deps, key=lambda d: d.created_at, reverse=True)[:limit]

    def steps(self, dep_id: str) -> list[Step]:
        return [s.frozen() for s in self._steps.get(dep_id, [])]

    def transition(
        self, dep: Deployment, t: Transition, *, actor: str, detail: dict[str, Any] | None = None
    ) -> Deployment:
        now = self._clock()
        row = self._deps.get(dep.id)
        if row is None:
            raise NotFound(dep.id)
        if row.phase is not dep.phase or row.step_index != dep.step_index or row.wave != dep.wave:
            raise StoreError(f"deployment {dep.id} moved to {row.phase.value} concurrently")
        was, steps = row.phase, self._steps[dep.id]
        cur = steps[-1] if steps else None
        new_step = (
            t.phase is not row.phase
            or (t.step_index is not None and t.step_index != row.step_index)
            or (t.wave is not None and t.wave != row.wave)
        )
        failing = t.phase in (Phase.ROLLING_BACK, Phase.FAILED) and row.phase is not Phase.ROLLING_BACK
        ch: dict[str, Any] = {}
        if cur is not None and new_step:
            cur.finished_at, cur.outcome = now, "failed" if failing else "ok"
            if detail:
                cur.detail = {**cur.detail, **detail}
        step_index, wave = row.step_index, row.wave
        if new_step:
            step_index = t.step_index if t.step_index is not None else row.step_index
            wave = t.wave if t.wave is not None else row.wave
            ch.update(phase=t.phase, phase_entered_at=now, step_index=step_index, wave=wave)
            outcome = "ok" if t.phase is Phase.SUCCEEDED else ("failed" if t.phase.terminal else "running")
            steps.append(
                _Step(
                    (cur.seq + 1) if cur else 1,
                    t.phase.value,
                    now,
                    now if t.phase.terminal else None,
                    outcome,
                    t.reason,
                    {"step_index": step_index, **({"wave": wave} if wave else {})},
                )
            )
        if t.paused is not None:
            ch["paused"] = t.paused
            ch["pause_cause"] = t.pause_cause if t.paused else None
        chained = was is Phase.ROLLING_BACK and t.phase.terminal
        ch["reason"] = f"{row.reason} → {t.reason}" if chained else t.reason
        if t.phase is Phase.ROLLING_BACK and row.detected_at is None:
            ch["detected_at"] = now
        if t.phase is Phase.ROLLED_BACK:
            ch["rolled_back_at"] = now
        if row.operator_request is not None and (
            t.consumes_request
            or t.phase in (Phase.ROLLING_BACK, Phase.PROMOTING, Phase.SCALING_DOWN)
            or t.paused is not None
        ):
            if row.operator_request is not OperatorRequest.ROLLBACK:
                ch["operator_actor"] = None
            ch["operator_request"] = None
        if t.phase.terminal:
            ch.update(active=False, finished_at=now, lease_owner=None)
            if t.phase is Phase.SUCCEEDED:
                stable = self._state.get(row.service, (None, None))[0]
                self._state[row.service] = (
                    row.to_version,
                    stable if row.service in self._state else row.from_version,
                )
        moved = replace(row, **ch)
        self._deps[dep.id] = moved
        audited = {"reason": t.reason, "step_index": step_index, **(detail or {})}
        if wave:
            audited["wave"] = wave
        numbers = cur.detail.get("analysis") if cur is not None else None
        if numbers and detail and "analysis_verdict" in detail:
            audited["analysis"] = numbers
        self.audit(
            actor=actor,
            action=f"rollout.{t.phase.value}",
            service=row.service,
            deployment_id=dep.id,
            outcome="failed" if failing else "ok",
            detail=audited,
        )
        return moved

    def record_detail(self, dep_id: str, detail: dict[str, Any]) -> None:
        steps = self._steps.get(dep_id)
        if steps:
            steps[-1].detail = {**steps[-1].detail, **detail}

    def request(self, dep_id: str, request: OperatorRequest, actor: str) -> Deployment:
        row = self._deps.get(dep_id)
        if row is None:
            raise NotFound(f"no deployment {dep_id!r}")
        if not row.active:
            raise StoreError(f"deployment {dep_id} already finished ({row.phase.value})")
        self._deps[dep_id] = row = replace(row, operator_request=request, operator_actor=actor)
        self.audit(actor=actor, action=f"operator.{request.value}", service=row.service, deployment_id=dep_id)
        return row

    def acquire_lease(self, dep_id: str, owner: str, ttl: float) -> bool:
        now, row = self._clock(), self._deps.get(dep_id)
        if row is None or not row.active:
            return False
        if row.lease_owner not in (owner, None) and not row.lease_expires_at < now:
            return False
        self._deps[dep_id] = replace(row, lease_owner=owner, lease_expires_at=now + ttl)
        return True

    def renew_leases(self, dep_ids: Sequence[str], owner: str, ttl: float) -> set[str]:
        return {d for d in dep_ids if self.acquire_lease(d, owner, ttl)}

    def release_lease(self, dep_id: str, owner: str) -> None:
        row = self._deps.get(dep_id)
        if row is not None and row.lease_owner == owner:
            self._deps[dep_id] = replace(row, lease_owner=None, lease_expires_at=0.0)

    def stable_version(self, service: str) -> tuple[str | None, str | None]:
        return self._state.get(service, (None, None))

    def mark_traffic_restored(self, dep_id: str) -> None:
        row = self._deps.get(dep_id)
        if row is not None and row.traffic_restored_at is None:
            self._deps[dep_id] = replace(row, traffic_restored_at=self._clock())

    def record_analysis(
        self,
        dep_id: str,
        *,
        key: str,
        kind: str,
        name: str,
        at: float,
        step_index: int,
        canary: dict[str, Any],
        baseline: dict[str, Any] | None,
    ) -> None:
        self._analysis.append((dep_id, {"key": key, "kind": kind, "name": name, "at": at,
                                        "step_index": step_index, "canary": canary, "baseline": baseline}))

    def analysis_records(self, dep_id: str, key: str | None = None) -> list[dict[str, Any]]:
        return [dict(r) for d, r in self._analysis if d == dep_id and (key is None or r["key"] == key)]
