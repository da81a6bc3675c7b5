"""API tokens verified once are authenticated from memory — and every change still takes effect at once
(issue 9, class 12; E5).

``serve`` keeps the tokens it has verified (``AccessService.verified_tokens``) so that a request with
a known token reads nothing from the store before it is judged.  Each cached verdict carries the
*access generation* it was read at, and the transaction that commits the request's access entry
refuses a verdict of another generation; the request is then judged again from the store.  Here
the changes are made by *another process* on the same database (a second service, as the admin
CLI is), whose revocation this process's memory cannot hear of — and on each kind of database.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from shipwarden.bootstrap import Services, build_service, load_policy
from shipwarden.services.access import parse_binding
from tests.integration.http.conftest import Api, make_api

pytestmark = pytest.mark.integration


class Setup:
    def __init__(self, api: Api, other: Services) -> None:
        self.api, self.other = api, other
        svc = api.services
        svc.access.create_user("setup", "reader", None, [parse_binding("auditor")], ())
        self.token, self.rec = svc.access.issue_token(
            "setup", "reader", "ci", ["deployment.read", "audit.read"], timedelta(hours=1)
        )
        self.client = api.client()
        self.token_reads = 0
        event.listen(svc.store.engine, "before_cursor_execute", self._count)

    def _count(self, _conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "api_tokens" in statement and statement.lstrip().upper().startswith("SELECT"):
            self.token_reads += 1

    def get(self, path: str = "/deployments", ip: str | None = None) -> tuple[int, str]:
        c = self.api.client(ip) if ip else self.client
        r = c.get(path, headers={"Authorization": f"Bearer {self.token}"})
        return r.status_code, r.text

    def accesses(self) -> list[dict[str, object]]:
        return self.api.audit(action="access")


@pytest.fixture
def setup(tmp_path: Path, database_url: str) -> Iterator[Setup]:
    api = make_api(tmp_path, database_url=database_url)
    settings = api.services.settings
    other = build_service(settings, load_policy(settings.policy), clock=api.clock)  # the admin CLI
    s = Setup(api, other)
    yield s
    for svc in (api.services, other):
        svc.audit.close()
        svc.store.engine.dispose()


def test_a_verified_token_is_not_read_again_and_every_request_is_audited(setup: Setup) -> None:
    before = len(setup.accesses())
    assert setup.get()[0] == 200
    reads = setup.token_reads
    assert reads >= 1
    for _ in range(5):
        assert setup.get()[0] == 200
    assert setup.token_reads == reads  # authenticated from memory
    entries = setup.accesses()[before:]
    assert len(entries) == 6 and all(e["outcome"] == "allowed" for e in entries)  # still audited, each
    setup.api.clock.advance(seconds=61)  # older than max_age: verified against the store again
    assert setup.get()[0] == 200
    assert setup.token_reads > reads


def test_revocation_by_another_process_takes_effect_at_once(setup: Setup) -> None:
    assert setup.get()[0] == 200
    assert setup.get()[0] == 200  # from memory
    before = len(setup.accesses())
    setup.other.access.revoke_token("admin", setup.rec.id)
    status, text = setup.get()
    assert status == 401 and "revoked" in text
    entries = setup.accesses()[before:]
    # the stale verdict was never recorded: one entry for the request, the refusal
    assert [(e["outcome"], e["detail"]["status"]) for e in entries] == [("denied", 401)], entries


def test_revocation_through_this_process_takes_effect_at_once(setup: Setup) -> None:
    assert setup.get()[0] == 200
    setup.api.services.access.revoke_token("admin", setup.rec.id)
    assert setup.get()[0] == 401


def test_a_role_change_by_another_process_takes_effect_at_once(setup: Setup) -> None:
    assert setup.get("/audit")[0] == 200
    assert setup.get("/audit")[0] == 200
    setup.other.access.set_roles("admin", "reader", [parse_binding("viewer")])  # no audit.read any more
    status, text = setup.get("/audit")
    assert status == 403, text
    assert setup.get("/deployments")[0] == 200  # what the new role grants still works
    setup.other.access.set_roles("admin", "reader", [parse_binding("auditor")])
    assert setup.get("/audit")[0] == 200


def test_an_allowlist_change_by_another_process_takes_effect_at_once(setup: Setup) -> None:
    assert setup.get()[0] == 200
    assert setup.get(ip="10.1.2.3")[0] == 200  # the cached verdict holds no address: each request's own
    setup.other.access.set_cidrs("admin", "reader", ["10.0.0.0/8"])
    assert setup.get()[0] == 403  # 127.0.0.1 is outside the owner's list now
    assert setup.get(ip="10.1.2.3")[0] == 200


def test_disabling_the_owner_in_another_process_takes_effect_at_once(setup: Setup) -> None:
    assert setup.get()[0] == 200
    setup.other.access.set_disabled("admin", "reader", True)
    status, text = setup.get()
    assert status == 401 and "disabled" in text


def test_expiry_is_checked_at_every_use(setup: Setup) -> None:
    assert setup.get()[0] == 200
    setup.api.clock.advance(minutes=59)
    assert setup.get()[0] == 200
    setup.api.clock.advance(minutes=2)  # past the token's hour, with nothing changed in the store
    status, text = setup.get()
    assert status == 401 and "expired" in text
