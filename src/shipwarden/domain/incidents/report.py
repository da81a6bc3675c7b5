"""The post-incident report as data, and its offline check against the audit chain.

:func:`build_report` assembles the document (format ``shipwarden.incident-report.v1``) that the
HTML/PDF renderers lay out and that is written beside them as ``report.json``: the incident,
its times and impact, the timeline (each line with its audit entry's ``seq``, ``hash`` and
canonical text), the ranked suspects, the metric series with their deployment and alert
markers, the action items, and the sections people fill in (root cause, lessons).

:func:`verify_report` checks such a document offline.  For every timeline line: the hash is the
SHA-256 of the canonical text, the canonical text says the same ``seq``, time, action, actor,
service and deployment as the line, and — given the ``seq → hash`` map of a verified audit
export (``shipwarden audit export`` / ``audit verify-export``) — the chain holds that very entry
at that seq.  So a report cannot put words in the audit log's mouth without the check saying
which line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shipwarden.domain.audit import format_ts
from shipwarden.domain.incidents.correlation import Ranking
from shipwarden.domain.incidents.impact import Affected, History, Times
from shipwarden.domain.incidents.lifecycle import ActionItem, Incident
from shipwarden.domain.incidents.timeline import TimelineEntry

__all__ = ["FORMAT", "Marker", "ReportProblem", "build_report", "incident_json", "item_json", "verify_report"]

FORMAT = "shipwarden.incident-report.v1"


def _t(d: datetime | None) -> str | None:
    return None if d is None else format_ts(d)


def incident_json(inc: Incident) -> dict[str, Any]:
    return {
        "id": inc.id,
        "title": inc.title,
        "service": inc.service,
        "severity": inc.severity.value,
        "status": inc.status.value,
        "commander": inc.commander,
        "opened_at": _t(inc.opened_at),
        "opened_by": inc.opened_by,
        "onset_at": _t(inc.onset_at),
        "detected_at": _t(inc.detected_at),
        "acknowledged_at": _t(inc.acknowledged_at),
        "identified_at": _t(inc.identified_at),
        "mitigated_at": _t(inc.mitigated_at),
        "restored_at": _t(inc.restored_at),
        "resolved_at": _t(inc.resolved_at),
        "alert_fingerprint": inc.alert_fingerprint,
        "summary": inc.summary,
        "notes": dict(inc.notes),
    }


def item_json(i: ActionItem) -> dict[str, Any]:
    return {
        "number": i.number,
        "title": i.title,
        "owner": i.owner,
        "status": i.status,
        "due": i.due,
        "created_at": _t(i.created_at),
        "created_by": i.created_by,
        "closed_at": _t(i.closed_at),
        "note": i.note,
    }


@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical line on the metric plots: a deployment step or an alert, with its audit seq."""

    at: float
    kind: str
    label: str
    seq: int


_MARKED = {
    "deployment": "deployment",
    "alert": "alert",
    "operator": "deployment",
    "database": "database",
    "config": "config",
}
_MARKED_STEPS = ("rollout.canary_step", "rollout.promoting", "rollout.rolling_back", "rollout.rolled_back")


def markers(timeline: Sequence[TimelineEntry]) -> list[Marker]:
    out = []
    for t in timeline:
        kind = _MARKED.get(t.kind)
        if kind is None and t.action in _MARKED_STEPS:
            kind = "deployment"
        if t.kind == "incident" and t.action in ("incident.opened", "incident.rollback"):
            kind = "incident"
        if kind is None:
            continue
        out.append(Marker(t.at.timestamp(), kind, t.title[:60], t.seq))
    return out


def build_report(
    *,
    incident: Incident,
    times: Times,
    affected: Affected | None,
    timeline: Sequence[TimelineEntry],
    ranking: Ranking,
    history: History,
    items: Sequence[ActionItem],
    now: datetime,
    audit_head: tuple[int, str] | None,
    links: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The report document (JSON-ready)."""
    top = ranking.top
    return {
        "format": FORMAT,
        "created_at": format_ts(now),
        "incident": incident_json(incident),
        "times": times.to_json(),
        "affected": affected.to_json() if affected else None,
        "detection": {
            "alert": incident.alert_fingerprint,
            "by": "alert" if incident.alert_fingerprint else "opened by hand",
        },
        "timeline": [t.to_json() for t in timeline],
        "correlation": {
            **ranking.to_json(),
            "verdict": "no change caused this"
            if top is None
            else f"suspect: {top.candidate.title} ({top.probability:.0%})",
        },
        "metrics": {
            "source": history.source,
            "step_s": history.step_s,
            "requests": [list(p) for p in history.requests],
            "errors": [list(p) for p in history.errors],
            "latency_ms": [list(p) for p in history.latency_ms],
            "by_version": {k: [list(p) for p in v] for k, v in history.by_version.items()},
        },
        "markers": [{"at": m.at, "kind": m.kind, "label": m.label, "seq": m.seq} for m in markers(timeline)],
        "action_items": [item_json(i) for i in items],
        "sections": {
            "root_cause": incident.notes.get("root_cause", ""),
            "lessons": incident.notes.get("lessons", ""),
        },
        "audit_head": {"seq": audit_head[0], "hash": audit_head[1]} if audit_head else None,
        "links": dict(links or {}),
    }


# -- offline check -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReportProblem:
    index: int
    seq: Any
    message: str

    def __str__(self) -> str:
        return f"timeline[{self.index}] (seq {self.seq}): {self.message}"


_SAME = ("ts", "action", "actor", "service", "deployment_id", "outcome")


def verify_report(doc: Mapping[str, Any], chain: Mapping[int, str] | None = None) -> list[ReportProblem]:
    """Every problem with the report's timeline (empty: it checks out).

    ``chain``: ``seq → hash`` of a verified audit export covering the timeline; without it each
    line is checked against its own canonical text only."""
    if doc.get("format") != FORMAT:
        return [ReportProblem(-1, None, f"not an incident report (format {str(doc.get('format'))[:60]!r})")]
    lines = doc.get("timeline")
    if not isinstance(lines, list):
        return [ReportProblem(-1, None, "the report has no timeline")]
    problems: list[ReportProblem] = []
    for i, line in enumerate(lines):
        if not isinstance(line, Mapping):
            problems.append(ReportProblem(i, None, "not a timeline entry"))
            continue
        seq, digest, canonical = line.get("seq"), line.get("hash"), line.get("canonical")
        if not isinstance(seq, int) or not isinstance(digest, str) or not isinstance(canonical, str):
            problems.append(ReportProblem(i, seq, "missing seq, hash or canonical text"))
            continue
        if hashlib.sha256(canonical.encode("utf-8")).hexdigest() != digest:
            problems.append(ReportProblem(i, seq, "hash is not the SHA-256 of the canonical text"))
            continue
        try:
            body = json.loads(canonical)
        except ValueError:
            problems.append(ReportProblem(i, seq, "canonical text is not JSON"))
            continue
        if not isinstance(body, dict) or body.get("seq") != seq:
            problems.append(ReportProblem(i, seq, "canonical text is of another seq"))
            continue
        differ = [k for k in _SAME if body.get(k) != line.get(k)]
        if differ:
            what = ", ".join(differ)
            problems.append(ReportProblem(i, seq, f"line says other {what} than its audit entry"))
            continue
        if chain is not None:
            have = chain.get(seq)
            if have is None:
                problems.append(ReportProblem(i, seq, "the audit export holds no entry with this seq"))
            elif have != digest:
                problems.append(ReportProblem(i, seq, "the audit chain holds a different entry at this seq"))
    return problems
