"""Post-deployment checks that talk to the deployed service over the network.

``confirm_security`` is the security confirmation of the post-deployment phase
(E4): where the service is exposed over HTTPS, the TLS handshake must verify
(against the system store or the policy's ``caFile``) and the negotiated
protocol is recorded; the required security headers must be present either way.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shipwarden.domain.delivery import SecurityConfirmation, missing_headers


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"check": self.name, "ok": self.ok, "detail": self.detail}
        if self.data:
            out["data"] = self.data
        return out


def confirm_security(spec: SecurityConfirmation, default_url: str, base_dir: Path) -> Check:
    """GET the public URL (or ``default_url``): verified TLS when https, required headers always."""
    url = spec.url or default_url
    https = url.startswith("https://")
    data: dict[str, Any] = {"url": url}
    try:
        verify: Any = True
        if https and spec.ca_file:
            verify = ssl.create_default_context(cafile=str(base_dir / spec.ca_file))
        with httpx.Client(timeout=5.0, verify=verify, trust_env=False) as client:
            with client.stream("GET", url) as r:
                if https:  # read the session before the body: a server may close right after it
                    stream = r.extensions.get("network_stream")
                    ssl_obj = stream.get_extra_info("ssl_object") if stream is not None else None
                    if ssl_obj is not None:
                        data["tls"] = {"version": ssl_obj.version(), "cipher": (ssl_obj.cipher() or ("",))[0]}
                r.read()
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        what = "TLS/HTTP check" if https else "HTTP check"
        return Check("security", False, f"{what} of {url} failed: {exc}", data)
    missing = missing_headers(r.headers, spec.require_headers)
    data["headers"] = {h: r.headers.get(h) for h in spec.require_headers if h in r.headers}
    tls = f"TLS verified ({data.get('tls', {}).get('version', '?')})" if https else "not exposed over HTTPS"
    if missing:
        return Check("security", False, f"{tls}; missing security headers: {', '.join(missing)}", data)
    return Check("security", True, f"{tls}; required headers present ({len(spec.require_headers)})", data)


__all__ = ["Check", "confirm_security"]
