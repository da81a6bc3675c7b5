"""The ``oncall`` section of a policy: people, schedules, escalation policies, the watchdog (E8).

::

    oncall:
      people:
        alice: {email: alice@example.com}
        bob: {email: bob@example.com, notify: [BOB_SLACK_URL]}   # secret names holding Apprise URLs
      schedules:
        primary:
          timeZone: Europe/Berlin
          layers:                       # the last listed wins where it has somebody
            - name: weekly
              rotation: weekly          # daily | weekly | a calendar length: 12h, 3d
              start: 2026-01-05         # the first hand-off's date (members[0] takes it) …
              handoff: "09:00"          # … and wall-clock time (quoted: YAML reads 09:00 oddly)
              members: [alice, bob]
            - name: office
              rotation: daily
              start: 2026-01-05
              members: [carol]
              restrictions: [{days: [mon, tue, wed, thu, fri], from: "09:00", to: "17:00"}]
          overrides:
            - {person: bob, start: "2026-03-28T18:00", end: "2026-03-30T09:00"}   # schedule's zone
      escalation:
        default:
          repeat: 1                     # run the levels once more if nobody acknowledged
          levels:
            - notify: [{schedule: primary}]
              timeout: 5m               # until the next level unless acknowledged
            - notify: [{person: carol}, {channel: OPS_SLACK_URL}]
              timeout: 10m
      services: {hello: default}        # service → escalation policy (else ``defaultEscalation``)
      defaultEscalation: default
      watchdog: {stall: 10s, notify: [{channel: PAGER_BACKUP_URL}]}   # the second path
      linkExpiry: 24h                   # acknowledge/resolve links in pages

Validation is strict and cross-checked (every member, person and schedule named exists), with
the file and line of each problem through the policy loader.  :meth:`OnCallPolicy.schedule`
compiles a schedule into the pure :class:`~shipwarden.domain.oncall.schedule.Schedule`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from shipwarden.domain._base import PositiveDuration, _Strict, parse_duration
from shipwarden.domain.oncall.schedule import WEEKDAYS, Layer, Override, Restriction, Schedule

__all__ = [
    "EscalationSpec",
    "LevelSpec",
    "NotifyRef",
    "OnCallPolicy",
    "PersonSpec",
    "ScheduleSpec",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"
_SECRET = r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$"
_EMAIL = re.compile(r"^[^@\s<>,;\"]{1,64}@[A-Za-z0-9.-]{1,253}$")

Name = Annotated[str, Field(pattern=_NAME)]


def _clock(v: Any) -> Any:
    """``"09:00"`` → ``time(9, 0)``.  YAML 1.1 reads an unquoted ``17:00`` as the number 1020."""
    if isinstance(v, bool) or isinstance(v, int):
        raise ValueError(f'write a time of day in quotes, e.g. "17:00" (YAML read {v!r} as a number)')
    if isinstance(v, time):
        return v
    if isinstance(v, str) and re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", v.strip()):
        h, m = v.strip().split(":")
        return time(int(h), int(m))
    raise ValueError(f"{str(v)[:40]!r} is not a time of day HH:MM (00:00 … 23:59)")


Clock = Annotated[time, BeforeValidator(_clock)]


def _zone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{v[:60]!r} is not an IANA time zone (e.g. Europe/Berlin, UTC)") from None
    return v


Zone = Annotated[str, AfterValidator(_zone)]


def _when(v: Any) -> Any:
    """A wall-clock ``YYYY-MM-DDTHH:MM[:SS]`` (the schedule's zone) or one with an offset."""
    if isinstance(v, datetime):
        return v
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
    raise ValueError(f"{str(v)[:40]!r} is not a date and time (2026-03-28T18:00, or with an offset)")


When = Annotated[datetime, BeforeValidator(_when)]


class PersonSpec(_Strict):
    """Someone who can be paged: by e-mail and/or Apprise URLs kept as secrets."""

    email: str | None = None
    notify: list[Annotated[str, Field(pattern=_SECRET)]] = Field(default_factory=list)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not _EMAIL.fullmatch(v):
            raise ValueError(f"{v[:60]!r} is not an e-mail address")
        return v


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_ALL_DAYS: list[Day] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class RestrictionSpec(_Strict):
    days: list[Day] = Field(
        default_factory=lambda: list(_ALL_DAYS), min_length=1
    )
    from_: Clock = Field(alias="from")
    to: Clock


class LayerSpec(_Strict):
    name: Name
    rotation: str = "weekly"
    start: date
    handoff: Clock = Field(default_factory=lambda: time(9, 0))
    members: list[Name] = Field(min_length=1, max_length=500)
    restrictions: list[RestrictionSpec] = Field(default_factory=list)

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, v: Any) -> Any:
        if isinstance(v, datetime):
            raise ValueError("give the first hand-off's date (YYYY-MM-DD); its time is 'handoff'")
        return v

    @field_validator("rotation")
    @classmethod
    def _rotation(cls, v: str) -> str:
        if v in ("daily", "weekly"):
            return v
        try:
            seconds = parse_duration(v)
        except ValueError:
            raise ValueError(f"{v[:40]!r}: use daily, weekly or a length such as 12h or 3d") from None
        if seconds < 3600 or seconds % 60:
            raise ValueError("a custom rotation is at least 1h, in whole minutes")
        return v

    @property
    def length(self) -> timedelta:
        if self.rotation == "daily":
            return timedelta(days=1)
        if self.rotation == "weekly":
            return timedelta(days=7)
        return timedelta(seconds=parse_duration(self.rotation))


class OverrideSpec(_Strict):
    person: Name
    start: When
    end: When


