"""The audit chain: an append-only, hash-linked log that proves its own integrity.

Why a hash chain
----------------
Requirement D6 asks for an audit store that is *tamper-evident*: nobody, not
even someone with write access to the database, should be able to edit,
delete, insert or reorder a record without the next verification noticing and
saying where.  A plain table cannot promise that.  A hash chain can: every
entry carries the hash of the entry before it (``prev_hash``) and a hash of its
own content (``hash``), so changing any byte of entry *k* changes its hash,
which no longer matches the ``prev_hash`` stored in entry *k+1*, and so on to
the head.  The first entry links to the genesis value, 64 zeros.

What is hashed — the canonical encoding
---------------------------------------
``hash = sha256(canonical).hexdigest()`` where ``canonical`` is the JSON text of
every field except ``hash`` itself (``seq, ts, source, actor, action, service,
deployment_id, outcome, detail, prev_hash``) encoded as:

* a JSON object, keys sorted by code point at every depth;
* no insignificant whitespace (separators ``,`` and ``:``);
* non-ASCII characters written as themselves, the text encoded as UTF-8;
* ``NaN``/``Infinity`` refused; ``null`` for absent ``service``/``deployment_id``.

The canonical *text* is stored beside the entry (the ``canonical`` column) and
is the authoritative record; the other columns are an index over it for
queries.  Verification therefore hashes the stored bytes and never needs to
re-serialise a dict, which has two payoffs: it is fast (one sha256 over a few
hundred bytes per entry), and a verifier written in another language needs only
sha256 and a JSON parser, not a byte-exact re-implementation of Python's
``json.dumps`` (float formatting being the usual trap).

Writing is the hot path for Kubernetes audit batches (bench/audit.py, goal 20,000
events/s through the store), so the text is not made by encoding the whole entry
dict: the top-level keys are written in their fixed sorted order around the detail's
own canonical JSON (:func:`.entries._encode`), and a Kubernetes detail, which the converter
builds already sorted and float-free, is encoded by a faster order-keeping encoder
(:func:`.canonical._make_sorted_object_encoder`).  The bytes are exactly ``canonical_json`` of
the entry: the unit tests hold every path to it on generated input.  The detail's
JSON text is also what the store writes to its ``detail`` column
(:meth:`AuditChain.rows`), so nothing is encoded twice.

Two verification paths
----------------------
* :func:`verify_canonical` — the fast path — streams ``(canonical, hash)``
  pairs.  Per entry it does one sha256 and one string comparison: the
  top-level ``"prev_hash":"…","seq":N,`` fragment must name the previous hash
  and the next sequence number.  With sorted keys those two fields are adjacent,
  and the *last* occurrence of ``"prev_hash":"`` is the top-level one (only
  ``seq``, ``service``, ``source`` and ``ts`` follow it, none of which can hold
  an unescaped quote), so no JSON parsing is needed unless something is wrong.
  A few microseconds per entry, most of it sha256: bench/audit.py measures a
  million entries in about 2.5 s of CPU.  The store streams the two columns
  ``SELECT canonical, hash ... ORDER BY seq``.
* :func:`verify` — the full path — also parses each canonical text and checks
  that the queryable columns still say what was hashed, so an edit to the
  ``actor`` column alone (leaving ``canonical`` intact) is reported too.  The JSON
  parse makes it several times slower; run it on a schedule or on export, and the
  fast path on every read of the trail.

Both run in constant memory (the previous hash and a cursor into the sorted
checkpoints) and stop at the first problem, reporting its sequence number and
kind (:class:`Problem`).  "Where" is the position at which the chain stops
being consistent: for a deleted entry it is the seq that is missing, for an
entry rewritten with a recomputed hash it is the *next* entry, whose link no
longer matches.

Why signed checkpoints, chained, on a grid, and witnessed
---------------------------------------------------------
A chain alone cannot detect two attacks: cutting off the tail (the remaining
prefix is perfectly consistent) and rewriting everything from some point on
while recomputing every hash.  *Checkpoints* catch the second: Ed25519
signatures over ``(seq, entry count, hash, previous checkpoint's digest,
interval)`` with shipwarden's key, whose private half the database never sees.
They chain to each other, so deleting one breaks the next one's link; each
promises the next within ``checkpoint_every`` entries, and the store signs it in
the transaction of the append that reaches it, so the verifier can demand every
one that must exist — deleting them all, or all after some point, is found.
Only the *unsealed tail* (fewer than ``checkpoint_every`` entries after the
newest checkpoint) is protected by the chain alone.  Cutting the chain back to an
older checkpoint and deleting the newer ones leaves a consistent, shorter log
that no database-only check can tell from a quiet one: that is what *anchors*
are for — heads recorded outside the database (the witness file every checkpoint
is appended to, a dossier's head, ``--expect-head``) that the chain must reach
and agree with.  docs/audit.md tabulates what each kind of attacker can still do.

Where things live
-----------------
* :mod:`.canonical`    — canonical JSON (:func:`canonical_json` and its faster encoders), :func:`entry_hash`
* :mod:`.entries`      — :class:`EntryDraft`, :class:`AuditEntry`, :class:`ChainHead`, the field limits,
  timestamps (:func:`format_ts`), :func:`make_entry` (checking and linking one entry)
* :mod:`.checkpoints`  — :class:`Checkpoint` (v1, v2 chained), :func:`sign_checkpoint`, :class:`Sealer`
  (where checkpoints are due), signature checks
* :mod:`.verification` — :func:`verify_canonical` (fast), :func:`verify` (full), :class:`VerifyReport`,
  :class:`Anchor` (a head recorded outside the database)
* :mod:`.kubernetes`   — ``audit.k8s.io/v1`` ``EventList`` conversion: :func:`k8s_batch`, :class:`K8sBatch`
* :mod:`.chain`        — :class:`AuditChain`, the helper services call: entries, store rows
  (:data:`ROW_COLUMNS`; the Kubernetes ingest loop), checkpoints, verification

This package does no I/O.  Time comes from an injected clock; keys are passed in.
"""

