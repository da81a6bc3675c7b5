"""Store access for changes, evidence, approvals and seen webhook deliveries (tables from 0002).

Every write is one transaction with its audit entry (the ``Store``'s
hash-chained log), like the deployment store.  Evidence is stored as the full
parsed report (``summary`` holds a typed JSON document, see ``report_to_json``),
so the gates can be re-evaluated from the store alone at any later time and
``explain`` can show exactly what a gate was judged on; the ``digest`` column
keeps the sha256 of the uploaded bytes.

Approvals: ``decision`` is ``approve`` / ``reject`` for change control and
``sign-off`` for a UAT sign-off (the gates' ``scope="uat"``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipwarden.adapters.store.models import ApprovalRow, ChangeRow, EvidenceRow, WebhookDeliveryRow
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.evidence.model import (
    BackupVerification,
    CiCheck,
    Migration,
    PerfReport,
    Report,
    RollbackPlan,
    SecurityFinding,
    SecurityReport,
    Severity,
    SuiteResult,
    TestCaseResult,
    TestReport,
)
from shipwarden.ports.changes import Change, DuplicateDelivery, StoredApproval, StoredEvidence
from shipwarden.ports.store import NotFound

T = TypeVar("T")

# --- report (de)serialisation ------------------------------------------------------------------------------


def _plain(v: Any) -> Any:
    if is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in fields(v)}
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


def report_to_json(report: Report) -> dict[str, Any]:
    return {"type": type(report).__name__, "report": _plain(report)}


def report_from_json(doc: dict[str, Any]) -> Report:
    t, d = doc["type"], dict(doc["report"])
    if t == "TestReport":
        suites = tuple(
            SuiteResult(**{**s, "cases": tuple(TestCaseResult(**c) for c in s.get("cases", ()))})
            for s in d["suites"]
        )
        return TestReport(**{**d, "suites": suites, "notes": tuple(d.get("notes", ()))})
    if t == "SecurityReport":

        def finding(f: dict[str, Any]) -> SecurityFinding:
            return SecurityFinding(**{**f, "severity": Severity(f["severity"])})

        return SecurityReport(
            **{
                **d,
                "tools": tuple(d["tools"]),
                "findings": tuple(finding(f) for f in d["findings"]),
                "suppressed": tuple(finding(f) for f in d.get("suppressed", ())),
                "incomplete": tuple(d.get("incomplete", ())),
            }
        )
    if t == "PerfReport":
        return PerfReport(**d)
    if t == "BackupVerification":
        return BackupVerification(**{**d, "verified_at": datetime.fromisoformat(d["verified_at"])})
    if t == "RollbackPlan":
        return RollbackPlan(d.get("previous_version"), tuple(Migration(**m) for m in d.get("migrations", ())))
    if t == "CiCheck":
        return CiCheck(**d)
    raise ValueError(f"unknown report type {t!r}")


def report_summary(report: Report) -> dict[str, Any]:
    """A few headline numbers for listings (the full report is stored beside them)."""
    if isinstance(report, TestReport):
        return {
            "tests": report.tests,
            "failures": report.failures,
            "errors": report.errors,
            "skipped": report.skipped,
            "flaky": report.flaky,
        }
    if isinstance(report, SecurityReport):
        return {
            "findings": {k.value: n for k, n in report.counts().items() if n},
            "tools": list(report.tools),
            **({"incomplete": list(report.incomplete)} if report.incomplete else {}),
        }
    if isinstance(report, PerfReport):
        return {
            "p95_ms": report.p95_ms,
            "p99_ms": report.p99_ms,
            "error_rate": report.error_rate,
            "throughput_rps": report.throughput_rps,
        }
    if isinstance(report, CiCheck):
        return {"provider": report.provider, "name": report.name, "status": report.status}
    if isinstance(report, BackupVerification):
        return {"backup_id": report.backup_id, "ok": report.ok, "verified_at": report.verified_at.isoformat()}
    return {"previous_version": report.previous_version, "migrations": len(report.migrations)}


# --- records -----------------------------------------------------------------------------------------------


def change_of(r: ChangeRow) -> Change:
    return Change(
        r.id,
        r.service,
        r.repo,
        r.branch,
        r.head_sha,
        r.pr_number,
        r.author,
        tuple((r.labels or {}).get("labels", ())),
        dict(r.facts or {}),
        r.status,
        dict(r.classification or {}),
        dict(r.gates or {}),
        r.reason,
        r.merge_sha,
        r.deployment_id,
        r.created_at,
        r.updated_at,
    )


def _stored(r: EvidenceRow) -> StoredEvidence:
    doc = dict(r.summary or {})
    return StoredEvidence(
        r.id,
        r.commit_sha,
        r.kind,
        r.category,
        dict(r.pipeline or {}),
        r.digest,
        r.source_name,
        r.created_at,
        report_from_json(doc["full"]),
        dict(doc.get("headline", {})),
    )


def _approval(r: ApprovalRow) -> StoredApproval:
    return StoredApproval(r.id, r.change_id, r.commit_sha, r.user, r.role, r.decision, r.comment, r.at)


class ChangesRepo:
    """Changes, evidence, approvals, webhook deliveries — each write audited in the same transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._sessions = store._sessions
        self._clock = store._clock

    def _write(self, fn: Any) -> Any:
        return self.store._retrying(fn)

    def _audit(self, s: Session, **kw: Any) -> None:
        self.store._append_audit(s, **kw)

    # -- unit of work ----------------------------------------------------------------------------------
    def atomic(self, fn: Callable[[ChangesTx], T]) -> T:
        """Run ``fn`` in one transaction: every write it makes through the ``ChangesTx`` (rows and
        their audit entries) commits together, or none does.  Retried whole when a concurrent
        writer took the same audit seq, so ``fn`` must only write through the transaction."""
        result: T = self._write(lambda s: fn(ChangesTx(self, s)))
        return result

    # -- webhook deliveries -----------------------------------------------------------------------------
    def seen_deliveries(self, provider: str) -> _Seen:
        return _Seen(self, provider)

    def seen_bodies(self, provider: str) -> _Seen:
        """``Container`` of the sha256 digests of the bodies accepted from ``provider``."""
        return _Seen(self, provider, digests=True)

    def is_seen(self, provider: str, delivery_id: str) -> bool:
        with self._sessions() as s:
            return s.get(WebhookDeliveryRow, (provider, delivery_id)) is not None

    def is_seen_body(self, provider: str, body_sha256: str) -> bool:
        q = select(WebhookDeliveryRow.delivery_id).where(
            WebhookDeliveryRow.provider == provider, WebhookDeliveryRow.body_sha256 == body_sha256
        )
        with self._sessions() as s:
            return s.scalars(q.limit(1)).first() is not None

    def record_delivery(
        self, provider: str, delivery_id: str, *, detail: dict[str, Any], body_sha256: str | None = None
    ) -> bool:
        """Remember a delivery (with an audit entry); False if its id or body was already recorded."""
        try:
            self.atomic(lambda tx: tx.record_delivery(provider, delivery_id, body_sha256, detail=detail))
        except DuplicateDelivery:
            return False
        return True

    def _record_delivery(
        self, s: Session, provider: str, delivery_id: str, body_sha256: str | None, detail: dict[str, Any]
    ) -> None:
        if s.get(WebhookDeliveryRow, (provider, delivery_id)) is not None:
            raise DuplicateDelivery(f"event {delivery_id} was already processed", "duplicate")
        if body_sha256 is not None:
            q = select(WebhookDeliveryRow.delivery_id).where(
                WebhookDeliveryRow.provider == provider, WebhookDeliveryRow.body_sha256 == body_sha256
            )
            first = s.scalars(q.limit(1)).first()
            if first is not None:
                raise DuplicateDelivery(
                    f"this body (sha256 {body_sha256[:16]}…) was already accepted as delivery {first}",
                    "duplicate-body",
                )
        s.add(
            WebhookDeliveryRow(
                provider=provider, delivery_id=delivery_id, received_at=self._clock(), body_sha256=body_sha256
            )
        )
        s.flush()  # a concurrent copy fails here (primary key / unique digest) and the whole tx retries
        self._audit(
            s,
            actor=f"webhook:{provider}",
            action="webhook.accepted",
            detail={"id": delivery_id, **({"body_sha256": body_sha256} if body_sha256 else {}), **detail},
        )

    # -- evidence ---------------------------------------------------------------------------------------
    def add_evidence(
        self,
        *,
        commit_sha: str,
        kind: str,
        category: str,
        report: Report,
        digest: str,
        pipeline: dict[str, Any] | None = None,
        source_name: str | None = None,
        actor: str,
    ) -> StoredEvidence:
        result: StoredEvidence = self._write(
            lambda s: self._add_evidence(
                s,
                commit_sha=commit_sha,
                kind=kind,
                category=category,
                report=report,
                digest=digest,
                pipeline=pipeline,
                source_name=source_name,
                actor=actor,
            )
        )
        return result

    def _add_evidence(
        self,
        s: Session,
        *,
        commit_sha: str,
        kind: str,
        category: str,
        report: Report,
        digest: str,
        pipeline: dict[str, Any] | None,
        source_name: str | None,
        actor: str,
    ) -> StoredEvidence:
        now = self._clock()
        ev_id = "e-" + secrets.token_hex(6)
        headline = report_summary(report)
        row = EvidenceRow(
            id=ev_id,
            commit_sha=commit_sha,
            kind=kind,
            category=category,
            pipeline=pipeline or {},
            digest=digest[:64] if len(digest) <= 64 else digest.removeprefix("sha256:")[:64],
            summary={"headline": headline, "full": report_to_json(report)},
            source_name=source_name,
            created_at=now,
        )
        s.add(row)
        s.flush()
        self._audit(
            s,
            actor=actor,
            action="evidence.stored",
            detail={
                "evidence_id": ev_id,
                "commit": commit_sha,
                "kind": kind,
                "category": category,
                "digest": digest,
                "pipeline": pipeline or {},
                "summary": headline,
            },
        )
        return _stored(row)

    def evidence_for(self, commit_sha: str) -> list[StoredEvidence]:
        """Evidence of one commit plus commit-independent facts (backup verifications)."""
        q = (
            select(EvidenceRow)
            .where((EvidenceRow.commit_sha == commit_sha) | (EvidenceRow.kind == "backup"))
            .order_by(EvidenceRow.created_at, EvidenceRow.id)
        )
        with self._sessions() as s:
            return [_stored(r) for r in s.scalars(q)]

    def evidence(self, ev_id: str) -> StoredEvidence:
        with self._sessions() as s:
            r = s.get(EvidenceRow, ev_id)
            if r is None:
                raise NotFound(f"no evidence {ev_id!r}")
            return _stored(r)

    # -- changes ----------------------------------------------------------------------------------------
    def find_change(self, *, head_sha: str, branch: str | None = None) -> Change | None:
        with self._sessions() as s:
            return self._find_change(s, head_sha, branch)

    def _find_change(self, s: Session, head_sha: str, branch: str | None) -> Change | None:
        q = select(ChangeRow).where(ChangeRow.head_sha == head_sha).order_by(ChangeRow.created_at.desc())
        if branch is not None:
            q = q.where(ChangeRow.branch == branch)
        r = s.scalars(q).first()
        return change_of(r) if r else None

    def _latest_on_branch(self, s: Session, branch: str) -> Change | None:
        q = select(ChangeRow).where(ChangeRow.branch == branch).order_by(ChangeRow.created_at.desc())
        r = s.scalars(q).first()
        return change_of(r) if r else None

    def change_for_deployment(self, dep_id: str) -> Change | None:
        with self._sessions() as s:
            r = s.scalars(select(ChangeRow).where(ChangeRow.deployment_id == dep_id)).first()
            return change_of(r) if r else None

    def get_change(self, change_id: str) -> Change:
        with self._sessions() as s:
            r = s.get(ChangeRow, change_id)
            if r is None:
                raise NotFound(f"no change {change_id!r}")
            return change_of(r)

    def list_changes(self, *, status: str | None = None, limit: int = 50) -> list[Change]:
        q = select(ChangeRow).order_by(ChangeRow.created_at.desc()).limit(limit)
        if status:
            q = q.where(ChangeRow.status == status)
        with self._sessions() as s:
            return [change_of(r) for r in s.scalars(q)]

    def create_change(
        self,
        *,
        repo: str,
        branch: str,
        head_sha: str,
        actor: str,
        pr_number: int | None = None,
        author: str | None = None,
        labels: tuple[str, ...] = (),
        service: str | None = None,
    ) -> Change:
        result: Change = self._write(
            lambda s: self._create_change(
                s,
                repo=repo,
                branch=branch,
                head_sha=head_sha,
                actor=actor,
                pr_number=pr_number,
                author=author,
                labels=labels,
                service=service,
            )
        )
        return result

    def _create_change(
        self,
        s: Session,
        *,
        repo: str,
        branch: str,
        head_sha: str,
        actor: str,
        pr_number: int | None = None,
        author: str | None = None,
        labels: tuple[str, ...] = (),
        service: str | None = None,
    ) -> Change:
        now = self._clock()
        change_id = "c-" + secrets.token_hex(5)
        # a newer commit on the same branch supersedes the older, unmerged change
        for old in s.scalars(
            select(ChangeRow).where(
                ChangeRow.branch == branch,
                ChangeRow.repo == repo,
                ChangeRow.status.in_(("pending", "blocked", "waiting_approval", "approved")),
            )
        ):
            old.status, old.reason, old.updated_at = "superseded", f"superseded by {head_sha[:12]}", now
        row = ChangeRow(
            id=change_id,
            service=service,
            repo=repo,
            branch=branch,
            head_sha=head_sha,
            pr_number=pr_number,
            author=author,
            labels={"labels": list(labels)},
            facts={},
            status="pending",
            classification={},
            gates={},
            reason="waiting for evidence",
            created_at=now,
            updated_at=now,
        )
        s.add(row)
        s.flush()
        self._audit(
            s,
            actor=actor,
            action="change.created",
            detail={"change_id": change_id, "branch": branch, "commit": head_sha, "pr": pr_number},
        )
        return change_of(row)

    def update_change(
        self,
        change_id: str,
        *,
        actor: str,
        action: str,
        outcome: str = "ok",
        audit_detail: dict[str, Any] | None = None,
        service: str | None = None,
        deployment_id: str | None = None,
        **values: Any,
    ) -> Change:
        result: Change = self._write(
            lambda s: self._update_change(
                s,
                change_id,
                actor=actor,
                action=action,
                outcome=outcome,
                audit_detail=audit_detail,
                service=service,
                deployment_id=deployment_id,
                **values,
            )
        )
        return result

    def _update_change(
        self,
        s: Session,
        change_id: str,
        *,
        actor: str,
        action: str,
        outcome: str = "ok",
        audit_detail: dict[str, Any] | None = None,
        service: str | None = None,
        deployment_id: str | None = None,
        **values: Any,
    ) -> Change:
        now = self._clock()
        row = s.get(ChangeRow, change_id, with_for_update=True)
        if row is None:
            raise NotFound(f"no change {change_id!r}")
        for k, v in values.items():
            if k == "labels":
                v = {"labels": list(v)}
            setattr(row, k, v)
        if deployment_id is not None:
            row.deployment_id = deployment_id
        row.updated_at = now
        self._audit(
            s,
            actor=actor,
            action=action,
            outcome=outcome,
            service=service,
            deployment_id=deployment_id,
            detail={"change_id": change_id, "commit": row.head_sha, **(audit_detail or {})},
        )
        s.flush()
        return change_of(row)

    # -- approvals --------------------------------------------------------------------------------------
    def add_approval(
        self, change_id: str, *, commit_sha: str, user: str, role: str, decision: str, comment: str = ""
    ) -> StoredApproval:
        now = self._clock()

        def tx(s: Session) -> StoredApproval:
            row = ApprovalRow(
                change_id=change_id,
                commit_sha=commit_sha,
                user=user,
                role=role,
                decision=decision,
                comment=comment,
                at=now,
            )
            s.add(row)
            s.flush()
            self._audit(
                s,
                actor=user,
                action=f"change.{decision}",
                detail={"change_id": change_id, "commit": commit_sha, "role": role, "comment": comment},
            )
            return _approval(row)

        result: StoredApproval = self._write(tx)
        return result

    def approvals(self, change_id: str) -> list[StoredApproval]:
        q = select(ApprovalRow).where(ApprovalRow.change_id == change_id).order_by(ApprovalRow.id)
        with self._sessions() as s:
            return [_approval(r) for r in s.scalars(q)]


