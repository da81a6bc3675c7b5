"""``ServingWatch`` against the fakes: between rollouts a dead zone leaves the table, its instances
are replaced in their zone and come back; nothing is done while a rollout runs (E2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipwarden.domain.alerting import Alert
from shipwarden.domain.rollout import Phase
from shipwarden.ports.platform import InstanceState
from shipwarden.services import serving as serving_mod
from shipwarden.services.serving import ServingWatch
from tests.fakes.platform import CRASH
from tests.fakes.world import BLUE_GREEN_ZONES, SERVICE, World


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path, strategy=BLUE_GREEN_ZONES)
    yield w
    w.close()


def _watch(world: World, alerts: list[Alert], **kw: object) -> ServingWatch:
    return ServingWatch(world.store, world.platform, world.router, lambda: list(world.loaded.policy.services),
                        alert_sink=alerts.extend, clock=world.clock, **kw)  # type: ignore[arg-type]  # fmt: skip


def _zones(world: World) -> dict[str | None, int]:
    table = world.router.current(SERVICE)
    assert table is not None
    return {p.zone: p.weight for p in table.production}


def _settle(world: World, watch: ServingWatch, ticks: float = 6) -> None:
    for _ in range(int(ticks)):
        watch.tick()
        world.clock.advance(1.0)


def test_a_dead_zone_leaves_the_table_is_replaced_and_comes_back(world: World) -> None:
    dep = world.drive(world.deploy("v1").id)
    assert dep.phase is Phase.SUCCEEDED
    alerts: list[Alert] = []
    watch = _watch(world, alerts)
    watch.tick()
    assert _zones(world) == {"a": 34, "b": 33, "c": 33}  # a healthy service: nothing to do
    dead = world.platform.kill_zone("c")
    changed = watch.tick()[SERVICE]
    assert changed["zones_out"] == ["c"] and _zones(world) == {"a": 50, "b": 50}
    assert len(changed["starting"]) == 2  # a replacement per dead instance, in zone c
    assert [a.labels["alertname"] for a in alerts] == ["ServiceZoneOut"] and alerts[0].labels["zone"] == "c"
    _settle(world, watch)
    assert _zones(world) == {"a": 34, "b": 33, "c": 33}  # zone c is back, on the replacements
    live = [i for i in world.platform.all() if i.zone == "c"]
    assert {i.state for i in live} == {InstanceState.RUNNING} and not {i.id for i in live} & set(dead)
    assert world.unhealthy_routed == []  # traffic only ever on healthy instances
    actions = [e.action for e in world.store.audit_entries(service=SERVICE)]
    assert actions.count("serving.rerouted") == 2 and actions.count("serving.replaced") == 2


def test_replacements_are_bounded_when_the_version_cannot_stay_up(world: World) -> None:
    world.drive(world.deploy("v1").id)
    alerts: list[Alert] = []
    watch = _watch(world, alerts)
    world.platform.behaviours["v1"] = CRASH  # every v1 process now dies at once, replacements too
    _settle(world, watch, ticks=20)
    assert len(world.platform.started) == 6 + serving_mod.MAX_REPLACEMENTS  # 6 of the rollout
    assert "ServiceNoLiveInstance" in [a.labels["alertname"] for a in alerts]
    assert _zones(world) == {"a": 34, "b": 33, "c": 33}  # nothing better to route to: left as it was


def test_nothing_is_touched_while_a_rollout_runs_and_a_finished_rollout_is_taken_as_intended(
    world: World,
) -> None:
    world.drive(world.deploy("v1").id)
    watch = _watch(world, [], replace=False)
    watch.tick()
    dep = world.deploy("v2")
    world.tick(dep.id)
    world.platform.kill_zone("c")
    assert watch.tick() == {}  # the rollout owns the table
    before = world.router.current(SERVICE)
    watch.tick()
    assert world.router.current(SERVICE) == before


def test_an_instance_failing_its_health_checks_leaves_and_returns_when_healthy(world: World) -> None:
    world.drive(world.deploy("v1").id)
    watch = _watch(world, [], replace=False)
    watch.tick()
    (victim,) = [i for i in world.platform.all() if i.zone == "b"][:1]
    sick = {victim.address}
    real = world.platform.healthy
    world.platform.healthy = lambda spec, inst: inst.address not in sick and real(spec, inst)  # type: ignore[method-assign]
    _settle(world, watch, ticks=2 * 2 * serving_mod.MIN_PROBE_INTERVAL_S)  # two probes, 2 s apart
    table = world.router.current(SERVICE)
    assert table is not None and victim.address not in {a for p in table.production for a in p.addresses}
    assert _zones(world) == {"a": 34, "b": 33, "c": 33}  # zone b keeps its share on its other instance
    sick.clear()
    _settle(world, watch, ticks=int(serving_mod.MIN_PROBE_INTERVAL_S) + 1)
    table = world.router.current(SERVICE)
    assert table is not None and victim.address in {a for p in table.production for a in p.addresses}
