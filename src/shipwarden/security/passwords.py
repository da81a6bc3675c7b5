"""Password hashing: Argon2id with OWASP's minimum parameters (m=19456 KiB, t=2, p=1).

Argon2id is memory-hard, so a GPU farm guessing leaked hashes pays for memory,
not just arithmetic.  The parameters live in the PHC string
(``$argon2id$v=19$m=19456,t=2,p=1$salt$hash``), so raising them later only means
rehashing on the next successful login (:func:`needs_rehash`).

Unknown users are checked against a dummy hash, so a login for a name that does
not exist takes as long as one with a wrong password and reveals nothing.
"""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["ARGON2_PREFIX", "hash_password", "needs_rehash", "verify_password"]

MEMORY_KIB = 19456
TIME_COST = 2
PARALLELISM = 1
ARGON2_PREFIX = f"$argon2id$v=19$m={MEMORY_KIB},t={TIME_COST},p={PARALLELISM}$"
MAX_PASSWORD_BYTES = 4096  # argon2 has no limit; this one bounds the work an anonymous request can cause

_HASHER = PasswordHasher(
    time_cost=TIME_COST,
    memory_cost=MEMORY_KIB,
    parallelism=PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)


def _checked(password: str) -> str:
    if not isinstance(password, str) or not password:
        raise ValueError("password must be a non-empty string")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise ValueError(f"password longer than {MAX_PASSWORD_BYTES} bytes")
    return password


def hash_password(password: str) -> str:
    """PHC-format Argon2id hash with a fresh random salt."""
    return _HASHER.hash(_checked(password))


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _HASHER.hash("shipwarden-dummy-password")


def verify_password(stored: str | None, password: str) -> bool:
    """True iff ``password`` matches ``stored``.  ``stored=None`` (no such user) costs the same and fails."""
    if not isinstance(password, str) or not password or len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        return False
    try:
        ok = _HASHER.verify(stored or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and stored is not None


def needs_rehash(stored: str) -> bool:
    """True when ``stored`` was made with other parameters than today's: rehash after a good login."""
    return _HASHER.check_needs_rehash(stored)
