"""Named secrets (webhook secrets, provider API keys, notifier URLs) and KEK rotation (E6).

Each value is an envelope (``security.envelope``) bound to its name; rotation re-wraps the data
keys of every sealed blob in the store (named secrets and TOTP secrets alike) under the primary KEK.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from shipwarden.ports.access import Audited, SecretRows
from shipwarden.security.envelope import DecryptionError, Envelope
from shipwarden.services.access.errors import InvalidInput, NotFoundError


class SecretStore:
    """Stores, reads and lists named secrets, and rotates the keys that seal them (a service of its
    own: what reads a provider key or a notifier URL needs no user, session or token)."""

    def __init__(
        self,
        rows: SecretRows,
        envelope: Envelope,
        audit: Audited,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repo, self.envelope, self.store, self.clock = rows, envelope, audit, clock

    @staticmethod
    def _secret_aad(name: str) -> bytes:
        return f"secret:{name}".encode()

    def put_secret(self, actor: str, name: str, value: str) -> None:
        if not name or len(name) > 128:
            raise InvalidInput("secret name must be 1-128 characters")
        if not value:
            raise InvalidInput("secret value must not be empty")
        ts = self.clock().timestamp()
        blob = self.envelope.encrypt(value.encode("utf-8"), self._secret_aad(name))
        self.repo.put_secret(
            name,
            blob,
            self.envelope.keyring.primary,
            ts,
            audit={"actor": actor, "action": "secret.put", "detail": {"name": name}},  # never the value
        )

    def get_secret(self, name: str) -> str:
        blob = self.repo.secret(name)
        if blob is None:
            raise NotFoundError(f"no secret {name!r}")
        return self.envelope.decrypt(blob, self._secret_aad(name)).decode("utf-8")

    def secrets(self) -> list[tuple[str, str, float]]:
        return self.repo.secret_names()

    def rotate_keys(self, actor: str) -> dict[str, int]:
        """Re-wrap every data key under the primary KEK, one row at a time (no downtime: readers
        keep working throughout because the keyring still holds the old KEK).  Payloads are untouched."""
        primary = self.envelope.keyring.primary
        done = kept = failed = 0
        for kind, key, blob in self.repo.sealed_blobs():
            try:
                if Envelope.key_id(blob) == primary:
                    kept += 1
                    continue
                new = self.envelope.rewrap(blob)
            except DecryptionError:
                failed += 1
                continue
            if self.repo.replace_blob(kind, key, blob, new, primary):
                done += 1
            else:
                kept += 1  # changed meanwhile: a fresh write is already under the primary KEK
        self.store.audit(
            actor=actor,
            action="secret.rotate",
            outcome="ok" if not failed else "failed",
            detail={"primary": primary, "rewrapped": done, "current": kept, "unreadable": failed},
        )
        return {"rewrapped": done, "current": kept, "unreadable": failed}
