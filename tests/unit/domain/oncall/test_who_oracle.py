""" "Who is on call at T" is exact against an independent oracle (E8 goal).

The oracle shares nothing with ``domain/oncall/schedule.py`` but the zone database's UTC → local
conversion (the one direction without ambiguity).  It watches the zone's wall clock: it steps
through a year in quarter-hours (every time in these schedules, and every UTC offset and change
of these zones, is on the quarter hour, so nothing happens between two steps), notes the wall
clock as a number of minutes, and

* a hand-off (or a naive override time) happens at the first step whose wall clock shows that
  time or later — counted by walking the steps, never by converting local → UTC;
* a restriction is read from the wall-clock minute number (weekday and minute of the day by
  integer division);
* the shift on call is the number of hand-offs passed so far.

For 5 zones (two with DST changes of an hour on either hemisphere, one of half an hour, one
with a 45-minute offset and none), 8,760 hourly instants of 2026 each, a schedule with three
layers (weekly; custom 12-hour shifts handed over inside the skipped/repeated hour; business
hours with a restriction edge inside the DST hours), and overrides across both changes.
"""

from __future__ import annotations

import bisect
from array import array
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipwarden.domain.oncall.schedule import Layer, Override, Restriction, Schedule

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe", "Asia/Kathmandu"]
STEP = 15  # minutes
T0 = datetime(2025, 12, 1, tzinfo=UTC)
T1 = datetime(2027, 1, 8, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1)


