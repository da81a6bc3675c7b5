"""Who is on call: rotations, layers, restrictions and overrides, in a schedule's time zone (E8).

A schedule is evaluated in **one IANA time zone**.  Everything a person writes in it — the first
hand-off, the hand-off time, restriction windows, naive override times — is *wall-clock* time
there, because that is how a rota is agreed ("hand over Monday at 09:00 Berlin time").  So a
daily rotation hands over at 09:00 on both sides of a daylight-saving change, and the day of the
change is 23 or 25 hours long for whoever has it.

Turning a wall-clock time into an instant is where rotas go wrong (Grafana OnCall #3261, #5247,
#5455), so there is one rule, :func:`first_instant`: **a wall-clock time happens the first moment
the zone's clock shows it or a later time**.  For an ordinary time that is the obvious instant;
for a time shown twice (the hour repeated when clocks go back) it is the first showing; for a
time the clock skips (clocks go forward) it is the moment of the jump.

Evaluation, for an instant ``T``:

1. **Overrides** win over everything; of several covering ``T``, the last listed wins.
2. Otherwise the **layers**, the last listed first: the first layer that has somebody at ``T``
   decides.  A layer has nobody before its first hand-off, or when ``T``'s wall-clock time is
   outside all of its **restrictions** (a layer with none covers all the time).  Restrictions
   only hide a layer; its rotation keeps turning behind them, as PagerDuty's do.
3. Inside a layer, hand-off ``k`` happens at the wall-clock time ``start + k × length`` (naive
   arithmetic: lengths are calendar lengths); the member of shift ``k`` is ``members[k mod n]``.

:meth:`Schedule.who` answers one instant; :meth:`Schedule.shifts` turns a window into the
final schedule (consecutive ``Shift`` intervals), which the iCalendar feeds render.  The
property test compares :meth:`who` with a brute-force oracle that steps through every minute
of a year (tests/unit/domain/oncall/test_who_oracle.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "WEEKDAYS",
    "Layer",
    "OnCall",
    "Override",
    "Restriction",
    "Schedule",
    "Shift",
    "first_instant",
    "transitions",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""``datetime.weekday()`` order."""

_MIN_LENGTH = timedelta(hours=1)


def first_instant(local: datetime, zone: ZoneInfo) -> datetime:
    """The first moment (UTC) at which ``zone``'s wall clock shows ``local`` (naive) or later."""
    if local.tzinfo is not None:
        raise ValueError("first_instant takes a naive wall-clock time")
    earlier = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if earlier.astimezone(zone).replace(tzinfo=None) == local:
        return earlier  # shown (the first of two showings when the hour repeats)
    # Skipped by a jump forward.  With fold=0 zoneinfo reads it with the offset before the jump
    # (an instant after the jump), with fold=1 with the offset after it (an instant before the
    # jump): the jump is between the two.  Find it to the second.
    lo = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    hi = earlier
    if lo >= hi:  # pragma: no cover - defensive: a zone whose fold does not bracket its gap
        lo = hi - timedelta(hours=3)
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid.astimezone(zone).replace(tzinfo=None) >= local:
            hi = mid
        else:
            lo = mid
    return hi


