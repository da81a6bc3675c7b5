"""A small, fast HTTP/1.1 sample service for rollout tests and benchmarks.

It stands in for a real application behind the router: it reports its
version (so routing can be verified per request), can be told to fail or be
slow (so canary analysis has something to detect), exposes Prometheus
metrics, and drains gracefully on SIGTERM (so zero-downtime claims are
tested against a well-behaved backend, as a production service would be).

It is built on ``asyncio.Protocol`` rather than ``http.server`` because the
benchmarks push a million requests through it over keep-alive connections;
a per-request thread or stream object would make the service, not the
router, the thing being measured.

Run: ``PORT=8001 SAMPLE_VERSION=v2 python examples/sample_service/app.py``

Environment:
    PORT               port to listen on (required)
    SAMPLE_HOST        address to bind (default 127.0.0.1)
    SAMPLE_VERSION     version reported in the body and ``X-Version`` (default v1)
    SAMPLE_SERVICE     service name reported in the body (default sample)
    SAMPLE_ERROR_RATE  probability 0..1 that ``GET /`` answers 500
    SAMPLE_ERRORS_FROM unix time from which the error rate applies (default: from start; benchmarks
                       use it to make a healthy canary start failing at a known instant)
    SAMPLE_ERROR_QUERY the error rate applies only to requests whose query string contains this
                       (default: to every ``GET /``; tests load ``/?load`` with errors, while the
                       rollout's own probes of ``/`` see none)
    SAMPLE_LATENCY_MS  latency added to ``GET /`` in milliseconds (float)
    SAMPLE_DRAIN_TIMEOUT  seconds to wait for in-flight requests on SIGTERM (default 5)
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
MAX_HEADER_BYTES = 64 * 1024


class Config:
    """Settings read once from the environment at start-up."""

    def __init__(self, env: dict[str, str]) -> None:
        if "PORT" not in env:
            raise SystemExit("PORT is required")
        self.port = int(env["PORT"])
        self.host = env.get("SAMPLE_HOST", "127.0.0.1")
        self.version = env.get("SAMPLE_VERSION", "v1")
        self.service = env.get("SAMPLE_SERVICE", "sample")
        self.error_rate = float(env.get("SAMPLE_ERROR_RATE", "0") or 0)
        self.errors_from = float(env.get("SAMPLE_ERRORS_FROM", "0") or 0)
        self.error_query = env.get("SAMPLE_ERROR_QUERY", "")
        self.latency = float(env.get("SAMPLE_LATENCY_MS", "0") or 0) / 1000.0
        self.drain_timeout = float(env.get("SAMPLE_DRAIN_TIMEOUT", "5") or 5)
        if not 0.0 <= self.error_rate <= 1.0:
            raise SystemExit("SAMPLE_ERROR_RATE must be within 0..1")


class App:
    """Request handling and shared state (metrics, draining flag, open connections)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.draining = False
        self.connections: set[HttpProtocol] = set()
        self.registry = CollectorRegistry()
        requests = Counter(
            "sample_http_requests", "Requests to / by version and status code.",
            ["version", "code"], registry=self.registry,
        )
        duration = Histogram(
            "sample_http_request_duration_seconds", "Time to answer / (including injected latency).",
            ["version"], buckets=BUCKETS, registry=self.registry,
        )
        # Label children are bound once: labels() per request costs more than the request itself.
        self.count_ok = requests.labels(cfg.version, "200")
        self.count_err = requests.labels(cfg.version, "500")
        self.observe = duration.labels(cfg.version).observe
        body = json.dumps({"service": cfg.service, "version": cfg.version}).encode()
        self.ok_body = body
        self.err_body = json.dumps({"error": "injected failure", "version": cfg.version}).encode()
        self.version_header = f"X-Version: {cfg.version}\r\n".encode()

    def response(self, status: bytes, body: bytes, ctype: bytes, close: bool, extra: bytes = b"") -> bytes:
        """Serialise one response; ``close`` adds ``Connection: close``."""
        conn = b"Connection: close\r\n" if close else b""
        return b"".join((
            b"HTTP/1.1 ", status, b"\r\nContent-Type: ", ctype,
            b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n", extra, conn, b"\r\n", body,
        ))


