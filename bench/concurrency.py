"""Many rollouts at once (issue 15): N services, one instance each, released together.

(a) ``serve``: one real ``shipwarden serve`` process (its controller) drives every deployment
    the bench records in the store (what ``POST /services/{s}/deployments`` does);
(b) ``cli``: one ``shipwarden deploy`` process per service, all started at once.

Each mode runs on a new state dir: first deployments of every service at once (v1; instances
start from nothing), then one rollout alone of each kind (v1 → v2: a blue-green service and a
canary judged live on its load), then the batch: every other service v1 → v2 at once while a
sample of services is under load.  Services alternate blue-green and plain canary; the loaded
sample runs a canary whose analysis step is the live judge.

Reported per mode: wall time of the batch, from the first request to the last rollout done,
against one rollout alone (the slower kind); the instances' own start-up apart (the STARTING
step: spawn → healthy); the controller's CPU seconds and memory (``/proc`` of the serve process,
sampled); SQL writes per rollout (every INSERT/UPDATE/DELETE the shipwarden processes sent, by
``_count_writes.py``); failed requests (the load) and failed deployments; the machine's load.

``--db mariadb`` keeps the store in a new database on 127.0.0.1:3306 (dropped after).
Writes ``bench/results/concurrency[-<db>].json``.  Bounded: ``--timeout`` per batch.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, machine_info, write_result

from shipwarden.adapters.net import free_port, wait_for_port
from shipwarden.bootstrap import Services, build_service, load_policy
from shipwarden.loadgen import Load
from shipwarden.settings import Settings

SAMPLE = ROOT / "examples" / "sample_service" / "app.py"
COUNTER = ROOT / "bench" / "_count_writes.py"
START = f"""import os, sys
os.environ["SAMPLE_VERSION"] = os.path.basename(os.getcwd())
os.environ["SAMPLE_DRAIN_TIMEOUT"] = "1"
os.execv(sys.executable, [sys.executable, {str(SAMPLE)!r}])
"""
RUN = """\
    run:
      command: ["{{python}}", "start.py"]
      workdir: "releases/{{version}}"
      instances: 1
      stopTimeout: 5s
    health: {{path: /healthz, interval: 200ms, timeout: 2s, healthyThreshold: 1, startTimeout: 120s}}
    routing: {{port: {port}, previewPort: {preview}}}
"""
BLUE_GREEN = """\
    strategy:
      blueGreen:
        preview: {path: /, requests: 5}
        scaleDownDelay: 1s
        verifyRequests: 10
        progressDeadline: 20m
"""
CANARY = """\
    strategy:
      canary:
        steps: [{setWeight: 20}, {pause: {duration: 1s}}, {setWeight: 50}]
        scaleDownDelay: 1s
        verifyRequests: 20
        progressDeadline: 20m
"""
CANARY_JUDGED = """\
    strategy:
      canary:
        steps: [{setWeight: 20}, {analysis: {}}, {setWeight: 50}]
        scaleDownDelay: 1s
        verifyRequests: 20
        progressDeadline: 20m
        analysis:
          interval: 1s
          judge:
            algorithm: sequential
            samples: 30
            minRequests: 100
            warmup: 2s
            metrics: {errorRate: {negligible: 0.01}, latency: {tolerance: 3.0, regression: 20.0}}
"""
MARIADB = "mysql+pymysql://root@127.0.0.1:3306"


def _ports(n: int) -> list[int]:
    """``n`` distinct free ports (``free_port`` may hand out a port again once it is closed)."""
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def _policy(names: list[str], loaded: set[str]) -> str:
    out = ["apiVersion: shipwarden/v1", "team: bench", "services:"]
    ports = iter(_ports(2 * len(names)))
    for i, name in enumerate(names):
        strategy = CANARY_JUDGED if name in loaded else (BLUE_GREEN if i % 2 == 0 else CANARY)
        out.append(f"  - name: {name}\n" + RUN.format(port=next(ports), preview=next(ports)) + strategy)
    return "\n".join(out) + "\n"


class Proc:
    """CPU seconds and memory of a process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rss_max_mb = 0.0
        self.threads_max = 0

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def status(self) -> dict[str, str]:
        lines = Path(f"/proc/{self.pid}/status").read_text().splitlines()
        return {k: v.strip() for k, v in (ln.split(":", 1) for ln in lines if ":" in ln)}

    def sample(self) -> None:
        st = self.status()
        self.rss_max_mb = max(self.rss_max_mb, int(st["VmRSS"].split()[0]) / 1024)
        self.threads_max = max(self.threads_max, int(st["Threads"]))

    def hwm_mb(self) -> float:
        return int(self.status()["VmHWM"].split()[0]) / 1024


