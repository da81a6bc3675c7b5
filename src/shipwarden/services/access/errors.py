"""The access refusals: the entrypoints map each to one status code."""

from __future__ import annotations

from datetime import timedelta


class AccessError(Exception):
    """Base of the errors below; the message is safe to show to the caller."""


class AuthenticationError(AccessError):
    """401: no credentials, or they are wrong, expired or revoked."""


class PermissionDenied(AccessError):
    """403: authenticated, but not allowed (role, scope, address)."""


class MfaRequired(PermissionDenied):
    """403: allowed by role, but the action needs a fresh TOTP check."""


class NotFoundError(AccessError):
    """404."""


class Conflict(AccessError):
    """409: the request contradicts current state (name taken, session limit)."""


class InvalidInput(AccessError):
    """422: a field is malformed (bad CIDR, unknown role or scope)."""


class LoginThrottled(AccessError):
    """429 (per source address) or 423 (per account): too many failures; retry after ``retry_after``."""

    def __init__(self, message: str, retry_after: timedelta, *, account: bool) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.account = account
