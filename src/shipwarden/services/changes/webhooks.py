"""CI webhook intake (D2): media type, signature, contract, replay protection, then one transaction.

In order, each refusal audited (a digest of the body, never the body) and nothing stored:

1. ``Content-Type`` must be ``application/json`` (415), then the provider signature over the raw
   body (401), then the body against the provider's documented contract (400, with the JSON path;
   ``adapters.ci.contract``): a commit is 40 lower-case hex digits, a branch is a name git accepts,
   statuses are in the provider's enum, ids and numbers fit their columns.
2. Replay protection (409, ``domain.webhook_replay.ReplayGuard``): a delivery id already seen, a body whose
   sha256 was already accepted (GitHub signs no id or time: a captured body re-sent under a new
   ``X-GitHub-Delivery`` is a replay), or CircleCI's signed ``happened_at`` outside the window.
3. **One transaction** (``ChangesRepo.atomic``): the delivery row (id + body digest), the ``ci``
   evidence, the change created or relabelled, and each one's audit entry commit together or not
   at all.  Before, they were separate commits: a failure after the first left a delivery row that
   refused every redelivery as a duplicate, so that change could never be created.  Two identical
   deliveries racing each other meet the primary key / unique digest: one commits, the other is
   a 409.
4. Then the change is evaluated (``progress``): gates, and a merge if approved, each step its own
   persisted transition, as for evidence uploads and approvals.  A GitHub ``push`` to the main
   branch instead has every commit it brought judged (``mainline.watch_main``, D9): deployed
   through the gates, waiting for its evidence, or alerted and recorded as a policy violation.  A
   CI result for a commit of main that waits for its evidence opens (or finds) the change that
   judges it (``change_of_awaited``); other CI results for main are only recorded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from shipwarden.domain.evidence import sha256_digest
from shipwarden.domain.webhook_replay import ReplayGuard
from shipwarden.ports.changes import ChangesTransaction, DuplicateDelivery
from shipwarden.ports.ci import CiEvent, IgnoredEvent, PayloadError, SignatureError, UnsupportedMediaType
from shipwarden.services.changes.core import _SHA
from shipwarden.services.changes.errors import (
    BadRequest,
    ChangeError,
    StateConflict,
    Unauthorized,
    UnknownChange,
    UnsupportedMedia,
)
from shipwarden.services.changes.gates import GateEvaluation


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


class WebhookIntake(GateEvaluation):
    """Turns authenticated CI deliveries into evidence and changes."""

    def receive_webhook(
        self,
        provider: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        source: str = "local",
        access: Mapping[str, Any] | None = None,
    ) -> WebhookResult:
        """Authenticate, validate, dedupe and record one CI delivery; then (re-)evaluate its change.

        ``source`` (the client address) keys the bound on refusal audit entries; ``access``
        (method, path, ip) is added to each refusal's entry, which is also its access record."""
        if provider not in ("circleci", "github"):
            raise UnknownChange(f"unknown webhook provider {provider!r} (circleci, github)")
        actor = f"webhook:{provider}"
        digest = hashlib.sha256(body).hexdigest()

        def refuse(exc: ChangeError, event: CiEvent | None = None) -> ChangeError:
            detail: dict[str, Any] = {
                **(access or {}),
                "status": exc.status,
                "reason": exc.message[:500],
                "body_sha256": digest,
                "body_bytes": len(body),
            }
            if event is not None:
                detail.update(id=event.event_id, commit=event.commit_sha, branch=event.branch)
            self._refused(source=source, actor=actor, action="webhook.rejected", detail=detail)
            return exc

        try:
            cfg = self.delivery.webhooks
            name = getattr(cfg, provider)
            secret = self.secrets(name) if name else None
            receiver = self.drivers.webhooks[provider](secret or "")
            if not secret:
                raise SignatureError(
                    f"no {provider} webhook secret is configured"
                    + (f" (secret {name!r} is not set)" if name else " (delivery.webhooks." + provider + ")")
                )
            event = receiver.receive(headers, body)
        except UnsupportedMediaType as exc:
            raise refuse(UnsupportedMedia(f"unsupported media type: {exc}")) from None
        except SignatureError as exc:
            raise refuse(Unauthorized(f"signature check failed: {exc}")) from None
        except IgnoredEvent as exc:
            self.store.audit(actor=actor, action="webhook.ignored", outcome="ok", detail={"reason": str(exc)})
            return WebhookResult(202, "ignored", str(exc))
        except PayloadError as exc:
            raise refuse(BadRequest(f"malformed {provider} payload: {exc}")) from None

        guard = ReplayGuard(window=timedelta(seconds=cfg.replay_window))
        decision = guard.decide(
            event.event_id,
            event.delivered_at,
            self._now(),
            self.repo.seen_deliveries(provider),
            body_digest=digest,
            seen_digests=self.repo.seen_bodies(provider),
        )
        if not decision.accepted:
            msg = f"replay refused ({decision.reason}): {decision.detail}"
            raise refuse(StateConflict(msg, reason=decision.reason), event)
        try:
            result, change_id = self.repo.atomic(lambda tx: self._record(tx, event, digest))
        except DuplicateDelivery as exc:  # an identical delivery committed first
            msg = f"replay refused ({exc.reason}): {exc}"
            raise refuse(StateConflict(msg, reason=exc.reason), event) from None
        if event.event_type == "push" and event.branch == self.delivery.repository.main_branch:
            return self._main_pushed(event)
        if change_id is None:
            return result
        change = self.progress(change_id)
        return WebhookResult(202, "accepted", change.reason, change.id, change.status, result.evidence_id)

    def _record(
        self, tx: ChangesTransaction, event: CiEvent, body_digest: str
    ) -> tuple[WebhookResult, str | None]:
        """Every write of one delivery, in the caller's transaction; the change to evaluate next."""
        summary = {
            "type": event.event_type,
            "commit": event.commit_sha,
            "branch": event.branch,
            "stage": event.stage_name,
            "status": event.stage_status.value if event.stage_status else None,
            "pipeline": event.pipeline_id,
        }
        tx.record_delivery(event.provider, event.event_id, body_digest, detail=summary)
        if event.labels is not None:
            return self._relabel(tx, event)
        check = event.as_check()
        sha = event.commit_sha
        if check is None or sha is None or not _SHA.match(sha):
            why = "carries no stage result" if check is None else "has no full commit sha"
            return WebhookResult(202, "ignored", f"event {event.event_id} {why}"), None
        actor = f"webhook:{event.provider}"
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
        ev = tx.add_evidence(
            commit_sha=sha,
            kind="ci",
            category="ci",
            report=check,
            digest=sha256_digest(json.dumps(pipeline, sort_keys=True)),
            pipeline=pipeline,
            source_name=f"{event.provider}:{event.event_type}",
            actor=actor,
        )
        main = self.delivery.repository.main_branch
        if not event.branch:
            # a commit status or a fork's check names no branch: the change of that head, if any
            change = tx.find_change(head_sha=sha)
            if change is None:
                what = "CI result without a branch recorded"
                return WebhookResult(202, "accepted", what, evidence_id=ev.id), None
            return WebhookResult(202, "accepted", change.reason, change.id, change.status, ev.id), change.id
        if event.branch == main:
            # a commit that reached main before its gates passed is judged by its evidence (D9)
            awaited = self.change_of_awaited(tx, sha, actor)
            if awaited is None:
                what = f"CI result for {main} recorded"
                return WebhookResult(202, "accepted", what, evidence_id=ev.id), None
            result = WebhookResult(202, "accepted", awaited.reason, awaited.id, awaited.status, ev.id)
            return result, awaited.id
        change = tx.find_change(head_sha=sha, branch=event.branch)
        if change is None:
            pr_number = event.pull_requests[0] if event.pull_requests else None
            # A new head of a labelled pull request keeps its labels until a pull_request event
            # says otherwise: a CI result that arrives before (or without) that event must not
            # create an unlabelled change that change control by label would not hold back.
            before = tx.latest_on_branch(event.branch)
            same_pr = before is not None and (pr_number is None or before.pr_number in (None, pr_number))
            change = tx.create_change(
                repo=event.repository or self.delivery.repository.url,
                branch=event.branch,
                head_sha=sha,
                actor=actor,
                pr_number=pr_number,
                labels=before.labels if before is not None and same_pr else (),
            )
        return WebhookResult(202, "accepted", change.reason, change.id, change.status, ev.id), change.id

    def _relabel(self, tx: ChangesTransaction, event: CiEvent) -> tuple[WebhookResult, str | None]:
        """A pull request event: its labels (added and removed) become the change's, which is
        created for the PR's head if CI has not reported yet (not for a closed pull request)."""
        labels = event.labels or ()
        sha, branch = event.commit_sha, event.branch
        main = self.delivery.repository.main_branch
        if sha is None or not _SHA.match(sha) or not branch or branch == main:
            return WebhookResult(202, "ignored", f"event {event.event_id} names no change"), None
        actor = f"webhook:{event.provider}"
        change = tx.find_change(head_sha=sha, branch=branch)
        if change is None:
            if event.event_type == "pull_request.closed":
                return WebhookResult(202, "ignored", f"pull request of {branch} closed"), None
            change = tx.create_change(
                repo=event.repository or self.delivery.repository.url,
                branch=branch,
                head_sha=sha,
                actor=actor,
                pr_number=event.pull_requests[0] if event.pull_requests else None,
                labels=labels,
            )
        elif set(labels) != set(change.labels):
            change = tx.update_change(
                change.id,
                actor=actor,
                action="change.labels",
                labels=labels,
                audit_detail={"labels": list(labels), "was": list(change.labels), "event": event.event_type},
            )
        return WebhookResult(202, "accepted", change.reason, change.id, change.status), change.id

    def _main_pushed(self, event: CiEvent) -> WebhookResult:
        """A push to main (recorded, deduplicated): judge every commit it brought (D9)."""
        detail: dict[str, Any] = {
            "delivery": event.event_id,
            "before": event.before_sha,
            "after": event.commit_sha,
        }
        if event.forced is not None:
            detail["forced"] = event.forced
        try:
            judged = self.watch_main(via=f"webhook:{event.provider}", detail=detail, seed=event.before_sha)
        except Exception as exc:  # noqa: BLE001 - git down, store busy: the delivery is recorded either way
            # polling (``shipwarden main watch``, ``serve --watch-main``) judges the push later
            self.store.audit(
                actor=f"webhook:{event.provider}",
                action="main.watch_failed",
                outcome="failed",
                detail={**detail, "error": f"{type(exc).__name__}: {exc}"[:500]},
            )
            return WebhookResult(202, "accepted", f"push to main recorded; main could not be read now: {exc}")
        if not judged:
            return WebhookResult(202, "accepted", "push to main recorded; nothing new to judge")
        parts = [f"{j.sha[:12]} {j.verdict} ({j.reason})" for j in judged]
        return WebhookResult(202, "accepted", "push to main judged: " + "; ".join(parts))
