"""Access control for the command line: the command → permission table and the one check.

Every command that touches the store is listed in :data:`COMMANDS` with the permission
it needs and what it acts on — or, for what a user does to their own account (enrolling
their second factor), in :data:`OWN_ACCOUNT`; commands that touch no store are in
:data:`EXEMPT` with the reason.  ``tests/unit/entrypoints/test_cli_access.py`` walks the Typer command tree
against both, so a new command cannot forget its check.

A command calls :func:`check` (or :func:`authorized`) with its own name before doing
anything; that looks the rule up in the table and asks the API's own decision,
``AccessService.authorize``, for the local actor (``SHIPWARDEN_ACTOR``, else the OS
user).  Every decision, allowed or denied, is one ``access`` audit entry (``via: cli``).

* **Single-operator mode** — while the installation has no users at all, the local
  actor may do everything; each decision is still audited, with that reason.  Creating
  the first user ends it: from then on an unknown actor is refused.
* **Fresh MFA** — once users exist, production-affecting permissions (deploy, promote,
  roll back, abort, approve, users, tokens, secrets) need a current TOTP code:
  ``--otp CODE`` or ``SHIPWARDEN_OTP``, checked like ``POST /auth/mfa/verify``
  (throttled, and each code works once).  The actor's name is whatever the
  environment says; the code is what proves it.
* **Own second factor** — a user enrols their second factor from the machine with
  ``user mfa enroll NAME`` then ``user mfa confirm NAME CODE`` (:func:`check_own`): only
  as that user, and replacing an active one needs a current code from it.  So an admin
  created at the machine (even ``--no-password``) can reach fresh MFA without the API.

A refusal is one line on stderr and exit code 2, and nothing but its audit entry
(and, for a bad code, the failed ``auth.mfa`` entry) is written.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import typer

from shipwarden.domain.access import GLOBAL_ONLY, MATRIX, Permission, Role, Target

__all__ = [
    "COMMANDS",
    "EXEMPT",
    "OWN_ACCOUNT",
    "SINGLE_OPERATOR",
    "OtpOpt",
    "Rule",
    "authorized",
    "check",
    "check_own",
    "services",
]

P = Permission
Scope = Literal["service", "deployment", "policy"] | None


@dataclass(frozen=True)
class Rule:
    """What a command needs: ``permission`` on ``scope``.

    ``scope``: ``"service"`` — the SERVICE the command names (none given: every service);
    ``"deployment"`` — the service of the deployment it names; ``"policy"`` — every service
    of the policy, one check each; ``None`` — the installation (a scoped role is not enough).
    """

    permission: Permission
    scope: Scope = None


COMMANDS: Mapping[str, Rule] = {
    # deployments (entrypoints/cli/__init__.py)
    "deploy": Rule(P.DEPLOYMENT_CREATE, "service"),
    "rollback": Rule(P.DEPLOYMENT_ROLLBACK, "service"),
    "promote": Rule(P.DEPLOYMENT_PROMOTE, "service"),
    "pause": Rule(P.DEPLOYMENT_PROMOTE, "service"),  # as POST /services/{s}/pause
    "resume": Rule(P.DEPLOYMENT_PROMOTE, "service"),
    "confirm": Rule(P.DEPLOYMENT_PROMOTE, "service"),  # passing a gate lets the rollout go on
    "abort": Rule(P.DEPLOYMENT_ABORT, "service"),
    "up": Rule(P.DEPLOYMENT_CREATE, "policy"),  # puts every service behind the router
    "down": Rule(P.DEPLOYMENT_ABORT, "policy"),  # stops every instance: takes production down
    "reconcile": Rule(P.DEPLOYMENT_RECONCILE, "policy"),  # drives interrupted rollouts to their end
    "status": Rule(P.DEPLOYMENT_READ, "service"),
    "history": Rule(P.DEPLOYMENT_READ, "service"),
    "show": Rule(P.DEPLOYMENT_READ, "deployment"),
    "replay": Rule(P.DEPLOYMENT_READ, "deployment"),
    # the change pipeline (changes.py), as its HTTP routes
    "explain": Rule(P.DEPLOYMENT_READ),
    "changes": Rule(P.DEPLOYMENT_READ),
    "approve": Rule(P.CHANGE_APPROVE),
    "reject": Rule(P.CHANGE_APPROVE),
    "evidence upload": Rule(P.EVIDENCE_WRITE),
    "main watch": Rule(P.DEPLOYMENT_RECONCILE),  # polls main and deploys what the gates passed (a daemon)
    "main accept": Rule(P.CHANGE_APPROVE),  # accepts a commit that went around the gates
    # administration (admin.py)
    "audit verify": Rule(P.AUDIT_READ),
    "audit query": Rule(P.AUDIT_READ),
    "audit export": Rule(P.AUDIT_EXPORT),
    "audit checkpoint": Rule(P.AUDIT_EXPORT),
    "dossier create": Rule(P.AUDIT_EXPORT),
    "user create": Rule(P.USER_MANAGE),
    "user list": Rule(P.USER_MANAGE),
    "user roles": Rule(P.USER_MANAGE),
    "user cidrs": Rule(P.USER_MANAGE),
    "user disable": Rule(P.USER_MANAGE),
    "user reset-mfa": Rule(P.USER_MANAGE),
    "user revoke-sessions": Rule(P.USER_MANAGE),
    "token create": Rule(P.TOKEN_MANAGE),
    "token list": Rule(P.TOKEN_MANAGE),
    "token revoke": Rule(P.TOKEN_MANAGE),
    "secret set": Rule(P.POLICY_WRITE),
    "secret list": Rule(P.POLICY_WRITE),
    "secret rotate": Rule(P.POLICY_WRITE),
    # databases and disaster recovery (dr.py)
    "db status": Rule(P.DEPLOYMENT_READ, "service"),
    "db backup": Rule(P.DEPLOYMENT_RECONCILE, "service"),  # scheduled work a daemon does too
    "db check": Rule(P.DEPLOYMENT_RECONCILE, "service"),
    "db verify": Rule(P.DEPLOYMENT_RECONCILE, "service"),
    "db watch": Rule(P.DEPLOYMENT_RECONCILE),  # the DR daemon: fails over as the policy says
    "db restore": Rule(P.DEPLOYMENT_ROLLBACK, "service"),
    "db failover": Rule(P.DEPLOYMENT_ROLLBACK, "service"),
    "db rebuild": Rule(P.DEPLOYMENT_ROLLBACK, "service"),
    "db rewrap": Rule(P.POLICY_WRITE),  # as 'secret rotate'
    "dr drill": Rule(P.DEPLOYMENT_ROLLBACK, "service"),  # kills the primary for real
    # incidents (incidents.py), as their HTTP routes
    "incident open": Rule(P.INCIDENT_MANAGE),
    "incident list": Rule(P.DEPLOYMENT_READ),
    "incident show": Rule(P.DEPLOYMENT_READ),
    "incident status": Rule(P.INCIDENT_MANAGE),
    "incident ack": Rule(P.INCIDENT_MANAGE),
    "incident commander": Rule(P.INCIDENT_MANAGE),
    "incident note": Rule(P.INCIDENT_MANAGE),
    "incident timeline": Rule(P.DEPLOYMENT_READ),
    "incident suspects": Rule(P.DEPLOYMENT_READ),
    "incident rollback": Rule(P.DEPLOYMENT_ROLLBACK, "service"),  # the suspect's service, as `rollback`
    "incident report": Rule(P.DEPLOYMENT_READ),
    "incident action add": Rule(P.INCIDENT_MANAGE),
    "incident action close": Rule(P.INCIDENT_MANAGE),
    "incident action list": Rule(P.DEPLOYMENT_READ),
    # monitoring and alerting (alerting.py), as their HTTP routes
    "alerts list": Rule(P.DEPLOYMENT_READ),
    "alerts outbox": Rule(P.DEPLOYMENT_READ),
    "alerts rules": Rule(P.INCIDENT_MANAGE),
    "silence add": Rule(P.INCIDENT_MANAGE),
    "silence list": Rule(P.DEPLOYMENT_READ),
    "silence expire": Rule(P.INCIDENT_MANAGE),
    # on-call and escalations (oncall.py), as their HTTP routes
    "oncall who": Rule(P.DEPLOYMENT_READ),
    "oncall ical": Rule(P.DEPLOYMENT_READ),
    "oncall override add": Rule(P.INCIDENT_MANAGE),
    "oncall override list": Rule(P.DEPLOYMENT_READ),
    "oncall override remove": Rule(P.INCIDENT_MANAGE),
    "oncall feed create": Rule(P.DEPLOYMENT_READ),  # the feed shows what a reader may read anyway
    "oncall feed list": Rule(P.DEPLOYMENT_READ),
    "oncall feed revoke": Rule(P.INCIDENT_MANAGE),
    "oncall run": Rule(P.DEPLOYMENT_RECONCILE),  # the engine: pages as the policy says, decides nothing
    "oncall watchdog": Rule(P.DEPLOYMENT_RECONCILE),
    "alerts trigger": Rule(P.INCIDENT_MANAGE),
    "alerts escalations": Rule(P.DEPLOYMENT_READ),
    "alerts show": Rule(P.DEPLOYMENT_READ),
    "alerts ack": Rule(P.INCIDENT_MANAGE),
    "alerts resolve": Rule(P.INCIDENT_MANAGE),
}
"""Every store-touching command → what it needs.  The CLI's half of "one permission matrix"."""

