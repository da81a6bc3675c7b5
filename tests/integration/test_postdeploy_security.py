"""Post-deployment security confirmation against a real TLS server (E4)."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shipwarden.domain.delivery import SecurityConfirmation
from shipwarden.entrypoints.http.tls import dev_certificate
from shipwarden.services.postdeploy import confirm_security

pytestmark = pytest.mark.integration

HEADERS = {"Strict-Transport-Security": "max-age=63072000", "X-Content-Type-Options": "nosniff"}
REQUIRED = ["Strict-Transport-Security", "X-Content-Type-Options", "Content-Security-Policy"]


def _handler(headers: dict[str, str]) -> type[BaseHTTPRequestHandler]:
    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a: object) -> None:
            pass

    return H


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """An HTTPS server on a free loopback port with a self-signed certificate; headers mutable."""
    cert, key = dev_certificate(tmp_path / "tls")
    headers = dict(HEADERS)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(headers))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/", cert, headers
    server.shutdown()
    server.server_close()


def _spec(url: str, ca: Path | None, required: list[str]) -> SecurityConfirmation:
    data = {"url": url, "requireHeaders": required, **({"caFile": str(ca)} if ca else {})}
    return SecurityConfirmation.model_validate(data)


def test_verified_tls_with_every_header_passes_and_records_the_protocol(tls_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url, cert, headers = tls_server
    headers["Content-Security-Policy"] = "default-src 'self'"
    check = confirm_security(_spec(url, cert, REQUIRED), "http://unused/", tmp_path)
    assert check.ok, check.detail
    assert check.data["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert "TLS verified" in check.detail and set(check.data["headers"]) == set(REQUIRED)


def test_a_missing_security_header_fails_and_names_it(tls_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url, cert, _ = tls_server
    check = confirm_security(_spec(url, cert, REQUIRED), "http://unused/", tmp_path)
    assert not check.ok
    assert check.detail.endswith("missing security headers: Content-Security-Policy"), check.detail


def test_a_certificate_the_client_cannot_verify_fails_the_check(tls_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url, _, _ = tls_server  # no caFile: the system store does not trust the self-signed certificate
    check = confirm_security(_spec(url, None, []), "http://unused/", tmp_path)
    assert not check.ok and "TLS/HTTP check" in check.detail and "CERTIFICATE_VERIFY_FAILED" in check.detail


def test_plain_http_is_reported_as_not_exposed_over_https(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler({"X-Content-Type-Options": "nosniff"}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        default = f"http://127.0.0.1:{server.server_address[1]}/"
        spec = SecurityConfirmation.model_validate({"requireHeaders": ["X-Content-Type-Options"]})
        check = confirm_security(spec, default, tmp_path)
        assert check.ok and check.detail.startswith("not exposed over HTTPS"), check.detail
    finally:
        server.shutdown()
        server.server_close()
