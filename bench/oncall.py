"""Escalation timing (E8): how late do steps fire after their time-out, also across a restart?

Goal: every step fires within 1 s of its due time, also when the engine's process restarts
during the wait (Grafana OnCall #1206 lost escalations on a worker restart; GoAlert's engine
cycle is 5 s).

* ``--escalations`` (default 40) escalations are opened over ``--spread`` seconds in a real
  SQLite store, each with a policy of two levels whose time-outs are ``--timeout`` seconds,
  repeated once (4 steps each).
* The engine runs as ``shipwarden oncall run`` — a separate process, as in production — paging
  by SMTP to a local mail catcher (aiosmtpd).  ``--kills`` times it is killed with SIGKILL in the
  middle of the waits and a new process started after ``--down`` seconds.
* Lateness of each step = when its transaction ran − its stored due time (``late_ms`` of its
  ``escalation.step`` audit entry).  Steps are split into those due while an engine was running
  (the goal applies) and those due while none was (down or still starting: they fire as soon as
  the next engine is up, and their lateness is the gap).  Also: due time → mail at the catcher.

Run with ``nice -n 19``; figures on a shared machine are direction only (the load average is
recorded).  Writes ``bench/results/oncall.json``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import machine_info, write_result

from shipwarden.adapters.notify.mailcatcher import MailCatcher
from shipwarden.bootstrap import load_policy, make_oncall, open_store
from shipwarden.settings import Settings

POLICY = """\
apiVersion: shipwarden/v1
team: bench
services:
  - name: svc
    run: {{command: [python, app.py]}}
    strategy: {{blueGreen: {{}}}}
    routing: {{port: 18080, previewPort: 18081}}
oncall:
  people:
    alice: {{email: alice@bench.test}}
    bob: {{email: bob@bench.test}}
  schedules:
    primary:
      timeZone: UTC
      layers:
        - {{name: daily, rotation: daily, start: 2026-01-01, handoff: "00:00", members: [alice]}}
  escalation:
    bench:
      repeat: 1
      levels:
        - {{notify: [{{schedule: primary}}], timeout: {timeout}s}}
        - {{notify: [{{person: bob}}], timeout: {timeout}s}}
  defaultEscalation: bench
