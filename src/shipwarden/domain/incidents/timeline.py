"""The incident's timeline, assembled from the audit log — every line is one audit entry.

Everything shipwarden does is recorded in the hash-chained audit log in the transaction of the
change itself: deployments and each of their steps (``deployment.*``, ``rollout.*``,
``operator.*``), changes, merges and approvals (``change.*``, ``delivery.*``), alerts and the
notifications they sent (``alert.*`` and alerting's own entries), database failovers and
restores (``dr.*``), secrets (``secret.*``), and the incident's own actions (``incident.*``).
So the timeline is a selection of audit entries, never a second record: each
:class:`TimelineEntry` carries its entry's ``seq`` and ``hash`` (and the canonical text
the hash is over), which is what lets a report be checked against an audit export offline
(:mod:`.verification`).

What is selected (:func:`assemble`): entries in the window (``since`` … ``until``) that are
about the incident (``detail.incident``), about the affected services or the services related
to them (their database, their dependencies), about a deployment or change that is a suspect,
or have installation-wide reach (secrets).  Access decisions, webhook deliveries and Kubernetes
apiserver events are left out: they would drown the story, and they stay in the audit log.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shipwarden.domain.audit import AuditEntry

__all__ = ["KINDS", "TimelineEntry", "assemble", "classify", "parse_ts", "title_of"]

KINDS = (
    "incident",
    "alert",
    "notification",
    "deployment",
    "step",
    "operator",
    "change",
    "approval",
    "database",
    "config",
)
"""What a timeline line is about (the report colours and filters by it)."""

_NOISE = ("access", "auth.", "http.", "webhook.", "evidence.", "k8s", "dr.archive", "dr.backup", "dr.verify")
_NOTIFY_WORDS = ("notif", "page", "escalat", "sent", "deliver")


def parse_ts(ts: str) -> datetime:
    """An audit timestamp (``2026-12-03T10:15:04.123456Z``) as an aware datetime."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def classify(e: AuditEntry) -> str | None:
    """The timeline kind of one audit entry, or ``None`` when it never belongs on a timeline."""
    a = e.action
    if e.source != "shipwarden" or a.startswith(_NOISE):
        return None
    if a.startswith("incident."):
        return "incident"
    if a.startswith(("alert", "oncall", "escalation", "page", "notification")):
        if a == "alert.rollout" or any(w in a for w in _NOTIFY_WORDS):
            return "notification"
        return "alert"
    if a.startswith("deployment."):
        return "deployment"
    if a.startswith("rollout."):
        return "step"
    if a.startswith("operator."):
        return "operator"
    if a in ("change.approve", "change.reject", "change.approved", "change.rejected"):
        return "approval"
    if a.startswith(("change.", "delivery.")):
        return "change"
    if a.startswith("dr."):
        return "database"
    if a.startswith(("secret.", "policy.", "config.")):
        return "config"
    return None


def _detail(e: AuditEntry, key: str) -> Any:
    return e.detail.get(key) if isinstance(e.detail, Mapping) else None


