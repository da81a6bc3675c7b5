"""Issue 9 through the command line: what ``policy check`` says, exactly, and what ``deploy`` refuses.

Class 2: ``policy check`` rejects (exit 2, ``file:line``) what ``deploy`` would, and a version is
validated before anything is recorded.  Class 3: user- and validator-supplied text is printed as
written — Rich markup used to eat ``[a-z]`` out of ``^[a-z][a-z0-9-]{0,62}$`` and ``[tests=…]`` out
of ``evidence upload``'s summary.

Commands run in-process (``CliRunner``) against a temporary state directory and the test policy
of ``tests/fixtures/deploy_env.py``; nothing starts instances or nginx.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from shipwarden.bootstrap import build_service
from shipwarden.entrypoints.cli import app
from tests.fixtures.deploy_env import DeployEnv, make_env

pytestmark = pytest.mark.integration

DATA = Path(__file__).parents[1] / "data" / "evidence"
NAME_RULE = "String should match pattern '^[a-z][a-z0-9-]{0,62}$'"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DeployEnv:
    e = make_env(tmp_path)
    monkeypatch.setenv("SHIPWARDEN_STATE_DIR", str(e.settings.state_dir))
    monkeypatch.setenv("SHIPWARDEN_POLICY", str(e.policy_path))
    monkeypatch.setenv("SHIPWARDEN_ACTOR", "tester")
    return e


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def bad_name(env: DeployEnv) -> Path:
    text = env.policy_path.read_text().replace("  - name: web\n", "  - name: Web_1\n")
    path = env.root / "bad-name.yaml"
    path.write_text(text)
    return path


# -- class 3: no text is ever markup ------------------------------------------------------------------
def test_policy_check_prints_the_validator_pattern_exactly(env: DeployEnv) -> None:
    path = bad_name(env)
    r = run("policy", "check", str(path))
    assert r.exit_code == 2
    assert f"{path}:4: services[0].name: {NAME_RULE}" in r.output


def test_deploy_prints_policy_errors_exactly(env: DeployEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPWARDEN_POLICY", str(bad_name(env)))
    r = run("deploy", "web", "--version", "v1", "--no-wait")
    assert (
        r.exit_code == 2
        and f"error: {env.root / 'bad-name.yaml'}:4: services[0].name: {NAME_RULE}" in r.output
    )


def test_line_100_is_a_line_number_not_an_emoji(env: DeployEnv) -> None:
    # found by the fuzz suite: Rich turned "policy.yaml:100: " into "policy.yaml💯 "
    path = env.root / "long.yaml"
    path.write_text(
        env.policy_path.read_text() + "#\n" * (99 - env.policy_path.read_text().count("\n")) + "x: 1\n"
    )
    r = run("policy", "check", str(path))
    assert r.exit_code == 2 and f"{path}:100: x: Extra inputs are not permitted" in r.output


def test_markup_in_a_file_name_is_printed_as_written(env: DeployEnv) -> None:
    odd = env.root / "[red]team[bold].yaml"
    odd.write_text(env.policy_path.read_text())
    r = run("policy", "check", str(odd))
    assert r.exit_code == 0 and f"ok {odd}: team test, services web" in r.output


def test_evidence_upload_prints_its_summary_in_brackets(env: DeployEnv) -> None:
    sha = "ab" * 20
    r = run(
        "evidence", "upload", str(DATA / "pytest-junit-green.xml"), "--commit", sha, "--kind", "junit",
        "--category", "unit",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if x.startswith("stored "))
    assert line.endswith("]") and "[tests=" in line and "failures=" in line


# -- class 2: the version, before anything is recorded ---------------------------------------------
@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("../../etc", "contains a path separator"),
        ("v1/../../x", "contains a path separator"),
        ("v1..2", "contains '..'"),
        ("-rf", "it must start with a letter or digit"),
        ("v1 v2", "character ' ' is not allowed"),
        ("[red]v1", "character '[' is not allowed"),
        ("v" * 129, "129 characters long; at most 128"),
    ],
)
def test_deploy_refuses_an_invalid_version_and_records_nothing(
    env: DeployEnv, version: str, message: str
) -> None:
    r = run("deploy", "web", "--version", version, "--no-wait")
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    svc = build_service(env.settings)
    try:
        assert svc.store.history("web", 10) == []
        assert svc.audit.query(limit=100) == []  # not even the access check's entry
    finally:
        svc.store.engine.dispose()


def test_a_valid_version_is_recorded(env: DeployEnv) -> None:
    r = run("deploy", "web", "--version", "1.4.2+build.7", "--no-wait")
    assert r.exit_code == 0, r.output
    assert "→ 1.4.2+build.7 (blueGreen)" in r.output


def test_deploy_refuses_a_commit_that_is_no_sha(env: DeployEnv) -> None:
    r = run("deploy", "web", "--version", "v1", "--commit", "main; rm -rf /", "--no-wait")
    assert r.exit_code == 2 and "is not a git commit sha" in r.output


# -- class 2: what check passes, every command accepts; what it refuses, no command runs -----------------
def test_check_and_deploy_agree_on_a_duplicate_key(env: DeployEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    text = env.policy_path.read_text() + "services:\n  - name: other\n"
    dup = env.root / "dup.yaml"
    dup.write_text(text)
    line = text.count("\n") - 1
    expected = f"{dup}:{line}: <root>: duplicate key 'services' at lines 3 and {line}"
    r = run("policy", "check", str(dup))
    assert r.exit_code == 2 and expected in r.output
    monkeypatch.setenv("SHIPWARDEN_POLICY", str(dup))
    r = run("deploy", "web", "--version", "v1", "--no-wait")
    assert r.exit_code == 2 and f"error: {expected}" in r.output


def test_serve_with_an_invalid_policy_prints_the_issues_not_a_traceback(
    env: DeployEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPWARDEN_POLICY", str(bad_name(env)))
    r = run("serve", "--insecure-http", "--port", "1")
    assert (
        r.exit_code == 2
        and f"error: {env.root / 'bad-name.yaml'}:4: services[0].name: {NAME_RULE}" in r.output
    )


def test_policy_check_as_a_process_never_shows_a_traceback(tmp_path: Path) -> None:
    files = {
        "deep.yaml": b"a: " + b"[" * 100_000 + b"\n",
        "latin1.yaml": "apiVersion: shipwarden/v1\nteam: d\xe9mo\n".encode("latin-1"),
        "date.yaml": b"apiVersion: 2024-13-45\n",
        "nul.yaml": b"team: \x00\n",
        "dir.yaml": None,
    }
    paths = []
    for name, content in files.items():
        p = tmp_path / name
        if content is None:
            p.mkdir()
        else:
            p.write_bytes(content)
        paths.append(str(p))
    r = subprocess.run(
        [sys.executable, "-m", "shipwarden.entrypoints.cli", "policy", "check", *paths],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == len(files), r.stderr
    for name in files:
        assert str(tmp_path / name) in r.stderr