class ScheduleSpec(_Strict):
    time_zone: Zone = Field(alias="timeZone")
    layers: list[LayerSpec] = Field(min_length=1, max_length=20)
    overrides: list[OverrideSpec] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _consistent(self) -> ScheduleSpec:
        names = [layer.name for layer in self.layers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            i = max(i for i, n in enumerate(names) if n in dup)
            raise ValueError(f"@layers/{i}/name: layer names must be unique ({', '.join(sorted(dup))})")
        zone = ZoneInfo(self.time_zone)
        for i, o in enumerate(self.overrides):
            if _aware(o.end, zone) <= _aware(o.start, zone):
                raise ValueError(f"@overrides/{i}/end: {o.end.isoformat()} is not after start")
        return self


def _aware(t: datetime, zone: ZoneInfo) -> datetime:
    from shipwarden.domain.oncall.schedule import first_instant

    return t.astimezone(UTC) if t.tzinfo is not None else first_instant(t, zone)


class NotifyRef(_Strict):
    """Exactly one of: a person, whoever is on call in a schedule, or a channel (a secret name
    holding an Apprise URL)."""

    person: Name | None = None
    schedule: Name | None = None
    channel: Annotated[str, Field(pattern=_SECRET)] | None = None

    @model_validator(mode="after")
    def _one(self) -> NotifyRef:
        if sum(x is not None for x in (self.person, self.schedule, self.channel)) != 1:
            raise ValueError("name exactly one of 'person', 'schedule' or 'channel'")
        return self

    @property
    def kind(self) -> Literal["person", "schedule", "channel"]:
        return "person" if self.person else "schedule" if self.schedule else "channel"

    @property
    def name(self) -> str:
        return self.person or self.schedule or self.channel or ""


class LevelSpec(_Strict):
    notify: list[NotifyRef] = Field(min_length=1, max_length=50)
    timeout: PositiveDuration = 300.0


class EscalationSpec(_Strict):
    levels: list[LevelSpec] = Field(min_length=1, max_length=20)
    repeat: int = Field(0, ge=0, le=9)


class WatchdogSpec(_Strict):
    stall: PositiveDuration = 10.0
    notify: list[NotifyRef] = Field(min_length=1)


class OnCallPolicy(_Strict):
    people: dict[Name, PersonSpec] = Field(default_factory=dict)
    schedules: dict[Name, ScheduleSpec] = Field(default_factory=dict)
    escalation: dict[Name, EscalationSpec] = Field(default_factory=dict)
    services: dict[str, Name] = Field(default_factory=dict)
    default_escalation: Name | None = Field(None, alias="defaultEscalation")
    watchdog: WatchdogSpec | None = None
    link_expiry: PositiveDuration = Field(86400.0, alias="linkExpiry")

    @model_validator(mode="after")
    def _references(self) -> OnCallPolicy:
        """Every name used is declared.  Each problem is reported at its own line: the message
        carries its path below ``oncall`` (``@schedules/primary/layers/0/members/1: …``), which
        the policy loader turns into ``file:line`` (:func:`shipwarden.domain.policy.load_policy_text`)."""
        problems: list[tuple[tuple[str | int, ...], str]] = []

        def person(where: tuple[str | int, ...], name: str) -> None:
            if name not in self.people:
                problems.append((where, f"{name!r} is not in oncall.people"))

        def ref(where: tuple[str | int, ...], r: NotifyRef) -> None:
            if r.person is not None:
                person((*where, "person"), r.person)
            if r.schedule is not None and r.schedule not in self.schedules:
                problems.append(((*where, "schedule"), f"schedule {r.schedule!r} is not in oncall.schedules"))

        for sname, s in self.schedules.items():
            for li, layer in enumerate(s.layers):
                for mi, m in enumerate(layer.members):
                    person(("schedules", sname, "layers", li, "members", mi), m)
            for i, o in enumerate(s.overrides):
                person(("schedules", sname, "overrides", i, "person"), o.person)
        for ename, e in self.escalation.items():
            for i, level in enumerate(e.levels):
                for j, r in enumerate(level.notify):
                    ref(("escalation", ename, "levels", i, "notify", j), r)
        if self.watchdog is not None:
            for j, r in enumerate(self.watchdog.notify):
                ref(("watchdog", "notify", j), r)
        for svc, ename in self.services.items():
            if ename not in self.escalation:
                problems.append(
                    (("services", svc), f"escalation policy {ename!r} is not in oncall.escalation")
                )
        if self.default_escalation is not None and self.default_escalation not in self.escalation:
            problems.append(
                (("defaultEscalation",), f"{self.default_escalation!r} is not in oncall.escalation")
            )
        if problems:
            raise ValueError("\n".join(f"@{'/'.join(map(str, p))}: {m}" for p, m in problems[:20]))
        return self

    def schedule(self, name: str) -> Schedule:
        s = self.schedules[name]
        zone = ZoneInfo(s.time_zone)
        layers = tuple(
            Layer(
                name=layer.name,
                members=tuple(layer.members),
                start=datetime.combine(layer.start, layer.handoff),
                length=layer.length,
                restrictions=tuple(
                    Restriction(frozenset(WEEKDAYS.index(d) for d in r.days), r.from_, r.to)
                    for r in layer.restrictions
                ),
            )
            for layer in s.layers
        )
        overrides = tuple(Override(o.person, _aware(o.start, zone), _aware(o.end, zone)) for o in s.overrides)
        return Schedule(name, zone, layers, overrides)

    def escalation_for(self, service: str | None) -> str | None:
        """The escalation policy a service's pages follow (its own, else the default)."""
        if service is not None and service in self.services:
            return self.services[service]
        return self.default_escalation
