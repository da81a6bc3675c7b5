"""On-call (E8), pure: schedules and who is on call, escalation state, signed links, pages, iCalendar.

* :mod:`.schedule` — rotations, layers, restrictions, overrides in an IANA zone; ``who(at)``
* :mod:`.spec` — the policy's ``oncall`` section (validated with file:line by the policy loader)
* :mod:`.escalation` — levels, time-outs, repeat, the snapshot frozen when a group opens
* :mod:`.links` — HMAC-signed, expiring acknowledge/resolve links
* :mod:`.page` — what a page says (with the service's last deployments and changes)
* :mod:`.ical` — RFC 5545 feeds per schedule and per person
"""

from shipwarden.domain.oncall.escalation import (
    Escalation,
    EscalationError,
    Fired,
    FrozenLevel,
    Snapshot,
    Status,
    Target,
    acknowledge,
    fire,
    freeze,
    resolve,
)
from shipwarden.domain.oncall.schedule import OnCall, Schedule, Shift, shifts_of
from shipwarden.domain.oncall.spec import EscalationSpec, NotifyRef, OnCallPolicy, PersonSpec, ScheduleSpec

__all__ = [
    "Escalation",
    "EscalationError",
    "EscalationSpec",
    "Fired",
    "FrozenLevel",
    "NotifyRef",
    "OnCall",
    "OnCallPolicy",
    "PersonSpec",
    "Schedule",
    "ScheduleSpec",
    "Shift",
    "Snapshot",
    "Status",
    "Target",
    "acknowledge",
    "fire",
    "freeze",
    "resolve",
    "shifts_of",
]
