"""``domain.serving``: the table between rollouts without the instances that are down (E2)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shipwarden.domain.serving import Pool, Routes, largest_remainder, reroute, same_table, substitute

ZONED = Routes(
    production=(
        Pool("v1", ("a1", "a2"), 34, "a"),
        Pool("v1", ("b1", "b2"), 33, "b"),
        Pool("v1", ("c1", "c2"), 33, "c"),
    )
)


def test_a_zone_whose_instances_all_died_leaves_and_its_share_goes_to_the_others() -> None:
    out = reroute(ZONED, {"c1", "c2"})
    assert out is not None
    assert [(p.zone, p.addresses, p.weight) for p in out.production] == [
        ("a", ("a1", "a2"), 50), ("b", ("b1", "b2"), 50),
    ]  # fmt: skip


def test_a_pool_that_lost_some_instances_keeps_its_share() -> None:
    out = reroute(ZONED, {"b1"})
    assert out is not None
    assert [(p.zone, p.addresses, p.weight) for p in out.production] == [
        ("a", ("a1", "a2"), 34), ("b", ("b2",), 33), ("c", ("c1", "c2"), 33),
    ]  # fmt: skip


def test_a_version_with_nothing_left_gives_its_share_to_the_other_version() -> None:
    table = Routes(production=(Pool("v2", ("n1",), 20), Pool("v1", ("o1", "o2"), 80)))
    out = reroute(table, {"n1"})
    assert out is not None and [(p.version, p.weight) for p in out.production] == [("v1", 100)]


def test_nothing_left_is_no_table() -> None:
    assert reroute(ZONED, {"a1", "a2", "b1", "b2", "c1", "c2"}) is None
    assert reroute(ZONED, set()) is ZONED


def test_a_replacement_takes_the_dead_ones_place_in_its_zone() -> None:
    out = substitute(ZONED, "c1", "c9")
    assert out.production[2] == Pool("v1", ("c9", "c2"), 33, "c")
    assert out.production[:2] == ZONED.production[:2]
    assert same_table(reroute(out, {"c1"}), out)  # the dead address is no longer in it


def test_same_table_ignores_order() -> None:
    shuffled = Routes(production=(ZONED.production[2], ZONED.production[0], ZONED.production[1]))
    assert same_table(ZONED, shuffled)
    assert not same_table(ZONED, reroute(ZONED, {"a1"}))
    assert same_table(None, None) and not same_table(ZONED, None)


def test_largest_remainder() -> None:
    assert largest_remainder({"a": 1, "b": 1, "c": 1}, 100) == {"a": 34, "b": 33, "c": 33}
    assert largest_remainder({"a": 0.0}, 100) == {"a": 0}
    assert largest_remainder({}, 100) == {}


_pools = st.lists(
    st.tuples(
        st.sampled_from(["v1", "v2"]),
        st.lists(st.sampled_from([f"i{k}" for k in range(8)]), min_size=1, max_size=3, unique=True),
        st.integers(0, 100),
        st.sampled_from([None, "a", "b", "c"]),
    ),
    min_size=1, max_size=6,
)  # fmt: skip


@given(_pools, st.sets(st.sampled_from([f"i{k}" for k in range(8)])))
def test_reroute_keeps_the_total_share_and_routes_no_down_instance(pools, down) -> None:  # type: ignore[no-untyped-def]
    table = Routes(production=tuple(Pool(v, tuple(a), w, z) for v, a, w, z in pools))
    out = reroute(table, down)
    alive = {a for p in table.production for a in p.addresses} - down
    if not alive:
        assert out is None
        return
    assert out is not None
    assert not {a for p in out.production for a in p.addresses} & down
    assert {a for p in out.production for a in p.addresses} == alive
    if down:
        assert sum(p.weight for p in out.production) == sum(p.weight for p in table.production)
