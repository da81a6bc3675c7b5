"""PagerDuty Events API v2 (``POST /v2/enqueue``), one routing key per channel.

Contract followed (PagerDuty developer docs, "Send an Alert Event" and "Events API v2
Overview"): JSON body with ``routing_key`` (the integration key), ``event_action`` ∈
``trigger | acknowledge | resolve`` and ``dedup_key`` (≤ 255 characters, correlating a
trigger with its resolve); a trigger carries ``payload{summary (≤ 1024 characters), source,
severity ∈ critical | error | warning | info, timestamp, component, group, class,
custom_details}`` and may carry ``links[{href, text}]`` and ``client``/``client_url``.  Answers:
``202`` accepted; ``400`` invalid event (not retried); ``429`` throttled and ``5xx`` or a
network error (retried later); bodies up to 512 KB.

A group's notice maps to one PagerDuty alert: every firing notice is a ``trigger`` with the
group's stable ``dedup_key`` (PagerDuty folds repeated triggers into the open alert), the
all-clear a ``resolve`` with the same key.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from shipwarden.ports.alerting import DeliveryOutcome, GroupNotice
from shipwarden.ports.alerting_notice import text

__all__ = ["DEFAULT_URL", "PagerDutyChannel", "event_body"]

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
_MAX_BODY = 512 * 1024
_SEVERITY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}


def event_body(notice: GroupNotice, routing_key: str, *, client_url: str = "") -> dict[str, Any]:
    if notice.status == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": notice.dedup_key}
    title, body = text(notice)
    firing = notice.firing
    first = firing[0] if firing else None
    details: dict[str, Any] = {
        "firing": len(firing),
        "alerts": [
            {"alertname": a.name, "labels": dict(a.labels), "annotations": dict(a.annotations)}
            for a in firing[:20]
        ],
        "group": notice.key,
        "notice": notice.notice_id,
        "recent_changes": list(notice.context),
        "text": body,
    }
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": notice.dedup_key,
        "payload": {
            "summary": title[:1024],
            "source": (notice.service or (first.labels.get("instance") if first else None) or "shipwarden")[
                :255
            ],
            "severity": _SEVERITY.get(notice.severity, "error"),
            "timestamp": notice.opened_at.isoformat(),
            "component": notice.common_labels.get("service", "") or None,
            "group": notice.common_labels.get("team", "") or None,
            "class": notice.common_labels.get("alertname", "") or None,
            "custom_details": details,
        },
        "client": "shipwarden",
    }
    event["payload"] = {k: v for k, v in event["payload"].items() if v is not None}
    if client_url:
        event["client_url"] = client_url
    if len(json.dumps(event)) > _MAX_BODY:  # keep under the documented size limit
        details["alerts"] = details["alerts"][:3]
        details["text"] = body[:20_000]
    return event


class PagerDutyChannel:
    def __init__(
        self,
        name: str,
        routing_key: str,
        *,
        url: str = DEFAULT_URL,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        self._name, self._key, self._url = name, routing_key, url
        self._client = client or httpx.Client(timeout=timeout)

    @property
    def name(self) -> str:
        return f"pagerduty:{self._name}"

    def deliver(self, notice: GroupNotice) -> DeliveryOutcome:
        body = event_body(notice, self._key, client_url=notice.external_url)
        try:
            r = self._client.post(self._url, json=body)
        except httpx.HTTPError as exc:
            return DeliveryOutcome(False, f"network error: {type(exc).__name__}")
        if r.status_code == 202 or 200 <= r.status_code < 300:
            return DeliveryOutcome(True, f"{r.status_code} {body['event_action']}")
        detail = f"{r.status_code}: {r.text[:300]}"
        if r.status_code == 400:
            return DeliveryOutcome(False, f"invalid event: {detail}", retry=False)
        return DeliveryOutcome(False, detail)
