"""Throttling of password and second-factor guesses, per account and per source address.

Failed attempts are counted under two keys, ``<kind>:<user>`` (``kind`` is ``user`` for password
logins, ``mfa`` for TOTP and recovery codes) and ``ip:<address>``; the decision over each window
is ``domain.access.lockout_decision``.  A refusal is audited as ``locked``, a failure as ``denied``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from shipwarden.domain.access import lockout_decision
from shipwarden.services.access.core import AccessCore
from shipwarden.services.access.errors import LoginThrottled


def _times(stamps: Iterable[float]) -> list[datetime]:
    return [datetime.fromtimestamp(t, tz=UTC) for t in stamps]


def _action(kind: str) -> str:
    return f"auth.{'login' if kind == 'user' else 'mfa'}"


class Lockout(AccessCore):
    """Counts failed attempts and refuses further ones while an account or address is locked."""

    def _throttle(self, name: str, ip: str, now: datetime, ts: float, kind: str = "user") -> None:
        cfg = self.config
        acct = lockout_decision(
            _times(self.repo.failures(f"{kind}:{name}", ts - cfg.account_lockout.window.total_seconds())),
            now,
            cfg.account_lockout,
        )
        addr = lockout_decision(
            _times(self.repo.failures(f"ip:{ip}", ts - cfg.address_lockout.window.total_seconds())),
            now,
            cfg.address_lockout,
        )
        for d, account, what in ((acct, True, f"account {name!r}"), (addr, False, f"address {ip}")):
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

    def _record_failure(
        self, name: str, ip: str, ts: float, reason: str, *, kind: str = "user", actor: str | None = None
    ) -> None:
        """Count a failed attempt against the account and the address, and audit it as denied."""
        self.repo.add_failure([f"{kind}:{name}", f"ip:{ip}"], ts)
        self.store.audit(
            actor=name if actor is None else actor,
            action=_action(kind),
            outcome="denied",
            detail={"ip": ip, "reason": reason},
        )

    def _clear_failures(self, name: str, kind: str = "user") -> None:
        """A success forgives the account's failures (the address keeps its count)."""
        self.repo.clear_failures(f"{kind}:{name}")
