"""Admin commands: ``audit``, ``dossier``, ``user``, ``token``, ``secret`` and ``serve``.

Each command that touches the store checks the permission matrix for the local
actor (``SHIPWARDEN_ACTOR`` or the OS user) through ``guard.authorized`` — the same
``AccessService.authorize`` the API uses, with the rule from ``guard.COMMANDS``.  Until
the first user exists the installation is in single-operator mode (so that first
``user create`` is allowed, and audited as such); after that, managing users, tokens
and secrets needs a current TOTP code (``--otp``).  Exit codes: 0 ok, 1 the check
failed (e.g. the audit chain or a dossier does not verify), 2 bad input or not allowed.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from shipwarden.entrypoints.cli.guard import OtpOpt, authorized, check_own, services

__all__ = ["audit_app", "dossier_app", "register", "secret_app", "serve", "token_app", "user_app"]

audit_app = typer.Typer(no_args_is_help=True, help="Verify, export and query the central audit log.")
user_app = typer.Typer(no_args_is_help=True, help="Manage users, role bindings and allowlists.")
mfa_app = typer.Typer(no_args_is_help=True, help="Enrol your own second factor (TOTP) from this machine.")
user_app.add_typer(mfa_app, name="mfa")
token_app = typer.Typer(no_args_is_help=True, help="Issue, list and revoke API tokens.")
secret_app = typer.Typer(no_args_is_help=True, help="Encrypted secrets and KEK rotation.")


class _DefaultCreate(TyperGroup):
    """``dossier DEPLOYMENT_ID`` means ``dossier create DEPLOYMENT_ID``; ``dossier verify FILE`` stays."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:  # typer's own click Context
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args.insert(0, "create")
        return super().resolve_command(ctx, args)


dossier_app = typer.Typer(
    cls=_DefaultCreate, no_args_is_help=True, help="Write or verify a signed deployment dossier."
)


def _out() -> Any:
    from shipwarden.entrypoints.cli.output import console

    return console  # markup off: names, roles and messages print as written


def _err(msg: str, code: int = 2) -> typer.Exit:
    from shipwarden.entrypoints.cli.output import error

    error(msg)
    return typer.Exit(code)


# -- audit ------------------------------------------------------------------------------------------
def _filters(**kw: Any) -> dict[str, Any]:
    from datetime import datetime

    from shipwarden.domain.audit import format_ts

    out = {k: v for k, v in kw.items() if v is not None and k not in ("since", "until")}
    for key, col in (("since", "ts_from"), ("until", "ts_to")):
        if kw.get(key):
            try:
                when = datetime.fromisoformat(kw[key])
                out[col] = format_ts(when if when.tzinfo else when.astimezone())
            except ValueError:
                raise _err(f"--{key}: not an ISO-8601 time: {kw[key]!r}") from None
    return out


Since = Annotated[str | None, typer.Option(help="From this time (ISO-8601).")]
Until = Annotated[str | None, typer.Option(help="Up to this time (ISO-8601).")]
Actor = Annotated[str | None, typer.Option(help="Only this actor.")]
Service = Annotated[str | None, typer.Option(help="Only this service.")]
Action = Annotated[str | None, typer.Option(help="Only this action (e.g. access, rollout.succeeded).")]
Source = Annotated[str | None, typer.Option(help="shipwarden or kubernetes.")]


def _head_arg(value: str | None, option: str = "--expect-head") -> Any:
    """``SEQ:HASH`` → ChainHead (exit 2 with a precise message otherwise)."""
    from shipwarden.domain.audit import ChainHead

    if value is None:
        return None
    seq, _, digest = value.partition(":")
    if not seq.isdigit() or int(seq) < 1 or len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise _err(f"{option}: expected SEQ:HASH (a seq >= 1 and 64 lower-case hex digits), got {value!r}")
    return ChainHead(int(seq), digest)


ExpectHead = Annotated[
    str | None,
    typer.Option(
        "--expect-head",
        help="SEQ:HASH of a head kept outside the database (a dossier, an earlier verify); the chain must "
        "reach it and agree.",
    ),
]


