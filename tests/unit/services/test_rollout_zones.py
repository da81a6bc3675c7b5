"""Zones (E2): the policy's zones, a rollout zone by zone, capacity per zone, a zone that dies.

The reconciler runs on the fakes (``tests/fakes/world.py``: three zones a, b, c, two instances
per zone); the same machinery runs for real on nginx in ``tests/e2e/test_zones.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shipwarden.adapters.routers.base import Pool, RouterError, Routes
from shipwarden.adapters.routers.common import by_version, routes_from_json, routes_to_json, validate_routes
from shipwarden.domain.policy import PolicyError, load_policy_text
from shipwarden.domain.rollout import OperatorRequest, Phase, zone_weights
from shipwarden.ports.routing import Listener
from shipwarden.services.analysis import ActiveAnalysis, AnalysisController, active_analyses
from tests.fakes.router import FakeRouter
from tests.fakes.world import BLUE_GREEN_ZONES, CANARY_ZONES, SERVICE, World

P = Phase

ZONED = """\
apiVersion: shipwarden/v1
team: demo
zones: [a, b, c]
services:
  - name: web
    run: {command: [x, "{zone}"], instances: 2}
    routing: {port: 18080, previewPort: 18081}
    strategy:
      blueGreen: {}
      zones:
        order: [b, a, c]
        pauseBetween: confirm
        minHealthyPerZone: 50%
