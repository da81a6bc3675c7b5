"""CLI for the change pipeline: ``explain``, ``approve``, ``reject``, ``changes``, ``evidence upload``.

Registered by ``register(app)`` at the end of ``entrypoints/cli/__init__.py``.
The acting user is ``SHIPWARDEN_ACTOR`` (else the OS user).  Each command first
checks its rule in ``guard.COMMANDS`` (the permission matrix; approving needs
``change.approve`` and, once users exist, a TOTP code via ``--otp``); the
change-control roles an approval is recorded under come from the policy's
``delivery.approvers``.  Exit codes: 0 ok, 1 the change did not get where it was
asked to (e.g. still blocked), 2 bad input or not allowed — nothing changed.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from shipwarden.entrypoints.cli.guard import OtpOpt, check
from shipwarden.entrypoints.cli.output import console, err, error, policy_errors

evidence_app = typer.Typer(no_args_is_help=True, help="Upload CI evidence (test reports, scans, load tests).")
main_app = typer.Typer(
    no_args_is_help=True,
    help="Every commit that reaches main: judged, deployed through the gates or alerted.",
)


def _service(command: str, otp: str | None = None) -> Any:
    """Check the running command's access rule, then build the change service."""
    from shipwarden.bootstrap import build, load_policy, make_changes
    from shipwarden.entrypoints.cli.context import settings as _settings

    process, _ = check(command, otp=otp)
    settings = _settings()
    a = build(settings, load_policy(settings.policy), services=process)
    svc = make_changes(settings, a.store, a.rollout, a.rollout.loaded, access=process.access)
    return svc, settings.actor or getpass.getuser()


def _fail(exc: Exception) -> typer.Exit:
    from shipwarden.services.changes import ChangeError

    if isinstance(exc, ChangeError):
        error(exc.message)
        where = exc.extra.get("where")
        if where:
            loc = ":".join(str(x) for x in (where.get("source"), where.get("line"), where.get("column")) if x)
            err.print(f"  at {loc}{' ' + where['path'] if where.get('path') else ''}", soft_wrap=True)
        return typer.Exit(2)
    error(exc)
    return typer.Exit(2)


def _run(fn: Any) -> Any:
    from shipwarden.domain.policy import PolicyError
    from shipwarden.ports.store import StoreError
    from shipwarden.services.changes import ChangeError

    try:
        return fn()
    except PolicyError as exc:
        policy_errors(exc)
        raise typer.Exit(2) from None
    except (ChangeError, StoreError) as exc:
        raise _fail(exc) from None