EXEMPT: Mapping[str, str] = {
    "policy check": "validates files; touches no store",
    "policy schema": "prints the policy JSON Schema; touches no store",
    "judge": "judges sample files offline; touches no store",
    "judge-plan": "sizes a judge window from numbers given on the command line; touches no store",
    "dossier verify": "checks a file against a public key offline; touches no store",
    "audit verify-export": "checks an export bundle against a public key offline; touches no store",
    "incident verify-report": "checks a report file against an export bundle offline; touches no store",
    "serve": "starts the API, which authorises every request itself (entrypoints/http/deps.py)",
}
"""Commands without a check, and why."""

OWN_ACCOUNT: Mapping[str, str] = {
    "user mfa enroll": "starts enrolling the actor's own second factor (NAME must be the actor)",
    "user mfa confirm": "activates the actor's own pending second factor with its first code",
}
"""Commands a user runs on their own account, needing no permission (see :func:`check_own`)."""

SINGLE_OPERATOR = "no users configured: single-operator mode"

OtpOpt = Annotated[
    str | None,
    typer.Option(
        "--otp",
        envvar="SHIPWARDEN_OTP",
        show_envvar=False,
        help="Current TOTP code, for production-affecting actions once users exist [env SHIPWARDEN_OTP].",
    ),
]


