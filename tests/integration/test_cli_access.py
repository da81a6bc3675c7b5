"""The command line against the permission matrix (E5/E6): single-operator mode, roles, MFA, audit.

Commands run in-process (``CliRunner``) against a temporary state directory and the
test policy of ``tests/fixtures/deploy_env.py``; nothing here starts instances or
nginx (deployments are only recorded, ``--no-wait``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import typer
from typer.testing import CliRunner, Result

from shipwarden.bootstrap import Services, build_service
from shipwarden.domain.access import MATRIX, PRODUCTION_AFFECTING, Role
from shipwarden.entrypoints.cli import app
from shipwarden.entrypoints.cli.guard import COMMANDS, SINGLE_OPERATOR
from shipwarden.security.totp import time_step, totp_at
from shipwarden.services.access import parse_binding
from tests.fixtures.deploy_env import DeployEnv, make_env, teardown_env

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


@dataclass
class Cli:
    env: DeployEnv
    monkeypatch: pytest.MonkeyPatch
    runner: CliRunner = field(default_factory=CliRunner)
    secrets: dict[str, str] = field(default_factory=dict)

    def run(self, actor: str, *args: str, stdin: str = "") -> Result:
        self.monkeypatch.setenv("SHIPWARDEN_ACTOR", actor)
        return self.runner.invoke(app, list(args), input=stdin)

    def services(self, clock: Any = None) -> Services:
        return build_service(self.env.settings, clock=clock)

    def user(self, name: str, *roles: str, mfa: bool = True) -> None:
        """Create a user as an admin would; with MFA enrolled ten minutes ago (so every current code
        is newer than the one the enrolment used)."""
        past = datetime.now(UTC) - timedelta(minutes=10)
        svc = self.services(clock=lambda: past)
        try:
            svc.access.create_user("setup", name, PASSWORD, [parse_binding(r) for r in roles])
            if mfa:
                sid, _ = svc.access.login(name, PASSWORD, "127.0.0.1")
                p = svc.access.authenticate_session(sid, "127.0.0.1")
                secret, _ = svc.access.mfa_enroll(p)
                svc.access.mfa_confirm(p, totp_at(secret, time_step(past)))
                self.secrets[name] = secret
        finally:
            svc.store.engine.dispose()

    def code(self, name: str, offset_steps: int = 0) -> str:
        """The code of the step ``offset_steps`` from now.  A past step is accepted only until the
        current step ends (one step of drift), so for one the current step must have time left for
        the command to run: under load a command can take seconds, and crossing a step boundary
        between making the code and checking it made this test fail now and then."""
        if offset_steps < 0:
            left = 30 - time.time() % 30
            if left < 15:
                time.sleep(left + 0.2)
        return totp_at(self.secrets[name], time_step(datetime.now(UTC)) + offset_steps)

    def wrong_code(self, name: str) -> str:
        now = time_step(datetime.now(UTC))
        near = {totp_at(self.secrets[name], now + k) for k in range(-2, 3)}
        return next(c for c in ("000000", "111111", "222222") if c not in near)

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        svc = self.services()
        try:
            return svc.audit.query(limit=100000, **filters)
        finally:
            svc.store.engine.dispose()

    def deployments(self) -> list[tuple[Any, ...]]:
        svc = self.services()
        try:
            return [
                (d.id, d.kind, d.to_version, d.phase, d.operator_request, d.paused, d.actor)
                for d in svc.store.history(None, 1000)
            ]
        finally:
            svc.store.engine.dispose()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    env = make_env(tmp_path)
    monkeypatch.setenv("SHIPWARDEN_STATE_DIR", str(env.settings.state_dir))
    monkeypatch.setenv("SHIPWARDEN_POLICY", str(env.policy_path))
    monkeypatch.delenv("SHIPWARDEN_OTP", raising=False)
    monkeypatch.delenv("SHIPWARDEN_MFA_REQUIRED", raising=False)
    yield Cli(env, monkeypatch)
    teardown_env(env)  # a test that lets a deployment run leaves nginx and instances behind otherwise


def _one_line(r: Result) -> str:
    text = r.output.strip()
    assert text.startswith("error: ") and "\n" not in text, text
    return text


# -- (a) single-operator mode ---------------------------------------------------------------------------
def test_single_operator_mode_allows_and_audits_until_the_first_user(cli: Cli) -> None:
    r = cli.run("tester", "deploy", "web", "--version", "v1", "--no-wait")
    assert r.exit_code == 0, r.output
    r = cli.run("tester", "history")
    assert r.exit_code == 0 and "v1" in r.output, r.output
    entries = cli.audit(action="access", actor="tester")
    assert [e["detail"]["path"] for e in entries] == ["deploy", "history"]
    for e in entries:
        assert e["outcome"] == "allowed"
        assert e["detail"]["via"] == "cli" and e["detail"]["method"] == "CLI"
        assert e["detail"]["reason"] == SINGLE_OPERATOR
    assert entries[0]["detail"]["permission"] == "deployment.create" and entries[0]["service"] == "web"

    # the first user is created in single-operator mode, and ends it
    r = cli.run("tester", "user", "create", "alice", "--role", "admin", "--no-password")
    assert r.exit_code == 0, r.output
    last = cli.audit(action="access")[-1]
    assert last["detail"]["path"] == "user create" and last["detail"]["reason"] == SINGLE_OPERATOR
    before, n = cli.deployments(), len(cli.audit())
    r = cli.run("tester", "deploy", "web", "--version", "v2", "--no-wait")
    assert r.exit_code == 2
    msg = _one_line(r)
    assert "tester is not a user" in msg and "SHIPWARDEN_ACTOR" in msg and "user create tester" in msg
    assert cli.deployments() == before
    new = cli.audit()[n:]
    assert len(new) == 1, new
    assert new[0]["action"] == "access" and new[0]["outcome"] == "denied" and new[0]["actor"] == "tester"
    assert new[0]["detail"]["permission"] == "deployment.create" and new[0]["service"] == "web"


def test_the_first_user_must_be_an_admin(cli: Cli) -> None:
    """Class 11: a first user who cannot manage users would lock the installation out of admin."""
    for roles in (("--role", "viewer"), ("--role", "admin:web"), ()):
        n = len(cli.audit())
        r = cli.run("tester", "user", "create", "vic", *roles)  # refused before asking for a password
        assert r.exit_code == 2, r.output
        msg = _one_line(r)
        assert "the first user must be an admin" in msg and "shipwarden user create NAME --role admin" in msg
        assert "nobody able to manage users or tokens" in msg
        assert cli.services().access.users() == []
        assert [e["action"] for e in cli.audit()[n:]] == ["access"]  # the single-operator decision only
    r = cli.run("tester", "deploy", "web", "--version", "v1", "--no-wait")
    assert r.exit_code == 0, r.output  # still single-operator mode
    r = cli.run("tester", "user", "create", "alice", "--role", "admin", "--no-password")
    assert r.exit_code == 0, r.output
    assert "shipwarden user mfa enroll alice" in r.output


def _secret(output: str) -> str:
    uri = next(line for line in output.splitlines() if line.startswith("otpauth://totp/"))
    return parse_qs(urlsplit(uri).query)["secret"][0]


def test_an_admin_created_at_the_machine_enrols_mfa_there_and_can_then_administer(cli: Cli) -> None:
    """Class 11: ``--no-password`` admin → ``user mfa enroll`` / ``confirm`` → users and tokens."""
    assert cli.run("tester", "user", "create", "alice", "--role", "admin", "--no-password").exit_code == 0
    r = cli.run("alice", "user", "create", "ci", "--role", "developer", "--no-password", "--otp", "123456")
    assert r.exit_code == 2
    assert "alice has no second factor: enrol one with shipwarden user mfa enroll alice" in _one_line(r)

    n = len(cli.audit())
    for actor, msg in (
        ("mallory", "mallory is not a user here"),
        ("alice", "a second factor is enrolled by its owner: run this as bob"),
    ):
        who = "bob" if actor == "alice" else "alice"
        r = cli.run(actor, "user", "mfa", "enroll", who)
        assert r.exit_code == 2 and msg in _one_line(r), r.output
    new = cli.audit()[n:]
    assert [(e["action"], e["outcome"], e["detail"]["path"]) for e in new] == [
        ("access", "denied", "user mfa enroll"),
        ("access", "denied", "user mfa enroll"),
    ]

    r = cli.run("alice", "user", "mfa", "enroll", "alice")
    assert r.exit_code == 0, r.output
    secret = _secret(r.output)
    assert "█" in r.output or "▀" in r.output  # the QR code, drawn in the terminal
    assert "user mfa confirm alice CODE" in r.output
    assert not cli.services().access.user("alice").mfa_enabled  # pending until a first code
    cli.secrets["alice"] = secret

    r = cli.run("alice", "user", "mfa", "confirm", "alice", cli.wrong_code("alice"))
    assert r.exit_code == 2 and "wrong code" in _one_line(r)
    assert not cli.services().access.user("alice").mfa_enabled
    r = cli.run("alice", "user", "mfa", "confirm", "alice", cli.code("alice", -1))
    assert r.exit_code == 0, r.output
    recovery = [line for line in r.output.splitlines() if len(line) == 19 and line.count("-") == 3]
    assert len(recovery) == 10, r.output
    assert cli.services().access.user("alice").mfa_enabled
    entries = cli.audit(actor="alice")
    confirm = [e for e in entries if e["action"] == "auth.mfa_confirm"]
    assert [(e["outcome"], e["detail"]["via"]) for e in confirm] == [("ok", "cli")]
    assert [e["outcome"] for e in entries if e["action"] == "auth.mfa"] == ["denied"]  # the wrong code
    r = cli.run("alice", "user", "mfa", "confirm", "alice", cli.code("alice"))
    assert r.exit_code == 2 and "already enabled" in _one_line(r)

    # now alice administers, one fresh code per command
    ci = ("user", "create", "ci", "--role", "developer", "--no-password")
    r = cli.run("alice", *ci, "--otp", cli.code("alice"))
    assert r.exit_code == 0, r.output
    r = cli.run(
        "alice", "token", "create", "--owner", "ci", "--name", "pipeline", "--scope", "evidence.write",
        "--otp", cli.code("alice", 1),
    )
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().startswith("swt_")
    # replacing the active second factor needs a current code from it
    r = cli.run("alice", "user", "mfa", "enroll", "alice")
    assert r.exit_code == 2 and "already has a second factor" in _one_line(r)
    assert cli.services().access.user("alice").mfa_enabled


# -- (b) a viewer cannot change production ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "permission"),
    [
        (("deploy", "web", "--version", "v2", "--no-wait"), "deployment.create"),
        (("rollback", "web", "--no-wait"), "deployment.rollback"),
        (("promote", "web"), "deployment.promote"),
        (("pause", "web"), "deployment.promote"),
        (("confirm", "web"), "deployment.promote"),
        (("abort", "web"), "deployment.abort"),
        (("up",), "deployment.create"),
        (("down",), "deployment.abort"),
        (("reconcile",), "deployment.reconcile"),
    ],
)
def test_viewer_is_refused_production_commands(cli: Cli, args: tuple[str, ...], permission: str) -> None:
    assert cli.run("tester", "deploy", "web", "--version", "v1", "--no-wait").exit_code == 0
    cli.user("vic", "viewer")
    before, n = cli.deployments(), len(cli.audit())
    otp = () if args[0] == "reconcile" else ("--otp", cli.code("vic"))  # reconcile takes no code
    r = cli.run("vic", *args, *otp)  # a valid code does not make up for the role
    assert r.exit_code == 2, r.output
    msg = _one_line(r)
    assert f"vic lacks {permission} on web (holds viewer)" in msg, msg
    assert "ask an admin: shipwarden user roles vic --role viewer --role " in msg
    assert cli.deployments() == before
    new = cli.audit()[n:]
    assert len(new) == 1, new  # only the decision: the code was not even checked
    e = new[0]
    assert (e["action"], e["outcome"], e["actor"], e["service"]) == ("access", "denied", "vic", "web")
    assert e["detail"]["permission"] == permission and e["detail"]["path"] == args[0]
    assert e["detail"]["via"] == "cli" and permission in e["detail"]["reason"]


def test_the_controller_identity_runs_reconcile_without_a_code_and_nothing_else(cli: Cli) -> None:
    """A daemon cannot type TOTP codes: ``reconcile`` only carries out what was authorised."""
    assert cli.run("tester", "deploy", "web", "--version", "v1", "--no-wait").exit_code == 0
    cli.user("ctl", "controller", mfa=False)
    r = cli.run("ctl", "reconcile")
    assert r.exit_code == 0, r.output
    assert "resuming" in r.output
    ok = [e for e in cli.audit() if e["actor"] == "ctl" and e["action"] == "access"]
    assert [(e["outcome"], e["detail"]["permission"]) for e in ok] == [("allowed", "deployment.reconcile")]
    before = cli.deployments()
    r = cli.run("ctl", "deploy", "web", "--version", "v2", "--no-wait")
    assert r.exit_code == 2 and "ctl lacks deployment.create on web (holds controller)" in _one_line(r)
    assert cli.deployments() == before


# -- (c) fresh MFA for production-affecting actions ---------------------------------------------------------
@pytest.mark.parametrize("role", ["release-manager", "sre"])
def test_production_actions_need_a_fresh_unused_totp_code(cli: Cli, role: str) -> None:
    cli.user("rm", role)

    r = cli.run("rm", "deploy", "web", "--version", "v1", "--no-wait")
    assert r.exit_code == 2
    msg = _one_line(r)
    assert "deployment.create on web affects production" in msg and "--otp" in msg and "rm" in msg
    assert cli.deployments() == []
    denied = cli.audit(action="access")[-1]
    assert denied["outcome"] == "denied" and "MFA required" in denied["detail"]["reason"]

    n = len(cli.audit())
    r = cli.run("rm", "deploy", "web", "--version", "v1", "--no-wait", "--otp", cli.wrong_code("rm"))
    assert r.exit_code == 2
    assert "wrong code" in _one_line(r)
    assert cli.deployments() == []
    new = cli.audit()[n:]
    assert [(e["action"], e["outcome"]) for e in new] == [("auth.mfa", "denied"), ("access", "denied")]
    assert "TOTP code refused" in new[1]["detail"]["reason"]

    good = cli.code("rm")
    r = cli.run("rm", "deploy", "web", "--version", "v1", "--no-wait", "--otp", good)
    assert r.exit_code == 0, r.output
    [dep] = cli.deployments()
    assert dep[2] == "v1" and dep[-1] == "rm"
    mfa, allowed = cli.audit()[-3:-1]  # then the rollout's own deployment.deploy entry
    assert (mfa["action"], mfa["outcome"], mfa["detail"]["via"]) == ("auth.mfa", "ok", "cli")
    assert (allowed["action"], allowed["outcome"]) == ("access", "allowed")
    assert allowed["detail"]["reason"] == "TOTP code verified"

    before = cli.deployments()
    r = cli.run("rm", "promote", "web", "--otp", good)  # the same code again
    assert r.exit_code == 2
    assert "already used" in _one_line(r)
    assert cli.deployments() == before

    cli.monkeypatch.setenv("SHIPWARDEN_OTP", cli.code("rm", 1))  # the next code, from the environment
    r = cli.run("rm", "promote", "web")
    assert r.exit_code == 0, r.output
    assert cli.deployments()[0][4] is not None  # the promote request is recorded

    # reading needs no code at all
    assert cli.run("rm", "status", "web", "--once").exit_code == 0


def test_without_an_enrolled_second_factor_the_message_says_how_to_enrol(cli: Cli) -> None:
    cli.user("nomfa", "release-manager", mfa=False)
    r = cli.run("nomfa", "rollback", "web", "--otp", "123456")
    assert r.exit_code == 2
    msg = _one_line(r)
    assert "nomfa has no second factor" in msg and "/auth/mfa/enroll" in msg


def test_mfa_can_be_switched_off_by_the_installation(cli: Cli) -> None:
    cli.user("rm", "release-manager")
    cli.monkeypatch.setenv("SHIPWARDEN_MFA_REQUIRED", "false")
    r = cli.run("rm", "deploy", "web", "--version", "v1", "--no-wait")
    assert r.exit_code == 0, r.output


def test_the_cli_is_held_to_the_intersection_of_the_user_and_role_allowlists(cli: Cli) -> None:
    """The operator at the machine crosses no network, but a role whose address allowlist does not
    overlap the user's admits no address at all — the CLI included (user ∩ role ∩ token)."""
    cli.monkeypatch.setenv("SHIPWARDEN_ROLE_CIDRS", '{"auditor": ["10.7.0.0/16"]}')
    svc = cli.services()
    try:
        svc.access.create_user("setup", "far", PASSWORD, [parse_binding("auditor")], ["192.168.0.0/16"])
        svc.access.create_user("setup", "near", PASSWORD, [parse_binding("auditor")], ["10.0.0.0/8"])
    finally:
        svc.store.engine.dispose()
    r = cli.run("far", "audit", "verify")
    assert r.exit_code == 2, r.output
    msg = _one_line(r)
    assert "audit.read is not granted to far (auditor) from anywhere" in msg, msg
    assert "allowlists do not overlap" in msg
    denied = cli.audit(action="access", actor="far")[-1]
    assert denied["outcome"] == "denied" and "do not overlap" in denied["detail"]["reason"]
    r = cli.run("near", "audit", "verify")  # 10.0.0.0/8 ∩ 10.7.0.0/16 admits somewhere: the machine too
    assert r.exit_code == 0, r.output


