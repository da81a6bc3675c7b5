"""Property-based fuzzing of the whole HTTP API (issue 9): no 5xx, no traceback, refusals change nothing.

Three generators, one oracle.  The oracle, for every generated request: the status is below 500,
the body holds no Python traceback, and when the request was refused (4xx) a digest of every
table except the audit log is the same as before it (``hardening.db_digest``; the audit log
records the refusal, and token/session "last used" bookkeeping is not state).

* **Schema-driven** (Schemathesis + Hypothesis): the app's own OpenAPI document yields a strategy
  per operation, in positive (valid per the schema) and negative (violating it) modes, sent with
  the bearer token of a real user holding every permission, so authorised routes run their
  handlers and not just their 401.
* **Signed webhooks**: the webhook routes take a raw body the OpenAPI document cannot describe,
  and an unsigned body stops at the signature.  So valid CircleCI and GitHub deliveries are
  mutated (a leaf replaced by arbitrary JSON, keys dropped or added, huge strings and integers)
  and *signed* with the configured secrets, which drives every body through the contract models,
  the replay guard and the transaction.
* **Hand-written attacks** against the real ``shipwarden serve`` over a socket: chunked bodies
  without Content-Length past every limit, 100k-deep nesting and 5,000-digit integers on every
  body-taking route (signed where it matters), a huge header block.  Replays and concurrent
  identical deliveries are in ``test_inbound_hardening.py``.

Budget: ``SHIPWARDEN_FUZZ_EXAMPLES`` generated cases in all (default 600, well under a minute;
``SHIPWARDEN_FUZZ_EXAMPLES=10000`` for a full run), split 3:1 between the schema-driven and the
webhook generators.  Each test prints how many cases it ran.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from shipwarden.bootstrap import Services
from shipwarden.domain.access import Permission
from shipwarden.entrypoints.http import create_app
from shipwarden.services.access import parse_binding
from tests.integration.http.conftest import Clock
from tests.integration.http.hardening import (
    changed_tables,
    circleci_doc,
    circleci_request,
    db_digest,
    github_request,
    make_pipeline,
    read_status,
    serve,
    stop,
    workflow_run_doc,
)

pytestmark = pytest.mark.integration

BUDGET = int(os.environ.get("SHIPWARDEN_FUZZ_EXAMPLES", "600"))
SCHEMA_BUDGET = BUDGET * 3 // 4
WEBHOOK_BUDGET = BUDGET - SCHEMA_BUDGET
SETTINGS = {
    "deadline": None,
    "database": None,
    "derandomize": False,
    "phases": [Phase.generate],
    "suppress_health_check": list(HealthCheck),
}


REFUSAL_RECORDS = {"audit_log", "auth_failures", "auth_throttle"}
"""Where refusals are recorded (the audit log; failed logins and the attempts reserved before a
credential is checked, for lockout): they change on refusal, by design."""


def _client_address(app: Any) -> Any:
    """The in-process transport reports the client as "testclient"; the API needs an address."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "client": ("127.0.0.1", 40000)}
        await app(scope, receive, send)

    return wrapped


@dataclass
class Target:
    services: Services
    app: Any
    token: str
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def digest(self) -> dict[str, str]:
        return db_digest(self.services.store.engine, skip=REFUSAL_RECORDS)

    def reissue(self) -> None:
        """The fuzzer may revoke its own token or disable its user: give it a working one again."""
        self.token = _issue(self.services)

    def judge(self, status: int, text: str, before: dict[str, str], what: str) -> None:
        self.cases += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        assert status < 500, f"{what}: {status} {text[:500]}"
        assert "Traceback (most recent call last)" not in text, f"{what}: traceback in the answer"
        if status >= 400:
            changed = changed_tables(before, self.digest())
            assert not changed, f"{what}: refused with {status} but changed {changed}: {text[:300]}"


def _issue(services: Services) -> str:
    name = "fuzzer-" + uuid.uuid4().hex[:8]
    services.access.create_user("setup", name, None, [parse_binding("admin")])
    scopes = [p.value for p in Permission]
    token, _ = services.access.issue_token("setup", name, "fuzz", scopes, timedelta(days=1))
    return token


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with pytest.MonkeyPatch.context() as mp:
        p = make_pipeline(tmp_path_factory.mktemp("fuzz"), mp)
        services = p.services(Clock())
        app = _client_address(create_app(services))
        t = Target(services, app, _issue(services))
        yield t
        services.store.engine.dispose()


# --- schema-driven -----------------------------------------------------------------------------------------


