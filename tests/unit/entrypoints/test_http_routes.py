"""The routers of the HTTP API share no path: the order they are matched in (``app.ROUTERS``, hot
routes first) can decide nothing but how soon a request finds its route."""

from __future__ import annotations

import importlib
import re

from fastapi.routing import APIRoute

from shipwarden.entrypoints.http.app import ROUTERS


def _routes() -> list[tuple[str, APIRoute]]:
    out = []
    for name in ROUTERS:
        router = importlib.import_module(f"shipwarden.entrypoints.http.routes.{name}").router
        out += [(name, r) for r in router.routes if isinstance(r, APIRoute)]
    return out


def test_no_route_of_one_router_matches_a_path_of_another() -> None:
    routes = _routes()
    assert len({n for n, _ in routes}) == len(ROUTERS) == len(set(ROUTERS))
    for name, route in routes:
        example = re.sub(r"\{[^}]+\}", "x1", route.path)
        for other_name, other in routes:
            if other_name != name and other.path_regex.match(example):
                shared = route.methods & other.methods
                assert not shared, f"{route.path} ({name}) and {other.path} ({other_name}): {shared}"


def test_the_hot_reads_are_matched_first() -> None:
    assert ROUTERS[:3] == ["deployments", "webhooks", "audit"]
