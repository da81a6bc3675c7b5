"""The version-control port: errors, what a merge and a diff report, and the repository Protocol
(the driver: ``adapters/vcs/git.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Protocol

__all__ = [
    "ChangeStats",
    "CommitInfo",
    "FileChange",
    "GitError",
    "HeadMoved",
    "MainUpdate",
    "MergeConflict",
    "MergeMode",
    "MergeOutcome",
    "NotFastForward",
    "PushRejected",
    "UnknownRevision",
    "Vcs",
]


class GitError(RuntimeError):
    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.args_ = list(args)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"git {' '.join(args)} failed ({returncode}): {self.stderr}")


class UnknownRevision(GitError):
    pass


class HeadMoved(GitError):
    """The branch head is no longer the commit that was approved."""

    def __init__(self, branch: str, expected: str, actual: str | None) -> None:
        self.branch, self.expected, self.actual = branch, expected, actual
        RuntimeError.__init__(self, f"branch {branch!r} head is {actual or 'gone'}, expected {expected}")
        self.args_, self.returncode, self.stderr = [], 0, ""


class MergeConflict(GitError):
    def __init__(self, sha: str, target: str, files: Sequence[str]) -> None:
        self.files = tuple(files)
        RuntimeError.__init__(self, f"merging {sha} into {target} conflicts in: {', '.join(files) or '?'}")
        self.args_, self.returncode, self.stderr = [], 1, ""


class NotFastForward(GitError):
    def __init__(self, sha: str, target: str) -> None:
        RuntimeError.__init__(self, f"{sha} is not a descendant of {target}; cannot fast-forward")
        self.args_, self.returncode, self.stderr = [], 1, ""


class PushRejected(GitError):
    pass


class MergeMode(StrEnum):
    FAST_FORWARD = "fast-forward"  # only if main is an ancestor of the commit; else NotFastForward
    MERGE_COMMIT = "merge-commit"  # always a merge commit (--no-ff)


@dataclass(frozen=True)
class FileChange:
    path: str
    added: int
    deleted: int
    binary: bool = False


@dataclass(frozen=True)
class ChangeStats:
    """What a commit changes relative to where it forked from the target (``git diff base...sha``)."""

    base: str
    head: str
    files: tuple[FileChange, ...]

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.files)

    @property
    def lines_added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def lines_deleted(self) -> int:
        return sum(f.deleted for f in self.files)

    @property
    def lines_changed(self) -> int:
        return self.lines_added + self.lines_deleted


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    author_name: str
    author_email: str
    authored_at: datetime
    subject: str


@dataclass(frozen=True)
class MergeOutcome:
    sha: str  # new head of the target branch
    merged: str  # the commit that was merged
    fast_forward: bool
    previous_target: str


@dataclass(frozen=True)
class MainUpdate:
    """What is new on a branch since a commit judged before (``GitRepository.arrivals``)."""

    head: str | None  # None: the branch does not exist
    previous: str | None
    forced: bool  # ``previous`` is not in ``head``'s history (or unknown to the remote any more)
    #: (sha, parents, author, subject) of each new commit, newest first
    commits: tuple[tuple[str, tuple[str, ...], str, str], ...]
    truncated: bool = False


class Vcs(Protocol):
    """A repository's history and merges, through one working clone (``GitRepository``): the exact
    commit that passed the gates is merged, only while the branch head is still that commit."""

    def sync(self) -> None: ...

    def branch_head(self, branch: str) -> str | None: ...

    def has_commit(self, sha: str) -> bool: ...

    def changes(self, sha: str, *, base: str = "main", since: str | None = None) -> ChangeStats: ...

    def log(self, from_sha: str | None, to_sha: str) -> list[CommitInfo]: ...

    def merge(
        self,
        branch: str,
        expected_sha: str,
        *,
        target: str = "main",
        mode: MergeMode = MergeMode.MERGE_COMMIT,
        message: str | None = None,
    ) -> MergeOutcome: ...

    def arrivals(self, branch: str, since: str | None, *, limit: int = 500) -> MainUpdate: ...

    def clean_merge(self, sha: str) -> bool: ...

    def parents(self, sha: str) -> tuple[str, ...]: ...

    def merges_to(self, base: str, other: str, target: str) -> bool: ...

    def same_tree(self, a: str, b: str) -> bool: ...

    def own_commits(self, head: str, base: str | None, *, limit: int = 1000) -> frozenset[str]: ...

    @property
    def workdir(self) -> Path: ...