from __future__ import annotations

from shipwarden.domain.audit.canonical import _encode_sorted_object as _encode_sorted_object  # unit tests
from shipwarden.domain.audit.canonical import canonical_json, entry_hash
from shipwarden.domain.audit.chain import ROW_COLUMNS, AuditChain
from shipwarden.domain.audit.checkpoints import FIRST_PREV, Checkpoint, Sealer, next_due, sign_checkpoint
from shipwarden.domain.audit.checkpoints import _checkpoint_valid as checkpoint_problem
from shipwarden.domain.audit.entries import (
    ACTION_MAX,
    ACTOR_MAX,
    DEPLOYMENT_ID_MAX,
    GENESIS_HASH,
    AuditEntry,
    AuditError,
    ChainHead,
    EntryDraft,
    format_ts,
    make_entry,
)
from shipwarden.domain.audit.entries import GENESIS as GENESIS  # public before the split, not in __all__
from shipwarden.domain.audit.entries import SERVICE_MAX as SERVICE_MAX
from shipwarden.domain.audit.entries import SOURCES as SOURCES
from shipwarden.domain.audit.entries import Source as Source
from shipwarden.domain.audit.entries import _check_draft as check_draft
from shipwarden.domain.audit.kubernetes import (
    K8sAuditError,
    K8sBatch,
    K8sProblem,
    k8s_batch,
    k8s_event_list_to_drafts,
)
from shipwarden.domain.audit.verification import Anchor, Problem, VerifyReport, verify, verify_canonical

__all__ = [
    "ACTION_MAX",
    "ACTOR_MAX",
    "DEPLOYMENT_ID_MAX",
    "FIRST_PREV",
    "GENESIS_HASH",
    "Anchor",
    "AuditChain",
    "AuditEntry",
    "AuditError",
    "ChainHead",
    "Checkpoint",
    "EntryDraft",
    "K8sAuditError",
    "K8sBatch",
    "ROW_COLUMNS",
    "K8sProblem",
    "Problem",
    "Sealer",
    "VerifyReport",
    "canonical_json",
    "check_draft",
    "checkpoint_problem",
    "entry_hash",
    "format_ts",
    "k8s_batch",
    "k8s_event_list_to_drafts",
    "make_entry",
    "next_due",
    "sign_checkpoint",
    "verify",
    "verify_canonical",
]
