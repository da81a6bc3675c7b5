"""Secrets at rest (raw database bytes), KEK rotation, signed dossiers, and the API over real TLS."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from shipwarden.adapters.net import free_port
from shipwarden.domain.rollout import Phase, Transition
from shipwarden.entrypoints.cli import app as cli
from shipwarden.security.dossier import DossierError, verify_dossier
from shipwarden.security.envelope import Envelope, Keyring, generate_kek
from shipwarden.services.access import Principal
from tests.integration.http.conftest import PASSWORD, Api

pytestmark = pytest.mark.integration


def _raw(state: Path) -> bytes:
    return b"".join(p.read_bytes() for p in state.glob("shipwarden.db*"))


def test_no_secret_in_clear_and_rotation_keeps_everything_readable(api: Api) -> None:
    acc = api.services.access
    values = {
        "github-webhook": "whsec-Zq8vT1p0-github",
        "newrelic-key": "NRAK-7GQ2K9XJ4P1ZL0",
        "apprise-url": "pagerduty://integration-key-4f1e@events",
    }
    for name, value in values.items():
        acc.put_secret("root", name, value)
    acc.create_user("setup", "eve", PASSWORD, [])
    totp_secret, _ = acc.mfa_enroll(Principal(name="eve", kind="session", ip="127.0.0.1"))
    sid, _ = acc.login("eve", PASSWORD, "127.0.0.1")
    clear = [*values.values(), totp_secret, PASSWORD, sid]
    raw = _raw(api.services.settings.state_dir)
    for s in clear:
        for form in (s.encode(), base64.b64encode(s.encode()), s.encode().hex().encode()):
            assert form not in raw, f"{s!r} found in the database file"
    assert b"whsec" not in raw and b"NRAK" not in raw
    assert b"secret.put" in raw  # the audit says a secret was stored, not its value

    old = acc.envelope.keyring
    new = old.with_primary("k2", generate_kek())
    acc.envelope = Envelope(new)
    counts = acc.rotate_keys("root")
    assert counts == {"rewrapped": 4, "current": 0, "unreadable": 0}
    acc.envelope = Envelope(Keyring({"k2": new.key("k2")}, "k2"))  # the old KEK retired
    for name, value in values.items():
        assert acc.get_secret(name) == value
    assert acc._secret(acc.user("eve")) == totp_secret
    assert acc.rotate_keys("root") == {"rewrapped": 0, "current": 4, "unreadable": 0}
    for s in clear:
        assert s.encode() not in _raw(api.services.settings.state_dir)


def test_dossier_verifies_offline_and_any_changed_byte_fails(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = api.services.store
    dep = store.create_deployment(
        service="web",
        kind="deploy",
        strategy="blueGreen",
        from_version="v1",
        to_version="v2",
        actor="alice",
        policy_digest="d" * 64,
        policy_source="team.yaml",
        plan={"strategy": "blueGreen"},
        commit_sha="ab" * 20,
    )
    for p in (
        Phase.STARTING,
        Phase.PREVIEW,
        Phase.PROMOTING,
        Phase.SCALE_DOWN_WAIT,
        Phase.SCALING_DOWN,
        Phase.SUCCEEDED,
    ):
        dep = store.transition(dep, Transition(p, f"to {p.value}"), actor="controller")
    api.user("aud", "auditor")
    c = api.session("aud")
    r = c.get(f"/deployments/{dep.id}/dossier")
    assert r.status_code == 200
    blob = r.content
    pub = api.services.signing_public_pem
    d = verify_dossier(blob, pub)
    assert d.record["outcome"] == "succeeded" and d.record["commit"] == "ab" * 20
    assert [e["action"] for e in d.entries][0] == "deployment.deploy" and len(d.entries) == 7
    assert d.checkpoint is not None and d.checkpoint.seq >= d.entries[-1]["seq"]
    for i in range(len(blob)):
        changed = blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1 :]
        with pytest.raises(DossierError):
            verify_dossier(changed, pub)
    assert c.get("/deployments/d-nope/dossier").status_code == 404
    # the CLI writes and verifies the same way, offline
    monkeypatch.setenv("SHIPWARDEN_STATE_DIR", str(api.services.settings.state_dir))
    monkeypatch.setenv("SHIPWARDEN_ACTOR", "aud")
    (tmp_path / "pub.pem").write_bytes(pub)
    out = tmp_path / "d.json"
    r2 = CliRunner().invoke(cli, ["dossier", dep.id, "--out", str(out)])
    assert r2.exit_code == 0, r2.output
    r3 = CliRunner().invoke(cli, ["dossier", "verify", str(out), "--public-key", str(tmp_path / "pub.pem")])
    assert r3.exit_code == 0 and "valid" in r3.output
    out.write_bytes(out.read_bytes().replace(b'"succeeded"', b'"succeedee"', 1))
    r4 = CliRunner().invoke(cli, ["dossier", "verify", str(out), "--public-key", str(tmp_path / "pub.pem")])
    assert r4.exit_code == 1 and "INVALID" in r4.output


def test_serve_dev_tls_over_real_uvicorn(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {
        **os.environ,
        "SHIPWARDEN_STATE_DIR": str(state),
        "SHIPWARDEN_ACTOR": "root",
        "SHIPWARDEN_POLICY": str(tmp_path / "none.yaml"),
    }
    exe = [sys.executable, "-m", "shipwarden.entrypoints.cli"]
    subprocess.run(
        [*exe, "user", "create", "root", "--role", "admin", "--password-stdin"],  # the first user: an admin
        input=PASSWORD,
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    proc = subprocess.Popen(
        [*exe, "serve", "--dev-tls", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        cert = state / "tls" / "dev-cert.pem"
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with httpx.Client(verify=str(cert), trust_env=False) as h:
                    if h.get(f"{url}/healthz").status_code == 200:
                        break
            except (httpx.HTTPError, OSError) as exc:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(
                        proc.stderr.read().decode() if proc.poll() is not None else "timeout"
                    ) from exc
                time.sleep(0.2)
        key_mode = (state / "tls" / "dev-key.pem").stat().st_mode & 0o777
        assert key_mode == 0o600
        with httpx.Client(verify=str(cert), trust_env=False) as h:
            r = h.post(f"{url}/auth/login", json={"user": "root", "password": PASSWORD})
            assert r.status_code == 200
            assert (
                "secure" in r.headers["set-cookie"].lower() and "httponly" in r.headers["set-cookie"].lower()
            )
            assert h.get(f"{url}/deployments").status_code == 200  # secure cookie sent back over TLS
            assert h.get(f"{url}/users").status_code == 403  # user.manage needs a fresh second factor
        with httpx.Client(trust_env=False) as h, pytest.raises(httpx.ConnectError):
            h.get(f"{url}/healthz")  # an unknown CA is refused
        with httpx.Client(trust_env=False) as h, pytest.raises(httpx.HTTPError):
            h.get(f"http://127.0.0.1:{port}/healthz")  # no plain HTTP on the TLS port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
