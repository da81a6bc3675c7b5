"""Bounded JSON for untrusted request bodies: depth, integer size and non-standard constants.

Python's ``json`` is the parser (C speed, exact errors), with three bounds added because an
unbounded document turns into a 5xx or a half-written row further down:

* **integers** are refused as soon as the scanner hands over their digits (``parse_int``), before
  ``int()`` runs: more than ``max_int_digits`` digits, or a value outside the signed 64-bit range
  every integer column of the store can hold.  Without it a 5,000-digit integer raised
  ``ValueError`` (``sys.int_max_str_digits``) from inside the parser, and a 20-digit one went
  through to a ``BIGINT``/``INTEGER`` column and overflowed there.
* **depth**: the C scanner recurses once per nesting level, so a body nested 100,000 deep raises
  ``RecursionError`` after about a thousand levels (cheaply: it stops there); that is caught, and
  a parsed document is then walked iteratively to refuse anything deeper than ``max_depth``.
* a ``\\uD800``-style escape that leaves a lone surrogate is valid JSON text but not Unicode: the
  store cannot encode it (a 5xx on write), so it is refused.
* ``NaN``/``Infinity`` are not JSON (RFC 8259) and PostgreSQL's ``json`` refuses them: refused,
  and so is a float literal too large for a double (``1e999`` would become ``inf``).

Every refusal is ``JsonLimitError`` (a ``ValueError``) with a message that says which bound.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["INT64_MAX", "INT64_MIN", "JsonLimitError", "check_depth", "loads_bounded"]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


class JsonLimitError(ValueError):
    """The body is not JSON, or is JSON beyond one of the bounds; ``str()`` says which (and where,
    for a syntax error: ``line``/``column``, 1-based)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.message, self.line, self.column = message, line, column
        where = f" at line {line} column {column}" if line is not None else ""
        super().__init__(message + where)


def _parse_int(max_digits: int) -> Any:
    def parse(text: str) -> int:
        digits = len(text) - (text[0] == "-")
        if digits > max_digits:
            raise JsonLimitError(f"integer with {digits} digits (the limit is {max_digits})")
        value = int(text)
        if not INT64_MIN <= value <= INT64_MAX:
            raise JsonLimitError(f"integer {text} is outside the signed 64-bit range")
        return value

    return parse


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonLimitError(f"number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise JsonLimitError(f"{name} is not a JSON number")


_SURROGATE_ESCAPE = re.compile(r"\\[uU][dD][89a-fA-F]")


def _lone_surrogates(doc: Any) -> bool:
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def check_depth(doc: Any, max_depth: int) -> None:
    """Raise ``JsonLimitError`` if ``doc`` nests objects/arrays deeper than ``max_depth``."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise JsonLimitError(f"nested deeper than {max_depth} levels")
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


def loads_bounded(data: bytes | str, *, max_depth: int = 64, max_int_digits: int = 19) -> Any:
    """``json.loads`` with the bounds above; raises ``JsonLimitError`` (never anything else)."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonLimitError(f"not UTF-8 (byte offset {exc.start})") from None
    else:
        text = data
    try:
        doc = json.loads(
            text, parse_int=_parse_int(max_int_digits), parse_float=_parse_float, parse_constant=_no_constant
        )
    except JsonLimitError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonLimitError(f"not JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except RecursionError:
        raise JsonLimitError(f"nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # e.g. a float literal the scanner cannot convert
        raise JsonLimitError(f"not JSON: {exc}") from None
    check_depth(doc, max_depth)
    if _SURROGATE_ESCAPE.search(text) and _lone_surrogates(doc):
        raise JsonLimitError("a \\u escape leaves a lone surrogate (not Unicode text)")
    return doc
