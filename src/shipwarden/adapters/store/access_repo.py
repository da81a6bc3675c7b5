"""Storage for identities, sessions, tokens, login failures and encrypted secrets.

Every write that an auditor cares about takes an ``audit`` mapping and appends the
entry in the *same* transaction (``Store._append_audit``), so a role change and its
audit record exist together or not at all.  Values arrive already hashed/sealed:
this module never sees a password, a session id, a token or a secret in clear.

JSON column layouts (schema 0002):

* ``users.bindings``        ``{"bindings": [{"role": "sre", "services": [...]|null, "teams": [...]|null}]}``
* ``users.allowed_cidrs``   ``{"cidrs": ["10.0.0.0/8", ...]}`` (empty: no per-user restriction)
* ``users.recovery_codes``  ``{}`` while MFA enrolment is pending, ``{"hashes": [sha256|null, ...]}``
  once confirmed — so "MFA enabled" is "recovery codes were issued".
* ``api_tokens.scopes``     ``{"name": ..., "scopes": [...], "services": [...]|null}``
* ``users.mfa_secret`` / ``secrets.blob``: base64 of an envelope blob (``security.envelope``).

The *access generation* (table ``access_generation``, schema 0011) is bumped in the transaction
of every change that can alter a credential's verdict — a user updated (roles, allowlist,
password, MFA, disabled), a token revoked — so that verdicts cached by a process can be checked
against it where they are committed (``AuditRepo.append``), in one read per batch of requests.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from shipwarden.adapters.store.models import (
    AccessGenerationRow,
    ApiTokenRow,
    AuthFailureRow,
    AuthThrottleRow,
    SecretRow,
    SessionRow,
    UserRow,
)
from shipwarden.adapters.store.repository import Store
from shipwarden.domain.access import Binding, Permission, Role
from shipwarden.ports.access import AlreadyExists, SessionRecord, TokenAuth, TokenRecord, UserRecord
from shipwarden.ports.store import StoreError

Audit = Mapping[str, Any] | None


def bindings_to_json(bindings: Sequence[Binding]) -> dict[str, Any]:
    return {
        "bindings": [
            {
                "role": b.role.value,
                "services": sorted(b.services) if b.services is not None else None,
                "teams": sorted(b.teams) if b.teams is not None else None,
            }
            for b in bindings
        ]
    }


def bindings_from_json(data: Mapping[str, Any] | None) -> tuple[Binding, ...]:
    out = []
    for b in (data or {}).get("bindings", []):
        out.append(
            Binding(
                Role(b["role"]),
                frozenset(b["services"]) if b.get("services") is not None else None,
                frozenset(b["teams"]) if b.get("teams") is not None else None,
            )
        )
    return tuple(out)


def _b64(blob: bytes | None) -> str | None:
    return base64.b64encode(blob).decode() if blob is not None else None


def _unb64(text: str | None) -> bytes | None:
    return base64.b64decode(text) if text else None


def _user_of(r: UserRow) -> UserRecord:
    rec = r.recovery_codes or {}
    return UserRecord(
        id=r.id,
        name=r.name,
        password_hash=r.password_hash,
        bindings=bindings_from_json(r.bindings),
        cidrs=tuple((r.allowed_cidrs or {}).get("cidrs", [])),
        mfa_secret=_unb64(r.mfa_secret),
        mfa_enabled="hashes" in rec and r.mfa_secret is not None,
        mfa_last_step=r.mfa_last_step or None,
        recovery_hashes=tuple(rec.get("hashes", [])),
        disabled=r.disabled,
        created_at=r.created_at,
    )


_GENERATION = select(AccessGenerationRow.value).where(AccessGenerationRow.id == 1)
_BUMP = (
    update(AccessGenerationRow).where(AccessGenerationRow.id == 1).values(value=AccessGenerationRow.value + 1)
)


def bump_generation(s: Session) -> None:
    """Bump the access generation inside ``s``'s transaction (the change's own)."""
    s.execute(_BUMP)


def read_generation(s: Session) -> int:
    """The access generation as ``s`` sees it (0 if the counter row is missing)."""
    return int(s.connection().execute(_GENERATION).scalar() or 0)


def _session(r: SessionRow) -> SessionRecord:
    return SessionRecord(
        r.id_hash, r.user_id, r.created_at, r.last_seen_at, r.mfa_at, r.revoked_at, r.client_ip
    )


def _token(r: ApiTokenRow, owner: str) -> TokenRecord:
    sc = r.scopes or {}
    services = sc.get("services")
    return TokenRecord(
        id=r.id,
        user_id=r.user_id,
        owner=owner,
        name=str(sc.get("name", "")),
        token_hash=r.token_hash,
        scopes=frozenset(Permission(p) for p in sc.get("scopes", [])),
        services=frozenset(services) if services is not None else None,
        cidrs=tuple((r.allowed_cidrs or {}).get("cidrs", [])),
        created_at=r.created_at,
        expires_at=r.expires_at or 0.0,
        revoked_at=r.revoked_at,
        last_used_at=r.last_used_at,
    )


TOUCH_EVERY_S = 60.0
"""Granularity of an API token's ``last_used_at``."""


