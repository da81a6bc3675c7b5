"""The store: deployments, their steps, the last good version, the audit log.

Every write is one transaction that also appends to the hash-chained audit
log, so a state change and its audit entry exist together or not at all.
Callers persist a transition *before* performing its effect (see
``domain.rollout``); the store is what a restarted controller resumes from.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shipwarden.adapters.store.direct import DirectSelect
from shipwarden.adapters.store.models import (
    AnalysisRecordRow,
    AuditRow,
    DeploymentRow,
    ServiceStateRow,
    StepRow,
)
from shipwarden.adapters.store.seals import CoreTx, Seals
from shipwarden.domain.audit import GENESIS_HASH, ChainHead, Checkpoint, EntryDraft, Sealer, make_entry
from shipwarden.domain.rollout import OperatorRequest, Phase, Transition
from shipwarden.ports.store import Deployment, NotFound, Step, StoreError

if TYPE_CHECKING:
    from shipwarden.adapters.store.access_repo import AccessRepo
    from shipwarden.adapters.store.audit_repo import AuditRepo
    from shipwarden.adapters.store.changes_repo import ChangesRepo
    from shipwarden.adapters.store.dr_repo import DrRepo
    from shipwarden.adapters.store.mainline_repo import MainlineRepo

__all__ = ["Deployment", "NotFound", "Step", "Store", "StoreError"]  # the records: ``ports.store``


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _chain_row(prev: ChainHead, ts: str, **fields: Any) -> dict[str, Any]:
    """Column values of the entry after ``prev``: the one chain implementation, ``domain.audit``."""
    return make_entry(prev, EntryDraft(**fields), ts).to_row()


def _deployment_of(row: DeploymentRow) -> Deployment:
    return Deployment(
        id=row.id,
        service=row.service,
        kind=row.kind,
        strategy=row.strategy,
        from_version=row.from_version,
        to_version=row.to_version,
        commit_sha=row.commit_sha,
        phase=Phase(row.phase),
        step_index=row.step_index,
        paused=row.paused,
        active=row.active,
        phase_entered_at=row.phase_entered_at,
        actor=row.actor,
        policy_digest=row.policy_digest,
        policy_source=row.policy_source,
        plan=dict(row.plan),
        reason=row.reason,
        operator_request=OperatorRequest(row.operator_request) if row.operator_request else None,
        operator_actor=row.operator_actor,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        created_at=row.created_at,
        finished_at=row.finished_at,
        detected_at=row.detected_at,
        rolled_back_at=row.rolled_back_at,
        traffic_restored_at=row.traffic_restored_at,
        wave=row.wave,
        pause_cause=row.pause_cause,
    )


_DEPLOYMENT_COLUMNS = tuple(DeploymentRow.__table__.c[f.name] for f in fields(Deployment))
"""``deployments``' columns in the order of ``Deployment``'s fields (the same names)."""
_HISTORY = select(*_DEPLOYMENT_COLUMNS).order_by(DeploymentRow.__table__.c.created_at.desc())
_LIST_COLUMNS = (
    "id", "service", "kind", "strategy", "from_version", "to_version", "commit_sha", "phase", "paused",
    "actor", "reason", "operator_request", "created_at", "finished_at",
)  # fmt: skip
"""What :meth:`Store.deployment_list` reads: the list view of a deployment (no plan, no lease)."""
_DEPLOYMENTS_T = DeploymentRow.__table__
_LIST = (
    select(*(_DEPLOYMENTS_T.c[n] for n in _LIST_COLUMNS))
    .order_by(_DEPLOYMENTS_T.c.created_at.desc())
    .limit(bindparam("limit"))
)
_LIST_OF_SERVICE = _LIST.where(_DEPLOYMENTS_T.c.service == bindparam("service"))
_OUTCOME = {p.value: p.value if p.terminal else "in progress" for p in Phase}
_PHASE, _PLAN, _OPERATOR_REQUEST = (
    [f.name for f in fields(Deployment)].index(n) for n in ("phase", "plan", "operator_request")
)


def _deployment_of_values(row: Sequence[Any]) -> Deployment:
    """``_deployment_of`` for a Core row of ``_DEPLOYMENT_COLUMNS``: by position, not by name (a
    Core row's attribute access is the most of ``_deployment_of``'s cost)."""
    v = list(row)
    v[_PHASE] = Phase(v[_PHASE])
    v[_PLAN] = dict(v[_PLAN])
    v[_OPERATOR_REQUEST] = OperatorRequest(v[_OPERATOR_REQUEST]) if v[_OPERATOR_REQUEST] else None
    return Deployment(*v)


class Store:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._clock = clock
        self.seals: Seals | None = None
        """Signs the audit checkpoints each append makes due (``attach_sealer``); none: no checkpoints."""
        self._list = DirectSelect(engine, _LIST)
        self._list_of_service = DirectSelect(engine, _LIST_OF_SERVICE)
        self.audit_sink: Callable[..., None] | None = None
        """Where :meth:`audit` sends a standalone entry instead of its own transaction (the audit
        service's group commit); it must return only once the entry is committed."""

    def attach_sealer(
        self, sealer: Sealer, on_sealed: Callable[[Sequence[Checkpoint]], None] | None = None
    ) -> Seals:
        """Sign checkpoints with ``sealer`` in every append that makes one due; ``on_sealed`` gets
        them after their transaction commits (the witness file)."""
        if self.seals is not None:
            self.seals.detach()
        self.seals = Seals(self._sessions, sealer, on_sealed)
        return self.seals

    # -- transactions ---------------------------------------------------------------------
    def _tx(self) -> Session:
        return self._sessions.begin()  # type: ignore[return-value]

    RETRY_FOR_S = 60.0
    """How long a write keeps retrying against concurrent writers of the audit chain.  A hundred
    ``shipwarden deploy`` started at once all append at the same moment: with twenty tries a few
    ms apart, 5 of 98 processes lost every round and died with an IntegrityError."""

    def _retrying(self, fn: Callable[[Session], Any], attempts: int | None = None) -> Any:
        """Run ``fn`` in a transaction, retrying when a concurrent writer took the same audit seq
        (or held the database): randomised, growing waits (at most 0.2 s) so that many writers
        at once spread out, for up to ``RETRY_FOR_S`` (or ``attempts`` tries)."""
        deadline = time.monotonic() + self.RETRY_FOR_S
        attempt = 0
        while True:
            try:
                with self._sessions.begin() as s:
                    return fn(s)
            except (IntegrityError, OperationalError):
                attempt += 1
                if (attempts is not None and attempt >= attempts) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.0, min(0.2, 0.005 * 2 ** min(attempt, 8))))

    def _retrying_core(self, fn: Callable[[CoreTx], Any]) -> Any:
        """:meth:`_retrying` for a write made with Core statements only (the group commit of audit
        entries): a transaction of ``engine.begin()``, no ORM ``Session`` to set up and tear down
        per batch.  Checkpoints it sealed are handed on after its commit, as a session's are."""
        deadline = time.monotonic() + self.RETRY_FOR_S
        attempt = 0
        while True:
            try:
                with self.engine.begin() as conn:
                    tx = CoreTx(conn)
                    result = fn(tx)
            except (IntegrityError, OperationalError):
                attempt += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.0, min(0.2, 0.005 * 2 ** min(attempt, 8))))
                continue
            if self.seals is not None:
                self.seals.committed(tx)
            return result

    # -- audit ----------------------------------------------------------------------------
    def _append_audit(
        self,
        s: Session,
        *,
        actor: str,
        action: str,
        outcome: str = "ok",
        service: str | None = None,
        deployment_id: str | None = None,
        detail: dict[str, Any] | None = None,
        source: str = "shipwarden",
    ) -> AuditRow:
        last = s.execute(select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)).first()
        head = ChainHead(last[0], last[1]) if last else ChainHead(0, GENESIS_HASH)
        row = AuditRow(
            **_chain_row(
                head,
                _iso(self._clock()),
                source=source,
                actor=actor,
                action=action,
                service=service,
                deployment_id=deployment_id,
                outcome=outcome,
                detail=detail or {},
            )
        )
        s.add(row)
        s.flush()
        if self.seals is not None:
            self.seals.after_append(s, ChainHead(row.seq, row.hash))
        return row

    # -- the repositories over this store (``ports.store.UnitOfWork``): a new one per use case -------
    @property
    def changes(self) -> ChangesRepo:
        from shipwarden.adapters.store.changes_repo import ChangesRepo

        return ChangesRepo(self)

    @property
    def mainline(self) -> MainlineRepo:
        from shipwarden.adapters.store.mainline_repo import MainlineRepo

        return MainlineRepo(self)

    @property
    def access(self) -> AccessRepo:
        from shipwarden.adapters.store.access_repo import AccessRepo

        return AccessRepo(self)

    @property
    def audit_log(self) -> AuditRepo:
        from shipwarden.adapters.store.audit_repo import AuditRepo

        return AuditRepo(self)

    @property
    def dr_catalogue(self) -> DrRepo:
        from shipwarden.adapters.store.dr_repo import DrRepo

        return DrRepo(self)

    def audit(self, **kw: Any) -> None:
        """Append one audit entry in its own transaction (or the audit service's group commit)."""
        if self.audit_sink is not None:
            self.audit_sink(**kw)
            return
        self._retrying(lambda s: self._append_audit(s, **kw))

    def audit_entries(
        self,
        *,
        since_seq: int = 0,
        actor: str | None = None,
        action: str | None = None,
        service: str | None = None,
        source: str | None = None,
        deployment_id: str | None = None,
        ts_from: str | None = None,
        ts_to: str | None = None,
        limit: int | None = None,
    ) -> Iterator[AuditRow]:
        q = select(AuditRow).where(AuditRow.seq > since_seq).order_by(AuditRow.seq)
        for col, val in (
            (AuditRow.actor, actor),
            (AuditRow.action, action),
            (AuditRow.service, service),
            (AuditRow.source, source),
            (AuditRow.deployment_id, deployment_id),
        ):
            if val is not None:
                q = q.where(col == val)
        if ts_from:
            q = q.where(AuditRow.ts >= ts_from)
        if ts_to:
            q = q.where(AuditRow.ts <= ts_to)
        if limit:
            q = q.limit(limit)
        with self._sessions() as s:
            yield from s.scalars(q.execution_options(yield_per=5000))

    # -- deployments ----------------------------------------------------------------------
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
        """Record a new deployment in PENDING; refuses if the service already has an active one."""
        now = self._clock()
        dep_id = "d-" + time.strftime("%Y%m%d", time.gmtime(now)) + "-" + secrets.token_hex(3)

        def tx(s: Session) -> Deployment:
            busy = s.scalar(
                select(DeploymentRow.id).where(DeploymentRow.service == service, DeploymentRow.active)
            )
            if busy:
                raise StoreError(f"service {service!r} already has an active deployment {busy}")
            row = DeploymentRow(
                id=dep_id,
                service=service,
                kind=kind,
                strategy=strategy,
                from_version=from_version,
                to_version=to_version,
                commit_sha=commit_sha,
                phase=Phase.PENDING.value,
                step_index=0,
                paused=False,
                active=True,
                phase_entered_at=now,
                actor=actor,
                policy_digest=policy_digest,
                policy_source=policy_source,
                plan=plan,
                reason="created",
                created_at=now,
                lease_expires_at=0.0,
            )
            s.add(row)
            s.add(
                StepRow(
                    deployment_id=dep_id,
                    seq=1,
                    phase=Phase.PENDING.value,
                    started_at=now,
                    outcome="running",
                    reason="created",
                    detail={},
                )
            )
            self._append_audit(
                s,
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
            s.flush()
            return _deployment_of(row)

        result: Deployment = self._retrying(tx)
        return result

    def get(self, dep_id: str) -> Deployment:
        with self._sessions() as s:
            row = s.get(DeploymentRow, dep_id)
            if row is None:
                raise NotFound(f"no deployment {dep_id!r}")
            return _deployment_of(row)

    def active(self, service: str) -> Deployment | None:
        with self._sessions() as s:
            row = s.scalar(
                select(DeploymentRow).where(DeploymentRow.service == service, DeploymentRow.active)
            )
            return _deployment_of(row) if row else None

    def all_active(self) -> list[Deployment]:
        with self._sessions() as s:
            return [_deployment_of(r) for r in s.scalars(select(DeploymentRow).where(DeploymentRow.active))]

    def history(self, service: str | None = None, limit: int = 20) -> list[Deployment]:
        # Core rows by position, not ORM objects: the hot read of the API (GET /deployments).
        q = _HISTORY.limit(limit)
        if service:
            q = q.where(DeploymentRow.__table__.c.service == service)
        with self.engine.connect() as conn:
            return [_deployment_of_values(r) for r in conn.execute(q)]

    def deployment_list(self, service: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The list view of :meth:`history` (newest first): per deployment its id, service, kind,
        strategy, versions, ``commit``, ``phase``, ``outcome`` (the phase once terminal, else
        ``in progress``), ``paused``, actor, reason, operator request and times.

        The hot read of the API (``GET /deployments``): one indexed query through the driver
        (:class:`~shipwarden.adapters.store.direct.DirectSelect`), a dict per row, no
        ``Deployment`` objects and no plan decoded."""
        if service:
            rows = self._list_of_service(service=service, limit=limit)
        else:
            rows = self._list(limit=limit)
        outcome = _OUTCOME
        return [
            {
                "id": r[0], "service": r[1], "kind": r[2], "strategy": r[3], "from_version": r[4],
                "to_version": r[5], "commit": r[6], "phase": r[7], "outcome": outcome[r[7]],
                "paused": bool(r[8]), "actor": r[9], "reason": r[10], "operator_request": r[11],
                "created_at": r[12], "finished_at": r[13],
            }  # fmt: skip
            for r in rows
        ]

    def steps(self, dep_id: str) -> list[Step]:
        with self._sessions() as s:
            rows = s.scalars(select(StepRow).where(StepRow.deployment_id == dep_id).order_by(StepRow.seq))
            return [
                Step(r.seq, r.phase, r.started_at, r.finished_at, r.outcome, r.reason, dict(r.detail or {}))
                for r in rows
            ]

    def transition(
        self,
        dep: Deployment,
        t: Transition,
        *,
        actor: str,
        detail: dict[str, Any] | None = None,
    ) -> Deployment:
        """Persist a phase change (closing the current step, opening the next) with its audit entry.

        Optimistic: refuses if the deployment moved on since ``dep`` was read.
        """
        now = self._clock()

        def tx(s: Session) -> Deployment:
            row = s.get(DeploymentRow, dep.id, with_for_update=True)
            if row is None:
                raise NotFound(dep.id)
            if row.phase != dep.phase.value or row.step_index != dep.step_index or row.wave != dep.wave:
                raise StoreError(f"deployment {dep.id} moved to {row.phase} concurrently")
            was = row.phase
            cur = s.scalar(
                select(StepRow).where(StepRow.deployment_id == dep.id).order_by(StepRow.seq.desc())
            )
            new_step = (
                t.phase != Phase(row.phase)
                or (t.step_index is not None and t.step_index != row.step_index)
                or (t.wave is not None and t.wave != row.wave)
            )
            failing = t.phase in (Phase.ROLLING_BACK, Phase.FAILED) and row.phase != Phase.ROLLING_BACK.value
            if cur is not None and new_step:
                cur.finished_at = now
                cur.outcome = "failed" if failing else "ok"
                if detail:
                    cur.detail = {**(cur.detail or {}), **detail}
            if new_step:
                row.phase = t.phase.value
                row.phase_entered_at = now
                if t.step_index is not None:
                    row.step_index = t.step_index
                if t.wave is not None:
                    row.wave = t.wave
                s.add(
                    StepRow(
                        deployment_id=dep.id,
                        seq=(cur.seq + 1) if cur else 1,
                        phase=t.phase.value,
                        started_at=now,
                        finished_at=now if t.phase.terminal else None,
                        outcome="ok"
                        if t.phase is Phase.SUCCEEDED
                        else ("failed" if t.phase.terminal else "running"),
                        reason=t.reason,
                        detail={"step_index": row.step_index, **({"wave": row.wave} if row.wave else {})},
                    )
                )
            if t.paused is not None:
                row.paused = t.paused
                row.pause_cause = t.pause_cause if t.paused else None
            # keep the cause visible in the outcome: "health: 0/2 healthy … → new version stopped"
            row.reason = (
                f"{row.reason} → {t.reason}"
                if was == Phase.ROLLING_BACK.value and t.phase.terminal
                else t.reason
            )
            if t.phase is Phase.ROLLING_BACK and row.detected_at is None:
                row.detected_at = now
            if t.phase is Phase.ROLLED_BACK:
                row.rolled_back_at = now
            if row.operator_request and (
                t.consumes_request
                or t.phase is Phase.ROLLING_BACK
                or t.paused is not None
                or t.phase is Phase.PROMOTING
                or t.phase is Phase.SCALING_DOWN
            ):
                if row.operator_request != OperatorRequest.ROLLBACK.value:
                    # a used-up confirm/promote/pause is not who drives what follows: a later
                    # automatic rollback must not be reported as this operator's
                    row.operator_actor = None
                row.operator_request = None
            if t.phase.terminal:
                row.active = False
                row.finished_at = now
                row.lease_owner = None
                if t.phase is Phase.SUCCEEDED:
                    st = s.get(ServiceStateRow, row.service)
                    if st is None:
                        s.add(
                            ServiceStateRow(
                                service=row.service,
                                stable_version=row.to_version,
                                previous_version=row.from_version,
                                updated_at=now,
                            )
                        )
                    else:
                        st.previous_version, st.stable_version, st.updated_at = (
                            st.stable_version,
                            row.to_version,
                            now,
                        )
            audited = {"reason": t.reason, "step_index": row.step_index, **(detail or {})}
            if row.wave:
                audited["wave"] = row.wave
            numbers = (cur.detail or {}).get("analysis") if cur is not None else None
            if numbers and detail and "analysis_verdict" in detail:
                audited["analysis"] = numbers  # the numbers behind the verdict that moved it
            self._append_audit(
                s,
                actor=actor,
                action=f"rollout.{t.phase.value}",
                service=row.service,
                deployment_id=dep.id,
                outcome="failed" if failing else "ok",
                detail=audited,
            )
            s.flush()
            return _deployment_of(row)

        result: Deployment = self._retrying(tx)
        return result

    def record_detail(self, dep_id: str, detail: dict[str, Any]) -> None:
        """Merge ``detail`` into the current step (probe results, analysis numbers)."""

        def tx(s: Session) -> None:
            cur = s.scalar(
                select(StepRow).where(StepRow.deployment_id == dep_id).order_by(StepRow.seq.desc())
            )
            if cur is not None:
                cur.detail = {**(cur.detail or {}), **detail}

        self._retrying(tx)

    def request(self, dep_id: str, request: OperatorRequest, actor: str) -> Deployment:
        """Record an operator request (rollback, promote, pause, resume) for the reconciler to act on."""

        def tx(s: Session) -> Deployment:
            row = s.get(DeploymentRow, dep_id)
            if row is None:
                raise NotFound(f"no deployment {dep_id!r}")
            if not row.active:
                raise StoreError(f"deployment {dep_id} already finished ({row.phase})")
            row.operator_request = request.value
            row.operator_actor = actor
            self._append_audit(
                s, actor=actor, action=f"operator.{request.value}", service=row.service, deployment_id=dep_id
            )
            s.flush()
            return _deployment_of(row)

        result: Deployment = self._retrying(tx)
        return result

    def acquire_lease(self, dep_id: str, owner: str, ttl: float) -> bool:
        """Take or renew the right to drive a deployment; False if another live owner holds it."""
        now = self._clock()
        with self._sessions.begin() as s:
            res = s.execute(
                update(DeploymentRow)
                .where(
                    DeploymentRow.id == dep_id,
                    DeploymentRow.active,
                    (DeploymentRow.lease_owner == owner)
                    | (DeploymentRow.lease_owner.is_(None))
                    | (DeploymentRow.lease_expires_at < now),
                )
                .values(lease_owner=owner, lease_expires_at=now + ttl)
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def renew_leases(self, dep_ids: Sequence[str], owner: str, ttl: float) -> set[str]:
        """Renew every lease ``owner`` holds among ``dep_ids`` in one write (a controller driving a
        hundred deployments renews them together, not one write per deployment and tick); the ids
        it holds afterwards — one missing was taken over after its lease had expired, or ended."""
        if not dep_ids:
            return set()
        now = self._clock()
        with self._sessions.begin() as s:
            s.execute(
                update(DeploymentRow)
                .where(
                    DeploymentRow.id.in_(dep_ids),
                    DeploymentRow.active,
                    (DeploymentRow.lease_owner == owner) | (DeploymentRow.lease_expires_at < now),
                )
                .values(lease_owner=owner, lease_expires_at=now + ttl)
            )
            mine = (DeploymentRow.id.in_(dep_ids), DeploymentRow.lease_owner == owner)
            return set(s.scalars(select(DeploymentRow.id).where(*mine)))

    def release_lease(self, dep_id: str, owner: str) -> None:
        with self._sessions.begin() as s:
            s.execute(
                update(DeploymentRow)
                .where(DeploymentRow.id == dep_id, DeploymentRow.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=0.0)
            )

    # -- service state --------------------------------------------------------------------
    def stable_version(self, service: str) -> tuple[str | None, str | None]:
        """(stable, previous) versions of a service."""
        with self._sessions() as s:
            st = s.get(ServiceStateRow, service)
            return (st.stable_version, st.previous_version) if st else (None, None)

    def count_audit(self) -> int:
        with self._sessions() as s:
            return int(s.scalar(select(func.count()).select_from(AuditRow)) or 0)

    # -- analysis records -------------------------------------------------------------------
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
        """Persist one judge sample pair or metric measurement before the analysis uses it."""
        with self._sessions.begin() as s:
            s.add(
                AnalysisRecordRow(
                    deployment_id=dep_id,
                    key=key,
                    kind=kind,
                    name=name,
                    at=at,
                    step_index=step_index,
                    canary=canary,
                    baseline=baseline,
                )
            )

    def analysis_records(self, dep_id: str, key: str | None = None) -> list[dict[str, Any]]:
        q = select(AnalysisRecordRow).where(AnalysisRecordRow.deployment_id == dep_id)
        if key is not None:
            q = q.where(AnalysisRecordRow.key == key)
        with self._sessions() as s:
            return [
                {
                    "key": r.key,
                    "kind": r.kind,
                    "name": r.name,
                    "at": r.at,
                    "step_index": r.step_index,
                    "canary": r.canary,
                    "baseline": r.baseline,
                }
                for r in s.scalars(q.order_by(AnalysisRecordRow.id))
            ]

    def mark_traffic_restored(self, dep_id: str) -> None:
        """Rollback: production routes to the stable version again (first time only)."""
        now = self._clock()
        with self._sessions.begin() as s:
            s.execute(
                update(DeploymentRow)
                .where(DeploymentRow.id == dep_id, DeploymentRow.traffic_restored_at.is_(None))
                .values(traffic_restored_at=now)
            )
