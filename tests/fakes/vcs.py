"""FakeRepository: the guarded merge of the VCS port (``ports/vcs.py`` ``Vcs.merge``) in memory.

Branches point at commits; a commit knows its parents and which paths it changed.  ``merge``
keeps the driver's promise (``adapters/vcs/git.py``): only while the branch still points at the
approved sha (else :class:`HeadMoved`), a change whose paths the target changed meanwhile
conflicts (:class:`MergeConflict`), a change already in the target is not merged again.
``tests/contract/test_merge_contract.py`` holds it to real git and to GitHub's merge endpoint.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass

from shipwarden.ports.vcs import HeadMoved, MergeConflict, MergeMode, MergeOutcome

_ids = itertools.count(1)
_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Commit:
    sha: str
    parents: tuple[str, ...]
    paths: frozenset[str]


def _sha() -> str:
    return hashlib.sha1(f"fake-commit-{next(_ids)}".encode()).hexdigest()


class FakeRepository:
    def __init__(self) -> None:
        root = Commit(_sha(), (), frozenset({"README.md"}))
        self.commits: dict[str, Commit] = {root.sha: root}
        self.branches: dict[str, str] = {"main": root.sha}

    # -- test controls -----------------------------------------------------------------------
    def commit(self, branch: str, paths: set[str], *, base: str = "main") -> str:
        parent = self.branches.get(branch) or self.branches[base]
        c = Commit(_sha(), (parent,), frozenset(paths))
        self.commits[c.sha] = c
        self.branches[branch] = c.sha
        return c.sha

    def history(self, sha: str) -> set[str]:
        seen, todo = set(), [sha]
        while todo:
            s = todo.pop()
            if s not in seen:
                seen.add(s)
                todo += self.commits[s].parents
        return seen

    # -- the port's subset -------------------------------------------------------------------
    def branch_head(self, branch: str) -> str | None:
        return self.branches.get(branch)

    def has_commit(self, sha: str) -> bool:
        return sha in self.commits

    def merge(
        self,
        branch: str,
        expected_sha: str,
        *,
        target: str = "main",
        mode: MergeMode = MergeMode.MERGE_COMMIT,
        message: str | None = None,
    ) -> MergeOutcome:
        if not _SHA.fullmatch(expected_sha):
            raise ValueError(f"expected a full lower-case hex commit sha, got {expected_sha!r}")
        actual = self.branches.get(branch)
        if actual != expected_sha:
            raise HeadMoved(branch, expected_sha, actual)
        previous = self.branches[target]
        if expected_sha in self.history(previous):
            return MergeOutcome(previous, expected_sha, False, previous)
        base = self.history(expected_sha) & self.history(previous)
        ours = {p for s in self.history(previous) - base for p in self.commits[s].paths}
        theirs = {p for s in self.history(expected_sha) - base for p in self.commits[s].paths}
        if ours & theirs:
            raise MergeConflict(expected_sha, target, sorted(ours & theirs))
        merged = Commit(_sha(), (previous, expected_sha), frozenset())
        self.commits[merged.sha] = merged
        self.branches[target] = merged.sha
        return MergeOutcome(merged.sha, expected_sha, False, previous)
