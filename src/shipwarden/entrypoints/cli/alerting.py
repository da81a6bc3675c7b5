"""CLI for monitoring and alerting (E7, E8): ``shipwarden alerts …`` and ``shipwarden silence …``.

Each command checks its rule in ``guard.COMMANDS`` first (reading: ``deployment.read``; silences
and rules: ``incident.manage``, the responders' permission).  Exit codes: 0 done, 2 bad input or
not allowed — nothing changed.

* ``alerts list [--state firing|resolved] [--json]`` — alerts by fingerprint, newest change first
* ``alerts outbox [--state pending|delivered|failed]`` — notices and their delivery
* ``alerts rules [--write]`` — the Prometheus rules the policy's ``monitoring`` section generates;
  ``--write`` validates them (promtool), replaces SHIPWARDEN_PROMETHEUS_RULES_FILE and reloads
  Prometheus (SHIPWARDEN_PROMETHEUS_RELOAD_URL, or SIGHUP to SHIPWARDEN_PROMETHEUS_PID_FILE)
* ``silence add MATCHER… --owner O --comment C [--for 2h]`` (``service=web``, ``alertname=~Err.*``)
* ``silence list [--expired]``, ``silence expire ID``
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from shipwarden.entrypoints.cli.guard import check
from shipwarden.entrypoints.cli.output import console, error

alerts_app = typer.Typer(no_args_is_help=True, help="Alerts: received, grouped, delivered; Prometheus rules.")
silence_app = typer.Typer(no_args_is_help=True, help="Silences: mute matching alerts until they expire.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@contextmanager
def _errors() -> Iterator[None]:
    from shipwarden.domain.policy import PolicyError
    from shipwarden.entrypoints.cli.output import policy_errors
    from shipwarden.services.alerting.service import AlertingError

    try:
        yield
    except PolicyError as exc:
        policy_errors(exc)
        raise typer.Exit(2) from None
    except AlertingError as exc:
        error(exc.message)
        raise typer.Exit(2) from None


def _alerting() -> Any:
    from shipwarden.bootstrap import load_policy, make_alerting, secret_lookup
    from shipwarden.entrypoints.cli.context import settings as _settings
    from shipwarden.entrypoints.cli.guard import services
    from shipwarden.services.alerting.service import AlertingError

    settings = _settings()
    process = services(with_policy=False)
    secrets = secret_lookup(settings, process.store, process.access)
    svc = make_alerting(settings, process.store, load_policy(settings.policy), secrets=secrets)
    if svc is None:
        raise AlertingError(2, f"{settings.policy}: the policy has no 'alerting' section")
    return svc


def _ts(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def list_alerts(
    state: Annotated[str | None, typer.Option(help="firing or resolved.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 200,
    as_json: JsonOpt = False,
) -> None:
    """Alerts by fingerprint, newest change first."""
    with _errors():
        if state not in (None, "firing", "resolved"):
            error("--state is firing or resolved")
            raise typer.Exit(2)
        check("alerts list")
        rows = _alerting().store.alerts(state=state, limit=limit)
        if as_json:
            doc = [
                {
                    "fingerprint": a.fingerprint,
                    "state": st,
                    "labels": dict(a.labels),
                    "annotations": dict(a.annotations),
                    "starts_at": a.starts_at,
                    "ends_at": a.ends_at,
                }
                for a, st in rows
            ]
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
            return
        for a, st in rows:
            labels = ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()) if k != "alertname")
            console.print(
                f"{a.fingerprint} {st:<8} since {_ts(a.starts_at)} {a.name} {{{labels}}}",
                soft_wrap=True,
                highlight=False,
            )
        if not rows:
            console.print("no alerts")


def outbox(
    state: Annotated[str | None, typer.Option(help="pending, delivered or failed.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
) -> None:
    """Notices queued for their receivers, and how their delivery went."""
    with _errors():
        if state not in (None, "pending", "delivered", "failed"):
            error("--state is pending, delivered or failed")
            raise typer.Exit(2)
        check("alerts outbox")
        for r in _alerting().store.outbox(state=state, limit=limit):
            err = f"  last error: {r['last_error']}" if r["last_error"] else ""
            console.print(
                f"{r['id']:>6} {r['state']:<9} {r['target']:<28} tries {r['attempts']:<3} "
                f"{r['notice_id']}{err}",
                soft_wrap=True,
                highlight=False,
            )


def rules(
    write: Annotated[bool, typer.Option("--write", help="Validate, replace the file, reload.")] = False,
) -> None:
    """The Prometheus alerting rules the policy's monitoring section generates."""
    with _errors():
        _, who = check("alerts rules")
        svc = _alerting()
        if not write:
            sys.stdout.write(svc.rules_text())
            return
        done = svc.write_rules()
        from shipwarden.entrypoints.cli.context import settings as _settings

        target = str(_settings().prometheus_rules_file)
        svc.pipeline.store.store.audit(
            actor=who.name, action="alert.rules", detail={"file": target, "result": done}
        )
        console.print(f"{target}: {done}", soft_wrap=True, highlight=False)


def silence_add(
    matchers: Annotated[list[str], typer.Argument(help="name=value, name!=value, name=~regex, name!~regex")],
    owner: Annotated[str, typer.Option(help="Who answers for this silence.")],
    comment: Annotated[str, typer.Option(help="Why.")],
    duration: Annotated[str, typer.Option("--for", help="How long: 30m, 2h, 3d (at most 90d).")] = "2h",
) -> None:
    """Mute the alerts matching every matcher until the silence expires."""
    from shipwarden.domain._base import parse_duration

    with _errors():
        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            error(f"--for: {exc}")
            raise typer.Exit(2) from None
        _, who = check("silence add")
        s = _alerting().add_silence(matchers, owner=owner, comment=comment, duration=seconds, actor=who.name)
        console.print(
            f"silence {s.id} until {_ts(s.ends_at)}: {' '.join(str(m) for m in s.matchers)}",
            soft_wrap=True,
            highlight=False,
        )


def silence_list(
    expired: Annotated[bool, typer.Option("--expired", help="Include expired ones.")] = False,
) -> None:
    """Silences, newest first."""
    with _errors():
        check("silence list")
        svc = _alerting()
        now = svc.clock()
        found = svc.silences(include_expired=expired)
        for s in found:
            console.print(
                f"{s.id} {s.state(now):<8} until {_ts(s.ends_at)} by {s.owner}: "
                f"{' '.join(str(m) for m in s.matchers)} — {s.comment}",
                soft_wrap=True,
                highlight=False,
            )
        if not found:
            console.print("no silences")


def silence_expire(silence_id: Annotated[str, typer.Argument(help="The silence's id.")]) -> None:
    """End a silence now."""
    with _errors():
        _, who = check("silence expire")
        s = _alerting().expire_silence(silence_id, actor=who.name)
        console.print(f"silence {s.id} expired", highlight=False)


def register(app: typer.Typer) -> None:
    alerts_app.command("list")(list_alerts)
    alerts_app.command("outbox")(outbox)
    alerts_app.command("rules")(rules)
    silence_app.command("add")(silence_add)
    silence_app.command("list")(silence_list)
    silence_app.command("expire")(silence_expire)
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(silence_app, name="silence")
