"""GTID positions and the failover decision (holistic detection, candidate choice)."""

from __future__ import annotations

import pytest

from shipwarden.domain.dr.failover import Health, assess, choose_candidate
from shipwarden.domain.dr.gtid import GtidError, GtidPosition
from shipwarden.domain.dr.topology import Endpoint, ReplicaStatus, Topology

P = Endpoint("10.0.0.1", 3306)
R1 = Endpoint("10.0.0.2", 3306)
R2 = Endpoint("10.0.0.3", 3306)


def rs(ep: Endpoint, io: str = "Yes", received: str = "0-1-10", applied: str | None = None,
       sql_error: str = "", source: Endpoint | None = P) -> ReplicaStatus:  # fmt: skip
    io_error = "" if io == "Yes" else "error reconnecting to master"
    return ReplicaStatus(ep, source, io, True, io_error, sql_error, 0,
                         GtidPosition.parse(received), GtidPosition.parse(applied or received))  # fmt: skip


class TestGtid:
    def test_parse_and_print(self) -> None:
        pos = GtidPosition.parse("1-7-12,0-1-1042")
        assert str(pos) == "0-1-1042,1-7-12"
        assert pos.seq(0) == 1042 and pos.seq(5) == 0
        assert not GtidPosition.parse("") and not GtidPosition.parse(None)

    @pytest.mark.parametrize("bad", ["0-1", "a-b-c", "0-1-2,0-2-3", "0-1-2;1-1-1"])
    def test_rejects(self, bad: str) -> None:
        with pytest.raises(GtidError):
            GtidPosition.parse(bad)

    def test_contains_and_behind(self) -> None:
        a, b = GtidPosition.parse("0-1-10,1-2-5"), GtidPosition.parse("0-2-12")
        assert not a.contains(b) and a.behind(b) == 2
        assert a.merge(b).contains(a) and a.merge(b).contains(b)
        assert GtidPosition.parse("0-3-12").contains(b)  # the server id says who wrote it, not how far


class TestAssess:
    def test_healthy(self) -> None:
        assert assess(P, True, 0, 2, {R1: rs(R1)}).health is Health.HEALTHY

    def test_too_few_failed_checks_is_only_suspect(self) -> None:
        a = assess(P, False, 1, 2, {R1: rs(R1, "Connecting"), R2: rs(R2, "Connecting")})
        assert a.health is Health.SUSPECT and a.candidate is None

    def test_a_replica_still_streaming_vetoes(self) -> None:
        a = assess(P, False, 5, 2, {R1: rs(R1, "Connecting"), R2: rs(R2, "Yes")})
        assert a.health is Health.SUSPECT and a.still_connected == (R2,)
        assert "still replicate" in a.reason

    def test_dead_when_all_reachable_replicas_lost_it(self) -> None:
        a = assess(
            P,
            False,
            2,
            2,
            {
                R1: rs(R1, "Connecting", "0-1-9"),
                R2: rs(R2, "No", "0-1-10"),
            },
        )
        assert a.health is Health.DEAD and a.candidate == R2

    def test_unreachable_replica_does_not_vote(self) -> None:
        a = assess(P, False, 3, 2, {R1: None, R2: rs(R2, "Connecting")})
        assert a.health is Health.DEAD and a.candidate == R2

    def test_nobody_reachable(self) -> None:
        assert assess(P, False, 3, 2, {R1: None, R2: None}).health is Health.UNREACHABLE


class TestCandidate:
    def test_most_received_wins_even_if_not_yet_applied(self) -> None:
        c = choose_candidate({R1: rs(R1, received="0-1-20", applied="0-1-5"), R2: rs(R2, received="0-1-19")})
        assert c == R1

    def test_tie_goes_to_policy_order(self) -> None:
        assert choose_candidate({R1: rs(R1), R2: rs(R2)}, [R2, R1]) == R2

    def test_broken_sql_thread_only_if_nobody_else(self) -> None:
        broken = rs(R1, received="0-1-30", sql_error="Duplicate entry")
        assert choose_candidate({R1: broken, R2: rs(R2, received="0-1-10")}) == R2
        assert choose_candidate({R1: broken}) == R1


class TestTopology:
    def test_failover_fences_the_old_primary_until_rebuilt(self) -> None:
        t = Topology("hello", P, (R1, R2))
        after = t.after_failover(R2)
        assert after.primary == R2 and after.replicas == (R1,) and after.fenced == (P,) and after.epoch == 1
        rebuilt = after.after_rebuild(P)
        assert rebuilt.replicas == (R1, P) and rebuilt.fenced == () and rebuilt.epoch == 2
        with pytest.raises(ValueError):
            t.after_failover(P)

    def test_switchover_keeps_the_old_primary_as_replica(self) -> None:
        after = Topology("hello", P, (R1,)).after_switchover(R1)
        assert after.primary == R1 and after.replicas == (P,) and after.fenced == ()

    def test_endpoint_parse(self) -> None:
        assert Endpoint.parse("127.0.0.1:3307") == Endpoint("127.0.0.1", 3307)
        with pytest.raises(ValueError):
            Endpoint.parse("127.0.0.1")
        with pytest.raises(ValueError):
            Endpoint.parse("h:70000")
