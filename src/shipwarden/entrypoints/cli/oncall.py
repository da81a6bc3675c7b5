"""CLI for on-call and escalations (E8): ``shipwarden oncall …`` and ``shipwarden alerts …``.

Registered by ``register(app)`` at the end of ``entrypoints/cli/__init__.py``; each command
checks its rule in ``guard.COMMANDS`` first.  Exit codes: 0 done, 2 bad input or not allowed
(nothing changed).

* ``oncall who [--at 2026-12-24T03:00+01:00] [--schedule S] [--json]`` — who is on call, and why
* ``oncall ical SCHEDULE`` / ``oncall ical --person P`` — the iCalendar feed (RFC 5545) on stdout
  or ``--output FILE``
* ``oncall override add SCHEDULE PERSON --from T --until T --reason R`` / ``override list`` /
  ``override remove ID`` — overrides beside the policy's, audited (``oncall.override.*``)
* ``oncall feed create PERSON`` / ``feed list`` / ``feed revoke ID`` — a person's calendar feed
  URL with a token calendar apps can send (``GET /oncall/feeds/TOKEN.ics``), revocable
* ``oncall run`` — the escalation engine (and its watchdog) in the foreground; ``serve`` runs it too
* ``oncall watchdog`` — the stall check from a separate process (the engines' heartbeat file)
* ``alerts trigger --title T [--service S]`` — open an escalation by hand (alerting opens them
  from alert groups)
* ``alerts escalations [--open]``, ``alerts show ID`` — escalations, their steps and pages
* ``alerts ack ID``, ``alerts resolve ID`` — as the signed links in pages and the API do
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from shipwarden.domain.oncall.escalation import escalation_document
from shipwarden.entrypoints.cli.alerting import alerts_app  # escalation commands join alerting's group
from shipwarden.entrypoints.cli.guard import check
from shipwarden.entrypoints.cli.output import console, error

oncall_app = typer.Typer(
    no_args_is_help=True, help="On-call schedules: who is on call, calendar feeds, the engine."
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@contextmanager
def _errors() -> Iterator[None]:
    from shipwarden.domain.oncall import EscalationError
    from shipwarden.domain.policy import PolicyError
    from shipwarden.entrypoints.cli.output import message_of, policy_errors
    from shipwarden.ports.oncall import EscalationNotFound
    from shipwarden.services.oncall import OnCallError

    try:
        yield
    except PolicyError as exc:
        policy_errors(exc)
        raise typer.Exit(2) from None
    except (OnCallError, EscalationError, EscalationNotFound) as exc:
        error(message_of(exc))
        raise typer.Exit(2) from None


def _parts(*, with_incidents: bool = False) -> Any:
    from shipwarden.bootstrap import load_policy, make_incidents, make_oncall
    from shipwarden.entrypoints.cli.context import settings as _settings
    from shipwarden.entrypoints.cli.guard import services

    settings = _settings()
    policy = load_policy(settings.policy)
    store = services(with_policy=False).store
    incidents = make_incidents(settings, store).service if with_incidents else None
    return make_oncall(settings, store, lambda: policy, incidents=incidents)


def _when(at: str | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(at.strip().replace("Z", "+00:00"))
    except ValueError:
        error(f"--at {at[:60]!r} is not an ISO-8601 time (2026-12-24T03:00+01:00)")
        raise typer.Exit(2) from None
    if when.tzinfo is None:
        error("--at needs a time zone (…Z or +01:00): who is on call depends on it")
        raise typer.Exit(2)
    if not 1970 <= when.year <= 2200:
        error("--at: a time between 1970 and 2200")
        raise typer.Exit(2)
    return when


def who(
    at: Annotated[str | None, typer.Option("--at", help="An instant with its zone (default: now).")] = None,
    schedule: Annotated[str | None, typer.Option("--schedule", help="Only this schedule.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Who is on call (now, or at --at), per schedule, and by which layer or override."""
    with _errors():
        check("oncall who")
        when = _when(at)
        found = _parts().rota.who(when, schedule)
        if as_json:
            doc = {
                "at": when.isoformat(),
                "schedules": {n: {"person": p, "layer": layer} for n, (p, layer) in found.items()},
            }
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
            return
        for name, (person, layer) in found.items():
            console.print(
                f"{name}: {person or '(nobody)'}" + (f"  ({layer})" if layer else ""), soft_wrap=True
            )


