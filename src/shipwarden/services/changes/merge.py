"""Merging (D3): exactly the evidenced sha, or nothing.

Through git (``GitRepository.merge`` refuses when the branch moved) or GitHub's merge endpoint with
``sha`` (409 when the head moved); a moved branch blocks the change rather than merging code that
no gate has seen.
"""

from __future__ import annotations

from shipwarden.ports.changes import Change
from shipwarden.ports.ci import HeadMoved as GitHubHeadMoved
from shipwarden.ports.ci import MergeError
from shipwarden.ports.vcs import GitError, HeadMoved, MergeMode
from shipwarden.services.changes.core import ChangeCore
from shipwarden.services.changes.errors import StateConflict


class Merging:
    """Merges approved changes into the main branch (a part of its own over the pipeline's
    configuration and collaborators, ``core``; ``GateEvaluation`` composes it)."""

    def __init__(self, core: ChangeCore) -> None:
        self.core = core

    def merge(self, change_id: str) -> Change:
        """Merge exactly the evidenced head commit into main; a moved branch blocks the change."""
        change = self.core.repo.get_change(change_id)
        if change.status != "approved":
            raise StateConflict(f"change {change.id} is {change.status}, not approved; nothing merged")
        d = self.core.delivery
        main = d.repository.main_branch
        gh = d.repository.github
        try:
            if gh is not None and change.pr_number is not None:
                token = self.core.secrets(gh.token_secret)
                if not token:
                    raise MergeError(0, f"secret {gh.token_secret!r} (GitHub token) is not set")
                client = self.core.drivers.code_host(token, gh.api_url)
                try:
                    res = client.merge_pull_request(
                        gh.owner, gh.repo, change.pr_number, sha=change.head_sha, merge_method=gh.merge_method
                    )
                finally:
                    client.close()
                merge_sha, previous, via = res.sha, None, f"github PR #{change.pr_number}"
            else:
                out = self.core.git.merge(
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
        return self.core.repo.update_change(
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
        return self.core.repo.update_change(
            change.id,
            actor="shipwarden",
            action=action,
            outcome="failed",
            audit_detail={"reason": reason},
            status="blocked",
            reason=reason,
        )
