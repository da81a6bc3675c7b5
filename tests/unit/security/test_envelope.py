"""Envelope encryption: round trip, tamper and AAD detection, KEK rotation and retirement."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from shipwarden.security.envelope import DecryptionError, Envelope, Keyring, generate_kek, load_kek_file

AAD = b"user:42:totp_secret"


def ring(*ids: str) -> Keyring:
    return Keyring({i: generate_kek() for i in ids}, ids[0])


def test_round_trip_and_fresh_nonces() -> None:
    env = Envelope(ring("k1"))
    for pt in (b"", b"s3cret", os.urandom(10_000)):
        assert env.decrypt(env.encrypt(pt, AAD), AAD) == pt
    a, b = env.encrypt(b"same", AAD), env.encrypt(b"same", AAD)
    assert a != b and b"same" not in a


def test_any_single_byte_change_fails() -> None:
    env = Envelope(ring("k1"))
    blob = env.encrypt(b"database password", AAD)
    for i in range(len(blob)):
        for flip in (0x01, 0x80):
            bad = bytearray(blob)
            bad[i] ^= flip
            with pytest.raises(DecryptionError):
                env.decrypt(bytes(bad), AAD)
    for cut in (blob[:-1], blob[:20], blob + b"\0", b"", b"SWE1"):
        with pytest.raises(DecryptionError):
            env.decrypt(cut, AAD)
    with pytest.raises(DecryptionError):
        Envelope.key_id(b"SWE1")


def test_wrong_aad_or_wrong_keyring_fails() -> None:
    env = Envelope(ring("k1"))
    blob = env.encrypt(b"x", AAD)
    with pytest.raises(DecryptionError):
        env.decrypt(blob, b"user:43:totp_secret")
    with pytest.raises(DecryptionError, match="not in the keyring"):
        Envelope(ring("k9")).decrypt(blob, AAD)
    with pytest.raises(DecryptionError):  # same id, different key material
        Envelope(ring("k1")).decrypt(blob, AAD)


def test_rotation_rewrap_and_retirement() -> None:
    old = ring("2024")
    blobs = [Envelope(old).encrypt(f"secret {i}".encode(), AAD) for i in range(5)]
    rotated = old.with_primary("2025", generate_kek())
    env = Envelope(rotated)
    assert all(env.decrypt(b, AAD).startswith(b"secret") for b in blobs)  # old blobs still readable
    new_blob = env.encrypt(b"new", AAD)
    assert Envelope.key_id(new_blob) == "2025"
    rewrapped = [env.rewrap(b) for b in blobs]
    for before, after in zip(blobs, rewrapped, strict=True):
        assert Envelope.key_id(after) == "2025"
        payload = 12 + len(b"secret 0") + 16  # nonce + ciphertext + tag
        assert before[-payload:] == after[-payload:]  # payload untouched: only the DEK was rewrapped
        assert before[:-payload] != after[:-payload]
    assert env.rewrap(rewrapped[0]) == rewrapped[0]
    retired = Envelope(rotated.without("2024"))
    assert [retired.decrypt(b, AAD) for b in rewrapped] == [f"secret {i}".encode() for i in range(5)]
    assert retired.decrypt(new_blob, AAD) == b"new"
    with pytest.raises(DecryptionError):
        retired.decrypt(blobs[0], AAD)  # not rewrapped: needs the retired key
    with pytest.raises(ValueError):
        rotated.without("2025")


def test_keyring_from_env_and_files(tmp_path: Path) -> None:
    k1, k2 = generate_kek(), generate_kek()
    spec = f"new:{base64.b64encode(k2).decode()}, old:{base64.b64encode(k1).decode()}"
    kr = Keyring.from_env(spec)
    assert kr.primary == "new" and kr.key_ids == {"new", "old"} and kr.key("old") == k1
    k1_b64 = base64.b64encode(k1).decode()
    for bad in ("", "nocolon", "k:" + base64.b64encode(b"short").decode(), "bad id!:" + k1_b64):
        with pytest.raises(ValueError):
            Keyring.from_env(bad)
    raw, b64 = tmp_path / "raw.key", tmp_path / "b64.key"
    raw.write_bytes(k1)
    b64.write_text(base64.b64encode(k2).decode() + "\n")
    for p in (raw, b64):
        p.chmod(0o600)
    kr = Keyring.from_files({"a": raw, "b": b64}, primary="b")
    assert kr.key("a") == k1 and kr.key("b") == k2
    b64.chmod(0o644)
    with pytest.raises(PermissionError):
        load_kek_file(b64)
    assert load_kek_file(b64, require_private=False) == k2
