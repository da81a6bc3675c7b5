"""When a group notifies: its schedule and the notification log (pure).

The notification log keeps, per (group key, receiver), what the last notice said: the
fingerprints that were firing and those that were resolved, when it was sent and its sequence
number.  A group is flushed (Alertmanager's ``dispatch`` + ``notify/dedup_stage.go``):

* ``group_wait`` after its first alert arrived (so alerts that fire together go out together);
* after that, a change (a new firing alert, a resolve) waits until ``group_interval`` after the
  previous notice — except that a group whose alerts have *all* resolved flushes at once: the
  all-clear is the notice people wait for (Alertmanager waits a whole ``group_interval``, up to
  5 minutes by default; prometheus/alertmanager#1660);
* while nothing changes, a still-firing group is re-sent every ``repeat_interval``;
* a group whose last notice was the all-clear opens a new episode when it fires again: it is
  scheduled as a new group (``group_wait``), as Alertmanager's new aggregation group would be,
  not ``group_interval`` after the all-clear (the store passes ``last_flush_at=None``).

A flush sends only when :func:`needs_update` says so, which is what makes delivery once per
change: the same set of firing alerts is never sent twice before ``repeat_interval``, whatever
the number of flushes, retries, restarts or duplicate webhooks in between.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

__all__ = ["LogEntry", "needs_update", "next_flush", "after_notice"]


@dataclass(frozen=True)
class LogEntry:
    seq: int
    firing: frozenset[str]
    resolved: frozenset[str]
    sent_at: float
    opened_at: float
    """When the current episode of the group started firing (kept by its resolve notice)."""


def needs_update(
    entry: LogEntry | None,
    firing: Set[str],
    resolved: Set[str],
    *,
    now: float,
    repeat_interval: float,
    send_resolved: bool = True,
) -> bool:
    """Alertmanager's ``DedupStage.needsUpdate``."""
    if entry is None:
        return bool(firing)
    if not firing <= entry.firing:
        return True
    if not firing:
        # the all-clear clears the log even where resolved notices are not wanted
        return bool(entry.firing)
    if send_resolved and not resolved <= entry.resolved:
        return True
    return entry.sent_at + repeat_interval <= now


def next_flush(
    *,
    now: float,
    first_at: float,
    last_flush_at: float | None,
    scheduled: float | None,
    all_resolved: bool,
    group_wait: float,
    group_interval: float,
) -> float:
    """When a group that just changed should be flushed (the earlier of this and ``scheduled``)."""
    if last_flush_at is None:
        due = first_at + group_wait
        if all_resolved:
            due = now
    elif all_resolved:
        due = now
    else:
        due = max(now, last_flush_at + group_interval)
    return due if scheduled is None else min(scheduled, due)


def after_notice(entry: LogEntry | None, firing: Set[str], resolved: Set[str], *, now: float) -> LogEntry:
    """The log entry once a notice with ``firing`` and ``resolved`` is recorded."""
    opened = entry.opened_at if entry is not None and entry.firing else now
    seq = (entry.seq if entry is not None else 0) + 1
    return LogEntry(seq, frozenset(firing), frozenset(resolved), now, opened)
