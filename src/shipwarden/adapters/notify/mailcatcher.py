"""A local mail catcher (aiosmtpd on loopback) for ``make demo`` and the tests: pages by e-mail
land here, and :meth:`MailCatcher.wait_for` waits for one (event-driven, with a deadline)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller

__all__ = ["Caught", "MailCatcher"]


@dataclass(frozen=True)
class Caught:
    at: float
    sender: str
    to: tuple[str, ...]
    message: Message

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def body(self) -> str:
        m: Any = self.message
        part = m.get_body(("plain",)) if hasattr(m, "get_body") else None
        return str(part.get_content() if part is not None else m.get_payload())


class _Handler:
    def __init__(self, catcher: MailCatcher) -> None:
        self.catcher = catcher

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        msg = message_from_bytes(envelope.content, policy=default_policy)
        self.catcher._caught(Caught(time.time(), envelope.mail_from, tuple(envelope.rcpt_tos), msg))
        return "250 OK"


class MailCatcher:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from shipwarden.adapters.net import free_port

        self.host, self.port = host, port or free_port()
        self.mails: list[Caught] = []
        self._cond = threading.Condition()
        self._controller = Controller(_Handler(self), hostname=host, port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def _caught(self, mail: Caught) -> None:
        with self._cond:
            self.mails.append(mail)
            self._cond.notify_all()

    def wait_for(
        self, match: Callable[[Caught], bool], timeout: float = 10.0, *, after: int = 0
    ) -> Caught | None:
        """The first mail (from index ``after``) that ``match``es, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.mails[after:]:
                    if match(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def __enter__(self) -> MailCatcher:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
