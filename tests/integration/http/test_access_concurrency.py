"""Every access is audited under concurrency, cheaply (issue 9, class 12; E5).

A real uvicorn server (in a thread, on a free loopback port) serves the API; N clients send
their requests at once over real sockets — most with a valid token, some with a revoked one —
while the audit writer is held inside a commit.  Every request must then have its access entry,
allowed or denied, and they must have gone to the database together (group commit), not one
transaction each; and the event loop kept answering meanwhile: it holds no thread and does no
database work while an access entry waits for its commit.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import event

from shipwarden.adapters.net import free_port
from shipwarden.domain.audit import ChainHead, EntryDraft
from shipwarden.entrypoints.http import create_app
from shipwarden.services.access import parse_binding
from tests.integration.http.conftest import Api, make_api

pytestmark = pytest.mark.integration
N = 80
REVOKED = 16


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Api, str]]:
    api = make_api(tmp_path)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(api.services), host="127.0.0.1", port=port,
                                           log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield api, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)
    api.services.audit.close()
    api.services.store.engine.dispose()


def test_n_concurrent_requests_make_n_access_entries_in_shared_commits(served: tuple[Api, str]) -> None:
    api, base = served
    svc = api.services
    svc.access.create_user("setup", "reader", None, [parse_binding("auditor")], ())
    good, _ = svc.access.issue_token("setup", "reader", "ci", ["deployment.read"], timedelta(days=1))
    bad, rec = svc.access.issue_token("setup", "reader", "old", ["deployment.read"], timedelta(days=1))
    svc.access.revoke_token("setup", rec.id)
    before = len(api.audit(action="access"))

    commits = [0]

    def counted(_conn: object) -> None:
        commits[0] += 1

    event.listen(svc.store.engine, "commit", counted)
    writer = svc.audit.writer
    entered, release = threading.Event(), threading.Event()
    real = writer._commit
    first = [0]  # the size of the batch held in its commit

    def held(drafts: Sequence[EntryDraft], generation: int | None) -> ChainHead:
        if not entered.is_set():
            first[0] = len(drafts)
            entered.set()
            assert release.wait(60)
        return real(drafts, generation)

    writer._commit = held  # type: ignore[assignment]

    async def run() -> tuple[list[int], int]:
        limits = httpx.Limits(max_connections=N + 1)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as c:
            tokens = [bad if i < REVOKED else good for i in range(N)]
            reqs = [asyncio.ensure_future(c.get("/deployments", headers={"Authorization": f"Bearer {t}"}))
                    for t in tokens]  # fmt: skip
            deadline = time.monotonic() + 60
            while first[0] + writer._q.qsize() < N:  # every request waits for the commit in progress …
                assert time.monotonic() < deadline, (first, writer._q.qsize())
                await asyncio.sleep(0.01)
            health = await c.get("/healthz")  # … and the event loop still answers
            release.set()
            return [r.status_code for r in await asyncio.gather(*reqs)], health.status_code

    statuses, health = asyncio.run(run())
    event.remove(svc.store.engine, "commit", counted)
    assert health == 200
    assert sorted(statuses) == [200] * (N - REVOKED) + [401] * REVOKED
    entries = api.audit(action="access")[before:]
    assert len(entries) == N and all(e["detail"]["path"] == "/deployments" for e in entries)
    assert sum(e["outcome"] == "denied" for e in entries) == REVOKED
    assert writer.batches <= 3 and commits[0] < N // 4, (writer.batches, commits[0])  # not one per request
    report = svc.audit.verify()
    assert report.ok, report
