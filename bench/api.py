"""API latency and throughput under concurrency, with every access audited (issue 9, class 12; E5).

A real ``shipwarden serve`` (uvicorn, plain HTTP on 127.0.0.1, a free port) is started on a fresh
state directory, against SQLite (the default: a file in the state dir) and against MariaDB
(127.0.0.1:3306, a uniquely named database, dropped afterwards).  Clients are keep-alive HTTP/1.1
connections over real sockets, one per client, all in this process on uvloop, each a few lines of
``asyncio`` streams (:class:`Conn`: tens of microseconds of client CPU per request — an HTTP
library here cost 1.5-3 ms per request and was the bottleneck of the closed-loop rows).

Three requests, each measured at 1, 50 and 200 concurrent clients:

* ``read``   — ``GET /deployments`` with a Bearer API token (auditor role), 20 finished
  deployments in the store: authentication, authorisation, one access entry, one query;
* ``webhook`` — ``POST /webhooks/github``, a signed ``ping`` delivery (HMAC-SHA256 over the body):
  the signature check, a ``webhook.ignored`` entry and the access entry;
* ``audit``  — ``GET /audit?action=access&limit=50`` with the token: a query over the growing log.

Every request is audited: each writes its access entry to the hash chain before it is answered.

The client model.  One client is one connection that sends a request, reads the answer, and sends
its next request on a fixed schedule of ``--rate`` requests per second (default 0.5: a dashboard or
CI job polling every two seconds; offset at random per client), or at once if it is late — an
*open* schedule: a request's latency runs from the moment it was due, not from the moment it could
be sent, so a server that stalls is charged for every request it delayed (no coordinated omission).
At 1 client the schedule is closed (back to back): that row is the latency of one request alone
and the throughput one client gets.  A request that takes longer than 2 s, or is answered with an
unexpected status, is an error.

The goal (issue 9): p99 <= 50 ms and no errors at 200 clients for the read, on SQLite and MariaDB.

``rates`` repeats the read at 200 clients polling faster (``--sweep``, default 1 and 2 requests/s
each): where the open-schedule goal stops holding.

``saturation`` runs 50 and 200 clients closed (back to back, no schedule) — the model of the
issue's own figures (77 requests/s in total, p50 1.9 s): the throughput the server sustains when
clients never pause, and the latency queueing then costs.  Little's law: 200 requests are always
in flight, so the mean latency is 200 / throughput and a p99 of 50 ms needs at least 4,000
requests/s.  ``closed_loop_limit`` states what that takes at the measured CPU per request (server
and client): ``cores_needed`` against the cores here.

Each row has ``server_cpu_us_per_request``: the server process's CPU (user + system, from /proc)
over the measured window, per request — less sensitive to the machine's load than latency.
Connections are opened before the clock starts.  At the end the access entries in the chain are
counted against every answer the clients got (``every_answer_audited``) and the chain is verified.

The machine is shared (2 cores, other work running): the load average before each database's run is
recorded beside its numbers.  Writes ``bench/results/api.json`` (``--out`` to change); ``--label``
names the run (e.g. before/after a change).  Runtime about 2-3 minutes per database.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from _common import ROOT, write_result  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from shipwarden.adapters.net import free_port  # noqa: E402
from shipwarden.bootstrap import build_service, load_policy  # noqa: E402
from shipwarden.domain.rollout import Phase, Transition  # noqa: E402
from shipwarden.services.access import parse_binding  # noqa: E402
from shipwarden.settings import Settings  # noqa: E402

MARIADB = "mysql+pymysql://root@127.0.0.1:3306"
GITHUB_SECRET = "bench-github-webhook-secret"
TIMEOUT_S = 2.0
GOAL_P99_MS = 50.0

POLICY = """\
apiVersion: shipwarden/v1
team: bench
services:
  - name: web
    run: {{command: ["true"], portEnv: PORT, instances: 1}}
    health: {{path: /healthz}}
    routing: {{port: {port}, previewPort: {preview}}}
    strategy:
      blueGreen: {{autoPromotion: true}}
delivery:
  repository: {{url: ./origin.git, mainBranch: main}}
  services: [web]
  webhooks: {{github: GITHUB_WEBHOOK_SECRET}}
