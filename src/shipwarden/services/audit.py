"""Audit use cases (D6, D11, E5): record, ingest Kubernetes events, checkpoint, verify, query, export,
dossier.

One chain holds everything: shipwarden's own entries (appended by the store in the
transaction of each state change, and by :meth:`AuditService.access` for every
access decision) and the Kubernetes apiserver's events (:meth:`ingest_k8s`).

Checkpoints (``domain.audit.checkpoints``): the service gives the store a sealer, so every
append that reaches the checkpoint grid signs its checkpoint in the same transaction, chained
after the previous one; :meth:`checkpoint` signs the head on demand (``serve`` every minute,
dossiers, exports).  Each checkpoint is then appended to the witness file outside the database
(``adapters.witness``), and :meth:`verify` holds the chain to the witness, the grid, the
checkpoint chain and any head kept elsewhere (``--expect-head``).  What that does and does not
prove, attacker by attacker: docs/audit.md.

Access entries (one per request, allowed or denied) and other standalone entries go through
the group commit of :class:`~shipwarden.services.audit_writer.AuditWriter`: the caller waits
until its entry is committed, many callers share one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shipwarden.domain.audit import (
    Anchor,
    AuditChain,
    AuditEntry,
    ChainHead,
    Checkpoint,
    EntryDraft,
    VerifyReport,
    k8s_batch,
    verify,
    verify_canonical,
)
from shipwarden.domain.audit.kubernetes import K8sRejected, k8s_ingest
from shipwarden.ports.audit import AuditedStore, AuditLog, HeadWitness
from shipwarden.ports.store import NotFound
from shipwarden.security.audit_export import ExportWriter
from shipwarden.security.dossier import build_dossier
from shipwarden.security.signing import fingerprint, public_pem
from shipwarden.services.audit_writer import AuditWriter
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
        store: AuditedStore,
        signing_key: Ed25519PrivateKey,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        checkpoint_every: int = 1000,
        extra_public_keys: Mapping[str, Ed25519PublicKey] | None = None,
        witness: HeadWitness | None = None,
    ) -> None:
        self.store = store
        self.repo: AuditLog = store.audit_log
        self.chain = AuditChain(clock, checkpoint_every=checkpoint_every)
        self.key = signing_key
        self.key_id = fingerprint(signing_key.public_key())
        self.public_keys = {**(extra_public_keys or {}), self.key_id: signing_key.public_key()}
        self.clock = clock
        self.witness = witness
        store.attach_sealer(self.chain.sealer(signing_key, self.key_id), witness.append if witness else None)
        self.writer = AuditWriter(
            lambda drafts, generation: self.repo.append(drafts, self.chain, access_generation=generation)
        )
        store.audit_sink = self._record_draft

    # -- writing --------------------------------------------------------------------------------
    def record(self, **entry: Any) -> None:
        self.store.audit(**entry)

    def _record_draft(self, **entry: Any) -> None:
        self.writer.record(EntryDraft(**{**entry, "detail": entry.get("detail") or {}}))

    @staticmethod
    def access_draft(
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
    ) -> EntryDraft:
        """The entry for one access decision (E5: "audit logging of every access", allowed and denied)."""
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
        return EntryDraft(
            actor=actor[:128] or "anonymous",
            action="access",
            outcome="allowed" if allowed else "denied",
            service=service,
            detail=detail,
        )

    def access(self, *, generation: int | None = None, **decision: Any) -> None:
        """Record one access decision; returns once it is committed (group commit).  ``generation``:
        the access generation the decision was made at (a cached credential); if the store's has
        moved, nothing is recorded and ``StaleAccess`` is raised (judge the request again)."""
        self.writer.submit(self.access_draft(**decision), generation=generation).result(60.0)

    async def access_async(self, *, generation: int | None = None, **decision: Any) -> None:
        """:meth:`access` for the event loop: waits for the commit without holding a thread."""
        await self.writer.submit_async(self.access_draft(**decision), generation=generation)

    def close(self) -> None:
        """Commit what is queued and stop the group-commit thread (on shutdown)."""
        self.writer.close()

    def ingest_k8s(self, payload: Any) -> int:
        """Store one ``audit.k8s.io/v1`` EventList in the chain; a malformed batch stores nothing
        (``K8sAuditError`` lists every problem)."""
        batch = k8s_batch(payload, received_at=self.clock())
        if batch:
            # The batch and the checkpoints it makes due: one transaction, so a failure stores
            # neither and the apiserver's retry cannot duplicate events.
            self.repo.append(batch, self.chain)
        return len(batch)

    def ingest_k8s_body(self, body: bytes) -> K8sIngested:
        """Store what the apiserver POSTed — a webhook ``EventList`` or log-backend JSON lines —
        event by event: the valid events are stored, each invalid one is recorded in the chain as
        a ``k8s.audit.rejected`` entry saying where and why (:func:`k8s_ingest`), all in one
        transaction.  Only a body that is not an ``EventList`` or JSON lines at all (or is JSON
        beyond the depth and integer bounds) raises ``K8sAuditError``; a batch with bad events is
        answered 2xx, as the webhook backend expects (a 4xx makes it retry and then drop the whole
        batch, good events included)."""
        batch = k8s_ingest(body, received_at=self.clock())
        if batch:
            self.repo.append(batch, self.chain)
        return K8sIngested(len(batch) - len(batch.rejected), batch.rejected)

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head now (no-op on an empty chain or an already-signed head)."""
        return self.repo.checkpoint_now()

    # -- reading --------------------------------------------------------------------------------
    def anchors(self, expect_head: ChainHead | None = None, *, witness: bool = True) -> list[Anchor]:
        """What the chain must reach and agree with besides its own checkpoints: every checkpoint
        in the witness file, and ``expect_head``.  A witness that cannot be read raises."""
        out: list[Anchor] = []
        if witness and self.witness is not None:
            where = getattr(self.witness, "path", "the witness file")
            out += [
                Anchor(cp.seq, cp.hash, f"the witness {where} (checkpoint signed at {cp.ts})", cp)
                for cp in self.witness.read()
            ]
        if expect_head is not None:
            out.append(Anchor(expect_head.seq, expect_head.hash, "the expected head (--expect-head)"))
        return out

    def verify(
        self, *, fast: bool = False, expect_head: ChainHead | None = None, witness: bool = True
    ) -> VerifyReport:
        """Walk the whole stored chain against the checkpoint chain and grid, the witness file
        and ``expect_head``.  The full path also checks each row's columns against its hashed text."""
        cps = self.repo.checkpoints()
        anchors = self.anchors(expect_head, witness=witness)
        every = self.chain.checkpoint_every
        if fast:
            return verify_canonical(
                self.repo.pairs(), checkpoints=cps, keys=self.public_keys, every=every, anchors=anchors
            )
        return verify(
            self.repo.entries(), checkpoints=cps, keys=self.public_keys, every=every, anchors=anchors
        )

    def query(self, *, limit: int = 1000, **filters: Any) -> list[dict[str, Any]]:
        """Entries as :func:`entry_json` has them (fields and hash), in seq order, filtered."""
        return self.repo.query(limit=limit, **filters)

    def export(self, **filters: Any) -> Iterator[str]:
        """A signed bundle (``security.audit_export``): one line per entry, then the manifest.

        The head is signed first; the bundle covers the entries up to it.  No filter: the whole
        chain; ``after_seq`` alone: the segment after it; anything else: a selection."""
        head = self.checkpoint()
        top = head.seq if head is not None else 0
        chosen = {k: v for k, v in filters.items() if v not in (None, "", 0)}
        scope = "chain" if not chosen else ("segment" if set(chosen) == {"after_seq"} else "selection")
        pems = {k: public_pem(v) for k, v in self.public_keys.items()}
        w = ExportWriter(
            self.key,
            scope=scope,
            filters=chosen,
            checkpoint_every=self.chain.checkpoint_every,
            now=self.clock(),
            checkpoint_keys=pems,
        )
        for e in self.repo.entries(**filters, seq_to=top):
            yield w.line(e)
        after = int(chosen.get("after_seq", 0))
        cps = [c for c in self.repo.checkpoints() if c.seq <= top and (scope != "selection" or c.seq == top)]
        if scope == "segment":
            cps = [c for c in cps if c.seq > after]
        yield w.manifest(head, cps)

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
