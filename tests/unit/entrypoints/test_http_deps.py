"""``deps._url_path``: the path an access entry records is ``request.url.path``, without building a URL."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from shipwarden.entrypoints.http.deps import _url_path


def _starlette(path: str) -> str:
    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": [(b"host", b"h")]}
    return Request(scope).url.path


@given(st.text(alphabet=st.sampled_from("/a%?#\\\t\r\n é\x00;=+ "), max_size=30).map(lambda t: "/" + t))
def test_the_recorded_path_is_starlettes(path: str) -> None:
    assert _url_path(path) == _starlette(path)


def test_plain_and_special_paths() -> None:
    for path in ("/deployments", "/audit", "/a?b#c\\d", "/x\ty\r\nz", "/é/%2F"):
        assert _url_path(path) == _starlette(path), path
