"""API tokens this process has verified against the store, kept briefly so a request with a known
token needs no database read to be authenticated (issue 9, class 12).

An entry is the principal a token authenticated as (its owner's roles and address allowlist,
the token's scopes) with the *access generation* it was read at: a counter the store bumps in
the transaction of every change that can alter a verdict (a token revoked; a user's roles,
allowlist, password, MFA or disabled flag changed).  A request judged from an entry carries that
generation to the group commit of its access entry, whose transaction reads the counter and
refuses a decision of another generation (``StaleAccess``); the request is then judged again
from the store.  So a revocation or a role change made by any process takes effect at once for
every request whose access entry is committed after it — and the read that checks it is one per
batch of requests, not one per request.

What is not cached or not trusted from the cache:

* an unknown, revoked or expired token, or one whose owner is disabled: never cached (each such
  request reads the store and is refused);
* expiry: checked against the entry's ``expires_at`` at every use;
* the client's address: the principal is stored without it and the allowlist is applied to each
  request's own address by ``authorize``;
* an entry older than ``max_age`` is read again (this also keeps the token's ``last_used_at``,
  written at most once per ``TOUCH_EVERY_S``, about as fresh as without the cache).

The process's view of the current generation (the last one read, or reported by a refused
commit) only decides which entries are worth using; the commit-time check is what guarantees a
stale one is never acted on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from shipwarden.services.access.principal import Principal

__all__ = ["VerifiedTokens"]


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    expires_at: float
    verified_at: float


class VerifiedTokens:
    """Principals of API tokens verified recently, by token hash (the plaintext is never kept)."""

    def __init__(self, max_age_s: float = 60.0, max_entries: int = 10_000) -> None:
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self._entries: dict[str, _Entry] = {}
        self._generation: int | None = None
        self._lock = threading.Lock()

    def get(self, token_hash: str, now: float) -> Principal | None:
        """The principal (with its generation, without an address) of a token verified at the
        generation last seen, less than ``max_age`` ago and not expired by ``now``; else None."""
        e = self._entries.get(token_hash)
        if e is None:
            return None
        if (
            e.principal.generation != self._generation
            or not 0 <= now - e.verified_at < self.max_age_s
            or now >= e.expires_at
        ):
            self._entries.pop(token_hash, None)
            return None
        return e.principal

    def put(self, token_hash: str, principal: Principal, expires_at: float, now: float) -> None:
        """Keep ``principal`` (verified from the store at ``principal.generation``) for ``token_hash``."""
        g = principal.generation
        if g is None:
            return
        with self._lock:
            if g != self._generation:  # the store moved (or this read raced one): start over at g
                self._entries.clear()
                self._generation = g
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[token_hash] = _Entry(principal, expires_at, now)

    def saw(self, generation: int | None) -> None:
        """The store's generation as a commit just read it (None: unknown, newer than some entry's)."""
        with self._lock:
            if generation is None or generation != self._generation:
                self._entries.clear()
            self._generation = generation

    def clear(self) -> None:
        """Forget every entry (this process changed access: its next requests read the store)."""
        with self._lock:
            self._entries.clear()
            self._generation = None
