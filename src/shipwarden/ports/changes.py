"""The change pipeline's records (what the changes store keeps: changes, evidence, approvals) and
its errors; the SQL repositories (``adapters/store/changes_repo.py``, ``mainline_repo.py``) build
them from their rows."""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

from shipwarden.domain.evidence.model import Evidence, Report
from shipwarden.domain.gates import Approval
from shipwarden.domain.mainline import JudgedCommit, MainCommit, Verdict

T = TypeVar("T")

__all__ = [
    "Change",
    "ChangesRepository",
    "ChangesTransaction",
    "DuplicateDelivery",
    "HeadChanged",
    "MainlineRepository",
    "StoredApproval",
    "StoredEvidence",
]


@dataclass(frozen=True)
class StoredEvidence:
    id: str
    commit_sha: str
    kind: str
    category: str
    pipeline: dict[str, Any]
    digest: str
    source_name: str | None
    created_at: float
    report: Report
    summary: dict[str, Any]

    def as_evidence(self) -> Evidence:
        return Evidence(
            self.id,
            self.category,
            self.report,
            datetime.fromtimestamp(self.created_at, tz=UTC),
            self.commit_sha,
        )


@dataclass(frozen=True)
class Change:
    id: str
    service: str | None
    repo: str
    branch: str
    head_sha: str
    pr_number: int | None
    author: str | None
    labels: tuple[str, ...]
    facts: dict[str, Any]
    status: str
    classification: dict[str, Any]
    gates: dict[str, Any]
    reason: str
    merge_sha: str | None
    deployment_id: str | None
    created_at: float
    updated_at: float




@dataclass(frozen=True)
class StoredApproval:
    id: int
    change_id: str
    commit_sha: str
    user: str
    role: str
    decision: str
    comment: str
    at: float

    def as_approval(self) -> Approval | None:
        if self.decision == "reject":
            return None
        scope: Literal["change", "uat"] = "uat" if self.decision == "sign-off" else "change"
        return Approval(self.user, self.role, scope, datetime.fromtimestamp(self.at, tz=UTC), self.commit_sha)


class DuplicateDelivery(Exception):
    """A delivery whose id (``reason="duplicate"``) or body (``"duplicate-body"``) was already accepted."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class HeadChanged(Exception):
    """Someone else recorded an arrival on this branch first."""


class ChangesRepository(Protocol):
    """The change pipeline's store: CI deliveries, evidence, changes, approvals (``ChangesRepo``)."""

    def atomic(self, fn: Callable[[ChangesTransaction], T]) -> T: ...

    def seen_deliveries(self, provider: str) -> Container[str]: ...

    def seen_bodies(self, provider: str) -> Container[str]: ...

    def is_seen(self, provider: str, delivery_id: str) -> bool: ...

    def is_seen_body(self, provider: str, body_sha256: str) -> bool: ...

    def record_delivery(
        self, provider: str, delivery_id: str, *, detail: dict[str, Any], body_sha256: str | None = None
    ) -> bool: ...

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
    ) -> StoredEvidence: ...

    def evidence_for(self, commit_sha: str) -> list[StoredEvidence]: ...

    def evidence(self, ev_id: str) -> StoredEvidence: ...

    def find_change(self, *, head_sha: str, branch: str | None = None) -> Change | None: ...

    def change_for_deployment(self, dep_id: str) -> Change | None: ...

    def get_change(self, change_id: str) -> Change: ...

    def list_changes(self, *, status: str | None = None, limit: int = 50) -> list[Change]: ...

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
    ) -> Change: ...

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
    ) -> Change: ...

    def add_approval(
        self, change_id: str, *, commit_sha: str, user: str, role: str, decision: str, comment: str = ""
    ) -> StoredApproval: ...

    def approvals(self, change_id: str) -> list[StoredApproval]: ...


class ChangesTransaction(Protocol):
    """``ChangesRepository``'s writes bound to one open transaction (``ChangesRepository.atomic``)."""

    def record_delivery(
        self, provider: str, delivery_id: str, body_sha256: str | None, *, detail: dict[str, Any]
    ) -> None: ...

    def add_evidence(self, **kw: Any) -> StoredEvidence: ...

    def find_change(self, *, head_sha: str, branch: str | None = None) -> Change | None: ...

    def latest_on_branch(self, branch: str) -> Change | None: ...

    def create_change(self, **kw: Any) -> Change: ...

    def update_change(self, change_id: str, **kw: Any) -> Change: ...


class MainlineRepository(Protocol):
    """Commits judged on the main branch (D9)."""

    def judged_head(self, branch: str) -> str | None: ...

    def record(
        self,
        branch: str,
        *,
        previous: str | None,
        head: str,
        via: str,
        since: str | None = None,
        actor: str,
        commits: Sequence[MainCommit],
        verdicts: Sequence[Verdict],
        detail: dict[str, Any] | None = None,
    ) -> list[JudgedCommit]: ...

    def set_effect(
        self,
        judged_id: int,
        effect: str,
        detail: dict[str, Any],
        *,
        actor: str,
        action: str,
        outcome: str = "ok",
    ) -> JudgedCommit: ...

    def resolve(
        self,
        judged_id: int,
        *,
        verdict: str,
        reason: str,
        why: str,
        change_id: str | None,
        actor: str,
        detail: dict[str, Any] | None = None,
    ) -> JudgedCommit | None: ...

    def deployed_after(self, branch: str, judged_id: int) -> JudgedCommit | None: ...

    def claim(self, judged_id: int) -> bool: ...

    def changes_for(self, shas: Sequence[str]) -> list[Change]: ...

    def pending(self, branch: str) -> list[JudgedCommit]: ...

    def awaiting(self, branch: str) -> list[JudgedCommit]: ...

    def mark_overdue(self, judged_id: int, detail: dict[str, Any], *, actor: str) -> JudgedCommit | None: ...

    def open_violations(self, branch: str) -> list[JudgedCommit]: ...

    def verdicts(self, sha: str) -> list[JudgedCommit]: ...

    def find(self, prefix: str) -> list[str]: ...

    def accept(self, branch: str, sha: str, *, user: str, reason: str) -> list[JudgedCommit]: ...
