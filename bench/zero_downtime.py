"""Zero-downtime benchmark (D10): wrk through the nginx router while versions are switched.

Phases, all against the production port of one service (v1 and v2 pools, two
sample-service instances each):

1. steady: wrk with no routing changes, for the baseline throughput;
2. switching: wrk while >= 50 blue-green flips (all traffic v1 <-> v2) and
   >= 50 canary weight changes (10/25/50/75/100 steps) are applied.

The switching phase runs wrk in segments of at most 30 s, sized from the last
measured throughput, until the run totals ``--target-requests`` (default
1,000,000) and the change counts are reached, or ``--max-switching-seconds``
passes; a routing change is applied every 0.25 s while wrk runs.
``failed`` counts non-2xx/3xx answers plus every socket error wrk saw; the
goal is 0.  Writes ``bench/results/zero_downtime.json``; exits 1 if any
request failed or too few changes were made, so ``make bench`` catches a
regression.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Processes,
    SampleService,
    WrkResult,
    finish_wrk,
    machine_info,
    run_wrk,
    start_wrk,
    write_result,
)

from shipwarden.adapters.net import free_port  # noqa: E402
from shipwarden.adapters.routers.base import Listener, Pool, Routes  # noqa: E402
from shipwarden.adapters.routers.nginx import NginxRouter  # noqa: E402

CANARY_STEPS = (10, 25, 50, 75, 100)


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


def router_counters(router: NginxRouter) -> dict[str, int]:
    """shipwarden_router_requests_total summed by version/code, plus retries, from the admin port."""
    counts: Counter[str] = Counter()
    for line in router.metrics_text().splitlines():
        if m := re.match(r'shipwarden_router_requests_total\{.*version="([^"]*)",code="(\d+)"\} (\d+)', line):
            counts[f"{m.group(1)}/{m.group(2)}"] += int(m.group(3))
        elif m := re.match(r"shipwarden_router_upstream_retries_total\{.*\} (\d+)", line):
            counts["retries"] += int(m.group(1))
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target-requests", type=int, default=1_000_000)
    ap.add_argument("--steady-seconds", type=float, default=15)
    ap.add_argument("--segment-seconds", type=float, default=30, help="length of one wrk run while switching")
    ap.add_argument("--max-switching-seconds", type=float, default=180)
    ap.add_argument("--change-interval", type=float, default=0.25, help="seconds between routing changes")
    ap.add_argument("--cycles", type=int, default=12,
                    help="at least this many cycles of 5 blue-green flips + 5 canary steps (10..100)")
    ap.add_argument("--workers", type=int, default=1, help="nginx worker processes")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    started = time.time()
    load_before = os.getloadavg()

    with Processes() as ps:
        pools = {"v1": ps.sample_services("v1", 2), "v2": ps.sample_services("v2", 2)}
        state = tempfile.mkdtemp(prefix="sw-bench-nginx-")
        ps.callback(shutil.rmtree, state, True)
        router = NginxRouter(state, workers=args.workers)
        ps.callback(router.stop)
        router.start()
        listener = Listener("bench", free_port(), free_port())
        router.ensure_listener(listener)
        router.apply("bench", Routes(production=(pool("v1", pools["v1"], 100),)))
        url = router.url("bench")
        wrk_kw = {"connections": args.connections, "threads": args.threads}

        print(f"steady phase: {args.steady_seconds:.0f}s ...", flush=True)
        steady = run_wrk(url, args.steady_seconds, **wrk_kw)

        # Switching phase in wrk segments until both the request target and the change
        # counts are reached (throughput on a shared 2-core machine varies a lot).
        plan = itertools.cycle(change_plan(pools))
        done: Counter[str] = Counter()
        apply_ms: list[float] = []
        segments: list[WrkResult] = []
        phase_start = time.monotonic()
        while True:
            total = steady.requests + sum(r.requests for r in segments)
            spent = time.monotonic() - phase_start
            enough_changes = min(done["switch"], done["weight"]) >= args.cycles * 5
            if (total >= args.target_requests and enough_changes) or spent >= args.max_switching_seconds:
                break
            rps = segments[-1].rps if segments else steady.rps
            need = (args.target_requests - total) / max(rps, 1.0) * 1.05
            seconds = min(args.segment_seconds, max(10.0, need), args.max_switching_seconds - spent + 5)
            print(f"switching segment {len(segments) + 1}: {seconds:.0f}s, a change every "
                  f"{args.change_interval}s ({total:,} requests so far)", flush=True)
            wrk = start_wrk(url, seconds, **wrk_kw)
            t0 = time.monotonic() + 0.5
            for i, (kind, routes) in enumerate(plan):
                time.sleep(max(0.0, t0 + i * args.change_interval - time.monotonic()))
                if wrk.poll() is not None or time.monotonic() > t0 + seconds - 1.5:
                    break
                a = time.perf_counter()
                router.apply("bench", routes)
                apply_ms.append((time.perf_counter() - a) * 1000)
                if wrk.poll() is None:  # count only changes made while load was running
                    done[kind] += 1
            segments.append(finish_wrk(wrk))
        counters = router_counters(router)
        workers = router.worker_pids()

    sw_requests = sum(r.requests for r in segments)
    sw_seconds = sum(r.duration_s for r in segments)
    sw_failed = sum(r.failed for r in segments)
    requests = steady.requests + sw_requests
    failed = steady.failed + sw_failed
    switching_rps = sw_requests / sw_seconds if sw_seconds else 0.0
    apply_sorted = sorted(apply_ms) or [float("nan")]
    apply_stats = {
        "p50": round(statistics.median(apply_sorted), 2),
        "p99": round(apply_sorted[int(len(apply_sorted) * 0.99)], 2),
        "max": round(apply_sorted[-1], 2),
    }
    result = {
        "benchmark": "zero_downtime",
        "requests": requests,
        "failed": failed,
        "switches": done["switch"],
        "weight_changes": done["weight"],
        "steady_rps": round(steady.rps, 1),
        "switching_rps": round(switching_rps, 1),
        "goal_met": failed == 0 and requests >= 1_000_000 and done["switch"] >= 50 and done["weight"] >= 50,
        "steady": steady.as_dict(),
        "switching": {
            "requests": sw_requests, "failed": sw_failed, "duration_s": round(sw_seconds, 2),
            "segments": [r.as_dict() for r in segments],
        },
        "apply_ms": apply_stats,
        "router_counters": counters,
        "setup": {
            "wrk": f"-c{args.connections} -t{args.threads} --latency --timeout 5s",
            "nginx_workers": args.workers,
            "nginx_serving_workers_at_end": len(workers),
            "backends": "2 x v1 + 2 x v2 sample services (asyncio, 1 process each)",
            "routing": "Lua balancer, tables via admin port, no reloads",
        },
        "machine": {**machine_info(), "loadavg_before": [round(x, 2) for x in load_before]},
        "wall_seconds": round(time.time() - started, 1),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }
    path = write_result("zero_downtime", result)
    print(f"requests {requests:,}  failed {failed}  "
          f"switches {done['switch']}  weight changes {done['weight']}")
    print(f"steady {steady.rps:,.0f} rps  switching {switching_rps:,.0f} rps  "
          f"apply p50 {apply_stats['p50']} ms  retries {counters.get('retries', 0)}  -> {path}")
    ok = failed == 0 and done["switch"] >= 50 and done["weight"] >= 50
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
