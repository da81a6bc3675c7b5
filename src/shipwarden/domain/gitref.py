"""Branch and ref names as git accepts them (``git check-ref-format --branch``), plus shipwarden's bounds.

A branch name from a webhook or an upload ends up in the store, in audit entries, in ``git``
command lines and on operators' screens, so it is checked against git's own rules before any of
that happens (``git help check-ref-format``): no component starting with ``.`` or ending with
``.lock``, no ``..``, no ASCII control character, space, ``~ ^ : ? * [ \\``, no ``@{``, not ``@``,
no leading, trailing or doubled ``/``, no trailing ``.``; a branch also cannot start with ``-``.
Beyond git: no Unicode format characters (bidi overrides such as U+202E, zero-width joiners) or
other non-printable characters, which would make a name display as something it is not, and at
most ``MAX_REF_LENGTH`` characters (the ``changes.branch`` column holds 256).
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_REF_LENGTH", "branch_problem", "ref_problem"]

MAX_REF_LENGTH = 255
_FORBIDDEN = set(" ~^:?*[\\")


def ref_problem(name: str) -> str | None:
    """Why ``name`` is not a valid (full or short) git ref name, or ``None`` if it is one."""
    if not name:
        return "is empty"
    if len(name) > MAX_REF_LENGTH:
        return f"is {len(name)} characters long (the limit is {MAX_REF_LENGTH})"
    for ch in name:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            return "contains a control character"
        if ch in _FORBIDDEN:
            return f"contains {ch!r}"
        if ord(ch) > 0x7F and unicodedata.category(ch)[0] in "CZ":
            return f"contains the non-printable character U+{ord(ch):04X}"
    if name == "@":
        return "is '@'"
    if "@{" in name:
        return "contains '@{'"
    if ".." in name:
        return "contains '..'"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "has an empty path component"
    if name.endswith("."):
        return "ends with '.'"
    for part in name.split("/"):
        if part.startswith("."):
            return "has a component starting with '.'"
        if part.endswith(".lock"):
            return "has a component ending with '.lock'"
    return None


def branch_problem(name: str) -> str | None:
    """Why ``name`` is not a valid branch name, or ``None`` if it is one."""
    if name.startswith("-"):
        return "starts with '-'"
    if name == "HEAD":
        return "is 'HEAD'"
    return ref_problem(name)