def test_schema_driven_fuzz_never_5xx_and_refusals_change_nothing(target: Target) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", target.app)
    operations = [r.ok() for r in schema.get_all_operations()]
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    start = target.cases
    # Hypothesis stops early on an operation whose inputs it has exhausted (GET /healthz has one):
    # what it leaves of the budget goes to the operations that used all of theirs, for a few rounds.
    live = [(op, m) for op in operations for m in modes if m is GenerationMode.POSITIVE or _violable(op)]
    for _ in range(4):
        left = SCHEMA_BUDGET - (target.cases - start)
        if left <= 0 or not live:
            break
        per_run = max(2, left // len(live))
        still = []
        for op, mode in live:
            before = target.cases
            _fuzz_operation(target, op, mode, per_run)
            if target.cases - before >= per_run:
                still.append((op, mode))
        live = still
    ran = target.cases - start
    seen = sorted(target.statuses.items())
    print(f"schema-driven: {ran} cases over {len(operations)} operations; statuses {seen}")
    assert ran >= SCHEMA_BUDGET * 0.9


def _violable(op: Any) -> bool:
    """Can a request break this operation's schema?  Not if its only inputs are free-form strings in
    the path (negative generation then finds nothing, slowly)."""
    raw = op.definition.raw
    if "requestBody" in raw:
        return True
    for param in raw.get("parameters", []):
        schema = param.get("schema", {})
        if param.get("required") and param.get("in") != "path":
            return True
        if schema.get("type", "string") != "string" or set(schema) - {"type", "title", "description"}:
            return True
    return False


def _fuzz_operation(target: Target, op: Any, mode: GenerationMode, examples: int) -> None:
    @settings(max_examples=examples, **SETTINGS)  # type: ignore[arg-type]
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        before = target.digest()
        sent = {**(case.headers or {}), **target.auth}
        r = case.call(headers=sent)
        target.judge(r.status_code, r.text, before, f"{op.method.upper()} {op.path} {case!r}"[:800])
        if r.status_code == 401:  # the fuzzer revoked its own token or disabled its user
            target.reissue()

    try:
        run()
    except Unsatisfiable:  # e.g. no way to violate the schema of an operation without parameters
        pass


# --- signed webhooks ---------------------------------------------------------------------------------------

_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        ["../../etc/passwd", "-x", "a\u202eb", "x" * 5000, "A" * 40, "0" * 40, "", "refs/heads/x"]
    ),
)
_json = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def _mutated(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    doc = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        if not path:
            doc = draw(_json) if draw(st.integers(0, 9)) == 0 else doc
            continue
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "drop" and isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(_json)
        else:
            parent[path[-1]] = draw(_json)
    return doc


SHA = "9c2ed4b5c0dff8a1a1b2c3d4e5f60718293a4b5c"
GITHUB_EVENTS = ["workflow_run", "check_suite", "push", "pull_request", "ping", "issues", "Bad Event", ""]
GITHUB_BASES = {
    "workflow_run": workflow_run_doc(SHA, "feature/fuzz"),
    "check_suite": {
        "action": "completed",
        "check_suite": {
            "id": 118578147,
            "head_branch": "feature/fuzz",
            "head_sha": SHA,
            "status": "completed",
            "conclusion": "success",
            "pull_requests": [],
            "app": {"slug": "github-actions"},
        },
        "repository": {"full_name": "acme/web"},
    },  # fmt: skip
    "push": {
        "ref": "refs/heads/feature/fuzz",
        "before": "0" * 40,
        "after": SHA,
        "repository": {"full_name": "a/b"},
    },
    "pull_request": {
        "action": "labeled",
        "number": 17,
        "pull_request": {
            "number": 17,
            "head": {"sha": SHA, "ref": "feature/fuzz"},
            "labels": [{"name": "risk"}],
        },
    },
}


def test_signed_webhook_fuzz_never_5xx_and_refusals_change_nothing(target: Target) -> None:
    from fastapi.testclient import TestClient

    start = target.cases
    with TestClient(target.app, raise_server_exceptions=False) as c:

        @settings(max_examples=max(2, WEBHOOK_BUDGET // 2), **SETTINGS)  # type: ignore[arg-type]
        @given(
            doc=_mutated(circleci_doc(SHA, "feature/fuzz")),
            event=st.sampled_from(["workflow-completed", "job-completed", "ping", ""]),
        )
        def circleci(doc: Any, event: str) -> None:
            body = json.dumps(doc).encode()
            headers, _ = circleci_request(body)
            headers["circleci-event-type"] = event
            before = target.digest()
            r = c.post("/webhooks/circleci", content=body, headers=headers)
            target.judge(r.status_code, r.text, before, f"circleci {body[:300]!r}")

        @settings(max_examples=max(2, WEBHOOK_BUDGET - WEBHOOK_BUDGET // 2), **SETTINGS)  # type: ignore[arg-type]
        @given(data=st.data(), event=st.sampled_from(GITHUB_EVENTS))
        def github(data: st.DataObject, event: str) -> None:
            doc = data.draw(_mutated(GITHUB_BASES.get(event, GITHUB_BASES["workflow_run"])))
            body = json.dumps(doc).encode()
            headers, _ = github_request(body, event=event)
            before = target.digest()
            r = c.post("/webhooks/github", content=body, headers=headers)
            target.judge(r.status_code, r.text, before, f"github {event} {body[:300]!r}")

        circleci()
        github()
    ran = target.cases - start
    print(f"signed webhooks: {ran} cases; statuses {sorted(target.statuses.items())}")
    assert ran >= min(WEBHOOK_BUDGET, 4) * 0.9


# --- hand-written attacks on the real server ---------------------------------------------------------------


def test_hand_written_attacks_on_the_real_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = make_pipeline(tmp_path, monkeypatch)
    setup = p.services()
    token = _issue(setup)
    s = serve(p)
    auth = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    deep = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    digits = b'{"a": ' + b"9" * 5000 + b"}"
    routes = [
        f"/evidence?kind={k}&commit={SHA}"
        for k in ("backup", "rollback-plan", "k6", "sarif", "junit&category=unit")
    ] + [
        "/k8s/audit",
        "/auth/login",
        "/users",
        "/tokens",
        "/services/web/deployments",
        "/changes/c-1/approve",
    ]
    ran = 0
    try:
        with httpx.Client(base_url=s.url, timeout=60) as h:
            before = db_digest(setup.store.engine)
            for body in (deep, digits):
                for route in routes:
                    r = h.post(route, content=body, headers=auth)
                    assert r.status_code < 500 and "Traceback" not in r.text, (
                        route,
                        r.status_code,
                        r.text[:300],
                    )
                    ran += 1
                for provider, (headers, signed) in (
                    ("github", github_request(body)),
                    ("circleci", circleci_request(body)),
                ):
                    r = h.post(f"/webhooks/{provider}", content=signed, headers=headers)
                    assert r.status_code == 400, (provider, r.status_code, r.text[:300])
                    ran += 1
            for route in [
                "/webhooks/github",
                "/evidence?kind=backup&commit=" + SHA,
                "/k8s/audit",
                "/auth/login",
            ]:

                def chunks() -> Iterator[bytes]:
                    for _ in range(40):
                        yield b"x" * (1024 * 1024)

                try:
                    r = h.post(route, content=chunks(), headers=auth)
                    assert r.status_code == 413, (route, r.status_code)
                except httpx.WriteError:
                    pass  # the server answered 413 and stopped reading before the client finished
                ran += 1
            sock = socket.create_connection(("127.0.0.1", s.port))
            try:
                sock.sendall(
                    b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"h" * 1_000_000 + b"\r\n\r\n"
                )
            except OSError:
                pass
            assert read_status(sock)[0] == 431
            sock.close()
            ran += 1
            after = db_digest(setup.store.engine)
            assert [t for t in changed_tables(before, after) if t not in REFUSAL_RECORDS] == []
    finally:
        stop(s)
        err = s.proc.stderr.read().decode() if s.proc.stderr else ""
        setup.store.engine.dispose()
    assert "Traceback" not in err, err[-3000:]
    print(f"hand-written attacks: {ran} requests")


# --- what the fuzzer found (each was a 5xx or a wrong status before its fix) -------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "expect"),
    [
        ("POST", f"/evidence?kind=k6&commit={SHA}", b'{"metrics": ' + b"9" * 5000 + b"}", 422),  # was 500
        ("POST", f"/evidence?kind=sarif&commit={SHA}", b'{"runs": ' + b"9" * 5000 + b"}", 422),  # was 500
        ("GET", "/audit/export?after_seq=-111562093734033489920", b"", 422),  # was 500 (OverflowError)
        ("GET", "/audit?after_seq=99999999999999999999999", b"", 422),  # was 500
    ],
)
def test_regressions_the_fuzzer_found(
    target: Target, method: str, path: str, body: bytes, expect: int
) -> None:
    from fastapi.testclient import TestClient

    with TestClient(target.app, raise_server_exceptions=False) as c:
        before = target.digest()
        r = c.request(
            method, path, content=body or None, headers={**target.auth, "content-type": "application/json"}
        )
        assert r.status_code == expect, r.text
        assert target.digest() == before


def test_oversized_chunked_json_body_is_413_not_fastapis_400(target: Target) -> None:
    """FastAPI turns any error while reading a JSON body into 400; the body limit must still say 413."""
    from fastapi.testclient import TestClient

    def chunks() -> Iterator[bytes]:
        yield b'{"user": "'
        for _ in range(3):
            yield b"u" * (1024 * 1024)

    with TestClient(target.app, raise_server_exceptions=False) as c:
        r = c.post("/auth/login", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
