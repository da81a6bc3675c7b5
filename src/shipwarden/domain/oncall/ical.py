"""iCalendar feeds (RFC 5545) of on-call shifts, per schedule and per person (E8).  Pure.

Each shift is a ``VEVENT`` with a stable ``UID`` (schedule, person, start), ``DTSTART``/``DTEND``
in UTC (a calendar shows them in its reader's zone; the schedule's zone is named in the
description), and ``TRANSP:TRANSPARENT`` (on call is not busy).  Gaps are left out of the feed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from icalendar import Calendar, Event

from shipwarden.domain.oncall.schedule import Shift

__all__ = ["feed"]

PRODID = "-//shipwarden//on-call//EN"


def feed(
    name: str, shifts: Sequence[Shift], *, stamp: datetime, zones: dict[str, str] | None = None
) -> bytes:
    """The calendar ``name`` with one event per shift that has somebody on call."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", f"on call: {name}")
    for s in shifts:
        if s.person is None:
            continue
        ev = Event()
        uid = hashlib.sha256(f"{s.schedule}|{s.person}|{s.start.isoformat()}".encode()).hexdigest()[:24]
        ev.add("uid", f"{uid}@shipwarden")
        ev.add("dtstamp", stamp)
        ev.add("dtstart", s.start)
        ev.add("dtend", s.end)
        ev.add("summary", f"on call: {s.person} ({s.schedule})")
        zone = (zones or {}).get(s.schedule)
        how = "override" if s.layer == "override" else f"layer {s.layer}"
        ev.add("description", f"schedule {s.schedule}" + (f" ({zone})" if zone else "") + f", {how}")
        ev.add("transp", "TRANSPARENT")
        cal.add_component(ev)
    return bytes(cal.to_ical())
