"""Inbound HTTP hardening (issue 9, classes 4, 7, 8, 9): what a hostile or broken client can send.

Class 4 runs the real ``shipwarden serve`` over a socket (memory and the 431 are properties of the
server process); the others use the ASGI app in process.  "Nothing stored" is checked on a digest
of every table (``db_digest``): only ``audit_log`` may change, by the refusal's own entry.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from shipwarden.adapters.store.models import EvidenceRow, WebhookDeliveryRow
from tests.integration.http.hardening import (
    InProcess,
    Pipeline,
    changed_tables,
    circleci_doc,
    circleci_request,
    db_digest,
    github_request,
    make_pipeline,
    pipeline_api,
    read_status,
    serve,
    stop,
    workflow_run_doc,
)

pytestmark = pytest.mark.integration
__all__ = ["pipeline_api"]  # the fixture, imported so pytest finds it

SHA = "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c"
MiB = 1024 * 1024


def count(api: InProcess, row: type) -> int:
    with api.services.store._sessions() as s:
        return s.query(row).count()


def refusals(api: InProcess, action: str) -> list[dict[str, Any]]:
    return [e for e in api.services.audit.query(limit=100000) if e["action"] == action]


def assert_nothing_stored_but_audit(before: dict[str, str], api: InProcess) -> None:
    assert changed_tables(before, db_digest(api.services.store.engine)) == ["audit_log"]


# --- class 4: memory exhaustion and oversized headers (real server, real socket) ---------------------------


@pytest.fixture
def served(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    p = make_pipeline(tmp_path, monkeypatch)
    s = serve(p)
    yield p, s
    stop(s)


def _audit_of(p: Pipeline, action: str) -> list[dict[str, Any]]:
    svc = p.services()
    try:
        return [e for e in svc.audit.query(limit=100000) if e["action"] == action]
    finally:
        svc.store.engine.dispose()


def test_chunked_body_over_the_limit_is_413_before_the_server_buffers_it(served: Any) -> None:
    """A 200 MB chunked POST without a signature: the server answers 413 once it has seen the route's
    25 MB limit, and its RSS never grows by more than 80 MB (the old code buffered all 200 MB first,
    then checked the size: several hundred MB)."""
    p, s = served
    baseline = s.rss_kb()
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(
        b"POST /webhooks/github HTTP/1.1\r\nHost: shipwarden\r\nContent-Type: application/json\r\n"
        b"X-GitHub-Event: workflow_run\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    answer: dict[str, Any] = {}
    reader = threading.Thread(target=lambda: answer.update(status=read_status(sock, 120)[0]))
    reader.start()
    peak, chunk = baseline, b"7" * MiB
    try:
        for i in range(200):
            if "status" in answer:
                break
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if i % 4 == 0:
                peak = max(peak, s.rss_kb())
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server may stop reading once it has answered
    reader.join(150)
    peak = max(peak, s.rss_kb())
    sock.close()
    assert answer.get("status") == 413
    grew_mb = (peak - baseline) / 1024
    assert grew_mb < 80, f"RSS grew by {grew_mb:.0f} MB while a 200 MB body streamed in"
    entries = _audit_of(p, "http.refused")
    assert [e["detail"]["status"] for e in entries] == [413]
    assert entries[0]["detail"]["path"] == "/webhooks/github"


def test_oversized_header_block_gets_431_not_a_dropped_connection(served: Any) -> None:
    p, s = served
    for size in (68_000, 300_000):
        sock = socket.create_connection(("127.0.0.1", s.port))
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: shipwarden\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
        except OSError:
            pass
        status, raw = read_status(sock)
        sock.close()
        assert status == 431, raw[:200]
    sock = socket.create_connection(("127.0.0.1", s.port))  # the server still serves normal requests
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: shipwarden\r\nX-Ok: " + b"a" * 4000 + b"\r\n\r\n")
    assert read_status(sock)[0] == 200
    sock.close()
    assert [e["detail"]["status"] for e in _audit_of(p, "http.refused")] == [431, 431]


def test_content_length_over_the_limit_is_413_without_reading(pipeline_api: InProcess) -> None:
    before = db_digest(pipeline_api.services.store.engine)
    with pipeline_api.client() as c:
        r = c.post(
            "/webhooks/circleci",
            content=b"x" * (25 * MiB + 1),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413 and "larger than" in r.json()["detail"]
        r = c.post(
            "/auth/login",
            content=b"{" + b" " * (2 * MiB) + b"}",
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413
    assert_nothing_stored_but_audit(before, pipeline_api)
    assert [e["detail"]["status"] for e in refusals(pipeline_api, "http.refused")] == [413, 413]


# --- class 7: invalid payloads are refused before anything is stored --------------------------------------


def _circle(mutate: Callable[[dict[str, Any]], None]) -> tuple[dict[str, str], bytes]:
    doc = circleci_doc(SHA, "feature/ok")
    mutate(doc)
    return circleci_request(doc)


def _gh(mutate: Callable[[dict[str, Any]], None]) -> tuple[dict[str, str], bytes]:
    doc = workflow_run_doc(SHA, "feature/ok")
    mutate(doc)
    return github_request(doc)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for k in parents:
            node = node[k]
        node[last] = value

    return mutate


INVALID: dict[str, tuple[str, Callable[[], tuple[dict[str, str], bytes]], str]] = {
    "circle sha traversal": (
        "circleci",
        lambda: _circle(_set("pipeline.vcs.revision", "../../etc/passwd")),
        "revision",
    ),
    "circle sha upper case": (
        "circleci",
        lambda: _circle(_set("pipeline.vcs.revision", SHA.upper())),
        "revision",
    ),
    "circle status": ("circleci", lambda: _circle(_set("workflow.status", "succeeded")), "workflow.status"),
    "circle branch ..": ("circleci", lambda: _circle(_set("pipeline.vcs.branch", "../x")), "branch"),
    "circle branch -": ("circleci", lambda: _circle(_set("pipeline.vcs.branch", "-x")), "branch"),
    "circle branch ctrl": ("circleci", lambda: _circle(_set("pipeline.vcs.branch", "a\x07b")), "branch"),
    "circle branch rtl": (
        "circleci",
        lambda: _circle(_set("pipeline.vcs.branch", "fix\u202etxt.exe")),
        "branch",
    ),
    "circle branch 100k": ("circleci", lambda: _circle(_set("pipeline.vcs.branch", "b" * 100_000)), "branch"),
    "circle id too long": ("circleci", lambda: _circle(_set("id", "i" * 129)), "$.id"),
    "circle pipeline id too long": (
        "circleci",
        lambda: _circle(_set("pipeline.id", "p" * 300)),
        "pipeline.id",
    ),
    "gh sha traversal": (
        "github",
        lambda: _gh(_set("workflow_run.head_sha", "../../etc/passwd")),
        "head_sha",
    ),
    "gh conclusion": ("github", lambda: _gh(_set("workflow_run.conclusion", "passed")), "conclusion"),
    "gh status": ("github", lambda: _gh(_set("workflow_run.status", "done")), "workflow_run.status"),
    "gh branch ..": ("github", lambda: _gh(_set("workflow_run.head_branch", "../x")), "head_branch"),
    "gh branch lock": ("github", lambda: _gh(_set("workflow_run.head_branch", "x.lock")), "head_branch"),
    "gh branch 100k": ("github", lambda: _gh(_set("workflow_run.head_branch", "b" * 100_000)), "head_branch"),
    "gh run number overflow": ("github", lambda: _gh(_set("workflow_run.run_number", 2**40)), "run_number"),
    "gh pr number overflow": (
        "github",
        lambda: _gh(_set("workflow_run.pull_requests", [{"number": 2**40}])),
        "pull_requests",
    ),
    "gh delivery id": (
        "github",
        lambda: github_request(workflow_run_doc(SHA, "f"), delivery="d" * 200),
        "Delivery",
    ),
    "gh no event header": (
        "github",
        lambda: (lambda h, b: ({k: v for k, v in h.items() if k != "x-github-event"}, b))(
            *github_request(workflow_run_doc(SHA, "f"))
        ),
        "X-GitHub-Event",
    ),
    "circle no event header": (
        "circleci",
        lambda: (lambda h, b: ({k: v for k, v in h.items() if k != "circleci-event-type"}, b))(
            *circleci_request(circleci_doc(SHA, "f"))
        ),
        "circleci-event-type",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_payload_outside_the_documented_contract_is_400_and_stores_nothing(
    pipeline_api: InProcess, case: str
) -> None:
    provider, make, where = INVALID[case]
    headers, body = make()
    before = db_digest(pipeline_api.services.store.engine)
    with pipeline_api.client() as c:
        r = c.post(f"/webhooks/{provider}", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert where in r.json()["detail"]
    assert_nothing_stored_but_audit(before, pipeline_api)
    [entry] = refusals(pipeline_api, "webhook.rejected")
    assert (entry["outcome"], entry["detail"]["status"]) == ("denied", 400)


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
@pytest.mark.parametrize("provider", ["github", "circleci"])
def test_a_webhook_that_is_not_json_is_415(
    pipeline_api: InProcess, provider: str, content_type: str | None
) -> None:
    headers, body = (
        github_request(workflow_run_doc(SHA, "feature/ok"))
        if provider == "github"
        else circleci_request(circleci_doc(SHA, "feature/ok"))
    )
    headers = {k: v for k, v in headers.items() if k != "content-type"}
    if content_type:
        headers["content-type"] = content_type
    before = db_digest(pipeline_api.services.store.engine)
    with pipeline_api.client() as c:
        r = c.post(f"/webhooks/{provider}", content=body, headers=headers)
    assert r.status_code == 415, r.text
    assert_nothing_stored_but_audit(before, pipeline_api)


# --- class 8: signed hostile input: no 5xx, all or nothing -----------------------------------------------

DEEP = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def _deep_circle() -> tuple[dict[str, str], bytes]:
    body = json.dumps(circleci_doc(SHA, "feature/ok")).encode()
    return circleci_request(body[:-1] + b', "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


HOSTILE: dict[str, Callable[[], tuple[str, dict[str, str], bytes]]] = {
    "github deep": lambda: ("/webhooks/github", *github_request(DEEP)),
    "github 5000 digits": lambda: ("/webhooks/github", *github_request(b'{"action": ' + b"9" * 5000 + b"}")),
    "github pr overflows the column": lambda: (
        "/webhooks/github",
        *github_request(
            json.dumps(
                {
                    **workflow_run_doc(SHA, "feature/big"),
                    "workflow_run": {
                        **workflow_run_doc(SHA, "feature/big")["workflow_run"],
                        "pull_requests": [{"number": 2**64}],
                    },
                }
            ).encode()
        ),
    ),
    "circleci deep": lambda: ("/webhooks/circleci", *_deep_circle()),
    "circleci 5000 digits": lambda: (
        "/webhooks/circleci",
        *circleci_request(
            json.dumps(circleci_doc(SHA, "feature/ok"))
            .encode()
            .replace(b'"number": 42', b'"number": ' + b"4" * 5000)
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_signed_hostile_webhook_is_4xx_and_stores_nothing(pipeline_api: InProcess, case: str) -> None:
    path, headers, body = HOSTILE[case]()
    before = db_digest(pipeline_api.services.store.engine)
    with pipeline_api.client() as c:
        r = c.post(path, content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert_nothing_stored_but_audit(before, pipeline_api)
    assert [e["detail"]["status"] for e in refusals(pipeline_api, "webhook.rejected")] == [400]


def _token(api: InProcess, *scopes: str) -> dict[str, str]:
    from datetime import timedelta

    from shipwarden.services.access import parse_binding

    api.services.access.create_user("setup", "ci", None, [parse_binding("admin")])
    token, _ = api.services.access.issue_token("setup", "ci", "pipeline", list(scopes), timedelta(days=1))
    return {"authorization": f"Bearer {token}"}


BACKUP, PLAN = f"/evidence?kind=backup&commit={SHA}", f"/evidence?kind=rollback-plan&commit={SHA}"
EVENTS = b'{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": '
AUTHORISED_HOSTILE = {
    "k8s deep": ("/k8s/audit", DEEP),
    "k8s 5000 digits": ("/k8s/audit", EVENTS + b"[" + b"1" * 5000 + b"]}"),
    "k8s 1e999": ("/k8s/audit", EVENTS + b'[], "x": 1e999}'),
    "k8s int overflows": ("/k8s/audit", EVENTS + b'[], "x": 99999999999999999999}'),
    "backup deep": (BACKUP, DEEP),
    "backup 5000 digits": (BACKUP, b'{"backupId": "b", "ok": true, "verifiedAt": ' + b"7" * 5000 + b"}"),
    "backup int detail": (
        BACKUP,
        b'{"backupId": "b", "ok": true, "verifiedAt": "2031-03-04T09:00:00Z", "detail": 7}',
    ),
    "plan 5000 digits": (PLAN, b'{"previousVersion": ' + b"1" * 5000 + b"}"),
    "plan deep": (PLAN, b'{"migrations": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "plan lone surrogate": (PLAN, b'{"migrations": [{"name": "\\ud800", "reversible": true}]}'),
}


@pytest.mark.parametrize("case", sorted(AUTHORISED_HOSTILE))
def test_authorised_hostile_body_is_4xx_and_stores_nothing(pipeline_api: InProcess, case: str) -> None:
    path, body = AUTHORISED_HOSTILE[case]
    auth = _token(pipeline_api, "k8s_audit.write", "evidence.write")
    before = db_digest(pipeline_api.services.store.engine)
    with pipeline_api.client() as c:
        r = c.post(path, content=body, headers={**auth, "content-type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert_nothing_stored_but_audit(before, pipeline_api)


def test_a_delivery_is_one_transaction_and_a_failure_blocks_no_redelivery(
    pipeline_api: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change row fails to write: the delivery row and the evidence must not stay behind (they
    used to, and the delivery id then refused every redelivery as a duplicate)."""
    import shipwarden.adapters.store.changes_repo as repo_mod

    sha = pipeline_api.pipeline.remote.commit("feature/tx", {"a.txt": "a\n"}, "tx")
    headers, body = github_request(workflow_run_doc(sha, "feature/tx"))
    real = repo_mod.ChangeRow

    def broken(**kw: Any) -> Any:
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    before = db_digest(pipeline_api.services.store.engine)
    monkeypatch.setattr(repo_mod, "ChangeRow", broken)
    with pipeline_api.client() as c:  # an injected store failure: a 500, and nothing half-written
        assert c.post("/webhooks/github", content=body, headers=headers).status_code == 500
    assert changed_tables(before, db_digest(pipeline_api.services.store.engine)) in ([], ["audit_log"])
    assert (count(pipeline_api, WebhookDeliveryRow), count(pipeline_api, EvidenceRow)) == (0, 0)
    monkeypatch.setattr(repo_mod, "ChangeRow", real)
    with pipeline_api.client() as c:  # GitHub redelivers the same delivery: it is not a duplicate
        r = c.post("/webhooks/github", content=body, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json()["change_id"]


# --- class 9: replays ------------------------------------------------------------------------------------


def test_github_body_replayed_under_a_new_delivery_id_is_409(pipeline_api: InProcess) -> None:
    sha = pipeline_api.pipeline.remote.commit("feature/replay", {"r.txt": "r\n"}, "replay")
    doc = workflow_run_doc(sha, "feature/replay")
    headers, body = github_request(doc)
    with pipeline_api.client() as c:
        assert c.post("/webhooks/github", content=body, headers=headers).status_code == 202
        before = db_digest(pipeline_api.services.store.engine)
        replay_headers = {**headers, "x-github-delivery": str(uuid.uuid4())}
        r = c.post("/webhooks/github", content=body, headers=replay_headers)
        assert r.status_code == 409, r.text
        assert "duplicate-body" in json.dumps(r.json())
        r = c.post("/webhooks/github", content=body, headers=headers)  # the same delivery id again
        assert r.status_code == 409
    assert_nothing_stored_but_audit(before, pipeline_api)
    assert count(pipeline_api, EvidenceRow) == 1
    assert [e["detail"]["status"] for e in refusals(pipeline_api, "webhook.rejected")] == [409, 409]


@pytest.mark.parametrize("provider", ["github", "circleci"])
def test_concurrent_identical_deliveries_are_accepted_once(pipeline_api: InProcess, provider: str) -> None:
    sha = pipeline_api.pipeline.remote.commit("feature/race", {"c.txt": "c\n"}, "race")
    headers, body = (
        github_request(workflow_run_doc(sha, "feature/race"))
        if provider == "github"
        else circleci_request(circleci_doc(sha, "feature/race"))
    )
    statuses: list[int] = []
    barrier = threading.Barrier(6)

    def send() -> None:
        with pipeline_api.client() as c:
            barrier.wait()
            statuses.append(c.post(f"/webhooks/{provider}", content=body, headers=headers).status_code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(statuses) == [202, 409, 409, 409, 409, 409]
    assert (count(pipeline_api, WebhookDeliveryRow), count(pipeline_api, EvidenceRow)) == (1, 1)


# --- refusal audit is bounded ------------------------------------------------------------------------------


def test_an_unauthenticated_flood_writes_a_bounded_number_of_audit_entries(pipeline_api: InProcess) -> None:
    """500 unsigned deliveries from one address: 20 are audited one by one, the other 480 are
    counted in one ``refusals.suppressed`` entry (written when the app stops)."""
    with pipeline_api.client() as c:
        for _ in range(500):
            r = c.post("/webhooks/github", content=b"{}", headers={"content-type": "application/json"})
            assert r.status_code == 401
    rejected = refusals(pipeline_api, "webhook.rejected")
    [summary] = refusals(pipeline_api, "refusals.suppressed")
    assert len(rejected) == 20
    assert summary["detail"]["suppressed"] == 480
    assert summary["detail"]["top_sources"] == {"127.0.0.1": 480}
