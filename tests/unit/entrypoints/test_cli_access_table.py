"""The CLI's access table against the registered command tree: no command can forget its check.

Behaviour (each mapped command really refuses and audits) is in
``tests/integration/test_cli_access.py``; this file checks the declarations.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from shipwarden.domain.access import PRODUCTION_AFFECTING, MfaPolicy, Permission
from shipwarden.entrypoints.cli import app
from shipwarden.entrypoints.cli.guard import COMMANDS, EXEMPT, OWN_ACCOUNT, mfa_commands

P = Permission


def leaves(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every runnable command of the Typer/Click tree, as ("user create", command)."""
    subs = getattr(cmd, "commands", None)
    if subs:
        for name, sub in subs.items():
            yield from leaves(sub, (*path, name))
    else:
        yield " ".join(path), cmd


COMMAND_TREE = dict(leaves(typer.main.get_command(app)))


def _opts(key: str) -> set[str]:
    return {o for p in COMMAND_TREE[key].params for o in (getattr(p, "opts", None) or [])}


def test_every_registered_command_has_an_access_rule_or_an_exemption() -> None:
    assert len(COMMAND_TREE) >= 40
    unmapped = sorted(set(COMMAND_TREE) - set(COMMANDS) - set(EXEMPT) - set(OWN_ACCOUNT))
    assert not unmapped, f"add to entrypoints/cli/guard.py COMMANDS (or EXEMPT, saying why): {unmapped}"
    assert not set(COMMANDS) & set(EXEMPT)
    assert not set(OWN_ACCOUNT) & (set(COMMANDS) | set(EXEMPT))
    stale = sorted((set(COMMANDS) | set(EXEMPT) | set(OWN_ACCOUNT)) - set(COMMAND_TREE))
    assert not stale, f"no such command any more: {stale}"
    assert all(reason.strip() for reason in [*EXEMPT.values(), *OWN_ACCOUNT.values()])


def test_own_account_commands_are_only_the_second_factor_and_name_their_user() -> None:
    assert set(OWN_ACCOUNT) == {"user mfa enroll", "user mfa confirm"}
    for key in OWN_ACCOUNT:
        assert "name" in {p.name for p in COMMAND_TREE[key].params}, key


def test_exemptions_are_only_the_storeless_commands_and_serve() -> None:
    assert set(EXEMPT) == {"policy check", "policy schema", "judge", "judge-plan", "dossier verify",
                           "audit verify-export", "incident verify-report", "serve"}


def test_rollout_commands_map_to_the_production_permissions() -> None:
    expected = {
        "deploy": (P.DEPLOYMENT_CREATE, "service"),
        "rollback": (P.DEPLOYMENT_ROLLBACK, "service"),
        "promote": (P.DEPLOYMENT_PROMOTE, "service"),
        "pause": (P.DEPLOYMENT_PROMOTE, "service"),
        "resume": (P.DEPLOYMENT_PROMOTE, "service"),
        "confirm": (P.DEPLOYMENT_PROMOTE, "service"),
        "abort": (P.DEPLOYMENT_ABORT, "service"),
        "up": (P.DEPLOYMENT_CREATE, "policy"),
        "down": (P.DEPLOYMENT_ABORT, "policy"),
        "reconcile": (P.DEPLOYMENT_RECONCILE, "policy"),
        "status": (P.DEPLOYMENT_READ, "service"),
        "history": (P.DEPLOYMENT_READ, "service"),
        "show": (P.DEPLOYMENT_READ, "deployment"),
        "replay": (P.DEPLOYMENT_READ, "deployment"),
        "explain": (P.DEPLOYMENT_READ, None),
        "changes": (P.DEPLOYMENT_READ, None),
        "approve": (P.CHANGE_APPROVE, None),
        "reject": (P.CHANGE_APPROVE, None),
        "evidence upload": (P.EVIDENCE_WRITE, None),
    }
    assert {k: (COMMANDS[k].permission, COMMANDS[k].scope) for k in expected} == expected


def test_scoped_rules_have_the_argument_they_scope_by() -> None:
    for key, rule in COMMANDS.items():
        names = {p.name for p in COMMAND_TREE[key].params}
        if rule.scope == "service":
            assert "service" in names, key
        elif rule.scope == "deployment":
            assert "deployment_id" in names, key


def test_commands_that_can_need_mfa_take_otp_and_the_others_do_not() -> None:
    assert MfaPolicy().permissions == PRODUCTION_AFFECTING
    needing = set(mfa_commands())
    assert {"deploy", "rollback", "promote", "abort", "approve", "user create", "token create"} <= needing
    for key in COMMANDS:
        has = "--otp" in _opts(key)
        assert has == (key in needing), f"{key}: --otp {'missing' if not has else 'never used'}"


def test_otp_option_reads_the_environment() -> None:
    otp = next(p for p in COMMAND_TREE["deploy"].params if p.name == "otp")
    assert otp.envvar == "SHIPWARDEN_OTP"


@pytest.mark.parametrize(
    "args",
    [
        ["policy", "schema"],
        ["policy", "check", "nope.yaml"],
        ["judge", "--baseline", "nope.jsonl", "--canary", "nope.jsonl"],
        ["dossier", "verify", "nope.json", "--public-key", "nope.pem"],
    ],
)
def test_exempt_commands_touch_no_state(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("SHIPWARDEN_STATE_DIR", str(state))
    monkeypatch.setenv("SHIPWARDEN_POLICY", str(tmp_path / "none.yaml"))
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, args)
    assert r.exit_code in (0, 1, 2), r.output
    assert not state.exists(), f"{' '.join(args)} created the state directory: it is not store-free"