def _wall(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(minutes=1)


@cache
def clock_table(zone: str) -> array:
    """Wall-clock minute number of ``zone`` at every quarter-hour step from T0 to T1."""
    z = ZoneInfo(zone)
    out = array("q")
    t, step = T0, timedelta(minutes=STEP)
    while t < T1:
        out.append(_wall(t.astimezone(z).replace(tzinfo=None)))
        t += step
    return out


def step_of(at: datetime) -> int:
    return (at - T0) // timedelta(minutes=STEP)


def first_step_showing(table: array, wall: int, after: int = 0) -> int:
    """First step (from ``after``) at which the wall clock shows ``wall`` or later."""
    for i in range(after, len(table)):
        if table[i] >= wall:
            return i
    return len(table)


class Oracle:
    def __init__(self, zone: str, layers: list[dict], overrides: list[tuple[str, datetime, datetime]]):
        self.table = clock_table(zone)
        self.layers = []
        for spec in layers:
            start = _wall(spec["start"])
            length = int(spec["length"] / timedelta(minutes=1))
            handoffs: list[int] = []
            k, i = 0, 0
            while True:  # walk the clock: hand-off k is the first step showing start + k·length
                i = first_step_showing(self.table, start + k * length, i)
                if i >= len(self.table):
                    break
                handoffs.append(i)
                k += 1
            windows = [
                (set(r[0]), r[1].hour * 60 + r[1].minute, r[2].hour * 60 + r[2].minute)
                for r in spec.get("restrictions", [])
            ]
            self.layers.append((spec["name"], spec["members"], handoffs, windows))
        self.overrides = []
        for person, s, e in overrides:
            ends = [step_of(x) if x.tzinfo else first_step_showing(self.table, _wall(x)) for x in (s, e)]
            self.overrides.append((person, *ends))

    @staticmethod
    def _inside(windows: list, wall: int) -> bool:
        if not windows:
            return True
        day, minute = divmod(wall, 1440)
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
        for days, a, b in windows:
            if a < b and weekday in days and a <= minute < b:
                return True
            if a >= b and ((weekday in days and minute >= a) or ((weekday - 1) % 7 in days and minute < b)):
                return True
        return False

    def who(self, at: datetime) -> str | None:
        i = step_of(at)
        for person, s, e in reversed(self.overrides):
            if s <= i < e:
                return person
        for _name, members, handoffs, windows in reversed(self.layers):
            if not self._inside(windows, self.table[i]):
                continue
            passed = bisect.bisect_right(handoffs, i)
            if passed:
                return members[(passed - 1) % len(members)]
        return None


def build(zone: str, layers: list[dict], overrides: list[tuple[str, datetime, datetime]]) -> Schedule:
    z = ZoneInfo(zone)
    from shipwarden.domain.oncall.spec import _aware

    return Schedule(
        "s",
        z,
        tuple(
            Layer(
                spec["name"],
                tuple(spec["members"]),
                spec["start"],
                spec["length"],
                tuple(Restriction(frozenset(r[0]), r[1], r[2]) for r in spec.get("restrictions", [])),
            )
            for spec in layers
        ),
        tuple(Override(p, _aware(s, z), _aware(e, z)) for p, s, e in overrides),
    )


def rich(zone: str) -> tuple[list[dict], list[tuple[str, datetime, datetime]]]:
    """Three layers and overrides around both of the zone's 2026 changes (where it has them)."""
    z = ZoneInfo(zone)
    changes = []
    t = datetime(2026, 1, 1, tzinfo=UTC)
    while t.year == 2026:
        n = t + timedelta(hours=1)
        if n.astimezone(z).utcoffset() != t.astimezone(z).utcoffset():
            changes.append(n.astimezone(z).date())
        t = n
    layers = [
        {
            "name": "weekly",
            "members": ["ann", "bob", "cat"],
            "start": datetime(2025, 12, 29, 9, 0),
            "length": timedelta(days=7),
        },
        # 12-hour shifts handed over at 02:15 / 14:15: inside the skipped or repeated hour
        {
            "name": "twelve",
            "members": ["dan", "eve"],
            "start": datetime(2026, 1, 3, 2, 15),
            "length": timedelta(hours=12),
            "restrictions": [({5, 6}, time(0, 0), time(0, 0))],
        },  # weekends (whole days)
        {
            "name": "office",
            "members": ["fay", "gus", "hal"],
            "start": datetime(2026, 1, 5, 9, 0),
            "length": timedelta(days=1),
            "restrictions": [({0, 1, 2, 3, 4}, time(9, 0), time(17, 0)), ({6}, time(2, 30), time(3, 15))],
        },  # Sunday edges in the DST hour
    ]
    overrides: list[tuple[str, datetime, datetime]] = [
        ("zed", datetime(2026, 7, 4, 10, 0), datetime(2026, 7, 4, 22, 45)),
        ("yan", datetime(2026, 2, 1, 8, 0, tzinfo=UTC), datetime(2026, 2, 2, 8, 0, tzinfo=UTC)),
    ]
    for d in changes:  # across each change: from the evening before, into the repeated/skipped hour
        overrides.append(
            ("ovr", datetime.combine(d - timedelta(days=1), time(20, 0)), datetime.combine(d, time(2, 30)))
        )
    return layers, overrides


@pytest.mark.parametrize("zone", ZONES)
def test_who_is_exact_for_every_hour_of_a_year(zone: str) -> None:
    layers, overrides = rich(zone)
    oracle, schedule = Oracle(zone, layers, overrides), build(zone, layers, overrides)
    year = schedule.shifts(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    starts = [s.start for s in year]
    wrong = []
    for h in range(8760):
        at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=h)
        want = oracle.who(at)
        got = schedule.who(at)
        in_feed = year[bisect.bisect_right(starts, at) - 1].person
        if got != want or in_feed != want:
            wrong.append((at.isoformat(), want, got, in_feed))
    assert not wrong, f"{len(wrong)} of 8760 wrong, first: {wrong[:5]}"
    # and the rota did change hands (an oracle and a schedule that both say None would agree)
    assert len({s.person for s in year}) >= 8


@pytest.mark.parametrize("zone", ["Europe/Berlin", "Australia/Lord_Howe"])
def test_the_oracle_sees_the_dst_changes(zone: str) -> None:
    """The 12-hour layer hands over in the skipped hour: that shift starts at the jump itself."""
    table = clock_table(zone)
    assert any(b < a for a, b in zip(table, table[1:], strict=False))  # the clock went back
    assert any(b - a > STEP for a, b in zip(table, table[1:], strict=False))  # … and jumped forward


quarter = st.integers(0, 95).map(lambda q: time(q // 4, q % 4 * 15))


@st.composite
def schedules(draw: st.DrawFn) -> tuple[str, list[dict], list[tuple[str, datetime, datetime]]]:
    zone = draw(st.sampled_from(ZONES))
    layers = []
    for n in range(draw(st.integers(1, 3))):
        length = draw(
            st.sampled_from([timedelta(days=1), timedelta(days=7)])
            | st.integers(4, 96 * 3).map(lambda q: timedelta(minutes=15 * q))
        )
        day = date(2026, 1, 1) + timedelta(days=draw(st.integers(-20, 300)))
        restrictions = draw(
            st.lists(st.tuples(st.frozensets(st.integers(0, 6), min_size=1), quarter, quarter), max_size=2)
        )
        layers.append(
            {
                "name": f"l{n}",
                "members": [f"p{n}{i}" for i in range(draw(st.integers(1, 4)))],
                "start": datetime.combine(day, draw(quarter)),
                "length": length,
                "restrictions": restrictions,
            }
        )
    overrides = []
    for i in range(draw(st.integers(0, 4))):
        s = datetime(2026, 1, 1) + timedelta(minutes=15 * draw(st.integers(0, 96 * 360)))
        e = s + timedelta(minutes=15 * draw(st.integers(1, 96 * 5)))
        if draw(st.booleans()):
            s, e = s.replace(tzinfo=UTC), e.replace(tzinfo=UTC)
        overrides.append((f"o{i}", s, e))
    return zone, layers, overrides


@settings(max_examples=30, deadline=None)
@given(schedules(), st.lists(st.integers(0, 96 * 364), min_size=50, max_size=50))
def test_who_matches_the_oracle_for_generated_schedules(case: tuple, quarters: list[int]) -> None:
    zone, layers, overrides = case
    z = ZoneInfo(zone)
    if any(_bad_override(o, z) for o in overrides):
        return
    oracle, schedule = Oracle(zone, layers, overrides), build(zone, layers, overrides)
    for q in quarters:
        at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=15 * q)
        assert schedule.who(at) == oracle.who(at), at.isoformat()


def _bad_override(o: tuple[str, datetime, datetime], z: ZoneInfo) -> bool:
    from shipwarden.domain.oncall.spec import _aware

    return _aware(o[2], z) <= _aware(o[1], z)
