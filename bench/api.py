"""API latency and throughput under concurrency, with every access audited (issue 9, class 12; E5).

A real ``shipwarden serve`` (uvicorn, plain HTTP on 127.0.0.1, a free port) is started on a fresh
state directory, against SQLite (the default: a file in the state dir) and against MariaDB
(127.0.0.1:3306, a uniquely named database, dropped afterwards).  Clients are ``httpx.AsyncClient``
connections over real sockets, one keep-alive connection per client, all in this process.

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

A second table, ``saturation``, runs 50 and 200 clients closed (back to back, no schedule): the
throughput the server sustains when clients never pause, and the latency that queueing then costs
(Little's law: clients / throughput — 200 clients that never pause see p50 ≈ 200 / throughput, so
no server of this size answers them within 50 ms; the goal is for clients that pause).

Clients are created before the clock starts (an httpx client costs milliseconds of CPU to build,
which would otherwise stall the event loop and be charged to the server).

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
def make_request(kind: str, base: str, token: str) -> tuple[Any, int]:
    """A function building one request of ``kind`` (fresh body/delivery id each time), and its status."""
    auth = {"Authorization": f"Bearer {token}"}
    if kind == "read":
        return (lambda c: c.get(f"{base}/deployments", headers=auth)), 200
    if kind == "audit":
        return (lambda c: c.get(f"{base}/audit", params={"action": "access", "limit": 50}, headers=auth)), 200

    def webhook(c: httpx.AsyncClient) -> Any:
        body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": random.getrandbits(31)}).encode()
        sig = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": secrets.token_hex(16),
            "X-Hub-Signature-256": sig,
            "Content-Type": "application/json",
        }
        return c.post(f"{base}/webhooks/github", content=body, headers=headers)

    return webhook, 202


async def run_load(
    kind: str, base: str, token: str, clients: int, seconds: float, rate: float | None
) -> dict[str, Any]:
    """``clients`` connections for ``seconds`` (after a 1 s warm-up); ``rate`` None = back to back."""
    send, expect = make_request(kind, base, token)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    warm = 1.0
    # Clients are made before the clock starts: building an httpx client (its TLS context) takes
    # milliseconds of CPU, which would otherwise stall the loop and be charged to the server.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    conns = [httpx.AsyncClient(limits=limits, timeout=TIMEOUT_S, verify=False) for _ in range(clients)]
    t_start = time.perf_counter()
    t_measure, t_end = t_start + warm, t_start + warm + seconds

    async def client(c: httpx.AsyncClient) -> None:
        async with c:
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
                    return
                try:
                    r = await send(c)
                    what = None if r.status_code == expect else f"status {r.status_code}"
                except httpx.TimeoutException:
                    what = "timeout"
                except httpx.HTTPError as exc:
                    what = type(exc).__name__
                done = time.perf_counter()
                if what is None and done - start > TIMEOUT_S:
                    what = "timeout"  # answered, but later than a client waits
                if start >= t_measure:
                    if what is None:
                        latencies.append((done - start) * 1000)
                    else:
                        errors[what] = errors.get(what, 0) + 1

    cpu0 = time.process_time()
    await asyncio.gather(*(client(c) for c in conns))
    elapsed = time.perf_counter() - t_measure
    latencies.sort()
    n_err = sum(errors.values())
    return {
        "clients": clients,
        "schedule": f"{rate}/s per client" if rate else "back to back",
        "requests": len(latencies) + n_err,
        "errors": n_err,
        "error_kinds": errors,
        "throughput_rps": round((len(latencies) + n_err) / elapsed, 1),
        "p50_ms": _percentile(latencies, 50),
        "p90_ms": _percentile(latencies, 90),
        "p99_ms": _percentile(latencies, 99),
        "max_ms": round(latencies[-1], 2) if latencies else None,
        "client_cpu_s": round(time.process_time() - cpu0, 2),
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


def bench_db(name: str, db_url: str | None, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"database": name, "load_avg_before": _loadavg()}
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="sw-bench-api-") as tmp:
        state = Path(tmp) / "state"
        settings, token = prepare(state, db_url)
        port = free_port()
        proc = start_server(stack, settings, port)
        base = f"http://127.0.0.1:{port}"
        rows: list[dict[str, Any]] = []
        for kind in args.kinds:
            for clients in args.clients:
                rate = None if clients == 1 else args.rate
                wait_idle(proc.pid)
                cpu0 = _proc_cpu(proc.pid)
                row = asyncio.run(run_load(kind, base, token, clients, args.seconds, rate))
                row = {"request": kind, **row, "server_cpu_s": round(_proc_cpu(proc.pid) - cpu0, 2),
                       "load_1m_after": _loadavg()[0]}  # fmt: skip
                rows.append(row)
                print(
                    f"  {name:8} {kind:8} {clients:4} clients {row['schedule']:>14}: "
                    f"{row['throughput_rps']:7.1f} req/s  p50 {_fmt(row['p50_ms'])} ms  "
                    f"p99 {_fmt(row['p99_ms'])} ms  errors {row['errors']}",
                    flush=True,
                )
        out["scheduled"] = rows
        sat: list[dict[str, Any]] = []
        if args.saturation:
            for clients in (50, 200):
                wait_idle(proc.pid)
                cpu0 = _proc_cpu(proc.pid)
                row = asyncio.run(run_load("read", base, token, clients, args.seconds, None))
                row = {"request": "read", **row, "server_cpu_s": round(_proc_cpu(proc.pid) - cpu0, 2),
                       "load_1m_after": _loadavg()[0]}  # fmt: skip
                sat.append(row)
                print(
                    f"  {name:8} read     {clients:4} clients   back to back: "
                    f"{row['throughput_rps']:7.1f} req/s"
                    f"  p50 {_fmt(row['p50_ms'])} ms  p99 {_fmt(row['p99_ms'])} ms  errors {row['errors']}",
                    flush=True,
                )
        out["saturation"] = sat
        # Every access audited: the chain holds an access entry per request answered, and verifies.
        svc = build_service(settings)
        try:
            report = svc.audit.verify(fast=True)
            out["audit_entries"] = report.entries_checked
            out["audit_verifies"] = report.ok
        finally:
            svc.store.engine.dispose()
    out["load_avg_after"] = _loadavg()
    read200 = next((r for r in out["scheduled"] if r["request"] == "read" and r["clients"] == 200), None)
    p99 = read200["p99_ms"] if read200 else None
    out["goal_met"] = bool(read200 and read200["errors"] == 0 and p99 is not None and p99 <= GOAL_P99_MS)
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=["sqlite", "mariadb", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=6.0, help="measured seconds per point (+1 s warm-up)")
    ap.add_argument("--rate", type=float, default=0.5, help="requests/s per client (at 50 and 200 clients)")
    ap.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 50, 200])
    ap.add_argument("--kinds", type=lambda s: s.split(","), default=["read", "webhook", "audit"])
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
        "client": "httpx.AsyncClient, one keep-alive connection per client, one process",
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