def services(*, with_policy: bool = True) -> Any:
    """The access/audit services (``bootstrap.Services``) for the CLI's settings; with the
    policy's rollout service when ``with_policy`` and the policy file exists."""
    from shipwarden.bootstrap import build_service, load_policy
    from shipwarden.entrypoints.cli.context import ctx
    from shipwarden.entrypoints.cli.context import settings as _settings

    if not with_policy and ctx.services is not None:
        return ctx.services
    settings = _settings()
    policy = load_policy(settings.policy) if with_policy and settings.policy.exists() else None
    built = build_service(settings, policy)
    if not with_policy:
        ctx.services = built  # the command's rollout machinery reuses its store (``cli._app``)
    return built


def _fail(msg: str) -> typer.Exit:
    sys.stderr.write(f"error: {msg}\n")
    return typer.Exit(2)


def _policy_fail(exc: Any) -> typer.Exit:
    for issue in exc.issues:
        sys.stderr.write(f"error: {issue}\n")
    return typer.Exit(2)


def _least_role(permission: Permission) -> Role:
    """The role with the fewest permissions that grants ``permission`` (what to ask for)."""
    return min((r for r in Role if permission in MATRIX[r]), key=lambda r: len(MATRIX[r]))


class _Refused(Exception):
    def __init__(self, audit_reason: str, message: str) -> None:
        super().__init__(message)
        self.audit_reason = audit_reason


