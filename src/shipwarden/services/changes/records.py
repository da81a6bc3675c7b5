"""Records and explanations (D3, D11): why a change is where it is, and what its deployment did.

``delivery_record`` joins the deployment record with the change behind it, its evidence, approvals,
merge commit and the three delivery phases; ``explain`` does the same starting from a change (or a
deployment) id; ``render_explanation`` turns that into the text of CLI ``explain`` and
``?format=text``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from shipwarden.ports.changes import Change, ChangesRepository, StoredEvidence
from shipwarden.ports.store import NotFound, UnitOfWork
from shipwarden.services.changes.errors import UnknownChange
from shipwarden.services.records import deployment_record


class ChangeRecords:
    """Read-only views of changes and their deployments; nothing here moves a change (a service of
    its own: it needs the store and nothing of the pipeline)."""

    def __init__(self, store: UnitOfWork) -> None:
        self.store = store
        self.repo: ChangesRepository = store.changes

    def _change_doc(self, change: Change) -> dict[str, Any]:
        evidence = self.repo.evidence_for(change.head_sha)
        return {
            "id": change.id,
            "branch": change.branch,
            "repository": change.repo,
            "commit": change.head_sha,
            "pull_request": change.pr_number,
            "author": change.author,
            "labels": list(change.labels),
            "status": change.status,
            "reason": change.reason,
            "classification": change.classification,
            "merge_commit": change.merge_sha,
            "merge": change.facts.get("merge"),
            "deployment_id": change.deployment_id,
            "gates": change.gates.get("results", []),
            "gates_evaluated_at": change.gates.get("evaluated_at"),
            "evidence": [_evidence_doc(e) for e in evidence],
            "approvals": [asdict(a) for a in self.repo.approvals(change.id)],
            "facts": {k: v for k, v in change.facts.items() if k != "merge"},
        }

    def change_doc(self, change_id: str) -> dict[str, Any]:
        try:
            return self._change_doc(self.repo.get_change(change_id))
        except NotFound:
            raise UnknownChange(f"no change {change_id!r}") from None

    def delivery_record(self, dep_id: str) -> dict[str, Any]:
        """The deployment record (D11) with the change behind it and the three phases."""
        try:
            record = deployment_record(self.store, dep_id)
        except NotFound:
            raise UnknownChange(f"no deployment {dep_id!r}") from None
        change = self.repo.change_for_deployment(dep_id)
        phases: dict[str, Any] = {}
        for entry in record["audit"]:
            action = entry["action"]
            if action in ("delivery.preparation", "delivery.execution", "delivery.post_deployment"):
                phases[action.split(".", 1)[1]] = {
                    "ok": entry["outcome"] == "ok",
                    "at": entry["ts"],
                    **{k: v for k, v in entry["detail"].items() if k != "phase"},
                }
        record["phases"] = phases
        if change is not None:
            doc = self._change_doc(change)
            record["change"] = {
                k: doc[k] for k in ("id", "branch", "commit", "status", "reason", "classification")
            }
            record["evidence"] = doc["evidence"]
            record["approvals"] = doc["approvals"]
            record["gates"] = doc["gates"]
            record["merge_commit"] = doc["merge_commit"]
            record["pipeline"] = sorted(
                {json.dumps(e["pipeline"], sort_keys=True) for e in doc["evidence"] if e["pipeline"]}
            )
            record["pipeline"] = [json.loads(p) for p in record["pipeline"]]
        return record

    def explain(self, ref: str) -> dict[str, Any]:
        """Everything needed to say why a change (or the change behind a deployment) is where it is;
        for a commit sha, why that commit on main was deployed or not (``mainline.explain_commit``)."""
        dep_doc = None
        try:
            change = self.repo.get_change(ref)
        except NotFound:
            try:
                self.store.get(ref)
            except NotFound:
                from shipwarden.services.changes.mainline import explain_commit

                commit = explain_commit(self.store, ref)
                if commit is not None:  # a commit that reached main: deployed, or why not (D9)
                    return commit
                by_head = self.repo.find_change(head_sha=ref) if len(ref) == 40 else None
                if by_head is not None:  # the head commit of a change that has not reached main
                    return self._change_doc(by_head)
                raise UnknownChange(f"no change or deployment {ref!r} (nor a commit seen on main)") from None
            found = self.repo.change_for_deployment(ref)
            if found is None:
                raise UnknownChange(
                    f"deployment {ref!r} was not made from a change (no gates to explain)"
                ) from None
            change = found
        doc = self._change_doc(change)
        if change.deployment_id:
            dep_doc = self.delivery_record(change.deployment_id)
            doc["deployment"] = {
                "id": dep_doc["id"],
                "service": dep_doc["service"],
                "version": dep_doc["to_version"],
                "outcome": dep_doc["outcome"],
                "reason": dep_doc["reason"],
                "phases": dep_doc["phases"],
            }
        return doc


def _evidence_doc(e: StoredEvidence) -> dict[str, Any]:
    return {
        "id": e.id,
        "commit": e.commit_sha,
        "kind": e.kind,
        "category": e.category,
        "source": e.source_name,
        "digest": getattr(e.report, "digest", None) or e.digest,
        "pipeline": e.pipeline,
        "summary": e.summary,
        "collected_at": datetime.fromtimestamp(e.created_at, tz=UTC).isoformat(),
    }


# --- text rendering (CLI `explain`, API `?format=text`) ----------------------------------------------------


def render_explanation(doc: dict[str, Any]) -> str:
    if doc.get("kind") == "main-commit":
        from shipwarden.services.changes.mainline import render_commit_explanation

        return render_commit_explanation(doc)
    ev = {e["id"]: e for e in doc.get("evidence", [])}
    lines = [
        f"change {doc['id']}: {doc['branch']} @ {doc['commit'][:12]}"
        + (f" (PR #{doc['pull_request']})" if doc.get("pull_request") else ""),
        f"status: {doc['status']} — {doc['reason']}",
    ]
    cl = doc.get("classification") or {}
    if cl:
        if cl.get("standard"):
            lines.append("classification: standard change")
        else:
            rules = "; ".join(f"{m['rule']} ({', '.join(m['because'])})" for m in cl.get("matches", []))
            lines.append(
                f"classification: non-standard — {rules}; approvers: {', '.join(cl['required_roles'])}"
            )
    lines.append(f"gates (evaluated {doc.get('gates_evaluated_at') or 'never'}):")
    for g in doc.get("gates", []):
        mark = "PASS" if g["passed"] else "FAIL"
        lines.append(f"  {mark} {g['gate']}: {g['detail']}")
        for eid in g.get("evidence_ids", []):
            e = ev.get(eid)
            if e is None:
                lines.append(f"       evidence {eid}")
                continue
            pipe = e.get("pipeline") or {}
            where = ""
            if pipe.get("provider"):
                number = pipe.get("pipeline_number") or pipe.get("pipeline_id")
                where = f" from {pipe['provider']} pipeline {number}"
            elif pipe:
                where = " from pipeline " + ", ".join(f"{k}={v}" for k, v in pipe.items())
            summary = ", ".join(f"{k}={v}" for k, v in e["summary"].items())
            lines.append(
                f"       evidence {eid}: {e['kind']} {e['source'] or ''} {e['digest'][:19]}…"
                f"{where} [{summary}]"
            )
    if doc.get("approvals"):
        lines.append("approvals:")
        for a in doc["approvals"]:
            at = datetime.fromtimestamp(a["at"], tz=UTC).isoformat(timespec="seconds")
            lines.append(
                f"  {a['decision']} by {a['user']} as {a['role']} at {at}"
                + (f": {a['comment']}" if a["comment"] else "")
            )
    if doc.get("merge_commit"):
        via = (doc.get("merge") or {}).get("via", "")
        lines.append(f"merged: {doc['merge_commit']} ({via})")
    else:
        lines.append("merged: no")
    dep = doc.get("deployment")
    if dep:
        lines.append(
            f"deployment {dep['id']}: {dep['service']} {dep['version']} — {dep['outcome']} ({dep['reason']})"
        )
        for name in ("preparation", "execution", "post_deployment"):
            ph = dep["phases"].get(name)
            if ph is None:
                lines.append(f"  {name}: not run")
                continue
            lines.append(f"  {name}: {'ok' if ph['ok'] else 'FAILED'}")
            for c in ph.get("checks", []):
                lines.append(f"    {'PASS' if c['ok'] else 'FAIL'} {c['check']}: {c['detail']}")
    else:
        lines.append("deployment: none")
    return "\n".join(lines) + "\n"
