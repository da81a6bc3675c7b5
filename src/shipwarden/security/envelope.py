"""Envelope encryption for secrets and sensitive records at rest (E6).

Each value gets its own random 256-bit *data key* (DEK) and is sealed with
AES-256-GCM; the DEK is then sealed ("wrapped") with a *key-encryption key*
(KEK) that never touches the database — it comes from a file or an environment
variable.  Rotating the KEK therefore never re-encrypts payloads:
:meth:`Envelope.rewrap` opens only the 48-byte wrapped DEK with the old KEK and
seals it with the new one, leaving the payload ciphertext byte-for-byte the same.
Once every blob is rewrapped, the old KEK can be dropped from the keyring.

Blob layout (all lengths in bytes)::

    "SWE1" | kid_len (1) | kid (utf-8) | wrap_nonce (12) | wrapped_dek (48) | nonce (12) | ciphertext+tag

The wrapped DEK is authenticated together with the header (magic and KEK id), so
a wrapped key cannot be moved under another id; the payload is authenticated
with the caller's AAD (e.g. ``b"user:42:totp_secret"``), so a ciphertext copied
into another row or column does not decrypt.  Every byte is covered by one of
the two GCM tags: any change fails with :class:`DecryptionError`, which never
says which part failed.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["DecryptionError", "Envelope", "Keyring", "generate_kek", "load_kek_file"]

MAGIC = b"SWE1"
KEY_BYTES = 32
NONCE_BYTES = 12
WRAPPED_BYTES = KEY_BYTES + 16
_KID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class DecryptionError(ValueError):
    """The blob is malformed, was altered, has the wrong AAD, or its KEK is not in the keyring."""


def generate_kek() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _decode_key(data: bytes, where: str) -> bytes:
    if len(data) == KEY_BYTES:
        return data
    try:
        key = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"{where}: a KEK is 32 raw bytes or their base64 text")
    return key


def load_kek_file(path: Path | str, *, require_private: bool = True) -> bytes:
    """Read a KEK from ``path`` (32 raw bytes or base64).

    Like ssh with private keys, a file readable by group or others is refused
    unless ``require_private=False``.
    """
    p = Path(path)
    if require_private and p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(f"{p}: key file must not be accessible to group/others (chmod 600)")
    return _decode_key(p.read_bytes(), str(p))


class Keyring:
    """KEKs by id; ``primary`` wraps new data keys, the others are kept to read older blobs."""

    def __init__(self, keys: Mapping[str, bytes], primary: str) -> None:
        if primary not in keys:
            raise ValueError(f"primary KEK {primary!r} is not in the keyring")
        for kid, key in keys.items():
            if not _KID.match(kid):
                raise ValueError(f"KEK id {kid!r}: use 1-64 of A-Z a-z 0-9 . _ -")
            if len(key) != KEY_BYTES:
                raise ValueError(f"KEK {kid!r} must be {KEY_BYTES} bytes")
        self._keys = dict(keys)
        self.primary = primary

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def key(self, kid: str) -> bytes | None:
        return self._keys.get(kid)

    def with_primary(self, kid: str, key: bytes) -> Keyring:
        """Rotation step 1: add a new KEK and make it primary; the old ones stay for reading."""
        return Keyring({**self._keys, kid: key}, kid)

    def without(self, kid: str) -> Keyring:
        """Rotation step 3 (after rewrapping everything): retire an old KEK."""
        if kid == self.primary:
            raise ValueError("cannot retire the primary KEK; rotate first")
        return Keyring({k: v for k, v in self._keys.items() if k != kid}, self.primary)

    @classmethod
    def from_env(cls, value: str) -> Keyring:
        """Parse ``"id1:BASE64,id2:BASE64"`` (e.g. ``$SHIPWARDEN_KEKS``); the first is primary."""
        keys: dict[str, bytes] = {}
        for n, part in enumerate(p.strip() for p in value.split(",") if p.strip()):
            kid, sep, b64 = part.partition(":")
            if not sep:
                raise ValueError(f"KEK entry {n + 1}: expected id:base64")
            keys[kid.strip()] = _decode_key(b64.encode(), f"KEK {kid.strip()!r}")
        if not keys:
            raise ValueError("no KEK configured")
        return cls(keys, next(iter(keys)))

    @classmethod
    def from_files(
        cls, files: Mapping[str, Path | str], primary: str, *, require_private: bool = True
    ) -> Keyring:
        """KEKs from files, by id."""
        keys = {kid: load_kek_file(p, require_private=require_private) for kid, p in files.items()}
        return cls(keys, primary)


class Envelope:
    """Encrypt/decrypt/rewrap with a :class:`Keyring`."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def _header(self, kid: str) -> bytes:
        raw = kid.encode()
        return MAGIC + bytes([len(raw)]) + raw

    def _wrap(self, dek: bytes) -> bytes:
        header = self._header(self.keyring.primary)
        kek = self.keyring.key(self.keyring.primary)
        assert kek is not None
        nonce = os.urandom(NONCE_BYTES)
        return header + nonce + AESGCM(kek).encrypt(nonce, dek, header)

    def _parse(self, blob: bytes) -> tuple[str, bytes, bytes]:
        """(kid, dek, rest after the wrapped key) — or DecryptionError."""
        if not isinstance(blob, bytes | bytearray) or len(blob) < 5 or blob[:4] != MAGIC:
            raise DecryptionError("not a shipwarden envelope")
        n = blob[4]
        end = 5 + n + NONCE_BYTES + WRAPPED_BYTES
        if n == 0 or len(blob) < end + NONCE_BYTES + 16:
            raise DecryptionError("truncated envelope")
        header = bytes(blob[: 5 + n])
        try:
            kid = header[5:].decode()
        except UnicodeDecodeError as exc:
            raise DecryptionError("invalid envelope") from exc
        kek = self.keyring.key(kid)
        if kek is None:
            raise DecryptionError(f"envelope was sealed with KEK {kid!r}, which is not in the keyring")
        wnonce = bytes(blob[5 + n : 5 + n + NONCE_BYTES])
        try:
            dek = AESGCM(kek).decrypt(wnonce, bytes(blob[5 + n + NONCE_BYTES : end]), header)
        except InvalidTag as exc:
            raise DecryptionError("envelope does not authenticate") from exc
        return kid, dek, bytes(blob[end:])

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        """Seal ``plaintext`` under a fresh data key; ``aad`` must be given again to decrypt."""
        dek = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(NONCE_BYTES)
        return self._wrap(dek) + nonce + AESGCM(dek).encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        _, dek, rest = self._parse(blob)
        try:
            return AESGCM(dek).decrypt(rest[:NONCE_BYTES], rest[NONCE_BYTES:], aad)
        except InvalidTag as exc:
            raise DecryptionError("envelope does not authenticate") from exc

    def rewrap(self, blob: bytes) -> bytes:
        """Re-seal the data key under the primary KEK; the payload ciphertext is kept as is."""
        kid, dek, rest = self._parse(blob)
        if kid == self.keyring.primary:
            return bytes(blob)
        return self._wrap(dek) + rest

    @staticmethod
    def key_id(blob: bytes) -> str:
        """The KEK id a blob is wrapped with (to find blobs still needing a rewrap)."""
        if len(blob) < 5 or blob[:4] != MAGIC or len(blob) < 5 + blob[4]:
            raise DecryptionError("not a shipwarden envelope")
        return bytes(blob[5 : 5 + blob[4]]).decode(errors="replace")