def ical(
    schedule: Annotated[str | None, typer.Argument(help="The schedule's feed.")] = None,
    person: Annotated[
        str | None, typer.Option("--person", help="One person's shifts in every schedule.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    days: Annotated[
        int, typer.Option(help="Days ahead (the last 7 days are included too).", min=1, max=400)
    ] = 56,
) -> None:
    """The iCalendar feed (RFC 5545) of a schedule, or of a person across schedules."""
    with _errors():
        check("oncall ical")
        if (schedule is None) == (person is None):
            error("name a SCHEDULE or --person, not both")
            raise typer.Exit(2)
        data = _parts().rota.ical(schedule=schedule, person=person, days_ahead=days)
        if output is not None:
            output.write_bytes(data)
            console.print(f"wrote {output} ({data.count(b'BEGIN:VEVENT')} shifts)", soft_wrap=True)
        else:
            sys.stdout.buffer.write(data)


def run(
    seconds: Annotated[float, typer.Option(help="Stop after this long (0: until Ctrl-C).", min=0)] = 0,
) -> None:
    """Run the escalation engine and its watchdog in the foreground."""
    with _errors():
        check("oncall run")
        parts = _parts(with_incidents=True)
        parts.engine.start()
        if parts.watchdog is not None:
            parts.watchdog.start()
        console.print("escalation engine running" + ("; watchdog on" if parts.watchdog else ""))
        try:
            end = time.monotonic() + seconds if seconds else None
            while end is None or time.monotonic() < end:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            if parts.watchdog is not None:
                parts.watchdog.stop()
            parts.engine.stop()


def watchdog(
    seconds: Annotated[float, typer.Option(help="Stop after this long (0: until Ctrl-C).", min=0)] = 0,
) -> None:
    """Watch the escalation engines from a process of its own: page oncall.watchdog.notify when no
    engine has gone round for more than oncall.watchdog.stall (10 s)."""
    with _errors():
        check("oncall watchdog")
        from shipwarden.bootstrap import load_policy, make_watchdog_process
        from shipwarden.entrypoints.cli.context import settings as _settings
        from shipwarden.entrypoints.cli.guard import services

        settings = _settings()
        dog = make_watchdog_process(settings, services(with_policy=False).store, load_policy(settings.policy))
        console.print(f"watching the escalation engines (stall limit {dog.stall:g}s)")
        end = time.monotonic() + seconds if seconds else None
        try:
            while end is None or time.monotonic() < end:
                result = dog.check()
                if result is not None:
                    console.print("paged: engine stalled" if result else "paged: engine recovered")
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass


def _line(e: Any) -> str:
    due = f", next step at {datetime.fromtimestamp(e.due, UTC):%H:%M:%SZ}" if e.due else ""
    who = f" by {e.acked_by}" if e.acked_by and e.status.value == "acknowledged" else ""
    return (
        f"{e.id} {e.status.value}{who} {e.service or '-'} step {e.step}/{e.snapshot.steps} "
        f"(policy {e.snapshot.policy}){due}: {e.title}"
    )


def trigger(
    title: Annotated[str, typer.Option("--title", help="What is wrong, in one line.")],
    service: Annotated[str | None, typer.Option(help="The service (its escalation policy applies).")] = None,
    policy: Annotated[str | None, typer.Option(help="An escalation policy by name instead.")] = None,
    key: Annotated[str | None, typer.Option(help="Group key (default: manual/<service>/<title>).")] = None,
    body: Annotated[str, typer.Option(help="More text for the page.")] = "",
) -> None:
    """Open an escalation by hand; `oncall run` (or `serve`) pages as its levels say."""
    with _errors():
        _, actor = check("alerts trigger")
        group = key or f"manual/{service or '-'}/{title}"
        e = _parts().engine.open(
            group, title=title, service=service, body=body, policy=policy, actor=actor.name
        )
        console.print(f"escalating {_line(e)}", soft_wrap=True)


def list_escalations(
    open_only: Annotated[bool, typer.Option("--open", help="Only unresolved ones.")] = False,
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Escalations, newest first."""
    with _errors():
        check("alerts escalations")
        found = _parts().engine.store.find(open_only=open_only, service=service)
        if as_json:
            sys.stdout.write(json.dumps([escalation_document(e) for e in found], indent=2) + "\n")
            return
        for e in found:
            console.print(_line(e), soft_wrap=True)
        if not found:
            console.print("no escalations")


def show(escalation_id: Annotated[str, typer.Argument()], as_json: JsonOpt = False) -> None:
    """One escalation: its frozen policy, state and the pages it sent."""
    with _errors():
        check("alerts show")
        engine = _parts().engine
        e = engine.store.get(escalation_id)
        pages = engine.store.pages(e.id)
        if as_json:
            sys.stdout.write(json.dumps({**escalation_document(e), "pages": pages}, indent=2) + "\n")
            return
        console.print(_line(e), soft_wrap=True)
        for p in pages:
            console.print(
                f"  step {p['step']} {p['kind']} {p['to']}: {p['status']} after {p['attempts']} "
                f"attempt(s) {p['detail']}",
                soft_wrap=True,
            )


def ack(escalation_id: Annotated[str, typer.Argument()]) -> None:
    """Acknowledge: no further levels are paged (the service's open incident is acknowledged too)."""
    with _errors():
        _, actor = check("alerts ack")
        e = _parts(with_incidents=True).engine.acknowledge(escalation_id, actor=actor.name, via="cli")
        console.print(f"acknowledged {_line(e)}", soft_wrap=True)


def resolve(escalation_id: Annotated[str, typer.Argument()]) -> None:
    """Resolve: the escalation is over."""
    with _errors():
        _, actor = check("alerts resolve")
        e = _parts().engine.resolve(escalation_id, actor=actor.name, via="cli")
        console.print(f"resolved {_line(e)}", soft_wrap=True)


override_app = typer.Typer(no_args_is_help=True, help="Overrides of a schedule, beside the policy's.")
feed_app = typer.Typer(no_args_is_help=True, help="Per-person calendar feed URLs (tokens), revocable.")


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%MZ")


def override_add(
    schedule: Annotated[str, typer.Argument(help="The schedule.")],
    person: Annotated[str, typer.Argument(help="Who is on call instead (in oncall.people).")],
    start: Annotated[str, typer.Option("--from", help="From (with its zone): 2026-12-24T18:00+01:00.")],
    until: Annotated[str, typer.Option("--until", help="Until (with its zone).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")],
) -> None:
    """PERSON is on call in SCHEDULE from --from until --until (wins over the rotation)."""
    with _errors():
        _, actor = check("oncall override add")
        o = _parts().rota.add_override(
            schedule, person, _when(start), _when(until), reason=reason, actor=actor.name
        )
        console.print(
            f"{o.id}: {o.person} on call in {o.schedule} from {_stamp(o.start)} until {_stamp(o.end)}",
            soft_wrap=True,
        )


def override_list(
    schedule: Annotated[str | None, typer.Option("--schedule", help="Only this schedule.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The overrides made here (the policy's own are in the policy file)."""
    with _errors():
        check("oncall override list")
        found = _parts().rota.overrides(schedule)
        if as_json:
            sys.stdout.write(json.dumps([vars(o) for o in found], indent=2) + "\n")
            return
        for o in found:
            console.print(
                f"{o.id}  {o.schedule}  {o.person}  {_stamp(o.start)} -> {_stamp(o.end)}  "
                f"by {o.created_by}: {o.reason}",
                soft_wrap=True,
            )
        if not found:
            console.print("no overrides")


def override_remove(override_id: Annotated[str, typer.Argument(help="ovr-… from override list.")]) -> None:
    """Remove an override (it stays in the audit log and the store, marked removed)."""
    with _errors():
        _, actor = check("oncall override remove")
        o = _parts().rota.remove_override(override_id, actor=actor.name)
        console.print(f"removed {o.id} ({o.person} in {o.schedule})", soft_wrap=True)


def feed_create(person: Annotated[str, typer.Argument(help="Whose shifts (in oncall.people).")]) -> None:
    """A calendar feed URL for PERSON's shifts across every schedule; the token is shown once."""
    from shipwarden.entrypoints.cli import _settings

    with _errors():
        _, actor = check("oncall feed create")
        t, token = _parts().rota.create_feed(person, actor=actor.name)
        base = (_settings().public_url or "http://127.0.0.1:8080").rstrip("/")
        console.print(f"{t.id} for {t.person} (revoke: shipwarden oncall feed revoke {t.id})", soft_wrap=True)
        console.print(f"{base}/oncall/feeds/{token}.ics", soft_wrap=True)


def feed_list(
    person: Annotated[str | None, typer.Option("--person", help="Only this person's.")] = None,
) -> None:
    """Feed tokens (ids only: the secrets are not stored)."""
    with _errors():
        check("oncall feed list")
        found = _parts().rota.feeds(person)
        for t in found:
            state = f"revoked {_stamp(t.revoked_at)} by {t.revoked_by}" if t.revoked_at else "in force"
            console.print(
                f"{t.id}  {t.person}  created {_stamp(t.created_at)} by {t.created_by}  {state}",
                soft_wrap=True,
            )
        if not found:
            console.print("no feed tokens")


def feed_revoke(token_id: Annotated[str, typer.Argument(help="feed-… from feed list.")]) -> None:
    """Revoke a feed token: its URL answers 404 from now on."""
    with _errors():
        _, actor = check("oncall feed revoke")
        t = _parts().rota.revoke_feed(token_id, actor=actor.name)
        console.print(f"revoked {t.id} ({t.person})", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(oncall_app, name="oncall")
    oncall_app.add_typer(override_app, name="override")
    oncall_app.add_typer(feed_app, name="feed")
    override_app.command("add")(override_add)
    override_app.command("list")(override_list)
    override_app.command("remove")(override_remove)
    feed_app.command("create")(feed_create)
    feed_app.command("list")(feed_list)
    feed_app.command("revoke")(feed_revoke)
    oncall_app.command("who")(who)
    oncall_app.command("ical")(ical)
    oncall_app.command("run")(run)
    oncall_app.command("watchdog")(watchdog)
    alerts_app.command("trigger")(trigger)
    alerts_app.command("escalations")(list_escalations)
    alerts_app.command("show")(show)
    alerts_app.command("ack")(ack)
    alerts_app.command("resolve")(resolve)
