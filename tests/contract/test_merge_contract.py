"""The guarded merge — what the VCS port (``Vcs.merge``) and the code-host port
(``PullRequestMerger.merge_pull_request``) both promise (D3) — run against every driver: the
FakeRepository, real git (``GitRepository`` on a bare repository through ``git``), and
``GitHubClient`` against the local contract server of GitHub's merge endpoint.

The promise: exactly the commit that passed the gates is merged, and only while the change's head
is still that commit.  A head that moved after the approval is refused (``HeadMoved``: the
port's own, or the code host's 409), so is a change that cannot merge cleanly (a conflict, or
GitHub's 405 "not mergeable"), and in both cases the target is left as it was; a malformed sha is
refused before anything is sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shipwarden.adapters.ci.github import GitHubClient
from shipwarden.adapters.vcs.git import GitRepository
from shipwarden.ports import ci, vcs
from tests.fakes.vcs import FakeRepository
from tests.fixtures.ci_contract import PullRequest
from tests.fixtures.git_repos import GitRemote

DRIVERS = ("fake", "git", "github")


@dataclass
class Kit:
    propose: Callable[[str], tuple[str, str]]  # a change named so -> (its ref, its head sha)
    push: Callable[[str], str]  # another commit on the change -> the new head sha
    conflict: Callable[[str], object]  # the target changes what the change changed
    merge: Callable[[str, str], str]  # (ref, approved sha) -> the target's new head
    merged: Callable[[str], bool]  # is the change's head in the target now?
    moved: tuple[type[Exception], ...]
    refused: tuple[type[Exception], ...]


def _fake() -> Kit:
    repo = FakeRepository()
    return Kit(
        propose=lambda name: (name, repo.commit(name, {f"{name}.py"})),
        push=lambda ref: repo.commit(ref, {f"{ref}-more.py"}),
        conflict=lambda ref: repo.commit("main", {f"{ref}.py"}),
        merge=lambda ref, sha: repo.merge(ref, sha).sha,
        merged=lambda ref: repo.branches[ref] in repo.history(repo.branches["main"]),
        moved=(vcs.HeadMoved,),
        refused=(vcs.MergeConflict,),
    )


def _git(tmp_path: Path) -> Kit:
    remote = GitRemote(tmp_path)
    repo = GitRepository(remote.url, tmp_path / "work")

    def merged(ref: str) -> bool:
        head, main = remote.head(ref), remote.head("main")
        assert head and main
        return head in {main, *remote.parents(main)}

    return Kit(
        propose=lambda name: (name, remote.commit(name, {f"src/{name}.py": "print('new')\n"}, f"add {name}")),
        push=lambda ref: remote.commit(ref, {f"src/{ref}.py": "print('changed again')\n"}, "more"),
        conflict=lambda ref: remote.commit("main", {f"src/{ref}.py": "print('main')\n"}, "clash"),
        merge=lambda ref, sha: repo.merge(ref, sha).sha,
        merged=merged,
        moved=(vcs.HeadMoved,),
        refused=(vcs.MergeConflict,),
    )


def _github(request: pytest.FixtureRequest) -> Iterator[Kit]:
    server = request.getfixturevalue("github_api")
    client = GitHubClient(server.token, base_url=server.base)
    numbers: dict[str, int] = {}
    shas = iter(hashlib.sha1(f"pull-{i}".encode()).hexdigest() for i in range(1, 1000))

    def propose(name: str) -> tuple[str, str]:
        numbers[name] = len(numbers) + 1
        sha = next(shas)
        server.pulls[("acme", "payments", numbers[name])] = PullRequest(head_sha=sha)
        return name, sha

    def pr(ref: str) -> PullRequest:
        p: PullRequest = server.pulls[("acme", "payments", numbers[ref])]
        return p

    def push(ref: str) -> str:
        pr(ref).head_sha = next(shas)
        return pr(ref).head_sha

    def conflict(ref: str) -> None:
        pr(ref).mergeable = False

    try:
        yield Kit(
            propose=propose,
            push=push,
            conflict=conflict,
            merge=lambda ref, sha: client.merge_pull_request("acme", "payments", numbers[ref], sha=sha).sha,
            merged=lambda ref: pr(ref).merged,
            moved=(ci.HeadMoved,),
            refused=(ci.NotMergeable,),
        )
    finally:
        client.close()


@pytest.fixture(params=DRIVERS)
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kit]:
    if request.param == "fake":
        yield _fake()
    elif request.param == "git":
        yield _git(tmp_path)
    else:
        yield from _github(request)


def test_the_approved_head_is_merged(kit: Kit) -> None:
    ref, sha = kit.propose("feature-a")
    assert not kit.merged(ref)
    new_head = kit.merge(ref, sha)
    assert new_head and new_head != sha and kit.merged(ref)


def test_a_head_that_moved_after_the_approval_is_refused_and_nothing_is_merged(kit: Kit) -> None:
    ref, approved = kit.propose("feature-b")
    now = kit.push(ref)
    with pytest.raises(kit.moved):
        kit.merge(ref, approved)
    assert not kit.merged(ref)
    kit.merge(ref, now)  # the head that is there now, once approved, merges
    assert kit.merged(ref)


def test_a_change_that_cannot_merge_cleanly_is_refused_and_nothing_is_merged(kit: Kit) -> None:
    ref, sha = kit.propose("feature-c")
    kit.conflict(ref)
    with pytest.raises(kit.refused):
        kit.merge(ref, sha)
    assert not kit.merged(ref)


def test_a_malformed_sha_is_refused_before_anything_is_sent(kit: Kit) -> None:
    ref, sha = kit.propose("feature-d")
    for bad in (sha[:12], sha.upper(), "", f"{sha[:-1]}g"):
        assert bad != sha
        with pytest.raises(ValueError):
            kit.merge(ref, bad)
    assert not kit.merged(ref)
