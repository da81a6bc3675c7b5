"""The canonical encoding: the JSON text that is hashed, and the hash itself.

Canonical JSON is sorted keys at every depth, no insignificant whitespace, non-ASCII kept
(UTF-8 when hashed), ``NaN``/``Infinity`` refused (:func:`canonical_json`).  The faster
encoders here write exactly the same text for what they are given: ``_encode_object`` for
any entry detail, ``_encode_sorted_object`` for a detail already in sorted key order, which
the Kubernetes converter builds (:mod:`.kubernetes`) and :meth:`.chain.AuditChain.rows`
encodes.  The unit tests hold each of them to :func:`canonical_json` on generated input.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(obj: Any) -> str:
    """Encode ``obj`` canonically: sorted keys, no spaces, non-ASCII kept (UTF-8 when hashed), no NaN."""
    return _ENCODER.encode(obj)


def _make_object_encoder() -> Callable[[Any], str]:
    """``canonical_json`` for JSON objects (entry details), minus the per-call set-up.

    ``JSONEncoder.encode`` builds a fresh C encoder on every call and tracks containers to
    refuse circular references; on the ingest path that overhead is a fifth of encoding a
    Kubernetes event's detail.  This is the same C encoder, with the same settings, built
    once; a circular structure ends in ``RecursionError`` instead of ``ValueError``.  Falls
    back to ``canonical_json`` where the C accelerator is missing or disagrees on a sample."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return canonical_json
    enc = make(None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", True, False, False)

    def encode_object(obj: Any) -> str:
        return "".join(enc(obj, 0))

    sample = {"z": [1, 2.5, None, True], "é": {"b": '\u2028"\n', "a": -0.0}, "1": 10**20}
    return encode_object if encode_object(sample) == canonical_json(sample) else canonical_json


_encode_object = _make_object_encoder()


def _make_sorted_object_encoder() -> Callable[[Any], str]:
    """``canonical_json`` for a JSON object whose every dict is already in sorted key order and
    that holds only str, int, bool, None, lists and such dicts — the Kubernetes converter builds
    its details so (:func:`.kubernetes._k8s_event`).  pydantic_core's encoder (Rust, a pinned
    dependency) writes it in about half the time of the stdlib's C encoder; it keeps key order,
    escapes exactly as ``json`` does with ``ensure_ascii=False`` and refuses lone surrogates.  It is
    used only if it agrees with ``canonical_json`` on a sample that exercises all of that (the unit
    tests hold the two together on generated input); otherwise this is ``_encode_object``."""
    try:
        from pydantic_core import PydanticSerializationError, to_json
    except ImportError:  # pragma: no cover - pydantic is a dependency
        return _encode_object

    def encode_sorted(obj: Any) -> str:
        try:
            return to_json(obj).decode()
        except PydanticSerializationError as exc:  # e.g. a lone surrogate: what json would refuse
            raise ValueError(str(exc)) from None

    sample = {
        "": None,
        "a": ['"\\/\b\f\n\r\t\x00\x1f\x7f', "é\u2028\u2029\ufeff😀", "", True, False],
        "b": {"k": -(10**30), "l": [[], {}, 0, 2**63]},
        "é": "\u00e9 text",
    }
    try:
        agrees = encode_sorted(sample) == canonical_json(sample)
    except ValueError:  # pragma: no cover
        agrees = False
    return encode_sorted if agrees else _encode_object


_encode_sorted_object = _make_sorted_object_encoder()


def entry_hash(canonical: str) -> str:
    """The chain hash of one entry: hex sha256 of its canonical text's UTF-8 bytes.

    Text that is not valid Unicode (a lone surrogate) hashes to ``""``, which matches no
    stored hash: :func:`make_entry` refuses such text, so only tampering can produce it.
    """
    try:
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    except UnicodeEncodeError:
        return ""


_json_str = json.encoder.encode_basestring
"""The string encoder ``_ENCODER`` uses (``ensure_ascii=False``): the same bytes for every str."""
