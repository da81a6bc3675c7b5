"""``shipwarden incident …`` in-process against a temporary state directory and the test policy:
open, move, track, roll back the suspect (through the rollback use case), write the report, and check
it offline against a signed audit export."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from shipwarden.bootstrap import open_store
from shipwarden.domain.rollout import Phase, Transition
from shipwarden.entrypoints.cli import app
from tests.fixtures.deploy_env import make_env

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    env = make_env(tmp_path)
    monkeypatch.setenv("SHIPWARDEN_STATE_DIR", str(env.settings.state_dir))
    monkeypatch.setenv("SHIPWARDEN_POLICY", str(env.policy_path))
    monkeypatch.setenv("SHIPWARDEN_ACTOR", "carol")
    store = open_store(env.settings)
    for frm, to in ((None, "v1"), ("v1", "v2")):
        dep = store.create_deployment(service="web", kind="deploy", strategy="blueGreen", from_version=frm,
                                      to_version=to, actor="alice", policy_digest="d" * 64,
                                      policy_source="p.yaml", plan={})  # fmt: skip
        for p in (Phase.STARTING, Phase.PREVIEW, Phase.PROMOTING, Phase.SUCCEEDED):
            dep = store.transition(dep, Transition(p, p.value), actor="controller")
    return CliRunner()


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, list(args))


def test_incident_commands_end_to_end(cli: CliRunner, tmp_path: Path) -> None:
    onset = datetime.now(UTC).isoformat()
    r = run(cli, "incident", "open", "--title", "web 5xx", "--service", "web", "--severity", "sev1",
            "--onset", onset)  # fmt: skip
    assert r.exit_code == 0, r.output
    inc_id = r.output.split()[1]
    assert run(cli, "incident", "open", "--title", "x", "--service", "nope").exit_code == 2
    bad = run(cli, "incident", "open", "--title", "x", "--onset", "yesterday")
    assert bad.exit_code == 2 and "not an ISO-8601 time" in bad.output
    r = run(cli, "incident", "suspects", inc_id, "--json")
    ranking = json.loads(r.output)
    assert not ranking["no_change"] and ranking["suspects"][0]["title"].startswith("web: deployment of v2")
    assert run(cli, "incident", "ack", inc_id).exit_code == 0
    r = run(cli, "incident", "status", inc_id, "fixed")
    assert r.exit_code == 2 and "status must be one of" in r.output
    assert run(cli, "incident", "status", inc_id, "identified", "--note", "v2").exit_code == 0
    # the one-command rollback of the suspect, through `rollback`'s use case
    r = run(cli, "incident", "rollback", inc_id, "--service", "other")
    assert r.exit_code == 2 and "nothing was rolled back" in r.output
    r = run(cli, "incident", "rollback", inc_id)
    assert r.exit_code == 0, r.output
    assert "web: rolling back" in r.output
    from shipwarden.bootstrap import open_store as _store
    from shipwarden.settings import Settings

    store = _store(Settings())
    active = store.active("web")
    assert active is not None and active.kind == "rollback" and active.to_version == "v1"
    assert active.actor == "carol"
    assert run(cli, "incident", "action", "add", inc_id, "canary on 5xx", "--owner", "dave").exit_code == 0
    assert run(cli, "incident", "action", "close", inc_id, "1", "--note", "done in #7").exit_code == 0
    r = run(cli, "incident", "action", "list", "--json")
    assert json.loads(r.output)[0]["status"] == "done"
    assert run(cli, "incident", "note", inc_id, "root_cause", "v2 broke the pool").exit_code == 0
    assert run(cli, "incident", "status", inc_id, "resolved").exit_code == 0
    r = run(cli, "incident", "timeline", inc_id, "--json")
    lines = json.loads(r.output)
    assert any(t["action"] == "incident.rollback" for t in lines)
    assert any(t["action"] == "deployment.rollback" for t in lines)
    # the report, then its offline check against a signed export of the chain
    out = tmp_path / "report"
    r = run(cli, "incident", "report", inc_id, "--output", str(out), "--no-pdf")
    assert r.exit_code == 0, r.output
    assert (out / "report.html").exists() and (out / "report.json").exists()
    export = tmp_path / "audit.jsonl"
    r = run(cli, "audit", "export", "--out", str(export))
    assert r.exit_code == 0, r.output
    key = Settings().state_dir / "keys" / "signing.pub"
    r = run(cli, "incident", "verify-report", str(out / "report.json"), "--export", str(export),
            "--public-key", str(key))  # fmt: skip
    assert r.exit_code == 0 and "match the verified audit export" in r.output, r.output
    doc = json.loads((out / "report.json").read_text())
    doc["timeline"][0]["hash"] = "0" * 64
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    r = run(cli, "incident", "verify-report", str(forged), "--export", str(export), "--public-key", str(key))
    assert r.exit_code == 1 and "hash is not the SHA-256" in r.output
    r = run(cli, "incident", "show", inc_id, "--json")
    shown = json.loads(r.output)
    assert shown["status"] == "resolved" and shown["times"]["time_to_acknowledge_s"] is not None
