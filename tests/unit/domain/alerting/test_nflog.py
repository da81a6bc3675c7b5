"""The notification log: once per change, whatever the number of flushes (property test)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shipwarden.domain.alerting import after_notice, needs_update, next_flush


def test_first_notice_needs_something_firing() -> None:
    assert needs_update(None, {"a"}, set(), now=0, repeat_interval=10)
    assert not needs_update(None, set(), {"a"}, now=0, repeat_interval=10)


def test_resolve_repeat_and_subset() -> None:
    e = after_notice(None, {"a", "b"}, set(), now=0)
    assert not needs_update(e, {"a"}, set(), now=1, repeat_interval=10)  # subset, no resolve wanted yet
    assert needs_update(e, {"a"}, {"b"}, now=1, repeat_interval=10)  # a new resolve
    assert not needs_update(e, {"a"}, {"b"}, now=1, repeat_interval=10, send_resolved=False)
    assert needs_update(e, {"a", "b"}, set(), now=10, repeat_interval=10)  # repeat
    assert needs_update(e, set(), {"a", "b"}, now=1, repeat_interval=10)  # the all-clear
    cleared = after_notice(e, set(), {"a", "b"}, now=1)
    assert not needs_update(cleared, set(), {"a", "b"}, now=2, repeat_interval=10)
    assert cleared.opened_at == 0 and cleared.seq == 2


def test_schedule() -> None:
    kw = {"group_wait": 2.0, "group_interval": 5.0}
    assert next_flush(now=1, first_at=1, last_flush_at=None, scheduled=None, all_resolved=False, **kw) == 3
    assert next_flush(now=4, first_at=1, last_flush_at=3, scheduled=None, all_resolved=False, **kw) == 8
    assert next_flush(now=4, first_at=1, last_flush_at=3, scheduled=None, all_resolved=True, **kw) == 4
    assert next_flush(now=9, first_at=1, last_flush_at=3, scheduled=None, all_resolved=False, **kw) == 9


states = st.lists(st.frozensets(st.sampled_from("abcd")), min_size=1, max_size=30)


@settings(max_examples=100)
@given(states, st.integers(min_value=1, max_value=5))
def test_each_change_notified_once(seq: list[frozenset[str]], flushes: int) -> None:
    """A sequence of firing sets, each flushed several times (retries, duplicate webhooks,
    restarts).  Idempotent: a state is notified at most once however often it is flushed.
    Complete: after a state is flushed, every firing alert has been told, and an empty state
    has been told as the all-clear once anything fired."""
    entry = None
    ever: set[str] = set()
    for t, firing in enumerate(seq):
        resolved = frozenset(ever - firing)
        sent_now = 0
        for _ in range(flushes):
            if needs_update(entry, firing, resolved, now=float(t), repeat_interval=1e9):
                entry = after_notice(entry, firing, resolved, now=float(t))
                sent_now += 1
        assert sent_now <= 1
        ever |= firing
        if firing:
            assert entry is not None and firing <= entry.firing
        elif ever:
            assert entry is not None and not entry.firing
        else:
            assert entry is None
