"""The ``shipwarden`` command line.

Commands translate arguments into service calls and exceptions into exit
codes (0 ok, 1 the operation failed, 2 bad input or not allowed — nothing changed).
Every command that touches the store first checks its rule in ``guard.COMMANDS``
for the local actor (single-operator mode until the first user exists; then the
permission matrix, and a TOTP code via ``--otp`` for production-affecting actions).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from shipwarden.domain.policy import PolicyError, UnknownService, policy_json_schema
from shipwarden.domain.rollout import OperatorRequest
from shipwarden.domain.version import InvalidVersion, check_version
from shipwarden.entrypoints.cli import context, views
from shipwarden.entrypoints.cli.guard import OtpOpt, check
from shipwarden.entrypoints.cli.output import console, err, error, policy_errors

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help=__doc__.splitlines()[0] if __doc__ else None,
    pretty_exceptions_enable=False,
)
policy_app = typer.Typer(no_args_is_help=True, help="Validate policy files and print their schema.")
app.add_typer(policy_app, name="policy")
__all__ = ["app", "console", "err", "main"]  # console/err: output.py's (no markup, ever)

PolicyOpt = Annotated[
    Path | None, typer.Option("--policy", "-p", help="Policy file [env SHIPWARDEN_POLICY].")
]
StateOpt = Annotated[
    Path | None, typer.Option("--state-dir", help="State directory [env SHIPWARDEN_STATE_DIR].")
]


_ctx = context.ctx
_settings = context.settings  # kept for callers of ``shipwarden.entrypoints.cli._settings``


@app.callback()
def _main(policy: PolicyOpt = None, state_dir: StateOpt = None) -> None:
    """shipwarden: policy-gated blue-green and canary deployments with an audit trail."""
    _ctx.policy, _ctx.state_dir, _ctx.services = policy, state_dir, None


@contextmanager
def _errors() -> Iterator[None]:
    from shipwarden.ports.routing import RouterError
    from shipwarden.ports.store import StoreError
    from shipwarden.services.rollout import DeployError

    try:
        yield
    except PolicyError as exc:
        policy_errors(exc)
        raise typer.Exit(2) from None
    except (UnknownService, DeployError, StoreError, InvalidVersion) as exc:
        error(exc)
        raise typer.Exit(2) from None
    except RouterError as exc:
        error(exc, label="router error")
        raise typer.Exit(1) from None


def _app() -> Any:
    from shipwarden.bootstrap import build, load_policy
    from shipwarden.entrypoints.cli.guard import services

    settings = _settings()
    # the access check's services: one store (one engine, one migration) per command
    return build(settings, load_policy(settings.policy), services=services(with_policy=False))


# -- policy ------------------------------------------------------------------------------------
@policy_app.command("check")
def policy_check(files: Annotated[list[Path], typer.Argument(help="Policy files to validate.")]) -> None:
    """Validate policy files; every problem is reported as file:line: field: message."""
    from shipwarden.bootstrap import load_policy

    bad = 0
    for f in files:
        try:
            loaded = load_policy(f)
        except PolicyError as exc:
            bad += 1
            for issue in exc.issues:
                err.print(str(issue), soft_wrap=True)
            continue
        names = ", ".join(s.name for s in loaded.policy.services)
        console.print(
            Text.assemble(
                ("ok", "green"),
                f" {f}: team {loaded.policy.team}, services {names} (digest {loaded.digest[:12]})",
            ),
            soft_wrap=True,
        )
    if bad:
        raise typer.Exit(2)


@policy_app.command("schema")
def policy_schema() -> None:
    """Print the policy file's JSON Schema (for editors and CI validation)."""
    sys.stdout.write(json.dumps(policy_json_schema(), indent=2) + "\n")


# -- deployments -------------------------------------------------------------------------------
_SHA = re.compile(r"^[0-9a-f]{7,64}$")


