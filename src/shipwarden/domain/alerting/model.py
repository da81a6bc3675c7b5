"""Alerts, their fingerprints and label matchers (pure).

An alert is identified by its label set, exactly as Prometheus and Alertmanager identify it:
the fingerprint is FNV-1a 64 over the label names in sorted order, each name and value followed
by the byte ``0xff`` (``prometheus/common`` ``model/signature.go`` ``labelSetToFingerprint``),
printed as 16 hex digits — so the fingerprint shipwarden computes for an alert it received from
Alertmanager is the one Alertmanager printed, and an alert's identity survives a restart.

Matchers follow Alertmanager's route and inhibition semantics: ``match`` is equality,
``match_re`` a regular expression anchored at both ends (``^(?:re)$``); a label that is absent
has the value ``""``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Alert", "Matcher", "fingerprint", "LABEL_NAME"]

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


_SEEN: dict[tuple[tuple[str, str], ...], str] = {}
_SEEN_MAX = 16_384


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set (16 lower-case hex digits).

    The byte loop costs ~15 us in Python; a label set seen before (Prometheus re-sends every
    firing alert) is answered from a bounded memo keyed by its sorted items (~1 us)."""
    key = tuple(sorted(labels.items()))
    fp = _SEEN.get(key)
    if fp is None:
        fp = _fnv(key)
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN[key] = fp
    return fp


def _fnv(items: tuple[tuple[str, str], ...]) -> str:
    data = b"".join(b"%s\xff%s\xff" % (name.encode(), value.encode()) for name, value in items)
    h = _FNV_OFFSET
    for byte in data:  # one flat loop: ~100 bytes per alert
        h = ((h ^ byte) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


@dataclass(frozen=True)
class Alert:
    """One alert as the pipeline keeps it.  ``ends_at`` in the past (or equal to ``now``) means
    resolved; ``None`` means firing until told otherwise.  Times are Unix seconds."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: float = 0.0
    ends_at: float | None = None
    generator_url: str = ""
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", fingerprint(self.labels))

    def status(self, now: float) -> Literal["firing", "resolved"]:
        return "resolved" if self.ends_at is not None and self.ends_at <= now else "firing"

    def resolved(self, now: float) -> bool:
        return self.status(now) == "resolved"

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")


@dataclass(frozen=True)
class Matcher:
    """``name = value`` (``regex=False``) or ``name =~ value`` (anchored); ``negate`` for ``!=`` / ``!~``."""

    name: str
    value: str
    regex: bool = False
    negate: bool = False

    def __post_init__(self) -> None:
        if not LABEL_NAME.fullmatch(self.name):
            raise ValueError(f"{self.name!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")
        if self.regex:
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(
                    f"label {self.name}: invalid regular expression {self.value!r}: {exc}"
                ) from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        hit = re.fullmatch(self.value, v) is not None if self.regex else v == self.value
        return hit != self.negate

    def __str__(self) -> str:
        op = {(False, False): "=", (True, False): "=~", (False, True): "!=", (True, True): "!~"}
        return f"{self.name}{op[(self.regex, self.negate)]}{self.value!r}"

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``name=value``, ``name!=value``, ``name=~re``, ``name!~re`` (CLI silences)."""
        m = re.fullmatch(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*", text)
        if not m:
            raise ValueError(
                f"{text!r} is not a matcher: write name=value, name!=value, name=~regex or name!~regex"
            )
        name, op, value = m.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        return cls(name, value, regex="~" in op, negate=op.startswith("!"))


def matches_all(matchers: tuple[Matcher, ...] | list[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
