"""Issue 9: a version sent to ``POST /services/{s}/deployments`` follows the one version rule
(``domain/version.py``): an invalid one is a 422 naming the problem, and no deployment is recorded."""

from __future__ import annotations

import pytest

from tests.integration.http.conftest import Api

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("../../etc/passwd", "contains a path separator"),
        ("v1..v2", "contains '..'"),
        ("v1;reboot", "character ';' is not allowed"),
        ("{version}", "character '{' is not allowed"),
        (".hidden", "it must start with a letter or digit"),
        ("", "the version is empty"),
        ("9" * 129, "is 129 characters long; at most 128"),
    ],
)
def test_an_invalid_version_is_422_with_the_reason_and_records_no_deployment(
    api: Api, version: str, message: str
) -> None:
    api.user("rm", "release-manager")
    c = api.session("rm")
    r = c.post("/services/web/deployments", json={"version": version})
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "version"] and message in problem["msg"], problem
    assert api.services.store.history("web", 10) == []


def test_a_valid_version_is_accepted(api: Api) -> None:
    api.user("rm", "release-manager")
    r = api.session("rm").post("/services/web/deployments", json={"version": "2.0.0-rc.1+3f9c2a1"})
    assert r.status_code == 202, r.text
    assert api.services.store.get(r.json()["id"]).to_version == "2.0.0-rc.1+3f9c2a1"
