"""Operator requests over the API: each steers the active deployment, is recorded with who asked,
and is audited; with nothing in progress the request is refused with a clear message and
records nothing but the access decision."""

from __future__ import annotations

import pytest

from shipwarden.domain.rollout import OperatorRequest
from tests.integration.http.conftest import Api

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("action", ["promote", "confirm", "pause", "resume", "abort"])
def test_operator_request_is_recorded_for_the_active_deployment(api: Api, action: str) -> None:
    api.user("rm", "release-manager")
    c = api.session("rm")
    r = c.post("/services/web/deployments", json={"version": "v1"})
    assert r.status_code == 202, r.text
    dep_id = r.json()["id"]

    r = c.post(f"/services/web/{action}")
    assert r.status_code == 202, r.text
    want = OperatorRequest.ROLLBACK if action == "abort" else OperatorRequest(action)
    dep = api.services.store.get(dep_id)
    assert dep.operator_request is want and dep.operator_actor == "rm"
    assert any(e["deployment_id"] == dep_id for e in api.audit(actor="rm"))


def test_a_request_with_nothing_in_progress_is_refused_and_changes_nothing(api: Api) -> None:
    api.user("rm", "release-manager")
    c = api.session("rm")
    before = len(api.audit())
    r = c.post("/services/web/confirm")
    assert r.status_code in (404, 409) and "no deployment in progress" in r.json()["detail"], r.text
    new = api.audit()[before:]
    assert all(e["action"] == "access" for e in new)  # only the access decision is recorded


def test_promote_full_is_a_query_flag_on_promote(api: Api) -> None:
    api.user("rm", "release-manager")
    c = api.session("rm")
    dep_id = c.post("/services/web/deployments", json={"version": "v1"}).json()["id"]
    r = c.post("/services/web/promote", params={"full": "true"})
    assert r.status_code == 202, r.text
    assert api.services.store.get(dep_id).operator_request is OperatorRequest.PROMOTE_FULL
    bad = c.post("/services/web/promote", params={"full": "perhaps"})
    assert bad.status_code == 422  # not a boolean: refused, the recorded request is unchanged
    assert api.services.store.get(dep_id).operator_request is OperatorRequest.PROMOTE_FULL