def _counts(path: Path) -> list[dict[str, int]]:
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def _loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


class Bench:
    def __init__(self, root: Path, n: int, n_loaded: int, db_url: str | None) -> None:
        self.root = root
        for v in ("v1", "v2"):
            (root / "releases" / v).mkdir(parents=True)
            (root / "releases" / v / "start.py").write_text(START)
        self.names = [f"s{i:03}" for i in range(n)]
        # the sample under load: the judged canaries (one of them also rolled out alone)
        self.loaded = set(self.names[1 : 1 + n_loaded])
        (root / "policy.yaml").write_text(_policy(self.names, self.loaded))
        self.settings = Settings(
            state_dir=root / "state", policy=root / "policy.yaml", actor="bench", database_url=db_url
        )
        self.counts = root / "counts.jsonl"
        self.env = {
            **os.environ,
            "SHIPWARDEN_STATE_DIR": str(self.settings.state_dir),
            "SHIPWARDEN_POLICY": str(self.settings.policy),
            "SHIPWARDEN_ACTOR": "bench",
            "BENCH_COUNTS": str(self.counts),
            **({"SHIPWARDEN_DATABASE_URL": db_url} if db_url else {}),
        }
        self.svc: Services | None = None

    def services(self) -> Services:
        if self.svc is None:
            self.svc = build_service(self.settings, load_policy(self.settings.policy))
        return self.svc

    # -- results of a batch, from the store --------------------------------------------------
    def outcome(self, ids: dict[str, str]) -> dict[str, Any]:
        store = self.services().store
        deps = {n: store.get(i) for n, i in ids.items()}
        bad = {n: d for n, d in deps.items() if d.phase.value != "succeeded"}
        failed = {n: f"{d.phase.value}: {d.reason}"[:300] for n, d in bad.items()}
        ends = [d.finished_at for d in deps.values() if d.finished_at]
        starting = [
            s.finished_at - s.started_at
            for i in ids.values()
            for s in store.steps(i)
            if s.phase == "starting" and s.finished_at
        ]
        phases: dict[str, list[float]] = {}
        for i in ids.values():
            for s in store.steps(i):
                if s.finished_at:
                    phases.setdefault(s.phase, []).append(s.finished_at - s.started_at)
        return {
            "deployments": len(ids),
            "failed_deployments": len(failed),
            "failed": dict(list(failed.items())[:10]),
            "last_done_at": max(ends) if ends else None,
            "instance_startup_s": _spread(starting),
            "phase_s": {p: _spread(xs) for p, xs in phases.items()},
        }

    def wait(self, ids: dict[str, str], timeout: float) -> bool:
        store = self.services().store
        deadline = time.monotonic() + timeout
        pending = set(ids.values())
        while pending and time.monotonic() < deadline:
            pending = {i for i in pending if not store.get(i).phase.terminal}
            time.sleep(0.25)
        return not pending

    def record(self, names: list[str], version: str) -> dict[str, str]:
        rollout = self.services().rollout
        assert rollout is not None
        return {n: rollout.start(n, version, actor="bench").id for n in names}

    def ids_of(self, names: list[str]) -> dict[str, str]:
        store = self.services().store
        return {n: store.history(n, 1)[0].id for n in names}

    def loads(self, stack: ExitStack, seconds: float) -> list[Load]:
        rollout = self.services().rollout
        assert rollout is not None
        return [
            stack.enter_context(
                Load(f"http://127.0.0.1:{rollout.spec(n).routing.port}/", concurrency=2, max_seconds=seconds)
            )
            for n in sorted(self.loaded)
        ]

    def close(self) -> None:
        svc = self.services()
        rollout = svc.rollout
        assert rollout is not None
        for spec in rollout.loaded.policy.services:
            rollout.platform.stop(rollout.platform.instances(spec.name), 2)
        from shipwarden.adapters.routers.nginx import NginxRouter

        NginxRouter(self.settings.state_dir / "nginx").stop()
        svc.store.engine.dispose()