# -- (d) reading ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["viewer", "auditor"])
def test_read_only_commands_are_open_to_readers(cli: Cli, role: str) -> None:
    assert cli.run("tester", "deploy", "web", "--version", "v1", "--no-wait").exit_code == 0
    [dep] = cli.deployments()
    cli.user("reader", role)
    n = len(cli.audit())
    for args in (
        ("status", "web", "--once"),
        ("history",),
        ("history", "web"),
        ("show", dep[0]),
        ("show", dep[0], "--json"),
        ("changes",),
    ):
        r = cli.run("reader", *args)
        assert r.exit_code == 0, (args, r.output)
    assert dep[0] in cli.run("reader", "show", dep[0]).output
    new = cli.audit()[n:]
    assert all(e["outcome"] == "allowed" and e["detail"]["permission"] == "deployment.read" for e in new)
    assert [e["service"] for e in new if e["detail"]["path"] == "show"] == ["web", "web", "web"]
    r = cli.run("reader", "audit", "verify")
    if role == "auditor":
        assert r.exit_code == 0, r.output
    else:
        assert r.exit_code == 2 and "reader lacks audit.read (holds viewer)" in _one_line(r)


def test_a_role_scoped_to_another_service_does_not_read_this_one(cli: Cli) -> None:
    assert cli.run("tester", "deploy", "web", "--version", "v1", "--no-wait").exit_code == 0
    [dep] = cli.deployments()
    cli.user("other", "viewer:billing")
    r = cli.run("other", "status", "web", "--once")
    assert r.exit_code == 2
    assert "other lacks deployment.read on web (holds viewer:billing)" in _one_line(r)
    assert "--role viewer:billing --role viewer:web" in r.output
    assert cli.run("other", "show", dep[0]).exit_code == 2
    r = cli.run("other", "history")  # every service: a scoped role is not enough
    assert r.exit_code == 2 and "other lacks deployment.read across all services" in _one_line(r)
    assert cli.run("other", "history", "billing").exit_code == 0


