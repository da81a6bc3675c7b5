"""ReplayGuard: duplicates and deliveries outside the window are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shipwarden.domain.webhook_replay import ReplayGuard

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
GUARD = ReplayGuard(window=timedelta(minutes=30), max_skew=timedelta(minutes=2))


def test_new_event_accepted() -> None:
    d = GUARD.decide("evt-1", NOW - timedelta(minutes=1), NOW, set())
    assert (d.accepted, d.reason) == (True, "new")


def test_duplicate_refused() -> None:
    d = GUARD.decide("evt-1", NOW, NOW, {"evt-1"})
    assert (d.accepted, d.reason) == (False, "duplicate")


def test_too_old_refused_even_if_unseen() -> None:
    d = GUARD.decide("evt-2", NOW - timedelta(minutes=31), NOW, set())
    assert (d.accepted, d.reason) == (False, "too-old")


def test_future_beyond_skew_refused() -> None:
    assert GUARD.decide("e", NOW + timedelta(minutes=1), NOW, set()).accepted
    assert GUARD.decide("e", NOW + timedelta(minutes=3), NOW, set()).reason == "in-the-future"


def test_unsigned_time_relies_on_dedupe() -> None:
    assert GUARD.decide("gh-guid", None, NOW, set()).accepted
    assert not GUARD.decide("gh-guid", None, NOW, {"gh-guid"}).accepted


def test_empty_id_refused() -> None:
    assert not GUARD.decide("", NOW, NOW, set()).accepted


def test_body_already_accepted_is_refused_under_a_new_id() -> None:
    """GitHub signs the body but not X-GitHub-Delivery: a replayed body under a fresh id is refused."""
    d = GUARD.decide("new-guid", None, NOW, set(), body_digest="ab" * 32, seen_digests={"ab" * 32})
    assert (d.accepted, d.reason) == (False, "duplicate-body")
    other = GUARD.decide("new-guid", None, NOW, set(), body_digest="cd" * 32, seen_digests={"ab" * 32})
    assert other.accepted
