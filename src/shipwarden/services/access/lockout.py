"""Throttling of password and second-factor guesses, per account and per source address.

Attempts are counted under two keys, ``<kind>:<user>`` (``kind`` is ``user`` for password logins,
``mfa`` for TOTP and recovery codes) and ``ip:<address>``; the decision over each window is
``domain.access.lockout_decision``.

The check and the count are one atomic step: :meth:`Lockout.reserve` asks the store to lock both
keys, judge their recent attempts and — if allowed — record this attempt, all *before* the
credential is looked at.  Concurrent guesses therefore queue on the keys and each sees the ones
before it: no more than the lockout rule allows are ever checked, however they arrive (from one
address or many; the account key counts them all).  A failed attempt simply keeps its record; a
successful one releases it (and forgives the account's earlier failures).  A refusal is audited as
``locked``, a failure as ``denied``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from shipwarden.domain.access import LockoutDecision, LockoutPolicy, lockout_decision
from shipwarden.ports.access import AttemptLedger, Audited
from shipwarden.services.access.errors import LoginThrottled


def _times(stamps: Iterable[float]) -> list[datetime]:
    return [datetime.fromtimestamp(t, tz=UTC) for t in stamps]


def _action(kind: str) -> str:
    return f"auth.{'login' if kind == 'user' else 'mfa'}"


@dataclass(frozen=True)
class Attempt:
    """One admitted attempt, recorded before its credential is checked."""

    name: str
    ip: str
    kind: str
    ids: tuple[int, ...]


class Lockout:
    """Admits attempts one at a time per key and refuses them while an account or address is locked
    (a service of its own: ``AccessService``'s logins and second factors call it)."""

    def __init__(
        self,
        ledger: AttemptLedger,
        audit: Audited,
        clock: Callable[[], datetime],
        *,
        account: LockoutPolicy,
        address: LockoutPolicy,
    ) -> None:
        self.ledger, self.store, self.clock = ledger, audit, clock
        self.account, self.address = account, address

    def reserve(self, name: str, ip: str, kind: str = "user") -> Attempt:
        """Admit and record one attempt for ``name`` from ``ip``, or raise :class:`LoginThrottled`."""
        acct_key, addr_key = f"{kind}:{name}", f"ip:{ip}"
        decided: dict[str, LockoutDecision] = {}
        ts = self.clock().timestamp()

        def admit(history: Mapping[str, list[float]]) -> float | None:
            # The time is read under the lock, and never before an attempt already recorded (by a
            # server whose clock is ahead): otherwise that attempt would look "future" and not count.
            t = max([self.clock().timestamp(), *history[acct_key], *history[addr_key]])
            now = datetime.fromtimestamp(t, tz=UTC)
            decided["acct"] = lockout_decision(_times(history[acct_key]), now, self.account)
            decided["addr"] = lockout_decision(_times(history[addr_key]), now, self.address)
            return t if decided["acct"].allowed and decided["addr"].allowed else None

        ids = self.ledger.reserve_attempt(
            {
                acct_key: ts - self.account.window.total_seconds(),
                addr_key: ts - self.address.window.total_seconds(),
            },
            admit,
        )
        if ids is not None:
            return Attempt(name, ip, kind, tuple(ids))
        for d, account, what in (
            (decided["acct"], True, f"account {name!r}"),
            (decided["addr"], False, f"address {ip}"),
        ):
            if not d.allowed:
                secs = max(1, int(d.retry_after.total_seconds() + 0.999))
                self.store.audit(
                    actor=name,
                    action=_action(kind),
                    outcome="locked",
                    detail={"ip": ip, "failures": d.failures, "retry_after_s": secs, "locked": what},
                )
                raise LoginThrottled(
                    f"too many failed attempts for {what}: try again in {secs} s",
                    d.retry_after,
                    account=account,
                )
        raise AssertionError("refused without a refusing decision")  # pragma: no cover

    def record_failure(self, attempt: Attempt, reason: str, *, actor: str | None = None) -> None:
        """The attempt failed: its record stays (it counts), and it is audited as denied."""
        self.store.audit(
            actor=attempt.name if actor is None else actor,
            action=_action(attempt.kind),
            outcome="denied",
            detail={"ip": attempt.ip, "reason": reason},
        )

    def succeeded(self, attempt: Attempt) -> None:
        """The attempt succeeded: drop its record, and forgive the account's failures (the
        address keeps the count of its failures)."""
        self.ledger.release_attempt(attempt.ids, clear=f"{attempt.kind}:{attempt.name}")
