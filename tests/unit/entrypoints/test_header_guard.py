"""``server.HeaderGuard`` (uvicorn's httptools protocol with a header limit) fed bytes directly: a head
over the limit gets 431 however it arrives — whole, in small packets, behind another request on
the same connection — and is never handed whole to the parser; a head within the limit followed
by a large body in the same packet is served."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from shipwarden.entrypoints.http.server import MAX_HEADER_BYTES, HeaderGuard


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = b""
        self.closed = self.eof = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5555)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += bytes(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def app(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    text = f"{scope['path']} {len(body)}".encode()
    headers = [(b"content-length", b"%d" % len(text))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": text})


def _feed(*packets: bytes) -> Transport:
    async def run() -> Transport:
        config = uvicorn.Config(app, http=HeaderGuard, log_level="critical")
        proto = HeaderGuard(config=config, server_state=ServerState(), app_state={})
        t = Transport()
        proto.connection_made(t)
        for p in packets:
            proto.data_received(p)
            for _ in range(20):
                await asyncio.sleep(0)
        for _ in range(50):
            await asyncio.sleep(0)
        return t

    return asyncio.run(run())


def _statuses(out: bytes) -> list[int]:
    return [int(part[:3]) for part in out.split(b"HTTP/1.1 ")[1:]]


def _get(path: str, headers: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"


BIG = b"X-Big: " + b"a" * (MAX_HEADER_BYTES + 100) + b"\r\n"


def test_a_head_over_the_limit_is_431_whole_or_in_small_packets() -> None:
    t = _feed(_get("/a", BIG))
    assert _statuses(t.out) == [431] and t.eof
    raw = _get("/a", BIG)
    t = _feed(*(raw[i : i + 1000] for i in range(0, len(raw), 1000)))
    assert _statuses(t.out) == [431]
    endless = [b"GET /a HTTP/1.1\r\nX-Big: "] + [b"a" * 4096] * 100  # never ends: refused, not buffered
    assert _statuses(_feed(*endless).out) == [431]


def test_a_big_head_behind_another_request_is_431() -> None:
    t = _feed(_get("/first") + _get("/second", BIG))
    assert _statuses(t.out) == [200, 431]
    assert b"/first 0" in t.out and b"/second" not in t.out


def test_heads_within_the_limit_are_served_with_their_bodies() -> None:
    near = b"X-Near: " + b"a" * (MAX_HEADER_BYTES - 200) + b"\r\n"
    body = b"b" * (3 * MAX_HEADER_BYTES)
    post = b"POST /p HTTP/1.1\r\nHost: x\r\n" + near + b"Content-Length: %d\r\n\r\n" % len(body) + body
    t = _feed(post + _get("/next", near))  # one packet: near-limit head, body over the limit, another
    assert _statuses(t.out) == [200, 200], t.out[:300]
    assert b"/p %d" % len(body) in t.out and b"/next 0" in t.out
    t = _feed(*(post[i : i + 7] for i in range(0, len(post), 7)))  # the "\r\n\r\n" split across packets
    assert _statuses(t.out) == [200]
