"""Alertmanager's per-alert ``fingerprint`` in the webhook: reused when it has Alertmanager's
form (it is the same FNV-1a 64 of the same label set), ignored otherwise."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shipwarden.domain.alerting import fingerprint
from shipwarden.domain.alerting.model import _fnv
from shipwarden.domain.alerting.webhook import WebhookMessage

LABELS = {"alertname": "High", "service": "web", "severity": "critical"}


def _message(fp: str, labels: dict[str, str] | None = None) -> WebhookMessage:
    alert: dict[str, Any] = {
        "status": "firing",
        "labels": labels or LABELS,
        "startsAt": "2026-12-03T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": fp,
    }
    return WebhookMessage.model_validate(
        {"version": "4", "groupKey": "{}", "status": "firing", "receiver": "r", "alerts": [alert]}
    )


def test_alertmanagers_fingerprint_is_kept() -> None:
    (a,) = _message("0123456789abcdef").to_alerts(0.0)
    assert a.fingerprint == "0123456789abcdef"


def test_a_fingerprint_of_another_form_is_recomputed_from_the_labels() -> None:
    for bad in ("", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0", "zz23456789abcdef"):
        (a,) = _message(bad).to_alerts(0.0)
        assert a.fingerprint == fingerprint(LABELS), bad


_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_names, st.text(max_size=12), min_size=1, max_size=6))
def test_the_memoised_fingerprint_is_the_hash_of_the_sorted_label_set(labels: dict[str, str]) -> None:
    want = _fnv(tuple(sorted(labels.items())))
    assert fingerprint(labels) == want
    assert fingerprint(dict(reversed(list(labels.items())))) == want  # from the memo, same answer
