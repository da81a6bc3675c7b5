"""Rollback time: a canary at 20 % weight starts failing (20 % errors) at a known instant.

Real nginx, real sample processes, a real Prometheus scraping the router every
1 s, the live judge and a Prometheus threshold check.  The canary process is
healthy at first and starts failing at ``onset`` (``SAMPLE_ERRORS_FROM``).
Reported: onset → rollback decision, onset → production traffic back on the
stable version, and the requests that failed in between (the blast radius).
Writes ``bench/results/rollback_time.json``.  Bounded: ~1 minute, loopback only.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from _common import ROOT, machine_info, write_result
from tests.fixtures.prometheus import start_prometheus

from shipwarden.adapters.net import free_port
from shipwarden.bootstrap import build, load_policy
from shipwarden.loadgen import Load
from shipwarden.settings import Settings

SAMPLE = ROOT / "examples" / "sample_service" / "app.py"
START = f"""import os, sys
os.environ["SAMPLE_VERSION"] = os.path.basename(os.getcwd())
extra = os.path.join(os.getcwd(), "env")
if os.path.exists(extra):
    for line in open(extra):
        k, v = line.strip().split("=", 1)
        os.environ[k] = v
os.execv(sys.executable, [sys.executable, {str(SAMPLE)!r}])
"""
R = 'shipwarden_router_requests_total{service="{service}",route="production",version="{version}"'
ERROR_RATE = f'(sum(rate({R},code=~"5.."}}[{{window}}])) or vector(0)) / sum(rate({R}}}[{{window}}]))'
POLICY = """apiVersion: shipwarden/v1
team: bench
services:
  - name: web
    run:
      command: ["{{python}}", "start.py"]
      workdir: "releases/{{version}}"
      instances: 2
      stopTimeout: 5s
    health: {{path: /healthz, interval: 200ms, healthyThreshold: 2, startTimeout: 15s}}
    routing: {{port: {port}, previewPort: {preview}}}
    strategy:
      canary:
        steps: [{{setWeight: 20}}, {{pause: {{}}}}]
        scaleDownDelay: 1s
        progressDeadline: 10m
        analysis:
          interval: 1s
          judge: {{algorithm: sequential, samples: 600, minRequests: 200}}
          metrics:
            - name: error-rate
              provider: prometheus
              query: '{query}'
              interval: 1s
              failureCondition: {{min: 0.05}}
"""
ONSET_AFTER_S = 12.0


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="sw-bench-rollback-"))
    for v in ("v1", "v2"):
        (root / "releases" / v).mkdir(parents=True)
        (root / "releases" / v / "start.py").write_text(START)
    port, preview, admin = free_port(), free_port(), free_port()
    (root / "policy.yaml").write_text(POLICY.format(port=port, preview=preview, query=ERROR_RATE))
    settings = Settings(
        state_dir=root / "state",
        policy=root / "policy.yaml",
        actor="bench",
        tick_s=0.1,
        router_admin_port=admin,
    )
    build(settings, load_policy(settings.policy)).router.start()
    prom = start_prometheus(root / "prom", [f"127.0.0.1:{admin}"], scrape_interval="1s")
    prom.wait_for_targets_up()  # targets are applied up to 5 s after start
    settings = settings.model_copy(update={"prometheus_url": prom.url})
    app = build(settings, load_policy(settings.policy))
    try:
        dep = app.rollout.start("web", "v1", actor="bench")
        app.rollout.run(dep.id)
        onset = time.time() + ONSET_AFTER_S
        (root / "releases" / "v2" / "env").write_text(f"SAMPLE_ERROR_RATE=0.2\nSAMPLE_ERRORS_FROM={onset}\n")
        with Load(f"http://127.0.0.1:{port}/", concurrency=6, max_seconds=90) as load:
            dep = app.rollout.start("web", "v2", actor="bench")
            t = threading.Thread(target=app.rollout.run, args=(dep.id,), daemon=True)
            t.start()
            t.join(80)
            time.sleep(1.0)
        final = app.store.get(dep.id)
        steps = app.store.steps(dep.id)
        at_20 = next((s.started_at for s in steps if s.phase == "canary_step"), None)
        result = {
            "benchmark": "rollback_time",
            "outcome": final.phase.value,
            "reason": final.reason,
            "canary_weight_percent": 20,
            "injected_error_rate": 0.2,
            "scrape_interval_s": 1.0,
            "judge_interval_s": 1.0,
            "canary_at_20_percent_before_onset_s": round(onset - at_20, 3) if at_20 else None,
            "onset_to_decision_s": round(final.detected_at - onset, 3) if final.detected_at else None,
            "onset_to_traffic_restored_s": round(final.traffic_restored_at - onset, 3)
            if final.traffic_restored_at
            else None,
            "onset_to_canary_stopped_s": round(final.rolled_back_at - onset, 3)
            if final.rolled_back_at
            else None,
            "failed_requests_during_canary": load.result.failures,
            "requests": load.result.requests,
            "served_by": dict(load.result.versions),
            "goal_onset_to_traffic_restored_s": 5.0,
            "machine": machine_info(),
        }
        result["goal_met"] = bool(
            result["onset_to_traffic_restored_s"] is not None
            and result["onset_to_traffic_restored_s"] <= 5.0
            and final.phase.value == "rolled_back"
        )
        path = write_result("rollback_time", result)
        print(f"{final.phase.value}: {final.reason}")
        print(
            f"onset→decision {result['onset_to_decision_s']}s, onset→traffic restored "
            f"{result['onset_to_traffic_restored_s']}s, failed requests {load.result.failures} "
            f"of {load.result.requests} → {path}"
        )
        return 0 if result["goal_met"] else 1
    finally:
        app.platform.stop(app.platform.instances("web"), 5)
        app.router.stop()
        prom.stop()


if __name__ == "__main__":
    raise SystemExit(main())
