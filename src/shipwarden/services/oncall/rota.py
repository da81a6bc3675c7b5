"""The rota: who is on call, their contacts, the iCalendar feeds (E8).

Reads the policy's ``oncall`` section through a callable, so a process that reloads its policy
answers from the new one; compiled schedules are cached per policy object.  :meth:`Rota.on_call`
is ``ports.incidents.OnCallLookup``: an incident's commander is whoever the first level of the
service's escalation policy pages now.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from shipwarden.domain.oncall import OnCallPolicy, Schedule, Shift, shifts_of
from shipwarden.domain.oncall.escalation import Target
from shipwarden.domain.oncall.ical import feed
from shipwarden.ports.oncall import Contact

__all__ = ["OnCallError", "Rota"]


class OnCallError(ValueError):
    """Unknown schedule or person, or no ``oncall`` section: nothing changed."""


class Rota:
    def __init__(self, policy: Callable[[], OnCallPolicy | None]) -> None:
        self._policy = policy
        self._compiled: tuple[int, dict[str, Schedule]] | None = None

    @property
    def policy(self) -> OnCallPolicy:
        p = self._policy()
        if p is None:
            raise OnCallError("the policy has no 'oncall' section")
        return p

    def schedules(self) -> dict[str, Schedule]:
        p = self.policy
        if self._compiled is None or self._compiled[0] != id(p):
            self._compiled = (id(p), {n: p.schedule(n) for n in p.schedules})
        return self._compiled[1]

    def schedule(self, name: str) -> Schedule:
        found = self.schedules().get(name)
        if found is None:
            known = ", ".join(sorted(self.schedules())) or "none"
            raise OnCallError(f"no schedule {name[:64]!r} (the policy has: {known})")
        return found

    def who(self, at: datetime, schedule: str | None = None) -> dict[str, tuple[str | None, str | None]]:
        """``schedule → (person, layer)`` at ``at`` (every schedule, or the one named)."""
        names = [schedule] if schedule is not None else sorted(self.schedules())
        out = {}
        for n in names:
            oc = self.schedule(n).on_call(at)
            out[n] = (oc.person, oc.layer)
        return out

    def people_of(self, target: Target, at: datetime) -> list[str]:
        if target.kind == "person":
            return [target.name]
        if target.kind == "schedule":
            person = self.schedule(target.name).who(at)
            return [person] if person else []
        return []

    def contacts(self, person: str) -> list[Contact]:
        spec = self.policy.people.get(person)
        if spec is None:
            return []
        out = [Contact("email", spec.email, person)] if spec.email else []
        return out + [Contact("apprise", n, person) for n in spec.notify]

    def resolve(self, target: Target, at: datetime) -> list[Contact]:
        if target.kind == "channel":
            return [Contact("apprise", target.name)]
        return [c for p in self.people_of(target, at) for c in self.contacts(p)]

    # -- ports.incidents.OnCallLookup -----------------------------------------------------------
    def on_call(self, service: str | None, at: datetime) -> list[str]:
        p = self._policy()
        if p is None:
            return []
        name = p.escalation_for(service)
        if name is None:
            return []
        first = p.escalation[name].levels[0]
        out: list[str] = []
        for ref in first.notify:
            t = Target(ref.kind, ref.name)
            out += [x for x in self.people_of(t, at) if x not in out]
        return out

    # -- iCalendar ---------------------------------------------------------------------------
    def ical(
        self,
        *,
        schedule: str | None = None,
        person: str | None = None,
        now: datetime | None = None,
        days_back: int = 7,
        days_ahead: int = 56,
    ) -> bytes:
        """The feed of one schedule, or of one person across every schedule."""
        now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        start, end = now - timedelta(days=days_back), now + timedelta(days=days_ahead)
        # shifts are computed over a wider window and kept whole, so an event does not change
        # (nor its UID) as the window slides from one fetch to the next
        wide = (start - timedelta(days=14), end + timedelta(days=14))
        zones = {n: s.zone.key for n, s in self.schedules().items()}
        shifts: list[Shift]
        if schedule is not None:
            shifts = self.schedule(schedule).shifts(*wide)
            name = schedule
        elif person is None:
            raise OnCallError("name a schedule or a person")
        elif person not in self.policy.people:
            raise OnCallError(f"{person[:64]!r} is not in oncall.people")
        else:
            shifts = shifts_of(person, list(self.schedules().values()), *wide)
            name = person
        kept = [s for s in shifts if s.end > start and s.start < end]
        return feed(name, kept, stamp=now, zones=zones)
