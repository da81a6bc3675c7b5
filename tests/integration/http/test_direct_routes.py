"""``GET /deployments`` answered by its direct route (``entrypoints/http/direct.py``) is the same
request as through FastAPI: the same status, body and headers, one access entry each, the same
refusals (issue 9, class 12).  Requests of another shape are left to FastAPI."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from starlette.requests import Request

from shipwarden.domain.rollout import Phase, Transition
from shipwarden.entrypoints.http.direct import DirectRoute, simple_query
from shipwarden.entrypoints.http.routes import deployments
from shipwarden.services.access import parse_binding
from tests.integration.http.conftest import Api

pytestmark = pytest.mark.integration
_USERS = itertools.count()


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The query strings the direct route answered (the app must be created after this fixture)."""
    seen: list[str] = []
    (route,) = deployments.DIRECT

    async def counting(request: Request, query: dict[str, str]) -> Any:
        seen.append(request.scope["query_string"].decode())
        return await route.handler(request, query)

    monkeypatch.setattr(deployments, "DIRECT", [DirectRoute(route.method, route.path, route.query, counting)])
    yield seen


def _token(api: Api, *roles: str, scopes: tuple[str, ...] = ("deployment.read",)) -> str:
    name = f"u{next(_USERS)}"
    api.services.access.create_user("setup", name, None, [parse_binding(r) for r in roles], ())
    token, _ = api.services.access.issue_token("setup", name, "t", list(scopes), timedelta(hours=1))
    return token


def _record(api: Api, n: int) -> None:
    store = api.services.store
    for i in range(n):
        dep = store.create_deployment(
            service="web", kind="deploy", strategy="blueGreen", from_version=f"v{i}", to_version=f"v{i + 1}",
            actor="t", policy_digest="d" * 64, policy_source="p", plan={},
        )  # fmt: skip
        if i < n - 1:  # the last one stays in progress
            store.transition(dep, Transition(Phase.FAILED, "done"), actor="t")


def _answer(api: Api, token: str, query: str) -> tuple[int, str, dict[str, str]]:
    r = api.client().get(f"/deployments{query}", headers={"Authorization": f"Bearer {token}"})
    headers = {k: v for k, v in r.headers.items() if k != "date"}
    return r.status_code, r.text, headers


@pytest.mark.parametrize(
    ("direct", "through_fastapi"),
    [
        ("", "?limit=20&limit=20"),
        ("?limit=3", "?limit=3&limit=3"),
        ("?service=web&limit=2", "?service=web&service=web&limit=2"),
        ("?service=nope", "?service=nope&service=nope"),
    ],
)
def test_the_direct_route_answers_as_fastapi_does(
    api: Api, taken: list[str], direct: str, through_fastapi: str
) -> None:
    _record(api, 5)
    token = _token(api, "auditor")
    first = _answer(api, token, direct)  # verifies the token from the store: FastAPI's path
    before = len(api.audit(action="access"))
    assert _answer(api, token, direct) == first
    assert _answer(api, token, through_fastapi) == first
    assert taken == [direct.lstrip("?")] * 2
    entries = api.audit(action="access")[before:]
    assert [e["outcome"] for e in entries] == ["allowed", "allowed"]
    assert entries[0]["detail"] == entries[1]["detail"]
    assert first[0] == 200


def test_refusals_are_the_same_and_audited(api: Api, taken: list[str]) -> None:
    unscoped = _token(api, "auditor", scopes=("audit.read",))
    _answer(api, unscoped, "")  # cached from here on
    for token, status in (("sw_" + "x" * 40, 401), (unscoped, 403)):
        before = len(api.audit(action="access"))
        direct = _answer(api, token, "")
        assert direct == _answer(api, token, "?limit=20&limit=20")
        assert direct[0] == status
        assert [e["outcome"] for e in api.audit(action="access")[before:]] == ["denied", "denied"]
    assert len(taken) == 3


@pytest.mark.parametrize("query", ["?limit=0", "?limit=501", "?limit=05", "?limit=x", "?service=", "?x=1"])
def test_other_shapes_go_to_fastapi(api: Api, taken: list[str], query: str) -> None:
    token = _token(api, "auditor")
    status, _, _ = _answer(api, token, query)
    assert taken == []
    assert status in (200, 422)


def test_simple_query() -> None:
    accepted = {"a": str.isdigit, "b": str.isalpha}
    assert simple_query(b"", accepted) == {}
    assert simple_query(b"a=1&b=x", accepted) == {"a": "1", "b": "x"}
    for raw in (b"a=1&a=1", b"a", b"a=", b"c=1", b"a=%31", b"b=x+y", b"a=1&", "a=\u00e9".encode()):
        assert simple_query(raw, accepted) is None, raw
