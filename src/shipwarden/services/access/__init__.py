"""Access use cases (E5, E6): users, sessions, MFA, API tokens, authorisation, secrets.

The decisions are ``domain.access`` (matrix, MFA freshness, allowlist, session and
lockout rules) and the primitives are ``security`` (argon2id, TOTP, tokens,
envelopes); this package loads the state, asks, applies the answer and audits it.

``AccessService`` is assembled from one class per concern, each in its own module and each
built only on the classes it calls:

* ``users``         — accounts: creation, role bindings, allowlists, passwords, disabling
* ``lockout``       — throttling of password and second-factor guesses (account and address)
* ``sessions``      — password login; authenticating, rotating and ending sessions
* ``mfa``           — TOTP enrolment and step-up, recovery codes
* ``local``         — the operator at the machine (CLI): single-operator mode, ``--otp``
* ``tokens``        — API tokens: minting, revoking, authenticating
* ``authorization`` — ``authorize``: may this principal do this, here? (the order of the checks)
* ``secret_store``  — named secrets and KEK rotation
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
from shipwarden.services.access.principal import Decision, Principal
from shipwarden.services.access.secret_store import SecretStore
from shipwarden.services.access.tokens import Tokens
from shipwarden.services.access.users import Users


class AccessService(Users, LocalOperator, Tokens, Authorization, SecretStore):
    """Access control: every user, session, second factor, token, authorisation and secret."""


__all__ = [
    "AccessConfig",
    "AccessError",
    "AccessService",
    "AuthenticationError",
    "Conflict",
    "Decision",
    "InvalidInput",
    "LoginThrottled",
    "MfaRequired",
    "NotFoundError",
    "PermissionDenied",
    "Principal",
    "binding_text",
    "parse_binding",
]