@app.command()
def deploy(
    service: str,
    version: Annotated[str, typer.Option("--version", "-v", help="Version to deploy.")],
    commit: Annotated[str | None, typer.Option(help="Commit SHA the version was built from.")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Drive the rollout to the end.")] = True,
    otp: OtpOpt = None,
) -> None:
    """Deploy VERSION of SERVICE with the policy's strategy (re-running resumes an interrupted one).

    VERSION: 1-128 characters A-Z a-z 0-9 . _ + -, starting with a letter or digit (no '/', no '..')."""
    with _errors():
        check_version(version)  # before anything, the access check's audit entry included, is recorded
        if commit is not None and not _SHA.fullmatch(commit):
            error(f"--commit {commit[:80]!r} is not a git commit sha (7-64 lowercase hex digits)")
            raise typer.Exit(2)
        check("deploy", service=service, otp=otp)
        a = _app()
        dep = a.rollout.start(service, version, actor=a.actor, commit_sha=commit)
        console.print(
            Text.assemble(
                "deployment ",
                (dep.id, "bold"),
                f": {service} {dep.from_version or '∅'} → {version} ({dep.strategy})",
            )
        )
        if wait:
            _drive(a, dep.id)


def _drive(a: Any, dep_id: str) -> None:
    final = views.live(console, a.store, lambda on_tick: a.rollout.run(dep_id, on_tick=on_tick), dep_id)
    views.print_outcome(console, final)
    if final.phase.value != "succeeded" and final.kind != "rollback" and final.phase.value != "rolled_back":
        raise typer.Exit(1)
    if final.phase.value == "failed":
        raise typer.Exit(1)


@app.command()
def rollback(
    service: str, wait: Annotated[bool, typer.Option("--wait/--no-wait")] = True, otp: OtpOpt = None
) -> None:
    """Roll SERVICE back now: instant while the old version is warm, a fresh deployment otherwise."""
    with _errors():
        check("rollback", service=service, otp=otp)
        a = _app()
        dep = a.rollout.rollback(service, actor=a.actor)
        console.print(
            f"rolling back {service} via {dep.id} → "
            f"{dep.from_version if dep.kind == 'deploy' else dep.to_version}",
            highlight=False,
        )
        if wait:
            _drive(a, dep.id)


def _operator(name: str, request: OperatorRequest) -> Callable[..., None]:
    def command(service: str, otp: OtpOpt = None) -> None:
        with _errors():
            check(name, service=service, otp=otp)
            a = _app()
            dep = a.rollout.request(service, request, actor=a.actor)
            console.print(f"{request.value} requested for {dep.id}; the driver acts on its next tick")

    command.__doc__ = {
        OperatorRequest.PROMOTE: "End the pause or analysis step SERVICE's canary waits in.",
        OperatorRequest.PROMOTE_FULL: "Skip every remaining step of SERVICE's deployment and promote now.",
        OperatorRequest.PAUSE: "Pause SERVICE's deployment at its current step.",
        OperatorRequest.RESUME: "Resume a paused deployment.",
        OperatorRequest.ROLLBACK: "Abort SERVICE's deployment: all traffic back to the stable version.",
        OperatorRequest.CONFIRM: (
            "Pass SERVICE's confirm gate (before a weight increase, promotion or the next zone)."
        ),
    }[request]
    return command


@app.command()
def promote(
    service: str,
    full: Annotated[bool, typer.Option("--full", help="Skip every remaining step and promote now.")] = False,
    otp: OtpOpt = None,
) -> None:
    """End the step SERVICE's canary waits in — a pause, or an analysis — or promote a waiting preview.

    Only that step: the steps after it, analysis included, still run. ``--full`` skips every
    remaining step and promotes now. Promote at a setWeight step is refused."""
    _operator("promote", OperatorRequest.PROMOTE_FULL if full else OperatorRequest.PROMOTE)(service, otp)


for _name, _request in (
    ("pause", OperatorRequest.PAUSE),
    ("resume", OperatorRequest.RESUME),
    ("abort", OperatorRequest.ROLLBACK),
    ("confirm", OperatorRequest.CONFIRM),
):
    app.command(_name)(_operator(_name, _request))


@app.command()
def replay(
    deployment_id: str,
    policy: Annotated[Path | None, typer.Option("--policy", help="Policy to evaluate.")] = None,
) -> None:
    """What-if: feed a past rollout's recorded metrics through the current or a changed policy."""
    with _errors():
        from shipwarden.bootstrap import load_policy
        from shipwarden.services.whatif import replay as run_replay

        svc, _ = check("replay", deployment=deployment_id)
        loaded = load_policy(policy or svc.settings.policy)
        result = run_replay(svc.store, deployment_id, loaded.policy)
        sys.stdout.write(json.dumps(result, indent=2) + "\n")


@app.command()
def reconcile(
    watch: Annotated[bool, typer.Option(help="Keep running and pick up new work.")] = False,
) -> None:
    """Resume every interrupted deployment (the controller loop).

    Once: drive each active deployment to its end, one after the other, with the live view.
    ``--watch``: keep running as the controller — each deployment in its own driver thread (as
    ``serve`` does), one line when it is taken and one with its outcome — until interrupted.

    Needs ``deployment.reconcile`` (roles sre, release-manager, admin, or the ``controller``
    machine role) and no MFA code: it carries out only deployments and requests that were
    authorised when they were made."""
    with _errors():
        check("reconcile")
        a = _app()
        if not watch:
            for dep in a.store.all_active():
                console.print(f"resuming {dep.id} ({dep.service}, {dep.phase})", highlight=False)
                _drive(a, dep.id)
            return
        from shipwarden.services.controller import Controller
        from shipwarden.services.serving import for_rollout

        ctl = Controller(a.rollout, a.store, serving=for_rollout(a.rollout))
        ctl.start()
        console.print("controller running; Ctrl-C stops it (deployments resume wherever it runs next)")
        try:
            views.follow_controller(console, a.store, lambda: ctl.driving, stop=lambda: False)
        except KeyboardInterrupt:
            pass
        finally:
            ctl.stop()


@app.command()
def status(
    service: str, once: Annotated[bool, typer.Option(help="Print once instead of following.")] = False
) -> None:
    """Live view of SERVICE's current (or last) deployment."""
    with _errors():
        svc, _ = check("status", service=service)
        views.status(console, svc.store, service, follow=not once)


@app.command()
def history(
    service: Annotated[str | None, typer.Argument()] = None, limit: Annotated[int, typer.Option()] = 20
) -> None:
    """List deployments, newest first."""
    with _errors():
        svc, _ = check("history", service=service)
        views.history(console, svc.store.history(service, limit))


@app.command()
def show(
    deployment_id: str, as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False
) -> None:
    """The full record of one deployment: versions, steps with timestamps and results, outcome."""
    with _errors():
        from shipwarden.services.records import deployment_record

        svc, _ = check("show", deployment=deployment_id)
        record = deployment_record(svc.store, deployment_id)
        if as_json:
            sys.stdout.write(json.dumps(record, indent=2, default=str) + "\n")
        else:
            views.record(console, record)


@app.command()
def up(otp: OtpOpt = None) -> None:
    """Start the router and expose every service of the policy on its ports."""
    with _errors():
        check("up", otp=otp)
        a = _app()
        a.router.ensure_listeners([a.rollout.listener(spec) for spec in a.rollout.loaded.policy.services])
        a.router.start()
        for spec in a.rollout.loaded.policy.services:
            console.print(
                f"{spec.name}: production :{spec.routing.port}, preview :{spec.routing.preview_port}"
            )


@app.command()
def down(otp: OtpOpt = None) -> None:
    """Stop every instance of the policy's services and the router."""
    with _errors():
        check("down", otp=otp)
        a = _app()
        for spec in a.rollout.loaded.policy.services:
            insts = a.platform.instances(spec.name)
            a.platform.stop(insts, spec.run.stop_timeout)
            console.print(f"{spec.name}: stopped {len(insts)} instance(s)")
        a.router.stop()
        console.print("router stopped")


def _register_judge() -> None:
    from shipwarden.entrypoints.cli.judge import judge_command, plan_command

    app.command("judge")(judge_command)
    app.command("judge-plan")(plan_command)


_register_judge()


def main() -> None:
    app()


from shipwarden.entrypoints.cli import admin as _admin  # noqa: E402 - audit, dossier, user, token, secret, serve

_admin.register(app)

from shipwarden.entrypoints.cli import changes as _changes  # noqa: E402 - explain, approve, reject, evidence

_changes.register(app)

from shipwarden.entrypoints.cli import dr as _dr  # noqa: E402 - db (backups, restore, failover), dr drill

_dr.register(app)

from shipwarden.entrypoints.cli import incidents as _incidents  # noqa: E402 - incident … (D12)

_incidents.register(app)

from shipwarden.entrypoints.cli import alerting as _alerting  # noqa: E402 - alerts …, silence … (E7, E8)

_alerting.register(app)

from shipwarden.entrypoints.cli import oncall as _oncall  # noqa: E402 - oncall …, alerts … (E8)

_oncall.register(app)