@audit_app.command("verify")
def audit_verify(
    fast: Annotated[bool, typer.Option(help="Hash-chain only, skip column checks.")] = False,
    expect_head: ExpectHead = None,
    witness: Annotated[
        bool, typer.Option(help="Hold the chain to the witness file (audit_head_file, state_dir/audit.head).")
    ] = True,
) -> None:
    """Check every entry's hash and link, the signed checkpoint chain and grid, the witness file and
    --expect-head; say where the first problem is."""
    from shipwarden.ports.audit import WitnessError

    head = _head_arg(expect_head)
    with authorized("audit verify") as (svc, _):
        try:
            report = svc.audit.verify(fast=fast, expect_head=head, witness=witness)
        except WitnessError as exc:
            sys.stderr.write(f"witness unreadable: {exc}\n")
            raise typer.Exit(1) from None
    if report.ok:
        _out().print(
            f"ok: {report.entries_checked} entries, {report.checkpoints_checked} signed checkpoints, "
            f"{report.anchors_checked} witnessed heads, {report.unsealed} entries after the last checkpoint; "
            f"head {report.head.seq}:{report.head.hash}",
            highlight=False,
        )
        return
    sys.stderr.write(f"TAMPERED at seq {report.seq}: {report.problem.value}: {report.message}\n")
    raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File (default: stdout).")] = None,
    since: Since = None,
    until: Until = None,
    actor: Actor = None,
    service: Service = None,
    action: Action = None,
    source: Source = None,
    after_seq: Annotated[int, typer.Option(min=0, help="Only entries after this seq (a segment).")] = 0,
) -> None:
    """Write a signed bundle: the entries as JSON Lines, then a signed manifest (count, head, checkpoints).
    Check it offline with `shipwarden audit verify-export FILE --public-key PEM`."""
    with authorized("audit export") as (svc, _):
        f = _filters(since=since, until=until, actor=actor, service=service, action=action, source=source)
        if after_seq:
            f["after_seq"] = after_seq
        sink = out.open("w", encoding="utf-8") if out else sys.stdout
        try:
            n = -1  # the manifest line is not an entry
            for line in svc.audit.export(**f):
                sink.write(line)
                n += 1
        finally:
            if out:
                sink.close()
        if out:
            _out().print(f"{n} entries + signed manifest → {out}", highlight=False)


@audit_app.command("verify-export")
def audit_verify_export(
    file: Path,
    public_key: Annotated[Path, typer.Option("--public-key", help="shipwarden's Ed25519 public key (PEM).")],
    expect_head: ExpectHead = None,
) -> None:
    """Check an export bundle offline with the public key alone (no database needed)."""
    from shipwarden.security.audit_export import ExportError, verify_export

    head = _head_arg(expect_head)
    try:
        data, pem = file.read_bytes(), public_key.read_bytes()
    except OSError as exc:
        raise _err(str(exc)) from None
    try:
        r = verify_export(data, pem, expect_head=head)
    except (ExportError, ValueError) as exc:
        sys.stderr.write(f"INVALID: {exc}\n")
        raise typer.Exit(1) from None
    _out().print(
        f"valid: {r.scope} of {r.entries} entries, head {r.head.seq}:{r.head.hash}, "
        f"{r.checkpoints} checkpoints, key {r.key_fingerprint[:23]}…, exported {r.created_at}",
        highlight=False,
    )


