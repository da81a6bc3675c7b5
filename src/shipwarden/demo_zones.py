"""``make demo``, zones (E2): the sample service in three zones, released zone by zone under load.

v1 runs one instance in each of zones a, b and c; v2 goes zone a → b → c (start, preview, switch
that zone), printing each zone's version and traffic share as the router serves it.  While zone b
is rolled out, zone c's instance is killed: the router takes the zone out at once (the other
zones serve its traffic), v1 is started again in zone c, and the rollout goes on once the zone is
back.  The load counts failed requests (the goal: 0).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule
from rich.text import Text

from shipwarden.adapters.net import free_port
from shipwarden.bootstrap import build, load_policy
from shipwarden.loadgen import Load
from shipwarden.settings import Settings

SERVICE = "hello-zones"


def _policy(examples: Path, workdir: Path) -> Path:
    text = (examples / "zones.yaml").read_text()
    for port in ("18095", "18096"):
        text = text.replace(f": {port}\n", f": {free_port()}\n")
    target = workdir / "zones.yaml"
    target.write_text(text)
    return target


def _zones_line(table: object) -> str:
    pools = getattr(table, "production", ()) or ()
    by_zone: dict[str, list[str]] = {}
    for p in pools:
        if p.weight > 0:
            by_zone.setdefault(p.zone or "-", []).append(f"{p.version} {p.weight}%")
    return " | ".join(f"{z}: {', '.join(v)}" for z, v in sorted(by_zone.items())) or "(no production table)"


def run(console: Console, examples: Path, workdir: Path) -> int:
    """The zones section; returns the number of failed requests."""
    policy = _policy(examples, workdir)
    app = build(
        Settings(state_dir=workdir / "state-zones", policy=policy, actor="demo", tick_s=0.1),
        load_policy(policy),
    )
    spec = app.rollout.spec(SERVICE)
    url = f"http://127.0.0.1:{spec.routing.port}/"
    console.print(Rule("zones: hello-zones v1 in zones a, b, c; then v2 zone by zone under load"))
    try:
        first = app.rollout.run(app.rollout.start(SERVICE, "v1", actor="demo").id)
        console.print(Text(f"v1: {first.phase.value}; {_zones_line(app.router.current(SERVICE))}"))
        seen: list[str] = []
        killed: list[str] = []

        def progress(tick: object) -> None:
            d = tick.deployment  # type: ignore[attr-defined]
            zone = spec_zones[min(d.wave, len(spec_zones) - 1)]
            line = f"  zone {zone}  {d.phase.value:<16} {_zones_line(app.router.current(SERVICE))}"
            if not seen or seen[-1] != line:
                seen.append(line)
                console.print(Text(line))
            if d.wave == 1 and not killed:  # zone c is lost while zone b is rolled out
                for i in app.platform.instances(SERVICE):
                    if i.zone == "c" and i.pid is not None:
                        os.kill(i.pid, signal.SIGKILL)
                        killed.append(i.address)
                console.print(
                    Text(f"  zone c lost: killed {', '.join(killed)} (SIGKILL)"), style="bold yellow"
                )

        spec_zones = app.rollout.loaded.policy.zone_order(spec)
        with Load(url, concurrency=6, max_seconds=120) as load:
            time.sleep(0.5)
            dep = app.rollout.start(SERVICE, "v2", actor="demo")
            final = app.rollout.run(dep.id, on_tick=progress)
            time.sleep(0.5)
        restored = [
            e for e in app.store.audit_entries(deployment_id=dep.id) if e.action == "rollout.stable_replaced"
        ]
        for e in restored:
            console.print(
                Text(f"  restored in zone c: {e.detail.get('started')} (replacing {e.detail.get('dead')})")
            )
        console.print(Text(f"v2: {final.phase.value}: {final.reason}"))
        r = load.result
        style = "bold green" if r.failures == 0 else "bold red"
        console.print(
            Text.assemble(f"load: {r.requests} requests, ", (f"{r.failures} failed", style),
                          f", served by {dict(r.versions)}")
        )  # fmt: skip
        return r.failures + (0 if final.phase.value == "succeeded" else 1)
    finally:
        app.platform.stop(app.platform.instances(SERVICE), 5)
        app.router.stop()