# -- the whole table, walked over the registered commands ---------------------------------------------
VALUES = {
    "service": "web",
    "deployment_id": "d-nope",
    "ref": "c-nope",
    "change": "c-nope",
    "name": "nobody",
    "token_id": "t-nope",
    "version": "v9",
    "role": "cab",
    "owner": "nobody",
    "scope": "deployment.read",
    "commit": "ab" * 20,
    "kind": "junit",
    "incident_id": "inc-20300101-000000",
    "title": "x",
    "new_status": "resolved",
    "section": "lessons",
    "text": "x",
    "number": "1",
    "reason": "reviewed",
    "matchers": "service=web",
    "comment": "x",
    "silence_id": "s-nope",
    "escalation_id": "e-nope",
    "schedule": "primary",
    "person": "nobody",
    "start": "2030-01-01T00:00Z",
    "until": "2030-01-02T00:00Z",
    "override_id": "ovr-nope",
}


def _argv(key: str, tmp: Path) -> list[str]:
    """``key``'s words, then a value for every required argument and option."""
    from tests.unit.entrypoints.test_cli_access_table import COMMAND_TREE

    args, opts = [], []
    for p in COMMAND_TREE[key].params:
        if not p.required:
            continue
        if p.name == "file":
            value = str(tmp / "report.xml")
        else:
            assert p.name in VALUES, f"{key}: give the walk a value for required {p.name!r}"
            value = VALUES[p.name]
        if type(p).__name__.endswith("Argument"):
            args.append(value)
        else:
            opts += [p.opts[0], value]
    return [*key.split(), *args, *opts]


