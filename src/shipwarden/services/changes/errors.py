"""The change pipeline's refusals: each maps to one HTTP status (and CLI exit 2), and nothing was changed."""

from __future__ import annotations

from typing import Any


class ChangeError(Exception):
    """A request the change pipeline refuses; ``status`` is its HTTP status, ``extra`` goes into the body.

    The subclasses differ only in ``status``; they stay separate types because callers and tests
    catch and assert them by name.
    """

    status = 400

    def __init__(self, message: str, **extra: Any) -> None:
        self.message = message
        self.extra = extra
        super().__init__(message)


class BadRequest(ChangeError):
    status = 400


class Unauthorized(ChangeError):
    status = 401


class Forbidden(ChangeError):
    status = 403


class UnknownChange(ChangeError):
    status = 404


class StateConflict(ChangeError):
    status = 409


class Unprocessable(ChangeError):
    status = 422


class TooLarge(ChangeError):
    status = 413


class UnsupportedMedia(ChangeError):
    status = 415


class NotConfigured(ChangeError):
    status = 503
