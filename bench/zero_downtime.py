"""Zero-downtime benchmark (D10): wrk through each router driver while versions are switched.

For each router (``--router nginx|haproxy|all``), all against the production port of one
service (v1 and v2 pools, two sample-service instances each):

1. steady: wrk with no routing changes, all traffic on v1, for the baseline throughput;
2. switching: wrk while >= 60 blue-green flips (all traffic v1 <-> v2) and >= 60 canary
   weight changes (10/25/50/75/100 steps) are applied, a change every 0.25 s;
3. same tables: before each switching segment, a segment over the same cycle of tables with a
   change every 3 s (12x fewer changes).  Steady and switching differ in two ways: the changes,
   and the tables themselves (a split over four single-process backends serves less than two
   of them on two cores).  Switching vs same tables is the cost of the changes alone;
4. each table held (diagnostic): wrk on each table of the plan for a few seconds.

Switching runs in wrk segments of at most 30 s, sized from the last measured throughput, until
the switching segments total ``--target-requests`` (default 1,000,000) and the change counts are
reached, or ``--max-switching-seconds`` passes.  ``failed`` counts non-2xx/3xx answers plus every
socket error wrk saw, in every phase; the goal is 0.  Every phase also records the CPU time each
party used per request (router, backends, wrk, this process: the controller calling ``apply``),
read from /proc, which says where the throughput goes.

Writes ``bench/results/zero_downtime.json`` with one entry per router (a run of one router
keeps the other's entry); exits 1 if any request failed or too few changes were made, so
``make bench`` catches a regression.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    RESULTS,
    Processes,
    SampleService,
    WrkResult,
    finish_wrk,
    machine_info,
    start_wrk,
    write_result,
)

from shipwarden.adapters.net import free_port  # noqa: E402
from shipwarden.adapters.routers.base import Listener, Pool, Routes  # noqa: E402
from shipwarden.adapters.routers.haproxy import HaproxyRouter  # noqa: E402
from shipwarden.adapters.routers.nginx import NginxRouter  # noqa: E402

ROUTERS = ("nginx", "haproxy")
CANARY_STEPS = (10, 25, 50, 75, 100)
_TICK = os.sysconf("SC_CLK_TCK")


def pool(version: str, services: list[SampleService], weight: int) -> Pool:
    return Pool(version, tuple(s.address for s in services), weight)


def change_plan(pools: dict[str, list[SampleService]]) -> list[tuple[str, Routes]]:
    """One cycle: 5 blue-green flips (ending on v2), then a canary v2 -> v1 in 5 steps (ending on v1)."""
    plan: list[tuple[str, Routes]] = []
    for i in range(5):
        new, old = ("v2", "v1") if i % 2 == 0 else ("v1", "v2")
        plan.append(("switch", Routes(production=(pool(new, pools[new], 100), pool(old, pools[old], 0)))))
    for w in CANARY_STEPS:
        canary = (pool("v2", pools["v2"], 100 - w), pool("v1", pools["v1"], w))
        plan.append(("weight", Routes(production=canary)))
    return plan


_REQUESTS_LINE = re.compile(
    r'shipwarden_router_requests_total\{.*version="([^"]*)",(?:zone="[^"]*",)?code="(\d+)"\} (\d+)'
)


def router_counters(router: Any) -> dict[str, int]:
    """shipwarden_router_requests_total summed by version/code (over zones), plus retries, from the
    admin port."""
    counts: Counter[str] = Counter()
    for line in router.metrics_text().splitlines():
        if m := _REQUESTS_LINE.match(line):
            counts[f"{m.group(1)}/{m.group(2)}"] += int(m.group(3))
        elif m := re.match(r"shipwarden_router_upstream_retries_total\{.*\} (\d+)", line):
            counts["retries"] += int(m.group(1))
    return dict(counts)


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


class CpuMeter:
    """CPU seconds used by groups of processes between ``start`` and ``stop`` (sampled while
    they live: a process that exits takes its time with it)."""

    def __init__(self, groups: dict[str, Callable[[], Sequence[int]]]) -> None:
        self.groups = groups
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.members: dict[str, set[int]] = {g: set() for g in groups}

    def sample(self) -> None:
        for group, pids in self.groups.items():
            for pid in pids():
                self.members[group].add(pid)
                used = _cpu_seconds(pid)
                self.first.setdefault(pid, used)
                if used:
                    self.last[pid] = used

    def used(self) -> dict[str, float]:
        return {g: sum(self.last.get(p, 0.0) - self.first.get(p, 0.0) for p in pids)
                for g, pids in self.members.items()}


Changes = Callable[[Callable[[], bool], float], None]


def _run_segment(url: str, seconds: float, wrk_kw: dict[str, Any], meter_groups: dict[str, Any],
                 changes: Changes | None = None) -> tuple[WrkResult, dict[str, float]]:
    """One wrk run; ``changes(running, t_end)`` applies routing changes while it runs.  Returns wrk's
    result and the CPU seconds each group used meanwhile."""
    wrk = start_wrk(url, seconds, **wrk_kw)
    meter = CpuMeter({**meter_groups, "wrk": lambda: [wrk.pid]})
    meter.sample()
    t_end = time.monotonic() + seconds
    if changes is not None:
        changes(lambda: wrk.poll() is None, t_end)
    while wrk.poll() is None:
        meter.sample()
        time.sleep(0.1 if changes is None else 0.02)
    result = finish_wrk(wrk)
    return result, meter.used()


def _per_request(cpu: dict[str, float], requests: int) -> dict[str, float]:
    """CPU microseconds per request by group."""
    return {g: round(s / max(requests, 1) * 1e6, 2) for g, s in cpu.items()}


def bench_router(name: str, args: argparse.Namespace) -> dict[str, Any]:
    started = time.time()
    load_before = os.getloadavg()
    with Processes() as ps:
        pools = {"v1": ps.sample_services("v1", 2), "v2": ps.sample_services("v2", 2)}
        state = tempfile.mkdtemp(prefix=f"sw-bench-{name}-")
        ps.callback(shutil.rmtree, state, True)
        router: Any = (NginxRouter(state, workers=args.workers) if name == "nginx"
                       else HaproxyRouter(state, threads=args.workers))
        ps.callback(router.stop)
        router.start()
        listener = Listener("bench", free_port(), free_port())
        router.ensure_listener(listener)
        router.apply("bench", Routes(production=(pool("v1", pools["v1"], 100),)))
        url = router.url("bench")
        wrk_kw = {"connections": args.connections, "threads": args.threads}
        backend_pids = [s.proc.pid for p in pools.values() for s in p if s.proc is not None]
        groups: dict[str, Callable[[], Sequence[int]]] = {
            "router": lambda: [p for p in [router.pid(), *router.worker_pids()] if p],
            "backends": lambda: backend_pids,
            "controller": lambda: [os.getpid()],
        }

        print(f"[{name}] steady phase: {args.steady_seconds:.0f}s ...", flush=True)
        steady, steady_cpu = _run_segment(url, args.steady_seconds, wrk_kw, groups)

        # Switching in wrk segments until both the request target and the change counts are
        # reached; each switching segment follows a segment over the same tables changed 12x less
        # often, so both see the same machine (throughput on a shared 2-core machine drifts).
        plan = change_plan(pools)
        done: Counter[str] = Counter()
        apply_ms: list[float] = []
        fast: list[WrkResult] = []
        slow: list[WrkResult] = []
        fast_cpu: Counter[str] = Counter()
        slow_cpu: Counter[str] = Counter()

        def changes(interval: float, count: bool) -> Changes:
            def run(running: Callable[[], bool], t_end: float) -> None:
                t0 = time.monotonic() + 0.5
                for i, (kind, routes) in enumerate(itertools.cycle(plan)):
                    time.sleep(max(0.0, t0 + i * interval - time.monotonic()))
                    if not running() or time.monotonic() > t_end - 1.5:
                        return
                    a = time.perf_counter()
                    router.apply("bench", routes)
                    if count:
                        apply_ms.append((time.perf_counter() - a) * 1000)
                        if running():  # count only changes made while load was running
                            done[kind] += 1
            return run

        slow_seconds = len(plan) * args.slow_interval + 2
        phase_start = time.monotonic()
        while True:
            total = sum(r.requests for r in fast)
            spent = time.monotonic() - phase_start
            enough_changes = min(done["switch"], done["weight"]) >= args.cycles * 5
            if (total >= args.target_requests and enough_changes) or spent >= args.max_switching_seconds:
                break
            print(f"[{name}] same tables, a change every {args.slow_interval}s: {slow_seconds:.0f}s",
                  flush=True)
            seg, cpu = _run_segment(url, slow_seconds, wrk_kw, groups, changes(args.slow_interval, False))
            slow.append(seg)
            slow_cpu.update(cpu)
            rps = fast[-1].rps if fast else seg.rps
            need = (args.target_requests - total) / max(rps, 1.0) * 1.05
            seconds = min(args.segment_seconds, max(10.0, need), args.max_switching_seconds - spent + 5)
            print(f"[{name}] switching segment {len(fast) + 1}: {seconds:.0f}s, a change every "
                  f"{args.change_interval}s ({total:,} requests so far)", flush=True)
            seg, cpu = _run_segment(url, seconds, wrk_kw, groups, changes(args.change_interval, True))
            fast.append(seg)
            fast_cpu.update(cpu)

        # Diagnostic: each table of the plan held still, to show what the table itself costs.
        held: list[dict[str, Any]] = []
        if args.table_seconds > 0:
            print(f"[{name}] each table held: {len(plan)} x {args.table_seconds:.0f}s ...", flush=True)
            for kind, routes in plan:
                router.apply("bench", routes)
                res, cpu = _run_segment(url, args.table_seconds, wrk_kw, groups)
                held.append({"table": {p.version: p.weight for p in routes.production}, "kind": kind,
                             "rps": round(res.rps, 1), "failed": res.failed,
                             "cpu_us_per_request": _per_request(cpu, res.requests)})
        counters = router_counters(router)

    def summed(results: list[WrkResult]) -> tuple[int, float, int, float]:
        n, secs = sum(r.requests for r in results), sum(r.duration_s for r in results)
        return n, secs, sum(r.failed for r in results), n / secs if secs else 0.0

    sw_requests, sw_seconds, sw_failed, switching_rps = summed(fast)
    slow_requests, _, slow_failed, slow_rps = summed(slow)
    requests = steady.requests + sw_requests + slow_requests
    failed = steady.failed + sw_failed + slow_failed + sum(h["failed"] for h in held)
    apply_sorted = sorted(apply_ms) or [float("nan")]
    result = {
        "requests": requests,
        "failed": failed,
        "switches": done["switch"],
        "weight_changes": done["weight"],
        "steady_rps": round(steady.rps, 1),
        "same_tables_rps": round(slow_rps, 1),
        "switching_rps": round(switching_rps, 1),
        "switching_vs_steady": round(switching_rps / steady.rps, 3) if steady.rps else None,
        "switching_vs_same_tables": round(switching_rps / slow_rps, 3) if slow_rps else None,
        "goal_met": failed == 0 and sw_requests >= 1_000_000 and min(done["switch"], done["weight"]) >= 50,
        "cpu_us_per_request": {
            "steady": _per_request(steady_cpu, steady.requests),
            "same_tables": _per_request(dict(slow_cpu), slow_requests),
            "switching": _per_request(dict(fast_cpu), sw_requests),
        },
        "apply_ms": {
            "p50": round(statistics.median(apply_sorted), 2),
            "p99": round(apply_sorted[int(len(apply_sorted) * 0.99)], 2),
            "max": round(apply_sorted[-1], 2),
        },
        "steady": steady.as_dict(),
        "switching": {
            "requests": sw_requests, "failed": sw_failed, "duration_s": round(sw_seconds, 2),
            "segments": [r.as_dict() for r in fast],
        },
        "same_tables": {"change_interval_s": args.slow_interval, "segments": [r.as_dict() for r in slow]},
        "each_table_held": held,
        "router_counters": counters,
        "setup": {
            "wrk": f"-c{args.connections} -t{args.threads} --latency --timeout 5s",
            "router_workers": args.workers,
            "backends": "2 x v1 + 2 x v2 sample services (asyncio, 1 process each)",
            "routing": ("Lua balancer, tables via admin port, no reloads" if name == "nginx"
                        else "range map + version slots + dynamic servers via the Runtime API, no reloads"),
        },
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "wall_seconds": round(time.time() - started, 1),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }
    print(f"[{name}] requests {requests:,}  failed {failed}  "
          f"switches {done['switch']}  weight changes {done['weight']}")
    print(f"[{name}] steady {steady.rps:,.0f} rps  switching {switching_rps:,.0f} rps "
          f"({result['switching_vs_steady']})  same tables {slow_rps:,.0f} rps "
          f"({result['switching_vs_same_tables']})  "
          f"apply p50 {result['apply_ms']['p50']} ms", flush=True)
    return result


def _version(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return ((proc.stdout + proc.stderr).strip().splitlines() or ["unknown"])[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--router", choices=(*ROUTERS, "all"), default="all")
    ap.add_argument("--target-requests", type=int, default=1_000_000,
                    help="requests of the switching phase (per router)")
    ap.add_argument("--steady-seconds", type=float, default=15)
    ap.add_argument("--segment-seconds", type=float, default=30, help="length of one wrk run while switching")
    ap.add_argument("--max-switching-seconds", type=float, default=180)
    ap.add_argument("--slow-interval", type=float, default=3,
                    help="seconds between changes in the same-tables segments (12x fewer changes)")
    ap.add_argument("--table-seconds", type=float, default=2,
                    help="diagnostic phase: seconds each table of the plan is held (0: skip)")
    ap.add_argument("--change-interval", type=float, default=0.25, help="seconds between routing changes")
    ap.add_argument("--cycles", type=int, default=12,
                    help="at least this many cycles of 5 blue-green flips + 5 canary steps (10..100)")
    ap.add_argument("--workers", type=int, default=1, help="nginx worker processes / HAProxy threads")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "zero_downtime.json")
    args = ap.parse_args(argv)

    names = ROUTERS if args.router == "all" else (args.router,)
    previous: dict[str, Any] = {}
    if args.out.exists():
        try:
            previous = json.loads(args.out.read_text()).get("routers", {})
        except (ValueError, AttributeError):
            previous = {}
    results = {n: bench_router(n, args) for n in names}
    data = {
        "benchmark": "zero_downtime",
        "goal": "0 failed requests in >= 1,000,000 per router while switching; switching >= 95% of steady",
        "routers": {**previous, **results},
        "machine": {**machine_info(), "haproxy": _version(["/usr/sbin/haproxy", "-v"])},
    }
    if args.out == RESULTS / "zero_downtime.json":
        path = write_result("zero_downtime", data)
    else:
        args.out.write_text(json.dumps(data, indent=2) + "\n")
        path = args.out
    print(f"-> {path}")
    ok = all(r["failed"] == 0 and r["switches"] >= 50 and r["weight_changes"] >= 50 for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
