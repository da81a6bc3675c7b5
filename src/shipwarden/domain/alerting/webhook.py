"""Alertmanager's webhook payload (version ``"4"``) and its alerts API body, as contracts (pure).

The webhook (``notify/webhook/webhook.go``, documented in Alertmanager's
``docs/configuration.md`` ``<webhook_config>``)::

    {"version": "4", "groupKey": str, "truncatedAlerts": int, "status": "firing"|"resolved",
     "receiver": str, "groupLabels": {..}, "commonLabels": {..}, "commonAnnotations": {..},
     "externalURL": str,
     "alerts": [{"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL",
                 "fingerprint"}]}

Times are RFC 3339; a firing alert's ``endsAt`` is Go's zero time ``0001-01-01T00:00:00Z``
(or, from Alertmanager, the moment it will be considered resolved if not re-sent, which
shipwarden does not guess at: it waits for the resolve).  Unknown keys are ignored (the
payload grows over versions); ``version`` other than ``"4"`` is refused.

The same module reads the body Prometheus POSTs to an Alertmanager (``/api/v2/alerts``: a list
of ``{labels, annotations, startsAt, endsAt, generatorURL}``), so Prometheus can also send to
shipwarden directly, without an Alertmanager in between.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shipwarden.domain.alerting.model import LABEL_NAME, Alert

__all__ = ["PostableAlert", "WebhookAlert", "WebhookMessage", "MAX_ALERTS"]

MAX_ALERTS = 10_000
_MAX_LABELS = 64
_MAX_VALUE = 4096


class _Open(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


_NAMES = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*(?:,[a-zA-Z_][a-zA-Z0-9_]*)*")


def _check_labels(v: dict[str, str], what: str) -> dict[str, str]:
    if len(v) > _MAX_LABELS:
        raise ValueError(f"more than {_MAX_LABELS} {what}")
    # the common case in one regular expression over all the names (a name holding a "," is no
    # label name, and shows as one "," too many) and one pass over the lengths
    names = ",".join(v)
    if (
        v
        and _NAMES.fullmatch(names) is not None
        and names.count(",") == len(v) - 1
        and max(map(len, v.values())) <= _MAX_VALUE
    ):
        return v
    for k, val in v.items():
        if not LABEL_NAME.fullmatch(k):
            raise ValueError(f"{k[:60]!r} is not a label name")
        if len(val) > _MAX_VALUE:
            raise ValueError(f"{what} {k!r} is longer than {_MAX_VALUE} characters")
    return v


def _ts(d: datetime | None) -> float | None:
    """``None`` for Go's zero time and anything before 1970."""
    if d is None or d.year < 1971:
        return None
    return d.timestamp()


class PostableAlert(_Open):
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = Field(default=None, alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL", max_length=4096)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("an alert needs at least one label")
        return _check_labels(v, "labels")

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v, "annotations")

    def alert(self, now: float, *, resolved: bool | None = None, fingerprint: str = "") -> Alert:
        starts = _ts(self.starts_at)
        ends = _ts(self.ends_at)
        if resolved is True and (ends is None or ends > now):
            ends = now  # the sender says it is resolved: it is, now
        if resolved is False:
            ends = None
        return Alert(
            labels=dict(self.labels),
            annotations=dict(self.annotations),
            starts_at=starts if starts is not None else now,
            ends_at=ends,
            generator_url=self.generator_url,
            fingerprint=fingerprint,
        )


_FINGERPRINT = re.compile(r"[0-9a-f]{16}")


class WebhookAlert(PostableAlert):
    status: Literal["firing", "resolved"]
    fingerprint: str = ""

    def alert(self, now: float, *, resolved: bool | None = None, fingerprint: str = "") -> Alert:
        """As :meth:`PostableAlert.alert`, keeping Alertmanager's ``fingerprint`` when it has
        the form Alertmanager prints (16 lower-case hex digits): Alertmanager computes it over
        the very label set it sends (``model.LabelSet.Fingerprint``, FNV-1a 64), which is
        :func:`~shipwarden.domain.alerting.model.fingerprint`'s definition, so reusing it saves
        the hashing without changing any alert's identity.  Anything else (empty, another
        form) is ignored and the fingerprint is computed from the labels."""
        fp = fingerprint or self.fingerprint
        if fp and not _FINGERPRINT.fullmatch(fp):
            fp = ""
        return super().alert(now, resolved=resolved, fingerprint=fp)


class WebhookMessage(_Open):
    version: Literal["4"]
    group_key: str = Field(alias="groupKey", max_length=8192)
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = Field(max_length=1024)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL", max_length=4096)
    alerts: list[WebhookAlert] = Field(max_length=MAX_ALERTS)

    def to_alerts(self, now: float) -> list[Alert]:
        """The alerts, resolved ones ending when Alertmanager said (else now)."""
        return [a.alert(now, resolved=a.status == "resolved") for a in self.alerts]
