"""Issue 11: every file of the real-file corpus (tests/fixtures/real) through the real entry points.

The expected numbers come from tests/fixtures/real/expect.py (standard library only, not
shipwarden's parsers), kept beside the files as ``<format>/expected.json``.  Every JUnit, SARIF, k6
and Locust file goes through ``POST /evidence`` and through ``shipwarden evidence upload``;
Kubernetes audit files through ``POST /k8s/audit``; CI webhook payloads through the signed
``POST /webhooks/github`` and ``POST /webhooks/circleci``; recorded Prometheus and NerdGraph answers
through ``PrometheusProvider`` / ``NewRelicProvider`` against a loopback server that replays them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shipwarden.entrypoints.http import create_app
from tests.integration.http.conftest import Api, Clock
from tests.integration.http.hardening import InProcess, circleci_request, github_request, make_pipeline

pytestmark = pytest.mark.integration

REAL = Path(__file__).parents[2] / "fixtures" / "real"
SHA = "d" * 40


def corpus(fmt: str) -> list[tuple[str, dict[str, Any]]]:
    path = REAL / fmt / "expected.json"
    if not path.exists():
        return []
    return sorted(json.loads(path.read_text()).items())


def test_every_corpus_file_has_an_expectation_and_a_source() -> None:
    sources = (REAL / "SOURCES").read_text()
    for folder in sorted(p for p in REAL.iterdir() if p.is_dir()):
        files = {p.name for p in folder.iterdir() if p.name != "expected.json"}
        assert files, folder
        assert files == set(json.loads((folder / "expected.json").read_text())), folder.name
        for name in files:
            assert f"{folder.name}/{name} |" in sources, f"{folder.name}/{name} has no line in SOURCES"


@pytest.fixture
def uploader(api: Api) -> Any:
    api.user("root", "admin")
    return api.session("root")


def _post(client: Any, kind: str, fmt: str, name: str, category: str | None = None) -> dict[str, Any]:
    params = {"commit": SHA, "kind": kind, "filename": name}
    if category:
        params["category"] = category
    r = client.post("/evidence", params=params, content=(REAL / fmt / name).read_bytes())
    assert r.status_code == 201, f"{name}: {r.status_code} {r.text}"
    return dict(r.json()["evidence"]["summary"])


def test_junit_corpus(uploader: Any) -> None:
    for name, want in corpus("junit"):
        got = _post(uploader, "junit", "junit", name, "unit")
        assert {k: got[k] for k in want} == want, name


def test_sarif_corpus(uploader: Any) -> None:
    for name, want in corpus("sarif"):
        got = _post(uploader, "sarif", "sarif", name)
        assert got["findings"] == want["findings"], name
        assert "incomplete" not in got or want.get("incomplete"), name


def test_locust_corpus(uploader: Any) -> None:
    for name, want in corpus("locust"):
        got = _post(uploader, "locust", "locust", name)
        assert got["error_rate"] == pytest.approx(want["error_rate"], abs=1e-6), name
        if "p95_ms" in want:
            assert (got["p95_ms"], got["p99_ms"]) == (want["p95_ms"], want["p99_ms"]), name


def test_k6_corpus(uploader: Any) -> None:
    for name, want in corpus("k6"):
        got = _post(uploader, "k6", "k6", name)
        assert (got["p95_ms"], got["p99_ms"]) == (want["p95_ms"], want["p99_ms"]), name
        if want["error_rate"] is None:
            assert got["error_rate"] is None, name
        else:
            assert got["error_rate"] == pytest.approx(want["error_rate"]), name


def test_k8s_audit_corpus(api: Api) -> None:
    files = corpus("k8s-audit")
    if not files:
        pytest.skip("no Kubernetes audit files in the corpus yet")
    api.user("root", "admin")
    api.services.access.create_user("setup", "kube-apiserver", None, [])
    root = api.session("root")
    root.put("/users/kube-apiserver/roles", json={"roles": ["admin"]})
    tok = root.post(
        "/tokens", json={"owner": "kube-apiserver", "name": "audit log", "scopes": ["k8s_audit.write"]}
    ).json()["token"]
    hook = api.client("10.0.0.2")
    stored = 0
    for name, want in files:
        body = (REAL / "k8s-audit" / name).read_bytes()
        r = hook.post("/k8s/audit", content=body, headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 200, f"{name}: {r.text}"
        assert (r.json()["accepted"], r.json()["rejected"]) == (want["stored"], want["rejected"]), name
        stored += want["stored"] + want["rejected"]
    assert len(api.audit(source="kubernetes")) == stored
    assert api.services.audit.verify().ok


# --- CI webhooks through the signed routes ------------------------------------------------------------------


@pytest.fixture
def hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[InProcess, TestClient]]:
    p = make_pipeline(tmp_path, monkeypatch)
    clock = Clock()
    svc = p.services(clock)
    with TestClient(create_app(svc), client=("127.0.0.1", 40000), raise_server_exceptions=False) as client:
        yield InProcess(p, svc, clock), client
    svc.store.engine.dispose()


def _check_delivery(client: TestClient, name: str, r: Any, want: dict[str, Any]) -> None:
    assert r.status_code == 202, f"{name}: {r.status_code} {r.text}"
    got = r.json()
    assert got["outcome"] == want["outcome"], f"{name}: {got}"
    repo = client.app.state.changes.repo  # type: ignore[attr-defined]
    if want["ci"] is not None:
        ev = repo.evidence(got["evidence_id"])
        assert (ev.commit_sha, ev.category) == (want["commit"], "ci"), name
        assert {"stage": ev.report.name, "status": ev.report.status} == want["ci"], name
    else:
        assert "evidence_id" not in got, name
    if want.get("labels") is not None:
        change = repo.find_change(head_sha=want["commit"], branch=want["branch"])
        assert change is not None and list(change.labels) == want["labels"], name


def test_github_webhook_corpus(hooks: tuple[InProcess, TestClient]) -> None:
    """In name order: the check runs of PR #2's head create its change before its pull_request events."""
    api, client = hooks
    api.clock.now = datetime.now(UTC)
    files = corpus("github-webhooks")
    assert len(files) >= 5
    for name, want in files:
        headers, body = github_request((REAL / "github-webhooks" / name).read_bytes(), event=want["event"])
        _check_delivery(client, name, client.post("/webhooks/github", content=body, headers=headers), want)


