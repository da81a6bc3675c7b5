"""The rota: who is on call, their contacts, the iCalendar feeds (E8).

Reads the policy's ``oncall`` section through a callable, so a process that reloads its policy
answers from the new one; compiled schedules are cached per policy object.  :meth:`Rota.on_call`
is ``ports.incidents.OnCallLookup``: an incident's commander is whoever the first level of the
service's escalation policy pages now.

Overrides come from the policy and from the store (``shipwarden oncall override add``, the
:class:`~shipwarden.ports.oncall.RotaStore`): a stored one is applied after the policy's, so it
wins where they overlap, and the later of two stored ones wins.  A person's calendar feed URL
carries a token (``feed-<id>.<secret>``, the secret stored only as its SHA-256) that a calendar
app sends instead of a session; revoking it ends the feed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shipwarden.domain.oncall import OnCallPolicy, Schedule, Shift, shifts_of
from shipwarden.domain.oncall.escalation import Target
from shipwarden.domain.oncall.ical import feed
from shipwarden.domain.oncall.schedule import Override
from shipwarden.ports.oncall import Contact, FeedToken, RotaStore, StoredOverride

__all__ = ["OnCallError", "Rota"]


class OnCallError(ValueError):
    """Unknown schedule or person, or no ``oncall`` section: nothing changed."""


MAX_OVERRIDE_S = 366 * 86400.0
_FEED = re.compile(r"^(feed-[0-9a-f]{12})\.([A-Za-z0-9_-]{32})$")


class Rota:
    def __init__(
        self,
        policy: Callable[[], OnCallPolicy | None],
        store: RotaStore | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._policy = policy
        self._compiled: tuple[int, dict[str, Schedule]] | None = None
        self.store = store
        self._clock = clock or (lambda: datetime.now(UTC).timestamp())

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
        compiled = self._compiled[1]
        if self.store is None:
            return compiled
        extra: dict[str, list[Override]] = {}
        for o in self.store.overrides():
            if o.schedule in compiled:  # a schedule since removed from the policy: ignored
                start, end = datetime.fromtimestamp(o.start, UTC), datetime.fromtimestamp(o.end, UTC)
                extra.setdefault(o.schedule, []).append(Override(o.person, start, end))
        return {
            n: replace(s, overrides=s.overrides + tuple(extra[n])) if n in extra else s
            for n, s in compiled.items()
        }

    # -- overrides from the CLI / API ----------------------------------------------------------
    def _writable(self) -> RotaStore:
        if self.store is None:
            raise OnCallError("overrides and feed tokens need the store (not configured here)")
        return self.store

    def add_override(
        self, schedule: str, person: str, start: datetime, end: datetime, *, reason: str, actor: str
    ) -> StoredOverride:
        """``person`` is on call in ``schedule`` from ``start`` until ``end`` (aware instants)."""
        store = self._writable()
        self.schedule(schedule)  # raises for an unknown schedule
        if person not in self.policy.people:
            raise OnCallError(f"person {person[:64]!r} is not in oncall.people")
        if start.tzinfo is None or end.tzinfo is None:
            raise OnCallError("an override's start and end need a time zone")
        a, b = start.timestamp(), end.timestamp()
        if b <= a:
            raise OnCallError("the override ends before it starts")
        if b - a > MAX_OVERRIDE_S:
            raise OnCallError("an override lasts at most 366 days (change the rotation instead)")
        now = self._clock()
        if b <= now:
            raise OnCallError("the override is over already")
        reason = reason.strip()
        if not reason or len(reason) > 500:
            raise OnCallError("an override needs a reason (1-500 characters)")
        o = StoredOverride(f"ovr-{secrets.token_hex(6)}", schedule, person, a, b, reason, now, actor[:256])
        store.add_override(o)
        return o

    def remove_override(self, override_id: str, *, actor: str) -> StoredOverride:
        found = self._writable().remove_override(override_id[:32], actor=actor[:256], now=self._clock())
        if found is None:
            raise OnCallError(f"no override {override_id[:40]!r} in force (unknown or removed already)")
        return found

    def overrides(self, schedule: str | None = None) -> list[StoredOverride]:
        return self._writable().overrides(schedule=schedule)

    # -- calendar feed tokens ------------------------------------------------------------------
    def create_feed(self, person: str, *, actor: str) -> tuple[FeedToken, str]:
        """A new feed token for ``person``: the record and the token (shown once)."""
        if person not in self.policy.people:
            raise OnCallError(f"person {person[:64]!r} is not in oncall.people")
        secret = secrets.token_urlsafe(24)
        t = FeedToken(
            f"feed-{secrets.token_hex(6)}",
            person,
            hashlib.sha256(secret.encode()).hexdigest(),
            self._clock(),
            actor[:256],
        )
        self._writable().add_feed_token(t)
        return t, f"{t.id}.{secret}"

    def revoke_feed(self, token_id: str, *, actor: str) -> FeedToken:
        found = self._writable().revoke_feed_token(token_id[:32], actor=actor[:256], now=self._clock())
        if found is None:
            raise OnCallError(f"no feed token {token_id[:40]!r} in force (unknown or revoked already)")
        return found

    def feeds(self, person: str | None = None) -> list[FeedToken]:
        return self._writable().feed_tokens(person=person)

    def feed_person(self, token: str) -> str | None:
        """Whose feed ``token`` opens (None: malformed, unknown, revoked or wrong secret)."""
        m = _FEED.match(token)
        if m is None or self.store is None:
            return None
        t = self.store.feed_token(m.group(1))
        if t is None or t.revoked_at is not None:
            return None
        digest = hashlib.sha256(m.group(2).encode()).hexdigest()
        return t.person if hmac.compare_digest(digest, t.secret_sha256) else None

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