@audit_app.command("query")
def audit_query(
    since: Since = None,
    until: Until = None,
    actor: Actor = None,
    service: Service = None,
    action: Action = None,
    source: Source = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """Show matching entries as a table."""
    from rich.table import Table

    with authorized("audit query") as (svc, _):
        f = _filters(since=since, until=until, actor=actor, service=service, action=action, source=source)
        rows = svc.audit.query(limit=limit, **f)
    t = Table("seq", "time", "source", "actor", "action", "service", "outcome")
    for r in rows:
        t.add_row(
            str(r["seq"]), r["ts"], r["source"], r["actor"], r["action"], r["service"] or "", r["outcome"]
        )
    _out().print(t)


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign the current head now."""
    with authorized("audit checkpoint") as (svc, _):
        cp = svc.audit.checkpoint()
    _out().print(f"checkpoint at seq {cp.seq} ({cp.key_id})" if cp else "empty log: nothing to sign")


# -- dossier ----------------------------------------------------------------------------------------
@dossier_app.command("create")
def dossier_create(
    deployment_id: str,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Default: DEPLOYMENT_ID.dossier.json")
    ] = None,
) -> None:
    """Write DEPLOYMENT_ID's signed dossier: record, evidence digests, approvals, audit proof."""
    with authorized("dossier create") as (svc, _):
        blob = svc.audit.dossier(deployment_id)
        pub = svc.signing_public_pem
    path = out or Path(f"{deployment_id}.dossier.json")
    path.write_bytes(blob)
    _out().print(f"{path} ({len(blob)} bytes); verify with the public key:\n{pub.decode()}", highlight=False)


@dossier_app.command("verify")
def dossier_verify(
    file: Path,
    public_key: Annotated[Path, typer.Option("--public-key", help="shipwarden's Ed25519 public key (PEM).")],
) -> None:
    """Check a dossier offline with the public key alone (no database needed)."""
    from shipwarden.security.dossier import DossierError, verify_dossier

    try:
        d = verify_dossier(file.read_bytes(), public_key.read_bytes())
    except OSError as exc:
        raise _err(str(exc)) from None
    except (DossierError, ValueError) as exc:
        sys.stderr.write(f"INVALID: {exc}\n")
        raise typer.Exit(1) from None
    outcome = d.record.get("outcome", "?")
    _out().print(
        f"valid: {d.deployment_id} ({outcome}), {len(d.entries)} audit entries, "
        f"checkpoint seq {d.checkpoint.seq if d.checkpoint else '-'}, key {d.key_fingerprint[:23]}…",
        highlight=False,
    )
    if d.head is not None:
        _out().print(
            f"audit chain head when it was made: {d.head.seq}:{d.head.hash}\n"
            f"(keep it: `shipwarden audit verify --expect-head {d.head.seq}:{d.head.hash}` proves later "
            "that history up to it was not rewritten)",
            highlight=False,
        )


# -- users and tokens -------------------------------------------------------------------------------
Roles = Annotated[list[str], typer.Option("--role", "-r", help="role or role:svc1,svc2 (repeatable).")]
Cidrs = Annotated[list[str], typer.Option("--cidr", help="Allowed source network (repeatable).")]


def _password(stdin: bool) -> str | None:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    pw = getpass.getpass("password: ")
    if pw != getpass.getpass("again: "):
        raise _err("passwords differ")
    return pw


@user_app.command("create")
def user_create(
    name: str,
    role: Roles = [],  # noqa: B006 - typer needs a literal default
    cidr: Cidrs = [],  # noqa: B006
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin.")] = False,
    no_password: Annotated[bool, typer.Option(help="Service account: tokens only, no login.")] = False,
    otp: OtpOpt = None,
) -> None:
    """Create a user.  The first user of an installation is created by whoever is at the machine,
    and must be an admin (``--role admin``): it ends single-operator mode."""
    from shipwarden.services.access import parse_binding

    with authorized("user create", otp=otp) as (svc, who):
        bindings = [parse_binding(r) for r in role]
        first = not svc.access.has_users()
        if first:  # refuse a non-admin first user before asking for a password
            svc.access.check_first_user(name, bindings)
        pw = None if no_password else _password(password_stdin)
        create = svc.access.create_first_user if first else svc.access.create_user
        create(who.name, name, pw, bindings, cidr)
    _out().print(f"user {name} created with {', '.join(role) or 'no role'}", highlight=False)
    if first:
        _out().print(
            f"{name} is the first user: single-operator mode is over. Next, as {name}: "
            f"shipwarden user mfa enroll {name}",
            highlight=False,
        )


@contextmanager
def _own_account(command: str, name: str, otp: str | None = None) -> Iterator[tuple[Any, Any]]:
    """``guard.check_own`` for ``command``, then yield ``(services, principal)``; access and input
    errors raised in the body exit 2 with their message."""
    from shipwarden.ports.store import StoreError
    from shipwarden.services.access import AccessError

    svc, who = check_own(command, name, otp=otp)
    try:
        yield svc, who
    except (AccessError, StoreError, ValueError) as exc:
        raise _err(str(exc)) from None


def _qr(text: str) -> str:
    """``text`` as a QR code drawn with block characters (dark modules dark on any terminal)."""
    import io

    import qrcode

    qr = qrcode.QRCode(border=2)
    qr.add_data(text)
    qr.make(fit=True)
    buf = io.StringIO()
    if sys.stdout.isatty():
        buf.isatty = lambda: True  # type: ignore[method-assign]  # colours: black on white, whatever the theme
        qr.print_ascii(out=buf, tty=True)
    else:
        qr.print_ascii(out=buf, invert=True)
    return buf.getvalue()


@mfa_app.command("enroll")
def mfa_enroll(name: str, otp: OtpOpt = None) -> None:
    """Start enrolling NAME's second factor (run it as NAME): prints the otpauth:// URI and its QR
    code for an authenticator app; it is active once `user mfa confirm NAME CODE` checks a first code.
    Replacing an active second factor needs a current code from it (--otp)."""
    with _own_account("user mfa enroll", name, otp) as (svc, who):
        secret, uri = svc.access.enroll_local_mfa(who)
    sys.stdout.write(f"{uri}\n\n{_qr(uri)}\n")
    sys.stdout.write(f"secret (to type in instead of scanning): {secret}\n")
    sys.stderr.write(
        f"scan it with an authenticator app, then activate it with its current code:\n"
        f"  shipwarden user mfa confirm {name} CODE\n"
    )


@mfa_app.command("confirm")
def mfa_confirm(name: str, code: Annotated[str, typer.Argument(help="The app's current code.")]) -> None:
    """Activate NAME's pending second factor with its current code (run it as NAME); prints the
    recovery codes once."""
    with _own_account("user mfa confirm", name) as (svc, who):
        codes = svc.access.confirm_local_mfa(who, code)
    sys.stderr.write(f"second factor active for {name}; recovery codes (shown once, keep them offline):\n")
    sys.stdout.write("".join(f"{c}\n" for c in codes))
    sys.stderr.write("each code works once; production-affecting commands now take --otp CODE\n")


@user_app.command("list")
def user_list(otp: OtpOpt = None) -> None:
    from shipwarden.services.access import binding_text

    with authorized("user list", otp=otp) as (svc, _):
        for u in svc.access.users():
            roles = ", ".join(binding_text(b) for b in u.bindings) or "-"
            flags = " ".join(f for f, on in (("mfa", u.mfa_enabled), ("disabled", u.disabled)) if on)
            _out().print(f"{u.name}\t{roles}\t{' '.join(u.cidrs) or '-'}\t{flags}", highlight=False)


@user_app.command("roles")
def user_roles(name: str, role: Roles = [], otp: OtpOpt = None) -> None:  # noqa: B006
    """Replace NAME's role bindings (their sessions end)."""
    from shipwarden.services.access import parse_binding

    with authorized("user roles", otp=otp) as (svc, who):
        svc.access.set_roles(who.name, name, [parse_binding(r) for r in role])
    _out().print(f"{name}: {', '.join(role) or 'no role'}")


@user_app.command("cidrs")
def user_cidrs(name: str, cidr: Cidrs = [], otp: OtpOpt = None) -> None:  # noqa: B006
    """Replace NAME's address allowlist (none: no per-user restriction)."""
    with authorized("user cidrs", otp=otp) as (svc, who):
        svc.access.set_cidrs(who.name, name, cidr)


@user_app.command("disable")
def user_disable(name: str, otp: OtpOpt = None) -> None:
    with authorized("user disable", otp=otp) as (svc, who):
        svc.access.set_disabled(who.name, name, True)


@user_app.command("reset-mfa")
def user_reset_mfa(name: str, otp: OtpOpt = None) -> None:
    with authorized("user reset-mfa", otp=otp) as (svc, who):
        svc.access.reset_mfa(who.name, name)


@user_app.command("revoke-sessions")
def user_revoke_sessions(name: str, otp: OtpOpt = None) -> None:
    with authorized("user revoke-sessions", otp=otp) as (svc, who):
        n = svc.access.revoke_all_sessions(who.name, name)
    _out().print(f"{n} session(s) ended")


@token_app.command("create")
def token_create(
    owner: Annotated[str, typer.Option(help="User the token acts for.")],
    name: Annotated[str, typer.Option(help="What it is for (e.g. ci, kube-apiserver).")],
    scope: Annotated[list[str], typer.Option("--scope", "-s", help="Permission (repeatable).")],
    service: Annotated[list[str], typer.Option(help="Limit to these services (repeatable).")] = [],  # noqa: B006
    ttl_days: Annotated[float, typer.Option(min=0.001, max=366)] = 30,
    cidr: Cidrs = [],  # noqa: B006
    otp: OtpOpt = None,
) -> None:
    """Issue a token; it is printed once and stored only as a hash."""
    with authorized("token create", otp=otp) as (svc, who):
        token, rec = svc.access.issue_token(
            who.name, owner, name, scope, timedelta(days=ttl_days), service or None, cidr
        )
    sys.stderr.write(f"token {rec.id} for {owner}, expires {rec.expires_at:.0f} (unix); shown once:\n")
    sys.stdout.write(token + "\n")


@token_app.command("list")
def token_list(owner: Annotated[str | None, typer.Option()] = None, otp: OtpOpt = None) -> None:
    from datetime import UTC, datetime

    with authorized("token list", otp=otp) as (svc, _):
        for t in svc.access.tokens(owner):
            state = "revoked" if t.revoked_at else f"expires {datetime.fromtimestamp(t.expires_at, UTC):%F}"
            scopes = ",".join(sorted(p.value for p in t.scopes))
            _out().print(f"{t.id}\t{t.owner}\t{t.name}\t{scopes}\t{state}", highlight=False)


@token_app.command("revoke")
def token_revoke(token_id: str, otp: OtpOpt = None) -> None:
    with authorized("token revoke", otp=otp) as (svc, who):
        svc.access.revoke_token(who.name, token_id)
    _out().print(f"token {token_id} revoked")


# -- secrets ----------------------------------------------------------------------------------------
@secret_app.command("set")
def secret_set(name: str, otp: OtpOpt = None) -> None:
    """Store NAME's value (read from stdin), envelope-encrypted."""
    with authorized("secret set", otp=otp) as (svc, who):
        svc.access.put_secret(who.name, name, sys.stdin.read().rstrip("\n"))
    _out().print(f"secret {name} stored (encrypted)")


@secret_app.command("list")
def secret_list(otp: OtpOpt = None) -> None:
    with authorized("secret list", otp=otp) as (svc, _):
        for name, kek, _ts in svc.access.secrets():
            _out().print(f"{name}\t{kek}", highlight=False)


@secret_app.command("rotate")
def secret_rotate(otp: OtpOpt = None) -> None:
    """Re-wrap every data key under the primary KEK (add the new KEK first in SHIPWARDEN_KEKS or
    kek_files, keep the old one until this reports 0 unreadable, then drop it)."""
    with authorized("secret rotate", otp=otp) as (svc, who):
        counts = svc.access.rotate_keys(who.name)
    _out().print(f"primary {svc.access.envelope.keyring.primary}: {counts}")
    if counts["unreadable"]:
        raise typer.Exit(1)


# -- serve ------------------------------------------------------------------------------------------
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8443,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate (chain).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key.")] = None,
    dev_tls: Annotated[bool, typer.Option(help="Generate a self-signed pair in the state dir.")] = False,
    insecure_http: Annotated[bool, typer.Option(help="Serve plain HTTP (loopback testing only).")] = False,
    controller: Annotated[
        bool, typer.Option(help="Drive recorded deployments in this process (off: run `reconcile --watch`).")
    ] = True,
    watch_main: Annotated[
        float,
        typer.Option(
            help="Poll the repository's main branch every N seconds (the push webhook's fallback); 0: off."
        ),
    ] = 60.0,
) -> None:
    """Serve the HTTP API over TLS (and, by default, drive the deployments it records)."""
    from shipwarden.entrypoints.http import create_app
    from shipwarden.entrypoints.memory import bound_malloc_arenas

    bound_malloc_arenas()
    from shipwarden.entrypoints.http.tls import dev_certificate

    if dev_tls and (tls_cert or tls_key):
        raise _err("--dev-tls generates its own pair: drop --tls-cert/--tls-key")
    if bool(tls_cert) != bool(tls_key):
        raise _err("--tls-cert and --tls-key go together")
    svc = _services_or_exit()
    if dev_tls:
        tls_cert, tls_key = dev_certificate(svc.settings.state_dir / "tls", host)
    if not tls_cert and not insecure_http:
        raise _err("TLS is required: give --tls-cert/--tls-key or --dev-tls (or --insecure-http for tests)")
    for p in (tls_cert, tls_key):
        if p is not None and not p.exists():
            raise _err(f"{p}: no such file")
    from shipwarden.bootstrap import start_alerting, start_wal_checkpoints

    stop_checkpoints = start_wal_checkpoints(svc)  # SQLite: not inside the commits requests wait for
    api = create_app(svc)
    app = _worker_threads(api, svc.settings.api_threads)
    _checkpoint_timer(svc, every_s=60.0)
    if watch_main > 0:
        _main_watch_timer(svc, api, every_s=watch_main)
    import gc

    gc.collect()
    gc.freeze()  # what start-up built lives for the process: keep it out of every later full collection
    driver = None
    if controller and svc.rollout is not None:
        from shipwarden.services.controller import Controller
        from shipwarden.services.serving import for_rollout

        driver = Controller(svc.rollout, svc.store, serving=for_rollout(svc.rollout))
        driver.start()
    stop_alerting = start_alerting(svc)
    sys.stderr.write(f"shipwarden API on {'https' if tls_cert else 'http'}://{host}:{port}\n")
    try:
        _run_uvicorn(app, host, port, tls_cert, tls_key, refusals=api.state.refusals)
    finally:
        stop_alerting()
        if driver is not None:
            driver.stop()
        svc.audit.close()  # uvicorn has finished the requests in flight: commit what they queued
        stop_checkpoints()


