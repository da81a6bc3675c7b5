"""The change pipeline (D1–D3, D9, D11, E3, E4): CI says "done" → gates → approval → merge → deploy.

One ``ChangeService`` drives a change through these states (``changes.status``)::

    pending ──(all gates but change control pass)──► waiting_approval ──(roles approve)──┐
       │  ▲ more evidence arrives: re-evaluated                                           ▼
       ├─► blocked (a gate failed: a failing test, a finding, p99 over, branch moved) ──► approved
       └─► superseded (a newer commit on the branch)           rejected ◄── a role rejects │
                                                                                          ▼
                      deployed / deploy_failed / rolled_back ◄── deploying ◄──────────── merged

Inputs, each authenticated and audited: **CI webhooks** (``receive_webhook``), **evidence
uploads** (``upload_evidence``) and **approvals / rejections** (``approve``/``reject``).  Each one
ends in ``progress``: evaluate the gates of the change's head commit, merge exactly that commit
once approved, then judge main (the merge and anything else that reached it) and deploy the merge
commit in three phases.

``ChangeService`` is assembled from one class per stage, each in its own module and each built on
the stages downstream of it, so a module only calls what comes after it in the pipeline; the
parts that need only the shared core (``merge``, ``checks``, ``records``) are composed, not
inherited:

* ``webhooks``  — CI webhook intake: signatures, replay protection, ``ci`` evidence (D2)
* ``evidence``  — evidence uploads and their parsing (D1, E3)
* ``approvals`` — role approvals, rejections and UAT sign-off (D3)
* ``gates``     — gate evaluation and ``progress`` (D1, D3)
* ``merge``     — merging exactly the evidenced sha (D3): ``Merging``, a part of its own over the
  core, which ``gates`` composes
* ``mainline``  — every commit that reaches main, however it got there: deployed through the
  gates, or not and why (D9)
* ``delivery``  — release export and the deployment's three phases (D9, E4)
* ``checks``    — preparation and post-deployment checks, stakeholder notices (E4):
  ``DeploymentChecks``, a part of its own over the core, which ``delivery`` composes
* ``records``   — change documents, the delivery record and ``explain`` (D11): ``ChangeRecords``, a
  service of its own over the store, which ``ChangeService`` composes
* ``core``      — collaborators and configuration shared by all of them; ``errors`` — the refusals
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from shipwarden.services.changes.approvals import Approvals
from shipwarden.services.changes.core import CD_ACTOR, OPEN, ChangeDrivers, env_secrets
from shipwarden.services.changes.errors import (
    BadRequest,
    ChangeError,
    Forbidden,
    NotConfigured,
    StateConflict,
    TooLarge,
    Unauthorized,
    UnknownChange,
    Unprocessable,
    UnsupportedMedia,
)
from shipwarden.services.changes.evidence import KINDS, MAX_EVIDENCE_BYTES, EvidenceIntake
from shipwarden.services.changes.evidence import _parse as _parse  # the evidence parsing tests call it
from shipwarden.services.changes.records import ChangeRecords, render_explanation
from shipwarden.services.changes.records import _evidence_doc as _evidence_doc  # the evidence routes use it
from shipwarden.services.changes.webhooks import WebhookIntake, WebhookResult


class ChangeService(WebhookIntake, EvidenceIntake, Approvals):
    """The change pipeline: every intake, evaluation, merge and deployment of a change; its
    records are read by ``ChangeRecords`` (``records``), a service of its own."""

    @cached_property
    def records(self) -> ChangeRecords:
        return ChangeRecords(self.store)

    def change_doc(self, change_id: str) -> dict[str, Any]:
        return self.records.change_doc(change_id)

    def delivery_record(self, dep_id: str) -> dict[str, Any]:
        return self.records.delivery_record(dep_id)

    def explain(self, ref: str) -> dict[str, Any]:
        return self.records.explain(ref)


__all__ = [
    "CD_ACTOR",
    "KINDS",
    "MAX_EVIDENCE_BYTES",
    "OPEN",
    "BadRequest",
    "ChangeError",
    "ChangeRecords",
    "ChangeDrivers",
    "ChangeService",
    "Forbidden",
    "NotConfigured",
    "StateConflict",
    "TooLarge",
    "UnsupportedMedia",
    "Unauthorized",
    "UnknownChange",
    "Unprocessable",
    "WebhookResult",
    "env_secrets",
    "render_explanation",
]
