"""Small helpers for reading untrusted JSON with precise errors (JSON path of the bad value)."""

from __future__ import annotations

import json
from typing import Any

from shipwarden.domain.evidence.model import EvidenceError


def load_json(data: bytes | str, source: str) -> Any:
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise EvidenceError(f"not UTF-8 text (byte offset {exc.start})", source=source) from None
    else:
        text = data
    if not text.strip():
        raise EvidenceError("the report is empty", source=source, line=1)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"not valid JSON: {exc.msg}"
        raise EvidenceError(msg, source=source, line=exc.lineno, column=exc.colno) from None
    except RecursionError:
        raise EvidenceError("not valid JSON: nested too deeply", source=source) from None
    except ValueError as exc:  # e.g. an integer over sys.int_max_str_digits (was a 500)
        raise EvidenceError(f"not valid JSON: {exc}", source=source) from None


class JsonReader:
    """Typed accessors that raise ``EvidenceError`` naming the JSON path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: str, message: str) -> EvidenceError:
        return EvidenceError(message, source=self.source, path=path)

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(path, f"expected an object, got {_kind(value)}")
        return value

    def arr(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.error(path, f"expected an array, got {_kind(value)}")
        return value

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise self.error(path, f"expected a string, got {_kind(value)}")
        return value

    def number(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(path, f"expected a number, got {_kind(value)}")
        return float(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}
    return names.get(type(value), "an object" if isinstance(value, dict) else type(value).__name__)


def key_path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if key.isidentifier() else f'{parent}["{key}"]'
