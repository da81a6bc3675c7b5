"""Zones end to end (E2): three zones on the local platform behind real nginx and real HAProxy
(each test runs through both routers), under load.

A zone's instances are processes labelled with it (``SHIPWARDEN_ZONE``); the router has one pool per
(version, zone) — for HAProxy a backend per zone pool, its backups the version's other zones.
Kept small (one instance per zone): a zone lost in the middle of a
rollout is routed around at once and restored, and the rollout goes on (then, with no rollout
running, another zone is lost: served by the others at once, taken out of the table by the
controller's serving watch, replaced and routed again); a later zone whose
new version fails rolls every zone back (both count failed requests of a load running
throughout); a version bad in one zone only rolls back in that zone's wave, judged on that zone's
traffic alone.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipwarden.domain.rollout import Phase
from shipwarden.ports.platform import InstanceState
from shipwarden.services.controller import Controller
from shipwarden.services.serving import for_rollout
from tests.fixtures.deploy_env import GOOD, DeployEnv, make_env, teardown_env

pytestmark = pytest.mark.integration

ZONES = ("a", "b", "c")
STRATEGY = """\
blueGreen:
  preview: {path: /, requests: 10}
  scaleDownDelay: 1s
  verifyRequests: 30
  progressDeadline: 60s
zones:
  order: [a, b, c]
  minHealthyPerZone: 1
"""
#: v2 everywhere but zone c, where it exits at start-up
ZONE_C_CRASH = GOOD.replace(
    "import os, sys\n",
    "import os, sys\nif os.environ.get('SHIPWARDEN_ZONE') == 'c': sys.exit('boom: zone c')\n",
)
CONCURRENCY = 4  # at most this many requests are in flight when a zone dies


@pytest.fixture(params=["nginx", "haproxy"])
def zones_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DeployEnv]:
    env = make_env(
        tmp_path, strategy=STRATEGY, router=request.param, zones=ZONES, instances=1,
        releases={"v2c": ZONE_C_CRASH},
    )  # fmt: skip
    env.app().router.start()
    yield env
    teardown_env(env)


def _zones_of(env: DeployEnv) -> dict[str, set[str]]:
    app = env.app()
    table = app.router.current("web")
    out: dict[str, set[str]] = {}
    for p in table.production if table else ():
        if p.weight > 0:
            out.setdefault(p.zone or "-", set()).add(p.version)
    return out


def test_a_zone_lost_mid_rollout_is_routed_around_restored_and_the_rollout_finishes(  # type: ignore[no-untyped-def]
    zones_env, load
) -> None:
    app = zones_env.app()
    first = app.rollout.run(app.rollout.start("web", "v1", actor="tester").id)
    assert first.phase is Phase.SUCCEEDED, first.reason
    assert {(i.zone, i.version) for i in app.platform.instances("web")} == {(z, "v1") for z in ZONES}
    with load(zones_env.url, concurrency=CONCURRENCY, max_seconds=120) as traffic:
        dep = app.rollout.start("web", "v2", actor="tester")
        driver = threading.Thread(target=app.rollout.run, args=(dep.id,), daemon=True)
        driver.start()
        deadline = time.monotonic() + 60
        while (cur := app.store.get(dep.id)).wave < 1:
            assert time.monotonic() < deadline and not cur.phase.terminal, cur
            time.sleep(0.02)
        (victim,) = [i for i in app.platform.instances("web") if i.zone == "c"]
        assert victim.pid is not None and victim.version == "v1"
        os.kill(victim.pid, signal.SIGKILL)  # zone c is lost while zone b is rolled out
        assert _zones_of(zones_env)["a"] == {"v2"}
        driver.join(90)
    dep = app.store.get(dep.id)
    assert dep.phase is Phase.SUCCEEDED, dep.reason
    assert traffic.result.failures <= CONCURRENCY, traffic.result.errors  # only what was in flight
    assert traffic.result.requests > 100 and set(traffic.result.versions) == {"v1", "v2"}
    entries = app.store.audit_entries(deployment_id=dep.id)
    replaced = [e for e in entries if e.action == "rollout.stable_replaced"]
    assert replaced and replaced[0].detail["dead"] == [victim.address], replaced
    assert {(i.zone, i.version) for i in app.platform.instances("web")} == {(z, "v2") for z in ZONES}
    assert _zones_of(zones_env) == {"a": {"v2"}, "b": {"v2"}, "c": {"v2"}}
    print(f"\nzone lost mid-rollout: {traffic.result.requests} requests, {traffic.result.failures} failed")
    # no rollout running: a zone lost now is served by the others at once (the router retries
    # another pool and skips the dead instance), the controller's serving watch takes it out of
    # the table, starts a replacement in the zone and routes it once healthy
    ctl = Controller(app.rollout, app.store, interval_s=0.2, serving=for_rollout(app.rollout))
    ctl.start()
    try:
        with load(zones_env.url, concurrency=CONCURRENCY, max_seconds=60) as steady:
            time.sleep(0.5)
            (b,) = [i for i in app.platform.instances("web") if i.zone == "b"]
            assert b.pid is not None
            os.kill(b.pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while "b" in _zones_of(zones_env):
                assert time.monotonic() < deadline, "zone b was not taken out of routing"
                time.sleep(0.05)
            while "b" not in _zones_of(zones_env):
                assert time.monotonic() < deadline, "zone b did not come back"
                time.sleep(0.05)
            time.sleep(1.0)
    finally:
        ctl.stop()
    assert steady.result.failures <= CONCURRENCY and steady.result.requests > 50, steady.result.errors
    (b2,) = [i for i in app.platform.instances("web") if i.zone == "b"]
    assert b2.address != b.address and b2.state is InstanceState.RUNNING and b2.version == "v2"
    rerouted = [e.detail for e in app.store.audit_entries(service="web", action="serving.rerouted")]
    assert rerouted[0]["zones_out"] == ["b"] and rerouted[0]["out"] == [b.address], rerouted
    assert rerouted[-1]["in"] == [b2.address] and not rerouted[-1]["zones_out"], rerouted
    replaced = [e.detail for e in app.store.audit_entries(service="web", action="serving.replaced")]
    assert replaced == [{"dead": b.address, "started": b2.address, "version": "v2", "zone": "b"}]
    print(f"zone lost, no rollout: {steady.result.requests} requests, {steady.result.failures} failed")


def test_a_failure_in_the_last_zone_rolls_back_every_zone(zones_env, load) -> None:  # type: ignore[no-untyped-def]
    app = zones_env.app()
    assert app.rollout.run(app.rollout.start("web", "v1", actor="tester").id).phase is Phase.SUCCEEDED
    with load(zones_env.url, concurrency=CONCURRENCY, max_seconds=120) as traffic:
        dep = app.rollout.run(app.rollout.start("web", "v2c", actor="tester").id)
    assert dep.phase is Phase.ROLLED_BACK and "exited during start-up" in dep.reason, dep.reason
    waves = [(s.phase, s.detail.get("wave", 0)) for s in app.store.steps(dep.id)]
    assert ("promoting", 1) in waves and ("starting", 2) in waves, waves  # a and b had switched
    assert traffic.result.failures == 0, traffic.result.errors
    assert {"v1", "v2c"} <= set(traffic.result.versions)  # zones a and b served the new version
    assert {(i.zone, i.version) for i in app.platform.instances("web")} == {(z, "v1") for z in ZONES}
    assert _zones_of(zones_env) == {"a": {"v1"}, "b": {"v1"}, "c": {"v1"}}


#: every version fails 5 % of the load's requests (``/?load``; the rollout's probes of ``/`` see no
#: error); ``e2c`` fails 15 % of them in zone c, 5 % elsewhere
BASE_ERRORS = GOOD.replace(
    "import os, sys\n",
    "import os, sys\nos.environ.update(SAMPLE_ERROR_RATE='0.05', SAMPLE_ERROR_QUERY='load')\n",
)
ZONE_C_ERRORS = BASE_ERRORS.replace(
    "SAMPLE_ERROR_RATE='0.05'",
    "SAMPLE_ERROR_RATE='0.15' if os.environ.get('SHIPWARDEN_ZONE') == 'c' else '0.05'",
)
CANARY_ZONES = """\
canary:
  steps:
    - setWeight: 50
    - analysis: {}
  scaleDownDelay: 1s
  verifyRequests: 20
  progressDeadline: 150s
  analysis:
    interval: 1s
    judge:
      algorithm: sequential
      samples: 30
      minRequests: 100
      warmup: 2s
      metrics:
        errorRate: {tolerance: 0.5, regression: 2.5}
        latency: {enabled: false}
