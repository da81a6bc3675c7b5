"""Ed25519 signing keys: generate, store as PEM, load, sign, verify, fingerprint.

One key signs audit checkpoints and deployment dossiers.  The private key lives
in a PKCS#8 PEM file readable by shipwarden only (written 0600, optionally
password-encrypted); the public key is a SubjectPublicKeyInfo PEM that auditors
can hold.  The fingerprint ``sha256:<hex>`` of the raw 32-byte public key names
the key in checkpoints and dossiers, so verifiers pick the right key after a
rotation.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "fingerprint",
    "generate_key",
    "load_private_key",
    "load_public_key",
    "public_pem",
    "save_private_key",
    "save_public_key",
    "sign",
    "verify",
    "write_new",
]


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """``sha256:`` + hex SHA-256 of the raw public key bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return public_key.public_bytes(serialization.Encoding.PEM, spki)


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (no window where the key is world-readable),
    complete or not at all: written under a private name, then linked into place, so processes
    starting together never read half a key; ``FileExistsError`` if another was first."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_private_key(key: Ed25519PrivateKey, path: Path | str, password: bytes | None = None) -> None:
    """Write a PKCS#8 PEM, mode 0600; refuses to overwrite an existing key."""
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    write_new(Path(path), pem, 0o600)


def save_public_key(public_key: Ed25519PublicKey, path: Path | str) -> None:
    write_new(Path(path), public_pem(public_key), 0o644)


def load_private_key(path: Path | str, password: bytes | None = None) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=password)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(source: Path | str | bytes) -> Ed25519PublicKey:
    """From a PEM file path or PEM bytes."""
    pem = source if isinstance(source, bytes) else Path(source).read_bytes()
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)


def verify(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True
