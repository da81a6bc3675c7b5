"""Audit use cases (D6, D11): record, ingest Kubernetes events, checkpoint, verify, query, export, dossier.

One chain holds everything: shipwarden's own entries (appended by the store in the
transaction of each state change, and by :meth:`AuditService.access` for every
access decision) and the Kubernetes apiserver's events (:meth:`ingest_k8s`).
A signed checkpoint is taken whenever the head has moved ``checkpoint_every``
entries past the last one (in the transaction of each ingested batch, and by
:meth:`AuditService.maybe_checkpoint` for callers that poll), and on demand when a
dossier is exported, so truncation and wholesale rewrites are caught.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shipwarden.adapters.store.audit_repo import AuditRepo
from shipwarden.adapters.store.repository import NotFound, Store
from shipwarden.domain.audit import (
    AuditChain,
    AuditEntry,
    ChainHead,
    Checkpoint,
    VerifyReport,
    k8s_batch,
    verify,
    verify_canonical,
)
from shipwarden.domain.audit.kubernetes import K8sRejected, k8s_ingest
from shipwarden.security.dossier import build_dossier
from shipwarden.security.signing import fingerprint
from shipwarden.services.records import deployment_record

__all__ = ["AuditService", "K8sIngested", "entry_json"]


@dataclass(frozen=True)
class K8sIngested:
    """What one Kubernetes audit delivery came to: events stored, and those rejected (why)."""

    accepted: int
    rejected: tuple[K8sRejected, ...] = ()


def entry_json(e: AuditEntry) -> dict[str, Any]:
    return {**e.fields(), "hash": e.hash}


class AuditService:
    def __init__(
        self,
        store: Store,
        signing_key: Ed25519PrivateKey,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        checkpoint_every: int = 1000,
        extra_public_keys: Mapping[str, Ed25519PublicKey] | None = None,
    ) -> None:
        self.store = store
        self.repo = AuditRepo(store)
        self.chain = AuditChain(clock, checkpoint_every=checkpoint_every)
        self.key = signing_key
        self.key_id = fingerprint(signing_key.public_key())
        self.public_keys = {**(extra_public_keys or {}), self.key_id: signing_key.public_key()}
        self.clock = clock
        # The seq of the newest checkpoint known to exist (a lower bound: other processes may
        # have signed later ones); None until read.  Saves two queries per ingested batch.
        self._signed_seq: int | None = None

    # -- writing --------------------------------------------------------------------------------
    def record(self, **entry: Any) -> None:
        self.store.audit(**entry)

    def access(
        self,
        *,
        actor: str,
        allowed: bool,
        method: str,
        path: str,
        ip: str,
        via: str,
        permission: str | None,
        service: str | None = None,
        reason: str = "",
        status: int | None = None,
    ) -> None:
        """One entry per access decision (E5: "audit logging of every access", allowed and denied)."""
        detail: dict[str, Any] = {
            "method": method,
            "path": path,
            "ip": ip,
            "via": via,
            "permission": permission,
        }
        if reason:
            detail["reason"] = reason
        if status is not None:
            detail["status"] = status
        self.store.audit(
            actor=actor[:128] or "anonymous",
            action="access",
            outcome="allowed" if allowed else "denied",
            service=service,
            detail=detail,
        )

    def ingest_k8s(self, payload: Any) -> int:
        """Store one ``audit.k8s.io/v1`` EventList in the chain; a malformed batch stores nothing
        (``K8sAuditError`` lists every problem)."""
        batch = k8s_batch(payload, received_at=self.clock())
        if batch:
            # The batch and, when due, the checkpoint of its head: one transaction, so a failure
            # stores neither and the apiserver's retry cannot duplicate events.
            _, self._signed_seq = self.repo.append(
                batch, self.chain, signer=self._sign, signed_seq=self._signed_seq
            )
        return len(batch)

    def ingest_k8s_body(self, body: bytes) -> K8sIngested:
        """Store what the apiserver POSTed — a webhook ``EventList`` or log-backend JSON lines —
        event by event: the valid events are stored, each invalid one is recorded in the chain as
        a ``k8s.audit.rejected`` entry saying where and why (:func:`k8s_ingest`), all in one
        transaction.  Only a body that is not an ``EventList`` or JSON lines at all raises
        ``K8sAuditError``; a batch with bad events is answered 2xx, as the webhook backend expects
        (a 4xx makes it retry and then drop the whole batch, good events included)."""
        batch = k8s_ingest(body, received_at=self.clock())
        if batch:
            _, self._signed_seq = self.repo.append(
                batch, self.chain, signer=self._sign, signed_seq=self._signed_seq
            )
        return K8sIngested(len(batch) - len(batch.rejected), batch.rejected)

    def _sign(self, head: ChainHead) -> Checkpoint:
        return self.chain.checkpoint(head, self.key, self.key_id)

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head now (no-op on an empty chain or an already-signed head)."""
        head = self.repo.head()
        if head.seq == 0:
            return None
        last = self.repo.last_checkpoint()
        if last is not None and last.seq == head.seq:
            return last
        cp = self._sign(head)
        self.repo.add_checkpoint(cp)
        self._signed_seq = max(self._signed_seq or 0, cp.seq)
        return cp

    def maybe_checkpoint(self, head: ChainHead | None = None) -> Checkpoint | None:
        """Checkpoint if the head is ``checkpoint_every`` or more past the last checkpoint.

        ``head`` is the head the caller has just written, if it knows it (saves a query).  The
        last checkpoint's seq is remembered between calls and re-read from the store whenever
        a checkpoint looks due, so checkpoints signed by other processes count as well."""
        every = self.chain.checkpoint_every
        if head is None:
            head = self.repo.head()
        if self._signed_seq is not None and head.seq - self._signed_seq < every:
            return None
        last = self.repo.last_checkpoint()
        self._signed_seq = last.seq if last else 0
        if head.seq - self._signed_seq < every:
            return None
        # ``head`` is committed: sign it as it is (a writer may have moved on since; its
        # entries are covered by the next checkpoint).
        cp = self._sign(head)
        self.repo.add_checkpoint(cp)
        self._signed_seq = cp.seq
        return cp

    # -- reading --------------------------------------------------------------------------------
    def verify(self, *, fast: bool = False) -> VerifyReport:
        """Walk the whole stored chain against every signed checkpoint.

        The full path also checks each row's queryable columns against its hashed text."""
        cps = self.repo.checkpoints()
        if fast:
            return verify_canonical(self.repo.pairs(), checkpoints=cps, keys=self.public_keys)
        return verify(self.repo.entries(), checkpoints=cps, keys=self.public_keys)

    def query(self, *, limit: int = 1000, **filters: Any) -> list[dict[str, Any]]:
        return [entry_json(e) for e in self.repo.entries(limit=limit, **filters)]

    def export(self, **filters: Any) -> Iterator[str]:
        """JSON Lines: one entry per line, with its canonical text so each line is checkable on its own."""
        for e in self.repo.entries(**filters):
            yield json.dumps({**entry_json(e), "canonical": e.canonical}, ensure_ascii=False) + "\n"

    # -- dossier --------------------------------------------------------------------------------
    def dossier(self, deployment_id: str) -> bytes:
        """The signed, offline-verifiable record of one deployment (D11)."""
        try:
            record = deployment_record(self.store, deployment_id)
        except NotFound as exc:
            from shipwarden.services.access import NotFoundError

            raise NotFoundError(str(exc)) from None
        record["evidence"] = self.repo.evidence_for(record.get("commit"))
        record["approvals"] = self.repo.approvals_for(deployment_id, record.get("commit"))
        record.pop("audit", None)  # the proof below carries the entries with their canonical text
        entries = list(self.repo.entries(deployment_id=deployment_id))
        cp = self.checkpoint()
        return build_dossier(deployment_id, record, entries, cp, self.key, self.clock())
