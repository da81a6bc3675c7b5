"""Serving the API with uvicorn: its HTTP/1.1 parser, its limits, and a 431 for an oversized header block.

The parser is ``httptools`` (llhttp, in C): about half the per-request CPU of the pure-Python
``h11`` (issue 9, class 12: the server's CPU per request is what bounds how many clients it
holds).  Neither bounds a request's header block on its own terms — h11 answered its "Receive
buffer too long" with a generic 400 and closed the socket at once (the kernel then reset the
connection, destroying the answer: a 68 KB header got no answer at all); httptools has no limit,
and keeps accumulating a header line until it ends.  :class:`HeaderGuard` (the protocol class
given to uvicorn) measures each request head itself:

* while a head is being received, every byte up to the blank line that ends it is counted
  *before* the parser sees it, so a head that grows past ``MAX_HEADER_BYTES`` is refused without
  being buffered, however it is split into packets;
* the parser's callbacks add up the request line and each header as it completes, which also
  catches a head that arrives whole behind another request (pipelining).

Either way nothing more is parsed on that connection, and once the answers to the requests
before it have gone out (httptools parses pipelined requests ahead of their answers), the answer
is **431 Request Header Fields Too Large**, then a graceful close: the sending side is shut
down and what the client still sends is discarded for a moment (a "lingering close", as nginx
and Apache do), so the answer arrives.  Each 431 is audited through the app's ``RefusalLog``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shipwarden.services.refusals import RefusalLog

__all__ = ["MAX_HEADER_BYTES", "HeaderGuard", "run", "uvicorn_config"]

MAX_HEADER_BYTES = 32 * 1024
"""Request line + headers.  nginx's default large_client_header_buffers is 4 × 8 KB."""
LINGER_S = 2.0
LINGER_BYTES = 1024 * 1024
_END = b"\r\n\r\n"


class _HeadTooLarge(Exception):
    """Raised from a parser callback: the head counted so far is over the limit."""


class HeaderGuard(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 431 (not a reset connection, not a buffer that grows
    without bound) to an oversized header block."""

    refusals: ClassVar[RefusalLog | None] = None
    max_header_bytes: ClassVar[int] = MAX_HEADER_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._discarded: int | None = None  # bytes dropped while lingering; None: not lingering
        self._in_head = True  # the next bytes belong to a request line and headers
        self._received = 0  # bytes of the current head received so far (counted before parsing)
        self._tail = b""  # the last bytes of the head so far: "\r\n\r\n" may span two packets
        self._parsed = 0  # bytes of the current head the parser reported (request line, headers)
        self._too_large = False
        self._owed_431 = False  # refused while earlier requests' answers were still due

    def data_received(self, data: bytes) -> None:
        if self._discarded is not None:
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self.transport.close()
            return
        if self._in_head:
            probe = self._tail + data
            end = probe.find(_END)
            if end == -1:
                self._received += len(data)
                if self._received > self.max_header_bytes:
                    self._refuse_head()
                    return
                self._tail = probe[-3:]
            else:
                if self._received + end + len(_END) - len(self._tail) > self.max_header_bytes:
                    self._refuse_head()
                    return
                self._in_head = False  # until this request's message is complete
        super().data_received(data)

    # parser callbacks: the exact size of each head, pipelined ones included
    def on_message_begin(self) -> None:
        self._parsed = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url) + 16)  # "METHOD " and " HTTP/1.1\r\n"
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and "\r\n"
        super().on_header(name, value)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._received, self._tail = True, 0, b""

    def _count(self, n: int) -> None:
        self._parsed += n
        if self._parsed > self.max_header_bytes:
            self._too_large = True
            raise _HeadTooLarge  # the parser stops; data_received answers through send_400_response

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse_head()
            return
        super().send_400_response(msg)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._owed_431 and not self._answers_due():
            if self.timeout_keep_alive_task is not None:
                self.timeout_keep_alive_task.cancel()
                self.timeout_keep_alive_task = None
            self._send_431()

    def _answers_due(self) -> bool:
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def _refuse_head(self) -> None:
        """Parse nothing more; answer 431 now, or after the answers still due to earlier requests."""
        self._discarded = 0
        if self._answers_due():
            self._owed_431 = True
        else:
            self._send_431()

    def _send_431(self) -> None:
        self._owed_431 = False
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
    """The uvicorn configuration of ``shipwarden serve``: httptools with ``HeaderGuard``'s header limit."""
    guard = type("HeaderGuard", (HeaderGuard,), {"refusals": refusals})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guard,
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
