"""Gate evaluation (D1, D3) and ``progress``, the step that moves a change along the pipeline.

Evaluation is ``domain.gates.evaluate_gates`` over the stored evidence of the change's **head
commit only**, plus a ``branch-head`` gate: the branch must still point at that commit.  Standard
changes whose gates all pass are approved automatically; non-standard ones wait for the named
roles.  ``progress`` then merges an approved change and schedules the deployment of a merged one;
webhooks, evidence uploads and approvals all end in it once they have touched an open change.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from shipwarden.domain.evidence import BackupVerification, Evidence, Migration, RollbackPlan
from shipwarden.domain.gates import ChangeFacts, GateResult, classify_change, evaluate_gates
from shipwarden.ports.changes import Change
from shipwarden.ports.vcs import GitError
from shipwarden.services.changes.core import OPEN
from shipwarden.services.changes.mainline import MainlineWatch
from shipwarden.services.changes.merge import Merging


def _gate_dict(r: GateResult) -> dict[str, Any]:
    return {
        "gate": r.gate,
        "passed": r.passed,
        "reason": r.reason,
        "detail": r.detail,
        "evidence_ids": list(r.evidence_ids),
    }


class GateEvaluation(MainlineWatch):
    """Judges a change from its evidence, approvals and git facts; hands approved ones downstream."""

    @cached_property
    def merging(self) -> Merging:
        """What merges an approved change (exactly its evidenced sha, or nothing)."""
        return Merging(self)

    def merge(self, change_id: str) -> Change:
        """Merge exactly the evidenced head commit into main; a moved branch blocks the change."""
        return self.merging.merge(change_id)

    def _facts(self, change: Change) -> tuple[ChangeFacts | None, dict[str, Any]]:
        main = self.delivery.repository.main_branch
        try:
            # a commit already on main: what it changed since the head main had before it arrived
            since = self._awaited_since(change)
            stats = self.git.changes(change.head_sha, base=main, since=since)
            log = self.git.log(stats.base, change.head_sha)
        except (GitError, ValueError) as exc:
            return None, {"error": f"cannot measure the change in git: {exc}"}
        head = next((c for c in log if c.sha == change.head_sha), None)
        author = head.author_email if head else None
        facts = ChangeFacts(
            paths=stats.paths,
            lines_changed=stats.lines_changed,
            labels=frozenset(change.labels),
            author=author,
        )
        return facts, {
            "base": stats.base,
            "paths": list(stats.paths),
            "files": len(stats.files),
            "lines_added": stats.lines_added,
            "lines_deleted": stats.lines_deleted,
            "author": author,
            "author_name": head.author_name if head else None,
            "commits": [{"sha": c.sha, "subject": c.subject, "author": c.author_name} for c in log],
        }

    def _evidence(self, change: Change, services: list[str]) -> list[Evidence]:
        stored = self.repo.evidence_for(change.head_sha)
        out = [e.as_evidence() for e in stored]
        # rollback plan: the version to go back to is whatever runs now; migrations come from an upload
        uploaded = [e for e in stored if e.kind == "rollback-plan"]
        migrations: tuple[Migration, ...] = ()
        if uploaded:
            plan = uploaded[-1].report
            assert isinstance(plan, RollbackPlan)
            migrations = plan.migrations
            out = [e for e in out if e.category != "rollback-plan"]
        stables = [self.store.stable_version(s)[0] for s in services]
        previous = ", ".join(v for v in stables if v) if stables and all(stables) else None
        ids = ",".join(e.id for e in uploaded[-1:]) or "derived"
        out.append(
            Evidence(
                f"rollback-plan:{ids}",
                "rollback-plan",
                RollbackPlan(previous, migrations),
                self._now(),
                change.head_sha,
            )
        )
        return out

    def _backup_verifications(self, services: list[str]) -> dict[str, BackupVerification | None] | None:
        """The newest stored restore test of each deployed service's database (``shipwarden db
        verify``), when the policy declares databases for them; None: no managed database, the
        gate falls back to uploaded evidence."""
        from shipwarden.services.dr.verify import as_gate_fact

        declared = {d.service for d in self.loaded.policy.databases}
        managed = [s for s in services if s in declared]
        if not managed:
            return None
        repo = self.store.dr_catalogue
        return {s: as_gate_fact(next(iter(repo.verifications(s, limit=1)), None)) for s in managed}

    def evaluate(self, change_id: str) -> tuple[Change, list[GateResult]]:
        """Judge every gate for the change's head commit and record the result; no merge here."""
        change = self.repo.get_change(change_id)
        gp = self.gates
        facts, facts_doc = self._facts(change)
        approvals, stored_approvals = self._approvals(change)
        results = evaluate_gates(
            gp,
            self._evidence(change, self.delivery.services),
            approvals,
            self._now(),
            commit_sha=change.head_sha,
            change=facts,
            backups=self._backup_verifications(self.delivery.services),
        )
        results.append(self._branch_gate(change))
        classification: dict[str, Any] = {}
        if facts is not None:
            c = classify_change(gp.change_control, facts)
            classification = {
                "standard": c.standard,
                "required_roles": sorted(c.required_roles),
                "matches": [
                    {"rule": m.rule, "approvers": list(m.approvers), "because": list(m.because)}
                    for m in c.matches
                ],
            }
        rejected = [a for a in stored_approvals if a.decision == "reject"]
        failed = [r for r in results if not r.passed]
        if rejected:
            status = "rejected"
            reason = "; ".join(
                f"rejected by {a.user} ({a.role}): {a.comment or 'no comment'}" for a in rejected
            )
        elif not failed:
            status, reason = (
                "approved",
                (
                    "all gates passed; standard change approved automatically"
                    if classification.get("standard", False)
                    else "all gates passed; approved by "
                    + ", ".join(classification.get("required_roles", []))
                ),
            )
        elif all(r.gate == "change-control" for r in failed):
            status, reason = "waiting_approval", failed[0].detail
        else:
            hard = [r for r in failed if r.gate != "change-control"]
            status = "blocked" if any(r.reason != "missing" for r in hard) else "pending"
            reason = "; ".join(f"{r.gate}: {r.detail}" for r in hard)
        gates_doc = {
            "evaluated_at": self._now().isoformat(),
            "commit": change.head_sha,
            "all_passed": not failed,
            "results": [_gate_dict(r) for r in results],
        }
        action = {"approved": "change.approved", "rejected": "change.rejected_final"}.get(
            status, "change.evaluated"
        )
        change = self.repo.update_change(
            change.id,
            actor="shipwarden" if status == "approved" else "shipwarden:gates",
            action=action,
            outcome="ok" if status in ("approved", "waiting_approval", "pending") else "blocked",
            audit_detail={
                "status": status,
                "reason": reason,
                "automatic": status == "approved" and classification.get("standard", False),
                "failed_gates": [r.gate for r in failed],
            },
            status=status,
            reason=reason,
            gates=gates_doc,
            classification=classification,
            facts=facts_doc,
            author=facts.author if facts else change.author,
        )
        return change, results

    def _branch_gate(self, change: Change) -> GateResult:
        if change.branch == self.delivery.repository.main_branch:
            # a commit that reached main on its own: the main watch judged where it is and when
            return GateResult("branch-head", True, "ok", f"{change.head_sha[:12]} is on {change.branch}")
        try:
            head = self.git.branch_head(change.branch)
        except (GitError, ValueError) as exc:
            return GateResult("branch-head", False, "missing", f"cannot read branch {change.branch!r}: {exc}")
        if head == change.head_sha:
            return GateResult("branch-head", True, "ok", f"{change.branch} still at {head[:12]}")
        now = f"is now at {head[:12]}" if head else "was deleted"
        return GateResult(
            "branch-head",
            False,
            "violated",
            f"branch {change.branch} moved after CI: it {now}, the evidence is for {change.head_sha[:12]}",
        )

    def progress(self, change_id: str) -> Change:
        """Evaluate; if approved, merge; if merged, judge main and deploy (scheduled).

        The merge commit is deployed through ``watch_main`` like any commit that reaches main, so
        it is judged with whatever else main received (a push around the gates holds it back)."""
        change = self.repo.get_change(change_id)
        if change.status not in OPEN:
            return change
        change, _ = self.evaluate(change_id)
        settled = self._settle_on_main(change)  # its commit is on main already: never merged again
        if settled is not None:
            return settled
        if change.status != "approved":
            return change
        change = self.merge(change.id)
        if change.status == "merged":
            cid = change.id
            self.schedule(lambda: self._after_merge(cid))
            change = self.repo.get_change(cid)
        return change
