"""The README's first-run section, run as written: from nothing to a CI token that works (class 11).

The ``sh`` block after the ``<!-- first-run`` marker in README.md is run by bash in an empty
directory (with ``examples/`` beside it and a git commit to name), through the real CLI and a real
``shipwarden serve``.  Two things a person does by hand are done here by machine:

* ``.venv/bin/shipwarden`` is a thin wrapper around the real CLI that plays the authenticator app:
  it remembers the secret ``user mfa enroll`` prints, and puts a fresh pyotp code (each one newer
  than the last, as a code works once) wherever the README has a placeholder code
  (``--otp 234567``, ``user mfa confirm alice 123456``);
* the password prompt is answered on stdin, and port 8443 becomes a free port.

Everything else — every command, option, path and the final ``curl`` with the CI token — is the
README's text.  It must end with the token's POST accepted (201) and recorded.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shipwarden.adapters.net import free_port
from shipwarden.bootstrap import build_service
from shipwarden.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a long enough first-run passphrase"

WRAPPER = '''#!{python}
"""The real shipwarden CLI, with the authenticator app's codes filled in (see test_first_run.py)."""
import os, subprocess, sys, time, urllib.parse
import pyotp

state = os.environ["FIRST_RUN_STATE"]
cli = [sys.executable, "-m", "shipwarden.entrypoints.cli"]
args = sys.argv[1:]


def code(user):
    """A current code for ``user``'s secret, on a later time step than the last one used."""
    secret = open(os.path.join(state, user + ".secret")).read().strip()
    used = os.path.join(state, user + ".step")
    last = int(open(used).read()) if os.path.exists(used) else -1
    while True:
        now = int(time.time() // 30)
        # the server accepts one step of drift either way: the step before this one too, while
        # this one has time left for the command to run (three codes before a wait, not two)
        floor = now - 1 if 30 - time.time() % 30 > 12 else now
        step = max(last + 1, floor)
        if step <= now + 1:
            break
        time.sleep(30 - time.time() % 30 + 0.5)
    open(used, "w").write(str(step))
    return pyotp.TOTP(secret).at(step * 30)


if "--otp" in args:
    args[args.index("--otp") + 1] = code(os.environ["SHIPWARDEN_ACTOR"])
if args[:3] == ["user", "mfa", "confirm"]:
    args[4] = code(args[3])
if args[:3] == ["user", "mfa", "enroll"]:
    r = subprocess.run(cli + args, stdout=subprocess.PIPE, text=True)
    sys.stdout.write(r.stdout)
    uri = next(line for line in r.stdout.splitlines() if line.startswith("otpauth://"))
    secret = urllib.parse.parse_qs(urllib.parse.urlsplit(uri).query)["secret"][0]
    open(os.path.join(state, args[3] + ".secret"), "w").write(secret)
    sys.exit(r.returncode)
os.execv(sys.executable, cli + args)
'''


def readme_first_run() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- first-run[^>]*-->\s*```sh\n(.*?)\n```", text, re.S)
    assert m, "README.md has no <!-- first-run --> sh block"
    return m.group(1)


def test_readme_first_run_ends_with_a_working_ci_token(tmp_path: Path) -> None:
    block = readme_first_run()
    # the README's promises, so that this test keeps testing them
    for needed in ("user create alice --role admin", "user mfa enroll alice", "user mfa confirm alice",
                   "token create", "serve --dev-tls --port 8443", "Authorization: Bearer $TOKEN", "8443"):
        assert needed in block, needed
    work = tmp_path / "checkout"
    (work / ".venv" / "bin").mkdir(parents=True)
    (work / "examples").symlink_to(ROOT / "examples")
    wrapper = work / ".venv" / "bin" / "shipwarden"
    wrapper.write_text(WRAPPER.format(python=sys.executable))
    wrapper.chmod(0o755)
    codes = tmp_path / "authenticator"
    codes.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=work, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "first"], cwd=work, check=True)

    script = block.replace("8443", str(free_port()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPWARDEN_")}
    env["FIRST_RUN_STATE"] = str(codes)
    out_file, err_file = tmp_path / "stdout", tmp_path / "stderr"
    with out_file.open("w") as out_f, err_file.open("w") as err_f:
        # files, not pipes: the backgrounded `serve` must not keep the test waiting for EOF
        proc = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=work,
            env=env,
            stdin=subprocess.PIPE,
            stdout=out_f,
            stderr=err_f,
            text=True,
            start_new_session=True,  # no terminal: the password prompt reads stdin
        )
        try:
            proc.communicate(f"{PASSWORD}\n{PASSWORD}\n", timeout=240)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # serve, should the script have stopped before `kill %1`
            except ProcessLookupError:
                pass
            proc.wait(30)
    out, err = out_file.read_text(), err_file.read_text()
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    assert '"evidence"' in out, out  # curl printed the 201 body

    svc = build_service(Settings(state_dir=work / ".shipwarden", policy=work / "examples" / "policy.yaml"))
    try:
        alice, ci = svc.access.user("alice"), svc.access.user("ci")
        assert [b.role.value for b in alice.bindings] == ["admin"] and alice.mfa_enabled
        assert alice.password_hash is not None and ci.password_hash is None
        [token] = svc.access.tokens("ci")
        assert {p.value for p in token.scopes} == {"evidence.write", "deployment.create"}
        log = svc.audit.query(limit=100000)
        confirmed = [e for e in log if e["action"] == "auth.mfa_confirm"]
        assert [(e["actor"], e["detail"]["via"]) for e in confirmed] == [("alice", "cli")]
        posted = [
            e
            for e in log
            if e["action"] == "access" and e["detail"]["path"] == "/evidence" and e["actor"] == "ci"
        ]
        assert [(e["outcome"], e["detail"]["via"]) for e in posted] == [("allowed", f"token {token.id}")]
        assert [e["actor"] for e in log if e["action"] == "evidence.stored"] == ["ci"]
    finally:
        svc.store.engine.dispose()
