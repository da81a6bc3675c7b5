"""``make demo``: real blue-green and canary deployments of the bundled sample service through nginx.

Starts nginx and v1, deploys v2 blue-green while a bounded load runs (and
prints how many requests failed — the goal is 0), rolls back to v1 under the
same load, then releases v2 of a second service as a canary (20 % → live
judge against the stable version → 50 % → all), prints the deployment
records, releases a third service zone by zone across three zones while one
zone is lost (``demo_zones``), runs a disaster-recovery drill on a real MariaDB primary with two
semi-synchronous replicas (backup, restore test, SIGKILL of the primary under
load: RTO and RPO against the objectives), then on call (``demo_oncall``: a release degrades,
the alert pages the person on call by mail, nobody acknowledges, it escalates, the signed link
acknowledges, the suspect is rolled back from the incident, the report is written), and cleans
up so that no process is left behind.  Everything runs
in a temporary state directory on loopback ports.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from shipwarden import demo_dr, demo_oncall, demo_zones
from shipwarden.adapters.net import free_port
from shipwarden.bootstrap import build, load_policy
from shipwarden.entrypoints.cli import views
from shipwarden.loadgen import Load
from shipwarden.services.records import deployment_record
from shipwarden.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _policy_copy(workdir: Path) -> Path:
    """The example policy with free ports (the declared ones may be taken on this machine)."""
    text = (EXAMPLES / "policy.yaml").read_text()
    for port in ("18080", "18081", "18090", "18091"):
        text = text.replace(f": {port}\n", f": {free_port()}\n")
    text = text.replace("scaleDownDelay: 10s", "scaleDownDelay: 3s")
    target = workdir / "policy.yaml"
    target.write_text(text)
    shutil.copytree(EXAMPLES / "sample_service", workdir / "sample_service")
    return target


def main() -> int:
    console = Console(width=None if sys.stdout.isatty() else 160)
    workdir = Path(tempfile.mkdtemp(prefix="shipwarden-demo-"))
    policy_path = _policy_copy(workdir)
    app = build(
        Settings(state_dir=workdir / "state", policy=policy_path, actor="demo", tick_s=0.1),
        load_policy(policy_path),
    )
    spec = app.rollout.spec("hello")
    url = f"http://127.0.0.1:{spec.routing.port}/"
    canary_url = f"http://127.0.0.1:{app.rollout.spec('hello-canary').routing.port}/"
    failed_total = 0
    dr_ok = False
    oncall_ok = False
    started = time.monotonic()

    def run(dep_id: str):  # type: ignore[no-untyped-def]
        return views.live(console, app.store, lambda cb: app.rollout.run(dep_id, on_tick=cb), dep_id)

    def under_load(title: str, target: str, action):  # type: ignore[no-untyped-def]
        nonlocal failed_total
        console.print(Rule(title))
        with Load(target, concurrency=8, max_seconds=120) as load:
            time.sleep(1.0)
            final = run(action().id)
            time.sleep(1.0)
        views.print_outcome(console, final)
        r = load.result
        failed_total += r.failures
        style = "bold green" if r.failures == 0 else "bold red"
        console.print(
            f"load: {r.requests} requests, [{style}]{r.failures} failed[/{style}], "
            f"served by {dict(r.versions)}",
            highlight=False,
        )
        return final

    try:
        console.print(Rule("1. nginx + sample service v1"))
        views.print_outcome(console, run(app.rollout.start("hello", "v1", actor="demo").id))
        console.print(f"production: {url}  preview: http://127.0.0.1:{spec.routing.preview_port}/")
        under_load(
            "2. blue-green v1 → v2 under load", url, lambda: app.rollout.start("hello", "v2", actor="demo")
        )
        final = under_load(
            "3. rollback to v1 under load", url, lambda: app.rollout.rollback("hello", actor="demo")
        )
        console.print(Rule(f"4. deployment record of {final.id}"))
        views.record(console, deployment_record(app.store, final.id))
        console.print(f"(machine-readable: shipwarden show {final.id} --json)")

        console.print(Rule("5. canary: hello-canary v1, then v2 at 20 % → judged live → 50 % → 100 %"))
        views.print_outcome(console, run(app.rollout.start("hello-canary", "v1", actor="demo").id))
        canary = under_load(
            "6. canary v1 → v2 under load",
            canary_url,
            lambda: app.rollout.start("hello-canary", "v2", actor="demo"),
        )
        for step in app.store.steps(canary.id):
            analysis = step.detail.get("analysis_verdict")
            if isinstance(analysis, dict) and "detail" in analysis:
                console.print(
                    f"analysis ({'passed' if analysis.get('ok') else 'failed'}): {analysis['detail']}"
                )
        console.print(f"(every judged sample is stored: shipwarden replay {canary.id})")
        failed_total += demo_zones.run(console, EXAMPLES, workdir)
        dr_ok = demo_dr.run(console, workdir)
        oncall_ok = demo_oncall.run(console, workdir)
    finally:
        console.print(Rule("8. clean-up"))
        for service in ("hello", "hello-canary"):
            app.platform.stop(app.platform.instances(service), 5)
        app.router.stop()
        left = app.platform.instances("hello") + app.platform.instances("hello-canary")
        console.print(f"instances left: {len(left)}, nginx running: {app.router.running()}")
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(
        f"demo finished in {time.monotonic() - started:.0f}s; failed requests in total: {failed_total}"
    )
    return 0 if failed_total == 0 and dr_ok and oncall_ok else 1


if __name__ == "__main__":
    sys.exit(main())
