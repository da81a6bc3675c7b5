"""Version control adapters (real ``git`` through subprocess)."""

from shipwarden.adapters.vcs.git import GitRepository
from shipwarden.ports.vcs import (
    ChangeStats,
    CommitInfo,
    FileChange,
    GitError,
    HeadMoved,
    MainUpdate,
    MergeConflict,
    MergeMode,
    MergeOutcome,
    NotFastForward,
    PushRejected,
    UnknownRevision,
)

__all__ = [
    "ChangeStats",
    "CommitInfo",
    "FileChange",
    "GitError",
    "GitRepository",
    "HeadMoved",
    "MergeConflict",
    "MergeMode",
    "MainUpdate",
    "MergeOutcome",
    "NotFastForward",
    "PushRejected",
    "UnknownRevision",
]
