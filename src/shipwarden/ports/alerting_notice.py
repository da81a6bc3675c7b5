"""A :class:`~shipwarden.ports.alerting.GroupNotice` as the outbox stores it (JSON) and as people
read it (a title and a text body); shared by the pipeline and the delivery adapters."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, cast

from shipwarden.ports.alerting import AlertView, GroupNotice

__all__ = ["notice_from_json", "notice_to_json", "text", "webhook_body"]


def _iso(d: datetime | None) -> str | None:
    return None if d is None else d.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _dt(s: Any) -> datetime | None:
    return None if not s else datetime.fromisoformat(str(s).replace("Z", "+00:00"))


def notice_to_json(n: GroupNotice) -> dict[str, Any]:
    return {
        "key": n.key,
        "receiver": n.receiver,
        "seq": n.seq,
        "status": n.status,
        "group_labels": dict(n.group_labels),
        "common_labels": dict(n.common_labels),
        "common_annotations": dict(n.common_annotations),
        "dedup_key": n.dedup_key,
        "opened_at": _iso(n.opened_at),
        "context": list(n.context),
        "external_url": n.external_url,
        "alerts": [
            {
                "fingerprint": a.fingerprint,
                "status": a.status,
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "starts_at": _iso(a.starts_at),
                "ends_at": _iso(a.ends_at),
                "generator_url": a.generator_url,
            }
            for a in n.alerts
        ],
    }


def notice_from_json(d: Mapping[str, Any]) -> GroupNotice:
    opened = _dt(d["opened_at"])
    assert opened is not None
    return GroupNotice(
        key=d["key"],
        receiver=d["receiver"],
        seq=int(d["seq"]),
        status=cast(Literal["firing", "resolved"], d["status"]),
        group_labels=dict(d["group_labels"]),
        common_labels=dict(d["common_labels"]),
        common_annotations=dict(d["common_annotations"]),
        dedup_key=d["dedup_key"],
        opened_at=opened,
        context=tuple(d.get("context") or ()),
        external_url=d.get("external_url", ""),
        alerts=tuple(
            AlertView(
                fingerprint=a["fingerprint"],
                status=a["status"],
                labels=dict(a["labels"]),
                annotations=dict(a["annotations"]),
                starts_at=_dt(a.get("starts_at")),
                ends_at=_dt(a.get("ends_at")),
                generator_url=a.get("generator_url", ""),
            )
            for a in d["alerts"]
        ),
    )


def webhook_body(n: GroupNotice) -> dict[str, Any]:
    """The notice as Alertmanager's webhook payload (version 4), for generic webhook targets."""
    zero = "0001-01-01T00:00:00Z"
    return {
        "version": "4",
        "groupKey": n.key,
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": dict(n.group_labels),
        "commonLabels": dict(n.common_labels),
        "commonAnnotations": dict(n.common_annotations),
        "externalURL": n.external_url,
        "alerts": [
            {
                "status": a.status,
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "startsAt": _iso(a.starts_at) or zero,
                "endsAt": _iso(a.ends_at) or zero,
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint,
            }
            for a in n.alerts
        ],
    }


def text(n: GroupNotice) -> tuple[str, str]:
    """A title and a plain-text body for chat and e-mail."""
    firing = [a for a in n.alerts if a.status == "firing"]
    resolved = [a for a in n.alerts if a.status == "resolved"]
    name = n.common_labels.get("alertname") or n.group_labels.get("alertname") or "alerts"
    svc = n.service
    where = f" {svc}" if svc else ""
    if n.status == "resolved":
        title = f"[RESOLVED]{where}: {name}"
    else:
        sev = n.severity.upper() or "FIRING"
        title = f"[{sev}:{len(firing)}]{where}: {name}"
    lines: list[str] = []
    for label, group in (("Firing", firing), ("Resolved", resolved)):
        if group:
            lines.append(f"{label}:")
            for a in group[:50]:
                summary = a.annotations.get("summary") or a.annotations.get("description") or ""
                lbl = ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()) if k != "alertname")
                lines.append(f"- {a.name}: {summary} ({lbl})".replace(":  (", ": ("))
            if len(group) > 50:
                lines.append(f"… and {len(group) - 50} more")
    if n.context:
        lines.append("Recent changes to this service:")
        lines.extend(f"- {c}" for c in n.context)
    lines.append(f"group: {n.key}  notice: {n.notice_id}")
    return title, "\n".join(lines)