"""


def _percentile(sorted_ms: list[float], p: float) -> float | None:
    if not sorted_ms:
        return None
    k = min(len(sorted_ms) - 1, max(0, int(round(p / 100 * len(sorted_ms) + 0.5)) - 1))
    return round(sorted_ms[k], 2)


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- set-up ---------------------------------------------------------------------------------------------
def prepare(state: Path, db_url: str | None) -> tuple[Settings, str]:
    """Migrate, create an auditor with an API token, record 20 finished deployments."""
    port, preview = free_port(), free_port()
    policy = state.parent / "policy.yaml"
    policy.write_text(POLICY.format(port=port, preview=preview))
    settings = Settings(state_dir=state, policy=policy, database_url=db_url, actor="bench")
    svc = build_service(settings, load_policy(policy))
    svc.access.create_user("bench", "reader", None, [parse_binding("auditor")], ())
    token, _ = svc.access.issue_token(
        "bench", "reader", "bench", ["deployment.read", "audit.read"], timedelta(days=1)
    )
    for i in range(20):
        dep = svc.store.create_deployment(
            service="web", kind="deploy", strategy="blueGreen", from_version=f"v{i}",
            to_version=f"v{i + 1}", actor="bench", policy_digest="d" * 64, policy_source=str(policy),
            plan={},
        )  # fmt: skip
        for phase in (Phase.STARTING, Phase.PREVIEW, Phase.PROMOTING, Phase.SUCCEEDED):
            dep = svc.store.transition(dep, Transition(phase, phase.value), actor="bench")
    svc.store.engine.dispose()
    return settings, token


def start_server(stack: ExitStack, settings: Settings, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SHIPWARDEN_STATE_DIR": str(settings.state_dir),
        "SHIPWARDEN_POLICY": str(settings.policy),
        "SHIPWARDEN_ACTOR": "bench",
        "SHIPWARDEN_SECRET_GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
    }
    if settings.database_url:
        env["SHIPWARDEN_DATABASE_URL"] = settings.database_url
    log = (settings.state_dir / "serve.log").open("wb")
    stack.callback(log.close)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipwarden.entrypoints.cli", "serve", "--insecure-http",
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=settings.state_dir.parent,
    )  # fmt: skip

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    stack.callback(stop)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log_text = (settings.state_dir / "serve.log").read_text()
            raise RuntimeError(f"serve exited {proc.returncode}: {log_text}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("serve did not answer /healthz within 60 s")


# -- requests -------------------------------------------------------------------------------------------
def make_request(kind: str, host: str, token: str) -> tuple[Callable[[], bytes], int]:
    """A function building one request of ``kind`` as HTTP/1.1 bytes (a fresh body and delivery id
    each time), and the status expected."""
    auth = f"Authorization: Bearer {token}\r\n"
    if kind == "read":
        head = f"GET /deployments HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode()
        return (lambda: head), 200
    if kind == "audit":
        head = f"GET /audit?action=access&limit=50 HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode()
        return (lambda: head), 200

    def webhook() -> bytes:
        body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": random.getrandbits(31)}).encode()
        sig = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
        return (
            f"POST /webhooks/github HTTP/1.1\r\nHost: {host}\r\nX-GitHub-Event: ping\r\n"
            f"X-GitHub-Delivery: {uuid.uuid4()}\r\nX-Hub-Signature-256: {sig}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    return webhook, 202


class Conn:
    """One keep-alive HTTP/1.1 connection: writes a request, reads one response (status line,
    headers, a ``Content-Length`` body).  A few dozen microseconds of client CPU per request, so the
    client's own event loop adds little to the latencies it measures (an HTTP library in this one
    process cost 1.5-3 ms of CPU per request: on 2 shared cores, that was queueing charged to the
    server)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def exchange(self, request: bytes) -> int:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                self.close()
        if length is None:
            raise ValueError("response without Content-Length")
        if length:
            await self.reader.readexactly(length)
        return status


