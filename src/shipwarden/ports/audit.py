"""Ports of the audit service: the witness kept outside the database."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from shipwarden.domain.audit import (
    AuditChain,
    AuditEntry,
    ChainHead,
    Checkpoint,
    EntryDraft,
    K8sBatch,
    Sealer,
)
from shipwarden.ports.store import DeploymentStore

__all__ = ["AuditLog", "AuditedStore", "HeadWitness", "WitnessError"]


class WitnessError(ValueError):
    """The witness file cannot be read: the message names the file and line."""


class HeadWitness(Protocol):
    """Append-only record of signed checkpoints kept where the database's writers cannot reach."""

    def append(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Record ``checkpoints`` durably (called after the transaction that stored them commits)."""
        ...

    def read(self) -> list[Checkpoint]:
        """Every checkpoint recorded so far, in the order written."""
        ...


class AuditLog(Protocol):
    """The audit log's chain: appends in groups, checkpoints, reads."""

    def head(self) -> ChainHead: ...

    def append(
        self,
        drafts: Sequence[EntryDraft] | K8sBatch,
        chain: AuditChain,
        *,
        access_generation: int | None = None,
    ) -> ChainHead: ...

    def checkpoint_now(self) -> Checkpoint | None: ...

    def checkpoints(self) -> list[Checkpoint]: ...

    def last_checkpoint(self) -> Checkpoint | None: ...

    def entries(
        self,
        *,
        after_seq: int = 0,
        actor: str | None = None,
        action: str | None = None,
        action_prefix: str | None = None,
        service: str | None = None,
        source: str | None = None,
        deployment_id: str | None = None,
        outcome: str | None = None,
        ts_from: str | None = None,
        ts_to: str | None = None,
        seq_to: int | None = None,
        limit: int | None = None,
        batch: int = 5000,
    ) -> Iterator[AuditEntry]: ...

    def pairs(self, batch: int = 20000) -> Iterator[tuple[str, str]]: ...

    def query(self, *, limit: int, after_seq: int = 0, **filters: Any) -> list[dict[str, Any]]:
        """Up to ``limit`` entries after ``after_seq`` in seq order, each as a dict of its fields
        and hash, filtered like :meth:`entries` (the API's audit query)."""
        ...

    def evidence_for(self, commit_sha: str | None) -> list[dict[str, Any]]: ...

    def approvals_for(self, deployment_id: str, commit_sha: str | None) -> list[dict[str, Any]]: ...


class AuditedStore(DeploymentStore, Protocol):
    """The store as the audit service drives it: standalone entries, the chain's repository, the
    checkpoints each append makes due signed by ``sealer``, and the group commit (``audit_sink``)."""

    audit_sink: Callable[..., None] | None

    @property
    def audit_log(self) -> AuditLog: ...

    def attach_sealer(
        self, sealer: Sealer, on_sealed: Callable[[Sequence[Checkpoint]], None] | None = None
    ) -> object: ...
