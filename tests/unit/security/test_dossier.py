"""Signed deployment dossiers verify offline with the public key, and any changed byte fails."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shipwarden.domain.audit import AuditChain, AuditEntry, EntryDraft
from shipwarden.security.dossier import DossierError, build_dossier, verify_dossier
from shipwarden.security.signing import fingerprint, generate_key, public_pem

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY = generate_key()
RECORD = {"id": "d-42", "service": "checkout", "commit": "9f1c2e7", "pipeline": "circleci/123",
          "approvals": [{"by": "rm@example.com", "role": "release-manager"}],
          "policy_version": "sha256:ab12", "outcome": "promoted", "notes": "ünïcødé ok",
          "steps": [{"phase": "canary", "weight": 10, "analysis": {"error_rate": 0.001}}]}


def chain_for(dep: str = "d-42") -> tuple[list[AuditEntry], AuditChain]:
    ticks = iter(range(10_000))
    chain = AuditChain(lambda: NOW + timedelta(seconds=next(ticks)))
    out, prev = [], None
    for i in range(6):
        prev = chain.append(prev, EntryDraft(actor="sw", action=f"rollout.step{i}", service="checkout",
                                             deployment_id=dep if i % 2 == 0 else "d-other"))
        out.append(prev)
    return out, chain


def make(entries: list[AuditEntry] | None = None) -> bytes:
    all_entries, chain = chain_for()
    mine = [e for e in all_entries if e.deployment_id == "d-42"] if entries is None else entries
    cp = chain.checkpoint(all_entries[-1], KEY, fingerprint(KEY.public_key()))
    return build_dossier("d-42", RECORD, mine, cp, KEY, NOW)


def test_verifies_offline_with_the_public_key_alone() -> None:
    blob = make()
    d = verify_dossier(blob, public_pem(KEY.public_key()))
    assert d.record == RECORD and d.deployment_id == "d-42"
    assert [e["seq"] for e in d.entries] == [1, 3, 5]
    assert d.checkpoint is not None and d.checkpoint.seq == 6
    doc = json.loads(blob)
    assert set(doc) == {"format", "created_at", "deployment_id", "record", "audit", "key_fingerprint",
                        "signature"}


def test_any_single_byte_change_fails() -> None:
    blob = make()
    pub = KEY.public_key()
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] = (bad[i] + 1) % 256
        with pytest.raises(DossierError):
            verify_dossier(bytes(bad), pub)
    with pytest.raises(DossierError):
        verify_dossier(blob + b"\n", pub)


def test_other_key_fails() -> None:
    with pytest.raises(DossierError, match="not by the given key"):
        verify_dossier(make(), generate_key().public_key())


def test_resigned_tampering_is_still_caught_by_the_proof() -> None:
    # Someone holding the key cannot smuggle in an entry whose hash does not match its text...
    entries, _ = chain_for()
    doc = json.loads(make())
    doc["audit"]["entries"][0]["canonical"] = entries[0].canonical.replace("rollout.step0", "rollout.stepX")
    with pytest.raises(DossierError, match="hash does not match"):
        _resign_and_verify(doc)
    # ...nor another deployment's entry
    with pytest.raises(DossierError, match="belongs to deployment"):
        build_dossier("d-42", RECORD, [entries[1]], None, KEY, NOW)


def _resign_and_verify(doc: dict[str, object]) -> None:
    from shipwarden.domain.audit import canonical_json
    doc.pop("signature")
    doc["signature"] = KEY.sign(canonical_json(doc).encode()).hex()
    verify_dossier(canonical_json(doc).encode(), KEY.public_key())


def test_checkpoint_must_cover_the_entries() -> None:
    entries, chain = chain_for()
    cp = chain.checkpoint(entries[1], KEY, fingerprint(KEY.public_key()))
    with pytest.raises(DossierError, match="does not cover"):
        build_dossier("d-42", RECORD, [entries[0], entries[2]], cp, KEY, NOW)


def test_checkpoint_signed_by_a_rotated_out_key() -> None:
    entries, chain = chain_for()
    old = generate_key()
    old_id = fingerprint(old.public_key())
    cp = chain.checkpoint(entries[-1], old, old_id)
    mine = [e for e in entries if e.deployment_id == "d-42"]
    with pytest.raises(DossierError, match="unknown key"):
        build_dossier("d-42", RECORD, mine, cp, KEY, NOW)
    blob = build_dossier("d-42", RECORD, mine, cp, KEY, NOW, checkpoint_keys={old_id: old.public_key()})
    with pytest.raises(DossierError, match="unknown key"):
        verify_dossier(blob, KEY.public_key())
    d = verify_dossier(blob, KEY.public_key(), checkpoint_keys={old_id: old.public_key()})
    assert d.checkpoint is not None and d.checkpoint.key_id == old_id
