"""User accounts: creation, role bindings, address allowlists, passwords, disabling, MFA reset.

A change of privilege or credentials (roles, password, disabling) ends the user's sessions, so
the next request is judged on a new session.
"""

from __future__ import annotations

from collections.abc import Sequence

from shipwarden.domain.access import Binding, Permission, is_allowed
from shipwarden.ports.access import AlreadyExists, UserRecord
from shipwarden.security.passwords import hash_password
from shipwarden.services.access.bindings import binding_text, parse_cidrs
from shipwarden.services.access.core import AccessCore
from shipwarden.services.access.errors import Conflict, InvalidInput


def _password_hash(password: str) -> str:
    """argon2id of ``password``; one the password rules refuse is the caller's error (422)."""
    try:
        return hash_password(password)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


class Users(AccessCore):
    """Creates and changes user accounts; every change is audited."""

    def create_user(
        self,
        actor: str,
        name: str,
        password: str | None,
        bindings: Sequence[Binding],
        cidrs: Sequence[str] = (),
    ) -> UserRecord:
        if not name or len(name) > 128 or not name.isprintable() or name != name.strip():
            raise InvalidInput("user name must be 1-128 printable characters without surrounding spaces")
        if name == "anonymous":
            raise InvalidInput("'anonymous' is reserved")
        parse_cidrs(cidrs)
        pw = _password_hash(password) if password else None
        _, ts = self._now()
        try:
            return self.repo.create_user(
                name,
                pw,
                bindings,
                cidrs,
                ts,
                audit={
                    "actor": actor,
                    "action": "user.create",
                    "detail": {
                        "user": name,
                        "roles": [binding_text(b) for b in bindings],
                        "cidrs": list(cidrs),
                    },
                },
            )
        except AlreadyExists as exc:
            raise Conflict(str(exc)) from None

    def create_first_user(
        self,
        actor: str,
        name: str,
        password: str | None,
        bindings: Sequence[Binding],
        cidrs: Sequence[str] = (),
    ) -> UserRecord:
        """The user that ends single-operator mode (see :meth:`check_first_user`)."""
        self.check_first_user(name, bindings)
        return self.create_user(actor, name, password, bindings, cidrs)

    def check_first_user(self, name: str, bindings: Sequence[Binding]) -> None:
        """May ``name`` with ``bindings`` be the first user?  Only an administrator: from then on
        roles apply and only an admin manages users and tokens, so a first user without that role
        would leave nobody able to create one."""
        if self.repo.count_users() > 0:
            raise Conflict("users exist already: this is not the first user")
        if not all(is_allowed(bindings, p) for p in (Permission.USER_MANAGE, Permission.TOKEN_MANAGE)):
            held = ", ".join(binding_text(b) for b in bindings) or "no role"
            raise InvalidInput(
                f"the first user must be an admin: creating {name!r} with {held} would end single-operator "
                "mode with nobody able to manage users or tokens (only an admin can, and nobody could "
                f"become one); create the administrator first: shipwarden user create NAME --role admin"
            )

    def users(self) -> list[UserRecord]:
        return self.repo.users()

    def user(self, name: str) -> UserRecord:
        return self._user(name)

    def set_roles(self, actor: str, name: str, bindings: Sequence[Binding]) -> UserRecord:
        """Replace a user's role bindings; their sessions end (privilege change → new session)."""
        u = self._user(name)
        _, ts = self._now()
        rec = self.repo.update_user(
            u.id,
            audit={
                "actor": actor,
                "action": "user.roles",
                "detail": {
                    "user": name,
                    "from": [binding_text(b) for b in u.bindings],
                    "to": [binding_text(b) for b in bindings],
                },
            },
            bindings=bindings,
        )
        self.repo.revoke_sessions(user_id=u.id, now=ts)
        return rec

    def set_cidrs(self, actor: str, name: str, cidrs: Sequence[str]) -> UserRecord:
        parse_cidrs(cidrs)
        u = self._user(name)
        return self.repo.update_user(
            u.id,
            audit={"actor": actor, "action": "user.cidrs", "detail": {"user": name, "cidrs": list(cidrs)}},
            cidrs=cidrs,
        )

    def set_password(self, actor: str, name: str, password: str) -> None:
        u = self._user(name)
        pw = _password_hash(password)
        _, ts = self._now()
        self.repo.update_user(
            u.id,
            audit={"actor": actor, "action": "user.password", "detail": {"user": name}},
            password_hash=pw,
        )
        self.repo.revoke_sessions(user_id=u.id, now=ts)

    def set_disabled(self, actor: str, name: str, disabled: bool) -> UserRecord:
        u = self._user(name)
        _, ts = self._now()
        rec = self.repo.update_user(
            u.id,
            audit={
                "actor": actor,
                "action": "user.disable" if disabled else "user.enable",
                "detail": {"user": name},
            },
            disabled=disabled,
        )
        if disabled:
            self.repo.revoke_sessions(user_id=u.id, now=ts)
        return rec

    def reset_mfa(self, actor: str, name: str) -> None:
        u = self._user(name)
        self.repo.update_user(
            u.id,
            audit={"actor": actor, "action": "user.mfa_reset", "detail": {"user": name}},
            mfa_secret=None,
            recovery_hashes=None,
            mfa_last_step=0,
        )
