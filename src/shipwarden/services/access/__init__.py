"""Access use cases (E5, E6): users, sessions, MFA, API tokens, authorisation, secrets.

The decisions are ``domain.access`` (matrix, MFA freshness, allowlist, session and
lockout rules) and the primitives are ``security`` (argon2id, TOTP, tokens,
envelopes); this package loads the state, asks, applies the answer and audits it.

``AccessService`` is assembled from one class per concern, each in its own module and each
built only on the classes it calls, and composes the concerns that need nothing of the others:

* ``users``         — accounts: creation, role bindings, allowlists, passwords, disabling
* ``lockout``       — throttling of password and second-factor guesses (account and address):
  a service of its own (``Lockout``), which ``sessions`` and ``mfa`` call
* ``sessions``      — password login; authenticating, rotating and ending sessions
* ``mfa``           — TOTP enrolment and step-up, recovery codes
* ``local``         — the operator at the machine (CLI): single-operator mode, ``--otp``
* ``tokens``        — API tokens: minting, revoking, authenticating
* ``authorization`` — ``authorize``: may this principal do this, here? (the order of the checks)
* ``secret_store``  — named secrets and KEK rotation: a service of its own (``SecretStore``), which
  ``bootstrap.secret_lookup`` uses without the rest
* ``core``          — configuration and collaborators shared by all of them; ``principal`` —
  ``Principal`` and ``Decision``; ``bindings`` — parsing role bindings and CIDR lists;
  ``errors`` — the refusals

Secrets never leave this package in clear except to the caller that asked: the
session id and token are stored as SHA-256, TOTP secrets and named secrets as
envelope blobs, passwords as argon2id.
"""

from __future__ import annotations

from shipwarden.services.access.authorization import Authorization
from shipwarden.services.access.bindings import binding_text, parse_binding
from shipwarden.services.access.core import AccessConfig
from shipwarden.services.access.errors import (
    AccessError,
    AuthenticationError,
    Conflict,
    InvalidInput,
    LoginThrottled,
    MfaRequired,
    NotFoundError,
    PermissionDenied,
)
from shipwarden.services.access.local import LocalOperator
from shipwarden.services.access.lockout import Lockout
from shipwarden.services.access.principal import Decision, Principal
from shipwarden.services.access.secret_store import SecretStore
from shipwarden.services.access.tokens import Tokens
from shipwarden.services.access.users import Users


class AccessService(Users, LocalOperator, Tokens, Authorization):
    """Access control: every user, session, second factor, token, authorisation and secret (the
    secrets and the throttle are services of their own, ``secret_store`` and ``lockout``)."""

    def put_secret(self, actor: str, name: str, value: str) -> None:
        self.secret_store.put_secret(actor, name, value)

    def get_secret(self, name: str) -> str:
        return self.secret_store.get_secret(name)

    def secrets(self) -> list[tuple[str, str, float]]:
        return self.secret_store.secrets()

    def rotate_keys(self, actor: str) -> dict[str, int]:
        return self.secret_store.rotate_keys(actor)


__all__ = [
    "AccessConfig",
    "AccessError",
    "AccessService",
    "AuthenticationError",
    "Conflict",
    "Decision",
    "InvalidInput",
    "Lockout",
    "LoginThrottled",
    "MfaRequired",
    "NotFoundError",
    "PermissionDenied",
    "Principal",
    "SecretStore",
    "binding_text",
    "parse_binding",
]
