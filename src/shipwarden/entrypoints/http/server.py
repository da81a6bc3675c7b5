"""Serving the API with uvicorn: its HTTP/1.1 limits, and a 431 for an oversized header block.

uvicorn's h11 protocol bounds an incomplete event (a request line plus headers not yet ended by
a blank line) with ``h11_max_incomplete_event_size``; past it h11 raises "Receive buffer too
long" (with ``error_status_hint=431``) but uvicorn answers every such error with a generic 400
and closes the socket at once.  Closing with the client's unread header bytes still in the
receive buffer makes the kernel send a TCP reset, which destroys the 400 in flight: a 68 KB
header got no answer at all.  ``HeaderGuard`` (the protocol class given to uvicorn) answers
**431 Request Header Fields Too Large** instead when the buffer is over the limit, then closes
gracefully: it shuts down its sending side and discards what the client still sends for a
moment (a "lingering close", as nginx and Apache do), so the answer arrives.  Each 431 is
audited through the app's ``RefusalLog``.  ``httptools`` is not used (it has no such limit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from shipwarden.services.refusals import RefusalLog

__all__ = ["MAX_HEADER_BYTES", "HeaderGuard", "run", "uvicorn_config"]

MAX_HEADER_BYTES = 32 * 1024
"""Request line + headers.  nginx's default large_client_header_buffers is 4 × 8 KB."""
LINGER_S = 2.0
LINGER_BYTES = 1024 * 1024


class HeaderGuard(H11Protocol):
    """uvicorn's h11 protocol, answering 431 (not a reset connection) to an oversized header block.

    h11 checks its limit only while an event is incomplete: a whole 68 KB header block that
    arrives in one read is parsed and accepted.  So the head of each request is measured here as
    it arrives (the bytes h11 holds plus the new ones, up to the blank line that ends the
    headers), and h11's own "Receive buffer too long" error is answered with the same 431."""

    refusals: ClassVar[RefusalLog | None] = None
    max_header_bytes: ClassVar[int] = MAX_HEADER_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._discarded: int | None = None  # bytes dropped while lingering; None: not lingering

    def data_received(self, data: bytes) -> None:
        if self._discarded is not None:
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self.transport.close()
            return
        if self.conn.their_state is h11.IDLE:  # reading a request line and headers
            head = self.conn.trailing_data[0] + data
            end = head.find(b"\r\n\r\n", 0, self.max_header_bytes + 4)
            if end == -1 and len(head) > self.max_header_bytes:
                self._send_431()
                return
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if len(self.conn.trailing_data[0]) > self.max_header_bytes:
            self._send_431()  # h11's "Receive buffer too long" (error_status_hint=431)
            return
        super().send_400_response(msg)

    def _send_431(self) -> None:
        text = f"request header fields are larger than {self.max_header_bytes} bytes\n".encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text
        )
        self._audit_431()
        self._discarded = 0
        self._unset_keepalive_if_required()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def _audit_431(self) -> None:
        log = type(self).refusals
        if log is None:
            return
        ip = self.client[0] if self.client else "unknown"
        detail = {"status": 431, "ip": ip, "limit": self.max_header_bytes, "reason": "header block too large"}

        def write() -> None:
            log.refuse(source=ip, actor="anonymous", action="http.refused", detail=detail)

        self.loop.run_in_executor(None, write)


def uvicorn_config(
    app: Any,
    *,
    host: str,
    port: int,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    refusals: RefusalLog | None = None,
) -> uvicorn.Config:
    """The uvicorn configuration of ``shipwarden serve``: h11 with the header limit and ``HeaderGuard``."""
    guard = type("HeaderGuard", (HeaderGuard,), {"refusals": refusals})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guard,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        log_level="warning",
        forwarded_allow_ips="",  # X-Forwarded-For is judged by deps against trusted_proxies, not by uvicorn
        proxy_headers=False,
    )


def run(
    app: Any,
    host: str,
    port: int,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    *,
    refusals: RefusalLog | None = None,
) -> None:
    """Serve ``app``; ``refusals`` audits the 431s (default: the app's own ``state.refusals``)."""
    if refusals is None:
        refusals = getattr(getattr(app, "state", None), "refusals", None)
    config = uvicorn_config(app, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key, refusals=refusals)
    uvicorn.Server(config).run()
