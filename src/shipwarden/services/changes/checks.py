"""The checks around a rollout (E4): preparation before it, post-deployment after it, and notices.

Each check is a ``postdeploy.Check`` so that a phase is simply "all of its checks passed" and the
deployment record lists every one of them with its detail.  Measurements are real HTTP requests
through the service's production route, the way its clients reach it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from shipwarden.domain.delivery import (
    Commit,
    LatencySummary,
    Verdict,
    enough,
    release_notes,
    smoke_verdict,
    summarize_latencies,
)
from shipwarden.domain.rollout import Phase
from shipwarden.ports.changes import Change
from shipwarden.ports.store import Deployment
from shipwarden.ports.vcs import GitError
from shipwarden.services.changes.core import CD_ACTOR, ChangeCore
from shipwarden.services.notify import Notifier
from shipwarden.services.postdeploy import Check, confirm_security


class DeploymentChecks:
    """Preparation and post-deployment checks of one deployment, and the stakeholder notices (a
    part of its own: it reads the pipeline's configuration and collaborators, ``core``, and calls
    nothing of the pipeline)."""

    def __init__(self, core: ChangeCore) -> None:
        self.core = core

    def audit_delivery(self, dep: Deployment, action: str, *, ok: bool, detail: dict[str, Any]) -> None:
        """An audit entry of the deployment, so that its record (D11) carries what delivery did."""
        self.core.store.audit(
            actor=CD_ACTOR,
            action=action,
            outcome="ok" if ok else "failed",
            service=dep.service,
            deployment_id=dep.id,
            detail=detail,
        )

    # -- preparation checks
    def approval_check(self, change: Change) -> Check:
        _, stored = self.core._approvals(change)
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

    def notify(self, change: Change, dep: Deployment, kind: str, what: str) -> Check:
        spec = self.core.delivery.notify
        if spec is None:
            return Check("notification", True, "no stakeholders configured (delivery.notify)")
        notifier = Notifier([(n, self.core.secrets(n)) for n in spec.urls])
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
            self.audit_delivery(dep, "delivery.notified", ok=res.ok, detail={"what": what, **res.as_dict()})
        return Check("notification", ok, detail, res.as_dict())

    def resource_checks(self, dep: Deployment, version: str) -> list[Check]:
        res = self.core.delivery.preparation.resources
        self.core.state_dir.mkdir(parents=True, exist_ok=True)
        disk = enough(shutil.disk_usage(self.core.state_dir).free / 2**20, res.min_free_disk_mb, "disk")
        mem_mb = _mem_available_mb()
        mem = (
            enough(mem_mb, res.min_free_memory_mb, "memory")
            if mem_mb is not None
            else Verdict(False, "memory: cannot read MemAvailable from /proc/meminfo")
        )
        rel = self.core.release_dir(version)
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

    def backup_check(self, change: Change) -> Check:
        gate = next((g for g in change.gates.get("results", []) if g["gate"] == "backup"), None)
        if gate is None:
            ok = not self.core.delivery.preparation.require_backup
            return Check(
                "backup",
                ok,
                "no backup gate in the policy"
                + ("" if ok else " but delivery.preparation.requireBackup is true"),
            )
        return Check("backup", gate["passed"], gate["detail"], {"evidence_ids": gate["evidence_ids"]})

    # -- measurements (real HTTP through the production route)
    def measure(self, port: int, path: str, n: int) -> LatencySummary:
        lat: list[float] = []
        errors = 0
        with self.core._http() as client:
            for _ in range(n):
                t0 = time.perf_counter()
                try:
                    r = client.get(_production_url(port, path))
                    ok = r.status_code < 500
                except httpx.HTTPError:
                    ok = False
                if ok:
                    lat.append((time.perf_counter() - t0) * 1000)
                else:
                    errors += 1
        return summarize_latencies(lat, errors)

    def smoke(self, port: int) -> list[Check]:
        out = []
        with self.core._http() as client:
            for spec in self.core.delivery.post_deployment.smoke:
                verdicts = []
                for _ in range(spec.requests):
                    try:
                        r = client.get(_production_url(port, spec.path))
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

    def security(self, port: int) -> Check | None:
        spec = self.core.delivery.post_deployment.security
        if spec is None:
            return None
        return confirm_security(spec, _production_url(port, "/"), self.core.base_dir)

    def previous_commit(self, change: Change, dep: Deployment) -> str | None:
        if dep.from_version:
            for old in self.core.store.history(dep.service, limit=200):
                if old.to_version == dep.from_version and old.commit_sha and old.phase is Phase.SUCCEEDED:
                    return old.commit_sha
        prev = change.facts.get("merge", {}).get("previous_target")
        return prev if isinstance(prev, str) else None

    def release_notes(self, change: Change, dep: Deployment, version: str) -> tuple[Check, dict[str, Any]]:
        spec = self.core.delivery.post_deployment.release_notes
        assert change.merge_sha is not None
        try:
            prev = self.previous_commit(change, dep)
            commits = [
                Commit(c.sha, c.author_name, c.authored_at, c.subject)
                for c in self.core.git.log(prev, change.merge_sha)
            ]
        except (GitError, ValueError) as exc:
            return Check("release-notes", False, f"cannot list commits: {exc}"), {}
        text = release_notes(
            dep.service,
            dep.from_version,
            version,
            commits,
            at=self.core._now(),
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
        path = self.core.base_dir / spec.path.replace("{service}", dep.service)
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


def _production_url(port: int, path: str) -> str:
    """``path`` on the production route of this host: the router port the service's clients use."""
    return f"http://127.0.0.1:{port}{path}"


def _mem_available_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
