"""What a deployable version may be called — one rule for every entry point.

A version travels far: it becomes part of instance ids and log file names, a directory under
``releases/`` (``workdir: releases/{version}``), a ``{version}`` in a command line, a label in
PromQL/NRQL queries, a line in the audit log.  So it is validated once, here, wherever it comes
from — ``shipwarden deploy --version``, ``POST /services/{s}/deployments``, or the version the
delivery pipeline derives from a merge commit — before anything is recorded:

* 1 to 128 characters from ``[A-Za-z0-9._+-]``, starting with a letter or a digit (so ``1.4.2``,
  ``v2-rc.1``, ``1.0+build.7``, ``3f9c2a1b4d5e`` — semver and git shas fit);
* no ``/`` or ``\\`` (it is one path segment), no ``..`` (never a way out of ``releases/``), no
  whitespace, quotes, braces or markup.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["MAX_VERSION_LENGTH", "VERSION_PATTERN", "InvalidVersion", "Version", "check_version"]

MAX_VERSION_LENGTH = 128
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$"
_VERSION = re.compile(VERSION_PATTERN)


class InvalidVersion(ValueError):
    """A version that breaks the rule above; the message says which part and why."""


def check_version(value: str) -> str:
    """``value`` if it is a valid version, else ``InvalidVersion`` with a precise message."""
    if not isinstance(value, str):
        raise InvalidVersion(f"a version is a string, not {type(value).__name__}")
    shown = repr(value if len(value) <= 60 else value[:59] + "…")
    if not value:
        raise InvalidVersion("the version is empty")
    if len(value) > MAX_VERSION_LENGTH:
        raise InvalidVersion(f"version {shown} is {len(value)} characters long; at most {MAX_VERSION_LENGTH}")
    if "/" in value or "\\" in value:
        raise InvalidVersion(f"version {shown} contains a path separator; a version is one path segment")
    if ".." in value:
        raise InvalidVersion(f"version {shown} contains '..'")
    if not _VERSION.fullmatch(value):
        bad = next((c for c in value if not (c.isascii() and (c.isalnum() or c in "._+-"))), None)
        what = f"character {bad!r} is not allowed" if bad else "it must start with a letter or digit"
        raise InvalidVersion(
            f"invalid version {shown}: {what} (use 1-{MAX_VERSION_LENGTH} characters A-Z a-z 0-9 . _ + -, "
            "starting with a letter or digit)"
        )
    return value


Version = Annotated[str, AfterValidator(check_version)]
"""A ``str`` field validated by :func:`check_version` (pydantic: a 422 with that message)."""