ACTORS = ["mallory", *(r.value for r in Role)]


@pytest.mark.parametrize("actor", ACTORS)
def test_every_mapped_command_refuses_and_audits(cli: Cli, tmp_path: Path, actor: str) -> None:
    """Each command of ``guard.COMMANDS``, run by a non-user and by every role without a TOTP code:
    refused with exit 2 exactly when the matrix (or fresh MFA) says so, with one audit entry naming
    the command and its permission, and nothing else written."""
    (tmp_path / "report.xml").write_text("<testsuite/>")
    assert cli.run("tester", "deploy", "web", "--version", "v1", "--no-wait").exit_code == 0
    cli.user("admin" if actor == "mallory" else actor, "admin" if actor == "mallory" else actor)
    users = cli.services().access.users()
    before = cli.deployments()
    checked = 0
    for key, rule in COMMANDS.items():
        perm = rule.permission
        if actor == "mallory":
            expect = "mallory is not a user"
        elif perm not in MATRIX[Role(actor)]:
            expect = f"{actor} lacks {perm.value}"
        elif perm in PRODUCTION_AFFECTING:
            expect = "must confirm with a current TOTP code"
        else:
            continue  # allowed: running it is the other tests' business
        n = len(cli.audit())
        r = cli.run(actor, *_argv(key, tmp_path), stdin=PASSWORD + "\n")
        assert r.exit_code == 2, (key, r.output)
        assert expect in _one_line(r), (key, r.output)
        new = cli.audit()[n:]
        assert len(new) == 1, (key, new)
        e = new[0]
        assert (e["action"], e["outcome"], e["actor"]) == ("access", "denied", actor), key
        assert e["detail"]["path"] == key and e["detail"]["permission"] == perm.value, (key, e)
        checked += 1
    assert cli.deployments() == before
    assert [u.name for u in cli.services().access.users()] == [u.name for u in users]
    assert checked >= {"mallory": len(COMMANDS), "admin": 10}.get(actor, 15)


def test_the_walk_covers_the_registered_tree() -> None:
    from tests.unit.entrypoints.test_cli_access_table import COMMAND_TREE

    assert set(COMMANDS) <= set(COMMAND_TREE)
    assert isinstance(typer.main.get_command(app), typer.core.TyperGroup)
