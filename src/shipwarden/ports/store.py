"""The store port: the records services read and write, and the Protocols of the store.

The SQL store (``adapters/store/``) implements them; services see only these.  Records are
plain frozen data, built by the store from its rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shipwarden.domain.rollout import OperatorRequest, Phase, Transition

if TYPE_CHECKING:  # the repositories' ports import this module's records
    from shipwarden.ports.access import AccessRepository
    from shipwarden.ports.audit import AuditLog
    from shipwarden.ports.changes import ChangesRepository, MainlineRepository
    from shipwarden.ports.databases import DrCatalogue


class StoreError(RuntimeError):
    pass


class NotFound(StoreError):
    pass


@dataclass(frozen=True)
class Step:
    seq: int
    phase: str
    started_at: float
    finished_at: float | None
    outcome: str
    reason: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Deployment:
    id: str
    service: str
    kind: str
    strategy: str
    from_version: str | None
    to_version: str
    commit_sha: str | None
    phase: Phase
    step_index: int
    paused: bool
    active: bool
    phase_entered_at: float
    actor: str
    policy_digest: str
    policy_source: str
    plan: dict[str, Any]
    reason: str
    operator_request: OperatorRequest | None
    operator_actor: str | None
    lease_owner: str | None
    lease_expires_at: float
    created_at: float
    finished_at: float | None
    detected_at: float | None
    rolled_back_at: float | None
    traffic_restored_at: float | None = None
    wave: int = 0  # the zone wave (index in the service's zone order); 0 without zones
    pause_cause: str | None = None  # who paused it: "operator" | "analysis" (None when not paused)

    @property
    def outcome(self) -> str:
        return self.phase.value if self.phase.terminal else "in progress"


class AuditRecord(Protocol):
    """One entry of the audit log as the store returns it (``domain.audit`` defines the chain)."""

    @property
    def seq(self) -> int: ...
    @property
    def ts(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def service(self) -> str | None: ...
    @property
    def deployment_id(self) -> str | None: ...
    @property
    def outcome(self) -> str: ...
    @property
    def detail(self) -> dict[str, Any]: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...


class DeploymentStore(Protocol):
    """Deployments, their steps and leases, the analysis evidence, the audit log (what the
    reconciler, the controller, the analysis and the records read and write).  Every write is one
    transaction with its audit entry."""

    def audit(self, **kw: Any) -> None: ...

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
    ) -> Iterator[AuditRecord]: ...

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
    ) -> Deployment: ...

    def get(self, dep_id: str) -> Deployment: ...

    def active(self, service: str) -> Deployment | None: ...

    def all_active(self) -> list[Deployment]: ...

    def history(self, service: str | None = None, limit: int = 20) -> list[Deployment]: ...

    def steps(self, dep_id: str) -> list[Step]: ...

    def transition(
        self, dep: Deployment, t: Transition, *, actor: str, detail: dict[str, Any] | None = None
    ) -> Deployment: ...

    def record_detail(self, dep_id: str, detail: dict[str, Any]) -> None: ...

    def request(self, dep_id: str, request: OperatorRequest, actor: str) -> Deployment: ...

    def acquire_lease(self, dep_id: str, owner: str, ttl: float) -> bool: ...

    def renew_leases(self, dep_ids: Sequence[str], owner: str, ttl: float) -> set[str]: ...

    def release_lease(self, dep_id: str, owner: str) -> None: ...

    def stable_version(self, service: str) -> tuple[str | None, str | None]: ...

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
    ) -> None: ...

    def analysis_records(self, dep_id: str, key: str | None = None) -> list[dict[str, Any]]: ...

    def mark_traffic_restored(self, dep_id: str) -> None: ...


class UnitOfWork(DeploymentStore, Protocol):
    """The store as services see it: deployments (``DeploymentStore``) and the repositories of
    each use case over the same database and audit log.  Each repository method is one
    transaction with its audit entry; ``ChangesRepository.atomic`` groups several."""

    @property
    def changes(self) -> ChangesRepository: ...

    @property
    def mainline(self) -> MainlineRepository: ...

    @property
    def access(self) -> AccessRepository: ...

    @property
    def audit_log(self) -> AuditLog: ...

    @property
    def dr_catalogue(self) -> DrCatalogue: ...