zones:
  order: [a, b, c]
  minHealthyPerZone: 1
"""


@pytest.fixture(params=["nginx", "haproxy"])
def canary_zones_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DeployEnv]:
    """Through each router: both give each zone pool its share and count it per zone."""
    releases = {"e1": BASE_ERRORS, "e2c": ZONE_C_ERRORS}
    env = make_env(
        tmp_path, strategy=CANARY_ZONES, router=request.param, zones=ZONES, instances=1, releases=releases
    )
    env.app().router.start()
    yield env
    teardown_env(env)


def test_each_zones_canary_is_judged_on_its_own_traffic(canary_zones_env, load) -> None:  # type: ignore[no-untyped-def]
    """A version that is bad in zone c only (3x the errors there) rolls back in zone c's wave.

    Judged on every zone's traffic at once, zone c's canary (half of c's third of the traffic)
    would be diluted by zones a and b, which serve the same version well by then: its error rate
    would look 1.4x the baseline's, inside the tolerance (1.5x), and the rollout would finish.
    The router labels each answer with the zone of the instance that gave it, and each wave's
    judge compares the two versions in that wave's zone only: 3x, a rollback."""
    app = canary_zones_env.app()
    first = app.rollout.run(app.rollout.start("web", "e1", actor="tester").id)
    assert first.phase is Phase.SUCCEEDED, first.reason
    with load(canary_zones_env.url + "?load", concurrency=CONCURRENCY, max_seconds=200):
        dep = app.rollout.run(app.rollout.start("web", "e2c", actor="tester").id)
    steps = app.store.steps(dep.id)
    story = "\n".join(f"{s.phase} wave {s.detail.get('wave', 0)}: {s.reason}" for s in steps)
    assert dep.phase is Phase.ROLLED_BACK, f"{dep.phase}: {dep.reason}\n{story}"
    assert re.search(r"\[(step-1|background)@c\] .*error", dep.reason), dep.reason  # zone c's judge
    waves = [(s.phase, s.detail.get("wave", 0)) for s in steps]
    assert ("promoting", 0) in waves and ("promoting", 1) in waves, story  # a and b passed their judge
    judged = {r["key"] for r in app.store.analysis_records(dep.id) if r["kind"] == "judge"}
    assert {"step-1@a", "step-1@b", "step-1@c"} <= judged and all("@" in k for k in judged), judged
    assert {(i.zone, i.version) for i in app.platform.instances("web")} == {(z, "e1") for z in ZONES}
    assert _zones_of(canary_zones_env) == {"a": {"e1"}, "b": {"e1"}, "c": {"e1"}}
