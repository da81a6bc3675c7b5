"""What every part of ``ChangeService`` shares: its collaborators, the policy sections it reads, the clock.

``ChangeCore`` is the base of the stage classes in this package; it holds state and configuration
only, so that each stage can be read (and tested) knowing just the stages downstream of it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from shipwarden.domain.delivery import DeliveryPolicy
from shipwarden.domain.gates import Approval, GatePolicy
from shipwarden.domain.policy import LoadedPolicy
from shipwarden.ports.changes import Change, ChangesRepository, StoredApproval
from shipwarden.ports.ci import PullRequestMerger, WebhookReceiver
from shipwarden.ports.store import UnitOfWork
from shipwarden.ports.vcs import Vcs
from shipwarden.services.changes.errors import NotConfigured
from shipwarden.services.refusals import RefusalLog
from shipwarden.services.rollout import RolloutService

_SHA = re.compile(r"^[0-9a-f]{40}$")
#: the actor of everything continuous delivery does on its own after a merge
CD_ACTOR = "shipwarden:cd"
#: the change statuses that new evidence, approvals or a re-evaluation can still move
OPEN = ("pending", "blocked", "waiting_approval", "approved")


def env_secrets(name: str) -> str | None:
    """Default secret lookup: ``SHIPWARDEN_SECRET_<NAME>`` (upper case, ``-``/``.`` → ``_``)."""
    return os.environ.get("SHIPWARDEN_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()) or None


@dataclass(frozen=True)
class ChangeDrivers:
    """The external systems of the change pipeline, as ``bootstrap.change_drivers`` builds them:
    ``vcs(url, workdir)`` a repository, ``code_host(token, api_url)`` what merges pull requests,
    ``webhooks[provider](secret)`` each CI provider's webhook receiver."""

    vcs: Callable[[str, Path], Vcs]
    code_host: Callable[[str, str], PullRequestMerger]
    webhooks: Mapping[str, Callable[[str], WebhookReceiver]]


class ChangeCore:
    """Collaborators and configuration of the change pipeline; no pipeline stage lives here."""

    def __init__(
        self,
        store: UnitOfWork,
        rollout: RolloutService | None,
        policy: LoadedPolicy,
        *,
        state_dir: Path,
        drivers: ChangeDrivers,
        secrets: Callable[[str], str | None] = env_secrets,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        schedule: Callable[[Callable[[], None]], None] | None = None,
        http_client: Callable[[], httpx.Client] | None = None,
        refusals: RefusalLog | None = None,
    ) -> None:
        self.store = store
        self.repo: ChangesRepository = store.changes
        self.drivers = drivers
        self.rollout = rollout
        self.loaded = policy
        self.state_dir = Path(state_dir)
        self.secrets = secrets
        self.clock = clock
        #: how a deployment after a merge is run: inline by default, a thread/background task in the API
        self.schedule = schedule or (lambda fn: fn())
        self._http = http_client or (lambda: httpx.Client(timeout=5.0))
        self.base_dir = Path(policy.source).resolve().parent
        self._git: Vcs | None = None
        #: where refusals are audited; without one (CLI, tests) each is written directly
        self.refusals = refusals

    def _refused(self, *, source: str, actor: str, action: str, detail: dict[str, Any]) -> None:
        """Audit one refused request (bounded per source when a ``RefusalLog`` is configured)."""
        if self.refusals is not None:
            self.refusals.refuse(source=source, actor=actor, action=action, detail=detail)
        else:
            self.store.audit(actor=actor, action=action, outcome="denied", detail=detail)

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
    def git(self) -> Vcs:
        if self._git is None:
            url = self.delivery.repository.url
            if "://" not in url and not url.startswith(("git@", "/")):
                url = str((self.base_dir / url).resolve())
            self._git = self.drivers.vcs(url, self.state_dir / "git" / "work")
        return self._git

    def release_dir(self, version: str) -> Path:
        return self.base_dir / self.delivery.releases / version

    def _now(self) -> datetime:
        return self.clock()

    # -- shared reads -----------------------------------------------------------------------------------
    def _approvals(self, change: Change) -> tuple[list[Approval], list[StoredApproval]]:
        """The approvals that count: those given for the head commit (gate evaluation, deployment record)."""
        stored = [a for a in self.repo.approvals(change.id) if a.commit_sha == change.head_sha]
        return [a for x in stored if (a := x.as_approval()) is not None], stored