def _decide(svc: Any, who: Any, rule: Rule, target: Target | None, otp: str | None) -> tuple[Any, str]:
    """Allowed → (principal, audit reason); refused → :class:`_Refused` with the one-line message."""
    from shipwarden.services.access import AccessError, NotFoundError, binding_text

    perm = rule.permission
    svc_name = target.service if target else None
    where = f" on {svc_name}" if svc_name else ""
    decision = svc.access.authorize(who, perm, target)
    if decision.allowed:
        return who, decision.reason
    if decision.address:
        raise _Refused(decision.reason, decision.reason)
    if decision.mfa:
        if not who.mfa_enabled:
            raise _Refused(
                decision.reason,
                f"{perm.value}{where} affects production and needs a TOTP check, but {who.name} has no "
                f"second factor: enrol one with shipwarden user mfa enroll {who.name}, then "
                f"shipwarden user mfa confirm {who.name} CODE (or through the API: POST /auth/mfa/enroll)",
            )
        if not otp:
            raise _Refused(
                decision.reason,
                f"{perm.value}{where} affects production: {who.name} must confirm with a current TOTP code "
                "(add --otp CODE or set SHIPWARDEN_OTP)",
            )
        try:
            who = svc.access.verify_local_otp(who, otp)
        except AccessError as exc:
            raise _Refused(
                f"TOTP code refused: {exc}",
                f"{who.name}'s TOTP code for {perm.value}{where} was refused: {exc}",
            ) from None
        decision = svc.access.authorize(who, perm, target)
        if decision.allowed:
            return who, "TOTP code verified"
    want = _least_role(perm).value
    if svc_name and perm not in GLOBAL_ONLY:
        want += f":{svc_name}"
    if who.user_id is None:
        try:
            state = "is disabled" if svc.access.user(who.name).disabled else "is not a user"
        except NotFoundError:
            state = "is not a user"
        raise _Refused(
            decision.reason,
            f"{who.name} {state} here (users exist, so roles apply): set SHIPWARDEN_ACTOR to your user "
            f"name, or ask an admin: shipwarden user create {who.name} --role {want}",
        )
    held = [binding_text(b) for b in who.bindings]
    hint = ""
    if target is None and any(perm in MATRIX[b.role] and not b.is_global for b in who.bindings):
        where = " across all services"
        hint = "" if perm in GLOBAL_ONLY else "; a role scoped to services needs the command to name one"
    roles = " ".join(f"--role {r}" for r in [*held, want])
    raise _Refused(
        decision.reason,
        f"{who.name} lacks {perm.value}{where} (holds {', '.join(held) or 'no role'}{hint}); "
        f"ask an admin: shipwarden user roles {who.name} {roles}",
    )


def _targets(svc: Any, rule: Rule, service: str | None, deployment: str | None) -> list[Target | None]:
    if rule.scope == "service":
        return [Target(service=service) if service else None]
    if rule.scope == "deployment":
        from shipwarden.ports.store import NotFound

        try:
            return [Target(service=svc.store.get(deployment).service)] if deployment else [None]
        except NotFound:
            return [None]  # only a global role gets past; the command then says "not found"
    if rule.scope == "policy":
        from shipwarden.bootstrap import load_policy

        return [Target(service=s.name) for s in load_policy(svc.settings.policy).policy.services] or [None]
    return [None]


@contextmanager
def authorized(command: str, *, otp: str | None = None) -> Iterator[tuple[Any, Any]]:
    """:func:`check` ``command``, then yield ``(services, principal)``; access, store and input
    errors raised in the body exit 2 as well (for the admin commands)."""
    from shipwarden.domain.audit import AuditError
    from shipwarden.domain.policy import PolicyError
    from shipwarden.ports.store import StoreError
    from shipwarden.services.access import AccessError

    try:
        svc, who = check(command, otp=otp)
        yield svc, who
    except PolicyError as exc:
        raise _policy_fail(exc) from None
    except (AccessError, StoreError, AuditError, ValueError, PermissionError) as exc:
        raise _fail(str(exc)) from None