def transitions(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Instants (UTC, to the second) in ``[start, end)`` where ``zone``'s UTC offset changes."""
    out: list[datetime] = []
    step = timedelta(hours=1)
    t = start.astimezone(UTC)
    off = t.astimezone(zone).utcoffset()
    while t < end:
        n = min(t + step, end)
        noff = n.astimezone(zone).utcoffset()
        if noff != off:
            lo, hi = t, n
            while hi - lo > timedelta(seconds=1):
                mid = (lo + (hi - lo) / 2).replace(microsecond=0)
                if mid.astimezone(zone).utcoffset() == off:
                    lo = mid
                else:
                    hi = mid
            out.append(hi)
            off = noff
        t = n
    return out


@dataclass(frozen=True)
class Restriction:
    """A weekly window of wall-clock time: from ``start`` on each of ``days`` until ``end``.

    ``end`` ≤ ``start`` means the window runs over midnight into the next day (``fri 18:00 →
    09:00`` ends Saturday 09:00); ``end`` == ``start`` is a whole day."""

    days: frozenset[int]
    start: time
    end: time

    def covers(self, local: datetime) -> bool:
        t = local.time()
        d = local.weekday()
        if self.start < self.end:
            return d in self.days and self.start <= t < self.end
        return (d in self.days and t >= self.start) or ((d - 1) % 7 in self.days and t < self.end)

    def edges(self, day: date) -> list[datetime]:
        """Wall-clock times on or after ``day`` where the window may open or close (naive)."""
        if day.weekday() not in self.days:
            return []
        opens = datetime.combine(day, self.start)
        closes = datetime.combine(day + timedelta(days=1) if self.end <= self.start else day, self.end)
        return [opens, closes]


@dataclass(frozen=True)
class Layer:
    name: str
    members: tuple[str, ...]
    start: datetime
    """The first hand-off, naive wall-clock time in the schedule's zone (``members[0]`` takes it)."""
    length: timedelta
    """``1 day`` daily, ``7 days`` weekly, or a custom calendar length (at least an hour)."""
    restrictions: tuple[Restriction, ...] = ()
    _handoffs: dict[tuple[int, str], datetime] = field(default_factory=dict, compare=False, repr=False)
    """Hand-off instants computed so far (the layer is immutable, so they never change)."""

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError(f"layer {self.name!r} has no members")
        if self.length < _MIN_LENGTH or self.length % timedelta(minutes=1):
            raise ValueError(f"layer {self.name!r}: a shift is at least an hour, in whole minutes")

    def handoff_local(self, k: int) -> datetime:
        return self.start + k * self.length

    def handoff(self, k: int, zone: ZoneInfo) -> datetime:
        key = (k, zone.key)
        t = self._handoffs.get(key)
        if t is None:
            if len(self._handoffs) > 100_000:
                self._handoffs.clear()
            t = self._handoffs[key] = first_instant(self.handoff_local(k), zone)
        return t

    def shift_at(self, at: datetime, zone: ZoneInfo) -> int | None:
        """Index of the shift covering ``at`` (its rotation, restrictions aside), None before the first."""
        if at < self.handoff(0, zone):
            return None
        local = at.astimezone(zone).replace(tzinfo=None)
        k = max(0, (local - self.start) // self.length)
        # the wall clock can run up to a few hours away from elapsed time around a change: settle
        while k > 0 and self.handoff(k, zone) > at:
            k -= 1
        while self.handoff(k + 1, zone) <= at:
            k += 1
        return k

    def covers(self, local: datetime) -> bool:
        return not self.restrictions or any(r.covers(local) for r in self.restrictions)

    def who(self, at: datetime, zone: ZoneInfo) -> str | None:
        if not self.covers(at.astimezone(zone).replace(tzinfo=None)):
            return None
        k = self.shift_at(at, zone)
        return None if k is None else self.members[k % len(self.members)]


@dataclass(frozen=True)
class Override:
    person: str
    start: datetime  # aware
    end: datetime  # aware, after start

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True)
class OnCall:
    """Who is on call at an instant, and why (``layer`` is ``"override"`` for an override)."""

    person: str | None
    layer: str | None


@dataclass(frozen=True)
class Shift:
    """One interval of the final schedule: ``person`` (None: a gap) from ``start`` until ``end``."""

    schedule: str
    person: str | None
    start: datetime
    end: datetime
    layer: str | None


@dataclass(frozen=True)
class Schedule:
    name: str
    zone: ZoneInfo
    layers: tuple[Layer, ...]
    overrides: tuple[Override, ...] = field(default=())

    def on_call(self, at: datetime) -> OnCall:
        if at.tzinfo is None:
            raise ValueError("on_call needs an aware instant")
        at = at.astimezone(UTC)
        for o in reversed(self.overrides):
            if o.covers(at):
                return OnCall(o.person, "override")
        for layer in reversed(self.layers):
            person = layer.who(at, self.zone)
            if person is not None:
                return OnCall(person, layer.name)
        return OnCall(None, None)

    def who(self, at: datetime) -> str | None:
        """The person on call at ``at`` (aware), or None when nobody is."""
        return self.on_call(at).person

    def _edges(self, start: datetime, end: datetime) -> Iterable[datetime]:
        """Every instant in ``[start, end)`` where the answer of :meth:`who` may change."""
        yield from (o.start for o in self.overrides)
        yield from (o.end for o in self.overrides)
        yield from transitions(self.zone, start, end)
        first_day = start.astimezone(self.zone).date() - timedelta(days=1)
        last_day = end.astimezone(self.zone).date() + timedelta(days=1)
        for layer in self.layers:
            k = layer.shift_at(start, self.zone) or 0
            while True:
                t = layer.handoff(k, self.zone)
                if t >= end:
                    break
                yield t
                k += 1
            day = first_day
            while layer.restrictions and day <= last_day:
                for r in layer.restrictions:
                    for local in r.edges(day):
                        yield first_instant(local, self.zone)
                        # an hour shown twice: the window may close and reopen at its 2nd showing
                        yield local.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
                day += timedelta(days=1)

    def shifts(self, start: datetime, end: datetime) -> list[Shift]:
        """The final schedule in ``[start, end)``: consecutive intervals, gaps as ``person=None``."""
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        points = sorted({start, *(t for t in self._edges(start, end) if start < t < end)})
        out: list[Shift] = []
        for i, p in enumerate(points):
            oc = self.on_call(p)
            stop = points[i + 1] if i + 1 < len(points) else end
            if out and out[-1].person == oc.person and out[-1].layer == oc.layer:
                last = out[-1]
                out[-1] = Shift(self.name, last.person, last.start, stop, last.layer)
            else:
                out.append(Shift(self.name, oc.person, p, stop, oc.layer))
        return out

    def people(self) -> set[str]:
        return {m for layer in self.layers for m in layer.members} | {o.person for o in self.overrides}


def shifts_of(person: str, schedules: Sequence[Schedule], start: datetime, end: datetime) -> list[Shift]:
    """Every shift ``person`` has in ``schedules`` within ``[start, end)`` (their iCalendar feed)."""
    out = [s for sch in schedules for s in sch.shifts(start, end) if s.person == person]
    return sorted(out, key=lambda s: (s.start, s.schedule))
