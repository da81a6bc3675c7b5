"""Direct routes: the hottest reads answered without FastAPI's per-request machinery (issue 9, class 12).

For ``GET /deployments`` with a token, FastAPI spent more CPU than everything the request does:
matching the path against each router's routes, solving the dependency graph (per request it
re-inspects every parameter: ``request_params_to_args``, cache keys, scopes, default values),
validating the query parameters through pydantic, the endpoint's worker-thread wrapper and its
telemetry hooks — about half of the server's CPU per request.

A :class:`DirectRoute` is a second way into one route, for requests of the plainest shape only
(an exact path, a query string of known names with values in a strict form).  It calls the
*same* access dependency as the FastAPI route (``deps.require``: authentication, authorisation,
the access entry awaited before anything else happens) and the same store read, and sends the
same bytes.  Everything else — another query string, a missing or malformed value, any method
but the route's — is not taken and goes through FastAPI as before; so validation errors (422),
the OpenAPI document and every unusual request keep FastAPI's exact behaviour.

:class:`DirectRoutes` sits where FastAPI's router does (inside ``ExceptionMiddleware``), so an
exception a direct route raises — 401/403 from ``require``, a store error — is answered by the
app's own exception handlers, exactly as from the FastAPI route.  It sets ``scope["route"]`` to
the FastAPI route, so ``/metrics`` counts direct requests under the same template.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["DirectRoute", "DirectRoutes", "simple_query"]

Handler = Callable[[Request, dict[str, str]], Awaitable[Callable[[Scope, Receive, Send], Awaitable[None]]]]
"""``handler(request, query)``: authorise (the route's own dependency), act, return the response."""


@dataclass(frozen=True)
class DirectRoute:
    method: str
    path: str
    query: Mapping[str, Callable[[str], bool]]
    """The query parameters this route takes directly, each with a check of its raw value."""
    handler: Handler


def simple_query(raw: bytes, accepted: Mapping[str, Callable[[str], bool]]) -> dict[str, str] | None:
    """``raw`` as ``{name: value}`` if it is only ``name=value`` pairs of ``accepted`` names, each
    at most once, of plain ASCII (no escapes, no ``+``) that its check accepts; else ``None``."""
    if not raw:
        return {}
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    out: dict[str, str] = {}
    for pair in text.split("&"):
        name, eq, value = pair.partition("=")
        check = accepted.get(name)
        if check is None or not eq or name in out or "%" in value or "+" in value or not check(value):
            return None
        out[name] = value
    return out


class DirectRoutes:
    """ASGI: a request of a direct route's shape goes to its handler; any other to ``app``."""

    def __init__(self, app: ASGIApp, routes: list[tuple[DirectRoute, Any]]) -> None:
        self.app = app
        self.routes = {(r.method, r.path): (r, api_route) for r, api_route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = self.routes.get((scope["method"], scope["path"]))
            if found is not None:
                route, api_route = found
                query = simple_query(scope["query_string"], route.query)
                if query is not None:
                    scope["route"] = api_route
                    response = await route.handler(Request(scope, receive), query)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
