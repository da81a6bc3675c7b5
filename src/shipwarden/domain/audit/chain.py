"""The helper services call: :class:`AuditChain` builds entries, store rows and checkpoints with an
injected clock, and verifies with the :mod:`.verification` functions.

:meth:`AuditChain.rows` is the batch ingest path; a Kubernetes :class:`~.kubernetes.K8sBatch` is
linked by its own loop (:meth:`AuditChain._k8s_rows`), with :func:`.entries._encode` inlined.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shipwarden.domain.audit.canonical import _encode_sorted_object, _json_str
from shipwarden.domain.audit.checkpoints import Checkpoint, Sealer, sign_checkpoint
from shipwarden.domain.audit.entries import (
    _TS_FORM,
    ACTION_MAX,
    ACTOR_MAX,
    GENESIS,
    AuditEntry,
    AuditError,
    ChainHead,
    EntryDraft,
    _link,
    _parse_ts,
    format_ts,
    make_entry,
)
from shipwarden.domain.audit.kubernetes import _K8S_OUTCOMES, _SEALED, K8sBatch
from shipwarden.domain.audit.verification import verify, verify_canonical

ROW_COLUMNS = (
    "seq",
    "ts",
    "source",
    "actor",
    "action",
    "service",
    "deployment_id",
    "outcome",
    "detail",
    "prev_hash",
    "hash",
    "canonical",
)
"""The order of the values in a row from :meth:`AuditChain.rows` (the ``audit_log`` columns)."""


class AuditChain:
    """Builds entries and checkpoints with an injected clock; verifies with the module functions.

    The store holds the head; this object holds only policy (clock, checkpoint interval),
    so one instance serves every request.
    """

    def __init__(self, clock: Callable[[], datetime], *, checkpoint_every: int = 1000) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.clock = clock
        self.checkpoint_every = checkpoint_every

    def stamp(self, when: datetime | str | None) -> str:
        """The stored form of an entry's time: ``when``, or the clock's now when it is ``None``."""
        if when is None:
            when = self.clock()
        if isinstance(when, str):
            # Already in the stored form (Kubernetes sends exactly this): keep the text as is.
            return when if _TS_FORM.match(when) and _parse_ts(when) else format_ts(_parse_ts(when))
        return format_ts(when)

    def append(
        self, prev: ChainHead | AuditEntry | None, fields: EntryDraft | Mapping[str, Any]
    ) -> AuditEntry:
        """The entry that follows ``prev`` (``None`` = first entry).  ``fields`` is a draft or its kwargs."""
        draft = fields if isinstance(fields, EntryDraft) else EntryDraft(**fields)
        return make_entry(prev, draft, self.stamp(draft.ts))

    def extend(
        self, prev: ChainHead | AuditEntry | None, drafts: Iterable[EntryDraft | Mapping[str, Any]]
    ) -> Iterator[AuditEntry]:
        """Append several entries in order (e.g. one Kubernetes ``EventList``)."""
        for d in drafts:
            prev = self.append(prev, d)
            yield prev

    def rows(
        self,
        prev: ChainHead | AuditEntry | None,
        drafts: Iterable[EntryDraft | Mapping[str, Any]] | K8sBatch,
    ) -> list[tuple[Any, ...]]:
        """What :meth:`extend` links, as the store's column values: per entry a tuple in
        :data:`ROW_COLUMNS` order holding :meth:`AuditEntry.to_row`'s values, except that
        ``detail`` is its canonical JSON text, the very fragment that was hashed, so the store
        writes it to its JSON column without encoding the detail a second time.

        This is the batch ingest path: same validation, same canonical text and hash as
        :func:`make_entry`, no :class:`AuditEntry` objects.  A :class:`K8sBatch` (one
        Kubernetes ``EventList``, converted by :func:`k8s_batch`) is linked without building
        drafts, as what the converter guarantees need not be checked again."""
        if isinstance(drafts, K8sBatch):
            return self._k8s_rows(prev, drafts)
        head = GENESIS if prev is None else (prev.head if isinstance(prev, AuditEntry) else prev)
        seq, prev_hash = int(head.seq), head.hash
        stamp, link = self.stamp, _link
        out: list[tuple[Any, ...]] = []
        append = out.append
        for d in drafts:
            draft = d if isinstance(d, EntryDraft) else EntryDraft(**d)
            ts = stamp(draft.ts)
            seq += 1
            detail_text, canonical, digest = link(seq, prev_hash, draft, ts)
            append(
                (
                    seq,
                    ts,
                    draft.source,
                    draft.actor,
                    draft.action,
                    draft.service,
                    draft.deployment_id,
                    draft.outcome,
                    detail_text,
                    prev_hash,
                    digest,
                    canonical,
                )
            )
            prev_hash = digest
        return out

    def _k8s_rows(self, prev: ChainHead | AuditEntry | None, batch: K8sBatch) -> list[tuple[Any, ...]]:
        if batch._sealed is not _SEALED:
            return self.rows(prev, batch.drafts())
        head = GENESIS if prev is None else (prev.head if isinstance(prev, AuditEntry) else prev)
        seq, prev_hash = int(head.seq), head.hash
        enc, encode_object, sha256 = _json_str, _encode_sorted_object, hashlib.sha256
        out: list[tuple[Any, ...]] = []
        append = out.append
        for actor, action, outcome, detail, when in batch.events:
            # The converter made sure of all this; the cheap part is checked again all the same,
            # as the store's columns must hold the values.
            if (
                type(actor) is not str
                or not 0 < len(actor) <= ACTOR_MAX
                or type(action) is not str
                or not 0 < len(action) <= ACTION_MAX
                or outcome not in _K8S_OUTCOMES
                or type(detail) is not dict
            ):
                raise AuditError(f"not a converted Kubernetes event: {(actor, action, outcome)!r}")
            # A str time is the event's own, already in the stored form (k8s_batch checks it).
            ts = when if isinstance(when, str) else format_ts(when)
            seq += 1
            # entries._encode for source "kubernetes", no service or deployment, an outcome from a
            # fixed set of plain words, _K8S_OUTCOMES (inlined: this loop runs for every event; a
            # test holds the two together).
            try:
                detail_text = encode_object(detail)
                canonical = (
                    f'{{"action":{enc(action)},"actor":{enc(actor)},"deployment_id":null,'
                    f'"detail":{detail_text},"outcome":"{outcome}","prev_hash":{enc(prev_hash)},'
                    f'"seq":{seq},"service":null,"source":"kubernetes","ts":{enc(ts)}}}'
                )
                digest = sha256(canonical.encode("utf-8")).hexdigest()
            except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as exc:
                raise AuditError(f"detail is not JSON-encodable: {exc}") from exc
            append(
                (
                    seq,
                    ts,
                    "kubernetes",
                    actor,
                    action,
                    None,
                    None,
                    outcome,
                    detail_text,
                    prev_hash,
                    digest,
                    canonical,
                )
            )
            prev_hash = digest
        return out

    def checkpoint_due(self, head: ChainHead | AuditEntry) -> bool:
        """True when ``head`` is on the periodic checkpoint grid of a chain checkpointed from the start."""
        return head.seq > 0 and head.seq % self.checkpoint_every == 0

    def checkpoint(
        self,
        head: ChainHead | AuditEntry,
        key: Ed25519PrivateKey,
        key_id: str,
        prev: Checkpoint | None = None,
    ) -> Checkpoint:
        """Sign ``head`` now (periodic or on demand) as the checkpoint after ``prev``."""
        return sign_checkpoint(head, self.clock(), key, key_id, prev=prev, every=self.checkpoint_every)

    def sealer(self, key: Ed25519PrivateKey, key_id: str) -> Sealer:
        """What the store calls in each append to sign the checkpoints the grid requires."""
        return Sealer(key, key_id, self.checkpoint_every, self.clock)

    verify = staticmethod(verify)
    verify_canonical = staticmethod(verify_canonical)
