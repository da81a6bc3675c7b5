"""The change pipeline (D1–D3, D9, D11, E3, E4): CI says "done" → gates → approval → merge → deploy.

One ``ChangeService`` drives a change through these states (``changes.status``)::

    pending ──(all gates but change control pass)──► waiting_approval ──(roles approve)──┐
       │  ▲ more evidence arrives: re-evaluated                                           ▼
       ├─► blocked (a gate failed: a failing test, a finding, p99 over, branch moved) ──► approved
       └─► superseded (a newer commit on the branch)           rejected ◄── a role rejects │
                                                                                          ▼
                      deployed / deploy_failed / rolled_back ◄── deploying ◄──────────── merged

Inputs, each authenticated and audited:

* **CI webhooks** (``receive_webhook``): the provider signature is checked on
  the raw body (401 and nothing else on failure), then replay protection
  (``ReplayGuard``: seen delivery ids in ``webhook_deliveries``, CircleCI's
  signed ``happened_at`` inside the window; 409 on a replay), then the stage
  result is stored as ``ci`` evidence of its commit and the change for that
  commit and branch is (re-)evaluated.
* **Evidence uploads** (``upload_evidence``): JUnit (per suite category),
  SARIF, k6, Locust, backup verifications, rollback plans; parsed by the pure
  parsers (a malformed file is refused with where and what, 422) and stored
  with the commit and pipeline it belongs to.
* **Approvals / rejections** (``approve``/``reject``) by users holding the
  change-control role the policy names (``delivery.approvers`` or an RBAC role
  of the same name); authors cannot approve their own change.

Evaluation is ``domain.gates.evaluate_gates`` over the stored evidence of the
change's **head commit only**, plus a ``branch-head`` gate: the branch must
still point at that commit.  Standard changes whose gates all pass are
approved automatically; non-standard ones wait for the named roles.

Merging merges **exactly the evidenced sha** — through git (``GitRepository.merge``
refuses when the branch moved) or GitHub's merge endpoint with ``sha`` (409
when the head moved).  A merge to main then deploys that commit (D9):

* **Release**: the merge commit is exported with ``git archive`` into
  ``<policy dir>/<delivery.releases>/<version>`` where ``version`` is
  ``delivery.version`` with ``{short}``/``{sha}`` of the merge commit; the
  service's ``run.workdir: "releases/{version}"`` starts instances from there.
  A release directory is written once, atomically (temp dir + rename), and
  never modified, so a resumed deployment runs the same bytes.
* **Preparation** (E4): approval recorded, stakeholders notified through
  Apprise, resources verified (disk, memory, release present), backup
  confirmed (the ``backup`` gate), latency baseline measured on the current
  production route.
* **Execution**: ``RolloutService`` (blue-green or canary per policy).
* **Post-deployment**: smoke checks through the production route,
  performance against the pre-deployment baseline, security confirmation
  (TLS certificate and headers when exposed over HTTPS, headers otherwise),
  release notes from the commits between the two versions into the record and
  a docs file.  A failed post-deployment check rolls back when
  ``rollbackOnFailure``.

Each phase is an audit entry of the deployment (``delivery.preparation``,
``delivery.execution``, ``delivery.post_deployment``), so the deployment
record (D11) carries them; ``delivery_record`` joins it with the change, its
evidence, approvals and merge commit.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from shipwarden.adapters.ci.base import CiEvent, IgnoredEvent, PayloadError, SignatureError
from shipwarden.adapters.ci.circleci import CircleCiWebhook
from shipwarden.adapters.ci.github import GitHubClient, GitHubWebhook, MergeError
from shipwarden.adapters.ci.github import HeadMoved as GitHubHeadMoved
from shipwarden.adapters.store.changes_repo import Change, ChangesRepo, StoredApproval, StoredEvidence
from shipwarden.adapters.store.repository import Deployment, NotFound, Store
from shipwarden.adapters.vcs.git import GitError, GitRepository, HeadMoved, MergeMode
from shipwarden.domain.delivery import (
    Commit,
    DeliveryPolicy,
    LatencySummary,
    Verdict,
    enough,
    perf_verdict,
    release_notes,
    smoke_verdict,
    summarize_latencies,
    version_for,
)
from shipwarden.domain.evidence import (
    BackupVerification,
    Evidence,
    EvidenceError,
    Migration,
    RollbackPlan,
    parse_junit,
    parse_k6_summary,
    parse_locust_stats,
    parse_sarif,
    sha256_digest,
)
from shipwarden.domain.gates import (
    Approval,
    ChangeFacts,
    GatePolicy,
    GateResult,
    classify_change,
    evaluate_gates,
)
from shipwarden.domain.policy import LoadedPolicy
from shipwarden.domain.replay import ReplayGuard
from shipwarden.domain.rollout import Phase, Transition
from shipwarden.services.notify import Notifier
from shipwarden.services.postdeploy import Check, confirm_security
from shipwarden.services.records import deployment_record
from shipwarden.services.rollout import RolloutService

_SHA = re.compile(r"^[0-9a-f]{40}$")
_CATEGORY = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
MAX_EVIDENCE_BYTES = 20 * 1024 * 1024
CD_ACTOR = "shipwarden:cd"
OPEN = ("pending", "blocked", "waiting_approval", "approved")
#: evidence kinds accepted by ``upload_evidence`` and the category each one is filed under
KINDS: dict[str, str | None] = {
    "junit": None,  # the suite category (unit, integration, security, …) is given by the uploader
    "sarif": "security-scan",
    "k6": "performance",
    "locust": "performance",
    "backup": "backup",
    "rollback-plan": "rollback-plan",
}


# --- errors (each maps to one HTTP status / CLI exit 2; nothing changed) -----------------------------------


class ChangeError(Exception):
    status = 400

    def __init__(self, message: str, **extra: Any) -> None:
        self.message = message
        self.extra = extra
        super().__init__(message)


class BadRequest(ChangeError):
    status = 400


class Unauthorized(ChangeError):
    status = 401


class Forbidden(ChangeError):
    status = 403


class UnknownChange(ChangeError):
    status = 404


class StateConflict(ChangeError):
    status = 409


class Unprocessable(ChangeError):
    status = 422


class TooLarge(ChangeError):
    status = 413


class NotConfigured(ChangeError):
    status = 503


# --- results -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookResult:
    status: int
    outcome: str  # accepted | ignored
    detail: str
    change_id: str | None = None
    change_status: str | None = None
    evidence_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _gate_dict(r: GateResult) -> dict[str, Any]:
    return {
        "gate": r.gate,
        "passed": r.passed,
        "reason": r.reason,
        "detail": r.detail,
        "evidence_ids": list(r.evidence_ids),
    }


def env_secrets(name: str) -> str | None:
    """Default secret lookup: ``SHIPWARDEN_SECRET_<NAME>`` (upper case, ``-``/``.`` → ``_``)."""
    return os.environ.get("SHIPWARDEN_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()) or None


# --- the service -------------------------------------------------------------------------------------------


class ChangeService:
    def __init__(
        self,
        store: Store,
        rollout: RolloutService | None,
        policy: LoadedPolicy,
        *,
        state_dir: Path,
        secrets: Callable[[str], str | None] = env_secrets,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        schedule: Callable[[Callable[[], None]], None] | None = None,
        http_client: Callable[[], httpx.Client] | None = None,
    ) -> None:
        self.store = store
        self.repo = ChangesRepo(store)
        self.rollout = rollout
        self.loaded = policy
        self.state_dir = Path(state_dir)
        self.secrets = secrets
        self.clock = clock
        #: how a deployment after a merge is run: inline by default, a thread/background task in the API
        self.schedule = schedule or (lambda fn: fn())
        self._http = http_client or (lambda: httpx.Client(timeout=5.0))
        self.base_dir = Path(policy.source).resolve().parent
        self._git: GitRepository | None = None

    # -- configuration ----------------------------------------------------------------------------------
    @property
    def gates(self) -> GatePolicy:
        gp = self.loaded.policy.gates
        if gp is None:
            raise NotConfigured("the policy declares no 'gates' section: changes cannot be approved")
        return gp

    @property
    def delivery(self) -> DeliveryPolicy:
        d = getattr(self.loaded.policy, "delivery", None)
        if d is None:
            raise NotConfigured("the policy declares no 'delivery' section (repository, services to deploy)")
        return d  # type: ignore[no-any-return]

    @property
    def git(self) -> GitRepository:
        if self._git is None:
            url = self.delivery.repository.url
            if "://" not in url and not url.startswith(("git@", "/")):
                url = str((self.base_dir / url).resolve())
            self._git = GitRepository(url, self.state_dir / "git" / "work")
        return self._git

    def _now(self) -> datetime:
        return self.clock()

    # -- webhooks ---------------------------------------------------------------------------------------
    def receive_webhook(self, provider: str, headers: Mapping[str, str], body: bytes) -> WebhookResult:
        """Authenticate, dedupe and record one CI delivery; then (re-)evaluate the change it is about."""
        if provider not in ("circleci", "github"):
            raise UnknownChange(f"unknown webhook provider {provider!r} (circleci, github)")
        actor = f"webhook:{provider}"
        try:
            cfg = self.delivery.webhooks
            name = getattr(cfg, provider)
            secret = self.secrets(name) if name else None
            if not secret:
                raise SignatureError(
                    f"no {provider} webhook secret is configured"
                    + (f" (secret {name!r} is not set)" if name else " (delivery.webhooks." + provider + ")")
                )
            receiver = CircleCiWebhook(secret) if provider == "circleci" else GitHubWebhook(secret)
            event = receiver.receive(headers, body)
        except SignatureError as exc:
            self._reject(actor, 401, f"signature check failed: {exc}", body)
            raise Unauthorized(f"signature check failed: {exc}") from None
        except IgnoredEvent as exc:
            self.store.audit(actor=actor, action="webhook.ignored", outcome="ok", detail={"reason": str(exc)})
            return WebhookResult(202, "ignored", str(exc))
        except PayloadError as exc:
            self._reject(actor, 400, f"malformed payload: {exc}", body)
            raise BadRequest(f"malformed {provider} payload: {exc}") from None

        guard = ReplayGuard(window=timedelta(seconds=cfg.replay_window))
        decision = guard.decide(
            event.event_id, event.delivered_at, self._now(), self.repo.seen_deliveries(provider)
        )
        if not decision.accepted:
            msg = f"replay refused ({decision.reason}): {decision.detail}"
            self._reject(actor, 409, msg, body, event=event)
            raise StateConflict(msg, reason=decision.reason)
        summary = {
            "type": event.event_type,
            "commit": event.commit_sha,
            "branch": event.branch,
            "stage": event.stage_name,
            "status": event.stage_status.value if event.stage_status else None,
            "pipeline": event.pipeline_id,
        }
        if not self.repo.record_delivery(provider, event.event_id, detail=summary):
            msg = f"replay refused (duplicate): event {event.event_id} was already processed"
            self._reject(actor, 409, msg, body, event=event)
            raise StateConflict(msg, reason="duplicate")
        return self._on_event(event)

    def _reject(
        self, actor: str, status: int, reason: str, body: bytes, event: CiEvent | None = None
    ) -> None:
        detail: dict[str, Any] = {"status": status, "reason": reason, "body_sha256": sha256_digest(body)}
        if event is not None:
            detail.update(id=event.event_id, commit=event.commit_sha, branch=event.branch)
        self.store.audit(actor=actor, action="webhook.rejected", outcome="denied", detail=detail)

    def _on_event(self, event: CiEvent) -> WebhookResult:
        check = event.as_check()
        sha = event.commit_sha
        if check is None or sha is None or not _SHA.match(sha):
            why = "carries no stage result" if check is None else "has no full commit sha"
            return WebhookResult(202, "ignored", f"event {event.event_id} {why}")
        pipeline = {
            "provider": event.provider,
            "pipeline_id": event.pipeline_id,
            "pipeline_number": event.pipeline_number,
            "workflow_id": event.workflow_id,
            "workflow": event.workflow_name,
            "job": event.job_name,
            "event_id": event.event_id,
            "raw_status": event.raw_status,
        }
        ev = self.repo.add_evidence(
            commit_sha=sha,
            kind="ci",
            category="ci",
            report=check,
            digest=sha256_digest(json.dumps(pipeline, sort_keys=True)),
            pipeline=pipeline,
            source_name=f"{event.provider}:{event.event_type}",
            actor=f"webhook:{event.provider}",
        )
        main = self.delivery.repository.main_branch
        if not event.branch or event.branch == main:
            what = f"CI result for {main}" if event.branch else "CI result without a branch"
            return WebhookResult(202, "accepted", f"{what} recorded", evidence_id=ev.id)
        change = self.repo.find_change(head_sha=sha, branch=event.branch)
        if change is None:
            change = self.repo.create_change(
                repo=event.repository or self.delivery.repository.url,
                branch=event.branch,
                head_sha=sha,
                actor=f"webhook:{event.provider}",
                pr_number=event.pull_requests[0] if event.pull_requests else None,
                labels=event.labels,
            )
        elif event.labels and set(event.labels) != set(change.labels):
            change = self.repo.update_change(
                change.id,
                actor=f"webhook:{event.provider}",
                action="change.labels",
                labels=event.labels,
                audit_detail={"labels": list(event.labels)},
            )
        change = self.progress(change.id)
        return WebhookResult(202, "accepted", change.reason, change.id, change.status, ev.id)

    # -- evidence ---------------------------------------------------------------------------------------
    def upload_evidence(
        self,
        *,
        commit_sha: str,
        kind: str,
        data: bytes,
        actor: str,
        category: str | None = None,
        filename: str | None = None,
        pipeline: dict[str, Any] | None = None,
        branch: str | None = None,
    ) -> tuple[StoredEvidence, Change | None]:
        """Parse and store one report for ``commit_sha``; re-evaluates the change of that commit if any."""
        try:
            if not isinstance(commit_sha, str) or not _SHA.match(commit_sha):
                raise BadRequest(f"commit must be a full 40-hex-digit sha, got {commit_sha!r}")
            if kind not in KINDS:
                raise BadRequest(f"unknown evidence kind {kind!r}; one of: {', '.join(KINDS)}")
            fixed = KINDS[kind]
            if fixed is None:
                if not category or not _CATEGORY.match(category):
                    suites = (
                        ", ".join(self.loaded.policy.gates.suites) if self.loaded.policy.gates else "unit"
                    )
                    raise BadRequest(f"a junit report needs its suite category ({suites}), got {category!r}")
            elif category not in (None, fixed):
                raise BadRequest(f"{kind} evidence is filed as {fixed!r}, not {category!r}")
            category = category or fixed
            assert category is not None
            if len(data) > MAX_EVIDENCE_BYTES:
                raise TooLarge(f"report is {len(data)} bytes; the limit is {MAX_EVIDENCE_BYTES}")
            source = filename or f"<{kind}>"
            report = _parse(kind, data, source)
        except EvidenceError as exc:
            detail = {"commit": commit_sha, "kind": kind, "file": filename, "error": str(exc)}
            self.store.audit(actor=actor, action="evidence.rejected", outcome="denied", detail=detail)
            raise Unprocessable(
                f"malformed {kind} report: {exc}",
                where={"source": exc.source, "line": exc.line, "column": exc.column, "path": exc.path},
                problem=exc.message,
            ) from None
        except ChangeError as exc:
            detail = {"commit": commit_sha, "kind": kind, "file": filename, "error": exc.message}
            self.store.audit(actor=actor, action="evidence.rejected", outcome="denied", detail=detail)
            raise
        digest = getattr(report, "digest", None) or sha256_digest(data)
        stored = self.repo.add_evidence(
            commit_sha=commit_sha,
            kind=kind,
            category=category,
            report=report,
            digest=digest,
            pipeline=pipeline or {},
            source_name=filename,
            actor=actor,
        )
        change = self.repo.find_change(head_sha=commit_sha, branch=branch)
        if change is not None and change.status in OPEN:
            change = self.progress(change.id)
        return stored, change

    # -- evaluation -------------------------------------------------------------------------------------
    def _facts(self, change: Change) -> tuple[ChangeFacts | None, dict[str, Any]]:
        main = self.delivery.repository.main_branch
        try:
            stats = self.git.changes(change.head_sha, base=main)
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

    def _approvals(self, change: Change) -> tuple[list[Approval], list[StoredApproval]]:
        stored = [a for a in self.repo.approvals(change.id) if a.commit_sha == change.head_sha]
        return [a for x in stored if (a := x.as_approval()) is not None], stored

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
        """Evaluate; if approved, merge; if merged, deploy (scheduled)."""
        change = self.repo.get_change(change_id)
        if change.status not in OPEN:
            return change
        change, _ = self.evaluate(change_id)
        if change.status != "approved":
            return change
        change = self.merge(change.id)
        if change.status == "merged":
            cid = change.id
            self.schedule(lambda: self._deploy_quietly(cid))
            change = self.repo.get_change(cid)
        return change

    # -- approvals --------------------------------------------------------------------------------------
    def _decide(
        self,
        change_id: str,
        *,
        user: str,
        role: str,
        decision: str,
        comment: str,
        extra_roles: frozenset[str],
    ) -> Change:
        action = "change.approve" if decision == "approve" else "change.reject"
        try:
            change = self.repo.get_change(change_id)
        except NotFound:
            self.store.audit(
                actor=user,
                action=action,
                outcome="denied",
                detail={"change_id": change_id, "reason": "unknown change"},
            )
            raise UnknownChange(f"no change {change_id!r}") from None

        def deny(exc: ChangeError) -> ChangeError:
            self.store.audit(
                actor=user,
                action=action,
                outcome="denied",
                detail={"change_id": change_id, "role": role, "reason": exc.message},
            )
            return exc

        if change.status not in OPEN:
            raise deny(
                StateConflict(f"change {change.id} is {change.status}; it can no longer be {decision}d")
            )
        gp = self.gates
        required = set(change.classification.get("required_roles", []))
        uat = gp.checklist.uat_sign_off.role if gp.checklist.uat_sign_off else None
        if role not in required and role != uat:
            need = sorted(required | ({uat} if uat else set()))
            raise deny(
                BadRequest(
                    f"role {role!r} is not asked to approve change {change.id}; "
                    f"roles it needs: {', '.join(need) or 'none (standard change)'}"
                )
            )
        held = self.delivery.roles_of(user) | extra_roles
        if role not in held:
            raise deny(
                Forbidden(
                    f"{user} does not hold the role {role!r} "
                    f"(holds: {', '.join(sorted(held)) or 'no change role'})"
                )
            )
        author = change.author or ""
        if author and user in (author, author.split("@")[0]):
            raise deny(Forbidden(f"{user} is the author of change {change.id} and cannot {decision} it"))
        if decision == "approve":
            if role in required:
                self.repo.add_approval(
                    change.id,
                    commit_sha=change.head_sha,
                    user=user,
                    role=role,
                    decision="approve",
                    comment=comment,
                )
            if role == uat:
                self.repo.add_approval(
                    change.id,
                    commit_sha=change.head_sha,
                    user=user,
                    role=role,
                    decision="sign-off",
                    comment=comment,
                )
        else:
            self.repo.add_approval(
                change.id,
                commit_sha=change.head_sha,
                user=user,
                role=role,
                decision="reject",
                comment=comment,
            )
        return self.progress(change.id)

    def approve(
        self,
        change_id: str,
        *,
        user: str,
        role: str,
        comment: str = "",
        extra_roles: frozenset[str] = frozenset(),
    ) -> Change:
        return self._decide(
            change_id, user=user, role=role, decision="approve", comment=comment, extra_roles=extra_roles
        )

    def reject(
        self,
        change_id: str,
        *,
        user: str,
        role: str,
        comment: str = "",
        extra_roles: frozenset[str] = frozenset(),
    ) -> Change:
        return self._decide(
            change_id, user=user, role=role, decision="reject", comment=comment, extra_roles=extra_roles
        )

    # -- merge ------------------------------------------------------------------------------------------
    def merge(self, change_id: str) -> Change:
        """Merge exactly the evidenced head commit into main; a moved branch blocks the change."""
        change = self.repo.get_change(change_id)
        if change.status != "approved":
            raise StateConflict(f"change {change.id} is {change.status}, not approved; nothing merged")
        d = self.delivery
        main = d.repository.main_branch
        gh = d.repository.github
        try:
            if gh is not None and change.pr_number is not None:
                token = self.secrets(gh.token_secret)
                if not token:
                    raise MergeError(0, f"secret {gh.token_secret!r} (GitHub token) is not set")
                client = GitHubClient(token, base_url=gh.api_url)
                try:
                    res = client.merge_pull_request(
                        gh.owner, gh.repo, change.pr_number, sha=change.head_sha, merge_method=gh.merge_method
                    )
                finally:
                    client.close()
                merge_sha, previous, via = res.sha, None, f"github PR #{change.pr_number}"
            else:
                out = self.git.merge(
                    change.branch,
                    change.head_sha,
                    target=main,
                    mode=MergeMode(d.repository.merge_mode),
                    message=f"Merge {change.branch} ({change.head_sha[:12]}) into {main}\n\n"
                    f"Change {change.id}, approved and merged by shipwarden.",
                )
                merge_sha, previous, via = out.sha, out.previous_target, "git"
        except (HeadMoved, GitHubHeadMoved) as exc:
            reason = f"branch-head: {change.branch} moved after CI; not merged ({exc})"
            return self._blocked(change, reason, "change.merge_refused")
        except (GitError, MergeError, ValueError) as exc:
            return self._blocked(change, f"merge failed; nothing merged: {exc}", "change.merge_failed")
        facts = {**change.facts, "merge": {"sha": merge_sha, "previous_target": previous, "via": via}}
        return self.repo.update_change(
            change.id,
            actor="shipwarden",
            action="change.merged",
            audit_detail={"merge_sha": merge_sha, "into": main, "via": via, "merged": change.head_sha},
            status="merged",
            merge_sha=merge_sha,
            reason=f"merged into {main} as {merge_sha[:12]} ({via})",
            facts=facts,
        )

    def _blocked(self, change: Change, reason: str, action: str) -> Change:
        return self.repo.update_change(
            change.id,
            actor="shipwarden",
            action=action,
            outcome="failed",
            audit_detail={"reason": reason},
            status="blocked",
            reason=reason,
        )

    # -- continuous deployment --------------------------------------------------------------------------
    def release_dir(self, version: str) -> Path:
        return self.base_dir / self.delivery.releases / version

    def export_release(self, sha: str, version: str) -> Path:
        """Write the tree of ``sha`` to the release directory once (atomic rename); reuse it afterwards."""
        dest = self.release_dir(version)
        if dest.is_dir():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.git.sync()
        proc = subprocess.run(
            ["git", "-c", "core.hooksPath=/dev/null", "archive", "--format=tar", sha],
            cwd=self.git.workdir,
            capture_output=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            raise GitError(["archive", sha], proc.returncode, proc.stderr.decode(errors="replace"))
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=dest.parent))
        try:
            with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
                tar.extractall(tmp, filter="data")
            (tmp / ".shipwarden-release").write_text(json.dumps({"commit": sha, "version": version}) + "\n")
            os.rename(tmp, dest)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not dest.is_dir():
                raise
        return dest

    def _deploy_quietly(self, change_id: str) -> None:
        """``deploy`` for a scheduler: the outcome is in the change and the audit log, never lost."""
        try:
            self.deploy(change_id)
        except Exception as exc:  # a background deployment must leave a trace, not a dead thread
            self.repo.update_change(
                change_id,
                actor=CD_ACTOR,
                action="delivery.error",
                outcome="failed",
                audit_detail={"error": f"{type(exc).__name__}: {exc}"},
                status="deploy_failed",
                reason=f"deployment could not run: {type(exc).__name__}: {exc}",
            )

    def deploy(self, change_id: str) -> Change:
        """Deploy the merge commit of a merged change to every ``delivery.services`` service."""
        change = self.repo.get_change(change_id)
        if change.status != "merged" or not change.merge_sha:
            raise StateConflict(f"change {change.id} is {change.status}; only a merged change is deployed")
        if self.rollout is None:
            raise NotConfigured("no rollout service: deployments cannot run")
        d = self.delivery
        sha = change.merge_sha
        version = version_for(d.version, sha)
        final_status, reason, last_dep = "deployed", "", None
        try:
            self.export_release(sha, version)
        except (GitError, OSError) as exc:
            return self.repo.update_change(
                change.id,
                actor=CD_ACTOR,
                action="delivery.release_failed",
                outcome="failed",
                audit_detail={"error": str(exc)},
                status="deploy_failed",
                reason=f"could not export {sha[:12]} to {self.release_dir(version)}: {exc}",
            )
        for service in d.services:
            dep = self.rollout.start(service, version, actor=CD_ACTOR, commit_sha=sha)
            last_dep = dep.id
            change = self.repo.update_change(
                change.id,
                actor=CD_ACTOR,
                action="delivery.started",
                service=service,
                deployment_id=dep.id,
                audit_detail={"version": version, "merge_sha": sha},
                status="deploying",
                reason=f"deploying {service} {version}",
            )
            status, why = self._deploy_one(change, dep, version)
            if status != "deployed":
                final_status, reason = status, why
                break
            reason = why
        return self.repo.update_change(
            change.id,
            actor=CD_ACTOR,
            action=f"delivery.{final_status}",
            outcome="ok" if final_status == "deployed" else "failed",
            deployment_id=last_dep,
            audit_detail={"reason": reason},
            status=final_status,
            reason=reason,
        )

    def _phase(self, dep: Deployment, name: str, checks: list[Check], **extra: Any) -> bool:
        ok = all(c.ok for c in checks)
        self.store.audit(
            actor=CD_ACTOR,
            action=f"delivery.{name}",
            outcome="ok" if ok else "failed",
            service=dep.service,
            deployment_id=dep.id,
            detail={"phase": name, "ok": ok, "checks": [c.as_dict() for c in checks], **extra},
        )
        return ok

    def _deploy_one(self, change: Change, dep: Deployment, version: str) -> tuple[str, str]:
        assert self.rollout is not None
        spec = self.rollout.spec(dep.service)
        # -- preparation
        prep = [self._approval_check(change), self._notify(change, dep, "info", "starting")]
        prep += self._resource_checks(dep, version)
        prep.append(self._backup_check(change))
        baseline = None
        perf = self.delivery.post_deployment.performance
        if perf is not None and dep.from_version is not None:
            baseline = self._measure(spec.routing.port, perf.path, perf.requests)
            prep.append(
                Check(
                    "performance-baseline",
                    True,
                    f"p95 {baseline.p95_ms} ms on {dep.from_version}",
                    baseline.as_dict(),
                )
            )
        if not self._phase(dep, "preparation", prep):
            failed = "; ".join(f"{c.name}: {c.detail}" for c in prep if not c.ok)
            self.store.transition(
                dep, Transition(Phase.FAILED, f"preparation failed: {failed}"), actor=CD_ACTOR
            )
            self._phase(dep, "execution", [Check("rollout", False, "not started: preparation failed")])
            return "deploy_failed", f"preparation failed: {failed}"
        # -- execution
        final = self.rollout.run(dep.id)
        executed = final.phase is Phase.SUCCEEDED
        self._phase(
            dep,
            "execution",
            [Check("rollout", executed, f"{final.phase.value}: {final.reason}")],
            strategy=final.strategy,
            outcome=final.phase.value,
        )
        if not executed:
            self._notify(change, final, "failure", f"failed ({final.phase.value})")
            return "deploy_failed", f"rollout {final.phase.value}: {final.reason}"
        # -- post-deployment
        post = self._smoke(spec.routing.port)
        if perf is not None:
            current = self._measure(spec.routing.port, perf.path, perf.requests)
            v = perf_verdict(baseline, current, perf)
            post.append(
                Check(
                    "performance",
                    v.ok,
                    v.detail,
                    {"baseline": baseline.as_dict() if baseline else None, "current": current.as_dict()},
                )
            )
        sec = self._security(spec.routing.port)
        if sec is not None:
            post.append(sec)
        notes_check, notes = self._release_notes(change, final, version)
        post.append(notes_check)
        ok = self._phase(dep, "post_deployment", post, release_notes=notes)
        if not ok:
            failed = "; ".join(f"{c.name}: {c.detail}" for c in post if not c.ok)
            if self.delivery.post_deployment.rollback_on_failure:
                rb = self.rollout.rollback(dep.service, actor=CD_ACTOR)
                rb_final = self.rollout.run(rb.id)
                self.store.audit(
                    actor=CD_ACTOR,
                    action="delivery.rollback",
                    outcome="ok",
                    service=dep.service,
                    deployment_id=dep.id,
                    detail={"rollback_deployment": rb.id, "outcome": rb_final.phase.value, "reason": failed},
                )
                self._notify(change, final, "failure", f"rolled back: {failed}")
                return "rolled_back", f"post-deployment checks failed ({failed}); rolled back by {rb.id}"
            self._notify(change, final, "warning", f"post-deployment checks failed: {failed}")
            return "deploy_failed", f"post-deployment checks failed: {failed}"
        self._notify(change, final, "success", "succeeded")
        return "deployed", f"{dep.service} {version} serving production ({final.id})"

    # -- preparation checks
    def _approval_check(self, change: Change) -> Check:
        _, stored = self._approvals(change)
        approvers = [
            {"user": a.user, "role": a.role, "decision": a.decision} for a in stored if a.decision != "reject"
        ]
        auto = change.classification.get("standard", False)
        how = (
            "standard change, approved automatically (all gates passed)"
            if auto
            else ("approved by " + ", ".join(f"{a['user']} ({a['role']})" for a in approvers))
        )
        ok = bool(change.gates.get("all_passed"))
        return Check("approval", ok, how if ok else "gates did not all pass", {"approvals": approvers})

    def _notify(self, change: Change, dep: Deployment, kind: str, what: str) -> Check:
        spec = self.delivery.notify
        if spec is None:
            return Check("notification", True, "no stakeholders configured (delivery.notify)")
        notifier = Notifier([(n, self.secrets(n)) for n in spec.urls])
        title = f"[shipwarden] {dep.service} {dep.to_version}: deployment {what}"
        body = (
            f"Deployment {dep.id} of {dep.service} {dep.from_version or '∅'} → {dep.to_version} {what}.\n"
            f"Change {change.id}: {change.branch} @ {change.head_sha[:12]}, merged as "
            f"{(change.merge_sha or '')[:12]}.\n{change.reason}"
        )
        res = notifier.send(title, body, kind)  # type: ignore[arg-type]
        ok = res.ok or not spec.required
        names = ", ".join(f"{t.name} ({'ok' if t.ok else t.detail})" for t in res.targets)
        detail = (
            f"notified {names}"
            if res.ok
            else f"notification failed: {names}" + ("" if spec.required else " (not required)")
        )
        if kind != "info":  # end-of-deployment notices are recorded directly, outside the phases
            self.store.audit(
                actor=CD_ACTOR,
                action="delivery.notified",
                outcome="ok" if res.ok else "failed",
                service=dep.service,
                deployment_id=dep.id,
                detail={"what": what, **res.as_dict()},
            )
        return Check("notification", ok, detail, res.as_dict())

    def _resource_checks(self, dep: Deployment, version: str) -> list[Check]:
        res = self.delivery.preparation.resources
        self.state_dir.mkdir(parents=True, exist_ok=True)
        disk = enough(shutil.disk_usage(self.state_dir).free / 2**20, res.min_free_disk_mb, "disk")
        mem_mb = _mem_available_mb()
        mem = (
            enough(mem_mb, res.min_free_memory_mb, "memory")
            if mem_mb is not None
            else Verdict(False, "memory: cannot read MemAvailable from /proc/meminfo")
        )
        rel = self.release_dir(version)
        marker = rel / ".shipwarden-release"
        rel_ok = marker.is_file() and json.loads(marker.read_text()).get("version") == version
        return [
            Check("resources:disk", disk.ok, disk.detail),
            Check("resources:memory", mem.ok, mem.detail),
            Check(
                "release",
                rel_ok,
                f"{rel} holds {version}" if rel_ok else f"{rel} is missing or not {version}",
            ),
        ]

    def _backup_check(self, change: Change) -> Check:
        gate = next((g for g in change.gates.get("results", []) if g["gate"] == "backup"), None)
        if gate is None:
            ok = not self.delivery.preparation.require_backup
            return Check(
                "backup",
                ok,
                "no backup gate in the policy"
                + ("" if ok else " but delivery.preparation.requireBackup is true"),
            )
        return Check("backup", gate["passed"], gate["detail"], {"evidence_ids": gate["evidence_ids"]})

    # -- measurements (real HTTP through the production route)
    def _measure(self, port: int, path: str, n: int) -> LatencySummary:
        lat: list[float] = []
        errors = 0
        with self._http() as client:
            for _ in range(n):
                t0 = time.perf_counter()
                try:
                    r = client.get(f"http://127.0.0.1:{port}{path}")
                    ok = r.status_code < 500
                except httpx.HTTPError:
                    ok = False
                if ok:
                    lat.append((time.perf_counter() - t0) * 1000)
                else:
                    errors += 1
        return summarize_latencies(lat, errors)

    def _smoke(self, port: int) -> list[Check]:
        out = []
        with self._http() as client:
            for spec in self.delivery.post_deployment.smoke:
                verdicts = []
                for _ in range(spec.requests):
                    try:
                        r = client.get(f"http://127.0.0.1:{port}{spec.path}")
                        verdicts.append(smoke_verdict(r.status_code, r.text, spec))
                    except httpx.HTTPError as exc:
                        verdicts.append(Verdict(False, f"GET {spec.path} failed: {type(exc).__name__}"))
                bad = [v for v in verdicts if not v.ok]
                v = bad[0] if bad else verdicts[0]
                out.append(
                    Check(
                        f"smoke:{spec.path}",
                        not bad,
                        f"{len(verdicts) - len(bad)}/{len(verdicts)} ok; {v.detail}",
                    )
                )
        return out

    def _security(self, port: int) -> Check | None:
        spec = self.delivery.post_deployment.security
        if spec is None:
            return None
        return confirm_security(spec, f"http://127.0.0.1:{port}/", self.base_dir)

    def _previous_commit(self, change: Change, dep: Deployment) -> str | None:
        if dep.from_version:
            for old in self.store.history(dep.service, limit=200):
                if old.to_version == dep.from_version and old.commit_sha and old.phase is Phase.SUCCEEDED:
                    return old.commit_sha
        prev = change.facts.get("merge", {}).get("previous_target")
        return prev if isinstance(prev, str) else None

    def _release_notes(self, change: Change, dep: Deployment, version: str) -> tuple[Check, dict[str, Any]]:
        spec = self.delivery.post_deployment.release_notes
        assert change.merge_sha is not None
        try:
            prev = self._previous_commit(change, dep)
            commits = [
                Commit(c.sha, c.author_name, c.authored_at, c.subject)
                for c in self.git.log(prev, change.merge_sha)
            ]
        except (GitError, ValueError) as exc:
            return Check("release-notes", False, f"cannot list commits: {exc}"), {}
        text = release_notes(
            dep.service,
            dep.from_version,
            version,
            commits,
            at=self._now(),
            change_id=change.id,
            deployment_id=dep.id,
        )
        doc: dict[str, Any] = {
            "from_commit": prev,
            "to_commit": change.merge_sha,
            "markdown": text,
            "commits": [{"sha": c.sha, "subject": c.subject, "author": c.author} for c in commits],
        }
        if spec is None:
            return Check(
                "release-notes", True, f"{len(commits)} commit(s) recorded (no docs file configured)"
            ), doc
        path = self.base_dir / spec.path.replace("{service}", dep.service)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            head = f"# Release notes — {dep.service}\n\n"
            old = path.read_text() if path.exists() else head
            body = old[len(head) :] if old.startswith(head) else old
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(head + text + "\n" + body)
            os.replace(tmp, path)
        except OSError as exc:
            return Check("release-notes", False, f"cannot write {path}: {exc}"), doc
        doc["file"] = str(path)
        return Check("release-notes", True, f"{len(commits)} commit(s) written to {path}"), doc

    # -- records and explanations -----------------------------------------------------------------------
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
        """Everything needed to say why a change (or the change behind a deployment) is where it is."""
        dep_doc = None
        try:
            change = self.repo.get_change(ref)
        except NotFound:
            try:
                self.store.get(ref)
            except NotFound:
                raise UnknownChange(f"no change or deployment {ref!r}") from None
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


def _mem_available_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _parse(kind: str, data: bytes, source: str) -> Any:
    if kind == "junit":
        return parse_junit(data, source=source)
    if kind == "sarif":
        return parse_sarif(data, source=source)
    if kind == "k6":
        return parse_k6_summary(data, source=source)
    if kind == "locust":
        return parse_locust_stats(data, source=source)
    doc = _json_object(data, source)
    if kind == "backup":
        bid, at, ok = doc.get("backupId"), doc.get("verifiedAt"), doc.get("ok")
        if not isinstance(bid, str) or not bid:
            raise EvidenceError("expected a non-empty string", source=source, path="$.backupId")
        if not isinstance(ok, bool):
            raise EvidenceError("expected true or false", source=source, path="$.ok")
        try:
            when = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
        except ValueError:
            raise EvidenceError(
                f"{at!r} is not an ISO 8601 time", source=source, path="$.verifiedAt"
            ) from None
        if when.tzinfo is None:
            raise EvidenceError(f"{at!r} has no timezone", source=source, path="$.verifiedAt")
        return BackupVerification(bid, when, ok, str(doc.get("detail", "")))
    migrations = doc.get("migrations", [])
    if not isinstance(migrations, list):
        raise EvidenceError("expected a list", source=source, path="$.migrations")
    out = []
    for i, m in enumerate(migrations):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("name"), str)
            or not isinstance(m.get("reversible"), bool)
        ):
            raise EvidenceError(
                "expected {name: string, reversible: bool}", source=source, path=f"$.migrations[{i}]"
            )
        out.append(Migration(m["name"], m["reversible"]))
    prev = doc.get("previousVersion")
    if prev is not None and not isinstance(prev, str):
        raise EvidenceError("expected a string", source=source, path="$.previousVersion")
    return RollbackPlan(prev, tuple(out))


def _json_object(data: bytes, source: str) -> dict[str, Any]:
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise EvidenceError("not UTF-8", source=source) from None
    except json.JSONDecodeError as exc:
        raise EvidenceError(
            f"not JSON: {exc.msg}", source=source, line=exc.lineno, column=exc.colno
        ) from None
    if not isinstance(doc, dict):
        raise EvidenceError("expected a JSON object", source=source, path="$")
    return doc


# --- text rendering (CLI `explain`, API `?format=text`) ----------------------------------------------------


def render_explanation(doc: dict[str, Any]) -> str:
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
