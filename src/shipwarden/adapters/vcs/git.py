"""Real git, through the ``git`` command, against a remote (usually bare) repository.

Why subprocess and not a library: git's own merge, diff and push are what
teams trust, and they work against any URL git understands (a bare directory
in tests, ssh/https in production).  Every call uses an argument list (no
shell), ``--end-of-options`` style separation of revisions, validated branch
names and full hex SHAs, so no value from a webhook can become a git option.

The invariant that matters for D3 is in ``merge``: shipwarden merges **the
exact commit that passed the gates** (``expected_sha``) and only while the
branch head is still that commit.  If someone pushed after approval the
merge is refused with ``HeadMoved``; if main moved while we merged, the plain
(non-force) push is rejected with ``PushRejected`` and nothing is lost — the
caller re-evaluates and retries.

A ``GitRepository`` owns one local working clone (``workdir``) used as a
scratch area; it is re-synchronised from the remote before every operation,
so it can be deleted at any time.  Operations on one instance are serialised
by a lock; use one instance (one workdir) per remote.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from datetime import datetime
from pathlib import Path

from shipwarden.ports.vcs import (
    ChangeStats as ChangeStats,
)
from shipwarden.ports.vcs import (
    CommitInfo as CommitInfo,
)
from shipwarden.ports.vcs import (
    FileChange as FileChange,
)
from shipwarden.ports.vcs import (
    GitError as GitError,
)
from shipwarden.ports.vcs import (
    HeadMoved as HeadMoved,
)
from shipwarden.ports.vcs import (
    MainUpdate as MainUpdate,
)
from shipwarden.ports.vcs import (
    MergeConflict as MergeConflict,
)
from shipwarden.ports.vcs import (
    MergeMode as MergeMode,
)
from shipwarden.ports.vcs import (
    MergeOutcome as MergeOutcome,
)
from shipwarden.ports.vcs import (
    NotFastForward as NotFastForward,
)
from shipwarden.ports.vcs import (
    PushRejected as PushRejected,
)
from shipwarden.ports.vcs import (
    UnknownRevision as UnknownRevision,
)

_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def _check_sha(sha: str) -> str:
    if not isinstance(sha, str) or not _SHA.match(sha):
        raise ValueError(f"expected a full lower-case hex commit sha, got {sha!r}")
    return sha


def _check_branch(name: str) -> str:
    if (
        not name
        or name.startswith(("-", "/"))
        or name.endswith(("/", ".lock", "."))
        or ".." in name
        or "@{" in name
        or "//" in name
        or any(c in name for c in " ~^:?*[\\\x7f")
        or any(ord(c) < 32 for c in name)
    ):
        raise ValueError(f"invalid branch name {name!r}")
    return name


class GitRepository:
    """One remote repository, operated on through a local scratch clone."""

    def __init__(
        self,
        remote_url: str,
        workdir: str | Path,
        *,
        git: str = "git",
        identity: tuple[str, str] = ("shipwarden", "shipwarden@localhost"),
        timeout: float = 120.0,
    ) -> None:
        self.remote_url = remote_url
        self.workdir = Path(workdir)
        self._git = git
        self._identity = identity
        self._timeout = timeout
        self._lock = threading.RLock()

    # -- plumbing ------------------------------------------------------------------------------------------

    def _run(
        self, *args: str, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        name, email = self._identity
        env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }
        cmd = [self._git, "-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false", *args]
        try:
            proc = subprocess.run(
                cmd,
                cwd=cwd or self.workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=self._timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise GitError(args, -1, f"timed out after {self._timeout}s") from None
        if check and proc.returncode != 0:
            raise GitError(args, proc.returncode, proc.stderr)
        return proc

    def sync(self) -> None:
        """Create the scratch clone if needed and fetch every branch from the remote."""
        with self._lock:
            if not (self.workdir / ".git").is_dir():
                self.workdir.mkdir(parents=True, exist_ok=True)
                self._run("init", "-q")
                self._run("remote", "add", "origin", self.remote_url)
            else:
                self._run("remote", "set-url", "origin", self.remote_url)
            self._run("fetch", "-q", "--prune", "--no-tags", "origin", "+refs/heads/*:refs/remotes/origin/*")

    def _rev(self, rev: str) -> str:
        verify = ("rev-parse", "--verify", "-q", "--end-of-options", rev + "^{commit}")
        proc = self._run(*verify, check=False)
        if proc.returncode != 0 and _SHA.match(rev):
            # Not on any branch we fetched (e.g. only on a PR ref): ask the remote for that commit.
            # Servers allow it for reachable commits (GitHub does; plain git needs uploadpack.allow*InWant).
            if self._run("fetch", "-q", "--no-tags", "origin", rev, check=False).returncode == 0:
                proc = self._run(*verify, check=False)
        if proc.returncode != 0:
            raise UnknownRevision(["rev-parse", rev], proc.returncode, f"unknown revision {rev!r}")
        return proc.stdout.strip()

    # -- queries -------------------------------------------------------------------------------------------

    def branch_head(self, branch: str) -> str | None:
        """Head of ``branch`` on the remote right now (``ls-remote``); ``None`` if it does not exist."""
        _check_branch(branch)
        with self._lock:
            if not (self.workdir / ".git").is_dir():
                self.sync()
            out = self._run("ls-remote", "--heads", "origin", f"refs/heads/{branch}").stdout
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref == f"refs/heads/{branch}":
                return sha
        return None

    def has_commit(self, sha: str) -> bool:
        _check_sha(sha)
        with self._lock:
            try:
                self._rev(sha)
                return True
            except UnknownRevision:
                return False

    def changes(self, sha: str, *, base: str = "main", since: str | None = None) -> ChangeStats:
        """Files and lines ``sha`` changes since it forked from ``base`` (renames count as delete + add);
        ``since``: since that commit instead (a commit already on main, from the head before it)."""
        _check_sha(sha)
        _check_branch(base)
        if since is not None:
            _check_sha(since)
        with self._lock:
            self.sync()
            head = self._rev(sha)
            if since is not None:
                base_sha = self._rev(since)
            else:
                base_sha = self._run("merge-base", "--end-of-options", f"origin/{base}", head).stdout.strip()
            out = self._run("diff", "--numstat", "-z", "--no-renames", base_sha, head, "--").stdout
        files = []
        for record in out.split("\0"):
            if not record:
                continue
            added, deleted, path = record.split("\t", 2)
            binary = added == "-"
            files.append(FileChange(path, 0 if binary else int(added), 0 if binary else int(deleted), binary))
        return ChangeStats(base_sha, head, tuple(files))

    def log(self, from_sha: str | None, to_sha: str) -> list[CommitInfo]:
        """Commits reachable from ``to_sha`` but not ``from_sha`` (newest first) — release notes."""
        _check_sha(to_sha)
        if from_sha is not None:
            _check_sha(from_sha)
        with self._lock:
            self.sync()
            rng = f"{self._rev(from_sha)}..{self._rev(to_sha)}" if from_sha else self._rev(to_sha)
            out = self._run("log", "--format=%H%x1f%an%x1f%ae%x1f%aI%x1f%s%x1e", rng, "--").stdout
        commits = []
        for rec in out.split("\x1e"):
            rec = rec.strip("\n")
            if not rec:
                continue
            sha, name, email, when, subject = rec.split("\x1f", 4)
            commits.append(CommitInfo(sha, name, email, datetime.fromisoformat(when), subject))
        return commits

    # -- merge ---------------------------------------------------------------------------------------------

    def merge(
        self,
        branch: str,
        expected_sha: str,
        *,
        target: str = "main",
        mode: MergeMode = MergeMode.MERGE_COMMIT,
        message: str | None = None,
    ) -> MergeOutcome:
        """Merge ``expected_sha`` into ``target`` and push, only while ``branch`` still points at it.

        Raises ``HeadMoved`` (branch moved or deleted), ``NotFastForward``
        (fast-forward mode, diverged), ``MergeConflict``, ``PushRejected``
        (target moved meanwhile; nothing was changed on the remote).
        """
        _check_branch(branch)
        _check_branch(target)
        _check_sha(expected_sha)
        with self._lock:
            self.sync()
            actual = self.branch_head(branch)
            if actual != expected_sha:
                raise HeadMoved(branch, expected_sha, actual)
            head = self._rev(expected_sha)
            previous = self._rev(f"origin/{target}")
            self._run("checkout", "-q", "--detach", previous)
            self._run("reset", "-q", "--hard", previous)
            self._run("clean", "-qfdx")
            is_ancestor = (
                self._run("merge-base", "--is-ancestor", previous, head, check=False).returncode == 0
            )
            if mode is MergeMode.FAST_FORWARD:
                if not is_ancestor:
                    raise NotFastForward(expected_sha, target)
                new_head, ff = head, True
            else:
                if self._run("merge-base", "--is-ancestor", head, previous, check=False).returncode == 0:
                    # Already contained in target: nothing to merge, nothing to push.
                    return MergeOutcome(previous, head, False, previous)
                msg = message or f"Merge {branch} ({head[:12]}) into {target}\n\nMerged by shipwarden."
                proc = self._run("merge", "--no-ff", "--no-edit", "-m", msg, head, check=False)
                if proc.returncode != 0:
                    unmerged = self._run("diff", "--name-only", "-z", "--diff-filter=U", check=False).stdout
                    conflicted = [f for f in unmerged.split("\0") if f]
                    self._run("merge", "--abort", check=False)
                    if conflicted:
                        raise MergeConflict(expected_sha, target, conflicted)
                    raise GitError(["merge", head], proc.returncode, proc.stderr)
                new_head, ff = self._rev("HEAD"), False
            push = self._run(
                "push", "-q", "--porcelain", "origin", f"{new_head}:refs/heads/{target}", check=False
            )
            if push.returncode != 0:
                raise PushRejected(["push", target], push.returncode, push.stderr + push.stdout)
            self._run("fetch", "-q", "origin", f"+refs/heads/{target}:refs/remotes/origin/{target}")
            return MergeOutcome(new_head, head, ff, previous)

    # -- what arrives on main (D9) -------------------------------------------------------------------------

    def arrivals(self, branch: str, since: str | None, *, limit: int = 500) -> MainUpdate:
        """The commits new on ``branch`` since ``since`` (the head judged before), newest first.

        ``forced`` when ``since`` is no longer in the branch's history (a force-push rewrote it);
        the new commits are then those not in ``since``'s history.  At the first look
        (``since`` None) nothing is listed: history before shipwarden watched is not judged."""
        _check_branch(branch)
        if since is not None:
            _check_sha(since)
        with self._lock:
            self.sync()
            ref = f"refs/remotes/origin/{branch}^{{commit}}"
            proc = self._run("rev-parse", "--verify", "-q", ref, check=False)
            if proc.returncode != 0:
                return MainUpdate(None, since, False, ())
            head = proc.stdout.strip()
            if since is None:
                self._run("update-ref", f"refs/shipwarden/judged/{branch}", head)
                return MainUpdate(head, None, False, ())
            known = self._run("cat-file", "-e", f"{since}^{{commit}}", check=False).returncode == 0
            forced = not known or (
                self._run("merge-base", "--is-ancestor", since, head, check=False).returncode != 0
            )
            rng = [head, "--not", since] if known else [head, "--not", *self._other_heads(branch)]
            fmt = "--format=%H%x1f%P%x1f%an <%ae>%x1f%s%x1e"
            out = self._run("log", "--topo-order", f"--max-count={limit + 1}", fmt, *rng, "--").stdout
            # keep what was judged in the scratch clone, so that a force-push cannot make it vanish
            self._run("update-ref", f"refs/shipwarden/judged/{branch}", head)
        commits = []
        for rec in out.split("\x1e"):
            rec = rec.strip("\n")
            if not rec:
                continue
            sha, parents, author, subject = rec.split("\x1f", 3)
            commits.append((sha, tuple(parents.split()), author, subject))
        return MainUpdate(head, since, forced, tuple(commits[:limit]), truncated=len(commits) > limit)

    def _other_heads(self, branch: str) -> list[str]:
        """Every remote branch but ``branch``: what is new on ``branch`` is measured against them
        when the commit judged before is gone (a history this clone no longer has)."""
        out = self._run("for-each-ref", "--format=%(refname)", "refs/remotes/origin/").stdout.split()
        return [r for r in out if r not in (f"refs/remotes/origin/{branch}", "refs/remotes/origin/HEAD")]

    def clean_merge(self, sha: str) -> bool:
        """True when ``sha`` is a two-parent merge whose tree is exactly the clean merge of its
        parents (``git merge-tree --write-tree``, git 2.38+): nothing was added while merging."""
        _check_sha(sha)
        with self._lock:
            parents = self._run("rev-list", "--parents", "-n", "1", sha).stdout.split()[1:]
            if len(parents) != 2:
                return False
            proc = self._run("merge-tree", "--write-tree", "--no-messages", *parents, check=False)
            if proc.returncode != 0 or not proc.stdout.split():
                return False  # conflicts: whatever resolved them was not judged
            return proc.stdout.split()[0] == self._run("rev-parse", f"{sha}^{{tree}}").stdout.strip()

    def merges_to(self, base: str, other: str, target: str) -> bool:
        """True when ``target``'s tree is exactly the clean merge of ``other`` into ``base``: what a
        squash or a rebase of ``other`` onto ``base`` gives when nothing else was added."""
        for sha in (base, other, target):
            _check_sha(sha)
        with self._lock:
            proc = self._run("merge-tree", "--write-tree", "--no-messages", base, other, check=False)
            if proc.returncode != 0 or not proc.stdout.split():
                return False
            return proc.stdout.split()[0] == self._run("rev-parse", f"{target}^{{tree}}").stdout.strip()

    def same_tree(self, a: str, b: str) -> bool:
        """True when commits ``a`` and ``b`` hold exactly the same content (the same tree)."""
        for sha in (a, b):
            _check_sha(sha)
        with self._lock:
            trees = [self._run("rev-parse", "--verify", "-q", f"{x}^{{tree}}", check=False) for x in (a, b)]
        if any(t.returncode != 0 for t in trees):
            return False
        return trees[0].stdout.strip() == trees[1].stdout.strip()

    def parents(self, sha: str) -> tuple[str, ...]:
        """The parents of commit ``sha`` (first parent first)."""
        _check_sha(sha)
        with self._lock:
            return tuple(
                self._run("rev-list", "--parents", "-n", "1", self._rev(sha), "--").stdout.split()[1:]
            )

    def own_commits(self, head: str, base: str | None, *, limit: int = 1000) -> frozenset[str]:
        """The commits in ``head``'s history that are not in ``base``'s (a change's own commits)."""
        _check_sha(head)
        args = [head] + (["--not", _check_sha(base)] if base else [])
        with self._lock:
            out = self._run("rev-list", f"--max-count={limit}", *args, "--", check=False)
        return frozenset(out.stdout.split()) if out.returncode == 0 else frozenset()
