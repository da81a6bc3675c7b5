"""The deployment record (D11): everything about one deployment in one document."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shipwarden.ports.store import DeploymentStore


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat() if ts is not None else None


def deployment_record(store: DeploymentStore, dep_id: str) -> dict[str, Any]:
    """The complete record: versions, policy version, every step with timestamps and results, outcome,
    operator actions and the audit entries of this deployment."""
    d = store.get(dep_id)
    steps = store.steps(dep_id)
    audit = [
        {
            "seq": r.seq,
            "ts": r.ts,
            "actor": r.actor,
            "action": r.action,
            "outcome": r.outcome,
            "detail": r.detail,
            "hash": r.hash,
        }
        for r in store.audit_entries(deployment_id=dep_id)
    ]
    return {
        "id": d.id,
        "service": d.service,
        "kind": d.kind,
        "strategy": d.strategy,
        "from_version": d.from_version,
        "to_version": d.to_version,
        "commit": d.commit_sha,
        "started_by": d.actor,
        "policy": {"source": d.policy_source, "digest": d.policy_digest},
        "plan": d.plan,
        "created_at": _iso(d.created_at),
        "finished_at": _iso(d.finished_at),
        "duration_s": round(d.finished_at - d.created_at, 3) if d.finished_at else None,
        "phase": d.phase.value,
        "outcome": d.outcome,
        "reason": d.reason,
        "detected_at": _iso(d.detected_at),
        "rolled_back_at": _iso(d.rolled_back_at),
        "steps": [
            {
                "seq": s.seq,
                "phase": s.phase,
                "started_at": _iso(s.started_at),
                "finished_at": _iso(s.finished_at),
                "duration_s": round(s.finished_at - s.started_at, 3) if s.finished_at else None,
                "outcome": s.outcome,
                "reason": s.reason,
                "detail": s.detail,
            }
            for s in steps
        ],
        "audit": audit,
    }