async def run_load(kind: str, port: int, token: str, clients: int, seconds: float, rate: float | None,
                   server_pid: int) -> dict[str, Any]:  # fmt: skip
    """``clients`` connections for ``seconds`` (after a 1 s warm-up); ``rate`` None = back to back."""
    build, expect = make_request(kind, f"127.0.0.1:{port}", token)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    answered = [0]  # every answer, warm-up included: each must have its access entry
    warm = 1.0
    conns = [Conn(port) for _ in range(clients)]
    await asyncio.gather(*(c.open() for c in conns))  # connected before the clock starts
    t_start = time.perf_counter()
    t_measure, t_end = t_start + warm, t_start + warm + seconds

    async def client(c: Conn) -> None:
        due = t_start + (random.random() / rate if rate else 0.0)
        while True:
            now = time.perf_counter()
            if rate:
                if due > now:
                    await asyncio.sleep(due - now)
                start = due
                due += 1.0 / rate
            else:
                start = now
            if start >= t_end:
                c.close()
                return
            what: str | None
            try:
                left = max(0.001, start + TIMEOUT_S - time.perf_counter())
                status = await asyncio.wait_for(c.exchange(build()), left)
                answered[0] += 1
                what = None if status == expect else f"status {status}"
            except TimeoutError:
                what = "timeout"
                c.close()  # the answer may still come: a new connection for the next request
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                what = type(exc).__name__
                c.close()
            done = time.perf_counter()
            if what is None and done - start > TIMEOUT_S:
                what = "timeout"  # answered, but later than a client waits
            if start >= t_measure:
                if what is None:
                    latencies.append((done - start) * 1000)
                else:
                    errors[what] = errors.get(what, 0) + 1

    server_cpu: list[float] = []

    async def sample_server() -> None:  # the server's CPU over the measured window only
        await asyncio.sleep(max(0.0, t_measure - time.perf_counter()))
        server_cpu.append(_proc_cpu(server_pid))

    cpu0 = time.process_time()
    await asyncio.gather(sample_server(), *(client(c) for c in conns))
    server_cpu.append(_proc_cpu(server_pid))
    elapsed = time.perf_counter() - t_measure
    latencies.sort()
    n_err = sum(errors.values())
    n = len(latencies) + n_err
    return {
        "clients": clients,
        "schedule": f"{rate}/s per client" if rate else "back to back",
        "requests": n,
        "errors": n_err,
        "error_kinds": errors,
        "throughput_rps": round(n / elapsed, 1),
        "p50_ms": _percentile(latencies, 50),
        "p90_ms": _percentile(latencies, 90),
        "p99_ms": _percentile(latencies, 99),
        "max_ms": round(latencies[-1], 2) if latencies else None,
        "client_cpu_s": round(time.process_time() - cpu0, 2),
        "server_cpu_us_per_request": round((server_cpu[1] - server_cpu[0]) / n * 1e6) if n else None,
        "answered": answered[0],
    }


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, limit_s: float = 30.0) -> float:
    """Wait until the server has worked off what earlier points left queued (its CPU use over half a
    second falls under 5 %); returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        cpu = _proc_cpu(pid)
        time.sleep(0.5)
        if _proc_cpu(pid) - cpu < 0.025:
            break
    return round(time.monotonic() - t0, 1)


def _fmt(ms: float | None) -> str:
    return f"{ms:8.2f}" if ms is not None else "       -"


def _print(name: str, row: dict[str, Any]) -> None:
    print(
        f"  {name:8} {row['request']:8} {row['clients']:4} clients {row['schedule']:>15}: "
        f"{row['throughput_rps']:7.1f} req/s  p50 {_fmt(row['p50_ms'])} ms  p99 {_fmt(row['p99_ms'])} ms  "
        f"errors {row['errors']}  server {row['server_cpu_us_per_request']} us/req"
        f"  load {row['load_1m_after']}",
        flush=True,
    )


def closed_loop_limit(row: dict[str, Any]) -> dict[str, Any]:
    """What the goal would take for clients that never pause (Little's law: ``clients`` requests are
    always in flight, so the mean latency is clients / throughput): the throughput it needs, and the
    CPU that throughput needs at this run's CPU per request (server, plus this client)."""
    need_rps = row["clients"] / (GOAL_P99_MS / 1000)  # p99 >= mean
    server_us = row["server_cpu_us_per_request"] or 0
    client_us = round(row["client_cpu_s"] / row["requests"] * 1e6) if row["requests"] else 0
    return {
        "clients": row["clients"],
        "throughput_needed_rps": round(need_rps),
        "throughput_reached_rps": row["throughput_rps"],
        "server_cpu_us_per_request": server_us,
        "client_cpu_us_per_request": client_us,
        "cores_needed": round(need_rps * (server_us + client_us) / 1e6, 1),
        "cores_here": os.cpu_count(),
    }


