"""The git adapter against a real bare repository: diff stats, guarded merge, push, log."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipwarden.adapters.vcs import (
    GitRepository,
    HeadMoved,
    MergeConflict,
    MergeMode,
    NotFastForward,
    PushRejected,
)
from tests.fixtures.git_repos import GitRemote

pytestmark = pytest.mark.integration


@pytest.fixture
def repo(git_remote: GitRemote, tmp_path: Path) -> GitRepository:
    return GitRepository(git_remote.url, tmp_path / "shipwarden-work")


def test_branch_head_and_missing_branch(git_remote: GitRemote, repo: GitRepository) -> None:
    sha = git_remote.commit("feature/a", {"src/a.py": "x = 1\n"}, "Add a")
    assert repo.branch_head("feature/a") == sha
    assert repo.branch_head("nope") is None


def test_changes_against_merge_base(git_remote: GitRemote, repo: GitRepository) -> None:
    git_remote.commit(
        "feature/db", {"migrations/0001_init.sql": "create table t (id int);\n"}, "Add migration"
    )
    sha = git_remote.commit(
        "feature/db",
        {"src/app.py": "print('v3')\nprint('more')\n", "README.md": None, "img.bin": "\0\1\2"},
        "More",
    )
    # main moves on after the fork: its changes must not be counted against the branch
    git_remote.commit("main", {"docs/ops.md": "runbook\n" * 50}, "Docs on main")
    stats = repo.changes(sha)
    assert sorted(stats.paths) == ["README.md", "img.bin", "migrations/0001_init.sql", "src/app.py"]
    by_path = {f.path: f for f in stats.files}
    assert (by_path["src/app.py"].added, by_path["src/app.py"].deleted) == (2, 1)
    assert (by_path["README.md"].added, by_path["README.md"].deleted) == (0, 1)
    assert by_path["img.bin"].binary
    assert stats.lines_changed == 1 + 3 + 1  # migration + app.py (2 added, 1 deleted) + README deleted
    assert "docs/ops.md" not in stats.paths


def test_merge_commit_pushes_and_returns_sha(git_remote: GitRemote, repo: GitRepository) -> None:
    main_before = git_remote.head("main")
    sha = git_remote.commit("feature/b", {"src/b.py": "b = 2\n"}, "Add b")
    outcome = repo.merge("feature/b", sha, mode=MergeMode.MERGE_COMMIT)
    assert not outcome.fast_forward
    assert git_remote.head("main") == outcome.sha
    assert git_remote.parents(outcome.sha) == [main_before, sha]
    assert git_remote.show("main", "src/b.py") == "b = 2"
    assert outcome.previous_target == main_before


def test_fast_forward(git_remote: GitRemote, repo: GitRepository) -> None:
    sha = git_remote.commit("feature/c", {"src/c.py": "c = 3\n"}, "Add c")
    outcome = repo.merge("feature/c", sha, mode=MergeMode.FAST_FORWARD)
    assert (outcome.sha, outcome.fast_forward) == (sha, True)
    assert git_remote.head("main") == sha


def test_fast_forward_refused_when_diverged(git_remote: GitRemote, repo: GitRepository) -> None:
    sha = git_remote.commit("feature/d", {"src/d.py": "d\n"}, "Add d")
    main = git_remote.commit("main", {"src/other.py": "o\n"}, "Main moved")
    with pytest.raises(NotFastForward):
        repo.merge("feature/d", sha, mode=MergeMode.FAST_FORWARD)
    assert git_remote.head("main") == main


def test_head_moved_after_approval_is_refused(git_remote: GitRemote, repo: GitRepository) -> None:
    approved = git_remote.commit("feature/e", {"src/e.py": "e\n"}, "Add e")
    moved = git_remote.commit("feature/e", {"src/e.py": "evil\n"}, "Sneaky push after approval")
    main = git_remote.head("main")
    with pytest.raises(HeadMoved) as exc:
        repo.merge("feature/e", approved)
    assert (exc.value.expected, exc.value.actual) == (approved, moved)
    assert git_remote.head("main") == main


def test_deleted_branch_is_refused(git_remote: GitRemote, repo: GitRepository) -> None:
    with pytest.raises(HeadMoved, match="gone"):
        repo.merge("feature/never", "c" * 40)


def test_conflict_is_reported_and_main_untouched(git_remote: GitRemote, repo: GitRepository) -> None:
    sha = git_remote.commit("feature/f", {"src/app.py": "print('feature')\n"}, "Change app")
    main = git_remote.commit("main", {"src/app.py": "print('hotfix')\n"}, "Hotfix app")
    with pytest.raises(MergeConflict) as exc:
        repo.merge("feature/f", sha)
    assert exc.value.files == ("src/app.py",)
    assert git_remote.head("main") == main
    # the scratch clone is usable again afterwards
    ok = git_remote.commit("feature/g", {"src/g.py": "g\n"}, "Add g")
    assert repo.merge("feature/g", ok).merged == ok


def test_push_rejected_when_main_moves_during_merge(git_remote: GitRemote, tmp_path: Path) -> None:
    sha = git_remote.commit("feature/h", {"src/h.py": "h\n"}, "Add h")

    class Racing(GitRepository):
        def _run(self, *args: str, check: bool = True, cwd: Path | None = None):  # type: ignore[no-untyped-def]
            if args and args[0] == "push":
                git_remote.commit("main", {"src/race.py": "r\n"}, "Concurrent push to main")
            return super()._run(*args, check=check, cwd=cwd)

    racing = Racing(git_remote.url, tmp_path / "racing-work")
    with pytest.raises(PushRejected):
        racing.merge("feature/h", sha)
    assert git_remote.show("main", "src/race.py") == "r"  # the other push survived; nothing was forced


def test_log_between_releases(git_remote: GitRemote, repo: GitRepository) -> None:
    start = git_remote.head("main")
    assert start is not None
    a = git_remote.commit("main", {"x.txt": "1\n"}, "Add x")
    b = git_remote.commit("main", {"y.txt": "2\n"}, "Add y: with | odd ; chars")
    commits = repo.log(start, b)
    assert [c.sha for c in commits] == [b, a]
    assert commits[0].subject == "Add y: with | odd ; chars"
    assert (commits[0].author_name, commits[0].author_email) == ("Dana Developer", "dana@example.com")
    assert commits[0].authored_at.tzinfo is not None


@pytest.mark.parametrize("bad", ["--upload-pack=touch /tmp/pwned", "a..b", "x y", ""])
def test_branch_names_validated(repo: GitRepository, bad: str) -> None:
    with pytest.raises(ValueError):
        repo.merge(bad, "a" * 40)


@pytest.mark.parametrize("bad", ["HEAD", "abc", "A" * 40, "-" + "a" * 39])
def test_shas_validated(repo: GitRepository, bad: str) -> None:
    with pytest.raises(ValueError):
        repo.merge("main", bad)


def test_commit_only_on_a_pull_request_ref(git_remote: GitRemote, repo: GitRepository) -> None:
    from tests.fixtures.git_repos import git

    git(git_remote.bare, "config", "uploadpack.allowAnySHA1InWant", "true")
    sha = git_remote.commit("feature/pr", {"src/pr.py": "pr\n"}, "PR commit")
    git(git_remote.clone, "push", "-q", "origin", f"{sha}:refs/pull/5/head")
    git(git_remote.clone, "push", "-q", "origin", "--delete", "feature/pr")
    assert repo.changes(sha).paths == ("src/pr.py",)


def test_unknown_commit(repo: GitRepository) -> None:
    from shipwarden.adapters.vcs import UnknownRevision

    with pytest.raises(UnknownRevision):
        repo.changes("d" * 40)