def _services_or_exit() -> Any:
    """``services()`` for ``serve``: an invalid policy file is its issues and exit 2, not a traceback."""
    from shipwarden.domain.policy import PolicyError
    from shipwarden.entrypoints.cli.output import policy_errors

    try:
        return services()
    except PolicyError as exc:
        policy_errors(exc)
        raise typer.Exit(2) from None


def _run_uvicorn(
    app: Any, host: str, port: int, tls_cert: Path | None, tls_key: Path | None, *, refusals: Any = None
) -> None:
    from shipwarden.entrypoints.http.server import run  # header limits, 431, no proxy headers

    run(app, host, port, tls_cert, tls_key, refusals=refusals)


def _worker_threads(app: Any, n: int) -> Any:
    """``app`` with the event loop's worker-thread limit set to ``n`` when it starts (anyio's default
    is 40: under load, 40 threads fighting for the GIL cost more CPU than the work itself)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = n
        await app(scope, receive, send)

    return wrapped


def _checkpoint_timer(svc: Any, every_s: float) -> None:
    """Sign the audit head periodically while serving (truncation after this point is detectable)."""
    import threading

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                svc.audit.checkpoint()
            except Exception as exc:  # noqa: BLE001 - keep serving; the next tick retries
                sys.stderr.write(f"audit checkpoint failed: {type(exc).__name__}\n")

    stop = threading.Event()
    threading.Thread(target=loop, name="audit-checkpoints", daemon=True).start()


def _main_watch_timer(svc: Any, api: Any, every_s: float) -> None:
    """Judge what is new on main periodically while serving (D9): a push whose webhook was lost
    (or never configured) is still judged, deployed through the gates or alerted."""
    import threading

    if svc.rollout is None or getattr(svc.rollout.loaded.policy, "delivery", None) is None:
        return

    def loop() -> None:
        from shipwarden.entrypoints.http.routes.webhooks import shared_change_service

        while not stop.wait(every_s):
            try:
                shared_change_service(api, svc).watch_main(via="poll")
            except Exception as exc:  # noqa: BLE001 - keep serving; the next look retries
                sys.stderr.write(f"main watch failed: {type(exc).__name__}: {exc}\n")

    stop = threading.Event()
    threading.Thread(target=loop, name="main-watch", daemon=True).start()


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
    app.add_typer(dossier_app, name="dossier")
    app.add_typer(user_app, name="user")
    app.add_typer(token_app, name="token")
    app.add_typer(secret_app, name="secret")
    app.command("serve")(serve)
