"""The routing tree, inhibition and silences (pure), with Alertmanager's semantics.

**Routing** (``dispatch/route.go``): an alert enters at the root, which matches everything.  A
route that matches tries its children in order; each matching child contributes its own
matches, and the search stops at the first matching child whose ``continue`` is false.  When no
child matched, the route itself is the match.  Children inherit the receiver, ``group_by`` and
the three timings from their parent unless they set them.  The group key is the route's path
plus the alert's values of the route's ``group_by`` labels (``...`` groups by every label).

**Inhibition** (``inhibit/inhibit.go``): a firing alert that matches a rule's source matchers
mutes every alert matching its target matchers that has the same values of the ``equal``
labels (an alert never inhibits itself).  **Rollbacks**: while a rollback of a service is in
progress, alerts of that service that *started after* the rollback began are its own symptoms
and are muted until ``grace`` after it ended; alerts that fired before (the cause) are not.

**Silences** mute alerts matching all their matchers between ``starts_at`` and ``ends_at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from shipwarden.domain.alerting.model import Alert, Matcher, matches_all

__all__ = [
    "InhibitRule",
    "Inhibitor",
    "Rollback",
    "Route",
    "Silence",
    "group_key",
    "inhibited",
    "match_routes",
    "muted",
    "silenced_by",
]


@dataclass(frozen=True)
class Route:
    """A compiled route: every inherited value resolved."""

    id: str
    """The route's path from the root, e.g. ``/0/2`` (``/`` is the root)."""
    receiver: str
    matchers: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] = ()
    group_by_all: bool = False
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float = 14400.0
    continue_: bool = False
    routes: tuple[Route, ...] = ()

    def walk(self) -> Iterable[Route]:
        yield self
        for r in self.routes:
            yield from r.walk()


def match_routes(route: Route, labels: Mapping[str, str], *, root: bool = True) -> list[Route]:
    """The routes an alert with ``labels`` is grouped under (Alertmanager's ``Route.Match``)."""
    if not root and not matches_all(route.matchers, labels):
        return []
    found: list[Route] = []
    for child in route.routes:
        hits = match_routes(child, labels, root=False)
        found.extend(hits)
        if hits and not child.continue_:
            break
    return found or [route]


def group_labels(route: Route, labels: Mapping[str, str]) -> dict[str, str]:
    if route.group_by_all:
        return dict(labels)
    return {n: labels[n] for n in route.group_by if n in labels}


def group_key(route: Route, labels: Mapping[str, str]) -> str:
    """``{route id}:{name="value",...}`` with the group labels sorted by name."""
    g = group_labels(route, labels)
    inner = ",".join(f"{k}={_quote(v)}" for k, v in sorted(g.items()))
    return f"{route.id}:{{{inner}}}"


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class InhibitRule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()


class Inhibitor:
    """The inhibitions in force for one set of firing alerts, indexed once: per rule, the
    sources' values of the ``equal`` labels (so checking an alert costs one lookup per rule,
    not a scan of every firing alert)."""

    def __init__(self, rules: Sequence[InhibitRule], firing: Iterable[Alert]) -> None:
        self.rules = list(rules)
        self._index: list[dict[tuple[str, ...], set[str]]] = [{} for _ in self.rules]
        for src in firing:
            for i, rule in enumerate(self.rules):
                if matches_all(rule.source, src.labels):
                    key = tuple(src.labels.get(n, "") for n in rule.equal)
                    self._index[i].setdefault(key, set()).add(src.fingerprint)

    def inhibits(self, alert: Alert) -> bool:
        for i, rule in enumerate(self.rules):
            if not matches_all(rule.target, alert.labels):
                continue
            sources = self._index[i].get(tuple(alert.labels.get(n, "") for n in rule.equal))
            if sources and (len(sources) > 1 or alert.fingerprint not in sources):
                return True  # an alert never inhibits itself
        return False


def inhibited(alert: Alert, firing: Iterable[Alert], rules: Sequence[InhibitRule]) -> bool:
    """Whether a firing alert of ``firing`` inhibits ``alert`` under ``rules``."""
    return Inhibitor(rules, firing).inhibits(alert)


@dataclass(frozen=True)
class Rollback:
    """A rollback of ``service`` that started at ``started_at`` and ended at ``ended_at`` (or not yet)."""

    service: str
    started_at: float
    ended_at: float | None = None


def rollback_muted(alert: Alert, rollbacks: Iterable[Rollback], now: float, grace: float) -> bool:
    service = alert.labels.get("service")
    if not service or alert.labels.get("source") == "rollout":
        return False  # the rollback's own announcement is not one of its symptoms
    for rb in rollbacks:
        if rb.service != service or alert.starts_at < rb.started_at:
            continue
        if rb.ended_at is None or now <= rb.ended_at + grace:
            return True
    return False


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    owner: str
    comment: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def state(self, now: float) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"


def silenced_by(alert: Alert, silences: Iterable[Silence], now: float) -> list[str]:
    return [s.id for s in silences if s.active(now) and matches_all(s.matchers, alert.labels)]


def muted(
    alert: Alert,
    *,
    now: float,
    firing: Iterable[Alert] | Inhibitor,
    rules: Sequence[InhibitRule],
    silences: Iterable[Silence],
    rollbacks: Iterable[Rollback] = (),
    rollback_grace: float = 60.0,
) -> str | None:
    """Why ``alert`` is muted right now (``"inhibited"``, ``"silenced"``, ``"rollback"``), or ``None``.
    ``firing`` may be an :class:`Inhibitor` built once for many alerts (then ``rules`` is unused)."""
    if rollback_muted(alert, rollbacks, now, rollback_grace):
        return "rollback"
    inhibitor = firing if isinstance(firing, Inhibitor) else Inhibitor(rules, firing)
    if inhibitor.inhibits(alert):
        return "inhibited"
    if silenced_by(alert, silences, now):
        return "silenced"
    return None
