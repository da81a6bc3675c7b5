"""Bounded JSON (depth, integer size, NaN, lone surrogates) and git's branch-name rules."""

from __future__ import annotations

import pytest

from shipwarden.domain.gitref import branch_problem
from shipwarden.domain.jsonlimits import JsonLimitError, loads_bounded


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
        (b"[" * 70 + b"]" * 70, "nested deeper"),
        (b'{"a": ' + b"9" * 5000 + b"}", "5000 digits"),
        (b"[9223372036854775808]", "outside the signed 64-bit range"),
        (b"[NaN]", "NaN"),
        (b"[1e999]", "out of range"),
        (b'["\\ud800"]', "lone surrogate"),
        (b"\xff", "not UTF-8"),
        (b"{x", "not JSON"),
    ],
)
def test_refused(body: bytes, why: str) -> None:
    with pytest.raises(JsonLimitError, match=why):
        loads_bounded(body)


def test_within_bounds() -> None:
    doc = loads_bounded(b'{"a": [-9223372036854775808, 9223372036854775807, 1.5, "\\ud83d\\ude00"]}')
    assert doc == {"a": [-(2**63), 2**63 - 1, 1.5, "\U0001f600"]}
    assert loads_bounded(b"[" * 64 + b"]" * 64) is not None


def test_syntax_error_says_where() -> None:
    with pytest.raises(JsonLimitError) as exc:
        loads_bounded(b'{\n  "a": }')
    assert (exc.value.line, exc.value.column) == (2, 8)


@pytest.mark.parametrize(
    "name",
    ["../x", "-x", "a..b", "a b", "a~b", "a^b", "a:b", "a?b", "a*b", "a[b", "a\\b", "a@{b", "@", "a/", "/a",
     "a//b", "a.", ".a", "a/.b", "a.lock", "a/b.lock/c", "a\x01b", "a\x7fb", "fix\u202etxt", "z\u200bw",
     "b" * 256, "", "HEAD"],
)  # fmt: skip
def test_branch_names_git_refuses(name: str) -> None:
    assert branch_problem(name) is not None


@pytest.mark.parametrize("name", ["main", "feature/ok", "fix-1.2", "user/jürgen/ünïcode", "a@b", "b" * 255])
def test_branch_names_git_accepts(name: str) -> None:
    assert branch_problem(name) is None
