"""The ``alerting:`` section of the policy: receivers, the routing tree, inhibitions.

::

    alerting:
      receivers:
        - name: ops
          apprise: [OPS_SLACK_URL, OPS_MAIL_URL]  # names of secrets holding Apprise URLs
        - name: pager
          pagerduty: [PD_ROUTING_KEY]           # names of secrets holding Events API v2 routing keys
        - name: primary
          escalation: primary                   # an escalation policy (on-call) handles the group
      route:                                    # Alertmanager's routing tree; snake_case accepted
        receiver: ops
        groupBy: [alertname, service]
        groupWait: 2s
        groupInterval: 1m
        repeatInterval: 4h
        routes:
          - match: {severity: critical}
            receiver: pager
            continue: true
          - matchRe: {service: "pay.*"}
            receiver: primary
      inhibitRules:                             # default: a critical silences its warning
        - sourceMatch: {severity: critical}
          targetMatch: {severity: warning}
          equal: [alertname, service]
      rollbackGrace: 60s                        # a rollback mutes the symptoms it causes

Receivers name secrets, never URLs or keys: the secrets are resolved when a notice is
delivered, and nothing prints them.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from shipwarden.domain._base import Duration, PositiveDuration, _Strict, check_env_name
from shipwarden.domain.alerting.model import LABEL_NAME, Matcher
from shipwarden.domain.alerting.routing import InhibitRule, Route

__all__ = ["AlertingPolicy", "InhibitSpec", "ReceiverSpec", "RouteSpec", "DEFAULT_INHIBIT"]

_RECEIVER = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _labels(v: dict[str, str]) -> dict[str, str]:
    for k in v:
        if not LABEL_NAME.fullmatch(k):
            raise ValueError(f"{k!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return v


def _regexes(v: dict[str, str]) -> dict[str, str]:
    _labels(v)
    for k, r in v.items():
        try:
            re.compile(r)
        except re.error as exc:
            raise ValueError(f"{k}: invalid regular expression {r!r}: {exc}") from None
    return v


def _matchers(eq: dict[str, str], rx: dict[str, str]) -> tuple[Matcher, ...]:
    return tuple(Matcher(k, v) for k, v in sorted(eq.items())) + tuple(
        Matcher(k, v, regex=True) for k, v in sorted(rx.items())
    )


class ReceiverSpec(_Strict):
    name: str = Field(pattern=_RECEIVER)
    apprise: list[str] = Field(default_factory=list, max_length=20)
    pagerduty: list[str] = Field(default_factory=list, max_length=20)
    escalation: str | None = Field(default=None, pattern=_RECEIVER)
    send_resolved: bool = Field(default=True, alias="sendResolved")

    @field_validator("apprise", "pagerduty")
    @classmethod
    def _secret_names(cls, v: list[str]) -> list[str]:
        for n in v:
            check_env_name(n)
        return v

    @model_validator(mode="after")
    def _something(self) -> ReceiverSpec:
        if not (self.apprise or self.pagerduty or self.escalation):
            raise ValueError(f"receiver {self.name!r} needs 'apprise', 'pagerduty' or 'escalation'")
        return self


class RouteSpec(_Strict):
    receiver: str | None = Field(default=None, pattern=_RECEIVER)
    match: dict[str, str] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict, alias="matchRe")
    group_by: list[str] | None = Field(default=None, alias="groupBy")
    group_wait: Duration | None = Field(default=None, alias="groupWait")
    group_interval: PositiveDuration | None = Field(default=None, alias="groupInterval")
    repeat_interval: PositiveDuration | None = Field(default=None, alias="repeatInterval")
    continue_: bool = Field(default=False, alias="continue")
    routes: list[RouteSpec] = Field(default_factory=list, max_length=200)

    @field_validator("match")
    @classmethod
    def _v_match(cls, v: dict[str, str]) -> dict[str, str]:
        return _labels(v)

    @field_validator("match_re")
    @classmethod
    def _v_match_re(cls, v: dict[str, str]) -> dict[str, str]:
        return _regexes(v)

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            for n in v:
                if n != "..." and not LABEL_NAME.fullmatch(n):
                    raise ValueError(f"{n!r} is not a label name (or '...' for all labels)")
            if "..." in v and len(v) > 1:
                raise ValueError("'...' groups by every label; list nothing else with it")
        return v

    def compile(self, parent: Route | None, path: str) -> Route:
        receiver = self.receiver or (parent.receiver if parent else None)
        if receiver is None:
            raise ValueError("the root route needs a 'receiver'")
        if self.group_by is not None:
            group_by, by_all = tuple(n for n in self.group_by if n != "..."), "..." in self.group_by
        elif parent is not None:
            group_by, by_all = parent.group_by, parent.group_by_all
        else:
            group_by, by_all = (), False
        base = parent or Route(id="/", receiver=receiver)
        node = Route(
            id=path,
            receiver=receiver,
            matchers=_matchers(self.match, self.match_re),
            group_by=group_by,
            group_by_all=by_all,
            group_wait=self.group_wait if self.group_wait is not None else base.group_wait,
            group_interval=self.group_interval if self.group_interval is not None else base.group_interval,
            repeat_interval=self.repeat_interval
            if self.repeat_interval is not None
            else base.repeat_interval,
            continue_=self.continue_,
        )
        children = tuple(c.compile(node, f"{path.rstrip('/')}/{i}") for i, c in enumerate(self.routes))
        return Route(**{**node.__dict__, "routes": children})


class InhibitSpec(_Strict):
    source_match: dict[str, str] = Field(default_factory=dict, alias="sourceMatch")
    source_match_re: dict[str, str] = Field(default_factory=dict, alias="sourceMatchRe")
    target_match: dict[str, str] = Field(default_factory=dict, alias="targetMatch")
    target_match_re: dict[str, str] = Field(default_factory=dict, alias="targetMatchRe")
    equal: list[str] = Field(default_factory=list)

    @field_validator("source_match", "target_match")
    @classmethod
    def _v1(cls, v: dict[str, str]) -> dict[str, str]:
        return _labels(v)

    @field_validator("source_match_re", "target_match_re")
    @classmethod
    def _v2(cls, v: dict[str, str]) -> dict[str, str]:
        return _regexes(v)

    @field_validator("equal")
    @classmethod
    def _equal(cls, v: list[str]) -> list[str]:
        for n in v:
            if not LABEL_NAME.fullmatch(n):
                raise ValueError(f"{n!r} is not a label name")
        return v

    def compile(self) -> InhibitRule:
        return InhibitRule(
            source=_matchers(self.source_match, self.source_match_re),
            target=_matchers(self.target_match, self.target_match_re),
            equal=tuple(self.equal),
        )


DEFAULT_INHIBIT = InhibitSpec.model_validate(
    {
        "sourceMatch": {"severity": "critical"},
        "targetMatch": {"severity": "warning"},
        "equal": ["alertname", "service"],
    }
)


class AlertingPolicy(_Strict):
    receivers: list[ReceiverSpec] = Field(min_length=1, max_length=200)
    route: RouteSpec
    inhibit_rules: list[InhibitSpec] = Field(default_factory=lambda: [DEFAULT_INHIBIT], alias="inhibitRules")
    rollback_grace: Duration = Field(default=60.0, alias="rollbackGrace")

    @model_validator(mode="after")
    def _receivers_known(self) -> AlertingPolicy:
        names = [r.name for r in self.receivers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"receiver(s) declared twice: {', '.join(dup)}")
        tree = self.tree()
        for r in tree.walk():
            if r.receiver not in names:
                raise ValueError(
                    f"route {r.id} sends to receiver {r.receiver!r}, which is not declared "
                    f"(receivers: {', '.join(names)})"
                )
        return self

    def tree(self) -> Route:
        return self.route.compile(None, "/")

    def inhibitions(self) -> list[InhibitRule]:
        return [i.compile() for i in self.inhibit_rules]

    def receiver(self, name: str) -> ReceiverSpec:
        for r in self.receivers:
            if r.name == name:
                return r
        raise KeyError(name)
