"""The sample service behaves as the rollout tests and benchmarks assume (real processes)."""

from __future__ import annotations

import math
import signal
import socket
import time
from collections.abc import Callable

import httpx
import pytest
from examples.sample_service import SampleService

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("sample_service")]

Factory = Callable[..., SampleService]


def _metric(text: str, name: str, **labels: str) -> float:
    """Value of one sample in Prometheus text, 0 if absent."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, _, value = line.rpartition(" ")
            got = series[len(name):].strip("{}")
            if ",".join(sorted(got.split(","))) == want or (not want and not got):
                return float(value)
    return 0.0


def test_root_reports_version_in_body_and_header(sample_service: Factory) -> None:
    svc = sample_service("v7")
    resp = httpx.get(svc.url)
    assert resp.status_code == 200
    assert resp.headers["X-Version"] == "v7"
    assert resp.json() == {"service": "sample", "version": "v7"}
    assert httpx.get(svc.url + "healthz").text == "ok\n"
    assert httpx.get(svc.url + "nope").status_code == 404


def test_keep_alive_serves_many_requests_on_one_connection(sample_service: Factory) -> None:
    svc = sample_service("v1")
    with socket.create_connection(("127.0.0.1", svc.port)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3)  # pipelined: answered in order
        data = b""
        s.settimeout(2)
        while data.count(b"HTTP/1.1 200") < 3:
            chunk = s.recv(65536)
            assert chunk, "connection closed early"
            data += chunk
    assert data.count(b"X-Version: v1") == 3


def test_error_injection_rate_is_roughly_right(sample_service: Factory) -> None:
    svc = sample_service("v2", error_rate=0.3)
    n, p = 400, 0.3
    with httpx.Client() as client:
        codes = [client.get(svc.url).status_code for _ in range(n)]
    errors = codes.count(500)
    assert set(codes) <= {200, 500}
    bound = 5 * math.sqrt(n * p * (1 - p))  # 5 sigma: false alarm ~ 1e-6
    assert abs(errors - n * p) < bound, errors
    metrics = httpx.get(svc.url + "metrics").text
    assert _metric(metrics, "sample_http_requests_total", version="v2", code="500") == errors
    assert _metric(metrics, "sample_http_requests_total", version="v2", code="200") == n - errors


def test_error_rate_one_always_fails(sample_service: Factory) -> None:
    svc = sample_service("v3", error_rate=1.0)
    resp = httpx.get(svc.url)
    assert resp.status_code == 500 and resp.headers["X-Version"] == "v3"


def test_latency_injection_delays_root_and_shows_in_histogram(sample_service: Factory) -> None:
    svc = sample_service("v1", latency_ms=60)
    with httpx.Client() as client:
        for _ in range(5):
            t0 = time.perf_counter()
            assert client.get(svc.url).status_code == 200
            assert time.perf_counter() - t0 >= 0.055
        t0 = time.perf_counter()
        client.get(svc.url + "healthz")  # only / is delayed
        fast = time.perf_counter() - t0
    assert fast < 0.055
    metrics = httpx.get(svc.url + "metrics").text
    name = "sample_http_request_duration_seconds"
    assert _metric(metrics, name + "_count", version="v1") == 5
    assert _metric(metrics, name + "_bucket", version="v1", le="0.05") == 0
    assert _metric(metrics, name + "_bucket", version="v1", le="0.1") == 5
    assert _metric(metrics, name + "_sum", version="v1") >= 5 * 0.055


def test_sigterm_finishes_in_flight_closes_idle_and_exits_zero(sample_service: Factory) -> None:
    svc = sample_service("v1", latency_ms=400)
    idle = socket.create_connection(("127.0.0.1", svc.port))
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    idle.settimeout(3)
    assert b"200 OK" in idle.recv(4096)
    busy = socket.create_connection(("127.0.0.1", svc.port))
    busy.settimeout(5)
    busy.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)  # request is in flight (400 ms injected latency)
    assert svc.proc is not None
    svc.proc.send_signal(signal.SIGTERM)
    answer = b""
    while b"}" not in answer:
        chunk = busy.recv(4096)
        assert chunk, f"in-flight request cut off: {answer!r}"
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close" in answer
    assert idle.recv(4096) == b"", "idle keep-alive connection not closed on drain"
    with pytest.raises(OSError):  # no longer accepting
        socket.create_connection(("127.0.0.1", svc.port), timeout=1).close()
    assert svc.proc.wait(5) == 0
    idle.close()
    busy.close()


def test_sigterm_answers_every_request_already_sent(sample_service: Factory) -> None:
    """Ten connections each with a request in flight when SIGTERM arrives: all get complete 200s."""
    svc = sample_service("v1", latency_ms=200)
    conns = [socket.create_connection(("127.0.0.1", svc.port), timeout=5) for _ in range(10)]
    for c in conns:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.05)
    assert svc.proc is not None
    svc.proc.send_signal(signal.SIGTERM)
    for c in conns:
        data = b""
        while chunk := c.recv(4096):
            data += chunk
        c.close()
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"}"), data
    assert svc.proc.wait(5) == 0
