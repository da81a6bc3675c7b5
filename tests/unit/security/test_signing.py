"""Ed25519 keys on disk, signatures, fingerprints."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from shipwarden.security.signing import (
    fingerprint,
    generate_key,
    load_private_key,
    load_public_key,
    public_pem,
    save_private_key,
    save_public_key,
    sign,
    verify,
)


def test_pem_round_trip_with_private_permissions(tmp_path: Path) -> None:
    key = generate_key()
    save_private_key(key, tmp_path / "k.pem", password=b"pw")
    save_public_key(key.public_key(), tmp_path / "k.pub")
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    assert b"ENCRYPTED" in (tmp_path / "k.pem").read_bytes()
    loaded = load_private_key(tmp_path / "k.pem", password=b"pw")
    pub = load_public_key(tmp_path / "k.pub")
    sig = sign(loaded, b"hello")
    assert verify(pub, sig, b"hello") and not verify(pub, sig, b"hellO")
    assert fingerprint(pub) == fingerprint(key.public_key()) != fingerprint(generate_key().public_key())
    assert fingerprint(pub).startswith("sha256:") and len(fingerprint(pub)) == 7 + 64
    assert load_public_key(public_pem(pub)) == pub
    with pytest.raises(FileExistsError):
        save_private_key(key, tmp_path / "k.pem")
    with pytest.raises((TypeError, ValueError)):
        load_private_key(tmp_path / "k.pem", password=b"wrong")
