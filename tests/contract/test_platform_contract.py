"""The platform port's contract, run against every driver: FakePlatform and LocalPlatform.

What the reconciler relies on (``adapters/platforms/base.py``): a start gives ``count`` instances
of that version on distinct addresses, listed at once and healthy once up; a start that cannot be
done raises PlatformError and leaves nothing listed; an instance whose process dies is listed
DEAD (and unhealthy) until stopped; ``stop`` forgets what it is given, dead or alive, and may be
repeated; a service's listing holds only its own instances.  The fakes the reconciler's unit
tests use must pass exactly what the real driver passes — a later driver joins the parameters.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shipwarden.adapters.platforms.base import Instance, InstanceState, Platform, PlatformError
from shipwarden.adapters.platforms.local import LocalPlatform
from shipwarden.domain.policy import ServiceSpec, load_policy_text
from tests.fakes.clock import FakeClock
from tests.fakes.platform import FakePlatform

SAMPLE = Path(__file__).parents[2] / "examples" / "sample_service" / "app.py"


def _spec(name: str, workdir: str | None = None) -> ServiceSpec:
    run: dict[str, object] = {"command": ["{python}", str(SAMPLE)], "instances": 2, "stopTimeout": "2s",
                              "env": {"SAMPLE_VERSION": "{version}"}}  # fmt: skip
    if workdir:
        run["workdir"] = workdir
    policy = {
        "apiVersion": "shipwarden/v1",
        "team": "t",
        "services": [
            {"name": name, "run": run, "health": {"path": "/healthz", "timeout": "1s"},
             "routing": {"port": 1, "previewPort": 2}, "strategy": {"blueGreen": {}}}
        ],
    }  # fmt: skip
    return load_policy_text(json.dumps(policy)).policy.service(name)


@dataclass
class Driver:
    platform: Platform
    spec: ServiceSpec
    other: ServiceSpec  # another service on the same platform
    break_start: Callable[[], ServiceSpec]  # a spec whose start cannot be done
    kill: Callable[[Instance], None]  # the instance's process dies
    wait: Callable[[Callable[[], bool]], None]  # until the condition holds (or fail)


@pytest.fixture(params=["fake", "local"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    spec, other = _spec("svc"), _spec("other")
    if request.param == "fake":
        clock = FakeClock()
        fake = FakePlatform(clock)

        def fake_wait(cond: Callable[[], bool]) -> None:
            for _ in range(100):
                if cond():
                    return
                clock.advance(0.5)
            raise AssertionError("condition not reached")

        def fake_break() -> ServiceSpec:
            fake.faults.fail("start", error=lambda m: PlatformError(f"cannot start: {m}"))
            return spec

        yield Driver(fake, spec, other, fake_break, lambda i: fake.kill(i.id), fake_wait)
        return

    local = LocalPlatform(tmp_path / "state", base_dir=tmp_path)

    def wait(cond: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 20
        while not cond():
            assert time.monotonic() < deadline, "condition not reached in 20 s"
            time.sleep(0.05)

    def kill(inst: Instance) -> None:
        assert inst.pid is not None
        os.kill(inst.pid, signal.SIGKILL)

    yield Driver(local, spec, other, lambda: _spec("svc", workdir="releases/{version}"), kill, wait)
    for name in ("svc", "other"):
        local.stop(local.instances(name), 0)


def _by_id(platform: Platform, service: str) -> dict[str, Instance]:
    return {i.id: i for i in platform.instances(service)}


def test_start_gives_count_instances_that_become_healthy_and_stop_forgets_them(driver: Driver) -> None:
    p = driver.platform
    started = p.start(driver.spec, "v1", 2)
    assert len(started) == 2 and len({i.address for i in started}) == 2
    assert all(i.service == "svc" and i.version == "v1" and i.started_at is not None for i in started)
    assert set(_by_id(p, "svc")) == {i.id for i in started}  # listed at once
    driver.wait(lambda: all(p.healthy(driver.spec, i) for i in started))
    assert {i.state for i in p.instances("svc")} == {InstanceState.RUNNING}
    p.stop(started, 2)
    assert p.instances("svc") == []
    assert not any(p.healthy(driver.spec, i) for i in started)
    p.stop(started, 2)  # again: nothing to do, no error


def test_a_start_that_cannot_be_done_raises_and_leaves_nothing(driver: Driver) -> None:
    broken = driver.break_start()
    with pytest.raises(PlatformError, match="cannot start"):
        driver.platform.start(broken, "v1", 2)
    assert driver.platform.instances("svc") == []


def test_a_dead_instance_is_listed_dead_until_stopped(driver: Driver) -> None:
    p = driver.platform
    victim, survivor = p.start(driver.spec, "v1", 2)
    driver.wait(lambda: p.healthy(driver.spec, victim))
    driver.kill(victim)
    driver.wait(lambda: _by_id(p, "svc")[victim.id].state is InstanceState.DEAD)
    assert not p.healthy(driver.spec, _by_id(p, "svc")[victim.id])
    assert _by_id(p, "svc")[survivor.id].state is InstanceState.RUNNING
    p.stop([_by_id(p, "svc")[victim.id]], 2)  # stopping a dead one forgets it
    assert set(_by_id(p, "svc")) == {survivor.id}
    p.stop([survivor], 2)


def test_a_service_lists_only_its_own_instances(driver: Driver) -> None:
    p = driver.platform
    mine, theirs = p.start(driver.spec, "v1", 1), p.start(driver.other, "v7", 1)
    assert [i.id for i in p.instances("svc")] == [mine[0].id]
    assert [(i.id, i.version) for i in p.instances("other")] == [(theirs[0].id, "v7")]
    p.stop(mine + theirs, 2)
    assert p.instances("svc") == p.instances("other") == []