def _short(value: Any, n: int = 120) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def title_of(e: AuditEntry, kind: str) -> str:
    """A one-line description of an entry for people (the entry itself stays the record)."""
    d = e.detail if isinstance(e.detail, Mapping) else {}
    a = e.action
    svc = f"{e.service}: " if e.service else ""
    if kind == "deployment":
        verb = "rollback deployment" if a == "deployment.rollback" else "deployment"
        versions = f"{d.get('from') or '(none)'} → {d.get('to')}"
        return f"{svc}{verb} {e.deployment_id} {versions} started by {e.actor}"
    if kind == "step":
        phase = a.split(".", 1)[1]
        extra = f" (analysis {d['analysis_verdict']})" if d.get("analysis_verdict") else ""
        return f"{svc}{e.deployment_id} {phase}{extra}: {_short(d.get('reason', ''))}"
    if kind == "operator":
        return f"{svc}{e.actor} requested {a.split('.', 1)[1]} of {e.deployment_id}"
    if kind in ("change", "approval"):
        ref = d.get("change_id") or ""
        what = a.split(".", 1)[1].replace("_", " ")
        commit = f" {str(d.get('merge_sha') or d.get('commit') or '')[:12]}".rstrip()
        return f"{svc}change {ref} {what}{commit} by {e.actor}"
    if kind == "database":
        primary = f" primary {d['primary']}" if d.get("primary") else ""
        return f"{svc}database {a.split('.', 1)[1].replace('.', ' ')}{primary}"
    if kind == "config":
        return f"{svc}{a} {_short(d.get('name', ''), 60)} by {e.actor}".rstrip()
    if kind == "incident":
        what = a.split(".", 1)[1].replace("_", " ")
        said = next((d[k] for k in ("title", "status", "commander", "alert", "suspect") if d.get(k)), "")
        return f"incident {d.get('incident', '')} {what} {_short(said, 80)} ({e.actor})".replace("  ", " ")
    name = d.get("alertname") or d.get("name") or d.get("title") or d.get("key") or ""
    status = d.get("status") or e.outcome
    return f"{svc}{a} {_short(name, 80)} {status}".rstrip()


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of the timeline: an audit entry, classified and described."""

    seq: int
    hash: str
    canonical: str
    ts: str
    kind: str
    action: str
    actor: str
    service: str | None
    title: str
    outcome: str
    deployment_id: str | None = None
    refs: Mapping[str, str] = field(default_factory=dict)
    """Links: ``deployment`` (its record and dossier), ``change``, ``incident``."""

    @property
    def at(self) -> datetime:
        return parse_ts(self.ts)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "canonical": self.canonical,
            "ts": self.ts,
            "kind": self.kind,
            "action": self.action,
            "actor": self.actor,
            "service": self.service,
            "title": self.title,
            "outcome": self.outcome,
            "deployment_id": self.deployment_id,
            "refs": dict(self.refs),
        }


def _refs(e: AuditEntry) -> dict[str, str]:
    out: dict[str, str] = {}
    if e.deployment_id:
        out["deployment"] = e.deployment_id
    for key, name in (("change_id", "change"), ("incident", "incident"), ("fingerprint", "alert")):
        v = _detail(e, key)
        if isinstance(v, str) and v:
            out[name] = v
    return out


def assemble(
    entries: Iterable[AuditEntry],
    *,
    incident_id: str,
    services: Collection[str],
    deployments: Collection[str] = (),
    changes: Collection[str] = (),
    since: datetime,
    until: datetime | None = None,
    keep: Callable[[AuditEntry, str], bool] | None = None,
) -> list[TimelineEntry]:
    """The timeline of one incident from audit entries (any order; the result is in seq order).

    ``services``: the affected service and those related to it; ``deployments`` / ``changes``:
    records that must appear whatever their service (the suspects); ``keep`` may veto more."""
    out: list[TimelineEntry] = []
    for e in entries:
        kind = classify(e)
        if kind is None:
            continue
        at = parse_ts(e.ts)
        if at < since or (until is not None and at > until):
            continue
        own = _detail(e, "incident")
        if kind == "incident" and own != incident_id:
            continue
        relevant = (
            own == incident_id
            or (e.service is not None and e.service in services)
            or (e.deployment_id is not None and e.deployment_id in deployments)
            or (_detail(e, "change_id") in changes if changes else False)
            or (kind == "config" and e.service is None)
        )
        if not relevant or (keep is not None and not keep(e, kind)):
            continue
        out.append(
            TimelineEntry(
                seq=e.seq,
                hash=e.hash,
                canonical=e.canonical,
                ts=e.ts,
                kind=kind,
                action=e.action,
                actor=e.actor,
                service=e.service,
                title=title_of(e, kind),
                outcome=e.outcome,
                deployment_id=e.deployment_id,
                refs=_refs(e),
            )
        )
    out.sort(key=lambda t: t.seq)
    return out