"""


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": round(_pct(values, 0.5), 1),
        "p99_ms": round(_pct(values, 0.99), 1),
        "max_ms": round(max(values), 1) if values else None,
        "mean_ms": round(statistics.fmean(values), 1) if values else None,
    }


def _engine(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    cli = [sys.executable, "-m", "shipwarden.entrypoints.cli"]
    with log.open("ab") as f:
        return subprocess.Popen(
            [*cli, "oncall", "run"], env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (``/proc/PID/stat``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_running(log: Path, since: int, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if b"escalation engine running" in log.read_bytes()[since:]:
            return time.time()
        time.sleep(0.02)
    raise RuntimeError(f"the engine did not start: {log.read_text()[-2000:]}")


NOTES = [
    "Steps after a time-out are the goal's case; the first step is due when the escalation opens, "
    "in the bench from another process, which the engine sees at its next poll (0.5 s; serve's "
    "pipeline opens in-process and wakes the engine at once).",
    "Since session 18 all steps due at one moment fire in one transaction "
    "(OnCallRepo.apply_many): a burst costs one commit, not one per step.",
    "engine_cpu_s is the engine processes' user+system CPU, start-up (imports, ~5 s each at this "
    "load) included; divide by steps for an upper bound per step.",
    "due_to_mail_at_catcher includes pages written just before a kill and sent by the next "
    "process after its start-up (restart_gaps_s).",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--escalations", type=int, default=40)
    ap.add_argument("--spread", type=float, default=4.0)
    ap.add_argument("--timeout", type=float, default=45.0)
    ap.add_argument("--kills", type=int, default=2)
    ap.add_argument("--down", type=float, default=0.5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="shipwarden-bench-oncall-"))
    policy = work / "policy.yaml"
    policy.write_text(POLICY.format(timeout=f"{args.timeout:g}"))
    log = work / "engine.log"
    log.touch()
    with MailCatcher() as mail:
        env = {
            **os.environ,
            "SHIPWARDEN_STATE_DIR": str(work / "state"),
            "SHIPWARDEN_POLICY": str(policy),
            "SHIPWARDEN_ACTOR": "bench",
            "SHIPWARDEN_SMTP_URL": mail.url,
        }
        settings = Settings(state_dir=work / "state", policy=policy, actor="bench", smtp_url=mail.url)
        store = open_store(settings)
        loaded = load_policy(policy)
        opener = make_oncall(settings, store, lambda: loaded).engine  # opens only; the engine runs apart
        up: list[tuple[float, float | None]] = []  # (running since, stopped at)
        cpu = 0.0  # the engine processes' CPU seconds
        proc = _engine(env, log)
        up.append((_wait_running(log, 0), None))
        t0 = time.time()
        for i in range(args.escalations):
            opener.open(f"bench/{i}", title=f"bench alert {i}", actor="bench")
            time.sleep(max(0.0, t0 + (i + 1) * args.spread / args.escalations - time.time()))
        steps_total = args.escalations * 4
        # each kill a quarter into a wait, so the next round is due after the new process started
        # (imports, store: ~20 s at load 20 on 2 cores) — the restart happens *during the wait*
        kill_times = [t0 + args.spread + (k + 0.25) * args.timeout for k in range(args.kills)]
        for kt in kill_times:
            time.sleep(max(0.0, kt - time.time()))
            cpu += _cpu_s(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            up[-1] = (up[-1][0], time.time())
            time.sleep(args.down)
            size = log.stat().st_size
            proc = _engine(env, log)
            up.append((_wait_running(log, size), None))
        deadline = time.time() + args.spread + 8 * args.timeout + 60
        while time.time() < deadline:
            fired = sum(1 for _ in store.audit_entries(action="escalation.step"))
            if fired >= steps_total and len(mail.mails) >= steps_total:
                break
            time.sleep(0.2)
        time.sleep(1.0)
        cpu += _cpu_s(proc.pid)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
        up[-1] = (up[-1][0], time.time())
        steps = [e.detail for e in store.audit_entries(action="escalation.step")]
        mails = {m.message["X-Shipwarden-Dedupe-Key"]: m.at for m in mail.mails}
    running = [s for s in steps if any(a <= s["due"] and (b is None or s["due"] < b) for a, b in up)]
    gap = [s for s in steps if s not in running]
    delivery = []
    for s in steps:
        for key, at in mails.items():
            if key.startswith(f"{s['escalation']}/{s['step']}/"):
                delivery.append((at - s["due"]) * 1000)
    dupes = len(steps) - len({(s["escalation"], s["step"]) for s in steps})
    result = {
        "goal": "every step fires <= 1 s after its due time, also across a restart",
        "escalations": args.escalations,
        "steps_expected": steps_total,
        "steps_fired": len(steps),
        "duplicate_steps": dupes,
        "kills": args.kills,
        "down_s": args.down,
        "timeout_s": args.timeout,
        "late_due_while_an_engine_ran": _summary([s["late_ms"] for s in running]),
        "late_after_a_time_out_while_running": _summary([s["late_ms"] for s in running if s["step"] > 0]),
        "late_first_step_opened_by_another_process": _summary(
            [s["late_ms"] for s in running if s["step"] == 0]
        ),
        "late_due_while_no_engine_ran": _summary([s["late_ms"] for s in gap]),
        "due_to_mail_at_catcher": _summary(delivery),
        "within_1s_while_running": sum(s["late_ms"] <= 1000 for s in running),
        "within_1s_after_a_time_out_while_running": sum(
            s["late_ms"] <= 1000 for s in running if s["step"] > 0
        ),
        "after_a_time_out_while_running": sum(1 for s in running if s["step"] > 0),
        "engine_cpu_s": round(cpu, 2),
        "engine_cpu_ms_per_step": round(1000 * cpu / max(1, len(steps)), 1),
        "restart_gaps_s": [round(b[0] - a[1], 2) for a, b in zip(up, up[1:], strict=False) if a[1]],
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "machine": machine_info(),
        "notes": NOTES,
    }
    import json

    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    if not args.no_write:
        print(f"wrote {write_result('oncall', result)}")
    ok = len(steps) == steps_total and dupes == 0 and result["within_1s_while_running"] == len(running)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