"""


# -- the policy ------------------------------------------------------------------------------------
def test_a_zone_policy_loads_with_its_order_pause_and_minimum() -> None:
    policy = load_policy_text(ZONED, "z.yaml").policy
    web = policy.service("web")
    assert policy.zone_order(web) == ("b", "a", "c")
    zr = web.strategy.zones
    assert zr is not None and zr.pause_between == "confirm" and zr.min_healthy(2) == 1
    timed = load_policy_text(ZONED.replace("confirm", "30s").replace("order: [b, a, c]", "order: null"), "z")
    zr = timed.policy.service("web").strategy.zones
    assert zr is not None and zr.pause_between == 30.0
    assert timed.policy.zone_order(timed.policy.service("web")) == ("a", "b", "c")


@pytest.mark.parametrize(
    ("old", "new", "field", "line", "says"),
    [
        ("[b, a, c]", "[b, a, d]", "services[0].strategy.zones.order", 11, "zone(s) ['d'] that 'zones'"),
        ("[b, a, c]", "[b, a]", "services[0].strategy.zones.order", 11, "leaves out zone(s) ['c']"),
        ("[b, a, c]", "[b, a, b]", "services[0].strategy.zones.order", 11, "names zone 'b' twice"),
        ("50%", "3", "services[0].strategy.zones.minHealthyPerZone", 13, "is 3, more than run.instances"),
        ("50%", "150%", "services[0].strategy.zones.minHealthyPerZone", 13, "a percentage of them"),
        ("confirm", "later", "services[0].strategy.zones.pauseBetween", 12, "'none', 'confirm' or a"),
        ("zones: [a, b, c]\n", "", "services[0].strategy.zones", 9, "needs the zones the policy declares"),
        ("[a, b, c]\nservices", "[a, b, a]\nservices", "zones", 3, "declares zone 'a' twice"),
        ("[a, b, c]\nservices", "[a, B]\nservices", "zones[1]", 3, "should match pattern"),
        ('"{zone}"', '"{zones}"', "services[0].run.command[1]", 6, "unknown placeholder '{zones}'"),
    ],
)
def test_zone_policy_errors_name_file_line_and_field(
    old: str, new: str, field: str, line: int, says: str
) -> None:
    with pytest.raises(PolicyError) as exc:
        load_policy_text(ZONED.replace(old, new, 1), "z.yaml")
    found = [(i.field, i.line, i.message) for i in exc.value.issues]
    assert any(f == field and ln == line and says in m for f, ln, m in found), found


# -- routing tables --------------------------------------------------------------------------------
def test_zone_weights_split_each_zone_by_its_share_and_sum_to_100() -> None:
    shares = {"a": 100, "b": 20, "c": 0}
    w = zone_weights(shares, ["a", "b", "c"], True)
    assert w == {("a", "new"): 33, ("b", "new"): 7, ("b", "old"): 27, ("c", "old"): 33}
    assert sum(zone_weights(shares, ["a", "c"], True).values()) == 100  # b is out: a and c take it
    assert zone_weights({"a": 0, "b": 0}, ["a", "b"], False) == {}  # nothing serves yet


def test_zone_pools_round_trip_and_merge_per_version_for_a_router_without_zones() -> None:
    routes = Routes(
        production=(Pool("v2", ("127.0.0.1:1",), 33, "a"), Pool("v1", ("127.0.0.1:2",), 34, "b"),
                    Pool("v1", ("127.0.0.1:3",), 33, "c")),
    )  # fmt: skip
    validate_routes("web", routes)
    assert routes_from_json(routes_to_json(routes)) == routes
    assert routes.weights() == {"v2": 33, "v1": 67}
    assert by_version(routes.production) == (Pool("v2", ("127.0.0.1:1",), 33),
                                             Pool("v1", ("127.0.0.1:2", "127.0.0.1:3"), 67))  # fmt: skip
    with pytest.raises(RouterError, match="duplicate version 'v1' in zone 'b'"):
        validate_routes("web", replace(routes, production=(*routes.production[:2], routes.production[1])))
    with pytest.raises(RouterError, match="with and without a zone"):
        validate_routes("web", Routes(production=(Pool("v1", ("127.0.0.1:2",), 50, "a"),
                                                  Pool("v1", ("127.0.0.1:3",), 50))))  # fmt: skip


# -- the reconciler, zone by zone --------------------------------------------------------------------
@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    made: list[World] = []

    def make(strategy: str = BLUE_GREEN_ZONES, **kw: Any) -> World:
        root = tmp_path / f"w{len(made)}"
        root.mkdir()
        w = World(root, strategy=strategy, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def zone_versions(w: World) -> dict[str, dict[str, int]]:
    """Production per zone: {zone: {version: weight}} as the data plane has it."""
    table = w.router.tables.get(SERVICE)
    out: dict[str, dict[str, int]] = {}
    for p in table.production if table else ():
        out.setdefault(p.zone or "-", {})[p.version] = p.weight
    return out


def test_a_blue_green_rollout_goes_zone_by_zone_and_previews_each_zone(
    make_world: Callable[..., World],
) -> None:
    w = make_world()
    w.release("v1")
    assert {i.zone for i in w.platform.all()} == {"a", "b", "c"} and len(w.platform.all()) == 6
    dep = w.deploy("v2")
    previews: list[tuple[int, set[str | None]]] = []

    def preview(service: str, routes: Routes) -> None:
        now = w.store.get(dep.id)
        if now.phase is P.PREVIEW:  # a zone's preview reaches that zone's new instances only
            zones = {i.zone for i in w.platform.all() if i.address in routes.preview[0].addresses}
            previews.append((now.wave, zones))

    w.router.on_apply.append(preview)
    seen: list[tuple[int, str, dict[str, dict[str, int]]]] = []
    while not dep.phase.terminal:
        dep = w.tick(dep.id)
        step = (dep.wave, dep.phase.value, zone_versions(w))
        if not seen or seen[-1] != step:
            seen.append(step)
    assert dep.phase is P.SUCCEEDED, dep.reason
    served = [{z: sorted(v) for z, v in t.items()} for _, _, t in seen]
    on = {"a": ["v1"], "b": ["v1"], "c": ["v1"]}
    assert on in served  # every zone on v1, then one zone after the other on v2
    assert {"a": ["v2"], "b": ["v1"], "c": ["v1"]} in served
    assert {"a": ["v2"], "b": ["v2"], "c": ["v1"]} in served
    assert served[-1] == {"a": ["v2"], "b": ["v2"], "c": ["v2"]}
    assert [s.phase for s in w.store.steps(dep.id)].count("starting") == 3  # one wave per zone
    assert sorted(previews) == [(0, {"a"}), (1, {"b"}), (2, {"c"})], previews
    assert w.unhealthy_routed == []


def test_a_canary_steps_inside_each_zone(make_world: Callable[..., World]) -> None:
    w = make_world(CANARY_ZONES)
    w.release("v1")
    dep = w.deploy("v2")
    tables = set()
    while not dep.phase.terminal:
        dep = w.tick(dep.id)
        if dep.phase is P.CANARY_STEP:
            table = tuple(sorted((z, tuple(sorted(v.items()))) for z, v in zone_versions(w).items()))
            tables.add((dep.wave, dep.step_index, table))
    assert dep.phase is P.SUCCEEDED, dep.reason
    # zone b at 20 %: zone a all v2, zone c all v1, b split 7/27 (each zone a third of the traffic)
    split = (("a", (("v2", 33),)), ("b", (("v1", 27), ("v2", 7))), ("c", (("v1", 33),)))
    assert any(wave == 1 and table == split for wave, _, table in tables), tables


def test_a_confirm_between_zones_waits_then_the_next_zone_starts(make_world: Callable[..., World]) -> None:
    w = make_world(BLUE_GREEN_ZONES.replace("minHealthyPerZone: 1", "pauseBetween: 20s"))
    w.release("v1")
    dep = w.drive_to(w.deploy("v2").id, P.ZONE_WAIT)
    assert "pausing 20s before zone b" in dep.reason
    entered = dep.phase_entered_at
    dep = w.drive_to(dep.id, P.STARTING)
    assert dep.wave == 1 and dep.phase_entered_at - entered >= 20


def test_a_failure_in_a_later_zone_rolls_back_every_zone(make_world: Callable[..., World]) -> None:
    w = make_world()
    w.release("v1")
    dep = w.deploy("v2")
    while not (dep.wave == 2 and dep.phase is P.PREVIEW):
        dep = w.tick(dep.id)
    assert {z: sorted(v) for z, v in zone_versions(w).items()} == {"a": ["v2"], "b": ["v2"], "c": ["v1"]}
    w.platform.behaviours["v2"] = replace(w.platform.behaviour("v2"), status=500)  # zone c's preview fails
    dep = w.drive(dep.id)
    assert dep.phase is P.ROLLED_BACK and "preview verification failed" in dep.reason, dep.reason
    assert {z: sorted(v) for z, v in zone_versions(w).items()} == {"a": ["v1"], "b": ["v1"], "c": ["v1"]}
    assert w.versions_running() == {"v1"} and w.unhealthy_routed == []


def test_a_zone_that_dies_is_taken_out_restored_and_the_rollout_holds_meanwhile(
    make_world: Callable[..., World],
) -> None:
    """Zone c (still on v1) loses every instance while zone a is previewed: the next tick routes
    around it (a and b share its traffic), v1 is started again in zone c, and the rollout does
    not move traffic on while zone c is below minHealthyPerZone — then goes on to the end."""
    w = make_world()
    w.release("v1")
    dep = w.drive_to(w.deploy("v2").id, P.PREVIEW)
    w.platform.behaviours["v1"] = replace(w.platform.behaviour("v1"), healthy_after=5.0)  # healthy 5 s late
    dead = w.platform.kill_zone("c")
    w.tick(dep.id)
    assert "c" not in zone_versions(w), zone_versions(w)  # out of routing at once
    assert sum(zone_versions(w)["a"].values()) + sum(zone_versions(w)["b"].values()) == 100
    replaced = [i for i in w.platform.all() if i.zone == "c" and i.id not in dead]
    assert len(replaced) == 2 and {i.version for i in replaced} == {"v1"}  # restored in zone c
    held = w.store.steps(dep.id)[-1].detail.get("holding")
    assert held is None or "zone" in held
    dep = w.drive(dep.id)
    assert dep.phase is P.SUCCEEDED, dep.reason
    assert w.unhealthy_routed == []
    assert set(zone_versions(w)) == {"a", "b", "c"}


def test_a_zone_below_its_minimum_holds_traffic_until_the_deadline(make_world: Callable[..., World]) -> None:
    w = make_world(BLUE_GREEN_ZONES.replace("minHealthyPerZone: 1", "minHealthyPerZone: 2"))
    w.release("v1")
    dep = w.drive_to(w.deploy("v2").id, P.PREVIEW)
    w.platform.faults.fail("start")  # zone c cannot be restored
    w.platform.kill([i for i in w.platform.all() if i.zone == "c" and i.version == "v1"][0].id)
    dep = w.drive(dep.id)
    assert dep.phase is P.ROLLED_BACK and dep.reason.startswith("progress deadline"), dep.reason
    holds = [s.detail.get("holding") for s in w.store.steps(dep.id) if s.detail.get("holding")]
    assert any("c: 1 old" in h for h in holds), holds


def test_each_zone_wave_has_its_own_analysis_run() -> None:
    text = ZONED.replace("blueGreen: {}", "blueGreen: {prePromotionAnalysis: {judge: sequential}}")
    spec = load_policy_text(text, "z.yaml").policy.service("web")

    class Dep:
        plan = {"zones": ["b", "a", "c"], "zone_waves": True}
        phase, step_index, wave = P.PREVIEW, 0, 1

    runs = active_analyses(spec, Dep())  # type: ignore[arg-type]
    assert [(a.key, a.zone) for a in runs] == [("pre@a", "a")]  # judged on zone a's counts only


def test_a_zone_waves_judge_compares_the_versions_in_that_zone_only() -> None:
    """Zone c's canary fails every request, zone a's none: zone c's judge sees all of its canary's
    requests fail, zone a's none — the other zone dilutes neither (E2)."""
    answers = {"127.0.0.1:1": ("v1", 200), "127.0.0.1:2": ("v2", 200),
               "127.0.0.1:3": ("v1", 200), "127.0.0.1:4": ("v2", 500)}  # fmt: skip
    router = FakeRouter(answers.get)
    router.start()
    router.ensure_listener(Listener("web", 18080, 18081))
    router.apply("web", Routes(production=(
        Pool("v1", ("127.0.0.1:1",), 25, "a"), Pool("v2", ("127.0.0.1:2",), 25, "a"),
        Pool("v1", ("127.0.0.1:3",), 25, "c"), Pool("v2", ("127.0.0.1:4",), 25, "c"),
    )))  # fmt: skip
    recorded: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    class Store:
        def record_analysis(self, dep_id: str, *, key: str, baseline: Any, canary: Any, **_: Any) -> None:
            recorded[key] = (baseline, canary)

    class Run:
        def add_samples(self, *_: Any) -> None:
            pass

    ctl = AnalysisController(Store(), router, {}, lambda: 1.0)  # type: ignore[arg-type]
    dep = SimpleNamespace(id="d1", service="web", from_version="v1", to_version="v2", step_index=0)
    runs = [ActiveAnalysis(f"step-0@{z}", None, True, 1.0, zone=z) for z in "ac"]  # type: ignore[arg-type]
    for _ in range(2):  # a first snapshot, then the interval's deltas
        for run in runs:
            ctl._judge_sample(dep, run, Run(), 1.0)  # type: ignore[arg-type]
        router.probe("web", "production", 40)
    for run in runs:
        ctl._judge_sample(dep, run, Run(), 1.0)  # type: ignore[arg-type]
    (base_a, canary_a), (base_c, canary_c) = recorded["step-0@a"], recorded["step-0@c"]
    assert (base_a["requests"], base_a["errors"], canary_a["requests"], canary_a["errors"]) == (10, 0, 10, 0)
    assert (base_c["requests"], base_c["errors"], canary_c["requests"], canary_c["errors"]) == (10, 0, 10, 10)


def test_an_operator_confirm_or_promote_passes_the_zone_wait(make_world: Callable[..., World]) -> None:
    w = make_world(BLUE_GREEN_ZONES.replace("minHealthyPerZone: 1", "pauseBetween: confirm"))
    dep = w.drive_to(w.deploy("v1").id, P.ZONE_WAIT)
    for _ in range(100):
        dep = w.tick(dep.id)
    assert dep.phase is P.ZONE_WAIT, "a confirm wait has no deadline"
    w.svc.request("web", OperatorRequest.PROMOTE, actor="op")
    dep = w.tick(dep.id)
    assert dep.phase is P.STARTING and dep.wave == 1 and dep.operator_request is None