def _spread(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    xs = sorted(xs)
    return {
        "median": round(statistics.median(xs), 2),
        "p90": round(xs[int(0.9 * (len(xs) - 1))], 2),
        "max": round(xs[-1], 2),
    }


def _load_result(loads: list[Load]) -> dict[str, Any]:
    return {
        "services": len(loads),
        "requests": sum(x.result.requests for x in loads),
        "failed": sum(x.result.failures for x in loads),
        "errors": dict(sum((x.result.errors for x in loads), start=__import__("collections").Counter())),
    }


# -- (a) one serve controller ------------------------------------------------------------------
def run_serve(b: Bench, timeout: float) -> dict[str, Any]:
    port = free_port()
    log = open(b.root / "serve.log", "wb")  # noqa: SIM115 - closed below
    serve = subprocess.Popen(
        [sys.executable, str(COUNTER), "serve", "--insecure-http", "--port", str(port)],
        env=b.env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        if not wait_for_port("127.0.0.1", port, 60):
            raise RuntimeError(f"serve did not start; see {b.root / 'serve.log'}")
        proc = Proc(serve.pid)
        out: dict[str, Any] = {"mode": "serve", "controller_rss_idle_mb": round(proc.hwm_mb(), 1)}
        t0 = time.time()
        first = b.record(b.names, "v1")
        ok = b.wait(first, timeout)
        out["first_deployments"] = {**b.outcome(first), "wall_s": round(time.time() - t0, 1), "in_time": ok}
        out["alone"] = {}
        for name in (b.names[0], sorted(b.loaded)[0]):
            with ExitStack() as stack:
                loads = b.loads(stack, timeout) if name in b.loaded else []
                t0 = time.time()
                ids = b.record([name], "v2")
                b.wait(ids, timeout)
                res = b.outcome(ids)
            kind = "canary_judged" if name in b.loaded else "blue_green"
            done = res["last_done_at"]
            out["alone"][kind] = {**res, "wall_s": round(done - t0, 1) if done else None}
            if loads:
                out["alone"][kind]["load"] = _load_result(loads)
        batch = [n for n in b.names if n not in (b.names[0], sorted(b.loaded)[0])]
        serve.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        before_counts = _counts(b.counts)[-1]
        cpu0, load0 = proc.cpu_s(), _loadavg()
        with ExitStack() as stack:
            loads = b.loads(stack, timeout)
            time.sleep(1.0)  # the load runs on v1 first
            t0 = time.time()
            ids = b.record(batch, "v2")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                proc.sample()
                store = b.services().store
                if all(store.get(i).phase.terminal for i in ids.values()):
                    break
                time.sleep(0.5)
        cpu1, load1 = proc.cpu_s(), _loadavg()
        serve.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        after_counts = _counts(b.counts)[-1]
        res = b.outcome(ids)
        wall = res["last_done_at"] - t0 if res["last_done_at"] else None
        out["batch"] = {
            **res,
            "wall_s": round(wall, 1) if wall else None,
            "load": _load_result(loads),
            "controller": {
                "cpu_s": round(cpu1 - cpu0, 1),
                "cpu_share_of_one_core": round((cpu1 - cpu0) / wall, 2) if wall else None,
                "rss_max_mb": round(proc.rss_max_mb, 1),
                "rss_peak_lifetime_mb": round(proc.hwm_mb(), 1),
                "threads_max": proc.threads_max,
            },
            "sql_writes_per_rollout": round((after_counts["writes"] - before_counts["writes"]) / len(ids), 1),
            "sql_statements_per_rollout": round(
                (after_counts["statements"] - before_counts["statements"]) / len(ids), 1
            ),
            "loadavg_before": load0,
            "loadavg_after": load1,
        }
        return out
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()
        log.close()


# -- (b) one CLI process per service -----------------------------------------------------------
def _deploy_all(
    b: Bench, names: list[str], version: str, timeout: float
) -> tuple[dict[str, str], float, int]:
    """``shipwarden deploy`` for each of ``names`` at once; (name → id, wall seconds, failed processes)."""
    start = len(_counts(b.counts))
    t0 = time.time()
    procs = {
        n: subprocess.Popen(
            [sys.executable, str(COUNTER), "deploy", n, "--version", version],
            env=b.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        for n in names
    }
    bad = 0
    for n, p in procs.items():
        try:
            _, err = p.communicate(timeout=max(1.0, t0 + timeout - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            err = b"timeout"
        if p.returncode != 0:
            bad += 1
            why = err.decode(errors="replace")[-400:]
            sys.stderr.write(f"deploy {n} {version}: exit {p.returncode}: {why}\n")
    wall = time.time() - t0
    b.last_writes = sum(c["writes"] for c in _counts(b.counts)[start:])  # type: ignore[attr-defined]
    return b.ids_of(names), wall, bad


def run_cli(b: Bench, timeout: float) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": "cli"}
    ids, wall, bad = _deploy_all(b, b.names, "v1", timeout)
    out["first_deployments"] = {**b.outcome(ids), "wall_s": round(wall, 1), "failed_processes": bad}
    out["alone"] = {}
    for name in (b.names[0], sorted(b.loaded)[0]):
        with ExitStack() as stack:
            loads = b.loads(stack, timeout) if name in b.loaded else []
            ids, wall, bad = _deploy_all(b, [name], "v2", timeout)
        kind = "canary_judged" if name in b.loaded else "blue_green"
        out["alone"][kind] = {**b.outcome(ids), "wall_s": round(wall, 1), "failed_processes": bad}
        if loads:
            out["alone"][kind]["load"] = _load_result(loads)
    batch = [n for n in b.names if n not in (b.names[0], sorted(b.loaded)[0])]
    load0 = _loadavg()
    with ExitStack() as stack:
        loads = b.loads(stack, timeout)
        time.sleep(1.0)
        ids, wall, bad = _deploy_all(b, batch, "v2", timeout)
    out["batch"] = {
        **b.outcome(ids),
        "wall_s": round(wall, 1),
        "failed_processes": bad,
        "load": _load_result(loads),
        "sql_writes_per_rollout": round(b.last_writes / len(batch), 1),  # type: ignore[attr-defined]
        "loadavg_before": load0,
        "loadavg_after": _loadavg(),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--loaded", type=int, default=4, help="services under load (judged canaries)")
    ap.add_argument("--modes", default="serve,cli")
    ap.add_argument("--db", choices=["sqlite", "mariadb"], default="sqlite")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per batch")
    ap.add_argument(
        "--malloc-arena-max", type=int, default=0,
        help="MALLOC_ARENA_MAX for serve (0: glibc's default, 8 per core); most of serve's growth "
        "under a hundred rollouts is the worker threads' malloc arenas",
    )  # fmt: skip
    args = ap.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "concurrency",
        "services": args.services,
        "instances_per_service": 1,
        "loaded_services": args.loaded,
        "db": args.db,
        "malloc_arena_max": args.malloc_arena_max or None,
        "machine": {**machine_info(), "loadavg_at_start": _loadavg()},
        "modes": {},
    }
    for mode in args.modes.split(","):
        root = Path(tempfile.mkdtemp(prefix=f"sw-bench-conc-{mode}-"))
        db_url, admin = None, None
        if args.db == "mariadb":
            from sqlalchemy import create_engine, text

            name = "sw_bench_" + secrets.token_hex(4)
            admin = create_engine(f"{MARIADB}/mysql", isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(text(f"CREATE DATABASE {name}"))
            db_url = f"{MARIADB}/{name}"
        b = Bench(root, args.services, args.loaded, db_url)
        if args.malloc_arena_max:
            b.env["MALLOC_ARENA_MAX"] = str(args.malloc_arena_max)
        try:
            out = run_serve(b, args.timeout) if mode == "serve" else run_cli(b, args.timeout)
            result["modes"][mode] = out
            print(json.dumps(out, indent=1), flush=True)
        finally:
            b.close()
            if admin is not None:
                with admin.connect() as c:
                    c.execute(text(f"DROP DATABASE IF EXISTS {name}"))
                admin.dispose()
            shutil.rmtree(root, ignore_errors=True)
    for out in result["modes"].values():
        alone = max((a["wall_s"] or 0) for a in out["alone"].values())
        batch = out["batch"]["wall_s"]
        out["batch_vs_alone"] = round(batch / alone, 2) if alone and batch else None
    suffix = ("" if args.db == "sqlite" else f"-{args.db}") + (
        f"-arena{args.malloc_arena_max}" if args.malloc_arena_max else ""
    )
    earlier = RESULTS / f"concurrency{suffix}.json"
    if earlier.exists():  # a run of one mode keeps the other mode's last figures
        kept = json.loads(earlier.read_text()).get("modes", {})
        result["modes"] = {**{m: v for m, v in kept.items() if m not in result["modes"]}, **result["modes"]}
    print(write_result(f"concurrency{suffix}", result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
