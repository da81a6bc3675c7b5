"""Argon2id password hashing with OWASP parameters."""

from __future__ import annotations

import pytest

from shipwarden.security.passwords import ARGON2_PREFIX, hash_password, needs_rehash, verify_password


def test_hash_is_argon2id_with_owasp_parameters_and_random_salt() -> None:
    h1, h2 = hash_password("correct horse"), hash_password("correct horse")
    assert h1.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert ARGON2_PREFIX == "$argon2id$v=19$m=19456,t=2,p=1$"
    assert h1 != h2  # salted
    assert not needs_rehash(h1)


def test_verify() -> None:
    h = hash_password("correct horse ✓")
    assert verify_password(h, "correct horse ✓")
    assert not verify_password(h, "correct horse")
    assert not verify_password(h, "")
    assert not verify_password("not-a-hash", "x")


def test_unknown_user_fails_after_the_same_work() -> None:
    assert not verify_password(None, "anything")


def test_weaker_old_hashes_need_rehash() -> None:
    from argon2 import PasswordHasher
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("pw")
    assert verify_password(old, "pw") and needs_rehash(old)


@pytest.mark.parametrize("bad", ["", "x" * 5000])
def test_refuses_empty_and_huge_passwords(bad: str) -> None:
    with pytest.raises(ValueError):
        hash_password(bad)