def test_circleci_webhook_corpus(hooks: tuple[InProcess, TestClient]) -> None:
    api, client = hooks
    files = corpus("circleci-webhooks")
    assert len(files) >= 5
    for name, want in files:
        # the signed happened_at must be inside the replay window: the clock is set just after it
        api.clock.now = datetime.fromisoformat(want["happened_at"].replace("Z", "+00:00")) + timedelta(
            seconds=2
        )
        body = (REAL / "circleci-webhooks" / name).read_bytes()
        headers = {**circleci_request(body)[0], "circleci-event-type": want["event"]}
        _check_delivery(client, name, client.post("/webhooks/circleci", content=body, headers=headers), want)


# --- metric back-end answers through the providers ----------------------------------------------------------


@pytest.fixture
def replay_server() -> Iterator[Any]:
    """A loopback HTTP server answering every request with ``server.body`` (a recorded answer)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body: bytes = self.server.body  # type: ignore[attr-defined]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.body = b""  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_prometheus_query_range_corpus(replay_server: Any) -> None:
    from shipwarden.adapters.metrics.base import Aggregation, NoData, Series
    from shipwarden.adapters.metrics.prometheus import PrometheusProvider

    files = corpus("prometheus")
    assert len(files) >= 5
    with PrometheusProvider(f"http://127.0.0.1:{replay_server.server_port}", timeout_s=5) as prom:
        for name, want in files:
            replay_server.body = (REAL / "prometheus" / name).read_bytes()
            got = prom.query_range(
                "up", service="web", version="v1", start=1.0, end=61.0, step=5.0,
                aggregate=Aggregation.SUM if want["aggregate"] == "sum" else None,
            )  # fmt: skip
            if want["nodata"]:
                assert isinstance(got, NoData), name
                continue
            assert isinstance(got, Series), f"{name}: {got}"
            assert len(got.points) == want["points"], name
            assert list(got.points[0]) == want["first"] and list(got.points[-1]) == want["last"], name
            assert sum(got.values()) == pytest.approx(want["total"]), name


def test_newrelic_nerdgraph_corpus(replay_server: Any) -> None:
    from shipwarden.adapters.metrics.base import Aggregation, NoData, ProviderError, Series, Value
    from shipwarden.adapters.metrics.newrelic import NewRelicProvider

    files = corpus("newrelic")
    assert len(files) >= 5
    url = f"http://127.0.0.1:{replay_server.server_port}/graphql"
    nrql = "SELECT count(*) FROM Transaction {window}"
    with NewRelicProvider("NRAK-CORPUS", 1, endpoint=url, timeout_s=5) as nr:
        for name, want in files:
            replay_server.body = (REAL / "newrelic" / name).read_bytes()
            agg = Aggregation.SUM if want.get("aggregate") == "sum" else None
            if "refused" in want:  # a real answer with no single figure to compare: refused, never guessed
                with pytest.raises(ProviderError, match=want["refused"]):
                    nr.query(nrql, service="web", version="v1", window_s=60, aggregate=agg)
                continue
            if want.get("kind") == "range":
                series = nr.query_range(
                    nrql, service="web", version="v1", start=1.0, end=3601.0, step=60.0, aggregate=agg
                )
                assert isinstance(series, Series), f"{name}: {series}"
                assert [list(p) for p in series.points] == [list(p) for p in want["points"]], name
                continue
            got = nr.query(nrql, service="web", version="v1", window_s=60, aggregate=agg)
            if want["nodata"]:
                assert isinstance(got, NoData), name
            else:
                assert isinstance(got, Value) and got.value == want["value"], f"{name}: {got}"


# --- the CLI: `shipwarden evidence upload` ------------------------------------------------------------------


def _summary_matches(fmt: str, got: dict[str, Any], want: dict[str, Any]) -> bool:
    if fmt == "junit":
        return {k: got[k] for k in want} == want
    if fmt == "sarif":
        return bool(got["findings"] == want["findings"])
    if fmt == "locust":
        ok = got["error_rate"] == pytest.approx(want["error_rate"], abs=1e-6)
        return ok and all(got[k] == want[k] for k in ("p95_ms", "p99_ms") if k in want)
    rate_ok = (
        got["error_rate"] is None
        if want["error_rate"] is None
        else got["error_rate"] == pytest.approx(want["error_rate"])
    )
    return (got["p95_ms"], got["p99_ms"]) == (want["p95_ms"], want["p99_ms"]) and rate_ok


def test_every_evidence_file_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``shipwarden evidence upload FILE --commit … --kind …`` stores what expect.py worked out."""
    import re

    from typer.testing import CliRunner

    from shipwarden.adapters.store.changes_repo import ChangesRepo
    from shipwarden.bootstrap import build_service, load_policy
    from shipwarden.entrypoints.cli import app
    from tests.fixtures.deploy_env import make_env

    env = make_env(tmp_path)
    monkeypatch.setenv("SHIPWARDEN_STATE_DIR", str(env.settings.state_dir))
    monkeypatch.setenv("SHIPWARDEN_POLICY", str(env.policy_path))
    monkeypatch.setenv("SHIPWARDEN_ACTOR", "tester")
    stored: list[tuple[str, str, str, dict[str, Any]]] = []
    for fmt in ("junit", "sarif", "k6", "locust"):
        for name, want in corpus(fmt):
            args = ["evidence", "upload", str(REAL / fmt / name), "--commit", SHA, "--kind", fmt]
            r = CliRunner().invoke(app, [*args, *(["--category", "unit"] if fmt == "junit" else [])])
            assert r.exit_code == 0, f"{fmt}/{name}: {r.output}"
            found = re.search(r"^stored (\S+):", r.output, re.M)
            assert found, r.output
            stored.append((fmt, name, found.group(1), want))
    services = build_service(env.settings, load_policy(env.policy_path))
    try:
        repo = ChangesRepo(services.store)
        for fmt, name, ev_id, want in stored:
            got = dict(repo.evidence(ev_id).summary)
            assert _summary_matches(fmt, got, want), f"{fmt}/{name}: {got} != {want}"
    finally:
        services.store.engine.dispose()