def bench_db(name: str, db_url: str | None, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"database": name, "load_avg_before": _loadavg()}
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="sw-bench-api-") as tmp:
        state = Path(tmp) / "state"
        settings, token = prepare(state, db_url)
        port = free_port()
        proc = start_server(stack, settings, port)
        answered = 0

        def point(kind: str, clients: int, rate: float | None) -> dict[str, Any]:
            nonlocal answered
            wait_idle(proc.pid)
            row = asyncio.run(run_load(kind, port, token, clients, args.seconds, rate, proc.pid))
            answered += row.pop("answered")
            row = {"request": kind, **row, "load_1m_after": _loadavg()[0]}
            _print(name, row)
            return row

        out["scheduled"] = [
            point(kind, clients, None if clients == 1 else args.rate)
            for kind in args.kinds
            for clients in args.clients
        ]
        # The read at 200 clients with each client polling faster: where the open-loop goal stops holding.
        out["rates"] = [point("read", 200, rate) for rate in args.sweep] if "read" in args.kinds else []
        out["saturation"] = [point("read", clients, None) for clients in (50, 200)] if args.saturation else []
        out["closed_loop_limit"] = [closed_loop_limit(r) for r in out["saturation"]]
        for lim in out["closed_loop_limit"]:
            print(
                f"  {name:8} closed loop, {lim['clients']} clients: p99 <= {GOAL_P99_MS:.0f} ms needs "
                f">= {lim['throughput_needed_rps']} req/s; reached {lim['throughput_reached_rps']}; at "
                f"{lim['server_cpu_us_per_request']} + {lim['client_cpu_us_per_request']} us of CPU per "
                f"request that is {lim['cores_needed']} cores (here: {lim['cores_here']})",
                flush=True,
            )
        # Every access audited: the chain holds an access entry per request answered, and verifies.
        svc = build_service(settings)
        try:
            report = svc.audit.verify(fast=True)
            out["audit_entries"] = report.entries_checked
            out["audit_verifies"] = report.ok
            out["requests_answered"] = answered
            with svc.store.engine.connect() as conn:
                out["access_entries"] = conn.execute(
                    text("SELECT COUNT(*) FROM audit_log WHERE action = 'access'")
                ).scalar_one()
        finally:
            svc.audit.close()
            svc.store.engine.dispose()
    out["load_avg_after"] = _loadavg()
    read200 = next((r for r in out["scheduled"] if r["request"] == "read" and r["clients"] == 200), None)
    p99 = read200["p99_ms"] if read200 else None
    out["goal_met"] = bool(read200 and read200["errors"] == 0 and p99 is not None and p99 <= GOAL_P99_MS)
    out["every_answer_audited"] = out["access_entries"] >= answered
    return out


def _mariadb_database(stack: ExitStack) -> str:
    name = "sw_bench_" + secrets.token_hex(4)
    admin = create_engine(f"{MARIADB}/mysql", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()

    stack.callback(drop)
    return f"{MARIADB}/{name}"


def main() -> int:
    try:
        import uvloop  # the client's loop: less of its own CPU in the latencies it measures

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=["sqlite", "mariadb", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=6.0, help="measured seconds per point (+1 s warm-up)")
    ap.add_argument("--rate", type=float, default=0.5, help="requests/s per client (at 50 and 200 clients)")
    ap.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 50, 200])
    ap.add_argument("--kinds", type=lambda s: s.split(","), default=["read", "webhook", "audit"])
    ap.add_argument("--sweep", type=lambda s: [float(x) for x in s.split(",") if x], default=[1.0, 2.0],
                    help="further per-client rates for the read at 200 clients ('' for none)")
    ap.add_argument("--no-saturation", dest="saturation", action="store_false")
    ap.add_argument("--label", default="")
    ap.add_argument("--before", help="result file of this bench on the code before the fix (kept beside)")
    ap.add_argument("--out", default="api")
    args = ap.parse_args()
    result: dict[str, Any] = {
        "label": args.label,
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=ROOT).stdout.strip(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "client": "asyncio streams on uvloop (Conn), one keep-alive connection per client, one process",
        "server": "shipwarden serve --insecure-http: uvicorn, h11 (HeaderGuard), uvloop",
        "timeout_s": TIMEOUT_S,
        "seconds_per_point": args.seconds,
        "goal": f"read at 200 clients: p99 <= {GOAL_P99_MS} ms and no errors, on SQLite and on MariaDB",
        "runs": [],
    }  # fmt: skip
    dbs = ["sqlite", "mariadb"] if args.db == "both" else [args.db]
    for db in dbs:
        with ExitStack() as stack:
            url = _mariadb_database(stack) if db == "mariadb" else None
            result["runs"].append(bench_db(db, url, args))
    result["goal_met"] = all(r["goal_met"] for r in result["runs"])
    if args.before:
        result["before"] = json.loads(Path(args.before).read_text())
    path = write_result(args.out, result)
    print(f"goal met: {result['goal_met']}  → {path}")
    return 0 if result["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
