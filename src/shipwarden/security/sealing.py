"""Sealed backup streams: compressed, encrypted in chunks, authenticated to the last byte (E6).

A backup can be bigger than memory, so it is sealed as a stream.  Each backup gets a
random 256-bit data key (DEK); the DEK itself is sealed with the installation's KEKs
by :class:`~shipwarden.security.envelope.Envelope` and stored *beside* the backup (the
``.key`` file), so rotating the KEK re-wraps 100 bytes per backup and never rewrites
the backup.  The payload is zlib-compressed, then cut into chunks of ``CHUNK`` bytes,
each sealed with AES-256-GCM under the DEK::

    "SWB1" | version (1) | chunk* ;  chunk = length (4, big-endian) | nonce (12) | ciphertext+tag

Each chunk's AAD is the backup's id, the chunk's index and a final-chunk flag, so
chunks cannot be reordered, moved into another backup, or dropped from the end
(a stream without its final chunk fails to read: :class:`SealedStreamError`).
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from typing import IO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shipwarden.security.envelope import DecryptionError, Envelope

__all__ = ["CHUNK", "SealedReader", "SealedStreamError", "SealedWriter", "new_data_key", "open_data_key",
           "seal_data_key"]  # fmt: skip

MAGIC = b"SWB1\x01"
CHUNK = 1 << 20
_NONCE = 12


class SealedStreamError(DecryptionError):
    """The stream is not a sealed backup, was altered or truncated, or its key does not open it."""


def _aad(context: bytes, index: int, final: bool) -> bytes:
    return context + struct.pack(">QB", index, 1 if final else 0)


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal_data_key(envelope: Envelope, dek: bytes, context: bytes) -> bytes:
    return envelope.encrypt(dek, b"shipwarden-backup-key:" + context)


def open_data_key(envelope: Envelope, blob: bytes, context: bytes) -> bytes:
    return envelope.decrypt(blob, b"shipwarden-backup-key:" + context)


class SealedWriter:
    """A write-only file object: ``write`` raw bytes, ``close`` to emit the final chunk.

    ``sha256`` and ``stored_size`` describe the bytes written to ``sink``; ``raw_size`` the input."""

    def __init__(self, sink: IO[bytes], dek: bytes, context: bytes, *, level: int = 3) -> None:
        self._sink = sink
        self._gcm = AESGCM(dek)
        self._context = context
        self._zip = zlib.compressobj(level)
        self._buf = bytearray()
        self._index = 0
        self._hash = hashlib.sha256()
        self.raw_size = 0
        self.stored_size = 0
        self.closed = False
        self._emit_raw(MAGIC)

    def _emit_raw(self, data: bytes) -> None:
        self._sink.write(data)
        self._hash.update(data)
        self.stored_size += len(data)

    def _emit_chunk(self, data: bytes, final: bool) -> None:
        nonce = os.urandom(_NONCE)
        ct = self._gcm.encrypt(nonce, data, _aad(self._context, self._index, final))
        self._emit_raw(struct.pack(">I", len(ct)) + nonce + ct)
        self._index += 1

    def write(self, data: bytes) -> int:
        if self.closed:
            raise ValueError("write to a closed SealedWriter")
        self.raw_size += len(data)
        self._buf += self._zip.compress(data)
        while len(self._buf) >= CHUNK:
            self._emit_chunk(bytes(self._buf[:CHUNK]), False)
            del self._buf[:CHUNK]
        return len(data)

    def flush(self) -> None:
        self._sink.flush()

    def close(self) -> None:
        if self.closed:
            return
        self._buf += self._zip.flush()
        while len(self._buf) > CHUNK:
            self._emit_chunk(bytes(self._buf[:CHUNK]), False)
            del self._buf[:CHUNK]
        self._emit_chunk(bytes(self._buf), True)
        self._buf.clear()
        self._sink.flush()
        self.closed = True

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class SealedReader:
    """A read-only file object over a sealed stream; every byte returned has been authenticated."""

    def __init__(self, source: IO[bytes], dek: bytes, context: bytes) -> None:
        self._src = source
        self._gcm = AESGCM(dek)
        self._context = context
        self._zip = zlib.decompressobj()
        self._out = bytearray()
        self._index = 0
        self._done = False
        if self._exact(len(MAGIC)) != MAGIC:
            raise SealedStreamError("not a sealed shipwarden backup")

    def _exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            part = self._src.read(n - len(data))
            if not part:
                break
            data += part
        return bytes(data)

    def _next(self) -> None:
        head = self._exact(4 + _NONCE)
        if len(head) < 4 + _NONCE:
            raise SealedStreamError("sealed backup is truncated: its final chunk is missing")
        (length,) = struct.unpack(">I", head[:4])
        if length > CHUNK + 64:
            raise SealedStreamError("sealed backup is corrupt: impossible chunk length")
        ct = self._exact(length)
        if len(ct) < length:
            raise SealedStreamError("sealed backup is truncated inside a chunk")
        for final in (False, True):
            try:
                plain = self._gcm.decrypt(head[4:], ct, _aad(self._context, self._index, final))
            except InvalidTag:
                continue
            self._index += 1
            try:
                self._out += self._zip.decompress(plain)
                if final:
                    self._out += self._zip.flush()
            except zlib.error as exc:
                raise SealedStreamError(f"sealed backup does not decompress: {exc}") from exc
            if final:
                self._done = True
                if self._src.read(1):
                    raise SealedStreamError("sealed backup has data after its final chunk")
            return
        raise SealedStreamError(
            f"sealed backup chunk {self._index} does not authenticate (altered or wrong key)"
        )

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._out) < n) and not self._done:
            self._next()
        if n < 0 or n >= len(self._out):
            data = bytes(self._out)
            self._out.clear()
            return data
        data = bytes(self._out[:n])
        del self._out[:n]
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._src.close()

    def __enter__(self) -> SealedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