class HttpProtocol(asyncio.Protocol):
    """One client connection: parses requests in order and answers them one at a time.

    Requests are answered strictly in order (HTTP/1.1 pipelining rules); while an
    answer is delayed by injected latency, later bytes stay buffered.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.buf = b""
        self.busy = False
        self.closing = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.app.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.connections.discard(self)
        self.closing = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self.process()

    @property
    def idle(self) -> bool:
        return not self.busy and not self.buf

    def close(self) -> None:
        if self.transport is not None and not self.closing:
            self.closing = True
            self.transport.close()

    def process(self) -> None:
        """Handle every complete request in the buffer, stopping at a delayed one."""
        while not self.busy and not self.closing:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEADER_BYTES:
                    self.reply(b"431 Request Header Fields Too Large", b"", b"text/plain", True)
                return
            head = self.buf[:end].decode("latin-1")
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                self.reply(b"400 Bad Request", b"bad request\n", b"text/plain", True)
                return
            method, target, proto = parts
            keep_alive = proto == "HTTP/1.1"
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip() or 0)
                elif name == "connection":
                    v = value.strip().lower()
                    keep_alive = v != "close" if proto == "HTTP/1.1" else v == "keep-alive"
                elif name == "transfer-encoding":
                    self.reply(b"411 Length Required", b"", b"text/plain", True)
                    return
            total = end + 4 + length
            if len(self.buf) < total:
                return
            self.buf = self.buf[total:]
            self.handle(method, target, not keep_alive or self.app.draining)

    def handle(self, method: str, target: str, close: bool) -> None:
        app = self.app
        path, _, query = target.partition("?")
        if path == "/":
            start = time.perf_counter()
            failing = app.cfg.error_rate and time.time() >= app.cfg.errors_from
            failing = failing and app.cfg.error_query in query
            if failing and random.random() < app.cfg.error_rate:
                data = b"500 Internal Server Error", app.err_body, app.count_err
            else:
                data = b"200 OK", app.ok_body, app.count_ok
            if app.cfg.latency > 0:
                self.busy = True
                loop = asyncio.get_running_loop()
                loop.call_later(app.cfg.latency, self.answer_root, data, start, close, True)
            else:
                self.answer_root(data, start, close, False)
        elif path == "/healthz":
            if app.draining:
                self.reply(b"503 Service Unavailable", b"draining\n", b"text/plain", True)
            else:
                self.reply(b"200 OK", b"ok\n", b"text/plain", close)
        elif path == "/metrics":
            body = generate_latest(app.registry)
            self.reply(b"200 OK", body, CONTENT_TYPE_LATEST.encode(), close)
        else:
            self.reply(b"404 Not Found", b"not found\n", b"text/plain", close)

    def answer_root(self, data: tuple[bytes, bytes, Any], start: float, close: bool, delayed: bool) -> None:
        status, body, counter = data
        close = close or self.app.draining
        counter.inc()
        self.app.observe(time.perf_counter() - start)
        self.busy = False
        self.reply(status, body, b"application/json", close, self.app.version_header)
        if delayed and self.buf:
            self.process()  # requests that arrived while this one was delayed

    def reply(self, status: bytes, body: bytes, ctype: bytes, close: bool, extra: bytes = b"") -> None:
        self.finish(self.app.response(status, body, ctype, close, extra), close)

    def finish(self, payload: bytes, close: bool) -> None:
        """Write a response; close the connection after it if it said ``Connection: close``."""
        if self.transport is None or self.closing:
            return
        self.transport.write(payload)
        if close:
            self.closing = True
            self.transport.close()


async def serve(cfg: Config) -> int:
    """Serve until SIGTERM/SIGINT, then drain: refuse new connections, finish in-flight work, exit."""
    app = App(cfg)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(app), cfg.host, cfg.port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    app.draining = True
    server.close()  # stop accepting; established connections stay open
    deadline = loop.time() + cfg.drain_timeout
    while app.connections and loop.time() < deadline:
        for conn in list(app.connections):
            if conn.idle:
                conn.close()  # idle keep-alive: nothing in flight; the proxy retries a racing request
        await asyncio.sleep(0.01)
    for conn in list(app.connections):
        conn.close()
    await asyncio.sleep(0)
    return 0


def main() -> int:
    cfg = Config(dict(os.environ))
    return asyncio.run(serve(cfg))


if __name__ == "__main__":
    sys.exit(main())
