"""Issue 11: every file of the real-file corpus (tests/fixtures/real) through the real entry points.

The expected numbers come from tests/fixtures/real/expect.py (standard library only, not
shipwarden's parsers), kept beside the files as ``<format>/expected.json``.  JUnit, SARIF, k6 and
Locust files go through ``POST /evidence`` (and ``shipwarden evidence upload`` for one file per
format), Kubernetes audit files through ``POST /k8s/audit``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.http.conftest import Api

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
