"""Signed acknowledge/resolve links carried in pages (E8).  Pure: HMAC over the claim.

A page offers "acknowledge" and "resolve" as links so the person paged can act from the
mail or chat message without logging in.  The link carries a claim — escalation, action,
person paged, expiry, a random nonce — and an HMAC-SHA256 over it with the installation's
link key.  :func:`verify` checks the MAC (constant time), the expiry and the action; the
service then spends the nonce **once** (a stored row, in the same transaction as the
acknowledgement and its audit entry), so a forwarded or replayed link does nothing twice.

Opening the link (GET) only shows a confirmation page; acting takes a POST, because mail
scanners fetch links in messages and would otherwise acknowledge every page they see.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["Claim", "LinkError", "sign", "verify"]

Action = Literal["ack", "resolve"]
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{10,600}\.[A-Za-z0-9_-]{43}$")


class LinkError(ValueError):
    """The link is malformed, forged, expired or for another action."""


@dataclass(frozen=True)
class Claim:
    escalation: str
    action: Action
    person: str
    expires: int
    nonce: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, claim: Claim) -> str:
    body = json.dumps(
        {"e": claim.escalation, "a": claim.action, "p": claim.person, "x": claim.expires, "n": claim.nonce},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    mac = hmac.new(key, b"shipwarden-oncall-link\x00" + body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}"


def verify(key: bytes, token: str, now: float) -> Claim:
    if not _TOKEN.fullmatch(token):
        raise LinkError("not a shipwarden link")
    body_b64, mac_b64 = token.split(".")
    body = _unb64(body_b64)
    want = hmac.new(key, b"shipwarden-oncall-link\x00" + body, hashlib.sha256).digest()
    if not hmac.compare_digest(want, _unb64(mac_b64)):
        raise LinkError("the link's signature does not match (altered, or signed by another key)")
    try:
        doc = json.loads(body)
        claim = Claim(str(doc["e"]), doc["a"], str(doc["p"]), int(doc["x"]), str(doc["n"]))
    except (ValueError, KeyError, TypeError):
        raise LinkError("the link's claim is unreadable") from None
    if claim.action not in ("ack", "resolve"):
        raise LinkError(f"unknown action {str(claim.action)[:20]!r}")
    if now >= claim.expires:
        raise LinkError("the link has expired")
    return claim
