"""CI webhook intake (D2): signature, replay protection, then the stage result as ``ci`` evidence.

The provider signature is checked on the raw body (401 and nothing else on failure), then replay
protection (``ReplayGuard``: seen delivery ids in ``webhook_deliveries``, CircleCI's signed
``happened_at`` inside the window; 409 on a replay), then the stage result is stored as ``ci``
evidence of its commit and the change for that commit and branch is (re-)evaluated.  Every refusal
is audited with a digest of the body, never the body itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from shipwarden.adapters.ci.base import CiEvent, IgnoredEvent, PayloadError, SignatureError
from shipwarden.adapters.ci.circleci import CircleCiWebhook
from shipwarden.adapters.ci.github import GitHubWebhook
from shipwarden.domain.evidence import sha256_digest
from shipwarden.domain.replay import ReplayGuard
from shipwarden.services.changes.core import _SHA
from shipwarden.services.changes.errors import BadRequest, StateConflict, Unauthorized, UnknownChange
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