class AccessRepo:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._sessions = store._sessions
        self._touched: dict[str, float] = {}  # token id → last_used_at this process last wrote
        self.changed: Callable[[], None] = lambda: None
        """Called after this process committed a change that bumped the access generation."""

    def _audit(self, s: Session, audit: Audit) -> None:
        if audit:
            self.store._append_audit(s, **audit)

    def _tx(self, fn: Any) -> Any:
        return self.store._retrying(fn)

    # -- users ----------------------------------------------------------------------------
    def user(self, name: str) -> UserRecord | None:
        with self._sessions() as s:
            r = s.scalar(select(UserRow).where(UserRow.name == name))
            return _user_of(r) if r else None

    def user_by_id(self, user_id: int) -> UserRecord | None:
        with self._sessions() as s:
            r = s.get(UserRow, user_id)
            return _user_of(r) if r else None

    def users(self) -> list[UserRecord]:
        with self._sessions() as s:
            return [_user_of(r) for r in s.scalars(select(UserRow).order_by(UserRow.name))]

    def count_users(self) -> int:
        with self._sessions() as s:
            return int(s.scalar(select(func.count()).select_from(UserRow)) or 0)

    def create_user(
        self,
        name: str,
        password_hash: str | None,
        bindings: Sequence[Binding],
        cidrs: Sequence[str],
        now: float,
        audit: Audit = None,
    ) -> UserRecord:
        def tx(s: Session) -> UserRecord:
            if s.scalar(select(UserRow.id).where(UserRow.name == name)) is not None:
                raise AlreadyExists(f"user {name!r} already exists")
            row = UserRow(
                name=name,
                password_hash=password_hash,
                bindings=bindings_to_json(bindings),
                allowed_cidrs={"cidrs": list(cidrs)},
                mfa_secret=None,
                mfa_last_step=0,
                recovery_codes={},
                disabled=False,
                created_at=now,
            )
            s.add(row)
            s.flush()
            self._audit(s, audit)
            return _user_of(row)

        result: UserRecord = self._tx(tx)
        return result

    def update_user(self, user_id: int, audit: Audit = None, **changes: Any) -> UserRecord:
        """Change some of: password_hash, bindings, cidrs, disabled, mfa_secret (bytes|None),
        recovery_hashes (list|None: None = pending), mfa_last_step."""

        def tx(s: Session) -> UserRecord:
            row = s.get(UserRow, user_id)
            if row is None:
                raise StoreError(f"no user with id {user_id}")
            for key, value in changes.items():
                if key == "bindings":
                    row.bindings = bindings_to_json(value)
                elif key == "cidrs":
                    row.allowed_cidrs = {"cidrs": list(value)}
                elif key == "mfa_secret":
                    row.mfa_secret = _b64(value)
                elif key == "recovery_hashes":
                    row.recovery_codes = {} if value is None else {"hashes": list(value)}
                elif key in ("password_hash", "disabled", "mfa_last_step"):
                    setattr(row, key, value)
                else:
                    raise TypeError(f"unknown user field {key!r}")
            bump_generation(s)
            self._audit(s, audit)
            s.flush()
            return _user_of(row)

        result: UserRecord = self._tx(tx)
        self.changed()
        return result

    def advance_mfa_step(self, user_id: int, step: int) -> bool:
        """Record an accepted TOTP step; False if an equal or later step was already accepted
        (a concurrent request used the same code): compare-and-set, so a code works once."""
        with self._sessions.begin() as s:
            res = s.execute(
                update(UserRow)
                .where(UserRow.id == user_id, UserRow.mfa_last_step < step)
                .values(mfa_last_step=step)
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def consume_recovery_code(self, user_id: int, index: int, expected: str) -> bool:
        """Burn recovery code ``index`` if it is still ``expected`` (single use, race-safe)."""

        def tx(s: Session) -> bool:
            row = s.get(UserRow, user_id, with_for_update=True)
            hashes = list((row.recovery_codes or {}).get("hashes", [])) if row else []
            if row is None or index >= len(hashes) or hashes[index] != expected:
                return False
            hashes[index] = None
            row.recovery_codes = {"hashes": hashes}
            return True

        result: bool = self._tx(tx)
        return result

    # -- sessions -------------------------------------------------------------------------
    def session(self, id_hash: str) -> SessionRecord | None:
        with self._sessions() as s:
            r = s.get(SessionRow, id_hash)
            return _session(r) if r else None

    def session_auth(self, id_hash: str) -> tuple[SessionRecord, UserRecord] | None:
        """The session with ``id_hash`` and its user, in one statement."""
        with self._sessions() as s:
            r = s.execute(
                select(SessionRow, UserRow).join(UserRow, UserRow.id == SessionRow.user_id)
                .where(SessionRow.id_hash == id_hash)
            ).first()  # fmt: skip
            return (_session(r[0]), _user_of(r[1])) if r else None

    def user_sessions(self, user_id: int) -> list[SessionRecord]:
        with self._sessions() as s:
            rows = s.scalars(
                select(SessionRow)
                .where(SessionRow.user_id == user_id, SessionRow.revoked_at.is_(None))
                .order_by(SessionRow.created_at)
            )
            return [_session(r) for r in rows]

    def open_session(
        self,
        rec: SessionRecord,
        *,
        now: float,
        evict: Sequence[str] = (),
        replaces: str | None = None,
        audit: Audit = None,
    ) -> None:
        """Insert a session; revoke ``evict`` (concurrency limit) and ``replaces`` (rotation) with it."""

        def tx(s: Session) -> None:
            gone = [*evict, *([replaces] if replaces else [])]
            if gone:
                s.execute(
                    update(SessionRow)
                    .where(SessionRow.id_hash.in_(gone), SessionRow.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
            s.add(
                SessionRow(
                    id_hash=rec.id_hash,
                    user_id=rec.user_id,
                    created_at=rec.created_at,
                    last_seen_at=rec.last_seen_at,
                    mfa_at=rec.mfa_at,
                    revoked_at=None,
                    client_ip=rec.client_ip,
                )
            )
            self._audit(s, audit)

        self._tx(tx)

    def touch_session(self, id_hash: str, now: float) -> None:
        with self._sessions.begin() as s:
            s.execute(
                update(SessionRow)
                .where(SessionRow.id_hash == id_hash, SessionRow.last_seen_at < now)
                .values(last_seen_at=now)
            )

    def revoke_sessions(
        self, *, id_hashes: Sequence[str] = (), user_id: int | None = None, now: float, audit: Audit = None
    ) -> int:
        def tx(s: Session) -> int:
            q = update(SessionRow).where(SessionRow.revoked_at.is_(None))
            if user_id is not None:
                q = q.where(SessionRow.user_id == user_id)
            if id_hashes:
                q = q.where(SessionRow.id_hash.in_(list(id_hashes)))
            elif user_id is None:
                return 0
            n = int(s.execute(q.values(revoked_at=now)).rowcount)  # type: ignore[attr-defined]
            self._audit(s, audit)
            return n

        result: int = self._tx(tx)
        return result

    # -- login attempts -------------------------------------------------------------------
    def reserve_attempt(
        self, since: Mapping[str, float], admit: Callable[[Mapping[str, list[float]]], float | None]
    ) -> list[int] | None:
        """Count and reserve one attempt on every key of ``since``, atomically.

        In one transaction: lock each key's ``auth_throttle`` row (in key order, so two
        attempts cannot deadlock on each other), read the key's attempts at or after
        ``since[key]``, and ask ``admit`` (the lockout rule) with them.  If it refuses (None),
        nothing is recorded and the answer is None; if it allows, it gives the time to record:
        the attempt is recorded under every key *before* the credential is checked, and the
        answer is the recorded rows' ids (to release on success).

        A concurrent attempt on the same key waits for the lock and then counts this one, so
        however many arrive at once, no more are admitted than the rule allows.  Read
        committed: what the last holder of the lock recorded is seen.
        """
        keys = sorted(since)
        self._ensure_throttle_rows(keys)

        def tx(s: Session) -> list[int] | None:
            for k in keys:
                locked = s.execute(
                    update(AuthThrottleRow)
                    .where(AuthThrottleRow.key == k)
                    .values(attempts=AuthThrottleRow.attempts + 1)
                ).rowcount  # type: ignore[attr-defined]
                if not locked:
                    raise StoreError(f"lockout row {k!r} vanished")  # never deleted; defensive
            at = AuthFailureRow.at
            history = {
                k: list(s.scalars(select(at).where(AuthFailureRow.key == k, at >= since[k]))) for k in keys
            }
            now = admit(history)
            if now is None:
                s.rollback()
                return None
            rows = [AuthFailureRow(key=k, at=now) for k in keys]
            s.add_all(rows)
            s.flush()
            return [r.id for r in rows]

        result: list[int] | None = self._read_committed(tx)
        return result

    def _ensure_throttle_rows(self, keys: Sequence[str]) -> None:
        """Create the lock rows missing for ``keys`` (a concurrent creator winning is fine)."""
        with self._sessions() as s:
            have = set(s.scalars(select(AuthThrottleRow.key).where(AuthThrottleRow.key.in_(list(keys)))))
        for k in keys:
            if k in have:
                continue
            try:
                with self._sessions.begin() as s:
                    s.add(AuthThrottleRow(key=k, attempts=0))
            except IntegrityError:
                pass  # created meanwhile by another attempt

    def _read_committed(self, fn: Callable[[Session], Any], attempts: int = 50) -> Any:
        """Run ``fn`` in a READ COMMITTED transaction (SQLite: its one writer at a time), retrying
        deadlocks and lock time-outs."""
        opts = {} if self.store.engine.dialect.name == "sqlite" else {"isolation_level": "READ COMMITTED"}
        for attempt in range(attempts):
            try:
                with self._sessions() as s:
                    s.connection(execution_options=opts)
                    out = fn(s)
                    if s.in_transaction():
                        s.commit()
                    return out
            except OperationalError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def release_attempt(self, ids: Sequence[int], clear: str | None = None) -> None:
        """A successful attempt: delete its reserved rows ``ids``, and every recorded attempt under
        ``clear`` (a success forgives the account's failures; an address keeps its count)."""
        with self._sessions.begin() as s:
            s.execute(delete(AuthFailureRow).where(AuthFailureRow.id.in_(list(ids))))
            if clear is not None:
                s.execute(delete(AuthFailureRow).where(AuthFailureRow.key == clear))

    def failures(self, key: str, since: float) -> list[float]:
        """Recorded attempts under ``key`` at or after ``since`` (failed ones, and those in flight)."""
        with self._sessions() as s:
            rows = s.scalars(
                select(AuthFailureRow.at).where(AuthFailureRow.key == key, AuthFailureRow.at >= since)
            )
            return list(rows)

    # -- tokens ---------------------------------------------------------------------------
    def add_token(
        self,
        *,
        token_id: str,
        user_id: int,
        name: str,
        token_hash: str,
        scopes: Sequence[Permission],
        services: Sequence[str] | None,
        cidrs: Sequence[str],
        created_at: float,
        expires_at: float,
        audit: Audit = None,
    ) -> None:
        def tx(s: Session) -> None:
            s.add(
                ApiTokenRow(
                    id=token_id,
                    user_id=user_id,
                    token_hash=token_hash,
                    scopes={
                        "name": name,
                        "scopes": sorted(p.value for p in scopes),
                        "services": sorted(services) if services is not None else None,
                    },
                    allowed_cidrs={"cidrs": list(cidrs)},
                    created_at=created_at,
                    expires_at=expires_at,
                )
            )
            self._audit(s, audit)

        self._tx(tx)

    def token_auth(self, token_hash: str) -> TokenAuth | None:
        """The token with ``token_hash``, its owner and the access generation, in one statement
        (one snapshot: the generation is never newer than the rows read with it)."""
        gen = _GENERATION.scalar_subquery()
        with self._sessions() as s:
            r = s.execute(
                select(ApiTokenRow, UserRow, gen)
                .join(UserRow, UserRow.id == ApiTokenRow.user_id)
                .where(ApiTokenRow.token_hash == token_hash)
            ).first()
            if r is None:
                return None
            return TokenAuth(_token(r[0], r[1].name), _user_of(r[1]), int(r[2] or 0))

    def generation(self) -> int:
        with self._sessions() as s:
            return read_generation(s)

    def token(self, token_id: str) -> TokenRecord | None:
        with self._sessions() as s:
            r = s.execute(
                select(ApiTokenRow, UserRow.name)
                .join(UserRow, UserRow.id == ApiTokenRow.user_id)
                .where(ApiTokenRow.id == token_id)
            ).first()
            return _token(r[0], r[1]) if r else None

    def tokens(self, user_id: int | None = None) -> list[TokenRecord]:
        q = select(ApiTokenRow, UserRow.name).join(UserRow, UserRow.id == ApiTokenRow.user_id)
        if user_id is not None:
            q = q.where(ApiTokenRow.user_id == user_id)
        with self._sessions() as s:
            return [_token(r, n) for r, n in s.execute(q.order_by(ApiTokenRow.created_at))]

    def revoke_token(self, token_id: str, now: float, audit: Audit = None) -> bool:
        def tx(s: Session) -> bool:
            res = s.execute(
                update(ApiTokenRow)
                .where(ApiTokenRow.id == token_id, ApiTokenRow.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            bump_generation(s)
            self._audit(s, audit)
            return bool(res.rowcount)  # type: ignore[attr-defined]

        result: bool = self._tx(tx)
        self.changed()
        return result

    def touch_token(self, token_id: str, now: float) -> None:
        """Record a token's last use, at most once per ``TOUCH_EVERY_S`` per token and process: a
        write per request would put every authenticated read behind the database's writer lock."""
        last = self._touched.get(token_id)
        if last is not None and 0 <= now - last < TOUCH_EVERY_S:
            return
        self._touched[token_id] = now
        with self._sessions.begin() as s:
            s.execute(update(ApiTokenRow).where(ApiTokenRow.id == token_id).values(last_used_at=now))

    # -- secrets --------------------------------------------------------------------------
    def put_secret(self, name: str, blob: bytes, kek_id: str, now: float, audit: Audit = None) -> None:
        def tx(s: Session) -> None:
            row = s.get(SecretRow, name)
            if row is None:
                s.add(SecretRow(name=name, blob=_b64(blob), kek_id=kek_id, updated_at=now))
            else:
                row.blob, row.kek_id, row.updated_at = _b64(blob) or "", kek_id, now
            self._audit(s, audit)

        self._tx(tx)

    def secret(self, name: str) -> bytes | None:
        with self._sessions() as s:
            row = s.get(SecretRow, name)
            return _unb64(row.blob) if row else None

    def secret_names(self) -> list[tuple[str, str, float]]:
        with self._sessions() as s:
            rows = s.execute(
                select(SecretRow.name, SecretRow.kek_id, SecretRow.updated_at).order_by(SecretRow.name)
            )
            return [(n, k, t) for n, k, t in rows]

    def delete_secret(self, name: str, audit: Audit = None) -> bool:
        def tx(s: Session) -> bool:
            n = s.execute(delete(SecretRow).where(SecretRow.name == name)).rowcount  # type: ignore[attr-defined]
            self._audit(s, audit)
            return bool(n)

        result: bool = self._tx(tx)
        return result

    def sealed_blobs(self) -> list[tuple[str, str, bytes]]:
        """Every envelope blob: ``("secret", name, blob)`` and ``("user", id, blob)`` (TOTP secrets)."""
        out: list[tuple[str, str, bytes]] = []
        with self._sessions() as s:
            for name, blob in s.execute(select(SecretRow.name, SecretRow.blob)):
                out.append(("secret", name, base64.b64decode(blob)))
            for uid, sealed in s.execute(
                select(UserRow.id, UserRow.mfa_secret).where(UserRow.mfa_secret.is_not(None))
            ):
                out.append(("user", str(uid), base64.b64decode(sealed or "")))
        return out

    def replace_blob(self, kind: str, key: str, old: bytes, new: bytes, kek_id: str) -> bool:
        """Swap one blob for its rewrapped form if nobody changed it meanwhile (one row, one transaction)."""
        with self._sessions.begin() as s:
            if kind == "secret":
                res = s.execute(
                    update(SecretRow)
                    .where(SecretRow.name == key, SecretRow.blob == _b64(old))
                    .values(blob=_b64(new), kek_id=kek_id)
                )
            else:
                res = s.execute(
                    update(UserRow)
                    .where(UserRow.id == int(key), UserRow.mfa_secret == _b64(old))
                    .values(mfa_secret=_b64(new))
                )
            return bool(res.rowcount)  # type: ignore[attr-defined]
