"""The audit chain: canonical encoding, tamper detection with location, checkpoints, k8s ingest."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipwarden.domain import audit as audit_module
from shipwarden.domain.audit import (
    ACTION_MAX,
    ACTOR_MAX,
    GENESIS_HASH,
    ROW_COLUMNS,
    AuditChain,
    AuditEntry,
    AuditError,
    ChainHead,
    Checkpoint,
    EntryDraft,
    K8sAuditError,
    K8sBatch,
    Problem,
    canonical_json,
    k8s_batch,
    k8s_event_list_to_drafts,
    make_entry,
    sign_checkpoint,
    verify,
    verify_canonical,
)

T0 = datetime(2025, 3, 1, 8, 0, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()
KEYS = {"k1": KEY.public_key()}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def build(
    n: int, *, every: int = 1000, details: list[dict[str, Any]] | None = None
) -> tuple[list[AuditEntry], list[Checkpoint], AuditChain]:
    chain = AuditChain(Clock(), checkpoint_every=every)
    entries: list[AuditEntry] = []
    cps: list[Checkpoint] = []
    prev: AuditEntry | None = None
    for i in range(n):
        detail = details[i] if details else {"step": i, "note": "ok"}
        prev = chain.append(
            prev,
            {
                "actor": f"user{i % 3}",
                "action": "deployment.promote",
                "service": "checkout",
                "deployment_id": f"d{i // 4}",
                "detail": detail,
            },
        )
        entries.append(prev)
        if chain.checkpoint_due(prev):
            cps.append(chain.checkpoint(prev, KEY, "k1", prev=cps[-1] if cps else None))
    return entries, cps, chain


def pairs(entries: list[AuditEntry]) -> list[tuple[str, str]]:
    return [(e.canonical, e.hash) for e in entries]


def forged(prev: ChainHead | AuditEntry | None, old: AuditEntry, **changes: Any) -> AuditEntry:
    """What an attacker with DB access can do: rebuild an entry with a correct hash."""
    draft = EntryDraft(
        actor=changes.get("actor", old.actor),
        action=old.action,
        outcome=old.outcome,
        source="shipwarden",
        service=old.service,
        deployment_id=old.deployment_id,
        detail=changes.get("detail", old.detail),
    )
    return make_entry(prev, draft, old.ts)


class TestCanonicalEncoding:
    def test_hash_is_sha256_of_sorted_compact_utf8_json_of_all_fields_but_hash(self) -> None:
        chain = AuditChain(Clock())
        e = chain.append(None, EntryDraft(actor="zoë", action="deployment.create", detail={"b": 1, "a": "é"}))
        expected = {k: v for k, v in e.to_row().items() if k not in ("hash", "canonical")}
        assert e.canonical == json.dumps(expected, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert '"detail":{"a":"é","b":1}' in e.canonical and " " not in e.canonical
        assert e.hash == hashlib.sha256(e.canonical.encode("utf-8")).hexdigest()
        assert e.seq == 1 and e.prev_hash == GENESIS_HASH

    def test_ts_is_utc_with_microseconds(self) -> None:
        chain = AuditChain(lambda: datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
        assert chain.append(None, EntryDraft(actor="a", action="x")).ts == "2025-01-02T03:04:05.000006Z"
        cet = timezone(timedelta(hours=1))
        e = chain.append(None, EntryDraft(actor="a", action="x", ts=datetime(2025, 1, 2, 3, 0, tzinfo=cet)))
        assert e.ts == "2025-01-02T02:00:00.000000Z"

    def test_links_and_seq_are_contiguous(self) -> None:
        entries, _, _ = build(5)
        assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
        assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))

    def test_canonical_json_refuses_nan(self) -> None:
        with pytest.raises(ValueError):
            canonical_json({"x": float("nan")})

    def test_detail_column_is_the_json_image_of_what_was_hashed(self) -> None:
        draft = EntryDraft(actor="a", action="x", detail={"t": (1, 2), "n": {"k": 1}})
        e = AuditChain(Clock()).append(None, draft)
        assert e.detail == {"t": [1, 2], "n": {"k": 1}}
        assert verify([e]).ok

    @pytest.mark.parametrize(
        "bad",
        [
            {"source": "github"},
            {"outcome": "OK!"},
            {"actor": ""},
            {"service": "x" * 65},
            {"detail": {"when": datetime.now(UTC)}},
            {"detail": {"x": float("inf")}},
            {"detail": ["not", "an", "object"]},
            {"ts": datetime(2025, 1, 1)},  # naive
        ],
    )
    def test_invalid_drafts_are_refused(self, bad: dict[str, Any]) -> None:
        fields: dict[str, Any] = {"actor": "a", "action": "x", **bad}
        with pytest.raises(AuditError):
            AuditChain(Clock()).append(None, fields)

    def test_row_round_trip_including_detail_as_json_text(self) -> None:
        entries, _, _ = build(3)
        rows = [e.to_row() for e in entries]
        assert [AuditEntry.from_row(r) for r in rows] == entries
        as_text = [{**r, "detail": json.dumps(r["detail"])} for r in rows]
        assert verify(AuditEntry.from_row(r) for r in as_text).ok

    def test_from_row_accepts_attribute_objects(self) -> None:
        e = build(1)[0][0]
        obj = type("Row", (), e.to_row())()
        assert AuditEntry.from_row(obj) == e


class TestVerify:
    def test_intact_chain_verifies_on_both_paths(self) -> None:
        entries, cps, _ = build(30, every=7)
        full = verify(entries, checkpoints=cps, keys=KEYS)
        fast = verify_canonical(pairs(entries), checkpoints=cps, keys=KEYS)
        for r in (full, fast):
            assert r.ok and r.entries_checked == 30 and r.checkpoints_checked == 4
            assert r.head == ChainHead(30, entries[-1].hash) and r.problem is None

    def test_empty_chain_is_ok(self) -> None:
        assert verify([]).ok and verify_canonical([]).head == ChainHead(0, GENESIS_HASH)

    def test_edited_column_is_found_by_full_path_only(self) -> None:
        entries, _, _ = build(10)
        entries[4] = dataclasses.replace(entries[4], actor="mallory")
        r = verify(entries)
        assert (r.ok, r.seq, r.problem) == (False, 5, Problem.CONTENT_MISMATCH)
        assert "actor" in r.message
        assert verify_canonical(pairs(entries)).ok  # the hashed record itself is intact
        assert verify(entries, columns=False).ok
        del entries[6]
        r = verify(entries, columns=False)
        assert (r.seq, r.problem) == (7, Problem.SEQ_GAP)

    def test_rewritten_entry_breaks_the_next_link(self) -> None:
        entries, _, _ = build(10)
        entries[4] = forged(entries[3], entries[4], actor="mallory")
        for r in (verify(entries), verify_canonical(pairs(entries))):
            assert (r.ok, r.seq, r.problem) == (False, 6, Problem.BROKEN_LINK)

    def test_deleted_entry_is_a_seq_gap_where_it_was(self) -> None:
        entries, _, _ = build(10)
        del entries[3]
        for r in (verify(entries), verify_canonical(pairs(entries))):
            assert (r.ok, r.seq, r.problem) == (False, 4, Problem.SEQ_GAP)
            assert r.entries_checked == 3

    def test_verification_streams_and_stops_at_the_first_problem(self) -> None:
        entries, _, _ = build(10)
        entries[2] = dataclasses.replace(entries[2], hash="f" * 64)
        consumed = []

        def stream() -> Iterator[AuditEntry]:
            for e in entries:
                consumed.append(e.seq)
                yield e

        r = verify(stream())
        assert (r.seq, r.problem) == (3, Problem.HASH_MISMATCH)
        assert consumed == [1, 2, 3]

    def test_segment_verification_from_an_anchor(self) -> None:
        entries, _, _ = build(10)
        anchor = entries[5].head
        assert verify(entries[6:], start=anchor).ok
        assert verify_canonical(pairs(entries[6:]), start=anchor).head.seq == 10
        r = verify(entries[7:], start=anchor)
        assert (r.seq, r.problem) == (7, Problem.SEQ_GAP)

    def test_malformed_canonical_text(self) -> None:
        entries, _, _ = build(3)
        junk = "not json"
        junk_hash = hashlib.sha256(junk.encode()).hexdigest()
        entries[1] = dataclasses.replace(entries[1], canonical=junk, hash=junk_hash)
        r = verify(entries)
        assert (r.seq, r.problem) == (2, Problem.CONTENT_MISMATCH)
        r = verify_canonical(pairs(entries))
        assert (r.seq, r.problem) == (2, Problem.MALFORMED)

    def test_nested_prev_hash_in_detail_cannot_fool_the_fast_path(self) -> None:
        # An attacker hides a plausible "prev_hash"/"seq" fragment inside detail and
        # re-hashes the entry; the top-level link is what counts.
        entries, _, _ = build(4)
        fake = {"prev_hash": entries[1].hash, "seq": 3, "service": "x"}
        entries[2] = forged(ChainHead(2, "e" * 64), entries[2], detail=fake)
        r = verify_canonical(pairs(entries))
        assert (r.seq, r.problem) == (3, Problem.BROKEN_LINK)


class TestCheckpoints:
    def test_wholesale_rewrite_with_recomputed_hashes_is_caught_at_the_checkpoint(self) -> None:
        entries, cps, _ = build(25, every=10)
        prev: AuditEntry | None = entries[11]
        for i in range(12, 25):  # rewrite everything from seq 13 on, hashes recomputed
            prev = entries[i] = forged(prev, entries[i], actor="mallory")
        assert verify(entries).ok  # the chain alone cannot tell
        for r in (
            verify(entries, checkpoints=cps, keys=KEYS),
            verify_canonical(pairs(entries), checkpoints=cps, keys=KEYS),
        ):
            assert (r.ok, r.seq, r.problem) == (False, 20, Problem.CHECKPOINT_MISMATCH)

    def test_truncated_tail_is_caught(self) -> None:
        entries, cps, chain = build(25, every=10)
        on_demand = chain.checkpoint(entries[-1], KEY, "k1", prev=cps[-1])
        r = verify(entries[:15], checkpoints=cps, keys=KEYS)
        assert (r.ok, r.seq, r.problem) == (False, 16, Problem.TRUNCATED)
        r = verify_canonical(pairs(entries[:24]), checkpoints=[*cps, on_demand], keys=KEYS)
        assert (r.ok, r.seq, r.problem) == (False, 25, Problem.TRUNCATED)
        assert verify(entries, checkpoints=[*cps, on_demand], keys=KEYS).ok

    def test_forged_or_unknown_key_checkpoint_is_refused(self) -> None:
        entries, cps, _ = build(20, every=10)
        bad = dataclasses.replace(cps[0], hash="0" * 64)
        r = verify(entries, checkpoints=[bad, cps[1]], keys=KEYS)
        assert (r.ok, r.seq, r.problem) == (False, 10, Problem.CHECKPOINT_SIGNATURE)
        other = Ed25519PrivateKey.generate()
        rogue = dataclasses.replace(cps[1], key_id="k2")
        r = verify(entries, checkpoints=[rogue], keys=KEYS)
        assert (r.seq, r.problem) == (20, Problem.CHECKPOINT_SIGNATURE) and "unknown key" in r.message
        r = verify(entries, checkpoints=[rogue], keys={**KEYS, "k2": other.public_key()})
        assert r.problem == Problem.CHECKPOINT_SIGNATURE

    def test_key_rotation_old_and_new_keys_verify(self) -> None:
        entries, cps, chain = build(20, every=10)
        new = Ed25519PrivateKey.generate()
        cp2 = chain.checkpoint(entries[-1], new, "k2", prev=cps[0])
        assert verify(entries, checkpoints=[cps[0], cp2], keys={**KEYS, "k2": new.public_key()}).ok

    def test_two_checkpoints_at_one_seq_are_a_fork_and_a_lying_one_is_caught(self) -> None:
        entries, cps, chain = build(10, every=5)
        new = Ed25519PrivateKey.generate()
        keys = {**KEYS, "k2": new.public_key()}
        twin = chain.checkpoint(entries[4], new, "k2", prev=cps[0])
        r = verify(entries, checkpoints=[*cps, twin], keys=keys)
        assert (r.seq, r.problem) == (5, Problem.CHECKPOINT_CHAIN) and "fork" in r.message
        liar = sign_checkpoint(ChainHead(5, "a" * 64), T0, new, "k2", every=5)
        r = verify_canonical(pairs(entries), checkpoints=[liar, cps[1]], keys=keys)
        assert (r.seq, r.problem) == (10, Problem.CHECKPOINT_CHAIN)  # cps[1] links to the real one
        r = verify_canonical(pairs(entries), checkpoints=[liar], keys=keys)
        assert (r.seq, r.problem) == (5, Problem.CHECKPOINT_MISMATCH)

    def test_checkpoints_need_keys(self) -> None:
        entries, cps, _ = build(10, every=5)
        with pytest.raises(ValueError):
            verify(entries, checkpoints=cps)

    def test_checkpoint_row_round_trip_and_schedule(self) -> None:
        entries, cps, chain = build(10, every=5)
        assert [c.seq for c in cps] == [5, 10]
        assert [Checkpoint.from_row(c.to_row()) for c in cps] == cps
        assert not chain.checkpoint_due(entries[3]) and chain.checkpoint_due(entries[4])


# --- property-based: any single tampering is found, at the right place -----------------------

json_leaf = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
details = st.dictionaries(st.text(max_size=6), json_value, max_size=4)

short_text = st.text(min_size=1, max_size=12)  # quotes, backslashes, controls, non-ASCII, astral


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actor=short_text,
    action=short_text,
    service=st.none() | short_text,
    deployment_id=st.none() | short_text,
    outcome=st.from_regex(r"[a-z][a-z0-9_]{0,15}\n?", fullmatch=True),
    source=st.sampled_from(["shipwarden", "kubernetes"]),
    detail=details,
    seq=st.integers(0, 2**53),
    prev=st.text(max_size=70),
)
def test_assembled_canonical_text_is_exactly_canonical_json_of_the_fields(
    actor: str,
    action: str,
    service: str | None,
    deployment_id: str | None,
    outcome: str,
    source: Any,
    detail: dict[str, Any],
    seq: int,
    prev: str,
) -> None:
    """make_entry and AuditChain.rows assemble the canonical text from its parts; it must be
    byte for byte what canonical_json writes for the whole entry, and rows() must store what
    make_entry would, with the detail as exactly the hashed fragment."""
    ts = "2025-03-01T08:00:00.123456Z"
    draft = EntryDraft(
        actor=actor,
        action=action,
        outcome=outcome,
        source=source,
        service=service,
        deployment_id=deployment_id,
        detail=detail,
        ts=ts,
    )
    fields = {
        "seq": seq + 1,
        "ts": ts,
        "source": source,
        "actor": actor,
        "action": action,
        "service": service,
        "deployment_id": deployment_id,
        "outcome": outcome,
        "detail": detail,
        "prev_hash": prev,
    }
    e = make_entry(ChainHead(seq, prev), draft, ts)
    assert e.canonical == canonical_json(fields)
    assert e.hash == hashlib.sha256(canonical_json(fields).encode()).hexdigest()
    [values] = AuditChain(Clock()).rows(ChainHead(seq, prev), [draft])
    row = dict(zip(ROW_COLUMNS, values, strict=True))
    assert row["detail"] == canonical_json(detail) and f',"detail":{row["detail"]},' in e.canonical
    assert json.loads(row["detail"]) == e.detail
    assert {**row, "detail": e.detail} == e.to_row()


any_text = st.text(max_size=12)  # any code point but lone surrogates: controls, quotes, U+2028, astral
# JSON values without floats (what a Kubernetes detail holds), every dict in sorted key order
sorted_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | any_text,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(any_text, inner, max_size=3).map(lambda d: dict(sorted(d.items())))
    ),
    max_leaves=8,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=st.dictionaries(any_text, sorted_json, max_size=5).map(lambda d: dict(sorted(d.items()))))
def test_the_sorted_object_encoder_writes_canonical_json(obj: dict[str, Any]) -> None:
    """The Kubernetes rows encode their (sorted, float-free) details with a faster encoder;
    it must write exactly what canonical_json writes."""
    assert audit_module._encode_sorted_object(obj) == canonical_json(obj)


def test_the_sorted_object_encoder_refuses_lone_surrogates() -> None:
    with pytest.raises(ValueError):
        audit_module._encode_sorted_object({"s": "\ud800"})
    ev = k8s_event(userAgent="kubectl \udc00")
    with pytest.raises(AuditError):
        AuditChain(Clock()).rows(None, k8s_batch(event_list(ev), received_at=T0))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    user=short_text | st.text(min_size=250, max_size=300),
    verb=short_text,
    uri=st.text(min_size=1, max_size=40) | st.text(min_size=1, max_size=10).map(lambda t: "/" + t * 40),
    ref=st.none()
    | st.dictionaries(st.sampled_from(["resource", "namespace", "name", "apiGroup"]), short_text),
    annotations=st.dictionaries(any_text, any_text, max_size=4),
    groups=st.lists(any_text, max_size=3),
    ips=st.lists(any_text, max_size=2),
    agent=st.none() | any_text,
    impersonated=st.none() | any_text,
    code=st.none() | st.integers(100, 599),
    stamp=st.sampled_from(["2025-03-01T08:00:00.123456Z", "2025-03-01T09:00:00+01:00", None]),
)
def test_kubernetes_rows_are_the_rows_of_their_drafts(
    user: str,
    verb: str,
    uri: str,
    ref: dict[str, str] | None,
    annotations: dict[str, str],
    groups: list[str],
    ips: list[str],
    agent: str | None,
    impersonated: str | None,
    code: int | None,
    stamp: str | None,
) -> None:
    """A K8sBatch is linked by its own loop (no drafts, the encoding inlined, the detail encoded
    by the sorted-object encoder); it must produce exactly the rows the general, checked path
    makes from the same events as drafts."""
    ev = {
        "level": "Metadata",
        "auditID": "a-1",
        "stage": "ResponseComplete",
        "verb": verb,
        "requestURI": uri,
        "user": {"username": user, "groups": groups},
        "sourceIPs": ips,
        "userAgent": agent,
        "impersonatedUser": None if impersonated is None else {"username": impersonated},
        "annotations": annotations,
        "responseStatus": {"code": code},
        "stageTimestamp": stamp,
        "objectRef": ref,
    }
    batch = k8s_batch(event_list({k: v for k, v in ev.items() if v is not None}), received_at=T0)
    head = ChainHead(3, "ef" * 32)
    rows = AuditChain(Clock()).rows(head, batch)
    assert rows == AuditChain(Clock()).rows(head, batch.drafts())
    unsealed = K8sBatch(batch.events)  # built by hand: linked through its drafts
    assert AuditChain(Clock()).rows(head, unsealed) == rows


def test_rows_are_the_entries_extend_makes() -> None:
    drafts = [
        EntryDraft(
            actor="alice", action="deployment.create", service="web", detail={"b": [1, 2.5], "a": "é"}
        ),
        EntryDraft(actor="bob", action="x", deployment_id="d-1", outcome="denied", detail={"t": (1, 2)}),
        EntryDraft(actor="k", action="get pods", source="kubernetes", ts="2025-03-01T09:00:00+01:00"),
    ]
    head = ChainHead(41, "ab" * 32)
    entries = list(AuditChain(Clock()).extend(head, drafts))
    rows = [dict(zip(ROW_COLUMNS, r, strict=True)) for r in AuditChain(Clock()).rows(head, drafts)]
    assert [{**r, "detail": json.loads(r["detail"])} for r in rows] == [e.to_row() for e in entries]
    assert rows[2]["ts"] == "2025-03-01T08:00:00.000000Z" and rows[1]["detail"] == '{"t":[1,2]}'
    assert verify((AuditEntry.from_row(r) for r in rows), start=head).ok
    with pytest.raises(AuditError):
        AuditChain(Clock()).rows(None, [EntryDraft(actor="a", action="x", detail={"n": float("nan")})])
    assert AuditChain(Clock()).rows(head, []) == []


RAW_FIELDS = {
    "seq": Problem.SEQ_GAP,
    "hash": Problem.HASH_MISMATCH,
    "canonical": Problem.HASH_MISMATCH,
    "ts": Problem.CONTENT_MISMATCH,
    "source": Problem.CONTENT_MISMATCH,
    "actor": Problem.CONTENT_MISMATCH,
    "action": Problem.CONTENT_MISMATCH,
    "service": Problem.CONTENT_MISMATCH,
    "deployment_id": Problem.CONTENT_MISMATCH,
    "outcome": Problem.CONTENT_MISMATCH,
    "detail": Problem.CONTENT_MISMATCH,
    "prev_hash": Problem.CONTENT_MISMATCH,
}


def _changed(field: str, e: AuditEntry, data: st.DataObject) -> Any:
    old = getattr(e, field)
    if field == "seq":
        return data.draw(st.integers(-5, 100).filter(lambda v: v != old))
    if field == "detail":
        return data.draw(details.filter(lambda d: d != old))
    if field == "service":
        return None if old else "other"
    if field == "canonical":  # flip one character anywhere in the hashed text
        i = data.draw(st.integers(0, len(old) - 1))
        return old[:i] + data.draw(st.sampled_from('x0{}:,"é').filter(lambda c: c != old[i])) + old[i + 1 :]
    return data.draw(st.text(max_size=70).filter(lambda v: v != old))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    ds=st.lists(details, min_size=2, max_size=12),
    kind=st.sampled_from(["raw_edit", "forged_edit", "delete", "insert", "swap"]),
)
def test_any_single_tampering_is_flagged_at_the_right_place(
    data: st.DataObject, ds: list[dict[str, Any]], kind: str
) -> None:
    entries, _, _ = build(len(ds), details=ds)
    n = len(entries)
    assert verify(entries).ok
    if kind == "raw_edit":
        i = data.draw(st.integers(0, n - 1))
        field = data.draw(st.sampled_from(sorted(RAW_FIELDS)))
        entries[i] = dataclasses.replace(entries[i], **{field: _changed(field, entries[i], data)})
        want = (i + 1, RAW_FIELDS[field])
        fast_should_see = field in ("hash", "canonical")
    elif kind == "forged_edit":  # recomputed hash: the *next* link breaks
        i = data.draw(st.integers(0, n - 2))
        new_detail = data.draw(details.filter(lambda d: d != entries[i].detail))
        entries[i] = forged(entries[i - 1] if i else None, entries[i], detail=new_detail)
        want, fast_should_see = (i + 2, Problem.BROKEN_LINK), True
    elif kind == "delete":
        i = data.draw(st.integers(0, n - 2))
        del entries[i]
        want, fast_should_see = (i + 1, Problem.SEQ_GAP), True
    elif kind == "insert":  # a well-formed forged entry slotted in: the displaced one no longer fits
        i = data.draw(st.integers(0, n - 1))
        intruder = forged(entries[i - 1] if i else None, entries[i], actor="mallory")
        entries.insert(i, intruder)
        want, fast_should_see = (i + 2, Problem.SEQ_GAP), True
    else:
        i, j = sorted(data.draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True)))
        entries[i], entries[j] = entries[j], entries[i]
        want, fast_should_see = (i + 1, Problem.SEQ_GAP), True

    r = verify(entries)
    assert not r.ok
    assert (r.seq, r.problem) == want, r.message
    fast = verify_canonical(pairs(entries))
    if fast_should_see:
        assert not fast.ok and fast.seq == want[0], fast.message
    else:
        assert fast.ok  # columns-only edits are the full path's job


# --- Kubernetes audit EventList -----------------------------------------------------------------


def k8s_event(**over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": "6f0c-1",
        "stage": "ResponseComplete",
        "requestURI": "/apis/apps/v1/namespaces/shop/deployments/web/scale?fieldManager=kubectl",
        "verb": "patch",
        "user": {"username": "alice@example.com", "groups": ["devs", "system:authenticated"]},
        "sourceIPs": ["203.0.113.9", "10.0.0.2"],
        "userAgent": "kubectl/v1.31.0",
        "objectRef": {
            "resource": "deployments",
            "subresource": "scale",
            "namespace": "shop",
            "name": "web",
            "apiGroup": "apps",
            "apiVersion": "v1",
        },
        "responseStatus": {"metadata": {}, "code": 200},
        "requestObject": {"spec": {"replicas": 5}, "data": {"password": "hunter2"}},
        "responseObject": {"status": {"replicas": 5}},
        "requestReceivedTimestamp": "2025-03-01T08:00:00.100000Z",
        "stageTimestamp": "2025-03-01T08:00:00.123456Z",
        "annotations": {"authorization.k8s.io/decision": "allow"},
    }
    ev.update(over)
    return {k: v for k, v in ev.items() if v is not None}


def event_list(*events: Any) -> dict[str, Any]:
    return {"apiVersion": "audit.k8s.io/v1", "kind": "EventList", "metadata": {}, "items": list(events)}


class TestKubernetesAudit:
    def test_event_becomes_a_kubernetes_entry(self) -> None:
        [d] = k8s_event_list_to_drafts(event_list(k8s_event()), received_at=T0)
        e = AuditChain(Clock()).append(None, d)
        assert (e.source, e.actor, e.action, e.outcome) == (
            "kubernetes",
            "alice@example.com",
            "patch deployments/scale",
            "ok",
        )
        assert e.ts == "2025-03-01T08:00:00.123456Z"
        assert e.detail["auditID"] == "6f0c-1" and e.detail["stage"] == "ResponseComplete"
        assert e.detail["code"] == 200 and e.detail["sourceIPs"] == ["203.0.113.9", "10.0.0.2"]
        assert e.detail["objectRef"] == {
            "apiGroup": "apps",
            "apiVersion": "v1",
            "namespace": "shop",
            "name": "web",
            "subresource": "scale",
        }
        assert "hunter2" not in e.canonical and "requestObject" not in e.detail  # bodies never stored
        assert verify([e]).ok

    @pytest.mark.parametrize(
        ("stage", "code", "outcome"),
        [
            ("ResponseComplete", 201, "ok"),
            ("ResponseComplete", 403, "denied"),
            ("ResponseComplete", 401, "denied"),
            ("ResponseComplete", 500, "failed"),
            ("ResponseComplete", 404, "failed"),
            ("RequestReceived", None, "pending"),
            ("Panic", 500, "failed"),
        ],
    )
    def test_outcome_follows_stage_and_status(self, stage: str, code: int | None, outcome: str) -> None:
        status = {"code": code} if code else None
        payload = event_list(k8s_event(stage=stage, responseStatus=status))
        [d] = k8s_event_list_to_drafts(payload, received_at=T0)
        assert d.outcome == outcome

    def test_same_audit_id_at_several_stages_and_non_resource_requests(self) -> None:
        evs = [
            k8s_event(stage="RequestReceived", responseStatus=None),
            k8s_event(),
            k8s_event(
                objectRef=None,
                verb="get",
                requestURI="/healthz?verbose",
                auditID="x2",
                stageTimestamp=None,
                requestReceivedTimestamp=None,
            ),
        ]
        drafts = k8s_event_list_to_drafts(event_list(*evs), received_at=T0)
        assert [d.detail["auditID"] for d in drafts] == ["6f0c-1", "6f0c-1", "x2"]
        assert drafts[2].action == "get /healthz" and drafts[2].ts == T0
        entries = list(AuditChain(Clock()).extend(None, drafts))
        assert [e.seq for e in entries] == [1, 2, 3] and verify(entries).ok

    def test_malformed_batch_reports_every_problem_with_its_path_and_yields_nothing(self) -> None:
        payload = event_list(
            k8s_event(),
            k8s_event(verb=None, user={"groups": []}),
            k8s_event(stage="Done", responseStatus={"code": "200"}),
            "junk",
            k8s_event(stageTimestamp="yesterday", sourceIPs="1.2.3.4"),
        )
        with pytest.raises(K8sAuditError) as exc:
            k8s_event_list_to_drafts(payload, received_at=T0)
        paths = {p.path for p in exc.value.problems}
        assert {
            "items[1].verb",
            "items[1].user.username",
            "items[2].stage",
            "items[2].responseStatus.code",
            "items[3]",
            "items[4].stageTimestamp",
            "items[4].sourceIPs",
        } <= paths
        assert "items[0]" not in {p.split(".")[0] for p in paths}
        assert "items[1].verb" in str(exc.value)

    def test_long_user_names_and_actions_are_bounded_and_kept_whole_in_the_detail(self) -> None:
        """The actor and action columns hold ACTOR_MAX / ACTION_MAX characters; a Kubernetes user
        name or a derived action (a long non-resource URL) beyond that is cut with "…", and the
        whole value stays in the detail and so in the hashed canonical text."""
        path = "/api/v1/namespaces/shop/" + "x" * 5000
        user = "system:serviceaccount:" + "n" * 63 + ":" + "s" * 253  # the longest a service account gets
        evs = [
            k8s_event(objectRef=None, verb="get", requestURI=path + "?watch=true"),
            k8s_event(user={"username": user, "groups": ["system:serviceaccounts"]}),
            k8s_event(user={"username": "u" * ACTOR_MAX}, objectRef=None, verb="v" * 10_000),
            k8s_event(user={"username": "u" * (ACTOR_MAX + 1)}),
        ]
        drafts = k8s_event_list_to_drafts(event_list(*evs), received_at=T0)
        a, b, c, d = entries = list(AuditChain(Clock()).extend(None, drafts))
        assert len(a.action) == ACTION_MAX and a.action.endswith("…") and a.action.startswith("get /api/v1/")
        assert a.detail["action"] == "get " + path and a.detail["requestURI"] == path + "?watch=true"
        assert a.actor == "alice@example.com" and "actor" not in a.detail
        assert len(b.actor) == ACTOR_MAX and b.actor.endswith("…") and b.detail["actor"] == user
        assert b.action == "patch deployments/scale" and "action" not in b.detail
        assert c.actor == "u" * ACTOR_MAX and "actor" not in c.detail  # exactly the limit: kept as is
        assert c.action == "v" * (ACTION_MAX - 1) + "…" and c.detail["action"].startswith("v" * 10_000 + " ")
        assert d.actor == "u" * (ACTOR_MAX - 1) + "…" and d.detail["actor"] == "u" * (ACTOR_MAX + 1)
        assert path in a.canonical and user in b.canonical
        assert verify(entries).ok

    def test_a_batch_links_to_the_rows_its_drafts_would(self) -> None:
        evs = [
            k8s_event(stage="RequestReceived", responseStatus=None),
            k8s_event(
                objectRef=None, requestURI="/healthz", stageTimestamp=None, requestReceivedTimestamp=None
            ),
            k8s_event(stageTimestamp="2025-03-01T09:00:00.5+01:00", user={"username": "zoë"}),
        ]
        batch = k8s_batch(event_list(*evs), received_at=T0)
        assert len(batch) == 3 and batch.drafts() == k8s_event_list_to_drafts(
            event_list(*evs), received_at=T0
        )
        head = ChainHead(7, "cd" * 32)
        values = AuditChain(Clock()).rows(head, batch)
        assert values == AuditChain(Clock()).rows(head, batch.drafts())
        rows = [dict(zip(ROW_COLUMNS, r, strict=True)) for r in values]
        assert [r["ts"] for r in rows] == [
            "2025-03-01T08:00:00.123456Z",
            "2025-03-01T08:00:00.000000Z",  # no time of its own: received_at
            "2025-03-01T08:00:00.500000Z",
        ]
        assert verify(
            (AuditEntry.from_row({**r, "detail": json.loads(r["detail"])}) for r in rows), start=head
        ).ok
        forged = K8sBatch(((("x" * (ACTOR_MAX + 1)), "get pods", "ok", {}, "2025-03-01T08:00:00.000000Z"),))
        with pytest.raises(AuditError):
            AuditChain(Clock()).rows(head, forged)

    def test_drafts_do_not_share_objects_with_the_payload(self) -> None:
        payload = event_list(k8s_event(annotations={"a": "1", "b": "2"}))
        [d] = k8s_event_list_to_drafts(payload, received_at=T0)
        ev = payload["items"][0]
        ev["sourceIPs"].append("6.6.6.6")
        ev["user"]["groups"].clear()
        ev["annotations"]["a"] = "changed"
        assert d.detail["sourceIPs"] == ["203.0.113.9", "10.0.0.2"]
        assert d.detail["groups"] == ["devs", "system:authenticated"]
        assert d.detail["annotations"] == {"a": "1", "b": "2"}

    def test_unsorted_annotations_are_stored_sorted(self) -> None:
        ev = k8s_event(annotations={"z": "1", "a": "2", "m": 3})
        [row] = AuditChain(Clock()).rows(None, k8s_batch(event_list(ev), received_at=T0))
        detail = row[ROW_COLUMNS.index("detail")]
        assert '"annotations":{"a":"2","z":"1"}' in detail and detail == canonical_json(json.loads(detail))

    def test_a_non_string_subresource_is_not_part_of_the_action(self) -> None:
        ref = {"resource": "deployments", "subresource": {"x": 1}, "namespace": "shop", "name": "web"}
        [d] = k8s_event_list_to_drafts(event_list(k8s_event(objectRef=ref)), received_at=T0)
        assert d.action == "patch deployments" and "subresource" not in d.detail["objectRef"]

    @pytest.mark.parametrize(
        "payload",
        [
            [],
            {"apiVersion": "audit.k8s.io/v1beta1", "kind": "EventList", "items": []},
            {"apiVersion": "audit.k8s.io/v1", "kind": "Event", "items": []},
            {"apiVersion": "audit.k8s.io/v1", "kind": "EventList"},
        ],
    )
    def test_wrong_envelope_is_refused(self, payload: Any) -> None:
        with pytest.raises(K8sAuditError):
            k8s_event_list_to_drafts(payload, received_at=T0)


def test_lone_surrogates_are_refused_on_write_and_reported_on_verify() -> None:
    with pytest.raises(AuditError):
        AuditChain(Clock()).append(None, EntryDraft(actor="a", action="x", detail={"s": "\ud800"}))
    entries, _, _ = build(3)
    entries[1] = dataclasses.replace(entries[1], canonical=entries[1].canonical.replace("ok", "\ud800"))
    assert (verify(entries).seq, verify(entries).problem) == (2, Problem.HASH_MISMATCH)
    assert verify_canonical(pairs(entries)).problem == Problem.HASH_MISMATCH
