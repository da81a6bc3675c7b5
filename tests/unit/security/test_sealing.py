"""Sealed backup streams: round trip across chunks; truncation, reordering and a wrong key fail."""

from __future__ import annotations

import io
import os

import pytest

from shipwarden.security.sealing import CHUNK, SealedReader, SealedStreamError, SealedWriter, new_data_key


def _seal(data: bytes, key: bytes, ctx: bytes = b"b-1") -> bytes:
    out = io.BytesIO()
    w = SealedWriter(out, key, ctx, level=0)
    for i in range(0, len(data), 100_000):
        w.write(data[i : i + 100_000])
    w.close()
    assert w.raw_size == len(data) and w.stored_size == len(out.getvalue())
    return out.getvalue()


def test_round_trip_many_chunks() -> None:
    key = new_data_key()
    data = os.urandom(CHUNK * 2 + 12345)  # incompressible: three chunks
    sealed = _seal(data, key)
    r = SealedReader(io.BytesIO(sealed), key, b"b-1")
    assert r.read(10) + r.read() == data


def test_empty() -> None:
    key = new_data_key()
    assert SealedReader(io.BytesIO(_seal(b"", key)), key, b"b-1").read() == b""


@pytest.mark.parametrize(
    "cut", ["truncate", "drop-last", "wrong-key", "wrong-context", "bitflip", "trailing"]
)
def test_damage_is_detected(cut: str) -> None:
    key = new_data_key()
    sealed = _seal(os.urandom(CHUNK + 1000), key)
    ctx = b"b-1"
    if cut == "truncate":
        sealed = sealed[:-1]
    elif cut == "drop-last":
        first_len = int.from_bytes(sealed[5:9], "big")
        sealed = sealed[: 5 + 4 + 12 + first_len]
    elif cut == "wrong-key":
        key = new_data_key()
    elif cut == "wrong-context":
        ctx = b"b-2"
    elif cut == "bitflip":
        sealed = sealed[:100] + bytes([sealed[100] ^ 1]) + sealed[101:]
    else:
        sealed += b"x"
    with pytest.raises(SealedStreamError):
        SealedReader(io.BytesIO(sealed), key, ctx).read()