class _Seen:
    """``Container`` view of seen delivery ids (or body digests) for ``ReplayGuard.decide``."""

    def __init__(self, repo: ChangesRepo, provider: str, *, digests: bool = False) -> None:
        self._repo, self._provider, self._digests = repo, provider, digests

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        if self._digests:
            return self._repo.is_seen_body(self._provider, key)
        return self._repo.is_seen(self._provider, key)


class ChangesTx:
    """The writes of ``ChangesRepo`` bound to one open transaction (see ``ChangesRepo.atomic``)."""

    def __init__(self, repo: ChangesRepo, session: Session) -> None:
        self._repo, self._s = repo, session

    def record_delivery(
        self, provider: str, delivery_id: str, body_sha256: str | None, *, detail: dict[str, Any]
    ) -> None:
        """Remember a delivery; ``DuplicateDelivery`` (the transaction rolls back) if already accepted."""
        self._repo._record_delivery(self._s, provider, delivery_id, body_sha256, detail)

    def add_evidence(self, **kw: Any) -> StoredEvidence:
        kw.setdefault("pipeline", None)
        kw.setdefault("source_name", None)
        return self._repo._add_evidence(self._s, **kw)

    def find_change(self, *, head_sha: str, branch: str | None = None) -> Change | None:
        return self._repo._find_change(self._s, head_sha, branch)

    def latest_on_branch(self, branch: str) -> Change | None:
        """The newest change of ``branch`` (any head commit)."""
        return self._repo._latest_on_branch(self._s, branch)

    def create_change(self, **kw: Any) -> Change:
        return self._repo._create_change(self._s, **kw)

    def update_change(self, change_id: str, **kw: Any) -> Change:
        return self._repo._update_change(self._s, change_id, **kw)