def check(
    command: str, *, service: str | None = None, deployment: str | None = None, otp: str | None = None
) -> tuple[Any, Any]:
    """Check ``command``'s :data:`COMMANDS` rule for the local actor and audit the decision
    (one entry per target); returns ``(services, principal)``, or exits 2 with one line.

    ``service``/``deployment``: what the command acts on (see :class:`Rule`); ``otp``: the
    ``--otp`` value, verified only when the permission needs a fresh TOTP check."""
    from shipwarden.domain.audit import AuditError
    from shipwarden.domain.policy import PolicyError
    from shipwarden.ports.store import StoreError
    from shipwarden.services.access import AccessError

    key = command
    rule = COMMANDS[key]
    try:
        svc = services(with_policy=False)
        actor = svc.settings.actor or getpass.getuser()
        who = svc.access.local_principal(actor)
        single = not svc.access.has_users()
        for target in _targets(svc, rule, service, deployment):
            try:
                who, reason = (who, SINGLE_OPERATOR) if single else _decide(svc, who, rule, target, otp)
                refused = None
            except _Refused as exc:
                reason, refused = exc.audit_reason, str(exc)
            svc.audit.access(
                actor=actor,
                allowed=refused is None,
                method="CLI",
                path=key,
                ip="local",
                via="cli",
                permission=rule.permission.value,
                service=target.service if target else None,
                reason=reason,
            )
            if refused is not None:
                raise _fail(refused)
        return svc, who
    except PolicyError as exc:
        raise _policy_fail(exc) from None
    except (AccessError, StoreError, AuditError, ValueError, PermissionError) as exc:
        raise _fail(str(exc)) from None


def check_own(command: str, name: str, *, otp: str | None = None) -> tuple[Any, Any]:
    """:data:`OWN_ACCOUNT` ``command`` on user ``name``: allowed only when the local actor *is*
    ``name`` (an existing, enabled user, from an allowed place); when ``command`` would replace an
    active second factor, only with a current code from it (``otp``).  The decision is one
    ``access`` audit entry; a refusal exits 2 with one line.  Returns ``(services, principal)``."""
    from shipwarden.domain.audit import AuditError
    from shipwarden.ports.store import StoreError
    from shipwarden.services.access import AccessError, NotFoundError

    if command not in OWN_ACCOUNT:
        raise KeyError(command)
    try:
        svc = services(with_policy=False)
        actor = svc.settings.actor or getpass.getuser()
        who = svc.access.local_principal(actor)
        reason, refused = "the actor's own account", None
        if not svc.access.has_users():
            refused = (
                "no users yet (single-operator mode): create the first user, an admin, first: "
                f"shipwarden user create {name} --role admin"
            )
        elif who.user_id is None:
            try:
                state = "is disabled" if svc.access.user(actor).disabled else "is not a user"
            except NotFoundError:
                state = "is not a user"
            refused = f"{actor} {state} here: set SHIPWARDEN_ACTOR to your user name"
        elif name != actor:
            refused = (
                f"a second factor is enrolled by its owner: run this as {name} (SHIPWARDEN_ACTOR={name}); "
                f"an admin can reset another user's with shipwarden user reset-mfa {name}"
            )
        elif not (d := svc.access.authorize(who, None)).allowed:
            refused = d.reason
        elif command == "user mfa enroll" and who.mfa_enabled:
            if not otp:
                refused = (
                    f"{name} already has a second factor: replacing it needs a current code from it "
                    f"(--otp CODE); lost it? an admin runs shipwarden user reset-mfa {name}"
                )
            else:
                try:
                    who = svc.access.verify_local_otp(who, otp)
                    reason = "TOTP code verified"
                except AccessError as exc:
                    refused = f"{name}'s TOTP code was refused: {exc}"
        svc.audit.access(
            actor=actor,
            allowed=refused is None,
            method="CLI",
            path=command,
            ip="local",
            via="cli",
            permission=None,
            reason=refused or reason,
        )
        if refused is not None:
            raise _fail(refused)
        return svc, who
    except (AccessError, StoreError, AuditError, ValueError, PermissionError) as exc:
        raise _fail(str(exc)) from None


def mfa_commands() -> Sequence[str]:
    """Commands whose permission can need a fresh TOTP code (they must take ``--otp``)."""
    from shipwarden.domain.access import MfaPolicy

    return [k for k, r in COMMANDS.items() if r.permission in MfaPolicy().permissions]
