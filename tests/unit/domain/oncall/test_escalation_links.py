"""Escalation transitions and signed links, pure."""

from __future__ import annotations

import pytest

from shipwarden.domain.oncall import EscalationError, Status, acknowledge, fire, freeze, resolve
from shipwarden.domain.oncall.escalation import Escalation
from shipwarden.domain.oncall.links import Claim, LinkError, sign, verify


def _esc(repeat: int = 0) -> Escalation:
    snap = freeze("p", [([("schedule", "primary")], 60.0), ([("person", "carol")], 120.0)], repeat)
    return Escalation("esc-1", "g", "hello", "t", "", snap, Status.TRIGGERED, 0, 1000.0, 1000.0)


def test_due_times_chain_from_due_times_and_stop_after_the_last_step() -> None:
    e = _esc(repeat=1)
    f = fire(e, 1000.4)
    assert (f.step, f.late, f.escalation.due) == (0, pytest.approx(0.4), 1060.0)
    f = fire(f.escalation, 1061.0)
    assert (f.step, f.level.targets[0].name, f.escalation.due) == (1, "carol", 1180.0)
    f = fire(fire(f.escalation, 1180.0).escalation, 1240.0)
    assert f.step == 3 and f.escalation.due is None and f.escalation.step == 4
    with pytest.raises(EscalationError, match="no step left"):
        fire(f.escalation, 9999.0)
    with pytest.raises(EscalationError, match="not yet"):
        fire(_esc(), 999.0)


def test_acknowledged_and_resolved_escalations_fire_nothing() -> None:
    acked = acknowledge(_esc(), 1010.0, "alice")
    assert acked.due is None and acked.acked_by == "alice"
    with pytest.raises(EscalationError, match="acknowledged"):
        fire(acked, 2000.0)
    with pytest.raises(EscalationError, match="already acknowledged by alice"):
        acknowledge(acked, 1011.0, "bob")
    done = resolve(acked, 1020.0, "bob")
    with pytest.raises(EscalationError, match="resolved by bob"):
        acknowledge(done, 1030.0, "carol")
    assert (
        freeze("p", [([("person", "a")], 5.0)], 0).digest
        == _esc().snapshot.__class__.from_json(freeze("p", [([("person", "a")], 5.0)], 0).to_json()).digest
    )


def test_links_verify_only_untampered_unexpired_and_with_the_right_key() -> None:
    key = b"k" * 32
    token = sign(key, Claim("esc-1", "ack", "alice", 2000, "n1"))
    assert verify(key, token, 1999.0) == Claim("esc-1", "ack", "alice", 2000, "n1")
    with pytest.raises(LinkError, match="expired"):
        verify(key, token, 2000.0)
    with pytest.raises(LinkError, match="signature"):
        verify(b"x" * 32, token, 1000.0)
    body, mac = token.split(".")
    forged = sign(b"x" * 32, Claim("esc-1", "resolve", "alice", 9999, "n1")).split(".")[0]
    with pytest.raises(LinkError, match="signature"):
        verify(key, f"{forged}.{mac}", 1000.0)
    with pytest.raises(LinkError, match="not a shipwarden link"):
        verify(key, "../../etc", 1000.0)