def explain(
    ref: Annotated[
        str,
        typer.Argument(help="A change id (c-…), a deployment id (d-…) or a commit on main (sha, 7+ hex)."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show every gate of a change (or of the change behind a deployment): pass/fail and the evidence.

    For a commit that reached main: whether it was deployed through the gates, and if not, why."""
    from shipwarden.services.changes import render_explanation

    def go() -> None:
        svc, _ = _service("explain")
        doc = svc.explain(ref)
        if as_json:
            sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
        else:
            sys.stdout.write(render_explanation(doc))

    _run(go)


def _decide(change: str, role: str, comment: str, approve: bool, otp: str | None) -> None:
    def go() -> None:
        svc, actor = _service("approve" if approve else "reject", otp)
        fn = svc.approve if approve else svc.reject
        ch = fn(change, user=actor, role=role, comment=comment)
        console.print(f"change {ch.id}: {ch.status} — {ch.reason}")
        if approve and ch.status not in ("merged", "deploying", "deployed", "waiting_approval", "approved"):
            raise typer.Exit(1)

    _run(go)


def approve(
    change: Annotated[str, typer.Argument(help="Change id (c-…).")],
    role: Annotated[str, typer.Option("--role", help="The change-control (or UAT) role you approve as.")],
    comment: Annotated[str, typer.Option("--comment", "-m")] = "",
    otp: OtpOpt = None,
) -> None:
    """Approve CHANGE in ROLE (you must hold it); a fully approved change is merged and deployed."""
    _decide(change, role, comment, True, otp)


def reject(
    change: Annotated[str, typer.Argument(help="Change id (c-…).")],
    role: Annotated[str, typer.Option("--role", help="The change-control role you reject as.")],
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why (recorded).")] = "",
    otp: OtpOpt = None,
) -> None:
    """Reject CHANGE in ROLE: final for this commit."""
    _decide(change, role, comment, False, otp)


def changes(
    status: Annotated[str | None, typer.Option(help="Only changes in this status.")] = None,
) -> None:
    """List changes, newest first."""

    def go() -> None:
        svc, _ = _service("changes")
        for ch in svc.repo.list_changes(status=status):
            console.print(f"{ch.id}  {ch.status:<16} {ch.branch} @ {ch.head_sha[:12]}  {ch.reason}")

    _run(go)


@evidence_app.command("upload")
def upload(
    file: Annotated[Path, typer.Argument(help="The report file.", exists=True, dir_okay=False)],
    commit: Annotated[str, typer.Option(help="Full sha of the commit the report is about.")],
    kind: Annotated[str, typer.Option(help="junit | sarif | k6 | locust | backup | rollback-plan")],
    category: Annotated[
        str | None, typer.Option(help="Suite category for junit (unit, integration, …).")
    ] = None,
    pipeline: Annotated[
        str | None, typer.Option(help="Pipeline id or number that produced the report.")
    ] = None,
    branch: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Store FILE as evidence for COMMIT (malformed files are refused with where they are wrong)."""

    def go() -> None:
        svc, actor = _service("evidence upload")
        stored, change = svc.upload_evidence(
            commit_sha=commit,
            kind=kind,
            data=file.read_bytes(),
            actor=actor,
            category=category,
            filename=file.name,
            pipeline={"pipeline": pipeline} if pipeline else {},
            branch=branch,
        )
        summary = ", ".join(f"{k}={v}" for k, v in stored.summary.items())
        console.print(f"stored {stored.id}: {kind} {stored.category} for {commit[:12]} [{summary}]")
        if change is not None:
            console.print(f"change {change.id}: {change.status} — {change.reason}")

    _run(go)


@main_app.command("watch")
def main_watch(
    every: Annotated[
        float | None, typer.Option(help="Look again every N seconds (a polling daemon); once without it.")
    ] = None,
) -> None:
    """Judge what is new on main in the real repository (the fallback of the GitHub push webhook).

    Each new commit gets a verdict; a gated head is deployed (in this process), one pushed before
    its gates passed waits for its evidence, a violation is alerted and recorded.  Exit 1 if a
    violation was found (once mode)."""
    import time

    def once(svc: Any) -> int:
        judged = svc.watch_main(via="poll")
        for j in judged:
            console.print(f"{j.sha[:12]}  {j.verdict:<9} {j.reason:<19} {j.why}", soft_wrap=True)
        if not judged:
            console.print("nothing new on main")
        return sum(1 for j in judged if j.verdict == "violation")

    def go() -> None:
        from shipwarden.ports.vcs import GitError

        svc, _ = _service("main watch")
        if every is None:
            if once(svc):
                raise typer.Exit(1)
            return
        if every < 1:
            raise typer.BadParameter("--every must be at least 1 second")
        while True:
            try:
                once(svc)
            except GitError as exc:  # the remote is unreachable for now: say so, look again later
                error(exc)
            time.sleep(every)

    _run(go)


@main_app.command("accept")
def main_accept(
    commit: Annotated[
        str, typer.Argument(help="The commit on main (sha, 7+ hex) whose violation you accept.")
    ],
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why, after review (recorded).")],
    otp: OtpOpt = None,
) -> None:
    """Accept a commit that reached main around the gates, after review: later gated merges deploy again."""

    def go() -> None:
        svc, actor = _service("main accept", otp)
        for j in svc.accept_violation(commit, user=actor, reason=reason):
            console.print(f"{j.sha[:12]}  {j.reason}: accepted by {actor}", soft_wrap=True)

    _run(go)


def register(app: typer.Typer) -> None:
    app.command("explain")(explain)
    app.command("approve")(approve)
    app.command("reject")(reject)
    app.command("changes")(changes)
    app.add_typer(evidence_app, name="evidence")
    app.add_typer(main_app, name="main")
