"""D9 against real git: whatever reaches main is judged, sha for sha; only a gated head is deployed,
and a commit pushed before its gates passed waits for its evidence (deployed if green, else a violation).

A bare "origin", the developer clone of the change pipeline's harness, and a second clone by
someone else (another author) who pushes to main past shipwarden: directly, several commits at
once, by merging a pull request's branch himself, or with ``--force``.  Deployments are captured
(the e2e test runs them through nginx); alerts go to a real Apprise ``json://`` receiver.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipwarden.adapters.ci.base import hmac_sha256_hex
from shipwarden.adapters.store.models import ServiceStateRow
from shipwarden.domain.evidence.model import CiCheck
from shipwarden.services.changes import StateConflict, render_explanation
from tests.fixtures.apprise_receiver import Receiver
from tests.integration.test_change_pipeline import (
    GATES,
    GITHUB_SECRET,
    LOCAL_SERVICE,
    Harness,
    build_harness,
    delivery_section,
)

OUTSIDER = {
    "GIT_AUTHOR_NAME": "Oscar Outsider",
    "GIT_AUTHOR_EMAIL": "oscar@example.com",
    "GIT_COMMITTER_NAME": "Oscar Outsider",
    "GIT_COMMITTER_EMAIL": "oscar@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "LC_ALL": "C",
}


class Outsider:
    """Someone else with write access to origin: a clone of his own, his own name on the commits."""

    def __init__(self, origin: str, where: Path) -> None:
        self.dir = where
        self.git("clone", "-q", origin, str(where), cwd=where.parent)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd or self.dir,
            env={**os.environ, **OUTSIDER},
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
        return proc.stdout.strip()

    def sync(self) -> None:
        self.git("fetch", "-q", "origin")
        self.git("checkout", "-q", "-B", "main", "origin/main")

    def commit(self, files: dict[str, str], message: str) -> str:
        for name, content in files.items():
            (self.dir / name).parent.mkdir(parents=True, exist_ok=True)
            (self.dir / name).write_text(content)
            self.git("add", name)
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def push_main(self, *, force: bool = False) -> str:
        self.git("push", "-q", *(["--force"] if force else []), "origin", "HEAD:refs/heads/main")
        return self.git("rev-parse", "HEAD")

    def merge(self, sha: str, *, extra: dict[str, str] | None = None) -> str:
        """Merge ``sha`` into main as GitHub's merge button does (a merge commit), optionally
        slipping an extra file into the merge commit."""
        self.sync()
        self.git("fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*")
        self.git("merge", "-q", "--no-ff", "--no-edit", "-m", "Merge pull request", sha)
        if extra:
            for name, content in extra.items():
                (self.dir / name).write_text(content)
                self.git("add", name)
            self.git("commit", "-q", "--amend", "--no-edit")
        return self.push_main()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def h(tmp_path: Path, receiver: Receiver) -> Harness:
    extra = "  notify: {urls: [OPS_CHANNEL]}\n"
    harness = build_harness(
        tmp_path,
        lambda url: LOCAL_SERVICE + GATES + delivery_section(url, extra),
        secrets={"OPS_CHANNEL": receiver.url()},
    )
    with harness.store._sessions.begin() as s:
        s.add(ServiceStateRow(service="web", stable_version="v0", previous_version=None, updated_at=0.0))
    harness.service.watch_main(via="poll")  # the watch starts: main's head now is the baseline
    return harness


@pytest.fixture
def oscar(h: Harness) -> Outsider:
    return Outsider(h.remote.url, h.root / "oscar-clone")


def run_scheduled(h: Harness) -> None:
    while h.deploys:
        h.deploys.pop(0)()


def verdicts(h: Harness, sha: str) -> list[Any]:
    return h.service.mainline.verdicts(sha)


def violations(h: Harness) -> list[dict[str, Any]]:
    return [e.detail for e in h.store.audit_entries(action="policy.violation")]


def gated_change(h: Harness, branch: str, files: dict[str, str]) -> Any:
    """A change whose gates all passed: merged by shipwarden (the webhook runs the pipeline)."""
    sha = h.push(branch, files, f"Work on {branch}")
    h.green_evidence(sha)
    res = h.webhook(sha, branch)
    assert res.change_status == "merged", res
    return h.change(sha)


def approved_not_merged(h: Harness, branch: str, files: dict[str, str]) -> Any:
    """A change the gates approved that shipwarden has not merged yet (someone else is quicker)."""
    sha = h.push(branch, files, f"Work on {branch}")
    h.green_evidence(sha)
    ch = h.service.repo.create_change(repo=h.remote.url, branch=branch, head_sha=sha, actor="test")
    # CI's result, stored as the webhook would (without ``progress``, which would merge it at once)
    h.service.repo.add_evidence(
        commit_sha=sha,
        kind="ci",
        category="ci",
        report=CiCheck("circleci", "build-and-test", "success", "p-1"),
        digest="sha256:" + "a" * 64,
        actor="webhook:circleci",
    )
    change, _ = h.service.evaluate(ch.id)  # evaluated, not merged (``progress`` would merge it)
    assert change.status == "approved", change.reason
    return change


# --- someone else pushes around the gates --------------------------------------------------------------


def test_a_direct_push_waits_for_its_evidence_and_is_deployed_once_it_is_green(
    h: Harness, oscar: Outsider, receiver: Receiver
) -> None:
    oscar.sync()
    sha = oscar.commit({"src/app.py": "print('hotfix')\n"}, "Quick hotfix, no PR")
    oscar.push_main()
    judged = h.service.watch_main(via="poll")
    assert [(j.sha, j.verdict, j.reason, j.effect) for j in judged] == [
        (sha, "awaiting", "awaiting-evidence", "none")
    ]
    assert h.deploys == [] and violations(h) == [] and receiver.messages == []
    text = render_explanation(h.service.explain(sha[:12]))
    assert "NOT DEPLOYED YET — waiting for its evidence [awaiting-evidence]" in text
    assert f"waiting for evidence on {sha[:12]}: every required gate: no evidence" in text
    # part of its evidence: a change of main judges it, and explain names the gates still missing
    h.green_evidence(sha, skip="integration")
    ch = h.change(sha)
    assert (ch.branch, ch.status) == ("main", "pending") and h.deploys == []
    text = render_explanation(h.service.explain(sha))
    assert f"waiting for evidence on {sha[:12]}: " in text and "suite:integration" in text
    assert "ci:" in text  # CI's own result has not arrived either
    # the rest, and CI's result for main: deployed through the same gates and phases
    h.green_evidence(sha)
    res = h.webhook(sha, "main")
    assert res.change_id == ch.id and res.change_status == "merged", res
    (v,) = verdicts(h, sha)  # the verdict moved before the deployment started (it is only scheduled)
    assert (v.verdict, v.reason, v.change_id) == ("deploy", "approved-change", ch.id)
    assert "then its evidence arrived" in v.why and len(h.deploys) == 1
    after = h.change(sha)
    assert after.merge_sha == sha and h.remote.head("main") == sha  # nothing merged again
    assert after.facts["paths"] == ["src/app.py"]  # measured from main's head before it arrived
    run_scheduled(h)
    assert h.change(sha).status == "deploy_failed"  # it tried: no rollout service here
    assert [e.detail["commit"] for e in h.store.audit_entries(action="main.deploy")] == [sha]
    assert violations(h) == [] and receiver.messages == []


def test_evidence_that_arrives_before_the_push_is_seen_judges_the_commit_at_once(
    h: Harness, oscar: Outsider
) -> None:
    oscar.sync()
    sha = oscar.commit({"src/app.py": "print('fast ci')\n"}, "CI is quicker than the watch")
    oscar.push_main()
    h.green_evidence(sha)
    res = h.webhook(sha, "main")
    assert res.change_id is None and "recorded" in res.detail  # nothing waits for it yet
    h.service.watch_main(via="poll")
    (v,) = verdicts(h, sha)
    assert (v.verdict, v.reason) == ("deploy", "approved-change") and len(h.deploys) == 1


def test_a_waiting_commit_that_goes_green_after_a_later_one_deployed_is_not_deployed_again(
    h: Harness, oscar: Outsider
) -> None:
    oscar.sync()
    first = oscar.commit({"src/app.py": "print('one')\n"}, "One")
    oscar.push_main()
    h.service.watch_main(via="poll")
    second = oscar.commit({"src/app.py": "print('two')\n"}, "Two")
    oscar.push_main()
    h.service.watch_main(via="poll")
    assert [v.verdict for v in verdicts(h, first) + verdicts(h, second)] == ["awaiting", "awaiting"]
    h.green_evidence(second)
    h.webhook(second, "main")
    assert [v.verdict for v in verdicts(h, second)] == ["deploy"] and len(h.deploys) == 1
    h.green_evidence(first)
    h.webhook(first, "main")  # green too, but main's newer head (which holds it) is deployed already
    (v,) = verdicts(h, first)
    assert (v.verdict, v.effect) == ("covered", "none") and second[:12] in v.why
    assert len(h.deploys) == 1 and violations(h) == []


def test_a_non_standard_direct_push_waits_for_the_named_role_then_deploys(
    h: Harness, oscar: Outsider, receiver: Receiver
) -> None:
    oscar.sync()
    sha = oscar.commit({"migrations/0009_refunds.sql": "ALTER TABLE x ADD y INT;\n"}, "Migration, no PR")
    oscar.push_main()
    h.service.watch_main(via="poll")
    h.green_evidence(sha)
    res = h.webhook(sha, "main")
    # the diff is measured from main's head before the push, so change control sees the migration
    assert res.change_status == "waiting_approval" and "cab" in res.detail, res
    (v,) = verdicts(h, sha)
    assert v.verdict == "awaiting" and h.deploys == []
    assert "change-control" in render_explanation(h.service.explain(sha))
    approved = h.service.approve(res.change_id, user="carol", role="cab", comment="reviewed after the push")
    assert approved.status == "merged" and approved.merge_sha == sha and len(h.deploys) == 1
    (v,) = verdicts(h, sha)
    assert (v.verdict, v.reason) == ("deploy", "approved-change") and violations(h) == []


def test_a_direct_push_whose_evidence_is_red_is_not_deployed_alerted_and_explained(
    h: Harness, oscar: Outsider, receiver: Receiver
) -> None:
    oscar.sync()
    sha = oscar.commit({"src/app.py": "print('hotfix')\n"}, "Quick hotfix, no PR")
    oscar.push_main()
    h.service.watch_main(via="poll")
    h.green_evidence(sha, unit="pytest-junit.xml")  # its unit suite fails
    (v,) = verdicts(h, sha)
    assert (v.verdict, v.reason, v.effect) == ("violation", "gates-failed", "done")
    run_scheduled(h)
    assert h.service.repo.list_changes(status="deploying") == [] and h.deploys == []  # nothing deployed
    assert [v["commit"] for v in violations(h)] == [sha]
    assert violations(h)[0]["author"] == "Oscar Outsider <oscar@example.com>"
    # the alert reached the ops channel, and its ledger entry says so (the URL's secret never does)
    assert any(sha[:12] in m["title"] and "NOT deployed" in m["title"] for m in receiver.messages)
    (alert,) = list(h.store.audit_entries(action="alert.violation"))
    assert alert.outcome == "ok" and "topsecret" not in json.dumps(alert.detail)
    text = render_explanation(h.service.explain(sha[:12]))
    assert "NOT DEPLOYED — policy violation [gates-failed]" in text
    assert "it reached main before its gates passed, and then they failed" in text and "suite:unit" in text
    assert "alert: [shipwarden] main:" in text and "OPS_CHANNEL (ok)" in text
    # looking again finds nothing new, more evidence changes nothing, the alert is not sent twice
    assert h.service.watch_main(via="poll") == []
    h.webhook(sha, "main")
    assert len(list(h.store.audit_entries(action="alert.violation"))) == 1 and h.deploys == []


def test_several_commits_pushed_at_once_are_each_judged(h: Harness, oscar: Outsider) -> None:
    oscar.sync()
    shas = [oscar.commit({f"src/f{i}.py": f"x = {i}\n"}, f"Direct {i}") for i in range(3)]
    oscar.push_main()
    judged = h.service.watch_main(via="poll")
    assert [j.sha for j in judged] == shas[::-1]
    assert [(j.verdict, j.reason) for j in judged] == [("awaiting", "awaiting-evidence")] + [
        ("covered", "awaiting-evidence")
    ] * 2
    assert violations(h) == [] and f"arrived under {shas[-1][:12]}" in judged[1].why


def test_a_pull_request_merged_by_hand_before_its_gates_passed(h: Harness, oscar: Outsider) -> None:
    sha = h.push("feature/hasty", {"src/app.py": "print('hasty')\n"}, "Hasty")
    h.green_evidence(sha, skip="integration")
    res = h.webhook(sha, "feature/hasty")
    assert res.change_status == "pending"
    merge = oscar.merge(sha)
    judged = {j.sha: j for j in h.service.watch_main(via="poll")}
    assert (judged[merge].verdict, judged[merge].reason) == ("awaiting", "awaiting-evidence")
    assert (judged[sha].verdict, judged[sha].reason) == ("covered", "awaiting-evidence")  # with its head
    assert "whose gates have not passed yet (pending" in judged[merge].why
    run_scheduled(h)
    assert h.change(sha).status == "pending" and h.change(sha).deployment_id is None
    # the branch's evidence goes green: the change passes, and is not merged a second time; the
    # hand-made merge is exactly that head merged onto main, so the head's evidence is its evidence:
    # deployed without waiting for CI on the merge commit's own sha
    h.green_evidence(sha)
    (v,) = verdicts(h, merge)
    assert (v.verdict, v.reason, v.change_id) == ("deploy", "clean-merge", h.change(sha).id), v.why
    assert f"the gates of its head {sha[:12]} all passed after it arrived" in v.why
    assert h.remote.head("main") == merge and len(h.deploys) == 1  # nothing merged again
    assert (h.change(sha).status, h.change(sha).merge_sha) == ("merged", merge)
    assert "[clean-merge]" in render_explanation(h.service.explain(merge[:12]))
    run_scheduled(h)
    assert [e.detail["commit"] for e in h.store.audit_entries(action="main.deploy")] == [merge]
    assert violations(h) == []


def test_a_merge_by_hand_adding_lines_still_waits_for_its_own_evidence(h: Harness, oscar: Outsider) -> None:
    """The head's evidence covers only the head merged onto main: a merge commit carrying one more
    line is not that, and keeps waiting for CI on its own sha (then it is judged by that)."""
    sha = h.push("feature/sneaky", {"src/app.py": "print('sneaky')\n"}, "Sneaky")
    h.green_evidence(sha, skip="integration")
    assert h.webhook(sha, "feature/sneaky").change_status == "pending"
    merge = oscar.merge(sha, extra={"src/backdoor.py": "import os\n"})
    (head, *_rest) = h.service.watch_main(via="poll")
    assert (head.sha, head.verdict) == (merge, "awaiting")
    h.green_evidence(sha)
    assert h.change(sha).status == "approved"
    (v,) = verdicts(h, merge)
    assert (v.verdict, v.reason) == ("awaiting", "awaiting-evidence") and h.deploys == []
    h.green_evidence(merge)
    h.webhook(merge, "main")
    (v,) = verdicts(h, merge)
    assert (v.verdict, v.reason) == ("deploy", "approved-change") and len(h.deploys) == 1


def test_a_squash_by_hand_before_its_gates_passed_takes_the_heads_proof(h: Harness, oscar: Outsider) -> None:
    sha = h.push("feature/squashed", {"src/app.py": "print('squashed')\n"}, "Squash me")
    h.green_evidence(sha, skip="integration")
    assert h.webhook(sha, "feature/squashed").change_status == "pending"
    oscar.sync()
    squash = oscar.commit({"src/app.py": "print('squashed')\n"}, "Squash me (#7)")
    oscar.push_main()
    (head,) = h.service.watch_main(via="poll")
    assert (head.sha, head.verdict) == (squash, "awaiting")
    h.green_evidence(sha)
    (v,) = verdicts(h, squash)
    assert (v.verdict, v.reason) == ("deploy", "clean-merge") and "a squash or rebase" in v.why
    assert len(h.deploys) == 1 and h.remote.head("main") == squash


def test_a_merge_by_hand_takes_the_evidence_of_the_merge_ci_tested(h: Harness, oscar: Outsider) -> None:
    """CI tested the pull request's merge commit (its head merged onto main, as GitHub's
    refs/pull/N/merge); the hand-made merge has exactly that tree: that evidence is its evidence."""
    sha = h.push("feature/tested", {"src/app.py": "print('tested')\n"}, "Tested as merged")
    oscar.sync()
    oscar.git("fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*")
    oscar.git("merge", "-q", "--no-ff", "--no-edit", "-m", "Merge sha into main (CI's test merge)", sha)
    tested = oscar.git("rev-parse", "HEAD")
    oscar.git("push", "-q", "origin", "HEAD:refs/heads/pull/7/merge")
    h.green_evidence(tested, skip="integration")
    assert h.webhook(tested, "pull/7/merge").change_status == "pending"
    merge = oscar.merge(sha)  # the merge button: another merge commit, the same tree
    assert merge != tested
    (head, *_rest) = h.service.watch_main(via="poll")
    assert (head.sha, head.verdict) == (merge, "awaiting")
    h.green_evidence(tested)
    (v,) = verdicts(h, merge)
    assert (v.verdict, v.reason, v.change_id) == ("deploy", "clean-merge", h.change(tested).id), v.why
    assert len(h.deploys) == 1 and h.remote.head("main") == merge  # deployed, nothing merged again
    assert h.remote.head("pull/7/merge") == tested


def test_a_commit_whose_evidence_never_comes_raises_an_alert_after_the_timeout(
    h: Harness, oscar: Outsider, receiver: Receiver
) -> None:
    """delivery.repository.evidenceTimeout (default 4 h): past it, one alert and one audit entry; the
    commit keeps waiting (never deployed without evidence) and evidence arriving later still decides."""
    oscar.sync()
    sha = oscar.commit({"src/app.py": "print('forgotten')\n"}, "Pushed and forgotten")
    oscar.push_main()
    (jc,) = h.service.watch_main(via="poll")
    assert jc.verdict == "awaiting"
    timeout = h.service.delivery.repository.evidence_timeout
    assert timeout == 4 * 3600.0
    assert h.service.check_overdue_evidence(now=jc.seen_at + timeout - 1) == []
    assert receiver.messages == []
    (marked,) = h.service.check_overdue_evidence(now=jc.seen_at + timeout + 60)
    assert marked.sha == sha and marked.verdict == "awaiting"
    (entry,) = h.store.audit_entries(action="main.evidence_overdue")
    assert (entry.outcome, entry.detail["commit"], entry.detail["timeout_s"]) == ("failed", sha, timeout)
    (alert,) = h.store.audit_entries(action="alert.evidence_overdue")
    assert alert.outcome == "ok" and alert.detail["commit"] == sha
    assert len(receiver.messages) == 1
    assert "still waiting for its evidence" in json.dumps(receiver.messages[0])
    # once only, and nothing deployed, nothing merged
    assert h.service.check_overdue_evidence(now=jc.seen_at + 2 * timeout) == []
    assert len(receiver.messages) == 1 and h.deploys == [] and violations(h) == []
    (v,) = verdicts(h, sha)
    assert v.verdict == "awaiting"
    text = render_explanation(h.service.explain(sha[:12]))
    assert "evidence OVERDUE: still missing 4.0 h after it arrived (evidenceTimeout 4.0 h); alerted" in text
    # its evidence, late: judged by the same gates, deployed
    h.green_evidence(sha)
    h.webhook(sha, "main")
    (v,) = verdicts(h, sha)
    assert (v.verdict, v.reason) == ("deploy", "approved-change") and len(h.deploys) == 1


def test_the_evidence_timeout_is_set_by_the_policy() -> None:
    from shipwarden.domain.delivery import RepositorySpec

    spec = RepositorySpec.model_validate({"url": "../origin.git", "evidenceTimeout": "30m"})
    assert spec.evidence_timeout == 1800.0
    with pytest.raises(ValueError):
        RepositorySpec.model_validate({"url": "../origin.git", "evidenceTimeout": "0s"})


def test_a_blocked_change_merged_by_hand_is_gates_failed(h: Harness, oscar: Outsider) -> None:
    sha = h.push("feature/broken", {"src/app.py": "print('broken')\n"}, "Broken")
    h.green_evidence(sha, unit="pytest-junit.xml")
    assert h.webhook(sha, "feature/broken").change_status == "blocked"
    assert "status: blocked" in render_explanation(h.service.explain(sha))  # a change's head, not on main
    merge = oscar.merge(sha)
    (head, *_rest) = h.service.watch_main(via="poll")
    assert head.sha == merge and head.reason == "gates-failed" and "suite:unit" in head.why
    text = render_explanation(h.service.explain(merge))
    assert "[gates-failed]" in text and f"change: {h.change(sha).id}" in text


def test_a_force_push_rewriting_main_is_not_deployed(h: Harness, oscar: Outsider) -> None:
    oscar.sync()
    oscar.git("reset", "-q", "--hard", "HEAD~1")
    sha = oscar.commit({"src/app.py": "print('rewritten')\n"}, "Rewritten history")
    oscar.push_main(force=True)
    (head,) = h.service.watch_main(via="poll")
    assert head.sha == sha and head.reason == "force-push" and head.verdict == "violation"
    assert "is no longer in its history" in head.why


# --- merges that passed the gates ----------------------------------------------------------------------


def test_a_merge_of_ours_is_judged_and_deployed(h: Harness) -> None:
    first = h.push("feature/ok", {"src/util.py": "x = 1\n"}, "First step")
    change = gated_change(h, "feature/ok", {"src/app.py": "print('ok')\n"})
    assert len(h.deploys) == 1
    run_scheduled(h)  # judges main, then deploys (no rollout here: the deployment cannot run)
    (v,) = verdicts(h, change.merge_sha)
    assert v.verdict == "deploy" and v.reason == "shipwarden-merge" and v.effect_detail["deployed"] is True
    # the merge brought three commits: each judged, only the head deployed
    assert [x.reason for x in verdicts(h, change.head_sha)] == ["approved-change"]  # covered
    assert [(x.verdict, x.reason) for x in verdicts(h, first)] == [("covered", "part-of-change")]
    assert h.change(change.head_sha).status == "deploy_failed"  # it tried: no rollout service here
    assert violations(h) == []
    text = render_explanation(h.service.explain(change.merge_sha))
    assert "DEPLOYED through the gates [shipwarden-merge]" in text


def test_the_approved_head_merged_elsewhere_is_deployed(h: Harness, oscar: Outsider) -> None:
    change = approved_not_merged(h, "feature/quick", {"src/app.py": "print('quick')\n"})
    merge = oscar.merge(change.head_sha)
    judged = {j.sha: j for j in h.service.watch_main(via="poll")}
    assert judged[merge].verdict == "deploy" and judged[merge].reason == "clean-merge"
    after = h.service.repo.get_change(change.id)
    assert after.merge_sha == merge and after.facts["merge"]["via"] == "outside shipwarden (poll)"
    assert len(h.deploys) == 1  # the deployment of the merge commit is scheduled


def test_a_merge_that_slips_in_more_than_the_approved_change_is_not_deployed(
    h: Harness, oscar: Outsider
) -> None:
    change = approved_not_merged(h, "feature/sly", {"src/app.py": "print('sly')\n"})
    merge = oscar.merge(change.head_sha, extra={"src/backdoor.py": "open = eval\n"})
    head = h.service.watch_main(via="poll")[0]
    assert head.sha == merge and head.verdict == "violation" and head.reason == "merged-around-gate"
    assert "differs from the clean merge" in head.why
    assert h.deploys == [] and h.service.repo.get_change(change.id).status == "approved"


def test_an_ungated_commit_holds_back_later_merges_until_accepted(h: Harness, oscar: Outsider) -> None:
    oscar.sync()
    direct = oscar.commit({"src/direct.py": "x = 1\n"}, "Direct")
    oscar.push_main()
    h.service.watch_main(via="poll")
    h.green_evidence(direct, unit="pytest-junit.xml")  # red: a violation (gates-failed)
    change = gated_change(h, "feature/after", {"src/app.py": "print('after')\n"})
    run_scheduled(h)
    (v,) = verdicts(h, change.merge_sha)
    assert v.verdict == "violation" and v.reason == "ungated-history" and direct[:12] in v.why
    held = h.service.repo.get_change(change.id)
    assert held.status == "not_deployed" and held.deployment_id is None
    with pytest.raises(Exception, match="say why"):
        h.service.accept_violation(direct[:12], user="carol", reason=" ")
    h.service.accept_violation(direct[:12], user="carol", reason="reviewed: harmless")
    assert [e.detail["commit"] for e in h.store.audit_entries(action="policy.violation_accepted")] == [direct]
    nxt = gated_change(h, "feature/next", {"src/app.py": "print('next')\n"})
    run_scheduled(h)
    (v2,) = verdicts(h, nxt.merge_sha)
    assert v2.verdict == "deploy", v2.why


# --- the GitHub push webhook --------------------------------------------------------------------------


def push_body(before: str, after: str, *, forced: bool = False) -> bytes:
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "before": before,
            "after": after,
            "created": False,
            "deleted": False,
            "forced": forced,
            "commits": [],
            "repository": {"full_name": "acme/web"},
        }
    ).encode()


def github_headers(body: bytes, delivery: str | None = None) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": delivery or str(uuid.uuid4()),
        "x-hub-signature-256": "sha256=" + hmac_sha256_hex(GITHUB_SECRET, body),
    }


def test_the_push_webhook_judges_main_and_a_redelivery_is_refused(h: Harness, oscar: Outsider) -> None:
    before = h.remote.head("main")
    assert before is not None
    oscar.sync()
    sha = oscar.commit({"src/app.py": "print('pushed')\n"}, "Pushed past review")
    oscar.push_main()
    body = push_body(before, sha)
    headers = github_headers(body)
    res = h.service.receive_webhook("github", headers, body)
    assert res.status == 202 and f"{sha[:12]} awaiting (awaiting-evidence)" in res.detail
    (v,) = verdicts(h, sha)
    assert v.via == "webhook:github" and v.effect == "none"
    with pytest.raises(StateConflict, match="replay refused"):
        h.service.receive_webhook("github", headers, body)
    assert len(verdicts(h, sha)) == 1 and violations(h) == []
    # the poll that follows finds it judged already
    assert h.service.watch_main(via="poll") == []


# --- recorded before performed --------------------------------------------------------------------------


def test_a_verdict_recorded_before_a_crash_is_performed_by_the_next_look(
    h: Harness, oscar: Outsider, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    oscar.sync()
    sha = oscar.commit({"src/app.py": "print('crash')\n"}, "Pushed while shipwarden was dying")
    oscar.push_main()
    h.service.watch_main(via="poll")
    with monkeypatch.context() as m:  # the process dies after the verdict is committed, before its alert
        m.setattr(type(h.service), "perform_pending", lambda self, inline=False: None)
        h.green_evidence(sha, unit="pytest-junit.xml")  # red: the commit becomes a violation
    (v,) = verdicts(h, sha)
    assert v.effect == "pending" and violations(h) and receiver.messages == []
    assert "alert: not sent yet" in render_explanation(h.service.explain(sha))
    assert h.service.watch_main(via="poll") == []  # nothing new on main, but the owed alert goes out
    (after,) = verdicts(h, sha)
    assert after.effect == "done" and any(sha[:12] in m["title"] for m in receiver.messages)
    # an effect claimed by a process that died long ago is claimed again; a fresh claim is not
    assert not h.service.mainline.claim(after.id)  # done
    with h.store._sessions.begin() as s:
        from shipwarden.adapters.store.models import MainCommitRow

        row = s.get(MainCommitRow, after.id)
        assert row is not None
        row.effect, row.effect_detail = "running", {"claimed_at": h.store._clock()}
    assert not h.service.mainline.claim(after.id)
    with h.store._sessions.begin() as s:
        row = s.get(MainCommitRow, after.id)
        assert row is not None
        row.effect_detail = {"claimed_at": h.store._clock() - 3600}
    assert [p.id for p in h.service.mainline.pending("main")] == [after.id]
    assert h.service.mainline.claim(after.id) and not h.service.mainline.claim(after.id)


def test_a_push_webhook_whose_before_is_unknown_judges_no_history(tmp_path: Path) -> None:
    """The first push seen, with a ``before`` this repository never had: the head is recorded as
    where the watch starts, nothing before it is judged (nor alerted)."""
    (tmp_path / "fresh").mkdir()
    fresh = build_harness(tmp_path / "fresh", lambda url: LOCAL_SERVICE + GATES + delivery_section(url))
    head = fresh.remote.head("main")
    assert head is not None
    body = push_body("1" * 40, head)
    res = fresh.service.receive_webhook("github", github_headers(body), body)
    assert res.status == 202 and "nothing new to judge" in res.detail, res
    assert fresh.service.mainline.judged_head("main") == head
    assert list(fresh.store.audit_entries(action="policy.violation")) == []


def test_a_squash_merge_elsewhere_is_deployed_only_if_it_is_exactly_the_approved_change(
    h: Harness, oscar: Outsider
) -> None:
    change = approved_not_merged(h, "feature/squash", {"src/app.py": "print('squash')\n"})
    oscar.sync()
    oscar.git("fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*")
    oscar.git("merge", "-q", "--squash", change.head_sha)
    oscar.git("commit", "-q", "-m", "Squashed feature/squash (#12)")
    squash = oscar.push_main()
    (head,) = h.service.watch_main(via="poll")
    assert head.sha == squash and (head.verdict, head.reason) == ("deploy", "clean-merge"), head.why
    assert h.service.repo.get_change(change.id).merge_sha == squash and len(h.deploys) == 1
    # the same, with one more line slipped into the squash: nobody judged that content
    other = approved_not_merged(h, "feature/squash2", {"src/other.py": "print('other')\n"})
    oscar.sync()
    oscar.git("fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*")
    oscar.git("merge", "-q", "--squash", other.head_sha)
    oscar.commit({"src/extra.py": "x = 1\n"}, "Squashed feature/squash2 (#13)")
    oscar.push_main()
    (head,) = h.service.watch_main(via="poll")  # judged by its own evidence, as any direct push
    assert (head.verdict, head.reason) == ("awaiting", "awaiting-evidence")
    assert h.service.repo.get_change(other.id).status == "approved"


def test_with_an_alerting_section_a_violation_enters_the_alerting_pipeline(
    h: Harness, oscar: Outsider, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bootstrap hands the pipeline's intake to the rollout's alerts; violations take the same way
    (routing, grouping and escalation are the pipeline's, tested with it)."""
    from types import SimpleNamespace

    taken: list[Any] = []
    monkeypatch.setattr(h.service, "rollout", SimpleNamespace(alerts=SimpleNamespace(sink=taken.extend)))
    oscar.sync()
    sha = oscar.commit({"src/app.py": "print('again')\n"}, "Straight to main again")
    oscar.push_main()
    h.service.watch_main(via="poll")
    h.green_evidence(sha, unit="pytest-junit.xml")
    (alert,) = taken
    assert alert.labels["alertname"] == "MainPolicyViolation" and alert.labels["severity"] == "critical"
    assert (alert.labels["service"], alert.labels["commit"], alert.labels["reason"]) == (
        "web",
        sha[:12],
        "gates-failed",
    )
    assert "NOT deployed" in alert.annotations["summary"] and alert.ends_at is not None
    (entry,) = list(h.store.audit_entries(action="alert.violation"))
    assert entry.detail["via"] == "alerting" and entry.outcome == "ok"
    assert any(sha[:12] in m["title"] for m in receiver.messages)  # and the direct targets still hear it
