"""Continuous delivery (D9, E4): a merge to main deploys its merge commit, in three audited phases.

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
record (D11) carries them.  The checks themselves live in ``checks.py``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Any

from shipwarden.domain.delivery import perf_verdict, version_for
from shipwarden.domain.rollout import Phase, Transition
from shipwarden.ports.changes import Change
from shipwarden.ports.store import Deployment
from shipwarden.ports.vcs import GitError
from shipwarden.services.changes.checks import DeploymentChecks
from shipwarden.services.changes.core import CD_ACTOR, ChangeCore
from shipwarden.services.changes.errors import NotConfigured, StateConflict
from shipwarden.services.postdeploy import Check


class ContinuousDelivery(ChangeCore):
    """Exports the release of a merged change and runs its deployment through the three phases."""

    @cached_property
    def checks(self) -> DeploymentChecks:
        """The preparation and post-deployment checks and the notices, over this pipeline's core."""
        return DeploymentChecks(self)

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
            error = f"{type(exc).__name__}: {exc}"
            self._deploy_failed(change_id, "delivery.error", error, f"deployment could not run: {error}")

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
            return self._deploy_failed(
                change.id,
                "delivery.release_failed",
                str(exc),
                f"could not export {sha[:12]} to {self.release_dir(version)}: {exc}",
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

    def _deploy_failed(self, change_id: str, action: str, error: str, reason: str) -> Change:
        """The deployment could not run at all (no rollout to judge): say why, in the change and the audit."""
        return self.repo.update_change(
            change_id,
            actor=CD_ACTOR,
            action=action,
            outcome="failed",
            audit_detail={"error": error},
            status="deploy_failed",
            reason=reason,
        )

    def _phase(self, dep: Deployment, name: str, checks: list[Check], **extra: Any) -> bool:
        ok = all(c.ok for c in checks)
        detail = {"phase": name, "ok": ok, "checks": [c.as_dict() for c in checks], **extra}
        self.checks.audit_delivery(dep, f"delivery.{name}", ok=ok, detail=detail)
        return ok

    def _deploy_one(self, change: Change, dep: Deployment, version: str) -> tuple[str, str]:
        assert self.rollout is not None
        spec = self.rollout.spec(dep.service)
        # -- preparation
        prep = [self.checks.approval_check(change), self.checks.notify(change, dep, "info", "starting")]
        prep += self.checks.resource_checks(dep, version)
        prep.append(self.checks.backup_check(change))
        baseline = None
        perf = self.delivery.post_deployment.performance
        if perf is not None and dep.from_version is not None:
            baseline = self.checks.measure(spec.routing.port, perf.path, perf.requests)
            prep.append(
                Check(
                    "performance-baseline",
                    True,
                    f"p95 {baseline.p95_ms} ms on {dep.from_version}",
                    baseline.as_dict(),
                )
            )
        if not self._phase(dep, "preparation", prep):
            failed = _failures(prep)
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
            self.checks.notify(change, final, "failure", f"failed ({final.phase.value})")
            return "deploy_failed", f"rollout {final.phase.value}: {final.reason}"
        # -- post-deployment
        post = self.checks.smoke(spec.routing.port)
        if perf is not None:
            current = self.checks.measure(spec.routing.port, perf.path, perf.requests)
            v = perf_verdict(baseline, current, perf)
            post.append(
                Check(
                    "performance",
                    v.ok,
                    v.detail,
                    {"baseline": baseline.as_dict() if baseline else None, "current": current.as_dict()},
                )
            )
        sec = self.checks.security(spec.routing.port)
        if sec is not None:
            post.append(sec)
        notes_check, notes = self.checks.release_notes(change, final, version)
        post.append(notes_check)
        ok = self._phase(dep, "post_deployment", post, release_notes=notes)
        if not ok:
            failed = _failures(post)
            if self.delivery.post_deployment.rollback_on_failure:
                rb = self.rollout.rollback(dep.service, actor=CD_ACTOR)
                rb_final = self.rollout.run(rb.id)
                self.checks.audit_delivery(
                    dep,
                    "delivery.rollback",
                    ok=True,
                    detail={"rollback_deployment": rb.id, "outcome": rb_final.phase.value, "reason": failed},
                )
                self.checks.notify(change, final, "failure", f"rolled back: {failed}")
                return "rolled_back", f"post-deployment checks failed ({failed}); rolled back by {rb.id}"
            self.checks.notify(change, final, "warning", f"post-deployment checks failed: {failed}")
            return "deploy_failed", f"post-deployment checks failed: {failed}"
        self.checks.notify(change, final, "success", "succeeded")
        return "deployed", f"{dep.service} {version} serving production ({final.id})"


def _failures(checks: list[Check]) -> str:
    """The failed checks of a phase, as the change's reason and the rollback's cause read them."""
    return "; ".join(f"{c.name}: {c.detail}" for c in checks if not c.ok)
