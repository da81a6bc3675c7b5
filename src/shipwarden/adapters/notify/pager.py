"""Pages to people: e-mail over SMTP, anything else through Apprise (``ports.oncall.Notifier``).

E-mail goes straight to the configured SMTP server (``SHIPWARDEN_SMTP_URL``:
``smtp://host:port`` or ``smtps://…``, optional ``user:password@``) with the dedupe key as the
``Message-ID`` domain-qualified, so a receiver or a mail client can drop a duplicate.  Apprise
targets are secrets holding Apprise URLs (Slack, Teams, a webhook …), resolved when sent and
never logged unmasked.  Failures are returned, never raised: the engine retries them.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

import apprise

from shipwarden.ports.oncall import Contact, Delivery

__all__ = ["PageNotifier", "SmtpTarget", "parse_smtp_url"]


class SmtpTarget:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool = False,
        user: str | None = None,
        password: str | None = None,
        sender: str = "shipwarden@localhost",
    ) -> None:
        self.host, self.port, self.tls, self.user, self.password, self.sender = (
            host,
            port,
            tls,
            user,
            password,
            sender,
        )


def parse_smtp_url(url: str, sender: str = "shipwarden@localhost") -> SmtpTarget:
    u = urlsplit(url)
    if u.scheme not in ("smtp", "smtps") or not u.hostname:
        raise ValueError("an SMTP URL looks like smtp://host:25 or smtps://user:password@host:465")
    port = u.port or (465 if u.scheme == "smtps" else 25)
    user = unquote(u.username) if u.username else None
    password = unquote(u.password) if u.password else None
    return SmtpTarget(u.hostname, port, tls=u.scheme == "smtps", user=user, password=password, sender=sender)


class PageNotifier:
    def __init__(
        self,
        smtp: SmtpTarget | None,
        secrets: Callable[[str], str | None] | None = None,
        *,
        timeout: float = 10.0,
    ) -> None:
        self.smtp, self.secrets, self.timeout = smtp, secrets, timeout

    def send(self, target: Contact, subject: str, body: str, dedupe_key: str) -> Delivery:
        if target.kind == "email":
            return self._mail(target.address, subject, body, dedupe_key)
        return self._apprise(target.address, subject, body)

    def _mail(self, to: str, subject: str, body: str, dedupe_key: str) -> Delivery:
        if self.smtp is None:
            return Delivery(False, "no SMTP server configured (SHIPWARDEN_SMTP_URL)")
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.smtp.sender, to, subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = f"<{hashlib.sha256(dedupe_key.encode()).hexdigest()[:32]}@shipwarden>"
        msg["X-Shipwarden-Dedupe-Key"] = dedupe_key
        msg.set_content(body)
        try:
            s: smtplib.SMTP
            if self.smtp.tls:
                s = smtplib.SMTP_SSL(
                    self.smtp.host, self.smtp.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                s = smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.timeout)
            with s:
                if self.smtp.user:
                    s.login(self.smtp.user, self.smtp.password or "")
                refused = s.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            return Delivery(
                False, f"SMTP {self.smtp.host}:{self.smtp.port}: {type(exc).__name__}: {exc}"[:300]
            )
        if refused:
            return Delivery(False, f"refused: {', '.join(refused)}"[:300])
        return Delivery(True, f"mail to {to} accepted by {self.smtp.host}:{self.smtp.port}")

    def _apprise(self, secret: str, subject: str, body: str) -> Delivery:
        url = self.secrets(secret) if self.secrets is not None else None
        if not url:
            return Delivery(False, f"secret {secret!r} is not set")
        ap = apprise.Apprise()
        if not ap.add(url):
            return Delivery(False, f"secret {secret!r} does not hold a valid Apprise URL")
        try:
            ok = bool(ap.notify(body=body, title=subject, notify_type="failure"))
        except Exception as exc:  # noqa: BLE001 - apprise plugins may raise on transport errors
            return Delivery(False, f"{secret}: {type(exc).__name__}")
        return Delivery(ok, f"{secret}: {'delivered' if ok else 'delivery failed'}")
